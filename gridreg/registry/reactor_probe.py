# -*- test-case-name: tests.test_reactor_probe -*-
"""
How late the reactor runs a timer: the longest delay, reported every
second, for benchmarks (C{GridReg.Debug.ReactorProbe}, the probe's period
in milliseconds; 0, the default, turns it off). A delay is how much later
than due the probe's timer ran, so it is the longest the reactor was busy
with something else (a callback, a thread holding the interpreter). Each
tick schedules the next one, rather than a C{LoopingCall}, whose fixed
grid of times would hide part of a delay longer than its period.

Next to the longest delay, the most CPU time the reactor's thread, and
the whole process, used between two ticks: on a busy machine a delay the
process did not spend computing was the machine's (another program had
the cores), so these two bound what gridreg itself held the reactor up by
(the process's figure includes worker threads holding the interpreter).
"""

from __future__ import annotations

import time
from typing import Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

#: seconds between two reports
REPORT_EVERY = 1.0


class ReactorProbe:
    """Ticks every C{period} seconds; logs the longest delay of each second."""

    log = Logger()

    def __init__(self, clock: IReactorTime, period: float) -> None:
        self.clock = clock
        self.period = period
        #: the longest delay since the last report, in seconds
        self.longest = 0.0
        self._due = 0.0
        self._reported = 0.0
        self._cpu = (0.0, 0.0)
        #: the most CPU seconds (this thread, the process) between two ticks
        self.busiest = (0.0, 0.0)
        self._call: Optional[IDelayedCall] = None

    def start(self) -> None:
        self._reported = self.clock.seconds()
        self._schedule()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.period
        self._cpu = (time.thread_time(), time.process_time())
        self._call = self.clock.callLater(self.period, self._tick)

    def _tick(self) -> None:
        now = self.clock.seconds()
        self.longest = max(self.longest, now - self._due)
        thread, process = self._cpu
        self.busiest = (
            max(self.busiest[0], time.thread_time() - thread),
            max(self.busiest[1], time.process_time() - process),
        )
        self._schedule()
        if now - self._reported >= REPORT_EVERY:
            self.log.info(
                "[Debug] reactor probe: longest delay {delay_ms:.1f} ms; most CPU between "
                "two ticks: reactor thread {thread_ms:.1f} ms, process {process_ms:.1f} ms",
                delay_ms=self.longest * 1000.0,
                thread_ms=self.busiest[0] * 1000.0,
                process_ms=self.busiest[1] * 1000.0,
            )
            self.longest = 0.0
            self.busiest = (0.0, 0.0)
            self._reported = now


def probe_from(period_ms: int, clock: IReactorTime) -> Optional[ReactorProbe]:
    """The probe C{GridReg.Debug.ReactorProbe} asks for, if any."""
    if period_ms <= 0:
        return None
    return ReactorProbe(clock, period_ms / 1000.0)
