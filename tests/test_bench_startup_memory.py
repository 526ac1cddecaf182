# -*- test-case-name: tests.test_bench_startup_memory -*-
"""
How C{bench/startup_memory.py} splits a process's anonymous memory by the
kind of mapping that holds it (C{/proc/PID/smaps}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench.startup_memory import anonymous_kib

SMAPS = """\
55d0c0a00000-55d0c0b00000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Anonymous:           700 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Size:               1024 kB
Anonymous:          1000 kB
7f0000100000-7f0000200000 rw-p 00000000 00:00 0
Anonymous:            24 kB
7f1000000000-7f1000010000 rw-p 0001c000 fd:01 1234     /usr/lib/libpython3.11.so.1.0
Anonymous:            64 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Anonymous:            12 kB
"""


class AnonymousSplitTests(SynchronousTestCase):
    def test_split_by_mapping(self) -> None:
        self.assertEqual(
            anonymous_kib(SMAPS),
            {"arenas": 1024, "heap": 700, "libraries": 64, "other": 12},
        )

    def test_empty(self) -> None:
        self.assertEqual(anonymous_kib(""), {"arenas": 0, "heap": 0, "libraries": 0, "other": 0})
