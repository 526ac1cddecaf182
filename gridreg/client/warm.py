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
connection was lost and that they look again, so those lines are dropped.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService
from twisted.internet import tcp
from twisted.logger import ILogObserver, LogLevel, Logger, globalLogPublisher
from twisted.protocols import amp
from zope.interface import implementedBy, implementer

__all__ = ["QuietAMP", "QuietClientService", "TRANSPORTS", "warm_loss_path"]

#: the transports whose loss Twisted's reactor checks (outgoing and accepted TCP)
TRANSPORTS: tuple[type, ...] = (tcp.Client, tcp.Server)


def warm_loss_path(*classes: type) -> None:
    """Compute the interface specifications of the TCP transports and C{classes} now."""
    for cls in (*TRANSPORTS, *classes):
        implementedBy(cls)


@implementer(ILogObserver)
def _warnings_only(event: dict[str, Any]) -> None:
    """Pass on warnings and worse; drop Twisted's notes on each attempt."""
    if event.get("log_level", LogLevel.info) >= LogLevel.warn:
        globalLogPublisher(event)


class QuietClientService(ClientService):
    """A L{ClientService} that logs only its warnings and errors (not each retry)."""

    _log = Logger(observer=_warnings_only)


class QuietAMP(amp.AMP):
    """
    An L{amp.AMP} without its info lines on each connection made and lost:
    what L{amp.AMP.makeConnection} and L{amp.AMP.connectionLost} do but log.
    """

    def makeConnection(self, transport: Any) -> None:
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionLost(self, reason: Any) -> None:
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None
