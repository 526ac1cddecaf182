# -*- test-case-name: tests.test_slave_wakeups -*-
"""
Tests for L{gridreg.registry.slave_wakeups}: at the master's loss a slave
under C{SCHED_BATCH} takes the normal policy for a while, then goes back;
one under another policy is left alone.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry.slave_wakeups import WINDOW, LossWakeups

BATCH = os.SCHED_BATCH
NORMAL = os.SCHED_OTHER


class FakeKernel:
    """One thread's scheduling policy, and every change asked for."""

    def __init__(self, policy: int) -> None:
        self.policy = policy
        self.changes: list[int] = []
        self.refuse = False

    def get(self, pid: int) -> int:
        assert pid == 0, "only the calling thread"
        return self.policy

    def set(self, pid: int, policy: int, param: Any) -> None:
        assert pid == 0, "only the calling thread"
        if self.refuse:
            raise PermissionError("refused")
        self.policy = policy
        self.changes.append(policy)


class LossWakeupsTests(SynchronousTestCase):
    def make(self, policy: int) -> tuple[LossWakeups, FakeKernel, Clock]:
        clock, kernel = Clock(), FakeKernel(policy)
        return LossWakeups(clock, kernel.get, kernel.set), kernel, clock

    def test_batch_becomes_normal_for_the_window(self) -> None:
        wakeups, kernel, clock = self.make(BATCH)
        wakeups.master_lost()
        self.assertEqual((kernel.policy, wakeups.interactive), (NORMAL, True))
        clock.advance(WINDOW * 0.99)
        self.assertEqual(kernel.policy, NORMAL)
        clock.advance(WINDOW * 0.01)
        self.assertEqual((kernel.policy, wakeups.interactive), (BATCH, False))
        self.assertEqual(kernel.changes, [NORMAL, BATCH])

    def test_another_loss_extends_the_window(self) -> None:
        wakeups, kernel, clock = self.make(BATCH)
        wakeups.master_lost()
        clock.advance(WINDOW / 2)
        wakeups.master_lost()
        clock.advance(WINDOW * 0.9)
        self.assertEqual(kernel.policy, NORMAL)
        clock.advance(WINDOW * 0.1)
        self.assertEqual(kernel.changes, [NORMAL, BATCH])

    def test_a_slave_not_under_batch_is_left_alone(self) -> None:
        """GridReg.Scheduler=normal: nothing changes, then or later."""
        wakeups, kernel, clock = self.make(NORMAL)
        wakeups.master_lost()
        clock.advance(WINDOW)
        self.assertEqual((kernel.changes, wakeups.interactive), ([], False))

    def test_stopping_goes_back_to_batch_at_once(self) -> None:
        wakeups, kernel, clock = self.make(BATCH)
        wakeups.master_lost()
        wakeups.stop()
        self.assertEqual((kernel.policy, clock.getDelayedCalls()), (BATCH, []))

    def test_a_refusal_changes_nothing(self) -> None:
        wakeups, kernel, clock = self.make(BATCH)
        kernel.refuse = True
        wakeups.master_lost()
        self.assertEqual(
            (kernel.policy, wakeups.interactive, clock.getDelayedCalls()), (BATCH, False, [])
        )
