"""
Replication epochs and the history check that decides whether a slave can
be synced without losing what only it holds.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry.epochs import (
    NO_EPOCH,
    Epoch,
    EpochHistory,
    check_slave_history,
    epoch_mutation,
    new_epoch,
)

E1 = Epoch(1, "aa")
E2 = Epoch(2, "bb")
E3 = Epoch(3, "cc")
#: epoch 1 began at serial 1, epoch 2 at serial 10, epoch 3 at serial 20
HISTORY = EpochHistory(((E1, 1), (E2, 10), (E3, 20)))


class EpochTests(SynchronousTestCase):
    def test_order(self) -> None:
        self.assertLess(NO_EPOCH, E1)
        self.assertLess(E1, E2)
        self.assertLess(Epoch(2, "aa"), Epoch(2, "bb"), "the token orders equal numbers")

    def test_new_epoch_is_newer_and_unique(self) -> None:
        first, second = new_epoch(E2), new_epoch(E2)
        self.assertEqual((first.number, second.number), (3, 3))
        self.assertGreater(first, E2)
        self.assertNotEqual(first, second)

    def test_wire_round_trip(self) -> None:
        for epoch in (NO_EPOCH, E1, new_epoch(E3)):
            self.assertEqual(Epoch.from_wire(epoch.to_wire()), epoch)
        with self.assertRaises(ValueError):
            Epoch.from_wire("x:y")

    def test_history_round_trips_through_its_record(self) -> None:
        mutation = epoch_mutation(HISTORY)
        self.assertEqual((mutation.kind, mutation.key), ("meta", "epoch"))
        self.assertEqual(EpochHistory.from_meta({"epoch": mutation.value}), HISTORY)
        self.assertEqual(EpochHistory.from_meta({}).current, NO_EPOCH)

    def test_began_and_ended(self) -> None:
        self.assertEqual(HISTORY.current, E3)
        self.assertEqual([HISTORY.began(e) for e in (NO_EPOCH, E1, E2, E3)], [0, 1, 10, 20])
        self.assertEqual([HISTORY.ended(e) for e in (NO_EPOCH, E1, E2, E3)], [0, 9, 19, None])
        self.assertIsNone(HISTORY.began(Epoch(2, "zz")))


class SlaveHistoryTests(SynchronousTestCase):
    def check(self, epoch: Epoch, serial: int, master_serial: int = 25) -> str | None:
        return check_slave_history(HISTORY, master_serial, epoch, serial)

    def test_same_epoch_behind_or_equal_is_fine(self) -> None:
        self.assertIsNone(self.check(E3, 22))
        self.assertIsNone(self.check(E3, 25))

    def test_same_epoch_ahead_is_refused(self) -> None:
        why = self.check(E3, 26)
        self.assertIn("ahead of the master's (serial 26 against 25", why)

    def test_older_epoch_within_its_span_is_fine(self) -> None:
        self.assertIsNone(self.check(E1, 9), "a slave that stopped before epoch 2 began")
        self.assertIsNone(self.check(E2, 19))
        self.assertIsNone(self.check(NO_EPOCH, 0))

    def test_older_epoch_past_its_end_is_refused(self) -> None:
        why = self.check(E2, 21)
        self.assertIn("up to serial 21, which ended at serial 19", why)

    def test_unknown_epoch_is_refused(self) -> None:
        why = self.check(Epoch(2, "zz"), 12)
        self.assertIn("diverged", why)

    def test_a_master_without_history(self) -> None:
        empty = EpochHistory()
        self.assertIsNone(check_slave_history(empty, 5, NO_EPOCH, 5))
        self.assertIn("ahead", check_slave_history(empty, 5, NO_EPOCH, 6) or "")
