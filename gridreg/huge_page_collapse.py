# -*- test-case-name: tests.test_huge_page_collapse -*-
"""
Move the running registry's dense anonymous memory onto transparent huge
pages (C{madvise(MADV_COLLAPSE)}), so that a SIGKILLed registry's
connections close sooner, at no cost to its start-up. Opt-in
(C{GridReg.HugePages.Collapse=30}): each copy stalls the reactor, which put
replicated writes' p99 lag at 7-8 ms against 2-3 ms without it.

A killed process's sockets close only after the kernel has freed its
memory (C{exit_mm} runs before C{exit_files}), and it frees anonymous
memory page by page: about 0.07 ms per MiB of 4 KiB pages on this machine
against 0.005 ms per MiB of 2 MiB pages (C{bench/README.rst}, "Issue 9,
sixth session"). An idle registry holds about 29 MiB of anonymous memory,
all on 4 KiB pages, and its clients saw EOF about 2 ms later than
IceGrid's.

Linux 6.1's C{MADV_COLLAPSE} copies an already-populated, 2 MiB-aligned
range into one huge page in place, whatever the machine's THP setting
(C{madvise} here) says about new faults. CPython's own arenas are 1 MiB
mappings, mostly between shared libraries, so few of them hold a whole
aligned range; the C heap does (a quarter of the idle registry), and so
do the arenas and heap that grow once the registry runs (nothing maps
libraries between them then): 8-12 MiB of an idle master.
L{HugePageCollapse} looks for such ranges a second after start-up, again
soon while memory moves, then less and less often up to every
C{GridReg.HugePages.Collapse} seconds, on a worker thread, and collapses
those that are at least 7/8 resident, so it adds at most 256 KiB of
resident memory per 2 MiB. The kernel holds the process's memory map while
it copies a range (0.9-10 ms on this virtual machine, whose host backs
fresh memory lazily), which stalls a page fault or an arena allocation of
the reactor meanwhile: so a pass collapses at most 8 ranges, 5 ms apart,
leaves the rest of a big heap to the next pass a second later, and copies
a range once. Nothing changes how
the process allocates; a kernel without C{MADV_COLLAPSE}, a machine with
transparent huge pages off (C{never}) or C{GridReg.HugePages.Collapse=0}
(the default) leaves it as it was. C{GridReg.HugePages=1} (L{gridreg.huge_pages}) puts
the whole heap on huge pages from the start, at 0.2 s of every start-up.
Since L{gridreg.early_close} (on by default) the connections close before
the memory is freed anyway, so neither is needed for that.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.huge_pages import thp_available

__all__ = [
    "CollapsePass",
    "HugePageCollapse",
    "LinuxMemory",
    "Memory",
    "available",
    "collapse",
    "windows",
]

#: GridReg.HugePages.Collapse: seconds between passes, 0 for none
PROPERTY = "GridReg.HugePages.Collapse"
MADV_COLLAPSE = 25  # linux/mman.h, Linux 6.1
HUGE_PAGE = 2 << 20
PAGE = 4096
#: a range is collapsed when at least this share of its pages is resident
DENSE = 7 / 8
#: the first pass, after start-up, and the next while ranges are left (seconds)
FIRST_PASS = 1.0
#: ranges collapsed per pass, and the pause between two (seconds): the kernel holds
#: the process's memory map while it copies a range (0.9-10 ms here), so a pass lets the
#: reactor run between ranges and leaves the rest of a big heap to the next passes
PER_PASS = 8
PAUSE = 0.005
_RESIDENT = bytes(i & 1 for i in range(256))  # mincore: only bit 0 is defined

log = Logger("gridreg.huge_page_collapse")


def windows(maps: Iterable[str], huge: int = HUGE_PAGE) -> Iterator[int]:
    """
    The start of every C{huge}-aligned range lying wholly inside a private,
    writable, anonymous mapping (the C heap included, stacks not), from the
    lines of C{/proc/self/maps}.
    """
    for line in maps:
        fields = line.split()
        if len(fields) < 5 or fields[1] != "rw-p" or fields[4] != "0":
            continue
        if len(fields) > 5 and fields[5] != "[heap]":
            continue
        low, high = (int(x, 16) for x in fields[0].split("-"))
        start = (low + huge - 1) & ~(huge - 1)
        while start + huge <= high:
            yield start
            start += huge


class Memory(Protocol):
    """What a pass needs of the kernel (a test gives a fake)."""

    def maps(self) -> list[str]: ...

    def resident(self, start: int, length: int) -> Optional[int]:
        """Resident pages in the range, or None if it is not mapped (any more)."""

    def collapse(self, start: int, length: int) -> int:
        """0, or the errno of C{madvise(MADV_COLLAPSE)}."""

    def huge_kib(self) -> int:
        """Anonymous memory on huge pages (KiB)."""


class LinuxMemory:
    """This process's memory, through C{/proc/self} and libc."""

    def __init__(self, libc: Any = None) -> None:
        import ctypes  # here: a registry that never collapses does not load libffi

        self._ctypes = ctypes
        self.libc = libc if libc is not None else ctypes.CDLL(None, use_errno=True)
        self.libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        self._vector = ctypes.create_string_buffer(HUGE_PAGE // PAGE)

    def maps(self) -> list[str]:
        with open("/proc/self/maps") as f:
            return f.readlines()

    def resident(self, start: int, length: int) -> Optional[int]:
        if self.libc.mincore(start, length, self._vector) != 0:
            return None  # unmapped meanwhile (ENOMEM)
        return self._vector.raw[: length // PAGE].translate(_RESIDENT).count(1)

    def collapse(self, start: int, length: int) -> int:
        if self.libc.madvise(start, length, MADV_COLLAPSE) == 0:
            return 0
        return int(self._ctypes.get_errno())

    def huge_kib(self) -> int:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
        return 0


@dataclass
class CollapsePass:
    """What one pass found and did."""

    #: aligned ranges inside anonymous mappings
    ranges: int = 0
    #: ranges on a huge page (collapsed by this pass or an earlier one)
    collapsed: int = 0
    #: ranges this pass collapsed
    moved: int = 0
    #: dense ranges left for the next pass (it had collapsed its limit)
    pending: bool = False
    #: the kernel cannot collapse at all (no MADV_COLLAPSE: EINVAL on a plain range)
    unsupported: bool = False
    #: the last errno of a range the kernel refused for now (EAGAIN, ENOMEM), or 0
    refused: int = 0
    #: anonymous memory on huge pages after the pass (KiB)
    huge_kib: int = 0


def collapse(
    memory: Memory,
    done: set[int],
    limit: int = PER_PASS,
    pause: Callable[[], None] = lambda: None,
    dense: float = DENSE,
    huge: int = HUGE_PAGE,
) -> CollapsePass:
    """
    One pass over C{memory}: collapse dense aligned anonymous ranges not in
    C{done} (those collapsed before; added to as it goes), at most C{limit}
    of them, calling C{pause} between two.
    """
    result = CollapsePass()
    threshold = dense * (huge // PAGE)
    for start in windows(memory.maps(), huge):
        result.ranges += 1
        if start in done:
            result.collapsed += 1
            continue
        resident = memory.resident(start, huge)
        if resident is None or resident < threshold:
            continue
        if result.moved == limit:
            result.pending = True  # the next pass comes sooner
            break
        if result.moved:
            pause()
        error = memory.collapse(start, huge)
        if error == 0:
            done.add(start)
            result.moved += 1
            result.collapsed += 1
        elif error == errno.EINVAL and not done:
            # a plain private anonymous range: the kernel has no MADV_COLLAPSE
            result.unsupported = True
            break
        else:
            result.refused = error
    result.huge_kib = memory.huge_kib()
    return result


def available(platform: Optional[str] = None, thp: Optional[bool] = None) -> Optional[str]:
    """Why this process cannot collapse its memory, or None if it can try."""
    if not (platform or sys.platform).startswith("linux"):
        return "not Linux"
    if not (thp_available() if thp is None else thp):
        return "transparent huge pages are off on this machine (never)"
    return None


class HugePageCollapse(Service):
    """
    Collapses the process's dense anonymous memory L{FIRST_PASS} seconds
    after it starts, then again after twice as long each time a pass finds
    nothing to do, up to every C{interval} seconds (after L{FIRST_PASS}
    again when a pass moved something or left ranges), each pass on a
    worker thread (C{run}; a test passes one that runs it at once), with a
    C{pause} between two ranges. Stops by itself when the kernel cannot.
    """

    def __init__(
        self,
        clock: Any,
        interval: float,
        memory: Optional[Memory] = None,
        run: Optional[Callable[[Callable[[], CollapsePass]], Deferred[CollapsePass]]] = None,
        first_pass: float = FIRST_PASS,
        pause: Callable[[], None] = lambda: time.sleep(PAUSE),
        per_pass: int = PER_PASS,
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.first_pass = first_pass
        self._memory = memory
        self._run = run or deferToThread
        self._pause = pause
        self.per_pass = per_pass
        self._delay = first_pass
        self._next: Any = None
        self._running: Optional[Deferred[Any]] = None
        self._logged_kib = 0
        #: ranges collapsed so far
        self._done: set[int] = set()
        #: the last pass's result
        self.last: Optional[CollapsePass] = None

    def startService(self) -> None:
        super().startService()
        self._schedule(self.first_pass)

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._next = self.clock.callLater(delay, self._pass)

    def _pass(self) -> None:
        self._next = None
        if self._memory is None:
            self._memory = LinuxMemory()
        memory, done, pause, limit = self._memory, self._done, self._pause, self.per_pass
        d = self._running = self._run(lambda: collapse(memory, done, limit, pause))
        d.addCallbacks(self._done_pass, self._failed)  # a failed pass is logged, and retried
        d.addBoth(self._settled)

    def _settled(self, result: None) -> None:
        self._running = None

    def _done_pass(self, result: CollapsePass) -> None:
        self.last = result
        if result.unsupported:
            log.info(
                "This kernel cannot move memory onto huge pages (no MADV_COLLAPSE, "
                "Linux 6.1 or later): {property} does nothing here",
                property=PROPERTY,
            )
            return
        # a registry's memory grows most just after start-up (its slaves, nodes and
        # clients come): look again soon, then less and less often
        if result.pending or result.moved:
            self._delay = self.first_pass
        else:
            self._delay = min(self.interval, self._delay * 2)
        self._schedule(self._delay)
        huge_mib = result.huge_kib / 1024
        if result.huge_kib >= self._logged_kib + HUGE_PAGE // 1024:
            log.info(
                "{huge_mib:.0f} MiB of the registry's memory on transparent huge pages "
                "({collapsed} of {ranges} 2 MiB ranges): a killed registry's connections "
                "close sooner ({property})",
                huge_mib=huge_mib,
                collapsed=result.collapsed,
                ranges=result.ranges,
                property=PROPERTY,
            )
            self._logged_kib = result.huge_kib
        else:
            log.debug(
                "Huge page pass: {moved} ranges collapsed, {collapsed} of {ranges} in all, "
                "{huge_mib:.0f} MiB on huge pages",
                moved=result.moved,
                collapsed=result.collapsed,
                ranges=result.ranges,
                huge_mib=huge_mib,
            )
        if result.refused:
            log.debug(
                "The kernel refused some ranges for now: {error}",
                error=os.strerror(result.refused),
            )

    def _failed(self, failure: Failure) -> None:
        log.failure(
            "A huge page pass failed; trying again in {interval} s", failure, interval=self.interval
        )
        self._schedule(self.interval)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        running = self._running
        if running is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        running.addBoth(lambda _: done.callback(None))
        return done
