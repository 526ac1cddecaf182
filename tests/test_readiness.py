"""A replica's start-up: every caller of when_ready hears how it ended."""

from __future__ import annotations

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry._readiness import RegistryStartError, build_readiness


class ReadinessTests(SynchronousTestCase):
    def test_waiters_fire_once_started_and_later_callers_at_once(self) -> None:
        readiness = build_readiness()
        early = [readiness.when_ready(), readiness.when_ready()]
        for d in early:
            self.assertNoResult(d)
        readiness.started()
        for d in early:
            self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(self.successResultOf(readiness.when_ready()))
        self.assertIsNone(readiness.failure())

    def test_a_failed_start_up_says_why_to_everyone(self) -> None:
        readiness = build_readiness()
        early = readiness.when_ready()
        readiness.failed(Failure(OSError("port 4061 in use")))
        for d in (early, readiness.when_ready()):
            failure = self.failureResultOf(d, RegistryStartError)
            self.assertEqual(failure.getErrorMessage(), "port 4061 in use")
        self.assertEqual(readiness.failure().getErrorMessage(), "port 4061 in use")
