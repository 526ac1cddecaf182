# -*- test-case-name: tests.test_client_registration -*-
"""
Keeping a Twisted server's endpoints registered with the registry, as an Ice
object adapter with an C{AdapterId} does.

An Ice server registers once, at activation. A Twisted service also has to
survive the registry: a restarted replica with an empty database, or a
failover to another replica, must learn about the adapter again. So
L{AdapterRegistration} registers again every time the locator client makes a
new connection, retries with back-off while no registry answers, and
unregisters (a null proxy) when it stops. When to register is decided by a
state machine (L{gridreg.client._registration_machine}); this module does
the registering.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IOpenSSLClientConnectionCreator
from twisted.logger import Logger

from gridreg.client._registration_machine import RegistrationCore, build_registration
from gridreg.client.endpoints import ValidatedEndpoint, client_endpoint
from gridreg.client.locator import LocatorClient, locator_retry_policy
from gridreg.ice.client import IceClientFactory, IceClientProtocol
from gridreg.ice.encoding import OutputStream, is_supported_encoding
from gridreg.ice.exceptions import (
    FacetNotExistError,
    ObjectNotExistError,
    OperationNotExistError,
    UserException,
)
from gridreg.ice.types import ENCODING_1_1, Endpoint, Identity, OperationMode, Proxy, TcpEndpoint

__all__ = ["AdapterRegistration", "NoLocatorRegistryError", "register_port"]

#: the identity of the proxy an Ice server registers (IceGrid ignores it)
ADAPTER_PROXY_IDENTITY = Identity("dummy")

#: answers that retrying will not change: the registry refuses this adapter
_REFUSALS = (UserException, ObjectNotExistError, FacetNotExistError, OperationNotExistError)


class NoLocatorRegistryError(Exception):
    """The locator has no LocatorRegistry: it does not accept registrations."""


class AdapterRegistration(Service):
    """
    Keeps C{adapter_id} registered with C{endpoints} while the service runs.

    @ivar registered: whether the latest registration succeeded.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        locator_client: LocatorClient,
        adapter_id: str,
        endpoints: Sequence[Endpoint],
        replica_group_id: str = "",
        *,
        request_timeout: float = 5.0,
        retry_policy: Optional[Callable[[int], float]] = None,
        tls_options: Optional[IOpenSSLClientConnectionCreator] = None,
    ) -> None:
        """
        @param reactor: provides L{IReactorTCP} and L{IReactorTime}.
        @param locator_client: the client whose C{getRegistry} names the
            LocatorRegistry to register with.
        @param endpoints: the endpoints clients should dial (published ones).
        @param replica_group_id: the replica group to join, if any.
        @param request_timeout: seconds to connect to the LocatorRegistry,
            and again to wait for its answer; a registration is a durable
            write, so this is longer than a locate request's deadline.
        @param retry_policy: back-off between failed registrations, attempt
            -> seconds; defaults to L{locator_retry_policy}().
        @param tls_options: client TLS settings for C{ssl} registry endpoints.
        """
        if not endpoints:
            raise ValueError("an adapter registration needs at least one endpoint")
        self.reactor = reactor
        self.locator_client = locator_client
        self.adapter_id = adapter_id
        self.endpoints = tuple(endpoints)
        self.replica_group_id = replica_group_id
        self.request_timeout = request_timeout
        self.retry_policy = retry_policy or locator_retry_policy()
        self.tls_options = tls_options
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._registry: Optional[Proxy] = None
        self._via: Optional[IceClientProtocol] = None  # the locator connection that named it
        self._connection: Optional[IceClientProtocol] = None
        self._connection_endpoints: tuple[Endpoint, ...] = ()
        self._core = RegistrationCore(
            clock=reactor,
            retry_policy=self.retry_policy,
            attempt=lambda: Deferred.fromCoroutine(self._register(self._direct_proxy())),
            unregister=self._unregister_if_known,
            drop_connection=self._drop_connection,
            via_known=lambda: self._via is not None,
            refusals=(NoLocatorRegistryError,) + _REFUSALS,
            log=self.log,
            adapter_id=adapter_id,
            endpoints=repr(self.endpoints),
        )
        self._machine = build_registration(self._core)

    @property
    def registered(self) -> bool:
        """Whether the latest registration succeeded."""
        return self._core.registered

    # -- life cycle ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._unsubscribe = self.locator_client.on_connected(self._locator_connected)
        self._machine.start()

    def stopService(self) -> Deferred[None]:
        """
        Unregister (bounded by the request timeout; a failure is logged, not
        raised) and close the registry connection; fires when done.
        """
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        done: Deferred[None] = Deferred()
        self._machine.stop(done)
        return done

    def when_registered(self) -> Deferred[None]:
        """
        A fresh Deferred fired once the adapter is registered (at once if it
        is now). It fails if the registry refuses the adapter (e.g.
        C{AdapterNotFoundException} without dynamic registration) or the
        service stops first.
        """
        if self._core.registered:
            return succeed(None)
        if self._core.refused is not None:
            return fail(self._core.refused)
        d: Deferred[None] = Deferred()
        self._core.waiters.append(d)
        return d

    # -- registering -----------------------------------------------------------

    def _locator_connected(self, connection: IceClientProtocol) -> None:
        """
        The locator client has a new connection: the registry behind it may
        be new (restarted, or another replica), so register again, unless
        the registration under way is about to go through that connection
        or went through it.
        """
        if connection is not self._via:
            self._machine.locator_reconnected()

    def _direct_proxy(self) -> Proxy:
        return Proxy(ADAPTER_PROXY_IDENTITY, endpoints=self.endpoints)

    async def _register(self, proxy: Optional[Proxy]) -> None:
        """Fetch the LocatorRegistry from the locator, then set the proxy there."""
        self._via = None
        registry = await self.locator_client.get_registry()
        self._via = self.locator_client.connection
        if registry is None:
            raise NoLocatorRegistryError("the locator returned a null LocatorRegistry")
        self._registry = registry
        await self._set_direct_proxy(registry, proxy)

    async def _set_direct_proxy(self, registry: Proxy, proxy: Optional[Proxy]) -> None:
        protocol = await self._connect(registry)
        encoding = registry.encoding if is_supported_encoding(registry.encoding) else ENCODING_1_1
        out = OutputStream(encoding)
        out.write_string(self.adapter_id)
        if self.replica_group_id:
            out.write_string(self.replica_group_id)
            operation = "setReplicatedAdapterDirectProxy"
        else:
            operation = "setAdapterDirectProxy"
        out.write_proxy(proxy)
        await protocol.call(
            registry.identity,
            operation,
            OperationMode.IDEMPOTENT,
            out.getvalue(),
            facet=registry.facet,
            encoding=encoding,
            timeout=self.request_timeout,
        )

    async def _connect(self, registry: Proxy) -> IceClientProtocol:
        """The connection to C{registry}: the open one, or the first endpoint that answers."""
        current = self._connection
        if current is not None and current.connected:
            if self._connection_endpoints == registry.endpoints:
                return current
        self._drop_connection()
        last: Optional[BaseException] = None
        for endpoint in registry.endpoints:
            try:
                dial = client_endpoint(
                    self.reactor, endpoint, self.tls_options, timeout_cap=self.request_timeout
                )
            except ValueError as e:
                last = e
                continue
            try:
                gate = ValidatedEndpoint(dial, self.reactor, self.request_timeout)
                protocol = await gate.connect(IceClientFactory(self.reactor))
            except CancelledError:
                raise
            except Exception as e:
                last = e
                continue
            assert isinstance(protocol, IceClientProtocol)
            self._connection = protocol
            self._connection_endpoints = registry.endpoints
            return protocol
        raise last or ValueError("the LocatorRegistry proxy has no endpoint")

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.connected:
            connection.transport.abortConnection()

    def _unregister_if_known(self) -> Deferred[None]:
        if self._registry is None:
            return succeed(None)
        return Deferred.fromCoroutine(self._unregister(self._registry))

    async def _unregister(self, registry: Proxy) -> None:
        try:
            await self._set_direct_proxy(registry, None)
        except Exception as e:
            self.log.warn(
                "Could not unregister adapter {adapter_id}: {reason!r}",
                adapter_id=self.adapter_id,
                reason=e,
            )
        else:
            self.log.info("Adapter {adapter_id} unregistered", adapter_id=self.adapter_id)
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


def register_port(
    reactor: Any,
    locator_client: LocatorClient,
    adapter_id: str,
    listening_port: IListeningPort,
    host: str = "127.0.0.1",
    replica_group_id: str = "",
    **kwargs: Any,
) -> AdapterRegistration:
    """
    An L{AdapterRegistration} publishing a listening TCP port as
    C{tcp -h host -p <port>}; add it to the service that owns the port.
    """
    endpoint = TcpEndpoint(host, listening_port.getHost().port)
    return AdapterRegistration(
        reactor, locator_client, adapter_id, (endpoint,), replica_group_id, **kwargs
    )
