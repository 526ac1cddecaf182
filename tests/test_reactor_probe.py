"""The benchmarks' reactor probe: how late the reactor ran its timer, each second."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry.reactor_probe import ReactorProbe, probe_from


class ReactorProbeTests(SynchronousTestCase):
    def test_reports_the_longest_delay_of_each_second(self) -> None:
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock = Clock()
        probe = ReactorProbe(clock, 0.005)
        probe.start()
        clock.advance(0.005)
        clock.advance(0.030)  # the reactor was busy 25 ms past the next tick
        for _ in range(400):  # two seconds more: two reports
            clock.advance(0.005)
        delays = [e["delay_ms"] for e in events if "delay_ms" in e]
        self.assertAlmostEqual(delays[0], 25.0, places=3)
        self.assertAlmostEqual(delays[1], 0.0, places=3)
        self.assertIn("thread_ms", events[0])
        self.assertIn("process_ms", events[0])
        probe.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_off_unless_asked_for(self) -> None:
        self.assertIsNone(probe_from(0, Clock()))
        probe = probe_from(5, Clock())
        assert probe is not None
        self.assertEqual(probe.period, 0.005)
