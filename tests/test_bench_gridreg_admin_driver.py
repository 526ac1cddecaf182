"""
Tests for C{bench/gridreg_admin_driver.py}'s C{add_many}: the writes it
keeps outstanding, its answer, and the refusals it counts.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bench.gridreg_admin_driver import Driver


class FakeSession:
    def __init__(self) -> None:
        self.pending: list[tuple[str, Deferred[int]]] = []
        self.most = 0

    async def add_object(self, proxy: str, type: str = "") -> int:
        d: Deferred[int] = Deferred()
        self.pending.append((proxy, d))
        self.most = max(self.most, len(self.pending))
        return await d

    def answer(self, error: Any = None) -> str:
        proxy, d = self.pending.pop(0)
        if error is None:
            d.callback(1)
        else:
            d.errback(error)
        return proxy


class AddManyTests(SynchronousTestCase):
    def test_keeps_in_flight_outstanding_and_answers_once_all_are_done(self) -> None:
        session = FakeSession()
        options = {
            "category": "c",
            "prefix": "p",
            "start": 3,
            "count": 5,
            "in_flight": 2,
            "endpoints": "tcp -p 1",
        }
        done = Driver(session).cmd_add_many(options)
        answered = []
        while session.pending:
            self.assertNoResult(done)
            answered.append(session.answer(ValueError("refused") if len(answered) == 1 else None))
        result = self.successResultOf(done)
        self.assertEqual(session.most, 2)
        self.assertEqual(answered, [f"c/p{i}:tcp -p 1" for i in range(3, 8)])
        self.assertEqual((result["errors"], result["error_types"]), (1, {"ValueError": 1}))
        self.assertGreaterEqual(result["seconds"], 0)
