"""
GridReg.Scheduler (L{gridreg.scheduling}): a registry runs under
C{SCHED_BATCH} unless told C{normal}, threads started later included; a bad
value stops start-up naming the property; a refusal by the kernel is logged.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

import gridreg
from gridreg.config.properties import PropertyError, parse_text
from gridreg.registry.config import RegistryConfig
from gridreg.scheduling import use_scheduler


class SchedulerTests(SynchronousTestCase):
    def test_batch_is_inherited_by_later_threads(self) -> None:
        """A real process: the main thread and a thread it starts afterwards are SCHED_BATCH."""
        script = (
            "import os, threading\n"
            "from gridreg.scheduling import use_scheduler\n"
            "assert use_scheduler('batch')\n"
            "seen = []\n"
            "t = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))\n"
            "t.start(); t.join()\n"
            "print(os.sched_getscheduler(0), seen[0])\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(gridreg.__file__)))
        env = {**os.environ, "PYTHONPATH": root}
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
        ).stdout.split()
        self.assertEqual(out, [str(os.SCHED_BATCH)] * 2)

    def test_batch_asks_the_kernel_for_sched_batch(self) -> None:
        """The whole process (pid 0: the calling thread) is put under SCHED_BATCH, priority 0."""
        calls: list[tuple] = []
        self.assertTrue(use_scheduler("batch", lambda *a: calls.append(a)))
        [(pid, policy, param)] = calls
        self.assertEqual((pid, policy, param.sched_priority), (0, os.SCHED_BATCH, 0))

    def test_unknown_policy_is_refused(self) -> None:
        calls: list[tuple] = []
        self.assertRaises(ValueError, use_scheduler, "fifo", lambda *a: calls.append(a))
        self.assertEqual(calls, [])

    def test_normal_changes_nothing(self) -> None:
        calls: list[tuple] = []
        self.assertTrue(use_scheduler("normal", lambda *a: calls.append(a)))
        self.assertEqual(calls, [])

    def test_refused_by_the_kernel_is_logged(self) -> None:
        def refuse(*args: object) -> None:
            raise PermissionError(1, "Operation not permitted")

        with capturedLogs() as events:
            self.assertFalse(use_scheduler("batch", refuse))
        [event] = events
        self.assertIs(event["log_level"], LogLevel.warn)
        self.assertIn("refused by the kernel", formatEvent(event))

    def test_bad_value_names_the_property(self) -> None:
        properties = parse_text("GridReg.Scheduler=fifo\n", "registry.cfg")
        error = self.assertRaises(PropertyError, RegistryConfig.from_properties, properties)
        self.assertIn("GridReg.Scheduler", str(error))

    def test_batch_by_default(self) -> None:
        """A registry configured without the property runs under SCHED_BATCH."""
        properties = parse_text("IceGrid.InstanceName=Demo\n", "registry.cfg")
        self.assertEqual(RegistryConfig.from_properties(properties).scheduler, "batch")

    def test_normal_turns_it_off(self) -> None:
        properties = parse_text("GridReg.Scheduler=normal\n", "registry.cfg")
        self.assertEqual(RegistryConfig.from_properties(properties).scheduler, "normal")

    def test_read_into_the_configuration(self) -> None:
        properties = parse_text("GridReg.Scheduler=batch\n", "registry.cfg")
        self.assertEqual(RegistryConfig.from_properties(properties).scheduler, "batch")
