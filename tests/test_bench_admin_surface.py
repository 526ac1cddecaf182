# -*- test-case-name: tests.test_bench_admin_surface -*-
"""
C{bench/admin_surface.py}'s own logic, without processes: the application
both registries deploy declares the allocatable object the benchmark
allocates, CPU time is read exactly from the threads, and the figures
printed are the medians over the rounds.
"""

from __future__ import annotations

import os
import time

from twisted.trial import unittest

from bench.admin_surface import ALLOCATABLE, CpuSample, application_xml, medians
from gridreg.registry.descriptor_xml import parse_application_xml


class ApplicationTests(unittest.TestCase):
    def test_allocatable_object(self) -> None:
        """One manual server on node1 whose adapter holds the allocatable object."""
        app = parse_application_xml(application_xml())
        (node,) = app.nodes
        self.assertEqual(node.name, "node1")
        (server,) = node.servers
        self.assertEqual(server.activation, "manual")
        (adapter,) = server.adapters
        self.assertEqual([o.identity for o in adapter.allocatables], [ALLOCATABLE])
        self.assertEqual(adapter.objects, ())  # allocatable, not well-known


class CpuSampleTests(unittest.TestCase):
    def test_threads_count_below_a_tick(self) -> None:
        """A few milliseconds of CPU are seen, where /proc/PID/stat's 10 ms ticks may not."""
        before = CpuSample(os.getpid())
        start = time.process_time()
        while time.process_time() - start < 0.003:
            pass
        used = before.until(CpuSample(os.getpid()))
        self.assertGreaterEqual(used, 0.003)
        self.assertLess(used, 1.0)


class MedianTests(unittest.TestCase):
    def test_median_per_figure_and_ratio(self) -> None:
        """Each figure is the median of its rounds; the table shows gridreg/IceGrid."""
        rounds = [
            {"allocation": {"grant_p50_s": v, "release_p50_s": None}} for v in (0.3, 0.1, 0.2)
        ]
        summary = medians(rounds)
        self.assertEqual(summary["allocation"], {"grant_p50_s": 0.2, "release_p50_s": None})
        self.assertEqual(medians(rounds[:2])["allocation"]["grant_p50_s"], 0.2)
