# -*- test-case-name: tests.test_endpoints -*-
"""
Tests for L{gridreg.endpoints}, the mapping from Ice endpoints to Twisted
client and server endpoints, and for the callers that build on it
(L{gridreg.registry.listen}, L{gridreg.registry.security},
L{gridreg.admin.session.dial_endpoints}), all on a L{MemoryReactorClock}.
"""

from __future__ import annotations

import os
from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.interfaces import ISSLTransport, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from gridreg.admin.session import dial_endpoints
from gridreg.endpoints import (
    DEFAULT_CONNECT_TIMEOUT,
    TLSClientEndpoint,
    client_endpoint,
    server_endpoint,
    with_transport,
)
from gridreg.ice.types import Identity, Proxy, SslEndpoint, TcpEndpoint, UdpEndpoint
from gridreg.registry.listen import listen_ice, published_endpoint
from gridreg.registry.security import CONNECT_TIMEOUT, InternalSecurity
from gridreg.tls import ADMIN, REGISTRY, peer_identity
from tests.test_tls import grid


def dial(reactor: MemoryReactorClock, endpoint: IStreamClientEndpoint) -> tuple[Any, ...]:
    """Connect C{endpoint}; the (host, port, factory, timeout, bind) it asked the reactor for."""
    endpoint.connect(Factory.forProtocol(Protocol))
    return reactor.tcpClients[-1]  # type: ignore[no-any-return]


def tls_factory(factory: Any) -> TLSMemoryBIOFactory:
    """The TLS factory inside the factory a TCP client endpoint gave the reactor."""
    inner = factory._wrappedFactory
    assert isinstance(inner, TLSMemoryBIOFactory), inner
    return inner


class ClientEndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def dial(self, endpoint: IStreamClientEndpoint) -> tuple[Any, ...]:
        return dial(self.reactor, endpoint)

    def test_ipv4(self) -> None:
        """host, port and the -t timeout (ms) become the TCP connect's."""
        endpoint = client_endpoint(self.reactor, TcpEndpoint("10.0.0.7", 4061, 1500))
        self.assertIsInstance(endpoint, TCP4ClientEndpoint)
        host, port, _, timeout, bind = self.dial(endpoint)
        self.assertEqual((host, port, timeout, bind), ("10.0.0.7", 4061, 1.5, None))

    def test_empty_host_is_loopback(self) -> None:
        host, *_ = self.dial(client_endpoint(self.reactor, TcpEndpoint("", 4061)))
        self.assertEqual(host, "127.0.0.1")

    def test_ipv6(self) -> None:
        endpoint = client_endpoint(self.reactor, TcpEndpoint("::1", 4061))
        self.assertIsInstance(endpoint, TCP6ClientEndpoint)
        self.assertEqual(self.dial(endpoint)[:2], ("::1", 4061))

    def test_host_name(self) -> None:
        """A host name is dialled over IPv4, the reactor resolving it."""
        endpoint = client_endpoint(self.reactor, TcpEndpoint("registry.example", 4061))
        self.assertIsInstance(endpoint, TCP4ClientEndpoint)
        self.assertEqual(self.dial(endpoint)[:2], ("registry.example", 4061))

    def test_default_timeout(self) -> None:
        """Without -t an Ice endpoint has Ice's 60 s timeout."""
        self.assertEqual(self.dial(client_endpoint(self.reactor, TcpEndpoint("h", 1)))[3], 60)

    def test_timeout_capped(self) -> None:
        """A caller that waits 0.5 s for an answer does not wait 60 s for a connection."""
        endpoint = client_endpoint(self.reactor, TcpEndpoint("h", 1, 60000), timeout_cap=0.5)
        self.assertEqual(self.dial(endpoint)[3], 0.5)

    def test_timeout_below_cap(self) -> None:
        endpoint = client_endpoint(self.reactor, TcpEndpoint("h", 1, 200), timeout_cap=5)
        self.assertEqual(self.dial(endpoint)[3], 0.2)

    def test_infinite_timeout(self) -> None:
        """-t -1 means no Ice timeout: the cap, or the default."""
        infinite = client_endpoint(self.reactor, TcpEndpoint("h", 1, -1))
        self.assertEqual(self.dial(infinite)[3], DEFAULT_CONNECT_TIMEOUT)
        capped = client_endpoint(self.reactor, TcpEndpoint("h", 1, -1), timeout_cap=2)
        self.assertEqual(self.dial(capped)[3], 2)

    def test_source_address(self) -> None:
        endpoint = client_endpoint(
            self.reactor, TcpEndpoint("10.0.0.7", 4061, source_address="10.0.0.1")
        )
        self.assertEqual(self.dial(endpoint)[4], ("10.0.0.1", 0))

    def test_ssl_needs_tls_options(self) -> None:
        with self.assertRaises(ValueError) as caught:
            client_endpoint(self.reactor, SslEndpoint("127.0.0.1", 4063))
        self.assertIn("tls_options", str(caught.exception))

    def test_ssl(self) -> None:
        """
        An ssl endpoint is TLS with the given options over a TCP connection
        to the same address, its writes batched on the injected reactor.
        """
        options = CertificateOptions()
        endpoint = client_endpoint(self.reactor, SslEndpoint("127.0.0.1", 4063, 2000), options)
        assert isinstance(endpoint, TLSClientEndpoint)
        self.assertIs(endpoint.options, options)
        self.assertTrue(verifyObject(IStreamClientEndpoint, endpoint))
        host, port, factory, timeout, _ = self.dial(endpoint)
        self.assertEqual((host, port, timeout), ("127.0.0.1", 4063, 2))
        self.assertIs(tls_factory(factory)._clock, self.reactor)

    def test_ssl_ipv6(self) -> None:
        endpoint = client_endpoint(self.reactor, SslEndpoint("::1", 4063), CertificateOptions())
        self.assertIsInstance(endpoint, TLSClientEndpoint)
        assert isinstance(endpoint, TLSClientEndpoint)
        self.assertIsInstance(endpoint.wrapped, TCP6ClientEndpoint)

    def test_tcp_ignores_tls_options(self) -> None:
        """A tcp endpoint stays plain even when the caller has TLS settings for ssl ones."""
        endpoint = client_endpoint(self.reactor, TcpEndpoint("h", 1), CertificateOptions())
        self.assertIsInstance(endpoint, TCP4ClientEndpoint)

    def test_other_transports(self) -> None:
        self.assertRaises(ValueError, client_endpoint, self.reactor, UdpEndpoint("h", 1))


class ServerEndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = Factory.forProtocol(Protocol)

    def listen(self, endpoint: Any, tls: Any = None) -> tuple[Any, ...]:
        """Listen on the Ice C{endpoint}; what it asked the reactor for."""
        self.successResultOf(server_endpoint(self.reactor, endpoint, tls).listen(self.factory))
        return (self.reactor.sslServers or self.reactor.tcpServers)[-1]  # type: ignore

    def test_ipv4(self) -> None:
        endpoint = server_endpoint(self.reactor, TcpEndpoint("127.0.0.1", 4061))
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        port, _, _, interface = self.listen(TcpEndpoint("127.0.0.1", 4061))
        self.assertEqual((port, interface), (4061, "127.0.0.1"))

    def test_every_interface(self) -> None:
        """An empty host and C{*} listen on every interface; 0.0.0.0 and :: are kept."""
        self.assertEqual(self.listen(TcpEndpoint("", 1))[3], "")
        self.assertEqual(self.listen(TcpEndpoint("*", 1))[3], "")
        self.assertEqual(self.listen(TcpEndpoint("0.0.0.0", 1))[3], "0.0.0.0")
        self.assertIsInstance(
            server_endpoint(self.reactor, TcpEndpoint("::", 1)), TCP6ServerEndpoint
        )

    def test_ipv6(self) -> None:
        endpoint = server_endpoint(self.reactor, TcpEndpoint("::1", 4061))
        self.assertIsInstance(endpoint, TCP6ServerEndpoint)
        self.assertEqual(self.listen(TcpEndpoint("::1", 4061))[3], "::1")

    def test_host_name(self) -> None:
        endpoint = server_endpoint(self.reactor, TcpEndpoint("localhost", 4061))
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        self.assertEqual(self.listen(TcpEndpoint("localhost", 4061))[3], "localhost")

    def test_ssl(self) -> None:
        options = CertificateOptions()
        endpoint = server_endpoint(self.reactor, SslEndpoint("127.0.0.1", 4063), options)
        self.assertIsInstance(endpoint, SSL4ServerEndpoint)
        port, _, context, _, interface = self.listen(SslEndpoint("127.0.0.1", 4063), options)
        self.assertEqual((port, interface), (4063, "127.0.0.1"))
        self.assertIs(context, options)

    def test_ssl_needs_tls_options(self) -> None:
        with self.assertRaises(ValueError) as caught:
            server_endpoint(self.reactor, SslEndpoint("127.0.0.1", 4063))
        self.assertIn("IceSSL.CertFile", str(caught.exception))

    def test_other_transports(self) -> None:
        self.assertRaises(ValueError, server_endpoint, self.reactor, UdpEndpoint("h", 1))

    def test_listen_ice_fails_deferred(self) -> None:
        """L{listen_ice} reports a bad endpoint as a failed Deferred, not an exception."""
        self.failureResultOf(
            listen_ice(self.reactor, UdpEndpoint("h", 1), self.factory), ValueError
        )
        self.failureResultOf(
            listen_ice(self.reactor, SslEndpoint("h", 1), self.factory), ValueError
        )

    def test_published_endpoint(self) -> None:
        """The published endpoint has the real port and loopback for every interface."""
        port = self.successResultOf(listen_ice(self.reactor, TcpEndpoint("*", 0), self.factory))
        published = published_endpoint(TcpEndpoint("*", 0, 1000), port)
        self.assertEqual(published, TcpEndpoint("127.0.0.1", port.getHost().port, 1000))


class WithTransportTests(SynchronousTestCase):
    def test_secure(self) -> None:
        secured = with_transport(TcpEndpoint("h", 1, 500, source_address="10.0.0.1"), True)
        self.assertEqual(secured, SslEndpoint("h", 1, 500))

    def test_plain(self) -> None:
        self.assertEqual(with_transport(SslEndpoint("h", 1), False), TcpEndpoint("h", 1))

    def test_timeout(self) -> None:
        self.assertEqual(with_transport(TcpEndpoint("h", 1), False, timeout=-1).timeout, -1)

    def test_other_transports(self) -> None:
        self.assertRaises(ValueError, with_transport, UdpEndpoint("h", 1), True)


class InternalSecurityEndpointTests(SynchronousTestCase):
    """The endpoints a replica dials and listens on for internal sessions."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def test_insecure_client(self) -> None:
        """In the clear: plain TCP whatever the transport, within L{CONNECT_TIMEOUT}."""
        security = InternalSecurity.insecure()
        endpoint = security.client_endpoint(self.reactor, SslEndpoint("::1", 4062, 60000), "Master")
        self.assertIsInstance(endpoint, TCP6ClientEndpoint)
        host, port, _, timeout, _ = dial(self.reactor, endpoint)
        self.assertEqual((host, port, timeout), ("::1", 4062, CONNECT_TIMEOUT))

    def test_tls_client(self) -> None:
        """With TLS: TLS over a tcp endpoint too, within L{CONNECT_TIMEOUT}."""
        security = InternalSecurity(grid(self, nodes=[], admins=[])[REGISTRY, "Replica1"])
        endpoint = security.client_endpoint(self.reactor, TcpEndpoint("", 4062, 1000), "Master")
        self.assertIsInstance(endpoint, TLSClientEndpoint)
        host, port, factory, timeout, _ = dial(self.reactor, endpoint)
        self.assertEqual((host, port, timeout), ("127.0.0.1", 4062, CONNECT_TIMEOUT))
        tls_factory(factory)

    def test_tls_listen(self) -> None:
        """With TLS a tcp internal endpoint listens with TLS (over the TCP port)."""
        security = InternalSecurity(grid(self, nodes=[], admins=[])[REGISTRY, "Master"])
        factory = Factory.forProtocol(Protocol)
        self.successResultOf(security.listen(self.reactor, TcpEndpoint("127.0.0.1", 0), factory))
        self.assertEqual(self.reactor.sslServers, [])
        _, tls, _, interface = self.reactor.tcpServers[-1]
        self.assertEqual(interface, "127.0.0.1")
        self.assertIsInstance(tls, TLSMemoryBIOFactory)
        self.assertIs(tls.wrappedFactory, factory)

    def test_insecure_listen(self) -> None:
        security = InternalSecurity.insecure()
        factory = Factory.forProtocol(Protocol)
        self.successResultOf(security.listen(self.reactor, TcpEndpoint("127.0.0.1", 0), factory))
        self.assertEqual(self.reactor.tcpServers[-1][3], "127.0.0.1")


class Recorder(Protocol):
    """An internal session's application side: what it received."""

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class InternalTLSTests(SynchronousTestCase):
    """
    Internal sessions over real TLS (OpenSSL) on memory transports, as
    L{InternalSecurity} sets them up: the master listening, a slave dialling.
    """

    def setUp(self) -> None:
        self.grid = grid(self, nodes=[], admins=[])
        self.reactor = MemoryReactorClock()
        self.master = InternalSecurity(self.grid[REGISTRY, "Master"])
        self.slave = InternalSecurity(self.grid[REGISTRY, "Replica1"])

    def connect(self) -> tuple[Recorder, Recorder, iosim.IOPump]:
        """One slave-to-master connection, its handshake done: (slave, master, pump)."""
        server, client = Recorder(), Recorder()
        self.successResultOf(
            self.master.listen(
                self.reactor, TcpEndpoint("127.0.0.1", 0), Factory.forProtocol(lambda: server)
            )
        )
        self.slave.client_endpoint(self.reactor, TcpEndpoint("127.0.0.1", 4062), "Master").connect(
            Factory.forProtocol(lambda: client)
        )
        server_factory = self.reactor.tcpServers[-1][1]
        client_factory = self.reactor.tcpClients[-1][2]
        _, _, pump = iosim.connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            clock=self.reactor,
        )
        self.assertIsNotNone(client.transport)
        self.assertIsNotNone(server.transport)
        return client, server, pump

    def test_writes_leave_in_the_turn_they_are_made(self) -> None:
        """
        After the handshake, what either side writes reaches the other
        without waiting for a later reactor turn, every write in order
        (Twisted's default TLS would hold it until the clock turns).
        """
        client, server, pump = self.connect()
        for n in range(50):
            client.transport.write(b"push %d;" % n)
            server.transport.write(b"ack %d;" % n)
        pump.flush(advanceClock=False)
        self.assertEqual(server.received, b"".join(b"push %d;" % n for n in range(50)))
        self.assertEqual(client.received, b"".join(b"ack %d;" % n for n in range(50)))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_a_batching_session_sends_a_turns_writes_as_one_record(self) -> None:
        """
        An admin session asks its TLS to batch (C{batch_writes}): the writes
        of one turn become one TLS write at the turn's end, in order; a
        close sends what was written first.
        """
        client, server, pump = self.connect()
        tls = server.transport
        tls.batch_writes(self.reactor)
        sent: list[bytes] = []
        socket_write = tls.transport.write
        tls.transport.write = lambda data: (sent.append(data), socket_write(data))
        for n in range(16):
            tls.write(b"answer %d;" % n)
        pump.flush(advanceClock=False)
        self.assertEqual((client.received, sent), (b"", []))
        pump.flush()
        self.assertEqual(client.received, b"".join(b"answer %d;" % n for n in range(16)))
        self.assertEqual(len(sent), 1)
        tls.write(b"last")
        tls.loseConnection()
        pump.flush(advanceClock=False)
        self.assertEqual(client.received[-4:], b"last")

    def test_large_writes_arrive_whole_and_in_order(self) -> None:
        """Writes larger than a TLS record (a snapshot chunk) arrive whole, in order."""
        client, server, pump = self.connect()
        chunks = [bytes([n]) * 70_000 for n in range(5)]
        for chunk in chunks:
            server.transport.write(chunk)
        pump.flush(advanceClock=False)
        self.assertEqual(client.received, b"".join(chunks))

    def test_the_master_reads_the_slaves_certificate(self) -> None:
        """The accepted side is a TLS transport that names its peer, as C{Hello} requires."""
        client, server, _ = self.connect()
        self.assertTrue(ISSLTransport.providedBy(server.transport))
        self.master.check_server(client.transport, "Master")
        identity = peer_identity(server.transport)
        self.assertEqual((identity.role, identity.name), (REGISTRY, "Replica1"))

    def test_connections_do_not_read_the_certificate_files(self) -> None:
        """
        The TLS options are built once: later connections (a slave
        reconnecting, a master probing its peers) neither reread nor need
        the files.
        """
        self.connect()
        configs = (self.grid[REGISTRY, "Master"], self.grid[REGISTRY, "Replica1"])
        for path in {p for c in configs for p in (c.ca_file, c.cert_file, c.key_file)}:
            os.remove(path)
        client, server, pump = self.connect()
        client.transport.write(b"register")
        pump.flush(advanceClock=False)
        self.assertEqual(server.received, b"register")


class AdminDialTests(SynchronousTestCase):
    """The endpoints C{gridadmin} dials for a replica's internal proxy."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.proxy = Proxy(
            Identity("InternalRegistry-Master", "IceGrid"),
            endpoints=(
                UdpEndpoint("127.0.0.1", 1),
                TcpEndpoint("", 4062, 60000),
                SslEndpoint("::1", 4063, 100),
            ),
        )

    def test_plain(self) -> None:
        """Without TLS every tcp and ssl endpoint is dialled in the clear, -t capped."""
        found = dial_endpoints(self.reactor, self.proxy, "Master", None, 2.0)
        self.assertEqual([address for address, _ in found], ["127.0.0.1:4062", "::1:4063"])
        dialled = [dial(self.reactor, endpoint) for _, endpoint in found]
        self.assertEqual(
            [(host, port, timeout) for host, port, _, timeout, _ in dialled],
            [("127.0.0.1", 4062, 2.0), ("::1", 4063, 0.1)],
        )
        self.assertIsInstance(found[1][1], TCP6ClientEndpoint)

    def test_tls(self) -> None:
        config = grid(self, nodes=[])[ADMIN, "admin"]
        found = dial_endpoints(self.reactor, self.proxy, "Master", config, 2.0)
        self.assertEqual([type(e) for _, e in found], [TLSClientEndpoint, TLSClientEndpoint])
        tls_factory(dial(self.reactor, found[0][1])[2])
