# -*- test-case-name: tests.test_bench_replication -*-
"""
C{bench/replication.py --rounds}: what it reports for several rounds is the
median of each figure, from results of the shape one round gives.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

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
