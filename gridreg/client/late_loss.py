# -*- test-case-name: tests.test_client_late_loss -*-
"""
Connections whose loss their owner hears of a few milliseconds late.

A slave's connections to its master (the replication session, its locator
client) all end in the millisecond the master dies, and that is the
millisecond the master's clients fail over to the slave. What the slave's
protocols and their C{ClientService}s do about a loss (fail what was
pending, the services' state machines, scheduling a retry, the session's
own reaction) took about half of the slave's reactor time at the master's
EOF, ahead of the clients' requests that arrived meanwhile
(C{bench.failover}: the slave answered the first retry 0.5-3 ms after it
was sent, against 0.2 ms before the loss).

L{LateLossEndpoint} delays only that notice, and only of a loss this side
did not cause (its own close or abort passes at once, so stopping is not
slower): Twisted closes the socket
itself before any protocol hears of the loss, and the reactor reads what
is readable before a timed call falls due, so the clients' requests are
answered first. Nothing else changes: data, the connection's making and
its closing by the owner pass through at once. A protocol whose state
must say at once that the connection is gone (a slave forwards no write
to a dead master) has a C{loss_noticed(reason)} method: it is called at
the loss itself, before the delayed C{connectionLost}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["LOSS_NOTICE_DELAY", "LateLossEndpoint", "late_loss_protocol"]

#: seconds between a connection's end and its protocol hearing of it: well past the
#: clients that fail over at the same loss, well below any reconnection back-off
LOSS_NOTICE_DELAY = 0.005


@implementer(IProtocol)
class _LateLoss:
    """
    Passes everything on to the protocol it wraps at once but the loss,
    which it passes on C{delay} seconds later. Other attributes are the
    wrapped protocol's (what the transport asks, such as C{logPrefix}).
    """

    def __init__(self, inner: Any, clock: Any, delay: float) -> None:
        self._late_inner = inner
        self._late_clock = clock
        self._late_delay = delay
        self.transport: Any = None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self._late_inner.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self._late_inner.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:
        transport = self.transport
        if (
            getattr(transport, "disconnecting", False)
            or getattr(transport, "_aborting", False)
            or reason.check(ConnectionAborted)
        ):
            # closed by this side (its owner stopping, a timeout): nothing to answer first
            self._late_inner.connectionLost(reason)
            return
        noticed = getattr(self._late_inner, "loss_noticed", None)
        if noticed is not None:
            noticed(reason)
        self._late_clock.callLater(self._late_delay, self._late_inner.connectionLost, reason)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._late_inner, name)

    def __repr__(self) -> str:
        return f"<late loss of {self._late_inner!r}>"


#: the wrapper's class, whose interfaces Twisted looks up at the loss (L{warm_loss_path})
late_loss_protocol = _LateLoss


@implementer(IProtocolFactory)
class _LateLossFactory:
    def __init__(self, factory: Any, clock: Any, delay: float) -> None:
        self._factory = factory
        self._clock = clock
        self._delay = delay

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        self._factory.doStop()

    def buildProtocol(self, addr: Any) -> Any:
        inner = self._factory.buildProtocol(addr)
        return None if inner is None else _LateLoss(inner, self._clock, self._delay)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)


def _unwrapped(protocol: Any) -> Any:
    """The protocol the factory built (a C{ClientService} checks it is its own)."""
    return protocol._late_inner if isinstance(protocol, _LateLoss) else protocol


@implementer(IStreamClientEndpoint)
class LateLossEndpoint:
    """
    An endpoint whose connections' protocols hear of their loss C{delay}
    seconds after it; the connect Deferred fires with the protocol itself
    (only its transport talks to the wrapper).
    """

    def __init__(self, endpoint: Any, clock: Any, delay: float = LOSS_NOTICE_DELAY) -> None:
        """
        @param endpoint: the L{IStreamClientEndpoint} that makes the connections.
        @param clock: an L{IReactorTime}, for the delayed notice.
        """
        self.endpoint = endpoint
        self.clock = clock
        self.delay = delay

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        d = self.endpoint.connect(_LateLossFactory(protocolFactory, self.clock, self.delay))
        return d.addCallback(_unwrapped)

    def __repr__(self) -> str:
        return f"<LateLossEndpoint {self.endpoint!r}>"
