"""
A failover taken apart with C{perf trace} (L{bench.failover} C{--trace DIR}):
the benchmark's C{kill}, the master's, slave's and client's socket calls on
one clock, from the signal to the client's first answer after it.

    python -m bench.failover --clients ice --signals KILL --trace DIR ...
    python -m bench.failover_trace DIR/gridreg-ice-KILL-0.trace [...]

Each trace has a C{.pids} file beside it (the role of every thread when the
trace began) and the slave's last log lines (C{.slave.log}).
"""

from __future__ import annotations

import os
import re
import signal as signals
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

#: the calls a failover is made of; the rest is noise
CALLS = (
    "kill,connect,accept,accept4,recvfrom,recvmsg,sendto,sendmsg,read,write,writev,"
    "epoll_wait,epoll_pwait,poll,ppoll,close,shutdown,futex,"
    "sched:sched_switch,sched:sched_wakeup"
)

_LINE = re.compile(
    r"^\s*(?P<start>[\d.]+|\?) \(\s*(?:(?P<duration>[\d.]+) ms)?\s*\): "
    r"(?P<comm>.+?)/(?P<tid>\d+) +(?P<continued>\.\.\. \[continued\]: )?"
    r"(?P<call>[\w:]+)\((?P<args>.*?)\)\)?\s*(?:= (?P<result>.*)|\.\.\.)?$"
)


class SyscallTrace:
    """C{perf trace} of the benchmark, master, slave and client while it runs."""

    def __init__(self, process: "subprocess.Popen[bytes]", path: Path) -> None:
        self.process = process
        self.path = path

    @classmethod
    def start(
        cls,
        directory: Path,
        label: str,
        pids: dict[str, int],
        threads: Optional[dict[int, str]] = None,
    ) -> "SyscallTrace":
        """
        Trace the processes of C{pids} (role -> pid); C{threads} (tid -> role)
        names single threads otherwise counted in their process's role: the
        benchmark's reactor thread is the client when the client runs in it.
        """
        directory.mkdir(parents=True, exist_ok=True)
        n = len(list(directory.glob(f"{label}-*.trace")))
        path = directory / f"{label}-{n}.trace"
        roles = []
        for role, pid in pids.items():
            for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
                roles.append(f"{(threads or {}).get(int(tid), role)} {pid} {tid}\n")
        path.with_suffix(".pids").write_text("".join(roles))
        process = subprocess.Popen(
            ["perf", "trace", "-o", str(path), "-e", CALLS, "-p"]
            + [",".join(str(p) for p in dict.fromkeys(pids.values()))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return cls(process, path)

    def stop(self, slave_log: Iterable[str] = ()) -> None:
        self.process.send_signal(signals.SIGINT)
        self.process.wait(10)
        self.path.with_suffix(".slave.log").write_text("".join(f"{line}\n" for line in slave_log))


class SlaveProfile:
    """C{py-spy record} of the slave while it runs (raw stacks, idle excluded)."""

    def __init__(self, process: "subprocess.Popen[bytes]") -> None:
        self.process = process

    @classmethod
    def start(cls, directory: Path, label: str, pid: int, rate: int = 5000) -> "SlaveProfile":
        directory.mkdir(parents=True, exist_ok=True)
        n = len(list(directory.glob(f"{label}-*.stacks")))
        path = directory / f"{label}-{n}.stacks"
        process = subprocess.Popen(
            ["py-spy", "record", "-r", str(rate), "--format", "raw"]
            + ["-o", str(path), "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return cls(process)

    def stop(self) -> None:
        self.process.send_signal(signals.SIGINT)
        self.process.wait(20)


@dataclass
class Call:
    end: float  # ms, perf's clock
    role: str
    tid: int
    call: str
    args: str
    result: str

    @property
    def fd(self) -> Optional[int]:
        found = re.match(r"fd: (\d+)", self.args)
        return int(found.group(1)) if found else None

    @property
    def value(self) -> Optional[int]:
        found = re.match(r"-?\d+", self.result)
        return int(found.group(0)) if found else None


def read_trace(path: Path) -> list[Call]:
    """Every finished call in the trace, in the order they ended."""
    roles: dict[int, str] = {}
    for line in path.with_suffix(".pids").read_text().splitlines():
        role, _, thread = line.split()
        roles[int(thread)] = role
    calls = []
    last = 0.0
    #: each thread's call begun and not finished yet: its arguments
    begun: dict[int, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        found = _LINE.match(line)
        if not found:
            continue
        tid = int(found["tid"])
        arguments = found["args"]
        if found["start"] == "?":
            # begun before the trace: perf writes it when it ends, about now
            end = last
        elif float(found["start"]) > 1e9:
            continue  # a clock perf could not map
        else:
            last = float(found["start"])
            end = last + float(found["duration"] or 0.0)
        tracepoint = ":" in found["call"]
        if found["result"] is None and not tracepoint:
            begun[tid] = arguments
            continue
        if found["continued"]:
            arguments = begun.pop(tid, arguments)
        calls.append(
            Call(end, roles.get(tid, "?"), tid, found["call"], arguments, found["result"] or "")
        )
    calls.sort(key=lambda c: c.end)
    return calls


def milestones(calls: list[Call]) -> dict[str, Any]:
    """The steps of one failover, ms after the benchmark's SIGKILL."""
    kill = next(c for c in calls if c.call == "kill" and "KILL" in c.args)
    after = [c for c in calls if c.end >= kill.end]
    t = lambda c: round(c.end - kill.end, 2)  # noqa: E731
    found: dict[str, Any] = {}

    def first(name: str, test: Any, among: Optional[list[Call]] = None) -> Optional[Call]:
        for c in among if among is not None else after:
            if test(c):
                found[name] = t(c)
                return c
        return None

    first(
        "watch EOF",
        lambda c: (
            c.role == "bench" and c.call == "recvfrom" and (c.value == 0 or "RESET" in c.result)
        ),
    )
    eof = first(
        "client: master EOF",
        lambda c: (
            c.role == "client" and c.call == "recvfrom" and (c.value == 0 or "RESET" in c.result)
        ),
    )
    found["client connects"] = [t(c) for c in after if c.role == "client" and c.call == "connect"][
        :4
    ]
    found["client resets"] = [t(c) for c in after if c.role == "client" and "RESET" in c.result][:4]
    found["slave master EOFs"] = [
        t(c) for c in after if c.role == "slave" and c.call == "recvfrom" and c.value == 0
    ][:6]
    found["slave accepts"] = [
        t(c)
        for c in after
        if c.role == "slave" and c.call.startswith("accept") and (c.value or -1) >= 0
    ][:4]
    found["slave log writes"] = [
        t(c) for c in after if c.role == "slave" and c.call == "write" and c.fd in (1, 2)
    ][:12]
    found["slave validations"] = [
        t(c) for c in after if c.role == "slave" and c.call == "sendto" and c.value == 14
    ][:4]
    found["slave connects"] = [t(c) for c in after if c.role == "slave" and c.call == "connect"][:4]
    if eof is not None:
        # the retry: the client's first request after it saw the loss, read and answered
        sent = first(
            "client: first request after its EOF",
            lambda c: (
                c.role == "client"
                and c.call in ("sendto", "sendmsg", "write", "writev")
                and (c.value or 0) > 14
                and c.end > eof.end
            ),
        )
        if sent is not None:
            read = first(
                "slave: reads a request",
                lambda c: (
                    c.role == "slave"
                    and c.call in ("recvfrom", "recvmsg", "read")
                    and (c.value or 0) > 14
                    and c.end > sent.end
                ),
            )
            if read is not None:
                first(
                    "slave: answers it",
                    lambda c: (
                        c.role == "slave"
                        and c.call in ("sendto", "sendmsg", "write", "writev")
                        and c.fd == read.fd
                        and (c.value or 0) > 14
                        and c.end > read.end
                    ),
                )
    reply = first(
        "client: first reply after its EOF",
        lambda c: (
            c.role == "client"
            and c.call == "recvfrom"
            and c.value is not None
            and c.value > 14
            and eof is not None
            and c.end > eof.end
        ),
    )
    if reply is not None:
        busy = [
            c
            for c in after
            if c.role == "slave" and c.end <= reply.end and c.call not in ("epoll_wait", "poll")
        ]
        found["slave calls until then"] = len(busy)
    return found


def show(calls: list[Call], until: float = 30.0) -> None:
    kill = next(c for c in calls if c.call == "kill" and "KILL" in c.args)
    for c in calls:
        if kill.end <= c.end <= kill.end + until:
            when = c.end - kill.end
            sys.stdout.write(
                f"{when:8.3f} {c.role:7} {c.tid:7} {c.call}({c.args[:60]}) = {c.result[:40]}\n"
            )


def main(argv: list[str]) -> None:
    verbose = "-v" in argv
    for name in [a for a in argv if a != "-v"]:
        calls = read_trace(Path(name))
        sys.stdout.write(f"{name}: {milestones(calls)}\n")
        if verbose:
            show(calls)


if __name__ == "__main__":
    main(sys.argv[1:])
