# -*- test-case-name: tests.test_ice_acm -*-
"""
ACM of accepted Ice connections: idle connections are closed (gracefully,
with CloseConnection) or heartbeated as the ACM settings say, busy ones are
left alone, and a connection stuck in a partial message is dropped.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties, PropertyError
from gridreg.ice.acm import READ_TIMEOUT, AcmClose, AcmConfig, AcmHeartbeat
from gridreg.ice.messages import CLOSE_CONNECTION, VALIDATE_CONNECTION
from gridreg.ice.servant import ObjectAdapter
from gridreg.ice.types import OperationMode
from gridreg.ice.server import IceServerFactory
from gridreg.registry.config import RegistryConfig
from tests.test_ice_server import ECHO, EchoServant, replies, request, string_params


class Connections:
    """A factory under ACM with a Clock, and the connections it accepted."""

    def __init__(self, acm: AcmConfig) -> None:
        self.clock = Clock()
        self.servant = EchoServant()
        adapter = ObjectAdapter("Test")
        adapter.add(ECHO, self.servant)
        self.factory = IceServerFactory(adapter, 4096, clock=self.clock, acm=acm)

    def connect(self) -> tuple:  # type: ignore[type-arg]
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        transport.clear()
        return protocol, transport


def acm(
    timeout: float = 10,
    close: AcmClose = AcmClose.ON_INVOCATION_AND_IDLE,
    heartbeat: AcmHeartbeat = AcmHeartbeat.ON_DISPATCH,
) -> AcmConfig:
    return AcmConfig(timeout, close, heartbeat)


class IdleCloseTests(SynchronousTestCase):
    def test_idle_connection_closed_gracefully(self) -> None:
        """An idle connection gets CloseConnection once the timeout has passed, not before."""
        grid = Connections(acm(10))
        _, transport = grid.connect()
        grid.clock.advance(5)
        self.assertFalse(transport.disconnecting)
        grid.clock.advance(5)
        self.assertEqual(transport.value(), CLOSE_CONNECTION)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)  # graceful, not aborted

    def test_requests_postpone_the_close(self) -> None:
        grid = Connections(acm(10))
        protocol, transport = grid.connect()
        grid.clock.advance(9)
        protocol.dataReceived(request(1, "echo", string_params("x")))
        grid.clock.advance(5)
        self.assertFalse(transport.disconnecting)
        grid.clock.advance(5)
        self.assertTrue(transport.disconnecting)

    def test_cached_repeats_postpone_the_close(self) -> None:
        """
        A repeat answered from the reply cache, alone in its read (one
        request in flight), is activity too.
        """
        grid = Connections(acm(10))
        protocol, transport = grid.connect()
        protocol.dataReceived(request(1, "echo", string_params("x")))
        for request_id in (2, 3):
            grid.clock.advance(9)
            transport.clear()
            protocol.dataReceived(request(request_id, "echo", string_params("x")))
            self.assertEqual([r.request_id for r in replies(transport.value())], [request_id])
        self.assertEqual(grid.servant.calls, ["x"])
        grid.clock.advance(5)
        self.assertFalse(transport.disconnecting)
        grid.clock.advance(5)
        self.assertTrue(transport.disconnecting)

    def test_client_heartbeat_counts_as_activity(self) -> None:
        """An Ice client's heartbeat (ValidateConnection) keeps the connection open."""
        grid = Connections(acm(10))
        protocol, transport = grid.connect()
        for _ in range(10):
            grid.clock.advance(5)
            protocol.dataReceived(VALIDATE_CONNECTION)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)

    def test_dispatch_in_progress_is_not_closed(self) -> None:
        grid = Connections(acm(10))
        protocol, transport = grid.connect()
        protocol.dataReceived(request(1, "later", mode=OperationMode.NORMAL))
        grid.clock.advance(60)
        self.assertFalse(transport.disconnecting)
        # HeartbeatOnDispatch, the default, meanwhile tells the client we are alive
        self.assertTrue(transport.value().startswith(VALIDATE_CONNECTION))
        transport.clear()
        grid.servant.pending[0].callback(b"\x00\x06\x00\x00\x00\x01\x01")
        [reply] = replies(transport.value())
        self.assertEqual(reply.request_id, 1)
        grid.clock.advance(10)
        self.assertTrue(transport.disconnecting)

    def test_close_off_and_on_invocation_keep_idle_connections(self) -> None:
        for close in (AcmClose.OFF, AcmClose.ON_INVOCATION):
            grid = Connections(acm(10, close))
            _, transport = grid.connect()
            grid.clock.advance(100)
            self.assertFalse(transport.disconnecting, close)

    def test_forceful_close(self) -> None:
        """CloseOnIdleForceful drops the socket without CloseConnection."""
        grid = Connections(acm(10, AcmClose.ON_IDLE_FORCEFUL))
        _, transport = grid.connect()
        grid.clock.advance(10)
        self.assertTrue(transport.disconnected)
        self.assertEqual(transport.value(), b"")

    def test_timer_runs_only_with_connections(self) -> None:
        grid = Connections(acm(10))
        self.assertEqual(grid.clock.getDelayedCalls(), [])
        protocol, _ = grid.connect()
        self.assertEqual(len(grid.clock.getDelayedCalls()), 1)
        protocol.connectionLost(None)
        self.assertEqual(grid.clock.getDelayedCalls(), [])


class HeartbeatTests(SynchronousTestCase):
    def test_always(self) -> None:
        """HeartbeatAlways: one ValidateConnection per check (half the timeout); never idle."""
        grid = Connections(acm(10, heartbeat=AcmHeartbeat.ALWAYS))
        _, transport = grid.connect()
        grid.clock.pump([5] * 6)
        self.assertEqual(transport.value(), VALIDATE_CONNECTION * 6)
        self.assertFalse(transport.disconnecting)

    def test_on_idle(self) -> None:
        grid = Connections(acm(10, AcmClose.OFF, AcmHeartbeat.ON_IDLE))
        protocol, transport = grid.connect()
        grid.clock.advance(5)
        self.assertEqual(transport.value(), VALIDATE_CONNECTION)

    def test_on_dispatch_only_while_dispatching(self) -> None:
        grid = Connections(acm(10, AcmClose.OFF, AcmHeartbeat.ON_DISPATCH))
        protocol, transport = grid.connect()
        grid.clock.advance(5)
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(request(1, "later", mode=OperationMode.NORMAL))
        grid.clock.advance(5)
        self.assertEqual(transport.value(), VALIDATE_CONNECTION)


class StalledMessageTests(SynchronousTestCase):
    def test_partial_header_dropped(self) -> None:
        """A connection that sent half a header and stopped is dropped, even with ACM off."""
        grid = Connections(acm(0, AcmClose.OFF, AcmHeartbeat.OFF))
        protocol, transport = grid.connect()
        protocol.dataReceived(b"IceP\x01\x00")
        grid.clock.advance(READ_TIMEOUT / 2)
        protocol.dataReceived(b"\x01")  # progress restarts the wait
        grid.clock.advance(READ_TIMEOUT / 2)
        self.assertFalse(transport.disconnecting)
        grid.clock.advance(READ_TIMEOUT)
        self.assertTrue(transport.disconnected)

    def test_partial_message_is_not_activity(self) -> None:
        """Under ACM a partial header does not keep a connection from being idle."""
        grid = Connections(acm(10))
        protocol, transport = grid.connect()
        protocol.dataReceived(b"IceP")
        grid.clock.advance(10)
        self.assertEqual(transport.value(), CLOSE_CONNECTION)


class ConfigTests(SynchronousTestCase):
    def properties(self, **values: str) -> Properties:
        properties = Properties()
        for key, value in values.items():
            properties.set(key.replace("_", "."), value)
        return properties

    def test_icegrid_defaults(self) -> None:
        """Both adapters: 30 s, CloseOnInvocationAndIdle, HeartbeatOnDispatch."""
        config = RegistryConfig.from_properties(self.properties())
        self.assertEqual(config.client_acm, AcmConfig(30.0, AcmClose(3), AcmHeartbeat(1)))
        self.assertEqual(config.server_acm, AcmConfig(30.0, AcmClose(3), AcmHeartbeat(1)))

    def test_client_timeout_follows_session_timeout(self) -> None:
        config = RegistryConfig.from_properties(
            self.properties(IceGrid_Registry_SessionTimeout="7")
        )
        self.assertEqual(config.client_acm.timeout, 7.0)
        self.assertEqual(config.server_acm.timeout, 30.0)

    def test_overrides_and_fallbacks(self) -> None:
        config = RegistryConfig.from_properties(
            self.properties(
                IceGrid_Registry_Client_ACM_Timeout="2",
                IceGrid_Registry_Client_ACM_Close="4",
                Ice_ACM_Server_Close="1",
                Ice_ACM_Heartbeat="3",
                Ice_ACM_Close="0",
            )
        )
        self.assertEqual(config.client_acm, AcmConfig(2.0, AcmClose(4), AcmHeartbeat(3)))
        self.assertEqual(config.server_acm, AcmConfig(30.0, AcmClose(1), AcmHeartbeat(3)))

    def test_bad_values(self) -> None:
        for key, value in [
            ("IceGrid_Registry_Client_ACM_Timeout", "-1"),
            ("IceGrid_Registry_Client_ACM_Timeout", "soon"),
            ("IceGrid_Registry_Server_ACM_Close", "5"),
            ("Ice_ACM_Server_Heartbeat", "x"),
        ]:
            self.assertRaises(
                PropertyError, RegistryConfig.from_properties, self.properties(**{key: value})
            )
