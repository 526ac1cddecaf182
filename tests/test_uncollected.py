"""
Tests for L{gridreg.uncollected}: a program's imports out of the
collector's reach, and the collector as it was after.
"""

from __future__ import annotations

import gc
import sys

from twisted.trial.unittest import SynchronousTestCase

from gridreg.uncollected import import_uncollected


class ImportUncollectedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        self.addCleanup(gc.unfreeze)

    def test_returns_the_module_and_freezes_what_it_made(self) -> None:
        """The module is imported and returned, and its objects are frozen."""
        sys.modules.pop("colorsys", None)
        gc.unfreeze()
        module = import_uncollected("colorsys")
        self.assertIs(module, sys.modules["colorsys"])
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_collector_restored_on(self) -> None:
        """A collector that was on is on again."""
        gc.enable()
        import_uncollected("json")
        self.assertTrue(gc.isenabled())

    def test_collector_left_off(self) -> None:
        """A collector that was off stays off."""
        gc.disable()
        import_uncollected("json")
        self.assertFalse(gc.isenabled())

    def test_collector_restored_after_a_failed_import(self) -> None:
        """A module that cannot be imported raises, and the collector is on again."""
        gc.enable()
        self.assertRaises(ModuleNotFoundError, import_uncollected, "gridreg.no_such_module")
        self.assertTrue(gc.isenabled())
