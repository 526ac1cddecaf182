"""
Tests for L{gridreg.huge_page_collapse}: which ranges of a process's
memory a pass collapses onto huge pages, what it does when the kernel
refuses, and when the passes run (on a fake kernel and a L{Clock}).
"""

from __future__ import annotations

import errno
from typing import Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from gridreg.huge_page_collapse import (
    HUGE_PAGE,
    PAGE,
    CollapsePass,
    HugePageCollapse,
    LinuxMemory,
    available,
    collapse,
    windows,
)

PAGES = HUGE_PAGE // PAGE
MAPS = [
    # the C heap: 0x600000-0xe00000 holds the aligned ranges at 6, 8, 10 and 12 MiB
    "00500000-00e00000 rw-p 00000000 00:00 0                                  [heap]\n",
    # a library's data: file-backed, never
    "01000000-01400000 rw-p 00001000 08:01 1234                               /usr/lib/libx.so\n",
    # read-only anonymous memory, never
    "01400000-01800000 r--p 00000000 00:00 0 \n",
    # three CPython arenas in a row: one aligned range, at 0x1a00000
    "01900000-01c00000 rw-p 00000000 00:00 0 \n",
    # a 1 MiB arena holds none
    "02000000-02100000 rw-p 00000000 00:00 0 \n",
    # the main stack, never
    "7ffd0000-7ffe0000 rw-p 00000000 00:00 0                                  [stack]\n",
]


class FakeMemory:
    """Ranges with a resident page count, and what madvise answers for each."""

    def __init__(
        self,
        resident: dict[int, int],
        errors: Optional[dict[int, int]] = None,
        maps: list[str] = MAPS,
    ) -> None:
        self.pages = resident
        self.errors = errors or {}
        self.lines = maps
        self.collapsed: list[int] = []

    def maps(self) -> list[str]:
        return self.lines

    def resident(self, start: int, length: int) -> Optional[int]:
        return self.pages.get(start)

    def collapse(self, start: int, length: int) -> int:
        assert length == HUGE_PAGE
        error = self.errors.get(start, 0)
        if not error:
            self.collapsed.append(start)
        return error

    def huge_kib(self) -> int:
        return len(set(self.collapsed)) * HUGE_PAGE // 1024


class WindowsTests(SynchronousTestCase):
    def test_aligned_ranges_of_anonymous_memory(self) -> None:
        """The heap's and the anonymous mappings' whole aligned ranges, nothing else."""
        self.assertEqual(list(windows(MAPS)), [0x600000, 0x800000, 0xA00000, 0xC00000, 0x1A00000])

    def test_this_process(self) -> None:
        """The real parser reads this process's maps: every range is aligned and anonymous."""
        for start in windows(LinuxMemory().maps()):
            self.assertEqual(start % HUGE_PAGE, 0)


class CollapseTests(SynchronousTestCase):
    def test_dense_ranges_only(self) -> None:
        """
        A range with at least 7/8 of its pages resident is collapsed; a
        sparse one (a thread's stack, a fresh arena) is left alone, so a
        pass adds little resident memory; one unmapped meanwhile is skipped.
        """
        heap = [0x600000, 0x800000, 0xA00000, 0xC00000]
        memory = FakeMemory(
            {heap[0]: PAGES, heap[1]: PAGES * 7 // 8, heap[2]: PAGES * 7 // 8 - 1, 0x1A00000: 3}
        )  # heap[3]: not mapped any more
        result = collapse(memory, set())
        self.assertEqual(memory.collapsed, [heap[0], heap[1]])
        self.assertEqual((result.ranges, result.moved, result.collapsed), (5, 2, 2))
        self.assertEqual(result.huge_kib, 4096)
        self.assertFalse(result.unsupported)

    def test_no_madvise_collapse(self) -> None:
        """A kernel before 6.1 answers EINVAL for a plain range: the pass says so and stops."""
        memory = FakeMemory({0x600000: PAGES, 0x800000: PAGES}, {0x600000: errno.EINVAL})
        result = collapse(memory, set())
        self.assertTrue(result.unsupported)
        self.assertEqual(memory.collapsed, [])

    def test_refused_for_now(self) -> None:
        """No huge page free (ENOMEM) or a busy range (EAGAIN): the others are still collapsed."""
        memory = FakeMemory(
            {0x600000: PAGES, 0x800000: PAGES, 0xA00000: PAGES},
            {0x600000: errno.EAGAIN, 0x800000: errno.ENOMEM},
        )
        result = collapse(memory, set())
        self.assertEqual(memory.collapsed, [0xA00000])
        self.assertEqual(result.refused, errno.ENOMEM)
        self.assertFalse(result.unsupported)

    def test_paced(self) -> None:
        """
        The kernel holds the memory map while it copies a range: a pass
        pauses between two ranges, collapses at most its limit and says it
        left some; the next one goes on from there, without copying again
        what is on huge pages already.
        """
        heap = [0x600000, 0x800000, 0xA00000, 0xC00000]
        memory = FakeMemory({start: PAGES for start in heap})
        pauses: list[int] = []
        done: set[int] = set()
        first = collapse(memory, done, limit=3, pause=lambda: pauses.append(len(memory.collapsed)))
        self.assertEqual(memory.collapsed, heap[:3])
        self.assertEqual(pauses, [1, 2])  # between two ranges, not before the first
        self.assertTrue(first.pending)
        second = collapse(memory, done, limit=3)
        self.assertEqual(memory.collapsed, heap)
        self.assertEqual((second.moved, second.collapsed, second.pending), (1, 4, False))

    def test_available(self) -> None:
        self.assertIsNone(available("linux", thp=True))
        self.assertIn("never", available("linux", thp=False) or "")
        self.assertEqual(available("darwin", thp=True), "not Linux")


class ServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.memory = FakeMemory({0x600000: PAGES})
        self.passes = 0
        self.times: list[float] = []
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def run_now(self, work: Callable[[], CollapsePass]) -> Deferred[CollapsePass]:
        self.passes += 1
        self.times.append(round(self.clock.seconds(), 1))
        return succeed(work())

    def service(
        self, run: Optional[Callable[..., Deferred[CollapsePass]]] = None
    ) -> HugePageCollapse:
        service = HugePageCollapse(
            self.clock, 30, memory=self.memory, run=run or self.run_now, pause=lambda: None
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def test_schedule(self) -> None:
        """
        The first pass a second after start-up, the next a second after one
        that moved memory, then twice as long after each that found nothing,
        up to the interval.
        """
        self.service()
        self.clock.pump([0.5] * 260)
        self.assertEqual(self.times, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 62.0, 92.0, 122.0])

    def test_ranges_left_come_sooner(self) -> None:
        """A heap too big for one pass is collapsed a second later, not an interval later."""
        self.memory.pages = {start: PAGES for start in (0x600000, 0x800000, 0xA00000, 0xC00000)}
        self.memory.lines = MAPS[:1]
        service = HugePageCollapse(
            self.clock, 30, memory=self.memory, run=self.run_now, pause=lambda: None, per_pass=3
        )
        service.startService()
        self.addCleanup(service.stopService)
        self.clock.advance(1)
        self.assertEqual(len(self.memory.collapsed), 3)
        self.clock.advance(1)
        self.assertEqual(len(self.memory.collapsed), 4)
        self.clock.pump([0.5] * 8)
        self.assertEqual(self.times, [1.0, 2.0, 3.0, 5.0])

    def test_logged_once_it_moved_memory(self) -> None:
        """An operator learns how much moved; later passes that move nothing stay quiet."""
        self.service()
        self.clock.advance(1)
        self.clock.advance(30)
        infos = [e for e in self.events if e["log_level"].name == "info"]
        self.assertEqual(len(infos), 1)
        self.assertEqual(infos[0]["huge_mib"], 2.0)

    def test_unsupported_kernel_stops(self) -> None:
        """A kernel without MADV_COLLAPSE: said once, and no more passes."""
        self.memory.errors = {0x600000: errno.EINVAL}
        service = self.service()
        self.clock.advance(1)
        self.clock.advance(300)
        self.assertEqual(self.passes, 1)
        assert service.last is not None
        self.assertTrue(service.last.unsupported)
        self.assertIn("MADV_COLLAPSE", "".join(e["log_format"] for e in self.events))

    def test_failed_pass_is_logged_and_retried(self) -> None:
        """A pass that raises is logged as a failure; the next one still runs."""
        outcomes = [fail(OSError(errno.EACCES, "no /proc")), None]

        def run(work: Callable[[], CollapsePass]) -> Deferred[CollapsePass]:
            self.passes += 1
            outcome = outcomes.pop(0)
            return outcome if outcome is not None else succeed(work())

        service = self.service(run)
        self.clock.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.clock.advance(30)
        self.assertEqual(self.passes, 2)
        self.assertIsNotNone(service.last)

    def test_stop_waits_for_a_running_pass(self) -> None:
        """Stopping while a pass runs on its thread fires once that pass is done."""
        pending: Deferred[CollapsePass] = Deferred()
        service = HugePageCollapse(self.clock, 30, memory=self.memory, run=lambda work: pending)
        service.startService()
        self.clock.advance(1)
        stopped = service.stopService()
        self.assertNoResult(stopped)
        pending.callback(CollapsePass())
        self.successResultOf(stopped)
        self.clock.advance(300)  # and nothing runs after the stop
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_before_the_first_pass(self) -> None:
        service = HugePageCollapse(self.clock, 30, memory=self.memory, run=self.run_now)
        service.startService()
        self.successResultOf(service.stopService())
        self.clock.advance(300)
        self.assertEqual(self.passes, 0)
