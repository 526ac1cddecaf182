"""
A fresh slave's start-up: IceGrid's, and gridreg's launched by C{twist}
(C{python -m twisted gridregistry}) and by the lean launcher
(C{python -m gridreg.registry}), in turn against the same masters.

Both masters hold C{--objects} well-known objects (IceGrid's added through
its admin, gridreg's written to its store before it starts, as
L{bench.replication}'s sync part does); gridreg's replicas talk plain TCP.
Each round starts one fresh slave of each kind, one after the other, and
times launch to the first answer for the master's last object (C{ready},
what L{bench.replication} reports) and reads the slave's CPU time right
after (C{/proc/PID/stat}). Taking turns spreads a shared machine's noise over
all kinds; medians of C{--runs}. With C{--baseline DIR}, gridreg from the
checkout DIR (C{gridreg-base}: its own master and slaves, by the lean
launcher) takes its turn too, in the same run. With C{--floor}, three
processes that are no registry take their turns as well, timed the same
way (launch to the master's first answer): C{floor}, which imports only
the Twisted modules any Twisted replica needs (an epoll reactor, C{defer},
C{protocol}, C{twisted.protocols.amp}; L{bench._slave_floor}), connects to
gridreg's master and exits once the master has answered; C{floor-app},
the same plus C{twisted.application.internet} (Twisted's services and the
C{ClientService} a slave's session runs on); and C{python -c pass} (ready
= its exit), beside C{python -S -c pass}, the interpreter without C{site}
(whose C{.pth} files, a sandbox's among them, any Python program pays)::

    python -m bench.slave_startup [--objects 10000] [--runs 7] [--baseline DIR] [--floor]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

import tests._processes as processes

from bench._grid import (
    MASTER,
    Grid,
    build_gridreg_store_from,
    object_name,
    open_writer,
    parse_identity,
    probe_object,
    remove_tree,
)
from bench._harness import (
    LEAN,
    common_arguments,
    header,
    machine,
    out,
    registries,
    run,
    table,
    write_json,
)
from bench.startup_memory import cpu_ms

CATEGORY = "sync"
PREFIX = "obj"
ADD_CHUNK = 10_000
#: how each measured kind's slaves are started: the grid's kind, the launcher
LAUNCHES = {
    "icegrid": ("icegrid", "twist"),
    "gridreg": ("gridreg", "twist"),
    LEAN: ("gridreg", "lean"),
}
#: gridreg from another checkout (C{--baseline DIR}), by the lean launcher
BASELINE = "gridreg-base"
#: the lean launcher's steps, as L{bench._slave_timeline} marks them
TIMELINE = "timeline"
#: C{--floor}'s processes: what they import beyond Twisted's floor (None: C{python -c pass})
FLOORS: dict[str, Optional[list[str]]] = {
    "floor": [],
    "floor-app": ["twisted.application.internet"],
    "python -c pass": None,
    "python -S -c pass": None,
}
#: the interpreter's own flags for the floors that import nothing
INTERPRETER_FLAGS: dict[str, list[str]] = {"python -S -c pass": ["-S"]}
FLOOR_SCRIPT = Path(__file__).resolve().parent / "_slave_floor.py"


class _From:
    """Start gridreg's processes from the checkout C{root} (None: this one) meanwhile."""

    def __init__(self, root: Optional[Path]) -> None:
        self.root = root
        self.own = processes.REPO_ROOT

    def __enter__(self) -> None:
        if self.root is not None:
            processes.REPO_ROOT = self.root

    def __exit__(self, *exc: object) -> None:
        processes.REPO_ROOT = self.own


async def filled_master(reactor: Any, grid: Grid, count: int, root: Optional[Path] = None) -> None:
    """Start C{grid}'s master holding C{count} objects; return once it answers for the last."""
    if grid.kind == "gridreg":
        await build_gridreg_store_from(
            reactor, root, grid.data_dir(MASTER), CATEGORY, PREFIX, count
        )
        with _From(root):
            await grid.start(MASTER)
    else:
        await grid.start(MASTER)
        writer = await open_writer(reactor, grid)
        try:
            for start in range(0, count, ADD_CHUNK):
                await writer.add_many(CATEGORY, PREFIX, start, min(ADD_CHUNK, count - start), 32)
        finally:
            await writer.close()
    last = parse_identity(object_name(CATEGORY, PREFIX, count - 1))
    await probe_object(reactor, grid.client_port(MASTER), last, timeout=300)


async def fresh_slave(
    reactor: Any, grid: Grid, launcher: str, name: str, count: int, root: Optional[Path] = None
) -> dict[str, Any]:
    """One slave on an empty database: launch -> ready, and its CPU then."""
    grid.wipe(name)
    grid.launcher = launcher
    target = parse_identity(object_name(CATEGORY, PREFIX, count - 1))
    marks = grid.root / f"{name}-timeline.jsonl"
    if launcher == TIMELINE:
        marks.unlink(missing_ok=True)
        os.environ["BENCH_TIMELINE"] = str(marks)
    launch = time.monotonic()
    os.environ["BENCH_T0"] = repr(launch)
    with _From(root):
        starting = Deferred.fromCoroutine(grid.start(name))  # spawned now, not when awaited
    try:
        probe = await probe_object(reactor, grid.client_port(name), target, timeout=300)
    finally:
        await starting  # it has fired by now: the slave listens before it answers
    cpu = cpu_ms(grid.pid(name))
    await grid.stop(name)
    grid.wipe(name)
    result: dict[str, Any] = {"ready_ms": (probe.found - launch) * 1000.0, "cpu_ms": cpu}
    if launcher == TIMELINE:
        result["timeline"] = read_timeline(marks)
    return result


class _FloorProcess(ProcessProtocol):
    """Times one floor process: its C{ready CPU_MS} line's arrival, and its end."""

    def __init__(self) -> None:
        self.output = b""
        self.ready: Optional[float] = None
        self.cpu_ms: Optional[float] = None
        self.ended: Deferred[float] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if self.ready is None and self.output.startswith(b"ready ") and b"\n" in self.output:
            self.ready = time.monotonic()
            self.cpu_ms = float(self.output.split(b"\n")[0].split()[1])

    def errReceived(self, data: bytes) -> None:
        out(f"  floor: {data.decode(errors='replace').rstrip()}")

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(time.monotonic())


async def floor_process(
    reactor: Any, modules: Optional[list[str]], port: int, flags: Sequence[str] = ()
) -> dict[str, Any]:
    """
    One C{--floor} process (C{modules}: see L{FLOORS}): launch to the master's
    first answer (C{python [flags] -c pass}: to its end), and its CPU then.
    """
    import sys

    if modules is None:
        argv = [sys.executable, *flags, "-c", "pass"]
    else:
        argv = [sys.executable, str(FLOOR_SCRIPT), "127.0.0.1", str(port), *modules]
    process = _FloorProcess()
    launch = time.monotonic()
    reactor.spawnProcess(process, argv[0], argv, env=dict(os.environ))
    ended = await process.ended
    if modules is None:
        took = (ended - launch) * 1000.0
        return {"ready_ms": took, "cpu_ms": 0.0, "exit_ms": took}
    if process.ready is None:
        raise RuntimeError(f"the floor process never saw the master answer: {process.output!r}")
    return {
        "ready_ms": (process.ready - launch) * 1000.0,
        "cpu_ms": process.cpu_ms,
        "exit_ms": (ended - launch) * 1000.0,
    }


def read_timeline(path: Path) -> list[dict[str, Any]]:
    """The steps a slave marked, each named once (the first time, but for the state's loads)."""
    steps: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line in path.read_text().splitlines():
        step = json.loads(line)
        name = step["step"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            if name != "chunk decoded":
                continue
            steps = [s for s in steps if s["step"] != name]  # the last one counts
        steps.append(step)
    return steps


def timeline_table(runs: list[dict[str, Any]]) -> str:
    """The median of each step over C{runs}, in time order, with the time since the one before."""
    names = [step["step"] for step in runs[0]["timeline"]]
    medians = []
    for name in names:
        values = [s for run in runs for s in run["timeline"] if s["step"] == name]
        medians.append(
            (
                statistics.median(v["ms"] for v in values),
                name,
                f"{statistics.median(v['cpu_ms'] for v in values):.0f}",
                f"{statistics.median(v['main_cpu_ms'] for v in values):.0f}",
                f"{statistics.median(sum(v['gc_ms']) for v in values):.1f}",
            )
        )
    probe = statistics.median(run["ready_ms"] for run in runs)
    cpu = statistics.median(run["cpu_ms"] for run in runs)
    medians.append((probe, "first locate answered (the probe)", f"{cpu:.0f}", "", ""))
    rows = []
    before = 0.0
    for ms, name, *rest in sorted(medians, key=lambda m: m[0]):
        rows.append([name, f"{ms:.1f}", f"{ms - before:+.1f}", *rest])
        before = ms
    return table(["step (ended)", "ms", "step ms", "CPU ms", "main thread", "gc ms"], rows)


async def main(reactor: Any, args: argparse.Namespace) -> None:
    header("slave_startup")
    kinds = [k for k in registries(args.registries) if k in LAUNCHES]
    if "gridreg" in kinds and LEAN not in kinds and not args.twist_only:
        kinds.append(LEAN)
    baseline = None
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        compile_gridreg_at(baseline)
        kinds.insert(1 if kinds[:1] == ["icegrid"] else 0, BASELINE)
    launches = dict(LAUNCHES, **{BASELINE: (BASELINE, "lean")})
    floors = list(FLOORS) if args.floor else []
    root = Path(tempfile.mkdtemp(prefix="bench-slave-startup-"))
    names = [f"Replica{i + 1}" for i in range(args.runs)]
    grids: dict[str, Grid] = {}
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in [*kinds, *floors]}
    try:
        for kind in kinds:
            base = launches[kind][0]
            if base not in grids:
                registry = "gridreg" if base == BASELINE else base
                grids[base] = Grid(reactor, registry, root / base, [MASTER, *names], "tcp")
                await filled_master(
                    reactor, grids[base], args.objects, baseline if base == BASELINE else None
                )
                out(f"  {base}: master holds {args.objects} objects")
        for number, name in enumerate(names):
            for kind in kinds:  # in turn: the machine's noise spreads over all
                base, launcher = launches[kind]
                if kind in (LEAN, BASELINE) and args.timeline:
                    launcher = TIMELINE  # the baseline's: its own checkout's bench
                result = await fresh_slave(
                    reactor,
                    grids[base],
                    launcher,
                    name,
                    args.objects,
                    baseline if kind == BASELINE else None,
                )
                results[kind].append(result)
                out(
                    f"  round {number + 1}: {kind}: ready {result['ready_ms']:.0f} ms, "
                    f"CPU {result['cpu_ms']:.0f} ms"
                )
            for kind in floors:  # the same master's port: gridreg's, else IceGrid's
                master = grids.get("gridreg") or next(iter(grids.values()))
                result = await floor_process(
                    reactor,
                    FLOORS[kind],
                    master.client_port(MASTER),
                    INTERPRETER_FLAGS.get(kind, ()),
                )
                results[kind].append(result)
                out(f"  round {number + 1}: {kind}: ready {result['ready_ms']:.0f} ms")
    finally:
        for grid in grids.values():
            await grid.stop_all()
        remove_tree(root, args.keep)
    medians = {
        kind: {key: statistics.median(r[key] for r in runs) for key in ("ready_ms", "cpu_ms")}
        for kind, runs in results.items()
    }
    ice = medians.get("icegrid")
    rows = [
        [
            kind,
            f"{m['ready_ms']:.0f}",
            f"{m['cpu_ms']:.0f}" if FLOORS.get(kind, []) is not None else "",
            f"{m['ready_ms'] / ice['ready_ms']:.2f}x" if ice and kind != "icegrid" else "",
        ]
        for kind, m in medians.items()
    ]
    out()
    out(
        f"Fresh slave, {args.objects} objects on the master: medians of {args.runs} starts "
        "each, in turn (ready = launch -> first answer for the master's last object)"
    )
    out(table(["slave", "ready ms", "CPU ms", "ready / icegrid"], rows))
    if floors:
        out(
            "floor: Twisted's reactor, defer, protocol and amp imported, connected, the "
            "master's first bytes read (floor-app: and twisted.application.internet); "
            "python -c pass: launch to exit (-S: without site and its .pth files)"
        )
    for kind in (LEAN, BASELINE):
        if not (args.timeline and results.get(kind)):
            continue
        out()
        out(
            f"{kind}'s start-up, step by step (bench/_slave_timeline.py; ms since launch, "
            "medians; CPU of every thread, of the main thread; collector's time so far)"
        )
        out(timeline_table(results[kind]))
    write_json(
        args.json,
        {
            "benchmark": "slave_startup",
            "machine": machine(),
            "arguments": vars(args),
            "runs": results,
            "medians": medians,
        },
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--twist-only", action="store_true", help="gridreg's slaves by twist only (no lean)"
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="run the lean slaves (and the baseline's) under bench/_slave_timeline.py "
        "and print their steps",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the floor: Twisted's own imports, a connection, python -c pass",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="DIR",
        help=f"also run gridreg from the checkout DIR ({BASELINE}, by the lean launcher)",
    )
    common_arguments(parser)
    return parser.parse_args(argv)


def compile_gridreg_at(root: Path) -> None:
    """Byte-compile the gridreg package of checkout C{root}, as L{compile_gridreg} does ours."""
    import compileall

    compileall.compile_dir(str(root / "gridreg"), quiet=1)


if __name__ == "__main__":
    run(main, parse_args())
