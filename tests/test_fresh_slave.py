"""
How soon a fresh slave is in sync: what its session with the master sends
goes out at once, in both directions.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry.master import MasterReplication
from gridreg.registry.slave import SlaveProtocol
from gridreg.registry.trace import TraceLevels
from gridreg.store.memory import MemoryStore


class TcpTransport(StringTransport):
    """A TCP transport that remembers its TCP_NODELAY setting."""

    no_delay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


class _Protocol:
    def __init__(self) -> None:
        self.transport = TcpTransport()

    def callRemote(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return Deferred()  # never answered: the test looks at the socket only


class NoDelayTests(SynchronousTestCase):
    """
    Nagle's algorithm held a message sent right after another (the
    snapshot's first command after the registration's answer) until the
    peer's delayed ACK, 40 ms on Linux: every fresh slave paid it.
    """

    def test_the_slave_side_sends_at_once(self) -> None:
        protocol = SlaveProtocol(slave=None)  # type: ignore[arg-type]
        transport = TcpTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.no_delay)

    def test_the_master_side_sends_at_once(self) -> None:
        store = MemoryStore()
        self.successResultOf(store.open())
        replication = MasterReplication(store, Clock(), 5.0, TraceLevels(), lambda: None)
        protocol = _Protocol()
        replication.register(protocol, "Replica1", {}, "another-database", 0)  # type: ignore[arg-type]
        self.assertTrue(protocol.transport.no_delay)
