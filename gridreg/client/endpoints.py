# -*- test-case-name: tests.test_client_failover -*-
"""
From Ice endpoints to Twisted client endpoints.

A locator client dials the endpoints of an C{Ice.Default.Locator} proxy, and
an adapter registration the endpoints of the LocatorRegistry proxy the
locator hands out; both turn Ice endpoints into
L{IStreamClientEndpoint}s here, so everything above works on Twisted
endpoints and tests can substitute memory ones.

L{ValidatedEndpoint} exists because a hung Ice server (stopped with
SIGSTOP, deadlocked, swapping) still completes TCP handshakes: the kernel
accepts on its behalf. Only the server's C{ValidateConnection} message
proves that the process is alive, so a connection counts as made only once
that message has arrived, within a deadline.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from zope.interface import implementer

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from gridreg.ice.messages import HEADER_SIZE, MAGIC, MessageType
from gridreg.ice.types import Endpoint, SslEndpoint, TcpEndpoint

__all__ = ["client_endpoint", "ValidatedEndpoint"]

#: the connect timeout Twisted uses when neither the endpoint nor the caller sets one
_DEFAULT_CONNECT_TIMEOUT = 30.0


def client_endpoint(
    reactor: Any,
    ice_endpoint: Endpoint,
    tls_options: Optional[IOpenSSLClientConnectionCreator] = None,
    *,
    timeout_cap: Optional[float] = None,
) -> IStreamClientEndpoint:
    """
    The Twisted client endpoint that dials C{ice_endpoint}.

    The Ice endpoint's C{-t} timeout (milliseconds, -1 for none) becomes the
    connect timeout, capped at C{timeout_cap} so that a dead host cannot
    hold a caller longer than it is prepared to wait for an answer. An empty
    host means loopback, as it does for an Ice client.

    @param reactor: an L{IReactorTCP} (and L{IReactorTime}) provider.
    @param tls_options: the client TLS settings for C{ssl} endpoints, e.g.
        from L{twisted.internet.ssl.optionsForClientTLS}.
    @param timeout_cap: the longest connect timeout to use, in seconds.
    @raise ValueError: for a transport other than C{tcp} and C{ssl}, or an
        C{ssl} endpoint without C{tls_options}.
    """
    if not isinstance(ice_endpoint, TcpEndpoint):
        raise ValueError(
            f"cannot dial a {ice_endpoint.TRANSPORT} endpoint: gridreg clients speak tcp and ssl"
        )
    if isinstance(ice_endpoint, SslEndpoint) and tls_options is None:
        raise ValueError(
            f"the ssl endpoint {ice_endpoint.host or '127.0.0.1'}:{ice_endpoint.port} "
            "needs tls_options (client TLS settings)"
        )
    timeout: Optional[float] = None if ice_endpoint.timeout < 0 else ice_endpoint.timeout / 1000.0
    if timeout_cap is not None and (timeout is None or timeout > timeout_cap):
        timeout = timeout_cap
    if timeout is None:
        timeout = _DEFAULT_CONNECT_TIMEOUT
    host = ice_endpoint.host or "127.0.0.1"
    bind = (ice_endpoint.source_address, 0) if ice_endpoint.source_address else None
    tcp: IStreamClientEndpoint
    if _is_ipv6(host):
        tcp = TCP6ClientEndpoint(reactor, host, ice_endpoint.port, timeout, bind)
    else:
        tcp = TCP4ClientEndpoint(reactor, host, ice_endpoint.port, timeout, bind)
    if isinstance(ice_endpoint, SslEndpoint):
        assert tls_options is not None
        return wrapClientTLS(tls_options, tcp)
    return tcp


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


@implementer(IStreamClientEndpoint)
class ValidatedEndpoint:
    """
    Wraps an endpoint so that C{connect} fires only once the Ice server has
    sent C{ValidateConnection}, and fails with
    L{twisted.internet.error.TimeoutError} if that takes longer than
    C{timeout} seconds from the call, connecting included.

    The factory's protocol is built only after validation. A connection
    that dies or times out before then is therefore invisible to the
    caller, apart from the failed Deferred: this is what lets a
    L{twisted.application.internet.ClientService} treat a hung server like
    a refused connection, and retry elsewhere.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, clock: IReactorTime, timeout: float):
        self.endpoint = endpoint
        self.clock = clock
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<ValidatedEndpoint {self.endpoint!r} within {self.timeout}s>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return _Attempt(self, protocolFactory).result


class _Attempt:
    """One connection attempt through a L{ValidatedEndpoint}."""

    def __init__(self, owner: ValidatedEndpoint, factory: IProtocolFactory) -> None:
        self.owner = owner
        self.factory = factory
        self.gate: Optional[_ValidationGate] = None
        self.result: Deferred[IProtocol] = Deferred(self._cancel)
        self.timer: Optional[IDelayedCall] = owner.clock.callLater(owner.timeout, self._timed_out)
        self.connecting: Deferred[Any] = owner.endpoint.connect(
            Factory.forProtocol(lambda: _ValidationGate(self))
        )
        self.connecting.addErrback(self._connect_failed)

    @property
    def done(self) -> bool:
        return self.result.called

    def _stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _give_up(self) -> None:
        """Abandon the TCP connection or the attempt to make one."""
        if self.gate is not None:
            if self.gate.transport is not None:
                self.gate.transport.abortConnection()
        elif not self.connecting.called:
            self.connecting.cancel()

    def _cancel(self, _: Deferred[IProtocol]) -> None:
        self._stop_timer()
        self.result.errback(Failure(CancelledError()))
        self._give_up()

    def _timed_out(self) -> None:
        self.timer = None
        if self.done:
            return
        reason = error.TimeoutError(
            string=f"no ValidateConnection within {self.owner.timeout}s from "
            f"{self.owner.endpoint!r}"
        )
        self.result.errback(Failure(reason))
        self._give_up()

    def _connect_failed(self, failure: Failure) -> None:
        if not self.done:
            self._stop_timer()
            self.result.errback(failure)

    def connected(self, gate: _ValidationGate) -> None:
        self.gate = gate
        if self.done:  # we gave up while the TCP handshake was completing
            gate.transport.abortConnection()

    def validated(self, gate: _ValidationGate, data: bytes) -> None:
        self._stop_timer()
        protocol = self.factory.buildProtocol(gate.transport.getPeer())
        if protocol is None:
            gate.transport.abortConnection()
            self.result.errback(Failure(error.ConnectError(string="the factory refused")))
            return
        gate.inner = protocol
        protocol.makeConnection(gate.transport)
        protocol.dataReceived(data)
        self.result.callback(protocol)

    def lost(self, reason: Failure) -> None:
        if not self.done:
            self._stop_timer()
            self.result.errback(reason)


class _ValidationGate(Protocol):
    """
    Holds a new connection until the server's first message, a
    C{ValidateConnection}, has arrived; then hands the connection, and every
    byte after, to the real protocol.
    """

    def __init__(self, attempt: _Attempt) -> None:
        self.attempt = attempt
        self.inner: Optional[IProtocol] = None
        self._buffer = b""

    def connectionMade(self) -> None:
        self.attempt.connected(self)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        if self.attempt.done:
            return
        self._buffer += data
        if len(self._buffer) < HEADER_SIZE:
            return
        head = self._buffer[:HEADER_SIZE]
        if head[:4] != MAGIC or head[8] != MessageType.VALIDATE_CONNECTION:
            self.transport.abortConnection()
            self.attempt.lost(
                Failure(error.ConnectError(string=f"not an Ice server: got {head.hex()}"))
            )
            return
        data, self._buffer = self._buffer, b""
        self.attempt.validated(self, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)
        else:
            self.attempt.lost(reason)
