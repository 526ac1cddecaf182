# -*- test-case-name: tests.test_bench_idle_connections -*-
"""
The connections C{bench/idle_connections.py} opens: idle ones send nothing,
half-open ones half a header once validated, and both count what the
registry does to them.
"""

from __future__ import annotations

import resource

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from bench.idle_connections import PARTIAL_HEADER, Counts, IdleFactory, raise_fd_limit
from gridreg.ice.messages import CLOSE_CONNECTION, HEADER_SIZE, VALIDATE_CONNECTION


class IdleConnectionTests(SynchronousTestCase):
    def connect(self, partial: bool) -> tuple:  # type: ignore[type-arg]
        counts = Counts()
        protocol = IdleFactory(counts, partial).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return counts, protocol, transport

    def test_partial_header_after_validation(self) -> None:
        counts, protocol, transport = self.connect(partial=True)
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(VALIDATE_CONNECTION)
        self.assertEqual(transport.value(), PARTIAL_HEADER)
        self.assertLess(len(PARTIAL_HEADER), HEADER_SIZE)
        self.assertEqual(counts, Counts(opened=1, validated=1))

    def test_idle_sends_nothing_and_counts_the_close(self) -> None:
        counts, protocol, transport = self.connect(partial=False)
        protocol.dataReceived(VALIDATE_CONNECTION + CLOSE_CONNECTION)
        protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(transport.value(), b"")
        self.assertEqual(counts, Counts(opened=1, validated=1, close_messages=1, lost=1))

    def test_fd_limit_never_lowered(self) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.assertGreaterEqual(raise_fd_limit(16), soft)
