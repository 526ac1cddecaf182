"""
Tests for L{gridreg.client.warm}: what a connection's loss costs the reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.defer import fail
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gridreg.client.warm import TRANSPORTS, QuietAMP, QuietClientService, warm_loss_path


class _Refused:
    """An endpoint whose every attempt is refused."""

    def connect(self, factory: Any) -> Any:
        return fail(ConnectionRefusedError())


class WarmTests(SynchronousTestCase):
    def test_the_specifications_are_computed_at_once(self) -> None:
        """
        The class's interface specification exists after the warm-up: the
        reactor's check at its first loss finds it instead of computing it.
        """

        class Fresh(Protocol):
            pass

        self.assertNotIn("__implemented__", Fresh.__dict__)
        warm_loss_path(Fresh)
        self.assertIn("__implemented__", Fresh.__dict__)
        for transport in TRANSPORTS:
            self.assertIn("__implemented__", transport.__dict__)


class QuietClientServiceTests(SynchronousTestCase):
    def retry_lines(self, cls: type[ClientService]) -> list[str]:
        clock = Clock()
        with capturedLogs() as events:
            service = cls(_Refused(), Factory.forProtocol(Protocol), clock=clock)
            service.startService()
            clock.advance(10)
            service.stopService()
        return [formatEvent(e) for e in events if "Scheduling retry" in formatEvent(e)]

    def test_retries_are_not_logged(self) -> None:
        self.assertNotEqual(self.retry_lines(ClientService), [], "Twisted's own logs each retry")
        self.assertEqual(self.retry_lines(QuietClientService), [])

    def test_warnings_still_reach_the_log(self) -> None:
        service = QuietClientService(_Refused(), Factory.forProtocol(Protocol), clock=Clock())
        with capturedLogs() as events:
            service._log.warn("something {what}", what="bad")
            service._log.info("a note")
        self.assertEqual([formatEvent(e) for e in events], ["something bad"])


class QuietAMPTests(SynchronousTestCase):
    def lines(self, cls: type[amp.AMP]) -> tuple[list[str], Any]:
        with capturedLogs() as events:
            protocol = cls()
            protocol.makeConnection(StringTransport())
            pending = protocol.callRemoteString(b"Ping")
            protocol.connectionLost(Failure(ConnectionDone()))
        return [formatEvent(e) for e in events], pending

    def test_no_line_for_each_connection(self) -> None:
        loud, pending = self.lines(amp.AMP)
        self.failureResultOf(pending, ConnectionDone)
        self.assertTrue(any("connection lost" in line for line in loud), loud)
        quiet, pending = self.lines(QuietAMP)
        self.failureResultOf(pending, ConnectionDone)
        self.assertEqual(quiet, [])

    def test_a_lost_connection_still_fails_what_is_pending(self) -> None:
        _, pending = self.lines(QuietAMP)
        self.failureResultOf(pending, ConnectionDone)
