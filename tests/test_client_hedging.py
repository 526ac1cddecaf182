# -*- test-case-name: tests.test_client_hedging -*-
"""
Tests for hedged locator requests (L{gridreg.client.hedging} and its use in
L{gridreg.client.locator.LocatorClient}): when a request is sent to a second
replica, which answer wins, which replica becomes suspect and when it stops
being one, and how many requests may be hedged.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gridreg.client import LocatorClient
from gridreg.client.hedging import HedgeBudget, HedgePolicy, LatencyWindow
from tests._helpers import RegistryReplica
from tests.test_client_locator import HELLO, REP1, LocatorTestCase


class LatencyWindowTests(SynchronousTestCase):
    def test_empty(self) -> None:
        self.assertIsNone(LatencyWindow().percentile(0.9))

    def test_percentile(self) -> None:
        """The 90th percentile of 1..10 ms is 9 ms (nearest rank)."""
        window = LatencyWindow()
        for ms in range(10, 0, -1):
            window.add(ms / 1000)
        self.assertAlmostEqual(window.percentile(0.9), 0.009)
        self.assertAlmostEqual(window.percentile(1.0), 0.010)

    def test_recent_only(self) -> None:
        """Old round trips leave the window: a replica that got fast again is judged fast."""
        window = LatencyWindow(size=4)
        for _ in range(4):
            window.add(0.040)
        for _ in range(4):
            window.add(0.001)
        self.assertEqual(window.percentile(0.9), 0.001)


class HedgePolicyTests(SynchronousTestCase):
    def window(self, *seconds: float) -> LatencyWindow:
        window = LatencyWindow()
        for s in seconds:
            window.add(s)
        return window

    def test_multiple_of_p90(self) -> None:
        self.assertAlmostEqual(HedgePolicy().delay(self.window(*[0.004] * 10)), 0.012)

    def test_floor(self) -> None:
        """Fast loopback round trips do not make the delay vanish."""
        self.assertEqual(HedgePolicy().delay(self.window(0.0002, 0.0003)), 0.001)

    def test_cap(self) -> None:
        """After a slow spell a hung replica is still bypassed quickly."""
        self.assertEqual(HedgePolicy().delay(self.window(0.2, 0.3)), 0.05)

    def test_no_samples(self) -> None:
        self.assertEqual(HedgePolicy().delay(LatencyWindow()), 0.05)

    def test_invalid(self) -> None:
        self.assertRaises(ValueError, HedgePolicy, floor=0.1, cap=0.05)


class HedgeBudgetTests(SynchronousTestCase):
    def test_bound(self) -> None:
        """However often hedges are asked for, at most 10% of requests plus the burst get one."""
        budget = HedgeBudget(ratio=0.1, burst=2)
        granted = 0
        for _ in range(1000):
            budget.request()
            granted += budget.spend()
        self.assertLessEqual(granted, 0.1 * 1000 + 2)
        self.assertGreaterEqual(granted, 99)
        self.assertEqual(budget.hedges, granted)

    def test_starts_full(self) -> None:
        """The first stall can be hedged, without a history of requests."""
        budget = HedgeBudget(ratio=0.1, burst=2)
        budget.request()
        self.assertTrue(budget.spend())
        self.assertTrue(budget.spend())
        self.assertFalse(budget.spend())


class HedgingTests(LocatorTestCase):
    """Replicas A (listed first) and B, both serving; the client is connected to A."""

    def setUp(self) -> None:
        super().setUp()
        for replica in (self.a, self.b):
            replica.serve(self.network)

    def make_client(self, **kwargs: Any) -> LocatorClient:
        client = super().make_client(**kwargs)
        self.network.run_until(client.get_registry())
        return client

    def resume(self, replica: RegistryReplica) -> None:
        """The stopped replica continues (SIGCONT)."""
        self.network.resume(*replica.client_address)
        self.network.resume(*replica.server_address)

    def finds(self, replica: RegistryReplica) -> int:
        return len(replica.locate_requests("findAdapterById"))

    def slow_round_trips(self, client: LocatorClient, seconds: float, count: int) -> None:
        """Make C{count} requests that A answers after C{seconds} (below the hedge delay)."""
        for _ in range(count):
            self.a.hang(self.network)
            d = client.find_adapter_by_id("HelloAdapter")
            self.network.advance(seconds)
            self.resume(self.a)
            self.network.flush()
            self.assertEqual(self.successResultOf(d).endpoints, HELLO)
        self.assertEqual(self.finds(self.b), 0)

    def test_hedged_after_the_floor(self) -> None:
        """
        A's round trips are instantaneous, so the delay is the 1 ms floor:
        before it only A has the request; just after it B has it too and
        its answer is the result.
        """
        client = self.make_client()
        self.a.hang(self.network)
        d = client.find_adapter_by_id("HelloAdapter")
        self.network.advance(0.0009)
        self.assertNoResult(d)
        self.assertEqual(self.finds(self.b), 0)
        self.network.advance(0.0002)
        self.assertEqual(self.successResultOf(d).endpoints, HELLO)
        self.assertEqual((self.finds(self.a), self.finds(self.b)), (0, 1))  # A is hung
        self.assertEqual(client.hedges, 1)
        # the spare to B was opened when the client connected, not by the hedge
        self.assertEqual(self.network.attempts, [("127.0.0.1", 4061), ("127.0.0.1", 5061)])

    def test_delay_follows_the_replicas_latency(self) -> None:
        """A replica that usually takes 0.8 ms gets three times that (2.4 ms) before a hedge."""
        client = self.make_client()
        self.slow_round_trips(client, 0.0008, 10)
        self.a.hang(self.network)
        d = client.find_adapter_by_id("HelloAdapter")
        self.network.advance(0.0023)
        self.assertNoResult(d)
        self.assertEqual(self.finds(self.b), 0)
        self.network.advance(0.0002)
        self.assertEqual(self.successResultOf(d).endpoints, HELLO)
        self.assertEqual(self.finds(self.b), 1)

    def test_fast_answers_are_not_hedged(self) -> None:
        client = self.make_client()
        for _ in range(50):
            self.network.run_until(client.find_adapter_by_id("HelloAdapter"))
        self.network.advance(1.0)
        self.assertEqual((self.finds(self.a), self.finds(self.b)), (50, 0))
        self.assertEqual(client.hedges, 0)

    def test_suspect_is_skipped_until_it_answers(self) -> None:
        """
        Once B's answer overtook A's, A is suspect: the next requests go to
        B at once, unhedged. When A answers its old request (it resumed), it
        is trusted again and gets the requests after that; the late answer
        changes nothing for the request B answered.
        """
        client = self.make_client()
        self.a.hang(self.network)
        first = client.find_adapter_by_id("HelloAdapter")
        self.network.run_until(first)
        answered: list[Any] = []
        first.addBoth(answered.append)
        for _ in range(5):
            d = client.find_adapter_by_id("Rep1")
            self.network.flush()  # no time passes: no hedge delay was waited for
            self.assertEqual(self.successResultOf(d).endpoints, REP1)
        self.assertEqual(client.hedges, 1)
        self.assertEqual(len(self.b.locate_requests("findAdapterById")), 6)
        self.resume(self.a)
        self.network.flush()
        self.assertEqual(self.finds(self.a), 1)  # the old request, answered late
        self.assertEqual(len(answered), 1)
        d = client.find_adapter_by_id("Rep1")
        self.network.flush()
        self.assertEqual(self.successResultOf(d).endpoints, REP1)
        self.assertEqual((self.finds(self.a), self.finds(self.b)), (2, 6))

    def test_first_answer_wins_either_way(self) -> None:
        """
        Both replicas stall; the request is hedged to B, then A answers
        first: that is the result, B's later answer is ignored, and B (the
        one overtaken this time) is suspect until it answers.
        """
        client = self.make_client(hedge_budget=HedgeBudget(burst=5))
        self.a.hang(self.network)
        self.network.run_until(client.find_adapter_by_id("HelloAdapter"))  # opens a spare to B
        self.resume(self.a)
        self.network.flush()  # A answers its old request: A is trusted again
        self.a.hang(self.network)
        self.b.hang(self.network)
        d = client.find_adapter_by_id("Rep1")
        # A's late answer was a slow round trip, so the hedge waits longer (up to the cap)
        self.network.advance(0.051)
        self.assertEqual(self.finds(self.b), 1)
        self.assertEqual(client.hedges, 2)  # sent to B, which does not read it yet
        self.resume(self.a)
        self.network.flush()
        self.assertEqual(self.successResultOf(d).endpoints, REP1)
        self.resume(self.b)
        self.network.flush()
        self.assertEqual(
            len(self.b.locate_requests("findAdapterById")), 2
        )  # read, answered, ignored
        # B answered, so it is no longer suspect; A is not either
        self.a.hang(self.network)
        d = client.find_adapter_by_id("HelloAdapter")
        self.network.advance(0.051)
        self.assertEqual(self.successResultOf(d).endpoints, HELLO)
        self.assertEqual(client.hedges, 3)

    def test_overtaken_replica_that_stays_silent_is_dropped(self) -> None:
        """
        A hung replica's request times out after request_timeout: its
        connection is aborted and the ClientService moves to B; requests
        keep being answered all along, none waiting more than the hedge
        delay.
        """
        client = self.make_client()
        self.a.hang(self.network)
        slowest = 0.0
        for _ in range(100):
            d = client.find_adapter_by_id("HelloAdapter")
            slowest = max(slowest, self.network.run_until(d))
            self.assertEqual(self.successResultOf(d).endpoints, HELLO)
            self.network.advance(0.01)
        self.assertLess(slowest, 0.01)
        self.assertEqual(self.network.open_clients("127.0.0.1", 4061), [])
        self.assertEqual(client.connection.endpoint_index, 1)  # type: ignore[union-attr]
        # the spare to B was retired once the ClientService reached B
        self.assertEqual(len(self.network.open_clients("127.0.0.1", 5061)), 1)

    def test_budget_holds_hedges_until_a_replica_is_suspect(self) -> None:
        """
        Twenty requests wait on a hung A: the budget lets two be hedged at
        once; when B's answer makes A suspect, the rest are hedged too,
        still one each, and nobody waits for the request timeout.
        """
        client = self.make_client()
        self.a.hang(self.network)
        ds = [client.find_adapter_by_id("HelloAdapter") for _ in range(20)]
        gathered: list[Any] = []
        for d in ds:
            d.addBoth(gathered.append)
        elapsed = self.network.run_until(lambda: len(gathered) == 20)
        self.assertLess(elapsed, 0.1)
        self.assertEqual([g.endpoints for g in gathered], [HELLO] * 20)
        self.assertEqual(client.hedge_budget.hedges, 2)
        self.assertEqual(client.hedges, 20)
        self.assertEqual(self.finds(self.b), 20)

    def test_budget_exhausted_waits_for_the_timeout(self) -> None:
        """Without budget a stall costs the request timeout, as without hedging."""
        client = self.make_client(hedge_budget=HedgeBudget(ratio=0.0, burst=0.0))
        self.a.hang(self.network)
        d: Deferred[Any] = client.find_adapter_by_id("HelloAdapter")
        self.network.advance(0.49)
        self.assertNoResult(d)
        self.network.run_until(d)
        self.assertEqual(self.successResultOf(d).endpoints, HELLO)
        self.assertEqual(client.hedges, 0)

    def test_killed_during_hedge(self) -> None:
        """The hung replica dies after the hedge won: nothing is retried twice."""
        client = self.make_client()
        self.a.hang(self.network)
        d = client.find_adapter_by_id("HelloAdapter")
        self.network.run_until(d)
        self.a.kill(self.network)
        d = client.find_adapter_by_id("Rep1")
        self.network.run_until(d)
        self.assertEqual(self.successResultOf(d).endpoints, REP1)
        self.assertEqual(self.finds(self.b), 2)

    def test_stop_closes_spares(self) -> None:
        client = self.make_client()
        self.a.hang(self.network)
        self.network.run_until(client.find_adapter_by_id("HelloAdapter"))
        self.assertEqual(len(self.network.open_clients("127.0.0.1", 5061)), 1)
        d = client.stopService()
        self.network.flush()
        self.assertEqual(self.network.open_clients("127.0.0.1", 5061), [])
        self.resume(self.a)
        self.network.flush()
        self.successResultOf(d)
        client.startService()  # for the cleanup
