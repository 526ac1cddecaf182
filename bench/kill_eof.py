"""
How soon a SIGKILLed registry's connections close, next to its memory:
IceGrid and gridreg side by side.

A killed process keeps its sockets open until the kernel has freed its
memory, so a registry's RSS sets the floor of every client's failover gap
(C{docs/icegrid-node-facts.md}). Each run starts a master on an empty
database, opens a TCP connection to its client endpoint and reads Ice's
ValidateConnection message, reads the registry's C{VmRSS}, sends SIGKILL,
and times (blocking, in this process) until C{recv} returns EOF and until a
new C{connect} is refused. Medians of C{--runs}.

Configurations: C{icegrid}; C{gridreg} (no TLS configured: it loads no TLS
library, L{gridreg.tls_gate}; its keeper holds its memory, so its
connections close first, L{gridreg.early_close}); C{gridreg-late}
(C{GridReg.EarlyClose=0}: no keeper, the connections close once the
memory is freed); C{python-same} (a plain Python process holding as much
touched anonymous memory as the last C{gridreg-late} had: what the memory
alone costs, in the same minutes); C{gridreg-base} (gridreg from the
checkout C{--baseline DIR}, for a before/after comparison); C{gridreg-normal}
(C{GridReg.Scheduler=normal}: the kernel's normal policy, whose woken
threads preempt a busy core, L{gridreg.scheduling}); C{gridreg-collapse} (C{gridreg}
with C{GridReg.HugePages.Collapse=30}: its dense memory moved onto huge
pages once it runs, L{gridreg.huge_page_collapse}); C{gridreg-tls} (IceSSL
certificates and a mutual-TLS internal endpoint, as a replicated gridreg
runs by default); C{gridreg-2m} (C{gridreg} with C{GridReg.HugePages=1}:
glibc's malloc on transparent huge pages, L{gridreg.huge_pages}). Each
registry runs C{--settle} seconds before the kill (gridreg's first huge
page pass comes a second after start-up).

C{--kernel-times} also reads from ftrace (root) when the kernel closed the
connection and when the memory was freed (L{bench._exit_trace}): on a
loaded machine the EOF this process sees also holds its own wake-up.

C{--curve 0,16,32,64} measures the same on plain Python processes holding
that many MiB of touched anonymous memory, on 4 KiB pages and collapsed
onto 2 MiB pages: what each MiB costs a killed process's EOF.

    python -m bench.kill_eof [--runs 7] [--settle 2] [--baseline DIR] [--kernel-times]
        [--configs icegrid,gridreg,gridreg-late,python-same,gridreg-collapse,gridreg-tls,gridreg-2m]
        [--curve MIB,...]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._exit_trace import ExitTrace
from bench._exit_trace import available as exit_trace_available
from bench._pipeline_client import read_validation
from bench._harness import (
    LOOPBACK,
    header,
    memory_kib,
    out,
    registry_pid,
    registry_ports,
    remove_workdir,
    run,
    start_registry,
    table,
    write_json,
)
from gridreg.certs import make_demo_certs
from tests._processes import free_port

from twisted.internet.task import deferLater

CONFIGS = (
    "icegrid",
    "gridreg",
    "gridreg-late",
    "python-same",
    "gridreg-base",
    "gridreg-normal",
    "gridreg-collapse",
    "gridreg-tls",
    "gridreg-2m",
)
#: what --configs means by default
DEFAULT_CONFIGS = ("icegrid", "gridreg", "gridreg-late", "python-same")
#: a plain Python process's own anonymous memory before it touches more (MiB), measured
#: in each run: the holder then maps what gridreg-late had beyond it
PLAIN_MIB = 8.0
#: the longest a killed registry's port is probed for a refusal
REFUSED_WITHIN = 2.0


def properties(config: str, workdir: Path) -> dict[str, str]:
    props = registry_ports()
    if config == "gridreg-2m":
        props["GridReg.HugePages"] = "1"
    if config == "gridreg-late":
        props["GridReg.EarlyClose"] = "0"
    if config == "gridreg-normal":
        props["GridReg.Scheduler"] = "normal"
    if config == "gridreg-collapse":
        props["GridReg.HugePages.Collapse"] = "30"
    if config == "gridreg-tls":
        certs = workdir / "certs"
        make_demo_certs(str(certs), replicas=["Master"], instance="DemoIceGrid")
        props.update(
            {
                "IceGrid.Registry.Internal.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
                "IceSSL.DefaultDir": str(certs),
                "IceSSL.CAs": "ca.pem",
                "IceSSL.CertFile": "registry-Master.pem",
                "IceSSL.KeyFile": "registry-Master.key",
            }
        )
    return props


def client_port(props: dict[str, str]) -> int:
    return int(props["IceGrid.Registry.Client.Endpoints"].split("-p")[1])


def rollup_kib(pid: int, key: str) -> int:
    """A C{/proc/PID/smaps_rollup} figure (C{Anonymous}, C{AnonHugePages}), KiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def anon_huge_kib(pid: int) -> int:
    """The process's anonymous memory on transparent huge pages, KiB."""
    return rollup_kib(pid, "AnonHugePages")


def sharing(pid: int) -> set[int]:
    """C{pid}'s threads and its children's (its keeper): who may free its memory."""
    tasks = {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        tasks.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return tasks


def kernel_times(trace: ExitTrace | None, port: int, pid: int, tasks: set[int]) -> dict[str, float]:
    """The kernel's close and free times of a kill just made (nothing without a trace)."""
    if trace is None:
        return {}
    time.sleep(0.1)  # a keeper frees the memory 20 ms after the kill
    return trace.times(port, pid, tasks)


def kill_and_time(pid: int, port: int, trace: ExitTrace | None = None) -> dict[str, float]:
    """
    SIGKILL C{pid} with a validated connection open to C{port}; milliseconds
    until that connection's EOF and until the port refuses a new connection;
    with C{trace}, when the kernel closed it and freed the memory.
    """
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        read_validation(sock)
        rss = memory_kib(pid)["VmRSS"]
        anon = rollup_kib(pid, "Anonymous")
        huge = anon_huge_kib(pid)
        tasks = sharing(pid)
        if trace is not None:
            trace.start()
        start = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        try:
            sock.recv(1)  # b"" at EOF
        except ConnectionResetError:
            pass
        eof = time.monotonic()
    refused = None
    while time.monotonic() - start < REFUSED_WITHIN:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
        except ConnectionRefusedError:
            refused = time.monotonic()
            break
        except ConnectionResetError:
            pass  # accepted by the dying process's kernel, then reset: not gone yet
    return {
        **kernel_times(trace, port, pid, tasks),
        "rss_mib": rss / 1024,
        "anon_mib": anon / 1024,
        "huge_mib": huge / 1024,
        "eof_ms": (eof - start) * 1000,
        "refused_ms": (refused - start) * 1000 if refused is not None else float("nan"),
    }


async def sample(
    reactor: Any,
    config: str,
    workdir: Path,
    settle: float,
    baseline: str | None = None,
    trace: ExitTrace | None = None,
) -> dict[str, float]:
    """One registry of C{config} started in C{workdir}, run C{settle} s, killed and timed."""
    kind = "icegrid" if config == "icegrid" else "gridreg"
    workdir.mkdir(parents=True)
    props = properties(config, workdir)
    import tests._processes as processes

    own = processes.REPO_ROOT
    if config == "gridreg-base":
        assert baseline is not None
        processes.REPO_ROOT = Path(baseline).resolve()
    try:
        registry = await start_registry(reactor, kind, workdir, props)
    finally:
        processes.REPO_ROOT = own
    try:
        await deferLater(reactor, settle)
        return kill_and_time(registry_pid(registry), client_port(props), trace)
    finally:
        await registry.process.terminate()


#: a plain Python process holding MiB of touched anonymous memory, optionally
#: collapsed onto huge pages; prints its port and waits for one connection
HOLDER = r"""
import ctypes, mmap, socket, sys
mib, mode = int(sys.argv[1]), sys.argv[2]
huge = 2 << 20
if mib:
    m = mmap.mmap(-1, (mib << 20) + huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = (ctypes.c_char * len(m)).from_buffer(m)
    start = (ctypes.addressof(view) + huge - 1) & ~(huge - 1)
    for offset in range(0, mib << 20, 4096):
        ctypes.memset(start + offset, 1, 1)
    if mode == "2m":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        for attempt in range(10):  # EAGAIN: a page was busy; try again
            if libc.madvise(start, mib << 20, 25) == 0:  # MADV_COLLAPSE
                break
        else:
            raise SystemExit(f"MADV_COLLAPSE failed: errno {ctypes.get_errno()}")
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
connection, _ = server.accept()
connection.sendall(b"x")
connection.recv(1)
"""


def curve_sample(mib: int, mode: str, trace: ExitTrace | None = None) -> dict[str, float]:
    """A plain Python holder of C{mib} MiB on 4 KiB (C{4k}) or 2 MiB pages (C{2m}), killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(mib), mode], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        port = int(holder.stdout.readline())
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            sock.recv(1)
            anon = rollup_kib(holder.pid, "Anonymous")
            huge = anon_huge_kib(holder.pid)
            tasks = sharing(holder.pid)
            if trace is not None:
                trace.start()
            start = time.monotonic()
            os.kill(holder.pid, signal.SIGKILL)
            try:
                sock.recv(1)
            except ConnectionResetError:
                pass
            eof = time.monotonic()
        times = kernel_times(trace, port, holder.pid, tasks)
    finally:
        holder.kill()
        holder.wait()
    return {
        **times,
        "anon_mib": anon / 1024,
        "huge_mib": huge / 1024,
        "eof_ms": (eof - start) * 1000,
    }


def curve(args: argparse.Namespace) -> dict[str, Any]:
    """EOF after SIGKILL against touched anonymous memory, 4 KiB and 2 MiB pages."""
    sizes = [int(m) for m in args.curve.split(",") if m.strip()]
    samples: dict[tuple[int, str], list[dict[str, float]]] = {}
    for _ in range(args.runs):
        for mib in sizes:
            for mode in ("4k", "2m"):
                samples.setdefault((mib, mode), []).append(curve_sample(mib, mode))
    results: dict[str, Any] = {}
    rows = []
    for (mib, mode), runs in samples.items():
        eof = statistics.median(s["eof_ms"] for s in runs)
        results[f"{mib} {mode}"] = {
            "eof_ms": eof,
            "anon_mib": statistics.median(s["anon_mib"] for s in runs),
            "huge_mib": statistics.median(s["huge_mib"] for s in runs),
        }
        rows.append([str(mib), mode, f"{results[f'{mib} {mode}']['huge_mib']:.0f}", f"{eof:.2f}"])
    out(f"Plain Python holding touched anonymous memory, killed; medians of {args.runs}:")
    out(table(["MiB touched", "pages", "huge pages MiB", "EOF after kill ms"], rows))
    for mode in ("4k", "2m"):
        points = [(mib, results[f"{mib} {mode}"]["eof_ms"]) for mib in sizes]
        if len(points) > 1 and points[-1][0] != points[0][0]:
            slope = (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])
            results[f"ms_per_mib {mode}"] = slope
            out(f"  {mode}: {slope:.4f} ms per MiB ({points[0][0]} to {points[-1][0]} MiB)")
    return results


async def main(reactor: Any, args: argparse.Namespace) -> None:
    header("kill_eof")
    if args.curve:
        write_json(
            args.json, {"benchmark": "kill_eof", "arguments": vars(args), "curve": curve(args)}
        )
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if args.baseline is not None and "gridreg-base" not in configs:
        configs.append("gridreg-base")
    for config in configs:
        if config not in CONFIGS:
            raise SystemExit(f"unknown configuration {config!r}; choose from {', '.join(CONFIGS)}")
    root = Path(tempfile.mkdtemp(prefix="bench-kill-eof-"))
    if "gridreg-base" in configs and args.baseline is None:
        raise SystemExit("gridreg-base needs --baseline DIR")
    trace = None
    if args.kernel_times:
        why_not = exit_trace_available()
        if why_not is not None:
            raise SystemExit(f"--kernel-times: {why_not}")
        trace = ExitTrace()
    samples: dict[str, list[dict[str, float]]] = {config: [] for config in configs}
    late_mib = 28.7  # gridreg-late's anonymous memory, until a run measures it
    try:
        # interleaved, so that a busy moment of the machine falls on every configuration
        for i in range(args.runs):
            for config in configs:
                if config == "python-same":
                    mib = max(0, round(late_mib - PLAIN_MIB))
                    samples[config].append(curve_sample(mib, "4k", trace))
                    continue
                killed = await sample(
                    reactor, config, root / f"{config}-{i}", args.settle, args.baseline, trace
                )
                if config == "gridreg-late":
                    late_mib = killed["anon_mib"]
                samples[config].append(killed)
    finally:
        remove_workdir(str(root), args.keep)
        if trace is not None:
            trace.close()
    results: dict[str, Any] = {}
    rows = []
    for config, runs in samples.items():
        result: dict[str, Any] = {
            key: statistics.median(s.get(key, float("nan")) for s in runs)
            for key in ("rss_mib", "anon_mib", "huge_mib", "eof_ms", "refused_ms")
        }
        for key in ("close_ms", "freed_ms"):
            seen = [s[key] for s in runs if key in s]
            result[key] = statistics.median(seen) if seen else float("nan")
        result["eof_ms_all"] = [round(s["eof_ms"], 2) for s in runs]
        results[config] = result
        rows.append(
            [
                config,
                f"{result['rss_mib']:.1f}",
                f"{result['anon_mib']:.1f}",
                f"{result['huge_mib']:.0f}",
                f"{result['eof_ms']:.2f}",
                f"{result['refused_ms']:.2f}",
                f"{result['close_ms']:.2f}",
                f"{result['freed_ms']:.2f}",
                " ".join(f"{v:.1f}" for v in result["eof_ms_all"]),
            ]
        )
    out(f"Killed idle master, {args.settle:g} s after its start, medians of {args.runs}:")
    out(
        table(
            [
                "registry",
                "VmRSS MiB",
                "anonymous MiB",
                "huge pages MiB",
                "EOF after kill ms",
                "refused after kill ms",
                "kernel closed ms",
                "memory freed ms",
                "EOF, each",
            ],
            rows,
        )
    )
    write_json(args.json, {"benchmark": "kill_eof", "arguments": vars(args), "results": results})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--runs", type=int, default=7, help="kills per configuration")
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds each registry runs before the kill (gridreg's first huge page pass "
        "comes a second after start-up)",
    )
    parser.add_argument(
        "--curve",
        default="",
        help="comma-separated MiB: time plain Python processes holding that much memory "
        "instead of registries",
    )
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"comma-separated, from {', '.join(CONFIGS)}",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="a checkout of gridreg (git worktree) to run as gridreg-base, added to the configs",
    )
    parser.add_argument(
        "--kernel-times",
        action="store_true",
        help="also read from ftrace when the kernel closed the connection and freed the "
        "memory (root, tracefs): free of this benchmark's own wake-up",
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the registries' directories")
    parser.add_argument("--verbose", action="store_true", help="log everything to stderr")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
