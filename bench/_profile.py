"""
Sampling gridreg with py-spy during a measured window, and reading the
result: where does the registry's CPU time go?

py-spy (C{pip install py-spy}) reads the interpreter's stacks from outside
the process, so gridreg needs no change. It pauses the registry for each
sample (without that its stacks came out biased towards the idle reactor),
so the registry's figures of a profiled window are worse than unprofiled
ones: compare them only with each other. Samples of the reactor waiting in
C{epoll_wait} are counted apart, so percentages are of the busy time.
"""

from __future__ import annotations

import inspect
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
    C{output} (py-spy's raw "collapsed stacks" format, by line).
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


def _store_wait_leaves() -> tuple[str, ...]:
    """
    The store's worker thread waiting for a job (C{queue.get()} in
    L{gridreg.store.executor.ThreadExecutor._work}): idle, like the reactor
    in C{epoll_wait}; it was a third to a half of a locate profile's
    "busy" samples before it was left out.
    """
    from gridreg.store.executor import ThreadExecutor

    lines, first = inspect.getsourcelines(ThreadExecutor._work)
    return tuple(
        f"._work (gridreg/store/executor.py:{first + offset})"
        for offset, line in enumerate(lines)
        if "self._queue.get()" in line
    )


#: Leaf frames that are a thread waiting, not working (py-spy cannot tell
#: idle threads apart when it does not pause the process): the reactor in
#: C{EPollReactor.doPoll} at its C{self._poller.poll(...)} line, the store's
#: worker thread at its queue.
IDLE_LEAVES = (".doPoll (twisted/internet/epollreactor.py:227)", *_store_wait_leaves())


def _function(frame: str) -> str:
    """A frame without its current line: C{fn (file)}."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['function']} ({match['where'].rsplit(':', 1)[0]})"


def parse(lines: Iterable[str]) -> tuple[Counter[str], Counter[str], int, int]:
    """
    Self sample counts per line, inclusive counts per function, the busy
    total and the idle samples (left out of both).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_short(f) for f in _frames(stack)]
        if not frames:
            continue
        if frames[-1].endswith(IDLE_LEAVES):
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for function in {_function(f) for f in frames}:
            inclusive[function] += count
    return own, inclusive, total, idle


def summary(path: Path, top: int = 15) -> str:
    """The top lines by self time and functions by inclusive time, as text."""
    with open(path) as f:
        own, inclusive, total, idle = parse(f)
    if not total:
        return f"{path}: no busy samples"
    lines = [
        f"{path.name}: {total} busy samples ({idle} more idle, waiting in epoll or for"
        + " a store job, left out);"
        + " % of busy time"
    ]
    lines.append("  self %   function (file:line)")
    for frame, count in own.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}   {frame}")
    lines.append("  incl %   function (file)")
    for frame, count in inclusive.most_common(top + 10):
        lines.append(f"  {100 * count / total:5.1f}   {frame}")
    return "\n".join(lines)
