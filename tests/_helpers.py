# -*- test-case-name: tests.test_client_locator -*-
"""
Shared test helpers.

L{twisted.test.iosim} is not formally public, so it is wrapped here once.
L{MemoryNetwork} plays the network for a L{MemoryReactorClock}: every
C{connectTCP} the code under test makes is routed by host and port to a
server factory registered with L{MemoryNetwork.listen}, or refused; and the
network can kill a server (its connections drop, new ones are refused) or
hang it as SIGSTOP would (connections are still accepted, by the kernel,
but no byte moves until it resumes).

L{RegistryReplica} is a real registry's Ice side (state, database, the
Locator and LocatorRegistry servants) in memory, ready to serve on a
L{MemoryNetwork}.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim

from gridreg.ice.messages import Request
from gridreg.ice.servant import DispatchResult, ObjectAdapter
from gridreg.ice.server import IceServerFactory
from gridreg.ice.types import Endpoint, Identity, Proxy, TcpEndpoint
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.servants import LocatorRegistryServant, LocatorServant, PublishedProxies
from gridreg.registry.state import RegistryState
from gridreg.registry.trace import TraceLevels
from gridreg.store.memory import MemoryStore

Address = tuple[str, int]


class Link:
    """One in-memory TCP connection between a client and a server protocol."""

    def __init__(self, address: Address, client: IProtocol, server: IProtocol) -> None:
        self.address = address
        self.client = client
        self.server = server
        self.client_io = iosim.makeFakeClient(client)
        self.server_io = iosim.makeFakeServer(server)
        self.client_closed = False
        self.server_closed = False
        self.frozen = False
        #: every chunk of bytes delivered to the server, in order
        self.received: list[bytes] = []

    @property
    def closed(self) -> bool:
        return self.client_closed and self.server_closed

    def start(self) -> None:
        self.server.makeConnection(self.server_io)
        self.client.makeConnection(self.client_io)

    def _close_client(self, reason: Optional[Exception] = None) -> None:
        if not self.client_closed:
            self.client_closed = True
            self.client_io.disconnecting = self.client_io.disconnected = True
            if reason is not None:
                self.client_io.disconnectReason = reason
            self.client_io.reportDisconnect()

    def _close_server(self) -> None:
        if not self.server_closed:
            self.server_closed = True
            self.server_io.disconnecting = self.server_io.disconnected = True
            self.server_io.reportDisconnect()

    def kill(self) -> None:
        """The server process died: the client sees the connection lost."""
        self._close_client(ConnectionLost("the server died"))
        self._close_server()

    def pump(self) -> bool:
        """Move pending bytes and closes one step; return whether anything happened."""
        if self.closed:
            return False
        if self.frozen:
            # A stopped process neither reads nor writes, but a client that
            # closes its own end sees that at once.
            if self.client_io.disconnecting and not self.client_closed:
                self._close_client()
                return True
            return False
        to_server = self.client_io.getOutBuffer()
        to_client = self.server_io.getOutBuffer()
        if to_server and not self.server_closed:
            self.received.append(to_server)
            self.server_io.bufferReceived(to_server)
        if to_client and not self.client_closed:
            self.client_io.bufferReceived(to_client)
        if to_server or to_client:
            return True
        if (
            self.client_io.disconnecting
            or self.server_io.disconnecting
            or self.client_closed
            or self.server_closed
        ):
            self._close_client()
            self._close_server()
            return True
        return False


class MemoryNetwork:
    """
    Connects a L{MemoryReactorClock}'s C{connectTCP} attempts to in-memory
    servers by host and port, and moves bytes between them.

    @ivar attempts: every connection attempt, as (host, port), in order.
    """

    def __init__(self, reactor: Optional[MemoryReactorClock] = None) -> None:
        self.reactor = reactor or MemoryReactorClock()
        self.listeners: dict[Address, IProtocolFactory] = {}
        self.hung: set[Address] = set()
        self.links: list[Link] = []
        self.attempts: list[Address] = []

    def listen(self, host: str, port: int, factory: IProtocolFactory) -> None:
        self.listeners[(host, port)] = factory

    def stop_listening(self, host: str, port: int) -> None:
        """New connections to the address are refused; existing ones stay."""
        self.listeners.pop((host, port), None)

    def kill(self, host: str, port: int) -> None:
        """The server died: its connections drop and new ones are refused."""
        self.stop_listening(host, port)
        self.hung.discard((host, port))
        for link in self.links_to(host, port):
            link.kill()

    def hang(self, host: str, port: int) -> None:
        """The server is stopped (SIGSTOP): nothing it should send or read moves."""
        self.hung.add((host, port))
        for link in self.links_to(host, port):
            link.frozen = True

    def resume(self, host: str, port: int) -> None:
        self.hung.discard((host, port))
        for link in self.links_to(host, port):
            link.frozen = False

    def links_to(self, host: str, port: int) -> list[Link]:
        """The connections to an address that are not closed at both ends yet."""
        return [link for link in self.links if link.address == (host, port) and not link.closed]

    def open_clients(self, host: str, port: int) -> list[Link]:
        """The connections to an address that their client has not closed."""
        return [link for link in self.links_to(host, port) if not link.client_closed]

    def _connect_pending(self) -> bool:
        reactor = self.reactor
        moved = False
        while reactor.tcpClients:
            host, port, factory, _timeout, _bind = reactor.tcpClients.pop(0)
            connector = reactor.connectors.pop(0)
            moved = True
            if connector.stoppedConnecting:
                continue
            self.attempts.append((host, port))
            server_factory = self.listeners.get((host, port))
            if server_factory is None:
                factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
                continue
            address = IPv4Address("TCP", host, port)
            server = server_factory.buildProtocol(address)
            if server is None:  # the server refuses connections for now
                factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
                continue
            link = Link((host, port), factory.buildProtocol(address), server)
            link.frozen = (host, port) in self.hung
            self.links.append(link)
            link.start()
        return moved

    def _due(self) -> bool:
        now = self.reactor.seconds()
        return any(call.getTime() <= now for call in self.reactor.getDelayedCalls())

    def flush(self) -> None:
        """Complete connections and move bytes until nothing is left to do now."""
        for _ in range(10000):
            self.reactor.advance(0)
            moved = self._connect_pending()
            for link in list(self.links):
                moved = link.pump() or moved
            self.links = [link for link in self.links if not link.closed]
            if not moved and not self._due():
                return
        raise AssertionError("the memory network never went quiet")

    def _next_event(self, end: float) -> float:
        now = self.reactor.seconds()
        later = [call.getTime() for call in self.reactor.getDelayedCalls() if call.getTime() > now]
        return min(later + [end])

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} of clock time pass, stopping at every scheduled call on
        the way to move bytes, as a real reactor would.
        """
        self.flush()
        end = self.reactor.seconds() + seconds
        while self.reactor.seconds() < end:
            self.reactor.advance(self._next_event(end) - self.reactor.seconds())
            self.flush()

    def run_until(
        self, done: Union[Deferred[Any], Callable[[], bool]], limit: float = 30.0
    ) -> float:
        """
        Let time pass, event by event, until C{done} (a Deferred that fired,
        or a predicate that became true); return the clock time that took.
        """
        if isinstance(done, Deferred):
            d = done
            done = lambda: d.called  # noqa: E731
        start = self.reactor.seconds()
        self.flush()
        while not done():
            if self.reactor.seconds() - start >= limit:
                raise AssertionError(f"not done after {limit}s of clock time")
            self.reactor.advance(self._next_event(start + limit) - self.reactor.seconds())
            self.flush()
        return self.reactor.seconds() - start


class CountingAdapter(ObjectAdapter):
    """An object adapter that records every request and never reuses a reply."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.requests: list[Request] = []

    def cached_reply(self, key: bytes) -> Optional[bytes]:
        return None

    def dispatch(
        self, request: Request, cache_key: Optional[bytes] = None, connection: Any = None
    ) -> DispatchResult:
        self.requests.append(request)
        return super().dispatch(request, cache_key, connection)


def _now(d: Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired (memory stores fire at once)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, f"{d!r} has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class RegistryReplica:
    """
    A registry replica's Ice side in memory: C{<instance>/Locator} on the
    client address, C{<instance>/LocatorRegistry} on the server address,
    over a fresh L{MemoryStore} (so a new replica is a restarted one that
    lost its dynamic registrations).
    """

    def __init__(
        self,
        client: Address = ("127.0.0.1", 4061),
        server: Address = ("127.0.0.1", 4062),
        instance: str = "DemoIceGrid",
        dynamic_registration: bool = True,
    ) -> None:
        self.client_address = client
        self.server_address = server
        self.instance = instance
        self.store = MemoryStore()
        _now(self.store.open())
        self.state = RegistryState()
        self.database = RegistryDatabase(
            self.store, self.state, dynamic_registration, TraceLevels()
        )
        self.locator_registry = Proxy(
            Identity("LocatorRegistry", instance), endpoints=(TcpEndpoint(*server),)
        )
        self.published = PublishedProxies(locator_registry=self.locator_registry)
        self.client_adapter = CountingAdapter("Client")
        self.server_adapter = CountingAdapter("Server")
        self.client_adapter.add(
            Identity("Locator", instance), LocatorServant(self.state, self.published, TraceLevels())
        )
        self.server_adapter.add(
            Identity("LocatorRegistry", instance), LocatorRegistryServant(self.database)
        )
        self.client_factory = IceServerFactory(self.client_adapter)
        self.server_factory = IceServerFactory(self.server_adapter)

    @property
    def locator_endpoint(self) -> str:
        host, port = self.client_address
        return f"tcp -h {host} -p {port}"

    def serve(self, network: MemoryNetwork) -> None:
        network.listen(*self.client_address, self.client_factory)
        network.listen(*self.server_address, self.server_factory)

    def kill(self, network: MemoryNetwork) -> None:
        network.kill(*self.client_address)
        network.kill(*self.server_address)

    def hang(self, network: MemoryNetwork) -> None:
        network.hang(*self.client_address)
        network.hang(*self.server_address)

    def register_adapter(
        self, adapter_id: str, endpoints: tuple[Endpoint, ...], replica_group_id: str = ""
    ) -> None:
        _now(
            self.database.set_adapter_direct_proxy(
                adapter_id, replica_group_id, Proxy(Identity("dummy"), endpoints=endpoints)
            )
        )

    def add_object(self, proxy: Proxy, type_id: str = "") -> None:
        _now(self.database.add_object(proxy, type_id))

    def locate_requests(self, operation: Optional[str] = None) -> list[Request]:
        """The requests the locator received (of one operation, if given)."""
        return [
            r for r in self.client_adapter.requests if operation is None or r.operation == operation
        ]

    def registry_requests(self) -> list[Request]:
        """The requests the LocatorRegistry received."""
        return list(self.server_adapter.requests)
