"""
C{bench/lag_tail.py}: each write cut into its steps from the registries'
notes, and the slowest writes put down to the step furthest above its median.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench.lag_tail import causes, steps


def _write(
    start: float,
    commit: float,
    durable: float,
    push: float,
    applied: float,
    found_start: float,
    found_end: float,
) -> tuple[dict[str, Any], list[str], list[str]]:
    sample = {
        "start": start,
        "lag_s": found_end - start,
        "found_start": found_start,
        "found_end": found_end,
    }
    return sample, ["commit", str(commit), str(durable), "1"], ["push", str(push), str(applied)]


class StepsTests(SynchronousTestCase):
    def notes(
        self, writes: list[tuple[float, ...]]
    ) -> tuple[list[Any], dict[str, list[list[str]]]]:
        samples, master, slave = [], [], []
        for w in writes:
            sample, commit, push = _write(*w)
            samples.append(sample)
            master.append(commit)
            slave.append(push)
        master.append(["gc", "10.0004", "10.0005", "0"])
        return samples, {"100": master, "200": slave}

    def test_each_step_of_a_write(self) -> None:
        samples, events = self.notes([(10.0, 10.0003, 10.0007, 10.0008, 10.0009, 10.0010, 10.0012)])
        [row] = steps(samples, events)
        for key, ms in [
            ("lag", 1.2),
            ("to_mcommit", 0.3),
            ("mcommit", 0.4),
            ("commit_to_push", 0.1),
            ("push", 0.1),
            ("applied_to_found", 0.3),
            ("found_rtt", 0.2),
        ]:
            self.assertAlmostEqual(row[key], ms, places=6)
        self.assertEqual(row["gc"], ["master 0.10 ms"])

    def test_the_slowest_by_the_step_furthest_above_its_median(self) -> None:
        writes = [
            (t, t + 0.0003, t + 0.0007, t + 0.0008, t + 0.0009, t + 0.0010, t + 0.0012)
            for t in range(100)
        ]
        # a slow commit, and a slow answer from the slave
        writes[10] = (10, 10.0003, 10.0057, 10.0058, 10.0059, 10.0060, 10.0062)
        writes[20] = (20, 20.0003, 20.0007, 20.0008, 20.0009, 20.0010, 20.0052)
        samples, events = self.notes(writes)
        self.assertEqual(
            causes(steps(samples, events)),
            {"mcommit": 1, "found_rtt (the slave's answer)": 1},
        )
