"""
A registry process's start-up time and idle memory, IceGrid and gridreg
side by side, next to the layers a gridreg process is made of.

Each run spawns, in turn: C{icegridregistry}; a gridreg master
(C{python -m twisted gridregistry}, no TLS configured); the same master
started by the lean launcher, C{lean} (C{python -m gridreg.registry}, what
the C{gridregistry} console script runs); and three floors
under it, C{python} (the interpreter alone), C{twist} (this interpreter
importing what C{python -m twisted} imports before gridreg's plugin runs,
C{twisted.application.twist._twist}, with TLS refused as
L{gridreg.tls_gate} refuses it) and C{twisted} (only the third-party
modules a registry runs on, without C{twist}: Twisted's logger, services,
epoll reactor, endpoints, threads and AMP, C{sqlite3}, attrs and automat;
what is left above it is gridreg's own). For a registry it times spawn to the
first Ice C{ValidateConnection} read on its client endpoint and reads its
CPU time then (C{/proc/PID/stat}); for a floor, spawn to its first byte on
stdout. After C{--settle} seconds idle it reads C{/proc/PID/smaps} and
splits the anonymous memory: C{arenas} (nameless anonymous mappings:
CPython's 1 MiB object arenas, thread stacks, large allocations), C{heap}
(the C heap, C{[heap]}), C{libraries} (written pages of shared libraries'
data), C{other} (the main stack and the rest).

Why the anonymous memory matters: a SIGKILLed process's sockets close only
once the kernel has freed it (C{bench/kill_eof.py}). Medians of C{--runs}::

    python -m bench.startup_memory [--runs 7] [--settle 1.5] [--baseline DIR] [--json FILE]

C{--baseline DIR} adds a gridreg master run from another checkout (a git
worktree of main, say), in the same turns: an A/B in one run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from bench._harness import LOOPBACK, REPO_ROOT, compile_gridreg, header, out, table, write_json
from tests._processes import free_port, write_config

ICEGRIDREGISTRY = shutil.which("icegridregistry") or "/usr/bin/icegridregistry"
KINDS = ("python", "twist", "twisted", "icegrid", "gridreg", "lean")
#: what a floor process runs before it says it is ready (one byte on stdout)
FLOORS = {
    "python": "pass",
    "twist": (
        "from gridreg.tls_gate import keep_tls_out; keep_tls_out({}); "
        "import twisted.application.twist._twist"
    ),
    "twisted": (
        "from gridreg.tls_gate import keep_tls_out; keep_tls_out({}); "
        "import twisted.logger, twisted.python.usage, twisted.application.service, "
        "twisted.internet.epollreactor, twisted.internet.task, twisted.internet.endpoints, "
        "twisted.internet.threads, twisted.protocols.amp, sqlite3, attrs, automat"
    ),
}
_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$")


def anonymous_kib(smaps: str) -> dict[str, int]:
    """
    The C{Anonymous:} KiB of a C{/proc/PID/smaps} text, by kind of mapping:
    C{arenas} (no name), C{heap}, C{libraries} (file-backed), C{other}.
    """
    kinds = {"arenas": 0, "heap": 0, "libraries": 0, "other": 0}
    kind = "other"
    for line in smaps.splitlines():
        mapping = _MAPPING.match(line)
        if mapping is not None:
            name = mapping.group(1).strip()
            if not name:
                kind = "arenas"
            elif name == "[heap]":
                kind = "heap"
            elif name.startswith("/"):
                kind = "libraries"
            else:
                kind = "other"
        elif line.startswith("Anonymous:"):
            kinds[kind] += int(line.split()[1])
    return kinds


def cpu_ms(pid: int) -> float:
    """User and system CPU of process C{pid} so far, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def _first_validation(port: int, deadline: float) -> None:
    """Block until a connection to C{port} reads Ice's 14-byte ValidateConnection."""
    while time.monotonic() < deadline:
        with socket.socket() as s:
            try:
                s.connect((LOOPBACK, port))
            except OSError:
                time.sleep(0.0005)
                continue
            s.settimeout(deadline - time.monotonic())
            got = b""
            while len(got) < 14:
                chunk = s.recv(14 - len(got))
                if not chunk:
                    break
                got += chunk
            if len(got) == 14:
                return
    raise RuntimeError(f"no ValidateConnection on port {port}")


def _spawn(
    kind: str, workdir: Path, baseline: str | None = None
) -> tuple[subprocess.Popen[bytes], int | None]:
    """
    Start one process of C{kind}; its client port, or None for a floor.
    C{baseline} is the checkout a C{baseline} gridreg runs from.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if kind == "baseline":
        assert baseline is not None
        env["PYTHONPATH"] = baseline
    if kind in FLOORS:
        code = (
            FLOORS[kind]
            + "\nimport sys; sys.stdout.write('x'); sys.stdout.flush(); sys.stdin.read()"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return process, None
    port = free_port()
    properties = {
        "IceGrid.InstanceName": "DemoIceGrid",
        "IceGrid.Registry.Client.Endpoints": f"tcp -h {LOOPBACK} -p {port}",
        "IceGrid.Registry.Server.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
        "IceGrid.Registry.Internal.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
        "IceGrid.Registry.DynamicRegistration": "1",
    }
    data = workdir / "db"
    data.mkdir()
    config = workdir / "registry.cfg"
    if kind == "icegrid":
        properties["IceGrid.Registry.LMDB.Path"] = str(data)
        properties["IceGrid.Registry.LMDB.MapSize"] = "64"
        write_config(config, properties)
        command = [ICEGRIDREGISTRY, f"--Ice.Config={config}"]
    else:
        properties["IceGrid.Registry.Data"] = str(data)
        properties["GridReg.Internal.Insecure"] = "1"
        write_config(config, properties)
        command = [sys.executable, "-m", "twisted", "gridregistry", "--config", str(config)]
        if kind == "lean":
            command = [sys.executable, "-m", "gridreg.registry", "--config", str(config)]
    process = subprocess.Popen(
        command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return process, port


def measure(kind: str, settle: float, baseline: str | None = None) -> dict[str, float]:
    """One start of C{kind}: ready ms, CPU ms when ready, idle memory (KiB)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-startup-{kind}-"))
    begin = time.monotonic()
    process, port = _spawn(kind, workdir, baseline)
    try:
        if port is None:
            assert process.stdout is not None
            process.stdout.read(1)
        else:
            _first_validation(port, begin + 30.0)
        ready = (time.monotonic() - begin) * 1000.0
        cpu = cpu_ms(process.pid)
        time.sleep(settle)
        smaps = Path(f"/proc/{process.pid}/smaps").read_text()
        rss = next(
            int(line.split()[1])
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"ready_ms": ready, "cpu_ms": cpu, "rss_kib": float(rss)}
    kinds = anonymous_kib(smaps)
    result.update({f"anon_{k}_kib": float(v) for k, v in kinds.items()})
    result["anon_kib"] = float(sum(kinds.values()))
    return result


def medians(results: Iterable[dict[str, float]]) -> dict[str, float]:
    runs = list(results)
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--settle", type=float, default=1.5)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument(
        "--baseline",
        default=None,
        help="another gridreg checkout (git worktree), run in turn as `baseline`",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if args.baseline:
        compileall.compile_dir(str(Path(args.baseline) / "gridreg"), quiet=1)
        kinds.append("baseline")
    header("startup_memory")
    compile_gridreg()
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(args.runs):
        for kind in kinds:  # in turn, so the machine's noise spreads over all
            runs[kind].append(measure(kind, args.settle, args.baseline))
    summary = {kind: medians(results) for kind, results in runs.items()}
    mib = lambda kib: f"{kib / 1024:.1f}"  # noqa: E731
    rows = [
        [
            kind,
            f"{s['ready_ms']:.0f}",
            f"{s['cpu_ms']:.0f}",
            mib(s["anon_kib"]),
            mib(s["anon_arenas_kib"]),
            mib(s["anon_heap_kib"]),
            mib(s["anon_libraries_kib"]),
            mib(s["anon_other_kib"]),
            mib(s["rss_kib"]),
        ]
        for kind, s in summary.items()
    ]
    out(f"medians of {args.runs} runs each, in turn; ready = spawn -> first ValidateConnection")
    out(
        "(a floor: spawn -> its first byte); CPU when ready; memory after "
        f"{args.settle:g} s idle, MiB"
    )
    out(
        table(
            ["process", "ready ms", "CPU ms", "anon", "arenas", "heap", "libs", "other", "RSS"],
            rows,
        )
    )
    write_json(args.json, {"runs": runs, "medians": summary})


if __name__ == "__main__":
    main()
