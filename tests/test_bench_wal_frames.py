"""Tests for C{bench/wal_frames.py}: each write pattern, measured in a store of its own."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench import wal_frames


class WalFramesTests(SynchronousTestCase):
    def test_every_pattern_makes_the_commits_asked_for(self) -> None:
        for pattern in wal_frames.PATTERNS:
            warm, measured = wal_frames._mutations(pattern, 7)
            self.assertEqual(len(measured), 7, pattern)
            self.assertTrue(all(len(mutations) == 1 for mutations in warm + measured), pattern)

    def test_a_commit_writes_frames(self) -> None:
        """A commit of one object writes at least its log page; the CPU is counted too."""
        result = wal_frames.measure(self.mktemp(), "lag", 5, objects=10)
        self.assertGreaterEqual(result["frames"], 1.0)
        self.assertGreater(result["cpu_us"], 0.0)
