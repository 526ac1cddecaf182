# -*- test-case-name: tests.test_client_warm -*-
"""
What a connection's loss costs the reactor that clients wait for: the
interface look-ups of a first loss, and Twisted's own log lines.

When a connection ends, Twisted asks zope.interface whether its transport and
protocol are half-closeable; the first time for a class, zope computes that
class's interface specification (its C3 order: 0.3-0.6 ms on this machine).
A slave's first loss of its master is the failover itself, and whatever its
reactor does then delays the clients that fail over to it: so the classes
involved are looked up when the service starts instead.

Twisted's L{ClientService} logs each retry it schedules ("Scheduling retry 1
to connect ... in 0.2 seconds") at info level, and AMP each connection it
makes and loses; written as JSON, as C{twist} writes its log to a file or a
pipe, each line cost 0.1-0.3 ms of the slave's reactor at the master's
loss. The owners say in their own words (and trace categories) that a
connection was lost and that they look again, so those lines go out at
debug level, which C{twist}'s default level drops before formatting them.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService
from twisted.internet import tcp
from twisted.internet.protocol import connectionDone
from twisted.logger import ILogObserver, LogLevel, Logger, globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementedBy, implementer

__all__ = ["QuietAMP", "QuietClientService", "TRANSPORTS", "warm_loss_path"]

#: the transports whose loss Twisted's reactor checks (outgoing and accepted TCP)
TRANSPORTS: tuple[type, ...] = (tcp.Client, tcp.Server)


def warm_loss_path(*classes: type) -> None:
    """Compute the interface specifications of the TCP transports and C{classes} now."""
    for cls in (*TRANSPORTS, *classes):
        implementedBy(cls)


@implementer(ILogObserver)
def _notes_at_debug(event: dict[str, Any]) -> None:
    """Pass on warnings and worse as they are, Twisted's notes on each attempt at debug."""
    if event.get("log_level", LogLevel.info) < LogLevel.warn:
        event["log_level"] = LogLevel.debug
    globalLogPublisher(event)


class QuietClientService(ClientService):
    """A L{ClientService} whose note on each retry it schedules is at debug level."""

    _log = Logger(observer=_notes_at_debug)


class QuietAMP(amp.AMP):
    """
    An L{amp.AMP} whose lines on each connection made and lost are at debug
    level: what L{amp.AMP.makeConnection} and L{amp.AMP.connectionLost} do,
    with C{log.debug} for their C{log.info}.
    """

    log = Logger("twisted.protocols.amp")

    def makeConnection(self, transport: Any) -> None:
        self.log.debug(
            "{cls} connection established (PEER:{peer})",
            cls=self.__class__.__name__,
            peer=transport.getPeer(),
        )
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.log.debug("{cls} connection lost", cls=self.__class__.__name__)
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None
