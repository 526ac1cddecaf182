# -*- test-case-name: tests.test_bench_locate -*-
"""
C{bench/locate.py}'s own arithmetic: what it says the client pays per reply,
which goals it says are met, and that C{--batch} really changes the
registry's scheduling policy.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator

import attrs

from twisted.trial.unittest import SynchronousTestCase

from bench._harness import LoadResult, ProcessWindow, Variant, parse_property_options, variants
from bench.locate import (
    LocateResult,
    WireWindow,
    batch_scheduling,
    goal_verdicts,
    parse_perf_count,
    pin,
    user_system_seconds,
)


def result(
    count: int, registry_cpu: float, client_cpus: list[float], p99_ms: float = 1.0
) -> LocateResult:
    window = 2.0
    loaded = LoadResult(
        count=count,
        errors=0,
        rate=count / window,
        p50_ms=0.5,
        p99_ms=p99_ms,
        max_ms=2.0,
        registry=ProcessWindow(registry_cpu, window),
        clients=[ProcessWindow(cpu, window) for cpu in client_cpus],
        machine=ProcessWindow(registry_cpu + sum(client_cpus), window),
    )
    return LocateResult.of(
        loaded,
        WireWindow(
            registry_switches=count // 2,
            client_switches=count // 4,
            client_preemptions=count // 10,
            segments=2 * count,
        ),
    )


class PerReplyTests(SynchronousTestCase):
    def test_client_costs_summed_over_processes(self) -> None:
        """Two clients' CPU and wake-ups are shared out over all the replies."""
        measured = result(1000, registry_cpu=0.01, client_cpus=[0.02, 0.03])
        self.assertAlmostEqual(measured.client_cpu_us_per_reply, 50.0)
        self.assertAlmostEqual(measured.cpu_us_per_request, 10.0)
        self.assertEqual(measured.client_wakeups_per_reply, 0.25)
        self.assertEqual(measured.client_preemptions_per_reply, 0.1)
        self.assertEqual(measured.registry_wakeups_per_locate, 0.5)
        self.assertEqual(measured.segments_per_locate, 2.0)
        self.assertEqual(measured.as_json()["client_cpu_us_per_reply"], 50.0)

    def test_nothing_per_reply_without_replies(self) -> None:
        self.assertIsNone(result(0, 0.01, [0.02]).client_cpu_us_per_reply)


class UserSystemTests(SynchronousTestCase):
    def test_split_per_locate(self) -> None:
        """The registry's user and system time, and its system calls, per locate."""
        measured = attrs.evolve(
            result(1000, registry_cpu=0.03, client_cpus=[0.02]),
            wire=WireWindow(
                0, 0, 0, 0, registry_user=0.01, registry_system=0.02, registry_syscalls=3000
            ),
        )
        self.assertAlmostEqual(measured.user_us_per_locate, 10.0)
        self.assertAlmostEqual(measured.system_us_per_locate, 20.0)
        self.assertEqual(measured.syscalls_per_locate, 3.0)
        self.assertEqual(measured.as_json()["registry_syscalls_per_locate"], 3.0)

    def test_no_syscalls_unless_counted(self) -> None:
        self.assertIsNone(result(1000, 0.01, [0.02]).syscalls_per_locate)

    def test_own_process_split(self) -> None:
        """This process's user and system seconds, as /proc has them, add up to os.times()'s."""
        before = os.times()
        user, system = user_system_seconds(os.getpid())
        after = os.times()
        self.assertGreaterEqual(user + system, before.user + before.system - 0.02)
        self.assertLessEqual(user + system, after.user + after.system + 0.02)

    def test_perf_count(self) -> None:
        """perf stat -x, output: the event's count, or None when perf could not count it."""
        self.assertEqual(parse_perf_count("\n12345,,raw_syscalls:sys_enter,2000,100.00,,\n"), 12345)
        self.assertIsNone(parse_perf_count("<not counted>,,raw_syscalls:sys_enter,0,0.00,,"))
        self.assertIsNone(parse_perf_count("perf: command not found"))


class GoalTests(SynchronousTestCase):
    def test_cpu_goal_checked_with_one_in_flight(self) -> None:
        """Registry CPU per locate must be half IceGrid's at 1 x 1 too."""
        results = {
            "icegrid": {"1 x 1": result(1000, 0.030, [0.03])},
            "gridreg": {"1 x 1": result(1000, 0.020, [0.03])},
        }
        [line] = goal_verdicts([(1, 1)], results)
        self.assertIn("CPU 0.67x (<= 0.5x) MISSED", line)
        self.assertIn("req/s 1.00x (>= 1.0x) met", line)

    def test_two_clients_need_more_throughput(self) -> None:
        results = {
            "icegrid": {"16 x 2": result(1000, 0.040, [0.03, 0.03])},
            "gridreg": {"16 x 2": result(1200, 0.010, [0.03, 0.03], p99_ms=2.0)},
        }
        [line] = goal_verdicts([(16, 2)], results)
        self.assertIn("req/s 1.20x (>= 1.3x) MISSED", line)
        self.assertIn("CPU 0.21x (<= 0.5x) met", line)
        self.assertIn("p99 2.00 vs 1.00 ms MISSED", line)


class VariantTests(SynchronousTestCase):
    def test_one_gridreg_per_scheduler(self) -> None:
        """--schedulers normal,batch: gridreg twice, each given its GridReg.Scheduler."""
        self.assertEqual(
            variants("icegrid,gridreg", "normal,batch"),
            [
                Variant("icegrid", "icegrid"),
                Variant("gridreg/normal", "gridreg", {"GridReg.Scheduler": "normal"}),
                Variant("gridreg/batch", "gridreg", {"GridReg.Scheduler": "batch"}),
            ],
        )

    def test_no_schedulers_runs_the_default(self) -> None:
        self.assertEqual(variants("gridreg"), [Variant("gridreg", "gridreg")])

    def test_property_options(self) -> None:
        self.assertEqual(
            parse_property_options(["GridReg.Scheduler=normal", "A.B = x y"]),
            {"GridReg.Scheduler": "normal", "A.B": "x y"},
        )
        self.assertRaises(SystemExit, parse_property_options, ["GridReg.Scheduler"])


@contextmanager
def a_thread_started_before() -> Iterator[int]:
    """A thread of this process, started and waiting; yields its native id."""
    release = threading.Event()
    ready = threading.Event()
    native: list[int] = []

    def waiting() -> None:
        native.append(threading.get_native_id())
        ready.set()
        release.wait()

    thread = threading.Thread(target=waiting)
    thread.start()
    ready.wait()
    try:
        yield native[0]
    finally:
        release.set()
        thread.join()


class BatchSchedulingTests(SynchronousTestCase):
    def test_every_thread(self) -> None:
        """A thread started before the call is moved to SCHED_BATCH too."""
        with a_thread_started_before() as native:
            try:
                batch_scheduling(os.getpid())
                self.assertEqual(os.sched_getscheduler(native), os.SCHED_BATCH)
                self.assertEqual(os.sched_getscheduler(0), os.SCHED_BATCH)
            finally:
                for task in os.listdir(f"/proc/{os.getpid()}/task"):
                    os.sched_setscheduler(int(task), os.SCHED_OTHER, os.sched_param(0))


class WakeupFloorTests(SynchronousTestCase):
    def test_split_adds_up(self) -> None:
        """The bare loop's CPU per round trip is its user plus its system time."""
        from bench.wakeup_floor import measure_split

        cpu, user, system, rate = measure_split(0, 0, 300)
        self.assertAlmostEqual(cpu, user + system, delta=0.16)  # each printed to 0.1
        self.assertGreater(rate, 0)


class PinTests(SynchronousTestCase):
    def test_every_thread(self) -> None:
        """A thread started before the call is kept on the CPU too."""
        everywhere = os.sched_getaffinity(0)
        with a_thread_started_before() as native:
            try:
                pin(os.getpid(), 0)
                self.assertEqual(os.sched_getaffinity(native), {0})
                self.assertEqual(os.sched_getaffinity(0), {0})
            finally:
                for task in os.listdir(f"/proc/{os.getpid()}/task"):
                    os.sched_setaffinity(int(task), everywhere)
