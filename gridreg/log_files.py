# -*- test-case-name: tests.test_log_files -*-
"""
Reading log files as IceGrid's C{FileIterator} serves them: where to
start (the last C{count} lines), and a C{read(size)} answer split into lines
within C{size}.

The registry (its own files) and the node (its own and its servers') read
byte ranges with L{offset_from_end} and L{read_chunk}, which block on the
file system: L{open_at} and L{read_at} run them in the reactor's thread
pool. L{split_lines} turns the bytes into the lines of one answer.

What IceGrid 3.7.8 does (docs/icegrid-node-facts.md, "Log files"): every
piece of a line costs its length plus 5 bytes of the C{size} asked; a
line's newline is free; a line that does not fit is cut, and its rest comes
with the next read; when the last piece ended a line, an empty string
follows it (the last string is always the unfinished line); C{size} of 5
or less is refused.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

from gridreg.protocol.node_commands import FileUnavailableError

#: IceGrid's refusal of a read(size) too small for one byte
TOO_LOW = "maximum bytes per read request is too low"
#: what each piece of a line costs beyond its bytes
OVERHEAD = 5
#: the bytes read from a file at once, whatever size is asked (node answers
#: travel as one AMP value, at most 65535 bytes)
MAX_CHUNK = 60000
_BLOCK = 8192

T = TypeVar("T")
#: the files every process has, and the properties that name them
STREAMS = {"stdout": "Ice.StdOut", "stderr": "Ice.StdErr"}


def failed_to_open(path: str) -> str:
    """IceGrid's reason for a file it cannot open."""
    return f"failed to open file `{path}'"


def not_set(prop: str) -> str:
    """IceGrid's reason when Ice.StdOut or Ice.StdErr names no file."""
    return f"{prop} configuration property is not set"


def unknown_log(path: str) -> str:
    """IceGrid's reason for a log file the server's descriptor does not declare."""
    return f"unknown log file `{path}'"


def absolute(path: str, cwd: str) -> str:
    """
    A path as icegridnode compares them: relative ones joined to the
    process's directory, without normalising (C{../x} stays).
    """
    return path if os.path.isabs(path) else os.path.join(cwd, path)


def offset_from_end(path: str, count: int) -> int:
    """
    Where the last C{count} lines of C{path} start: 0 when C{count} is
    negative or the file has fewer lines, its end for 0. An unfinished last
    line counts as a line; the final newline does not start one.

    @raise OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if count < 0:
            return 0
        if count == 0:
            return end
        position = end
        # the newline ending the file ends the last line: it starts none
        limit = end - 1
        found = 0
        while position > 0:
            start = max(0, position - _BLOCK)
            f.seek(start)
            block = f.read(position - start)
            index = len(block)
            while True:
                index = block.rfind(b"\n", 0, index)
                if index < 0:
                    break
                if start + index < limit:
                    found += 1
                    if found == count:
                        return start + index + 1
            position = start
        return 0


def read_chunk(path: str, offset: int, length: int) -> tuple[bytes, int]:
    """
    At most C{min(length, MAX_CHUNK)} bytes of C{path} from C{offset}, and
    the file's size now.

    @raise OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(min(offset, size))
        return f.read(max(0, min(length, MAX_CHUNK))), size


def split_lines(data: bytes, size: int) -> tuple[list[str], int]:
    """
    The lines of one C{read(size)} answer from C{data} (the file from the
    iterator's position), and how many bytes of C{data} they used.

    @raise ValueError: C{size} is too small for any byte (L{TOO_LOW}).
    """
    if size <= OVERHEAD:
        raise ValueError(TOO_LOW)
    lines: list[str] = []
    remaining, position, ended_line = size, 0, False
    while position < len(data):
        room = remaining - OVERHEAD
        if room < 0:
            break
        newline = data.find(b"\n", position, position + room + 1)
        if newline >= 0:
            lines.append(data[position:newline].decode("utf-8", "replace"))
            remaining -= newline - position + OVERHEAD
            position, ended_line = newline + 1, True
            continue
        piece = data[position : position + room]
        if piece:
            lines.append(piece.decode("utf-8", "replace"))
            position += len(piece)
            ended_line = False
        break
    if ended_line:
        lines.append("")
    return lines, position


def open_at(reactor: Any, path: str, count: int) -> Deferred[int]:
    """L{offset_from_end} off the reactor thread; L{FileUnavailableError} with IceGrid's reason."""
    return run_blocking(reactor, _guarded, offset_from_end, path, count)


def read_at(reactor: Any, path: str, offset: int, length: int) -> Deferred[tuple[bytes, int]]:
    """L{read_chunk} off the reactor thread; L{FileUnavailableError} with IceGrid's reason."""
    return run_blocking(reactor, _guarded, read_chunk, path, offset, length)


def _guarded(function: Callable[..., T], path: str, *args: Any) -> T:
    try:
        return function(path, *args)
    except OSError:
        raise FileUnavailableError(failed_to_open(path)) from None


def stdio_path(properties: Any, name: str, cwd: str) -> str:
    """
    The file a process's C{stdout} or C{stderr} goes to: its C{Ice.StdOut}
    or C{Ice.StdErr}.

    @raise FileUnavailableError: not set, or C{name} is neither.
    """
    prop = STREAMS.get(name)
    if prop is None:
        raise FileUnavailableError(f"unknown file `{name}'")
    value = properties.get(prop) if properties is not None else None
    if not value:
        raise FileUnavailableError(not_set(prop))
    return absolute(value, cwd)


def run_blocking(reactor: Any, function: Callable[..., T], *args: Any) -> Deferred[T]:
    """
    Run C{function} in the reactor's thread pool (file reads stay off the
    reactor thread); in the caller's turn with a reactor without threads
    (the memory reactors of unit tests).
    """
    if IReactorThreads.providedBy(reactor):
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)
    return maybeDeferred(function, *args)
