# -*- test-case-name: tests.test_bench_slave_startup -*-
"""
How C{bench/slave_startup.py --timeline} reads the steps a slave marked
(C{bench/_slave_timeline.py}) and prints their medians in time order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench.slave_startup import read_timeline, timeline_table


def step(name: str, ms: float, cpu: float = 1.0) -> dict[str, Any]:
    return {"step": name, "ms": ms, "cpu_ms": cpu, "main_cpu_ms": cpu, "gc_ms": [0.5, 0, 0]}


class TimelineTests(SynchronousTestCase):
    def test_each_step_once_and_the_last_chunk(self) -> None:
        """A step marked again counts the first time, but for the chunks: the last one."""
        path = Path(self.mktemp())
        marks = [
            step("imported", 10),
            step("chunk decoded", 20),
            step("imported", 25),
            step("chunk decoded", 30),
            step("loaded", 31),
        ]
        path.write_text("".join(json.dumps(m) + "\n" for m in marks))
        self.assertEqual(
            [(s["step"], s["ms"]) for s in read_timeline(path)],
            [("imported", 10), ("chunk decoded", 30), ("loaded", 31)],
        )

    def test_medians_in_time_order_with_the_probe(self) -> None:
        """Each step's median over the runs, sorted by time, the probe's answer among them."""
        runs = [
            {
                "ready_ms": 35.0,
                "cpu_ms": 9.0,
                "timeline": [step("a", 10), step("b", 30), step("c", 40)],
            },
            {
                "ready_ms": 37.0,
                "cpu_ms": 9.0,
                "timeline": [step("a", 12), step("b", 32), step("c", 44)],
            },
        ]
        lines = timeline_table(runs).splitlines()[2:]
        names = [line.split("|")[0].strip() for line in lines]
        self.assertEqual(names, ["a", "b", "first locate answered (the probe)", "c"])
        self.assertEqual(
            [line.split("|")[1].strip() for line in lines], ["11.0", "31.0", "36.0", "42.0"]
        )
        self.assertEqual(lines[1].split("|")[2].strip(), "+20.0")

    def test_a_baseline_starts_from_its_checkout(self) -> None:
        """--baseline DIR: gridreg's processes are started from DIR meanwhile, then from ours."""
        import tests._processes as processes
        from bench.slave_startup import _From, parse_args

        self.assertEqual(parse_args(["--baseline", "/x"]).baseline, "/x")
        own = processes.REPO_ROOT
        with _From(Path("/elsewhere")):
            self.assertEqual(processes.REPO_ROOT, Path("/elsewhere"))
        self.assertEqual(processes.REPO_ROOT, own)
        with _From(None):
            self.assertEqual(processes.REPO_ROOT, own)
