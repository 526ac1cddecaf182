"""
Where a replicated write at one in flight goes: IceGrid and gridreg side by
side, a master and two slaves, the admin writer in a process of its own.

For each registry, after a warm-up, two windows of C{--writes} writes each:

  - plain: user and system CPU per write of the master, each slave and the
    writer (C{/proc/PID/stat}), and context switches per write, voluntary
    and not, summed over every thread (C{/proc/PID/task/*/status}), with
    each thread's own share (threads named by what they did most);
  - traced: C{strace -f} on the master and the first slave (``--strace``):
    system calls per write, per thread, so the wake-ups (C{epoll_wait},
    C{futex}) and each thread's part of one write can be read off; tracing
    slows everything, only the counts matter;
  - profiled: C{cProfile} (``--cprofile``, gridreg's only: the signal
    would end IceGrid's) on the reactor and store threads of the master
    and the first slave (C{bench/_cprofile_site}, started and
    stopped by C{SIGUSR1} / C{SIGUSR2} around the window): Python function
    calls per write, and where the time goes, by function and by file (the
    profiler slows every call: compare the counts, and times only with each
    other);
  - timeline: C{strace -f -ttt -T -e trace=fdatasync,sendto} on the master
    (``--timeline``): per write, from the return of the master's commit
    (its C{fdatasync}) to its first push's C{sendto}, the hop between the
    commit and the slaves (the tracer's own stops make both longer).

    python -m bench.write_breakdown [--writes 600] [--registries icegrid,gridreg]
                                    [--strace] [--baseline DIR] [--json FILE]

With C{--baseline DIR} gridreg runs a second time from the checkout DIR
(as C{gridreg-base}): before and after a change, in one run.
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread

from bench._grid import MASTER, Grid, open_writer, remove_tree, wait_synced
from bench._harness import common_arguments, out, registries, run, wait_for_quiet, write_json
from bench._grid import internal_argument

#: gridreg from another checkout (--baseline DIR), in the same run
BASELINE = "gridreg-base"
SLAVES = ("Replica1", "Replica2")
_SYSCALL = re.compile(r"^(\d+)\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]")


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) seconds of C{pid}, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _ticks(), int(fields[12]) / _ticks()


def thread_stats(pid: int) -> dict[int, dict[str, float]]:
    """Per thread: user, system seconds and voluntary / involuntary context switches."""
    stats: dict[int, dict[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
        except OSError:
            continue
        switches = dict(
            line.split(":\t") for line in status.splitlines() if "ctxt_switches" in line
        )
        stats[int(task.name)] = {
            "user": int(fields[11]) / _ticks(),
            "system": int(fields[12]) / _ticks(),
            "voluntary": int(switches["voluntary_ctxt_switches"]),
            "involuntary": int(switches["nonvoluntary_ctxt_switches"]),
        }
    return stats


def _delta(
    before: dict[int, dict[str, float]], after: dict[int, dict[str, float]], writes: int
) -> dict[str, Any]:
    threads = {}
    for tid, now in after.items():
        then = before.get(tid, dict.fromkeys(now, 0.0))
        threads[tid] = {k: (now[k] - then[k]) / writes for k in now}
    total = {
        k: sum(t[k] for t in threads.values())
        for k in ("user", "system", "voluntary", "involuntary")
    }
    busy = {tid: t for tid, t in threads.items() if t["voluntary"] + t["involuntary"] >= 0.05}
    return {"per_write": total, "threads": busy}


def strace_start(pid: int, output: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", str(output), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process


_TIMED = re.compile(r"^(\d+)\s+([\d.]+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\().*?(?:<([\d.]+)>)?$")


def commit_to_push(path: Path) -> list[float]:
    """Seconds from each C{fdatasync}'s return to the next C{sendto}'s start, any thread."""
    started: dict[str, float] = {}
    events: list[tuple[float, str]] = []
    for line in path.read_text(errors="replace").splitlines():
        match = _TIMED.match(line)
        if not match:
            continue
        tid, ts, resumed, name, duration = match.groups()
        when = float(ts)
        if "<unfinished" in line:
            started[tid] = when
            if name == "sendto":
                events.append((when, "sendto"))
            continue
        call = resumed or name
        if call == "fdatasync" and duration is not None:
            begin = started.pop(tid, when) if resumed else when
            events.append((begin + float(duration), "durable"))
        elif call == "sendto" and not resumed:
            events.append((when, "sendto"))
    events.sort()
    gaps = []
    durable: float | None = None
    for when, what in events:
        if what == "durable":
            durable = when
        elif durable is not None:
            gaps.append(when - durable)
            durable = None
    return gaps


PROFILE_SITE = Path(__file__).resolve().parent / "_cprofile_site"


def profile_environment(directory: Path) -> None:
    """Let every Python process started from now on be profiled by signal (C{--cprofile})."""
    os.environ["GRIDREG_BENCH_CPROFILE"] = str(directory)
    paths = [str(PROFILE_SITE), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)


def _short(where: str) -> str:
    for marker in ("/gridreg/", "/twisted/", "/lib/python3"):
        if marker in where:
            return where[where.rindex(marker) + 1 :]
    return where


#: where a thread waits for work: not counted in its profiled time
_WAITS = (
    "<method 'poll' of 'select.epoll' objects>",
    "<method 'get' of '_queue.SimpleQueue' objects>",
)


def profile_summary(path: Path, writes: int, top: int = 25) -> dict[str, Any]:
    """One thread's profile, per write: calls, and the costliest functions and files."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    calls = sum(nc for _cc, nc, _tt, _ct, _callers in stats.values())
    functions = []
    files: collections.Counter[str] = collections.Counter()
    for (where, line, name), (_cc, nc, tt, ct, _callers) in stats.items():
        label = f"{_short(where)}:{line}({name})"
        if name in _WAITS:
            continue
        functions.append((label, nc / writes, tt / writes * 1e6, ct / writes * 1e6))
        files[_short(where)] += tt / writes * 1e6
    by_own = sorted(functions, key=lambda f: -f[2])[:top]
    by_total = sorted((f for f in functions if f[0].startswith("gridreg/")), key=lambda f: -f[3])[
        :top
    ]
    return {
        "calls_per_write": calls / writes,
        "us_per_write": sum(files.values()),
        "by_own_time": by_own,
        "by_total_time": by_total,
        "by_file": files.most_common(top),
    }


async def cprofile_window(
    reactor: Any, pids: dict[str, int], writer: Any, writes: int, directory: Path, kind: str
) -> dict[str, Any]:
    """
    Profile the master and the first slave over C{writes} writes; their
    files are kept in DIR/KIND/ as master-THREAD.prof and slave-THREAD.prof.
    """
    for path in directory.glob("*.prof"):
        path.unlink()
    for n in ("master", "slave"):
        os.kill(pids[n], signal.SIGUSR1)
    await deferToThread(time.sleep, 0.5)
    await writer.add_many("profiled", "c", 0, writes, 1)
    for n in ("master", "slave"):
        os.kill(pids[n], signal.SIGUSR2)
    profiles: dict[str, Any] = {}
    for n in ("master", "slave"):
        for _ in range(100):
            found = sorted(directory.glob(f"{pids[n]}-*.prof"))
            if len(found) >= 2:
                break
            await deferToThread(time.sleep, 0.1)
        profiles[n] = {p.stem.split("-", 1)[1]: profile_summary(p, writes) for p in found}
        kept = directory / kind
        kept.mkdir(exist_ok=True)
        for path in found:
            path.replace(kept / f"{n}-{path.stem.split('-', 1)[1]}.prof")
    return profiles


def strace_counts(path: Path, writes: int) -> dict[str, dict[str, float]]:
    """Per thread id: system calls per write, by name."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text(errors="replace").splitlines():
        if "resumed>" in line:
            continue  # a call split by another thread's: counted at its start
        match = _SYSCALL.match(line)
        if match:
            counts[match.group(1)][match.group(2)] += 1
    return {
        tid: {name: n / writes for name, n in sorted(c.items(), key=lambda kv: -kv[1])}
        for tid, c in counts.items()
    }


async def measure(reactor: Any, kind: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    import tests._processes as processes

    registry = "gridreg" if kind == BASELINE else kind
    grid = Grid(reactor, registry, root / kind, [MASTER, *SLAVES], args.gridreg_internal)
    own = processes.REPO_ROOT
    writer = None
    result: dict[str, Any] = {}
    try:
        if kind == BASELINE:
            processes.REPO_ROOT = Path(args.baseline).resolve()
        try:
            await grid.start(MASTER)
            for slave in SLAVES:
                await grid.start(slave)
        finally:
            processes.REPO_ROOT = own
        writer = await open_writer(reactor, grid, True)
        await wait_synced(reactor, grid, writer, SLAVES, "breakdown")
        await writer.add_many("warm", "w", 0, 200, 1)
        pids = {"master": grid.pid(MASTER), "slave": grid.pid(SLAVES[0])}
        pids["slave2"] = grid.pid(SLAVES[1])
        pids["writer"] = writer.driver.process.pid  # type: ignore[attr-defined]
        if args.quiet_wait > 0:
            await wait_for_quiet(reactor, args.quiet_below, args.quiet_wait)
        cpu0 = {n: proc_cpu(p) for n, p in pids.items()}
        th0 = {n: thread_stats(p) for n, p in pids.items()}
        seconds = await writer.add_many("plain", "p", 0, args.writes, 1)
        cpu1 = {n: proc_cpu(p) for n, p in pids.items()}
        th1 = {n: thread_stats(p) for n, p in pids.items()}
        result["writes_per_s"] = args.writes / seconds
        for n in pids:
            result[n] = {
                "user_us": (cpu1[n][0] - cpu0[n][0]) / args.writes * 1e6,
                "system_us": (cpu1[n][1] - cpu0[n][1]) / args.writes * 1e6,
                **_delta(th0[n], th1[n], args.writes),
            }
        if args.strace:
            traces = {}
            for n in ("master", "slave"):
                path = root / f"{kind}-{n}.strace"
                traces[n] = (strace_start(pids[n], path), path)
            await deferToThread(time.sleep, 1.0)  # attached to every thread
            await writer.add_many("traced", "t", 0, args.writes, 1)
            for n, (process, path) in traces.items():
                process.send_signal(signal.SIGINT)
                await deferToThread(process.wait)
                result[n]["syscalls"] = strace_counts(path, args.writes)
        if args.cprofile and kind != "icegrid":  # a Python registry's: SIGUSR1 ends IceGrid's
            result["cprofile"] = await cprofile_window(
                reactor, pids, writer, args.writes, Path(args.cprofile), kind
            )
        if args.trace_all:
            # every process of one write on one clock, kept for reading
            keep = Path(args.trace_all).resolve()
            keep.mkdir(parents=True, exist_ok=True)
            tracers = []
            for n, pid in pids.items():
                tracers.append(
                    subprocess.Popen(
                        ["strace", "-f", "-qq", "-ttt", "-T"]
                        + ["-e", "trace=network,fdatasync,epoll_wait,futex,read,write,pwrite64"]
                        + ["-o", str(keep / f"{kind}-{n}.strace"), "-p", str(pid)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            await deferToThread(time.sleep, 1.0)
            await writer.add_many("all", "a", 0, 20, 1)
            for process in tracers:
                process.send_signal(signal.SIGINT)
                await deferToThread(process.wait)
        if args.timeline:
            path = root / f"{kind}-timeline.strace"
            process = subprocess.Popen(
                ["strace", "-f", "-qq", "-ttt", "-T", "-e", "trace=fdatasync,sendto"]
                + ["-o", str(path), "-p", str(pids["master"])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await deferToThread(time.sleep, 1.0)
            await writer.add_many("timed", "t", 0, args.writes, 1)
            process.send_signal(signal.SIGINT)
            await deferToThread(process.wait)
            gaps = sorted(commit_to_push(path))
            if gaps:
                result["commit_to_push_ms"] = {
                    "p10": gaps[len(gaps) // 10] * 1e3,
                    "p50": gaps[len(gaps) // 2] * 1e3,
                    "p90": gaps[len(gaps) * 9 // 10] * 1e3,
                    "count": len(gaps),
                }
    finally:
        if writer is not None:
            await writer.close()
        await grid.stop_all()
    return result


def report(kind: str, r: dict[str, Any]) -> None:
    out(f"{kind}: {r['writes_per_s']:.0f} writes/s at 1 in flight")
    if "commit_to_push_ms" in r:
        t = r["commit_to_push_ms"]
        out(
            f"  master, fdatasync's return to the first push's sendto (traced, {t['count']} "
            f"commits): p10 {t['p10']:.3f} ms, p50 {t['p50']:.3f} ms, p90 {t['p90']:.3f} ms"
        )
    for n in ("master", "slave", "slave2", "writer"):
        p = r[n]
        w = p["per_write"]
        out(
            f"  {n}: user {p['user_us']:.0f} us + system {p['system_us']:.0f} us per write; "
            f"context switches per write {w['voluntary']:.2f} voluntary + "
            f"{w['involuntary']:.2f} involuntary"
        )
        for tid, t in sorted(p["threads"].items(), key=lambda kv: -kv[1]["voluntary"]):
            out(
                f"    thread {tid}: user {t['user'] * 1e6:.0f} us, system "
                f"{t['system'] * 1e6:.0f} us, switches {t['voluntary']:.2f} + "
                f"{t['involuntary']:.2f}"
            )
        for tid, calls in sorted(p.get("syscalls", {}).items()):
            total = sum(calls.values())
            if total < 0.05:
                continue
            listed = ", ".join(f"{name} {n:.2f}" for name, n in calls.items() if n >= 0.02)
            out(f"    syscalls/write, thread {tid}: {total:.2f}: {listed}")
    for n, threads in r.get("cprofile", {}).items():
        for thread, summary in threads.items():
            out(
                f"  profiled {n}, thread {thread}: {summary['calls_per_write']:.1f} Python "
                f"calls per write, {summary['us_per_write']:.0f} us per write profiled "
                "(waits apart)"
            )
            out("    by own time (calls/write, own us/write, total us/write):")
            for label, calls, own, total in summary["by_own_time"]:
                out(f"      {calls:6.2f} {own:7.1f} {total:7.1f}  {label}")
            out("    gridreg functions by total time (calls/write, own, total us/write):")
            for label, calls, own, total in summary["by_total_time"]:
                out(f"      {calls:6.2f} {own:7.1f} {total:7.1f}  {label}")
            out("    by file (own us/write):")
            for label, own in summary["by_file"]:
                out(f"      {own:7.1f}  {label}")


async def main(reactor: Any, args: argparse.Namespace) -> None:
    kinds = registries(args.registries)
    if args.baseline:
        kinds.insert(kinds.index("gridreg") if "gridreg" in kinds else len(kinds), BASELINE)
    root = Path(tempfile.mkdtemp(prefix="bench-breakdown-"))
    if args.cprofile:
        Path(args.cprofile).mkdir(parents=True, exist_ok=True)
        profile_environment(Path(args.cprofile).resolve())
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        for number in range(args.rounds):
            for kind in kinds:
                where = root / f"round{number + 1}"
                results[kind].append(await measure(reactor, kind, where, args))
                out(f"round {number + 1}:")
                report(kind, results[kind][-1])
    finally:
        remove_tree(root, args.keep)
    write_json(
        args.json, {"benchmark": "write_breakdown", "arguments": vars(args), "results": results}
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--writes", type=int, default=600, help="writes per window")
    parser.add_argument("--rounds", type=int, default=1, help="times each registry runs")
    parser.add_argument("--strace", action="store_true", help="add a window under strace -f")
    parser.add_argument(
        "--trace-all", metavar="DIR", default=None, help="strace 20 writes in every process"
    )
    parser.add_argument(
        "--timeline", action="store_true", help="time the master's commit-to-push hop"
    )
    parser.add_argument(
        "--cprofile",
        metavar="DIR",
        default=None,
        help="add a window under cProfile (master and first slave), its files in DIR",
    )
    parser.add_argument("--baseline", default=None, help="also run gridreg from this checkout")
    internal_argument(parser)
    common_arguments(parser)
    parser.set_defaults(quiet_wait=10.0, gridreg_internal="tcp")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
