# -*- test-case-name: tests.test_bench_slave_startup -*-
"""
How C{bench/slave_startup.py --timeline} reads the steps a slave marked
(C{bench/_slave_timeline.py}) and prints their medians in time order; what
a real fresh slave holds once it answers; C{--floor}'s processes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from twisted.trial.unittest import SynchronousTestCase, TestCase

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


class FreshSlaveModulesTests(TestCase):
    """
    A real fresh slave, synced from a real master, holds none of what it
    imports only when used by the time its state answers from the snapshot
    (the lean launcher under C{bench/_slave_timeline.py}, C{BENCH_MODULES}).
    """

    timeout = 120

    async def test_ready_without_what_it_loads_when_used(self) -> None:
        from twisted.internet import reactor

        from bench._grid import MASTER, Grid
        from bench.slave_startup import TIMELINE, filled_master, fresh_slave
        from tests.test_registry_launch import AT_FIRST_USE, SLAVE_WHEN_USED, WHEN_USED

        root = Path(self.mktemp()).resolve()
        grid = Grid(reactor, "gridreg", root / "grid", [MASTER, "Replica1"], "tcp")
        self.addCleanup(grid.stop_all)
        listing = root / "modules.txt"
        for name, value in (
            ("BENCH_MODULES", str(listing)),
            ("BENCH_T0", None),
            ("BENCH_TIMELINE", None),
        ):
            self.addCleanup(_restore, name, os.environ.get(name))
        os.environ["BENCH_MODULES"] = str(listing)
        await filled_master(reactor, grid, 50)
        result = await fresh_slave(reactor, grid, TIMELINE, "Replica1", 50)
        self.assertIn(
            "state loaded from the snapshot: it answers", [s["step"] for s in result["timeline"]]
        )
        modules = set(listing.read_text().split())
        self.assertIn("gridreg.registry.slave_role", modules)
        later = AT_FIRST_USE + WHEN_USED + SLAVE_WHEN_USED + ("gridreg.registry.master",)
        loaded = sorted(
            m for m in modules for name in later if m == name or m.startswith(name + ".")
        )
        self.assertEqual(loaded, [])


def _restore(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class FloorTests(TestCase):
    """C{--floor}: each process is timed to the first bytes its server sent (or to its end)."""

    timeout = 60

    async def test_floor_times_the_servers_first_answer(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol

        from bench.slave_startup import FLOORS, INTERPRETER_FLAGS, floor_process

        class Greet(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(b"IceP")

        port = reactor.listenTCP(0, Factory.forProtocol(Greet), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        for kind in ("floor", "floor-app"):
            result = await floor_process(reactor, FLOORS[kind], number)
            self.assertGreater(result["cpu_ms"], 0)
            self.assertGreater(result["exit_ms"], result["ready_ms"])
        for kind in ("python -c pass", "python -S -c pass"):
            passed = await floor_process(
                reactor, FLOORS[kind], number, INTERPRETER_FLAGS.get(kind, ())
            )
            self.assertEqual(passed["ready_ms"], passed["exit_ms"])
            self.assertGreater(passed["exit_ms"], 0)

    async def test_a_floor_that_never_hears_the_master_fails(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory, Protocol

        from bench.slave_startup import FLOORS, floor_process

        class Silent(Protocol):
            def connectionMade(self) -> None:
                self.transport.loseConnection()

        port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        with self.assertRaises(RuntimeError):
            await floor_process(reactor, FLOORS["floor"], port.getHost().port)
