"""
Sampling gridreg with py-spy during a measured window, and reading the
result: where does the registry's CPU time go?

py-spy (C{pip install py-spy}) reads the interpreter's stacks from outside
the process, so gridreg needs no change. It runs with C{--nonblocking} (it
does not stop the registry to take a sample), and skips idle stacks (the
reactor waiting in C{epoll}), so the percentages are of the registry's busy
time. The registry's CPU figures of a profiled window are still a little
worse than unprofiled ones; compare them only with each other.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from tests._processes import LineProcess

_FRAME = re.compile(r"^(?P<function>.*) \((?P<where>[^()]*)\)$")


def py_spy() -> str:
    found = shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


async def record(
    reactor: Any, pid: int, start_at: float, duration: float, output: Path, rate: int = 200
) -> Path:
    """
    Record C{pid} from wall-clock C{start_at} for C{duration} seconds into
    C{output} (py-spy's raw "collapsed stacks" format, by function).
    """
    await deferLater(reactor, max(0.0, start_at - time.time()))
    command = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(duration))),
        "--rate",
        str(rate),
        "--nonblocking",
        "--function",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    process = LineProcess.spawn(reactor, "py-spy", command, dict(os.environ), output.parent)
    await process.when_ended()
    if process.exit_code != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed:\n{process.describe()}")
    return output


def start_recording(
    reactor: Any, pid: int, start_at: float, duration: float, output: Path
) -> Deferred[Path]:
    return Deferred.fromCoroutine(record(reactor, pid, start_at, duration, output))


def _frames(stack: str) -> list[str]:
    return [frame for frame in stack.split(";") if frame]


def _short(frame: str) -> str:
    """C{fn (path/to/site-packages/twisted/x.py:12)} -> C{fn (twisted/x.py:12)}."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    where = match["where"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{match['function']} ({where})"


def parse(lines: Iterable[str]) -> tuple[Counter[str], Counter[str], int]:
    """Self and inclusive sample counts per frame, and the total."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_short(f) for f in _frames(stack)]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def summary(path: Path, top: int = 15) -> str:
    """The top frames by self time and by inclusive time, as text."""
    with open(path) as f:
        own, inclusive, total = parse(f)
    if not total:
        return f"{path}: no samples"
    lines = [f"{path.name}: {total} samples of busy time"]
    lines.append("  self %   function (file:line of its definition)")
    for frame, count in own.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}   {frame}")
    lines.append("  incl %   function")
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}   {frame}")
    return "\n".join(lines)
