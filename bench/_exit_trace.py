"""
When the kernel itself closed a killed process's socket, read from ftrace
(a tracing instance of its own, Linux tracefs, root): the time a benchmark
measures in user space also holds its own wake-up, which on a loaded
machine is often longer than the close.

L{ExitTrace} records C{sys_enter_kill}, C{sched_process_exit},
C{mmap:exit_mmap} and C{sock:inet_sock_set_state} on the C{mono} clock (the
clock of C{time.monotonic}); L{ExitTrace.times} reads, after a kill, when
the kill was made, when the first connection from C{port} went to
C{FIN_WAIT1} (the kernel's close) and when each address space was freed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = (
    "syscalls/sys_enter_kill",
    "sched/sched_process_exit",
    "mmap/exit_mmap",
    "sock/inet_sock_set_state",
)
_LINE = re.compile(r"^\s*(.+)-(\d+)\s+\[(\d+)\]\s+\S+\s+(\d+\.\d+): (\w+)[:(] ?(.*)$")


def available() -> Optional[str]:
    """Why the kernel's times cannot be read here, or None."""
    if not (TRACEFS / "instances").is_dir():
        return "no tracefs at /sys/kernel/tracing"
    if os.geteuid() != 0:
        return "tracing needs root"
    for event in EVENTS:
        if not (TRACEFS / "events" / event).is_dir():
            return f"no {event} trace event"
    return None


class ExitTrace:
    """A tracing instance for one benchmark run; L{close} removes it."""

    def __init__(self, name: str = "gridreg-bench-exit") -> None:
        self.path = TRACEFS / "instances" / f"{name}-{os.getpid()}"
        self.path.mkdir()
        self._write("trace_clock", "mono")
        self._write("buffer_size_kb", "4096")
        for event in EVENTS:
            self._write(f"events/{event}/enable", "1")

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def start(self) -> None:
        """Empty the buffer and record."""
        self._write("tracing_on", "0")
        self._write("trace", "")
        self._write("tracing_on", "1")

    def times(self, port: int, pid: int, sharing: set[int]) -> dict[str, float]:
        """Stop recording; L{exit_times} of what was recorded."""
        self._write("tracing_on", "0")
        return exit_times((self.path / "trace").read_text(), port, pid, sharing)

    def close(self) -> None:
        for event in EVENTS:
            self._write(f"events/{event}/enable", "0")
        self.path.rmdir()


def exit_times(trace: str, port: int, pid: int, sharing: set[int]) -> dict[str, float]:
    """
    From an ftrace text dump: milliseconds after the SIGKILL of C{pid}
    until the kernel closed the first connection from C{port}
    (C{close_ms}) and until a task of C{sharing} (C{pid}'s threads and its
    keeper) had freed the address space (C{freed_ms}), when seen.
    """
    kill = close = freed = None
    for line in trace.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        at, task, event, rest = float(m.group(4)), int(m.group(2)), m.group(5), m.group(6)
        if event == "sys_kill" and f"pid: {pid:#x}," in rest and "sig: 9" in rest:
            kill, close, freed = at, None, None
        elif kill is None:
            continue
        elif event == "inet_sock_set_state" and close is None:
            if f"sport={port} " in rest and "newstate=TCP_FIN_WAIT1" in rest:
                close = at
        elif event == "exit_mmap" and freed is None and task in sharing:
            freed = at
    result: dict[str, float] = {}
    if kill is not None and close is not None:
        result["close_ms"] = (close - kill) * 1000
    if kill is not None and freed is not None:
        result["freed_ms"] = (freed - kill) * 1000
    return result
