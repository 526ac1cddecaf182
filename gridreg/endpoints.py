# -*- test-case-name: tests.test_endpoints -*-
"""
From Ice endpoints to Twisted endpoints: the one place that decides which
Twisted endpoint dials or listens on an Ice C{tcp} or C{ssl} endpoint.

An Ice endpoint's transport says whether TLS is spoken: C{ssl} needs TLS
options from the caller, C{tcp} is plain. Callers that secure every
internal connection whatever the endpoint says (replicas, administrators)
first choose the transport with L{with_transport}.

Everything above this module sees L{IStreamClientEndpoint} and
L{IStreamServerEndpoint} providers, so tests can substitute memory ones.

TLS comes buffered or not. Twisted's default TLS transport
(C{BufferingTLSTransport}) holds every write until the next reactor turn,
so that many small writes make one TLS record: right for the Ice protocol,
where a connection may answer many pipelined requests in one turn. gridreg's
internal AMP sessions write each box whole, once, usually one per turn (a
push, its acknowledgement, an admin call): there the buffering only holds
every message until the reactor's next pass over its timed calls, at the
price of a scheduled call each (5% of the Python calls of a replicated
write over TLS). They ask for C{buffered=False}: Twisted's
plain C{TLSMemoryBIOProtocol}, which hands each write to OpenSSL at once, in
order (during the handshake it queues them, in order, as the buffered one
does); the TCP transport under it still gathers whatever is written in one
turn into one system call.
"""

from __future__ import annotations

import socket

from typing import Any, Optional

import attrs
from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)

from gridreg.ice.types import Endpoint, SslEndpoint, TcpEndpoint

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "TLSClientEndpoint",
    "TLSServerEndpoint",
    "client_endpoint",
    "listen_interface",
    "server_endpoint",
    "with_transport",
]

#: the connect timeout used when neither the endpoint nor the caller sets one
DEFAULT_CONNECT_TIMEOUT = 30.0

#: the host an Ice client dials when an endpoint's host is empty
_LOOPBACK = "127.0.0.1"


#: the listen backlog, as Ice's default for Ice.TCP.Backlog: Twisted's 50 drops
#: connections when many clients connect at once
LISTEN_BACKLOG = socket.SOMAXCONN


def _is_ipv6(host: str) -> bool:
    """Whether C{host} is an IPv6 literal (host names and IPv4 never contain a colon)."""
    return ":" in host


def _address(endpoint: Endpoint) -> TcpEndpoint:
    """C{endpoint} as a C{tcp}/C{ssl} one, or L{ValueError} naming its transport."""
    if not isinstance(endpoint, TcpEndpoint):
        raise ValueError(f"a {endpoint.TRANSPORT} endpoint is not supported: only tcp and ssl")
    return endpoint


def with_transport(endpoint: Endpoint, secure: bool, timeout: Optional[int] = None) -> TcpEndpoint:
    """
    The same host and port over C{ssl} when C{secure}, otherwise C{tcp},
    without a source address.

    @param timeout: the C{-t} timeout to give it (milliseconds, -1 for
        none); by default, C{endpoint}'s.
    @raise ValueError: C{endpoint} is neither C{tcp} nor C{ssl}.
    """
    address = _address(endpoint)
    kind = SslEndpoint if secure else TcpEndpoint
    return kind(address.host, address.port, address.timeout if timeout is None else timeout)


_UNBUFFERED: dict[str, Any] = {}


def _tls_factory(
    options: Any, client: bool, factory: IProtocolFactory, clock: Any, buffered: bool
) -> Any:
    """
    Twisted's TLS wrapping factory, buffered (C{clock}'s next turn) or not.
    Here, not at the top: a process without TLS never loads it
    (L{gridreg.tls_gate}).
    """
    from twisted.protocols.tls import TLSMemoryBIOFactory

    if not buffered:
        return _unbuffered_factory_class()(options, client, factory, clock=clock)
    try:
        return TLSMemoryBIOFactory(options, client, factory, clock=clock)
    except TypeError:  # a Twisted without write batching
        return TLSMemoryBIOFactory(options, client, factory)


def _unbuffered_factory_class() -> Any:
    """
    A C{TLSMemoryBIOFactory} whose connections write through at once (see
    the module's docstring), made at first use. Its transports say they are
    L{ISSLTransport}s, as a C{listenSSL} connection does: they are TLS over
    TCP, with C{getPeerCertificate}.
    """
    made = _UNBUFFERED.get("factory")
    if made is None:
        from twisted.internet.interfaces import ISSLTransport
        from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

        from gridreg.direct_send import send_now

        @implementer(ISSLTransport)
        class UnbufferedTLSProtocol(TLSMemoryBIOProtocol):
            """
            TLS that writes each write through now, or, once asked with
            C{batch_writes}, the writes of one reactor turn as one record at
            its end, handed to the socket then (L{gridreg.protocol.prompt}'s
            C{TURN}; for sessions that answer many calls at once).
            """

            _batch_clock: Any = None
            _batch: Optional[list[bytes]] = None
            _batch_call: Any = None

            def batch_writes(self, clock: Any) -> None:
                self._batch_clock = clock

            def write(self, data: bytes) -> None:
                if self._batch_clock is None:
                    return super().write(data)  # type: ignore[no-any-return]
                if self._batch is None:
                    self._batch = []
                self._batch.append(data)
                if self._batch_call is None:
                    self._batch_call = self._batch_clock.callLater(0, self.flush_batch)
                return None

            def writeSequence(self, data: Any) -> None:
                self.write(b"".join(data))

            def flush_batch(self) -> None:
                call, self._batch_call = self._batch_call, None
                if call is not None and call.active():
                    call.cancel()
                batch, self._batch = self._batch, None
                if batch:
                    super().write(b"".join(batch))
                    send_now(self.transport)

            def loseConnection(self) -> None:
                self.flush_batch()  # what was written goes first, as Twisted's buffering does
                super().loseConnection()

            def connectionLost(self, reason: Any) -> None:
                call, self._batch_call, self._batch = self._batch_call, None, None
                if call is not None and call.active():
                    call.cancel()
                super().connectionLost(reason)

        class UnbufferedTLSFactory(TLSMemoryBIOFactory):
            protocol = UnbufferedTLSProtocol

        made = _UNBUFFERED["factory"] = UnbufferedTLSFactory
    return made


@implementer(IStreamClientEndpoint)
@attrs.frozen
class TLSClientEndpoint:
    """
    TLS over another client endpoint, like L{wrapClientTLS} but with our
    clock: Twisted's TLS batches small writes until the next reactor turn,
    and that turn must be the injected reactor's, not the global one's.
    With C{buffered=False} it does not batch (see the module's docstring).
    """

    wrapped: IStreamClientEndpoint
    options: IOpenSSLClientConnectionCreator
    clock: Any
    buffered: bool = True

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        tls = _tls_factory(self.options, True, factory, self.clock, self.buffered)
        return self.wrapped.connect(tls).addCallback(lambda p: p.wrappedProtocol)


@implementer(IStreamServerEndpoint)
@attrs.frozen
class TLSServerEndpoint:
    """
    TLS over another server endpoint (C{wrapServerTLS}, with our clock and
    the choice of L{TLSClientEndpoint}'s C{buffered}).
    """

    wrapped: IStreamServerEndpoint
    options: IOpenSSLServerConnectionCreator
    clock: Any
    buffered: bool = True

    def listen(self, factory: IProtocolFactory) -> Deferred[Any]:
        return self.wrapped.listen(
            _tls_factory(self.options, False, factory, self.clock, self.buffered)
        )


def client_endpoint(
    reactor: Any,
    ice_endpoint: Endpoint,
    tls_options: Optional[IOpenSSLClientConnectionCreator] = None,
    *,
    timeout_cap: Optional[float] = None,
    buffered: bool = True,
) -> IStreamClientEndpoint:
    """
    The Twisted client endpoint that dials C{ice_endpoint}.

    The Ice endpoint's C{-t} timeout (milliseconds, -1 for none) becomes the
    connect timeout, capped at C{timeout_cap} so that a dead host cannot
    hold a caller longer than it is prepared to wait for an answer;
    L{DEFAULT_CONNECT_TIMEOUT} when neither sets one. An empty host means
    loopback, as it does for an Ice client. IPv6 literals are dialled over
    IPv6; IPv4 literals and host names (resolved by the reactor) over IPv4.

    @param reactor: an L{IReactorTCP} and L{IReactorTime} provider.
    @param tls_options: the client TLS settings for C{ssl} endpoints, e.g.
        from L{twisted.internet.ssl.optionsForClientTLS}.
    @param timeout_cap: the longest connect timeout to use, in seconds.
    @param buffered: for C{ssl}, whether TLS batches writes until the next
        reactor turn (Twisted's default) or writes through (internal AMP
        sessions; see the module's docstring).
    @raise ValueError: for a transport other than C{tcp} and C{ssl}, or an
        C{ssl} endpoint without C{tls_options}.
    """
    if not isinstance(ice_endpoint, TcpEndpoint):
        raise ValueError(
            f"cannot dial a {ice_endpoint.TRANSPORT} endpoint: gridreg clients speak tcp and ssl"
        )
    if isinstance(ice_endpoint, SslEndpoint) and tls_options is None:
        raise ValueError(
            f"the ssl endpoint {ice_endpoint.host or _LOOPBACK}:{ice_endpoint.port} "
            "needs tls_options (client TLS settings)"
        )
    timeout: Optional[float] = None if ice_endpoint.timeout < 0 else ice_endpoint.timeout / 1000.0
    if timeout_cap is not None and (timeout is None or timeout > timeout_cap):
        timeout = timeout_cap
    if timeout is None:
        timeout = DEFAULT_CONNECT_TIMEOUT
    host = ice_endpoint.host or _LOOPBACK
    bind = (ice_endpoint.source_address, 0) if ice_endpoint.source_address else None
    tcp_class = TCP6ClientEndpoint if _is_ipv6(host) else TCP4ClientEndpoint
    tcp: IStreamClientEndpoint = tcp_class(reactor, host, ice_endpoint.port, timeout, bind)
    if isinstance(ice_endpoint, SslEndpoint):
        assert tls_options is not None
        return TLSClientEndpoint(tcp, tls_options, reactor, buffered)
    return tcp


def listen_interface(host: str) -> str:
    """The interface to listen on for an Ice server endpoint's host (C{*} or empty: all)."""
    return "" if host in ("", "*") else host


def server_endpoint(
    reactor: Any,
    ice_endpoint: Endpoint,
    tls_options: Optional[IOpenSSLServerConnectionCreator] = None,
    *,
    buffered: bool = True,
) -> IStreamServerEndpoint:
    """
    The Twisted server endpoint that listens on C{ice_endpoint}: its port on
    its host's interface (every interface for an empty host or C{*}), over
    IPv6 for an IPv6 literal, with TLS for C{ssl}.

    @param reactor: an L{IReactorTCP} and L{IReactorSSL} provider.
    @param tls_options: the server TLS settings for C{ssl} endpoints.
    @param buffered: for C{ssl}, as L{client_endpoint}'s.
    @raise ValueError: for a transport other than C{tcp} and C{ssl}, or an
        C{ssl} endpoint without C{tls_options}.
    """
    if not isinstance(ice_endpoint, TcpEndpoint):
        raise ValueError(f"cannot listen on a {ice_endpoint.TRANSPORT} endpoint")
    interface = listen_interface(ice_endpoint.host)
    if isinstance(ice_endpoint, SslEndpoint):
        if tls_options is None:
            raise ValueError("an ssl endpoint needs IceSSL.CertFile, IceSSL.KeyFile and IceSSL.CAs")
        if not buffered:
            plain = server_endpoint(reactor, with_transport(ice_endpoint, secure=False))
            return TLSServerEndpoint(plain, tls_options, reactor, buffered=False)
        return SSL4ServerEndpoint(
            reactor, ice_endpoint.port, tls_options, backlog=LISTEN_BACKLOG, interface=interface
        )
    if _is_ipv6(interface):
        return TCP6ServerEndpoint(
            reactor, ice_endpoint.port, backlog=LISTEN_BACKLOG, interface=interface
        )
    return TCP4ServerEndpoint(
        reactor, ice_endpoint.port, backlog=LISTEN_BACKLOG, interface=interface
    )
