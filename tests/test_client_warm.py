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
from twisted.logger import LogLevel, capturedLogs, formatEvent
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
    def retry_levels(self, cls: type[ClientService]) -> list[LogLevel]:
        clock = Clock()
        with capturedLogs() as events:
            service = cls(_Refused(), Factory.forProtocol(Protocol), clock=clock)
            service.startService()
            clock.advance(10)
            service.stopService()
        return [e["log_level"] for e in events if "Scheduling retry" in formatEvent(e)]

    def test_retries_are_logged_at_debug(self) -> None:
        """
        Each retry is still logged, at debug level: a registry at its default
        level drops it before formatting it.
        """
        self.assertIn(LogLevel.info, self.retry_levels(ClientService), "Twisted's own level")
        levels = self.retry_levels(QuietClientService)
        self.assertNotEqual(levels, [])
        self.assertEqual(set(levels), {LogLevel.debug})

    def test_warnings_keep_their_level(self) -> None:
        service = QuietClientService(_Refused(), Factory.forProtocol(Protocol), clock=Clock())
        with capturedLogs() as events:
            service._log.warn("something {what}", what="bad")
        self.assertEqual(
            [(formatEvent(e), e["log_level"]) for e in events], [("something bad", LogLevel.warn)]
        )


class QuietAMPTests(SynchronousTestCase):
    def lines(self, cls: type[amp.AMP]) -> tuple[list[tuple[str, LogLevel]], Any]:
        with capturedLogs() as events:
            protocol = cls()
            protocol.makeConnection(StringTransport())
            pending = protocol.callRemoteString(b"Ping")
            protocol.connectionLost(Failure(ConnectionDone()))
        return [(formatEvent(e), e["log_level"]) for e in events], pending

    def test_each_connection_is_logged_at_debug(self) -> None:
        loud, pending = self.lines(amp.AMP)
        self.failureResultOf(pending, ConnectionDone)
        self.assertIn(LogLevel.info, {level for _, level in loud})
        quiet, pending = self.lines(QuietAMP)
        self.failureResultOf(pending, ConnectionDone)
        self.assertEqual(len(quiet), 2, quiet)
        self.assertIn("connection lost", quiet[1][0])
        self.assertEqual({level for _, level in quiet}, {LogLevel.debug})

    def test_a_lost_connection_still_fails_what_is_pending(self) -> None:
        _, pending = self.lines(QuietAMP)
        self.failureResultOf(pending, ConnectionDone)
