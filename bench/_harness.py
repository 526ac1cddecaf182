"""
What the side-by-side benchmarks share: starting either registry, driving
real Ice client processes through one measured window while sampling the
registry's CPU time (with L{bench._system}, re-exported here), and printing
tables.

Every benchmark runs IceGrid and gridreg in the same run, on the same
machine, with the same clients, because only the ratio between them is
meaningful: absolute figures move with the machine and its load. The
registry's own CPU time per request is the figure that matters most: on a
2-core machine the Python Ice client saturates long before either registry
does, so throughput alone mostly measures the client.
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from bench._system import (
    REPO_ROOT,
    ProcessWindow,
    cpu_seconds,
    machine,
    machine_busy_seconds,
    memory_kib,
    sample_window,
    wait_for_quiet,
)
from tests._processes import (
    IceClient,
    IceServer,
    RunningRegistry,
    free_port,
    ice_missing,
    start_gridregistry,
    start_ice_client,
    start_ice_server,
    start_icegridregistry,
)

REGISTRIES = ("icegrid", "gridreg", "gridreg-lean")
#: gridreg started by its lean launcher (C{python -m gridreg.registry}) instead of C{twist}
LEAN = "gridreg-lean"
LOOPBACK = "127.0.0.1"
#: Properties every gridreg registry a benchmark starts is given on top of
#: its own (C{--gridreg-property}, set by L{run}): what is measured is then
#: what a user configures, e.g. C{GridReg.Scheduler=normal}.
GRIDREG_PROPERTIES: dict[str, str] = {}
#: Must match C{HISTOGRAM_STEP} in C{tests/interop/ice_client.py}.
HISTOGRAM_STEP = math.log(1.01)


def header(name: str) -> None:
    """Say what is measured where, first thing in every benchmark's output."""
    info = machine()
    out(
        f"{name}: gridreg commit {info['commit']}, {info['date']}, {info['cpus']} cores "
        f"({info['cpu_model']}), Python {info['python']}"
    )


# What bench._system provides is used through this module too.
__all__ = [
    "LOOPBACK",
    "REGISTRIES",
    "REPO_ROOT",
    "ProcessWindow",
    "cpu_seconds",
    "machine",
    "machine_busy_seconds",
    "memory_kib",
    "sample_window",
    "wait_for_quiet",
]


# -- processes -----------------------------------------------------------------


def registry_ports() -> dict[str, str]:
    """Fixed client and server endpoints, so a restarted registry keeps its ports."""
    return {
        "IceGrid.Registry.Client.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
        "IceGrid.Registry.Server.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
    }


def start_registry(
    reactor: Any, kind: str, workdir: str | os.PathLike[str], properties: Mapping[str, str] = {}
) -> Deferred[RunningRegistry]:
    """
    Start C{icegridregistry}, C{python -m twisted gridregistry} or (C{LEAN})
    C{python -m gridreg.registry} (instance C{DemoIceGrid}, dynamic
    registration on) with extra C{properties}.
    """
    if kind == "icegrid":
        return start_icegridregistry(reactor, workdir, extra_props=properties)
    if kind in ("gridreg", LEAN):
        return start_gridregistry(
            reactor,
            workdir,
            {**GRIDREG_PROPERTIES, **properties},
            launcher="lean" if kind == LEAN else "twist",
        )
    raise ValueError(f"unknown registry {kind!r}")


def registry_pid(registry: RunningRegistry) -> int:
    """The PID to sample: the registry itself (twist does not fork)."""
    pid = registry.process.pid
    assert pid is not None
    return pid


async def start_clients(reactor: Any, locator: str, count: int) -> list[IceClient]:
    """
    Start C{count} interactive Ice clients and wait until each has its
    connection to the locator open (one locate each).
    """
    clients = [start_ice_client(reactor, locator) for _ in range(count)]
    results = await gatherResults(
        [c.call("getRegistry", timeout=60) for c in clients], consumeErrors=True
    )
    for result in results:
        if not result.get("ok"):
            raise RuntimeError(f"Ice client could not reach {locator}: {result}")
    return clients


@attrs.define
class Deployment:
    """One registry with a registered adapter and its Ice client processes."""

    kind: str
    workdir: str
    registry: RunningRegistry
    server: IceServer | None
    clients: list[IceClient]

    @property
    def pid(self) -> int:
        return registry_pid(self.registry)

    async def stop(self) -> None:
        stopping = [c.stop() for c in self.clients]
        if self.server is not None:
            stopping.append(self.server.stop())
        await DeferredList(stopping, consumeErrors=True)
        await self.registry.stop()


async def deploy(
    reactor: Any, kind: str, clients: int, properties: Mapping[str, str] = {}
) -> Deployment:
    """
    Start registry C{kind} (with extra C{properties}) in a fresh directory,
    register C{HelloAdapter} with a real Ice server, and start C{clients} Ice
    client processes.
    """
    workdir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    registry = await start_registry(reactor, kind, workdir, properties)
    try:
        server = await start_ice_server(reactor, registry.locator, ("HelloAdapter",), name=kind)
        started = await start_clients(reactor, registry.locator, clients)
    except BaseException:
        await registry.stop()
        raise
    return Deployment(kind, workdir, registry, server, started)


def remove_workdir(path: str, keep: bool) -> None:
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


# -- measured windows ----------------------------------------------------------


def merge_histograms(histograms: Iterable[Mapping[str, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for key, count in histogram.items():
            merged[int(key)] = merged.get(int(key), 0) + count
    return merged


def histogram_percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The C{fraction} quantile in milliseconds (bucket midpoint, 1% wide)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = fraction * (total - 1)
    seen = 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen > rank:
            return math.exp((key + 0.5) * HISTOGRAM_STEP) / 1000.0
    return None


T = TypeVar("T")


async def quietest(
    attempt: Callable[[], Awaitable[T]],
    noise: Callable[[T], float],
    threshold: float,
    attempts: int,
) -> T:
    """
    Measure up to C{attempts} times until other programs kept fewer than
    C{threshold} cores busy during the window (C{noise} of a result); return
    the quietest measurement. On a shared machine a parallel test run can
    start in the middle of a window, which the wait before it cannot
    prevent.
    """
    best: T | None = None
    for number in range(max(1, attempts)):
        result = await attempt()
        if best is None or noise(result) < noise(best):
            best = result
        if noise(result) < threshold:
            break
        out(
            f"    (other programs kept {noise(result):.2f} cores busy; "
            + ("measuring again)" if number + 1 < attempts else "keeping the quietest)")
        )
    assert best is not None
    return best


@attrs.frozen
class LoadResult:
    """One measured window of Ice clients against one registry."""

    count: int
    errors: int
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    registry: ProcessWindow
    clients: list[ProcessWindow]
    machine: ProcessWindow

    @property
    def other_cores(self) -> float:
        """Cores busy with neither the registry nor its clients: the noise."""
        ours = self.registry.cpu + sum(c.cpu for c in self.clients)
        return max(0.0, (self.machine.cpu - ours) / self.machine.wall) if self.machine.wall else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.registry.cpu / self.count * 1e6 if self.count else None

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "rate": self.rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "registry_cpu_s": self.registry.cpu,
            "registry_cores": self.registry.utilisation,
            "cpu_us_per_request": self.cpu_us_per_request,
            "client_cores": [c.utilisation for c in self.clients],
            "machine_cores": self.machine.utilisation,
            "other_cores": self.other_cores,
        }


async def run_clients(
    reactor: Any,
    registry_process: int,
    clients: Sequence[IceClient],
    options: Mapping[str, Any],
    warmup: float,
    duration: float,
    quiet: tuple[float, float] | None = None,
    on_window: Callable[[float, float], Deferred[Any]] | None = None,
) -> LoadResult:
    """
    Run the C{bench} command of C{ice_client.py} (with C{options}) in every
    client at once, all measuring the same window, which starts C{warmup}
    seconds from now; sample the registry's CPU over that window.

    @param quiet: C{(threshold, max_wait)} for L{wait_for_quiet} first.
    @param on_window: called with the window's wall-clock start and its
        duration before it starts (to profile it); its Deferred is awaited.
    """
    if quiet is not None:
        await wait_for_quiet(reactor, *quiet)
    start_at = time.time() + warmup + 0.2
    command = dict(options, duration=duration, start_at=start_at)
    pids = [registry_process] + [c.process.pid or 0 for c in clients]
    sampling = Deferred.fromCoroutine(sample_window(reactor, pids, start_at, duration))
    extra = on_window(start_at, duration) if on_window is not None else None
    calls = [c.call("bench", command, timeout=warmup + duration + 90) for c in clients]
    results = await gatherResults(calls, consumeErrors=True)
    windows = await sampling
    if extra is not None:
        await extra
    for result in results:
        if not result.get("ok"):
            raise RuntimeError(f"bench client failed: {result}")
    histogram = merge_histograms(r["histogram"] for r in results)
    count = sum(r["count"] for r in results)
    return LoadResult(
        count=count,
        errors=sum(r["errors"] for r in results),
        rate=sum(r["rate"] or 0.0 for r in results),
        p50_ms=histogram_percentile(histogram, 0.50),
        p99_ms=histogram_percentile(histogram, 0.99),
        max_ms=max((r["max_ms"] for r in results if r["max_ms"] is not None), default=None),
        registry=windows[0],
        clients=windows[1:-1],
        machine=windows[-1],
    )


# -- output --------------------------------------------------------------------


def out(text: str = "") -> None:
    """Write a line of results to stdout (the benchmark's product)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table, columns padded to their widest cell."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(str(c).rjust(w) for c, w in zip(cells, widths))

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def kilo(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}k"


def write_json(path: str | None, data: Mapping[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        out(f"results written to {path}")


# -- running -------------------------------------------------------------------


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registries",
        default="icegrid,gridreg",
        help="which registries to run, comma-separated (default: icegrid,gridreg; "
        f"{LEAN}: gridreg by its lean launcher, in the benches that take it)",
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the registries' directories")
    parser.add_argument("--verbose", action="store_true", help="log everything to stderr")
    parser.add_argument(
        "--gridreg-property",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="give every gridreg registry this property (repeatable), e.g. "
        "GridReg.Scheduler=normal",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.3,
        help="before each window wait until other programs use fewer cores than this",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="wait at most this many seconds for a quiet machine (0: do not wait)",
    )

    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="measure a window up to this many times while other programs disturb it",
    )


def quiet_option(args: argparse.Namespace) -> tuple[float, float] | None:
    return None if args.quiet_wait <= 0 else (args.quiet_below, args.quiet_wait)


def parse_property_options(items: Sequence[str]) -> dict[str, str]:
    """C{["A=1", "B=x y"]} -> C{{"A": "1", "B": "x y"}}; a malformed item stops the run."""
    properties = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise SystemExit(f"expected KEY=VALUE, not {item!r}")
        properties[key.strip()] = value.strip()
    return properties


def registries(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in REGISTRIES:
            raise SystemExit(f"unknown registry {name!r}; choose from {', '.join(REGISTRIES)}")
    return names


def compile_gridreg() -> None:
    """
    Byte-compile the gridreg package, as installing it does: this
    environment sets C{PYTHONDONTWRITEBYTECODE}, and without byte code every
    registry start-up compiled every gridreg module again (about 100 ms of
    CPU here), which an installed registry never does.
    """
    compileall.compile_dir(str(REPO_ROOT / "gridreg"), quiet=1)


@attrs.frozen
class Variant:
    """One registry a benchmark runs: its label, its kind, its extra properties."""

    name: str
    kind: str
    properties: Mapping[str, str] = attrs.field(factory=dict)


def variants(registries_text: str, schedulers_text: str = "") -> list[Variant]:
    """
    The registries to run: C{--registries}, with gridreg run once per
    C{GridReg.Scheduler} value in C{schedulers_text} (labelled
    C{gridreg/VALUE}) when it names any, so both policies meet the same
    machine in one run.
    """
    schedulers = [s.strip() for s in schedulers_text.split(",") if s.strip()]
    chosen = []
    for kind in registries(registries_text):
        if kind == "gridreg" and schedulers:
            chosen.extend(
                Variant(f"gridreg/{s}", kind, {"GridReg.Scheduler": s}) for s in schedulers
            )
        else:
            chosen.append(Variant(kind, kind))
    return chosen


def schedulers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schedulers",
        metavar="POLICIES",
        default="",
        help="run gridreg once per GridReg.Scheduler value (comma-separated, e.g. "
        "normal,batch), labelled gridreg/VALUE (default: once, with its default)",
    )


def run(
    main: Callable[[Any, argparse.Namespace], Coroutine[Any, Any, None]],
    args: argparse.Namespace,
) -> None:
    """
    Run C{main(reactor, args)} on the real reactor and exit with its
    outcome, gridreg byte-compiled first (L{compile_gridreg}).
    """
    reason = ice_missing()
    if reason is not None:
        raise SystemExit(f"cannot benchmark: {reason}")
    compile_gridreg()
    level = LogLevel.debug if args.verbose else LogLevel.warn
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=level)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    GRIDREG_PROPERTIES.update(parse_property_options(getattr(args, "gridreg_property", [])))
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, args)))
