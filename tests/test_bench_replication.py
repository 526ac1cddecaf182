# -*- test-case-name: tests.test_bench_replication -*-
"""
C{bench/replication.py --rounds}: what it reports for several rounds is the
median of each figure, from results of the shape one round gives; and the
sync part's paced writes (C{--sync-writes}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bench._grid import PacedWrites, Writer
from bench.replication import median_result, parse_args


class MedianResultTests(SynchronousTestCase):
    def test_every_number_is_the_median_of_the_rounds(self) -> None:
        rounds = [
            {"1": {"writes_per_s": 500.0, "writes": 2000}, "lag_p50_s": 0.003},
            {"1": {"writes_per_s": 700.0, "writes": 2000}, "lag_p50_s": 0.001},
            {"1": {"writes_per_s": 600.0, "writes": 2000}, "lag_p50_s": 0.002},
        ]
        self.assertEqual(
            median_result(rounds),
            {"1": {"writes_per_s": 600.0, "writes": 2000}, "lag_p50_s": 0.002},
        )

    def test_samples_are_pooled_and_other_values_kept(self) -> None:
        rounds = [
            {"samples": [1, 2], "kind": "gridreg", "ok": True},
            {"samples": [3], "kind": "gridreg", "ok": False},
        ]
        self.assertEqual(
            median_result(rounds), {"samples": [1, 2, 3], "kind": "gridreg", "ok": True}
        )

    def test_one_round_is_reported_as_measured(self) -> None:
        only = {"lag_p50_s": 0.002, "samples": [1]}
        self.assertIs(median_result([only]), only)

    def test_rounds_default_to_one(self) -> None:
        self.assertEqual(parse_args([]).rounds, 1)
        self.assertEqual(parse_args(["--rounds", "5"]).rounds, 5)


class PacedWritesTests(SynchronousTestCase):
    """C{--sync-writes}' writer: a steady rate, one write in flight, no burst after a slow one."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.started: list[tuple[str, float]] = []
        self.answers: list[Deferred[tuple[float, float]]] = []

    def add(self, identity: str) -> Deferred[tuple[float, float]]:
        self.started.append((identity, self.clock.seconds()))
        answer: Deferred[tuple[float, float]] = Deferred()
        self.answers.append(answer)
        return answer

    def paced(self, rate: float) -> PacedWrites:
        writer = Writer()
        writer.add = self.add  # type: ignore[method-assign]
        writes = PacedWrites(self.clock, writer, rate, "live/x-")
        writes.start()
        return writes

    def ack(self, start: float, ack: float) -> None:
        self.answers[-1].callback((start, ack))

    def test_writes_start_at_the_rate_one_at_a_time(self) -> None:
        self.paced(10.0)
        self.assertEqual(self.started, [("live/x-0", 0.0)])
        self.clock.advance(0.05)
        self.ack(0.0, 0.05)
        self.assertEqual(len(self.started), 1)  # its slot is 0.1
        self.clock.advance(0.05)
        self.assertEqual(self.started[-1], ("live/x-1", 0.1))

    def test_a_slow_write_delays_the_next_without_a_burst(self) -> None:
        self.paced(10.0)
        self.clock.advance(0.35)  # three slots pass while the first is in flight
        self.ack(0.0, 0.35)
        self.assertEqual(self.started[-1], ("live/x-1", 0.35))  # at once
        self.ack(0.35, 0.36)
        self.assertEqual(len(self.started), 2)  # the next waits for its own slot
        self.clock.advance(0.1)
        self.assertEqual(self.started[-1][0], "live/x-2")
        self.assertAlmostEqual(self.started[-1][1], 0.45)

    def test_stop_waits_for_the_write_in_flight_and_starts_no_more(self) -> None:
        writes = self.paced(10.0)
        stopped = Deferred.fromCoroutine(writes.stop())
        self.assertNoResult(stopped)
        self.ack(0.0, 0.002)
        self.assertEqual(self.successResultOf(stopped), [("live/x-0", 0.0, 0.002)])
        self.clock.advance(1.0)
        self.assertEqual(len(self.started), 1)
