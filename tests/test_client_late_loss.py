# -*- test-case-name: tests.test_client_late_loss -*-
"""
Tests for L{gridreg.client.late_loss}: a connection whose peer went away is
acted on a few milliseconds late, after what the reactor reads meanwhile;
one this side closes is acted on at once.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from gridreg.client.late_loss import LOSS_NOTICE_DELAY, LateLossEndpoint


class Recorder(Protocol):
    """Notes what it hears, in order."""

    def __init__(self, heard: list[Any]) -> None:
        self.heard = heard

    def dataReceived(self, data: bytes) -> None:
        self.heard.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.heard.append(("lost", reason.type))


class Noticing(Recorder):
    """Also has the part of the loss acted on at once."""

    def loss_noticed(self, reason: Failure) -> None:
        self.heard.append(("noticed", reason.type))


@implementer(IStreamClientEndpoint)
class Direct:
    """An endpoint that connects at once over a L{StringTransport}."""

    def __init__(self) -> None:
        self.transports: list[StringTransport] = []
        self.protocols: list[Any] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.transports.append(transport)
        self.protocols.append(protocol)
        return succeed(protocol)


class LateLossTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.direct = Direct()
        self.heard: list[Any] = []
        self.endpoint = LateLossEndpoint(self.direct, self.clock)

    def connect(self, kind: type = Recorder) -> Any:
        return self.successResultOf(
            self.endpoint.connect(Factory.forProtocol(lambda: kind(self.heard)))
        )

    def test_the_owner_gets_its_own_protocol(self) -> None:
        """The connect Deferred fires with the protocol the factory built."""
        protocol = self.connect()
        self.assertIsInstance(protocol, Recorder)
        self.assertIs(protocol.transport, self.direct.transports[0])

    def test_a_peer_loss_is_heard_late_and_data_at_once(self) -> None:
        """
        Data passes at once; the peer's loss reaches the protocol
        LOSS_NOTICE_DELAY later, after data read meanwhile on other connections.
        """
        self.connect()
        wire = self.direct.protocols[0]  # what the transport talks to
        wire.dataReceived(b"before")
        wire.connectionLost(Failure(ConnectionLost("reset")))
        self.assertEqual(self.heard, [b"before"])
        self.clock.advance(LOSS_NOTICE_DELAY * 0.99)
        self.assertEqual(self.heard, [b"before"])
        self.clock.advance(LOSS_NOTICE_DELAY * 0.01)
        self.assertEqual(self.heard, [b"before", ("lost", ConnectionLost)])

    def test_loss_noticed_is_called_at_the_loss(self) -> None:
        """A protocol's loss_noticed runs at once, its connectionLost later."""
        self.connect(Noticing)
        self.direct.protocols[0].connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.heard, [("noticed", ConnectionDone)])
        self.clock.advance(LOSS_NOTICE_DELAY)
        self.assertEqual(self.heard, [("noticed", ConnectionDone), ("lost", ConnectionDone)])

    def test_a_close_by_this_side_is_heard_at_once(self) -> None:
        """Closing or aborting our own connection is not delayed: stopping stays prompt."""
        protocol = self.connect(Noticing)
        protocol.transport.loseConnection()
        self.direct.protocols[0].connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.heard, [("lost", ConnectionDone)])
        self.connect(Noticing)
        self.direct.protocols[1].connectionLost(Failure(ConnectionAborted()))
        self.assertEqual(self.heard, [("lost", ConnectionDone), ("lost", ConnectionAborted)])

    def test_a_client_service_retries_after_the_delay(self) -> None:
        """
        Under a ClientService the retry waits for the delayed notice, and a
        stop during the delay completes once it comes.
        """
        service = ClientService(
            self.endpoint,
            Factory.forProtocol(lambda: Recorder(self.heard)),
            retryPolicy=lambda attempt: 0.0,
            clock=self.clock,
        )
        service.startService()
        self.assertIsInstance(self.successResultOf(service.whenConnected()), Recorder)
        self.direct.protocols[0].connectionLost(Failure(ConnectionLost("reset")))
        self.clock.advance(0)
        self.assertEqual(len(self.direct.protocols), 1, "no redial before the notice")
        self.clock.advance(LOSS_NOTICE_DELAY)
        self.clock.advance(0)
        self.assertEqual(len(self.direct.protocols), 2)
        self.direct.protocols[1].connectionLost(Failure(ConnectionLost("reset")))
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.clock.advance(LOSS_NOTICE_DELAY)
        self.successResultOf(stopped)
