# -*- test-case-name: tests.test_scheduling_processes -*-
"""
A real C{twist gridregistry} runs every one of its threads under the
scheduling policy C{GridReg.Scheduler} names: C{SCHED_BATCH} unless told
C{normal}, which leaves the kernel's normal policy (L{gridreg.scheduling}).
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests._processes import start_gridregistry


def policies(pid: int) -> set[int]:
    """The scheduling policies of all of C{pid}'s threads."""
    return {os.sched_getscheduler(int(task)) for task in os.listdir(f"/proc/{pid}/task")}


class RegistrySchedulerTests(TestCase):
    timeout = 60

    async def started_policies(self, config: dict[str, str]) -> tuple[set[int], int]:
        """Start a registry with C{config}; its threads' policies and their number."""
        registry = await start_gridregistry(reactor, Path(self.mktemp()).resolve(), config)
        self.addCleanup(registry.stop)
        pid = registry.process.pid
        assert pid is not None
        return policies(pid), len(os.listdir(f"/proc/{pid}/task"))

    async def test_batch_by_default(self) -> None:
        """Without the property, the registry and the store's worker thread are SCHED_BATCH."""
        seen, threads = await self.started_policies({})
        self.assertEqual(seen, {os.SCHED_BATCH})
        self.assertGreater(threads, 1)

    async def test_normal_leaves_the_normal_policy(self) -> None:
        seen, _ = await self.started_policies({"GridReg.Scheduler": "normal"})
        self.assertEqual(seen, {os.SCHED_OTHER})
