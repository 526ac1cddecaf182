# -*- test-case-name: tests.test_client_failover -*-
"""
Tests for L{gridreg.client.failover} and L{gridreg.client.endpoints}: the
endpoint list that retries walk and the connection gate that tells a hung
server from a live one. The translation of Ice endpoints into Twisted ones
is in L{tests.test_endpoints}.
"""

from __future__ import annotations

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from gridreg.client import FailoverEndpoint, locator_retry_policy
from gridreg.client.endpoints import ValidatedEndpoint
from gridreg.ice.client import IceClientFactory, IceClientProtocol
from gridreg.ice.messages import VALIDATE_CONNECTION
from tests._helpers import MemoryNetwork


@implementer(IStreamClientEndpoint)
class ScriptedEndpoint:
    """An endpoint whose attempts succeed or fail as the test says."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.attempts: list[Deferred[IProtocol]] = []
        self.factories: list[IProtocolFactory] = []

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        d: Deferred[IProtocol] = Deferred()
        self.attempts.append(d)
        self.factories.append(protocolFactory)
        return d

    def __repr__(self) -> str:
        return self.name


class FailoverEndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.entries = [ScriptedEndpoint(n) for n in "abc"]
        self.failover = FailoverEndpoint(self.entries)
        self.factory = Factory.forProtocol(Protocol)

    def attempt(self) -> tuple[Deferred[IProtocol], ScriptedEndpoint]:
        index = self.failover.current_index
        d = self.failover.connect(self.factory)
        return d, self.entries[index]

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IStreamClientEndpoint, self.failover))

    def test_empty(self) -> None:
        self.assertRaises(ValueError, FailoverEndpoint, [])

    def test_failures_walk_the_list_and_wrap_around(self) -> None:
        """Each failed attempt makes the next entry current, back to the first after the last."""
        dialled = []
        for _ in range(4):
            d, entry = self.attempt()
            dialled.append(entry.name)
            entry.attempts[-1].errback(error.ConnectionRefusedError())
            self.failureResultOf(d, error.ConnectionRefusedError)
        self.assertEqual(dialled, ["a", "b", "c", "a"])
        self.assertEqual(self.failover.current_index, 1)

    def test_success_stays(self) -> None:
        """A working entry stays current, so reconnecting returns to the same replica."""
        d, entry = self.attempt()
        protocol = Protocol()
        entry.attempts[-1].callback(protocol)
        self.assertIs(self.successResultOf(d), protocol)
        self.assertEqual(self.failover.current_index, 0)
        self.attempt()
        self.assertEqual(len(self.entries[0].attempts), 2)

    def test_advance(self) -> None:
        """The owner moves on explicitly, e.g. after a replica stopped answering."""
        self.failover.advance()
        self.assertIs(self.failover.current, self.entries[1])
        self.failover.advance()
        self.failover.advance()
        self.assertEqual(self.failover.current_index, 0)

    def test_cancel_does_not_advance(self) -> None:
        """Cancelling (the owner is stopping) says nothing about the entry."""
        d, _ = self.attempt()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.failover.current_index, 0)

    def test_no_double_advance(self) -> None:
        """A late failure after the owner moved on does not skip an entry."""
        d, entry = self.attempt()
        self.failover.advance()
        entry.attempts[-1].errback(error.ConnectionRefusedError())
        self.failureResultOf(d, error.ConnectionRefusedError)
        self.assertEqual(self.failover.current_index, 1)


class SilentServer(Protocol):
    """Accepts and never speaks: a hung or non-Ice server."""


class ValidateServer(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(VALIDATE_CONNECTION)


class GarbageServer(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")


class ValidatedEndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork()
        self.reactor = self.network.reactor
        self.endpoint = ValidatedEndpoint(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", 4061), self.reactor, 0.5
        )

    def serve(self, protocol: type[Protocol]) -> None:
        self.network.listen("127.0.0.1", 4061, Factory.forProtocol(protocol))

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IStreamClientEndpoint, self.endpoint))

    def test_validated(self) -> None:
        """The protocol is built once ValidateConnection arrived, and sees it."""
        self.serve(ValidateServer)
        d = self.endpoint.connect(IceClientFactory(self.reactor))
        self.network.flush()
        protocol = self.successResultOf(d)
        self.assertIsInstance(protocol, IceClientProtocol)
        self.assertTrue(protocol.validated)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_refused(self) -> None:
        d = self.endpoint.connect(IceClientFactory(self.reactor))
        self.network.flush()
        self.failureResultOf(d, error.ConnectionRefusedError)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_hung_server_times_out(self) -> None:
        """
        A server that accepts but never validates counts as a failed
        connection after the timeout, and the connection is abandoned.
        """
        self.serve(SilentServer)
        built: list[object] = []
        factory = Factory.forProtocol(lambda: built.append(1) or Protocol())  # type: ignore[func-returns-value]
        d = self.endpoint.connect(factory)
        self.network.flush()
        self.assertNoResult(d)
        self.network.advance(0.49)
        self.assertNoResult(d)
        self.network.advance(0.02)
        failure = self.failureResultOf(d, error.TimeoutError)
        self.assertIn("ValidateConnection", failure.getErrorMessage())
        self.assertEqual(self.network.links_to("127.0.0.1", 4061), [])
        self.assertEqual(built, [])

    def test_not_ice(self) -> None:
        self.serve(GarbageServer)
        d = self.endpoint.connect(IceClientFactory(self.reactor))
        self.network.flush()
        self.failureResultOf(d, error.ConnectError)
        self.assertEqual(self.network.links_to("127.0.0.1", 4061), [])

    def test_lost_before_validation(self) -> None:
        self.serve(SilentServer)
        d = self.endpoint.connect(IceClientFactory(self.reactor))
        self.network.flush()
        self.network.kill("127.0.0.1", 4061)
        self.failureResultOf(d, error.ConnectionLost)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """Cancelling abandons the connection and the timer."""
        self.serve(SilentServer)
        d = self.endpoint.connect(IceClientFactory(self.reactor))
        self.network.flush()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.network.flush()
        self.assertEqual(self.network.links_to("127.0.0.1", 4061), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_attempts_are_not_logged(self) -> None:
        """
        An attempt's factory is quiet: a client failing over from a dead
        replica logs no "Starting factory" / "Stopping factory" per attempt
        (its reactor's time goes to the next replica).
        """
        recorder = ScriptedEndpoint("recorder")
        ValidatedEndpoint(recorder, self.reactor, 0.5).connect(IceClientFactory(self.reactor))
        [factory] = recorder.factories
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        factory.doStart()
        factory.doStop()
        self.assertEqual(events, [])

    def test_cancel_while_connecting(self) -> None:
        d = self.endpoint.connect(IceClientFactory(self.reactor))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.reactor.connectors[-1].stoppedConnecting)

    def test_connected_after_giving_up(self) -> None:
        """A TCP handshake that completes after the timeout is closed at once."""
        late = _LateEndpoint()
        endpoint = ValidatedEndpoint(late, self.reactor, 0.5)
        d = endpoint.connect(IceClientFactory(self.reactor))
        self.reactor.advance(0.5)
        self.failureResultOf(d, error.TimeoutError)
        gate = late.factory.buildProtocol(None)
        transport = StringTransport()
        gate.makeConnection(transport)
        self.assertTrue(transport.disconnecting)


@implementer(IStreamClientEndpoint)
class _LateEndpoint:
    """Connects only when the test says so, ignoring cancellation, like a slow kernel."""

    factory: IProtocolFactory

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        self.factory = protocolFactory
        return Deferred(lambda d: None)


class RetryPolicyTests(SynchronousTestCase):
    def test_capped(self) -> None:
        """However many failures, the wait stays under max_delay plus the jitter."""
        policy = locator_retry_policy(max_delay=2.0, max_jitter=0.1, random=lambda: 1.0)
        delays = [policy(n) for n in range(1, 60)]
        self.assertEqual(max(delays), 2.1)
        self.assertEqual(delays, sorted(delays))

    def test_first_retries_are_fast(self) -> None:
        """Even with the worst jitter, the first retries fit a sub-second failover."""
        policy = locator_retry_policy(random=lambda: 1.0)
        self.assertLess(policy(1) + policy(2), 0.5)

    def test_one_replica_waits_even_the_first_time(self) -> None:
        """
        With a next replica the first reconnection is at once; with only the
        one that just dropped us, even the first waits the back-off.
        """
        self.assertEqual(locator_retry_policy(random=lambda: 0.0)(1), 0.0)
        alone = locator_retry_policy(random=lambda: 0.0, replicas=1)
        self.assertEqual([alone(n) for n in (1, 2)], [0.05, 0.05 * 1.5])

    def test_jittered(self) -> None:
        """Two clients cut off together do not come back in lockstep."""
        draws = iter([0.0, 0.5])
        policy = locator_retry_policy(random=lambda: next(draws))
        first, second = policy(3), policy(3)
        self.assertAlmostEqual(second - first, 0.05)
