"""
What the benchmarks read from the system: a process's CPU time and memory
from C{/proc}, how busy the whole machine is, and where it all ran.

Kept apart from L{bench._harness} so that a benchmark can sample processes
it did not start, and so that it stays free of the Ice machinery.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.task import deferLater
from twisted.logger import Logger

REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

log = Logger(namespace="bench")


def cpu_seconds(pid: int) -> float:
    """
    User plus system CPU time of process C{pid}, all its threads included
    (C{/proc/PID/stat} fields 14 and 15).
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """
    C{VmHWM} (peak resident set) and C{VmRSS} of process C{pid}, in KiB.
    """
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0])
    return found


def git_commit() -> str:
    """The commit measured, C{+dirty} if gridreg/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "gridreg"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """Where the figures were measured, for the JSON output."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


@attrs.frozen
class ProcessWindow:
    """CPU seconds a process used between two samples, and the wall time between them."""

    cpu: float
    wall: float

    @property
    def utilisation(self) -> float:
        """Cores kept busy (1.0 = one core all the time)."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


def machine_busy_seconds() -> float:
    """
    CPU seconds all cores have spent busy since boot (C{/proc/stat}: all but
    idle and iowait), to tell how much else ran during a window.
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


async def sample_window(
    reactor: Any, pids: Sequence[int], start_at: float, duration: float
) -> list[ProcessWindow]:
    """
    Sample the CPU time of C{pids} at wall-clock C{start_at} and again
    C{duration} seconds later; the last window returned is the whole
    machine's.
    """
    await deferLater(reactor, max(0.0, start_at - time.time()))
    wall0, cpu0 = time.time(), [cpu_seconds(p) for p in pids] + [machine_busy_seconds()]
    await deferLater(reactor, max(0.0, start_at + duration - time.time()))
    wall1, cpu1 = time.time(), [cpu_seconds(p) for p in pids] + [machine_busy_seconds()]
    return [ProcessWindow(b - a, wall1 - wall0) for a, b in zip(cpu0, cpu1)]


async def wait_for_quiet(
    reactor: Any, threshold: float = 0.25, max_wait: float = 120.0, probe: float = 0.5
) -> float:
    """
    Wait (at most C{max_wait} seconds) until the whole machine has been
    busy for less than C{threshold} cores over C{probe} seconds: other
    programs (a parallel test run) would otherwise skew a window. Call it
    while the benchmark's own processes are idle. Returns the last load
    seen, which the caller may report.
    """
    deadline = time.time() + max_wait
    while True:
        before, wall = machine_busy_seconds(), time.time()
        await deferLater(reactor, probe)
        load = (machine_busy_seconds() - before) / (time.time() - wall)
        if load < threshold or time.time() >= deadline:
            if load >= threshold:
                log.warn(  # noqa: G010 - twisted.logger's name
                    "machine still busy ({load:.2f} cores) after {wait} s; measuring anyway",
                    load=load,
                    wait=max_wait,
                )
            return load
