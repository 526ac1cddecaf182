"""
Registry replication: IceGrid and gridreg side by side, in one run.

Three measurements, each on a fresh grid of real processes on loopback
(IceGrid: C{icegridregistry} replicas; gridreg: C{twist gridregistry}
replicas over mutual TLS):

  - lag: a master and one slave. N times, add a well-known object on the
    master through the admin session (IceGrid: a real Ice client holding an
    admin session, C{bench/ice_admin_driver.py}; gridreg: an
    L{AdminSession} in a process of its own, C{bench/gridreg_admin_driver.py},
    or in this one with C{--gridreg-writer inline}) while a real Ice client pointed only at
    the slave polls C{findObjectById} for it every 0.5 ms. Lag is from the
    write's start to the first poll that finds it; "visible at ack" means no
    poll that started after the acknowledgement missed the object.
  - sync: a master holding N objects (IceGrid: added through its admin;
    gridreg: written into the master's SQLite store before it starts) and a
    fresh slave: from launching the slave to its first answer for the last
    object (probed every 2 ms from this process), and to its client
    endpoint's first validated connection (process start-up alone); the
    peak RSS (VmHWM) of master and slave once the slave answers; for
    gridreg, the master's longest reactor delay while it served the
    snapshot (C{GridReg.Debug.ReactorProbe}, a 5 ms timer that logs how
    late it ran each second), next to the longest in the seconds before.
    With C{--sync-writes RATE} the master takes admin writes at RATE/s (one
    in flight, through the same writer as the other parts) for
    C{--sync-writes-baseline} s with no slave syncing, then on while the
    fresh slave starts and syncs: their acknowledgement latency in both
    windows, and whether the slave, once ready, knows the last write
    acknowledged before then, and soon (polled, bounded by
    C{--sync-writes-wait}) the last of all and every one.
  - throughput: a master and two slaves; K admin writes with 1 and 16 in
    flight; writes/s and the CPU the master, the slaves and the writer
    (each registry's admin client, in its own process) spent per write.

    python -m bench.replication [--parts lag,sync,throughput] [--lag-writes 200]
                                [--sync-sizes 1,10000,100000] [--sync-repeats 3]
                                [--sync-writes RATE]
                                [--writes 2000] [--in-flight 1,16] [--rounds 1]
                                [--json FILE]

With C{--rounds N} the lag and throughput parts run N times, IceGrid and
gridreg taking turns, and every figure reported is the median of the rounds.
With C{--baseline DIR} the lag and throughput parts also run gridreg from
the checkout DIR (as C{gridreg-base}, e.g. C{git worktree add --detach DIR
main}): before and after a change, in one run, the same writer for both.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import eventFromJSON

from bench._grid import (
    MASTER,
    Grid,
    IceGridWriter,
    IceObserver,
    PacedWrites,
    Writer,
    build_gridreg_store,
    internal_argument,
    missing_objects,
    object_name,
    open_writer,
    parse_identity,
    probe_object,
    remove_tree,
    wait_synced,
)
from bench._profile import start_recording, summary
from bench._system import memory_kib
from bench._harness import (
    LEAN,
    common_arguments,
    cpu_seconds,
    fmt,
    machine,
    machine_busy_seconds,
    out,
    ratio,
    registries,
    run,
    table,
    wait_for_quiet,
    write_json,
)

GOALS = (
    "lag p50 and max no worse than IceGrid's, every write visible on the slave when "
    "acknowledged; a fresh slave synced no slower than IceGrid's"
)
ADD_CHUNK = 10_000
#: gridreg from another checkout (--baseline DIR), in the same run
BASELINE = "gridreg-base"
#: the order of the columns (LEAN: gridreg by its lean launcher)
COLUMNS = ("icegrid", BASELINE, "gridreg", LEAN)
#: how a kind's ratio column is headed
RATIO_LABELS = {BASELINE: "base"}
SYNC_CATEGORY = "sync"
SYNC_PREFIX = "obj"


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(value: float | None) -> str:
    return fmt(None if value is None else value * 1000.0, ".2f")


def side_by_side(kinds: list[str], rows: list[tuple[str, dict[str, Any], str]]) -> str:
    """
    One row per metric: its value per registry (formatted) and each gridreg
    kind's ratio to IceGrid; C{rows} are (metric, {kind: raw value}, format spec).
    """
    order = [k for k in COLUMNS if k in kinds]
    ours = [k for k in order if k != "icegrid"] if "icegrid" in kinds else []
    headers = ["metric", *order, *(f"{RATIO_LABELS.get(k, k)}/icegrid" for k in ours)]
    lines = []
    for metric, values, spec in rows:
        line = [metric]
        for kind in order:
            value = values.get(kind)
            line.append(value if isinstance(value, str) else fmt(value, spec))
        ice = values.get("icegrid")
        for kind in ours:
            value = values.get(kind)
            numeric = isinstance(ice, (int, float)) and isinstance(value, (int, float))
            line.append(fmt(ratio(value, ice), ".2f", "x") if numeric else "")
        lines.append(line)
    return table(headers, lines)


def own_process(args: argparse.Namespace) -> bool:
    """Whether gridreg's writer runs in a process of its own (C{--gridreg-writer})."""
    return getattr(args, "gridreg_writer", "process") == "process"


def grid_for(
    reactor: Any, kind: str, root: Path, names: list[str], args: argparse.Namespace
) -> Grid:
    """The grid of C{kind}: gridreg's for L{BASELINE} too."""
    registry = "gridreg" if kind == BASELINE else kind
    return Grid(reactor, registry, root, names, args.gridreg_internal)


async def start_replicas(grid: Grid, kind: str, names: list[str], args: argparse.Namespace) -> None:
    """Start C{names} in order; L{BASELINE}'s from the checkout C{--baseline}."""
    import tests._processes as processes

    own = processes.REPO_ROOT
    if kind == BASELINE:
        processes.REPO_ROOT = Path(args.baseline).resolve()
    try:
        for name in names:
            await grid.start(name)
    finally:
        processes.REPO_ROOT = own


async def quiet(reactor: Any, args: argparse.Namespace) -> None:
    if args.quiet_wait > 0:
        await wait_for_quiet(reactor, args.quiet_below, args.quiet_wait)


@attrs.define
class Window:
    """CPU used by our processes and by the whole machine since the window started."""

    pids: list[int]
    wall: float
    ours: float
    machine: float

    @classmethod
    def start(cls, pids: list[int]) -> Window:
        return cls(pids, time.monotonic(), cls._ours(pids), machine_busy_seconds())

    @staticmethod
    def _ours(pids: list[int]) -> float:
        return sum(cpu_seconds(p) for p in pids if p)

    def other_cores(self) -> float:
        """Cores other programs kept busy meanwhile: the noise in the figures."""
        wall = time.monotonic() - self.wall
        machine = machine_busy_seconds() - self.machine
        ours = self._ours(self.pids) - self.ours
        return max(0.0, machine - ours) / wall if wall > 0 else 0.0


# -- lag -----------------------------------------------------------------------------


async def lag_once(writer: Writer, observer: IceObserver, identity: str) -> dict[str, Any]:
    polled = await observer.start_poll(identity, timeout=10.0, interval=0.0005)
    start, ack = await writer.add(identity)
    poll = await polled
    if not poll["ok"] or not poll["found"]:
        raise RuntimeError(f"{identity} never appeared on the slave: {poll}")
    missed_after_ack = poll["last_miss_start"] is not None and poll["last_miss_start"] >= ack
    return {
        "ack_s": ack - start,
        "lag_s": poll["found_end"] - start,
        "visible_at_ack": not missed_after_ack,
        "polls": poll["polls"],
        # the times as read, for bench.lag_tail's steps
        "start": start,
        "found_start": poll["found_start"],
        "found_end": poll["found_end"],
    }


async def measure_lag(
    reactor: Any, kind: str, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    grid = grid_for(reactor, kind, root / f"{kind}-lag", [MASTER, "Replica1"], args)
    writer: Writer | None = None
    observer: IceObserver | None = None
    try:
        await start_replicas(grid, kind, [MASTER, "Replica1"], args)
        writer = await open_writer(reactor, grid, own_process(args))
        observer = await IceObserver.open(reactor, grid, "Replica1")
        await wait_synced(reactor, grid, writer, ["Replica1"], "lag")
        for i in range(args.lag_warmup):
            await lag_once(writer, observer, f"lagwarm/obj{i}")
        await quiet(reactor, args)
        pids = [
            grid.pid(MASTER),
            grid.pid("Replica1"),
            os.getpid(),
            observer.driver.process.pid or 0,
        ]
        if isinstance(writer, IceGridWriter):
            pids.append(writer.driver.process.pid or 0)
        window = Window.start(pids)
        samples = []
        # this process times the writes: keep its own collector's pauses out of them
        gc.collect()
        gc.disable()
        try:
            for i in range(args.lag_writes):
                samples.append(await lag_once(writer, observer, f"lag/obj{i}"))
        finally:
            gc.enable()
        other_cores = window.other_cores()
    finally:
        if observer is not None:
            await observer.close()
        if writer is not None:
            await writer.close()
        await grid.stop_all()
        remove_tree(grid.root, args.keep)
    lags = [s["lag_s"] for s in samples]
    acks = [s["ack_s"] for s in samples]
    result = {
        "writes": len(samples),
        "ack_p50_s": percentile(acks, 0.5),
        "ack_p99_s": percentile(acks, 0.99),
        "ack_max_s": max(acks),
        "lag_p50_s": percentile(lags, 0.5),
        "lag_p99_s": percentile(lags, 0.99),
        "lag_max_s": max(lags),
        "visible_at_ack": sum(1 for s in samples if s["visible_at_ack"]),
        "visible_before_ack": sum(1 for s in samples if s["lag_s"] <= s["ack_s"]),
        "polls_mean": statistics.mean(s["polls"] for s in samples),
        "other_cores": other_cores,
        "samples": samples,
    }
    out(
        f"  {kind}: lag p50 {ms(result['lag_p50_s'])} ms, p99 {ms(result['lag_p99_s'])} ms, "
        f"max {ms(result['lag_max_s'])} ms; ack p50 {ms(result['ack_p50_s'])} ms; "
        f"visible at ack {result['visible_at_ack']}/{result['writes']}; "
        f"other programs kept {other_cores:.2f} cores busy"
    )
    return result


def _rounds(args: argparse.Namespace) -> str:
    return f"; median of {args.rounds} rounds" if args.rounds > 1 else ""


def report_lag(
    kinds: list[str], results: dict[str, dict[str, Any]], args: argparse.Namespace
) -> None:
    out()
    out(
        f"Replication lag: {args.lag_writes} admin writes on the master, master + 1 slave "
        f"(ms from the write's start{_rounds(args)})"
    )

    def row(metric: str, key: str) -> tuple[str, dict[str, Any], str]:
        return metric, {k: results[k][key] * 1000.0 for k in kinds}, ".2f"

    out(
        side_by_side(
            kinds,
            [
                row("write acknowledged p50 ms", "ack_p50_s"),
                row("write acknowledged p99 ms", "ack_p99_s"),
                row("visible on slave p50 ms", "lag_p50_s"),
                row("visible on slave p99 ms", "lag_p99_s"),
                row("visible on slave max ms", "lag_max_s"),
                (
                    "visible on slave at ack",
                    {k: f"{results[k]['visible_at_ack']}/{results[k]['writes']}" for k in kinds},
                    "",
                ),
                (
                    "visible before ack arrived",
                    {
                        k: f"{results[k]['visible_before_ack']}/{results[k]['writes']}"
                        for k in kinds
                    },
                    "",
                ),
            ],
        )
    )


# -- sync ----------------------------------------------------------------------------


#: GridReg.Debug.ReactorProbe of a gridreg master in the sync part (ms)
PROBE_MS = 5


def reactor_delays(lines: list[str], start: float, end: float) -> list[tuple[float, float, float]]:
    """
    The reactor probe's reports a gridreg logged between two wall-clock
    times, in ms: the longest delay, and the most CPU its reactor thread and
    its process used between two ticks (what gridreg itself held it up by).
    """
    delays = []
    for line in lines:
        if "reactor probe" not in line:
            continue
        try:
            event = eventFromJSON(line.lstrip("\x1e"))
        except ValueError:
            continue
        # a report covers the second before it
        if start <= event.get("log_time", 0) and event["log_time"] - 1.0 <= end:
            delays.append(
                (float(event["delay_ms"]), float(event["thread_ms"]), float(event["process_ms"]))
            )
    return delays


#: where the sync part's live writes (C{--sync-writes}) go
LIVE_CATEGORY = "live"


def latency_summary(samples: list[tuple[str, float, float]], seconds: float) -> dict[str, Any]:
    acks = [ack - start for _, start, ack in samples]
    return {
        "writes": len(acks),
        "writes_per_s": len(acks) / seconds if seconds > 0 else None,
        "ack_p50_s": percentile(acks, 0.5),
        "ack_p99_s": percentile(acks, 0.99),
        "ack_max_s": max(acks, default=None),
    }


async def fresh_slave(
    reactor: Any,
    grid: Grid,
    name: str,
    count: int,
    writer: Writer | None = None,
    args: argparse.Namespace | None = None,
) -> dict[str, Any]:
    """
    Start a slave on an empty database; time its start-up and its sync.
    With C{--sync-writes} (and C{writer}), the master takes admin writes at
    that rate for C{--sync-writes-baseline} seconds with no slave syncing,
    then on while the slave starts and syncs, until it is ready; the slave
    must then know the last write acknowledged before it was ready, and
    soon every write.
    """
    rate = args.sync_writes if args is not None and writer is not None else 0.0
    grid.wipe(name)
    target = parse_identity(object_name(SYNC_CATEGORY, SYNC_PREFIX, count - 1))
    result: dict[str, Any] = {}
    live: PacedWrites | None = None
    baseline: list[tuple[str, float, float]] = []
    if rate > 0:
        assert writer is not None and args is not None
        quiet_writes = PacedWrites(reactor, writer, rate, f"{LIVE_CATEGORY}/{name}-quiet-")
        began = time.monotonic()
        quiet_writes.start()
        await deferLater(reactor, args.sync_writes_baseline)
        baseline = await quiet_writes.stop()
        result["writes_quiet"] = latency_summary(baseline, time.monotonic() - began)
        live = PacedWrites(reactor, writer, rate, f"{LIVE_CATEGORY}/{name}-sync-")
        live.start()
    launch = time.monotonic()
    launch_wall = time.time()
    starting = Deferred.fromCoroutine(grid.start(name))  # spawned now, not when awaited
    try:
        probe = await probe_object(reactor, grid.client_port(name), target, timeout=300)
    finally:
        await starting
    found_wall = time.time() - (time.monotonic() - probe.found)
    result.update({"up_s": probe.connected - launch, "ready_s": probe.found - launch})
    if live is not None:
        assert args is not None
        port = grid.client_port(name)
        # no write starts once the slave is ready; the one in flight is awaited below
        stopped = Deferred.fromCoroutine(live.stop())
        # the last write this process saw acknowledged before the slave was ready
        before_ready = [s for s in live.samples if s[2] < probe.found]
        if before_ready:
            last_before = before_ready[-1][0]
            result["missing_at_ready"] = len(await missing_objects(reactor, port, [last_before]))
            if result["missing_at_ready"]:
                # how long the slave answered without it: polled, bounded
                seen = await probe_object(
                    reactor, port, parse_identity(last_before), timeout=args.sync_writes_wait
                )
                result["hidden_after_ready_s"] = seen.found - probe.found
        during = await stopped
        window = max([probe.found, *(s[2] for s in during[-1:])]) - launch
        result["writes_sync"] = latency_summary(during, window)
        result["writes_before_ready"] = len(before_ready)
        if during:
            identity, _, last_ack = during[-1]
            seen = await probe_object(
                reactor, port, parse_identity(identity), timeout=args.sync_writes_wait
            )
            result["last_write_visible_after_s"] = seen.found - last_ack
        result["missing_eventually"] = len(
            await missing_objects(reactor, port, [s[0] for s in baseline + during])
        )
    result["master_hwm_kib"] = memory_kib(grid.pid(MASTER))["VmHWM"]
    result["slave_hwm_kib"] = memory_kib(grid.pid(name))["VmHWM"]
    if grid.kind == "gridreg":
        lines = grid.running[MASTER].process.lines
        during_probe = reactor_delays(lines, launch_wall, found_wall)
        before = reactor_delays(lines, launch_wall - 5.0, launch_wall - 1.0)
        result["master_stall_ms"] = max((d[0] for d in during_probe), default=0.0)
        result["master_busy_thread_ms"] = max((d[1] for d in during_probe), default=0.0)
        result["master_busy_process_ms"] = max((d[2] for d in during_probe), default=0.0)
        result["master_stall_before_ms"] = max((d[0] for d in before), default=0.0)
        result["master_busy_before_ms"] = max((d[2] for d in before), default=0.0)
    await grid.stop(name)
    grid.wipe(name)
    return result


def live_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A size's live writes over its runs: medians of latencies, worst of correctness."""
    if not all("writes_sync" in r for r in runs):
        return {}

    def median(part: str, key: str) -> float | None:
        values = [r[part][key] for r in runs if r[part][key] is not None]
        return statistics.median(values) if values else None

    visible = [r["last_write_visible_after_s"] for r in runs if "last_write_visible_after_s" in r]
    return {
        "quiet_ack_p50_s": median("writes_quiet", "ack_p50_s"),
        "quiet_ack_p99_s": median("writes_quiet", "ack_p99_s"),
        "sync_ack_p50_s": median("writes_sync", "ack_p50_s"),
        "sync_ack_p99_s": median("writes_sync", "ack_p99_s"),
        "sync_ack_max_s": max(r["writes_sync"]["ack_max_s"] or 0.0 for r in runs),
        "sync_writes_per_s": median("writes_sync", "writes_per_s"),
        "missing_at_ready": sum(r.get("missing_at_ready", 0) for r in runs),
        "missing_eventually": sum(r["missing_eventually"] for r in runs),
        "acknowledged": sum(r["writes_quiet"]["writes"] + r["writes_sync"]["writes"] for r in runs),
        "last_write_visible_max_s": max(visible, default=None),
        "hidden_after_ready_max_s": max(
            (r.get("hidden_after_ready_s", 0.0) for r in runs), default=None
        ),
        "master_busy_before_ms": max((r.get("master_busy_before_ms", 0.0) for r in runs)),
    }


def live_line(r: dict[str, Any]) -> str:
    """The sync part's live writes in one run, as one line (empty without them)."""
    if "writes_sync" not in r:
        return ""
    q, w = r["writes_quiet"], r["writes_sync"]
    visible = r.get("last_write_visible_after_s")
    return (
        f"\n    writes: without a slave syncing {q['writes']} "
        f"({q['writes_per_s']:.0f}/s) ack p50 {ms(q['ack_p50_s'])} p99 {ms(q['ack_p99_s'])} ms; "
        f"during the sync {w['writes']} ({w['writes_per_s']:.0f}/s) ack p50 "
        f"{ms(w['ack_p50_s'])} p99 {ms(w['ack_p99_s'])} max {ms(w['ack_max_s'])} ms; "
        f"last acked before ready missing on the slave at ready: "
        f"{r.get('missing_at_ready', 'n/a')} (found {ms(r.get('hidden_after_ready_s'))} ms "
        "after ready); last write visible "
        f"{ms(visible)} ms after its ack; missing at the end "
        f"{r['missing_eventually']}/{q['writes'] + w['writes']}"
    )


async def measure_sync(
    reactor: Any, kind: str, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    sizes = sorted(int(s) for s in args.sync_sizes.split(","))
    names = [f"Replica{i + 1}" for i in range(len(sizes) * args.sync_repeats)]
    grid = Grid(reactor, kind, root / f"{kind}-sync", [MASTER, *names], args.gridreg_internal)
    grid.extra[MASTER] = {"GridReg.Debug.ReactorProbe": str(PROBE_MS)}
    results: dict[str, Any] = {}
    fresh = iter(names)
    writer: Writer | None = None
    added = 0
    add_seconds = 0.0
    try:
        for count in sizes:
            if grid.kind == "gridreg":
                # a new master whose store holds exactly `count` objects
                if writer is not None:
                    await writer.close()
                    writer = None
                await grid.stop(MASTER)
                grid.wipe(MASTER)
                seconds = await build_gridreg_store(
                    grid.data_dir(MASTER), SYNC_CATEGORY, SYNC_PREFIX, count
                )
                out(f"  gridreg: master store with {count} objects written in {seconds:.1f} s")
                await grid.start(MASTER)
                if args.sync_writes > 0:
                    writer = await open_writer(reactor, grid, own_process(args))
            else:
                if MASTER not in grid.running:
                    await grid.start(MASTER)
                    writer = await open_writer(reactor, grid)
                assert writer is not None
                stopped_short = False
                while added < count:
                    chunk = min(ADD_CHUNK, count - added)
                    add_seconds += await writer.add_many(
                        SYNC_CATEGORY, SYNC_PREFIX, added, chunk, 32
                    )
                    added += chunk
                    projected = add_seconds / added * count
                    if added < count and projected > args.max_add_seconds:
                        out(
                            f"  icegrid: adding {count} objects would take about "
                            f"{projected:.0f} s (> {args.max_add_seconds:.0f} s): skipped"
                        )
                        stopped_short = True
                        break
                if stopped_short:
                    results[str(count)] = {"skipped": f"adding would take ~{projected:.0f} s"}
                    break
                out(
                    f"  icegrid: master holds {added} objects (added through the admin in "
                    f"{add_seconds:.1f} s)"
                )
            last = parse_identity(object_name(SYNC_CATEGORY, SYNC_PREFIX, count - 1))
            await probe_object(reactor, grid.client_port(MASTER), last, timeout=300)
            runs = []
            for _ in range(args.sync_repeats):
                await quiet(reactor, args)
                run_result = await fresh_slave(reactor, grid, next(fresh), count, writer, args)
                stall = (
                    f"; master's longest reactor delay {run_result['master_stall_ms']:.1f} ms "
                    f"({run_result['master_stall_before_ms']:.1f} ms in the seconds before), "
                    f"held up by itself at most {run_result['master_busy_thread_ms']:.1f} ms "
                    f"(reactor thread) / {run_result['master_busy_process_ms']:.1f} ms "
                    f"(process; {run_result['master_busy_before_ms']:.1f} ms before)"
                    if "master_stall_ms" in run_result
                    else ""
                )
                out(
                    f"  {kind}: fresh slave, {count} objects: up after "
                    f"{run_result['up_s'] * 1000:.0f} ms, answers for the last object after "
                    f"{run_result['ready_s'] * 1000:.0f} ms; peak RSS master "
                    f"{run_result['master_hwm_kib'] / 1024:.0f} MiB, slave "
                    f"{run_result['slave_hwm_kib'] / 1024:.0f} MiB{stall}{live_line(run_result)}"
                )
                runs.append(run_result)
            results[str(count)] = {
                "up_median_s": statistics.median(r["up_s"] for r in runs),
                "ready_median_s": statistics.median(r["ready_s"] for r in runs),
                "ready_max_s": max(r["ready_s"] for r in runs),
                **{
                    key: max((r[key] for r in runs if key in r), default=None)
                    for key in (
                        "master_stall_ms",
                        "master_busy_thread_ms",
                        "master_busy_process_ms",
                    )
                },
                **live_summary(runs),
                "master_hwm_mib": max(r["master_hwm_kib"] for r in runs) / 1024,
                "slave_hwm_mib": statistics.median(r["slave_hwm_kib"] for r in runs) / 1024,
                "runs": runs,
            }
    finally:
        if writer is not None:
            await writer.close()
        await grid.stop_all()
        remove_tree(grid.root, args.keep)
    return results


def report_sync(
    kinds: list[str], results: dict[str, dict[str, Any]], args: argparse.Namespace
) -> None:
    out()
    out(
        f"Fresh slave sync: launch -> first answer for the master's last object "
        f"(median of {args.sync_repeats}; 'up' = client endpoint first validated a connection)"
    )
    rows = []
    for size in sorted({s for k in kinds for s in results[k]}, key=int):
        for metric, key in (
            ("up", "up_median_s"),
            ("ready", "ready_median_s"),
            ("ready max", "ready_max_s"),
            ("master peak RSS MiB", "master_hwm_mib"),
            ("slave peak RSS MiB", "slave_hwm_mib"),
            ("master reactor delay max", "master_stall_ms"),
            ("master reactor held by itself max", "master_busy_process_ms"),
            *(
                (
                    ("writes without sync: ack p50", "quiet_ack_p50_s"),
                    ("writes without sync: ack p99", "quiet_ack_p99_s"),
                    ("writes during sync: ack p50", "sync_ack_p50_s"),
                    ("writes during sync: ack p99", "sync_ack_p99_s"),
                    ("writes during sync: ack max", "sync_ack_max_s"),
                    ("last write visible after its ack, max", "last_write_visible_max_s"),
                    (
                        "write acked before ready hidden after ready, max",
                        "hidden_after_ready_max_s",
                    ),
                )
                if args.sync_writes > 0
                else ()
            ),
        ):
            values: dict[str, Any] = {}
            for k in kinds:
                entry = results[k].get(size, {})
                scale = 1000.0 if key.endswith("_s") else 1.0
                values[k] = (
                    entry["skipped"]
                    if "skipped" in entry
                    else (entry[key] * scale if entry.get(key) is not None else None)
                )
            unit = "" if "RSS" in metric else " ms"
            spec = ".1f" if "writes" in metric or "write " in metric else ".0f"
            rows.append((f"{int(size):>7} objects: {metric}{unit}", values, spec))
        if args.sync_writes > 0:
            values = {}
            for k in kinds:
                entry = results[k].get(size, {})
                values[k] = (
                    entry.get("skipped")
                    or f"{entry['missing_at_ready']} at ready / {entry['missing_eventually']} "
                    f"of {entry['acknowledged']}"
                    if "acknowledged" in entry or "skipped" in entry
                    else None
                )
            rows.append((f"{int(size):>7} objects: acknowledged writes missing", values, ""))
    out(side_by_side(kinds, rows))
    out(
        "('up': the slave's client endpoint first validated an Ice connection; IceGrid opens "
        "it only once synced with the master, so its 'up' includes the sync)"
    )


# -- throughput ----------------------------------------------------------------------


async def measure_throughput(
    reactor: Any, kind: str, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    slaves = ["Replica1", "Replica2"]
    grid = grid_for(reactor, kind, root / f"{kind}-throughput", [MASTER, *slaves], args)
    writer: Writer | None = None
    results: dict[str, Any] = {}
    try:
        await start_replicas(grid, kind, [MASTER, *slaves], args)
        writer = await open_writer(reactor, grid, own_process(args))
        await wait_synced(reactor, grid, writer, slaves, "throughput")
        await writer.add_many("tputwarm", "obj", 0, 100, 16)
        for in_flight in (int(n) for n in args.in_flight.split(",")):
            await quiet(reactor, args)
            names = [MASTER, *slaves]
            pids = [grid.pid(n) for n in names] + [os.getpid()]
            # the writer's own process (IceGrid's always, gridreg's unless --gridreg-writer inline)
            client = writer.driver.process.pid or 0 if isinstance(writer, IceGridWriter) else 0
            pids.append(client)
            window = Window.start(pids)
            before = {n: cpu_seconds(grid.pid(n)) for n in names}
            client_before = cpu_seconds(client if client else os.getpid())
            profiles = []
            if args.profile and grid.kind == "gridreg":
                for n in (MASTER, slaves[0]):
                    output = Path(args.profile).resolve() / f"gridreg-writes-{n}-{in_flight}.txt"
                    profiles.append(
                        start_recording(
                            reactor, grid.pid(n), time.time(), args.profile_seconds, output
                        )
                    )
            seconds = await writer.add_many("tput", f"f{in_flight}-", 0, args.writes, in_flight)
            for profiled in profiles:
                out(summary(await profiled, args.profile_top))
            cpu = {n: cpu_seconds(grid.pid(n)) - before[n] for n in names}
            client_cpu = cpu_seconds(client if client else os.getpid()) - client_before
            other_cores = window.other_cores()
            last = parse_identity(object_name("tput", f"f{in_flight}-", args.writes - 1))
            for slave in slaves:  # every write reached every slave
                await probe_object(reactor, grid.client_port(slave), last, timeout=60)
            results[str(in_flight)] = {
                "writes": args.writes,
                "seconds": seconds,
                "writes_per_s": args.writes / seconds,
                "master_cpu_us_per_write": cpu[MASTER] / args.writes * 1e6,
                "slave_cpu_us_per_write": sum(cpu[s] for s in slaves)
                / len(slaves)
                / args.writes
                * 1e6,
                "client_cpu_us_per_write": client_cpu / args.writes * 1e6,
                "other_cores": other_cores,
            }
            r = results[str(in_flight)]
            out(
                f"  {kind}: {in_flight:>2} in flight: {r['writes_per_s']:.0f} writes/s, master "
                f"{r['master_cpu_us_per_write']:.0f} us CPU/write, each slave "
                f"{r['slave_cpu_us_per_write']:.0f} us CPU/write, the writer "
                f"{r['client_cpu_us_per_write']:.0f} us CPU/write; other programs kept "
                f"{other_cores:.2f} cores busy"
            )
    finally:
        if writer is not None:
            await writer.close()
        await grid.stop_all()
        remove_tree(grid.root, args.keep)
    return results


def report_throughput(
    kinds: list[str], results: dict[str, dict[str, Any]], args: argparse.Namespace
) -> None:
    out()
    out(
        f"Write throughput: {args.writes} admin writes, master + 2 slaves "
        f"(CPU from /proc over the writes; on a 2-core machine{_rounds(args)})"
    )
    rows = []
    for in_flight in args.in_flight.split(","):
        for metric, key, spec in (
            ("writes/s", "writes_per_s", ".0f"),
            ("master us CPU/write", "master_cpu_us_per_write", ".0f"),
            ("slave us CPU/write", "slave_cpu_us_per_write", ".0f"),
            ("writer us CPU/write", "client_cpu_us_per_write", ".0f"),
        ):
            rows.append(
                (
                    f"{int(in_flight):>2} in flight: {metric}",
                    {k: results[k][in_flight][key] for k in kinds},
                    spec,
                )
            )
    out(side_by_side(kinds, rows))


# -- main ----------------------------------------------------------------------------


PARTS = {
    "lag": (measure_lag, report_lag),
    "sync": (measure_sync, report_sync),
    "throughput": (measure_throughput, report_throughput),
}


#: the parts that --rounds repeats (a sync takes its own --sync-repeats)
ROUNDED = ("lag", "throughput")


def median_result(measured: list[Any]) -> Any:
    """
    One result from several rounds' (dicts of the same shape): the median
    of every number, the first round's value of anything else; lists of
    samples are concatenated.
    """
    first = measured[0]
    if len(measured) == 1:
        return first
    if isinstance(first, dict):
        return {key: median_result([m[key] for m in measured]) for key in first}
    if isinstance(first, list):
        return [item for m in measured for item in m]
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    return statistics.median(measured)


async def main(reactor: Any, args: argparse.Namespace) -> None:
    kinds = registries(args.registries)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if args.baseline:
        if "sync" in parts:
            raise SystemExit("--baseline takes the lag and throughput parts only")
        kinds.insert(kinds.index("gridreg") if "gridreg" in kinds else len(kinds), BASELINE)
    for part in parts:
        if part not in PARTS:
            raise SystemExit(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    root = Path(tempfile.mkdtemp(prefix="bench-replication-"))
    # an interrupted run skips the finally below; the reactor's shutdown does not
    reactor.addSystemEventTrigger("after", "shutdown", remove_tree, root, args.keep)
    results: dict[str, dict[str, Any]] = {}
    rounds: dict[str, dict[str, list[Any]]] = {}
    try:
        for part in parts:
            measure, _ = PARTS[part]
            out(f"{part}:")
            rounds[part] = {kind: [] for kind in kinds}
            # the registries take turns, round after round: both see the same noise
            for number in range(args.rounds if part in ROUNDED else 1):
                if args.rounds > 1 and part in ROUNDED:
                    out(f" round {number + 1} of {args.rounds}:")
                for kind in kinds:
                    rounds[part][kind].append(await measure(reactor, kind, root, args))
            results[part] = {kind: median_result(rounds[part][kind]) for kind in kinds}
    finally:
        remove_tree(root, args.keep)
    for part in parts:
        PARTS[part][1](kinds, results[part], args)
    out()
    out(f"goals: {GOALS}")
    write_json(
        args.json,
        {
            "benchmark": "replication",
            "machine": machine(),
            "arguments": vars(args),
            "results": results,
            "rounds": rounds,
        },
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--parts",
        default="lag,sync,throughput",
        help="which measurements, comma-separated (default: all)",
    )
    parser.add_argument("--lag-writes", type=int, default=200, help="writes whose lag is measured")
    parser.add_argument("--lag-warmup", type=int, default=5, help="writes before those")
    parser.add_argument(
        "--sync-sizes",
        default="1,10000,100000",
        help="objects the master holds when a fresh slave starts",
    )
    parser.add_argument(
        "--sync-repeats",
        type=int,
        default=3,
        help="fresh slaves started per size (the median is reported)",
    )
    parser.add_argument(
        "--sync-writes",
        type=float,
        default=0.0,
        metavar="RATE",
        help="admin writes per second the master takes (one in flight) for "
        "--sync-writes-baseline s before each fresh slave starts, then while it syncs "
        "(default 0: none)",
    )
    parser.add_argument(
        "--sync-writes-baseline",
        type=float,
        default=5.0,
        help="seconds of the same writes with no slave syncing, before each",
    )
    parser.add_argument(
        "--sync-writes-wait",
        type=float,
        default=10.0,
        help="how long the fresh slave may take to show the last write once ready",
    )
    parser.add_argument(
        "--max-add-seconds",
        type=float,
        default=180.0,
        help="skip a size whose objects IceGrid's admin would take longer to add",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the lag and throughput parts, the registries taking turns; "
        "report the median of each figure",
    )
    parser.add_argument("--writes", type=int, default=2000, help="writes per throughput window")
    parser.add_argument("--in-flight", default="1,16", help="writes in flight, comma-separated")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="sample gridreg's master and first slave with py-spy during the throughput "
        "windows; raw profiles and a summary in DIR (profiled figures are a little worse)",
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=2.0, help="how long each profile samples"
    )
    parser.add_argument("--profile-top", type=int, default=15, help="frames to list per profile")
    internal_argument(parser)
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        default=None,
        help=f"also run gridreg from the checkout DIR (as {BASELINE}) in the lag and "
        "throughput parts: before and after a change in one run",
    )
    parser.add_argument(
        "--gridreg-writer",
        choices=("process", "inline"),
        default="process",
        help="gridreg's admin writer: a process of its own, as IceGrid's (default), or an "
        "admin session in this process",
    )
    common_arguments(parser)
    parser.set_defaults(quiet_wait=30.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
