# -*- test-case-name: tests.test_node_servers -*-
"""
A node's load, as IceGrid's nodes report it with their keepalives: the
1, 5 and 15 minute load averages divided by the number of processors, so an
C{adaptive} replica group compares nodes of different sizes fairly.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import attrs

__all__ = ["LoadSampler", "load_from_text", "read_proc_loadavg"]


def read_proc_loadavg() -> str:
    """The text of C{/proc/loadavg} (one small read: it never blocks)."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return f.read()


def load_from_text(text: str, cpus: Optional[int]) -> tuple[float, float, float]:
    """
    C{/proc/loadavg}'s first three fields divided by C{cpus} (1 when unknown).

    @raise ValueError: the text does not start with three numbers.
    """
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"not a load average line: {text!r}")
    n = cpus if cpus and cpus > 0 else 1
    one, five, fifteen = (float(v) / n for v in fields[:3])
    return one, five, fifteen


@attrs.define
class LoadSampler:
    """
    Samples the node's load. A reader that fails (no C{/proc}, as on some
    systems) gives zeros rather than stopping the keepalives that carry it.
    """

    reader: Callable[[], str] = read_proc_loadavg
    cpu_count: Callable[[], Optional[int]] = os.cpu_count

    def sample(self) -> tuple[float, float, float]:
        try:
            return load_from_text(self.reader(), self.cpu_count())
        except (OSError, ValueError):
            return 0.0, 0.0, 0.0
