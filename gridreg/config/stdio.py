# -*- test-case-name: tests.test_log_files -*-
"""
C{Ice.StdOut} and C{Ice.StdErr}: as an Ice program does when its
communicator starts, the registry and the node reopen their standard output
and error onto these files (appending), so their output lands where
C{icegridadmin}'s C{registry show} and C{node show} read it.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

from gridreg.config.properties import Properties

_STREAMS = (("Ice.StdOut", 1, "stdout"), ("Ice.StdErr", 2, "stderr"))


def stdio_files(properties: Optional[Properties]) -> dict[int, str]:
    """The files descriptors 1 and 2 go to: C{Ice.StdOut} and C{Ice.StdErr}, when set."""
    if properties is None:
        return {}
    return {fd: path for key, fd, _ in _STREAMS if (path := properties.get(key) or "")}


def redirect_stdio(
    properties: Optional[Properties], dup2: Callable[[int, int], Any] = os.dup2
) -> None:
    """
    Reopen file descriptors 1 and 2 onto C{Ice.StdOut} and C{Ice.StdErr}
    when they are set.

    @raise SystemExit: a file cannot be opened (an Ice program stops too).
    """
    files = stdio_files(properties)
    for key, fd, name in _STREAMS:
        path = files.get(fd)
        if path is None:
            continue
        assert properties is not None
        try:
            opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise SystemExit(
                f"{key} ({properties.source(key)}): cannot open {path}: {exc.strerror}"
            ) from None
        getattr(sys, name).flush()
        try:
            dup2(opened, fd)
        finally:
            os.close(opened)
