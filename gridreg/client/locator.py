# -*- test-case-name: tests.test_client_locator -*-
"""
A locator client: what an Ice client's runtime does with
C{Ice.Default.Locator}, for Twisted programs.

It keeps one connection to one registry replica, through a
L{ClientService} over a L{FailoverEndpoint} of every replica the locator
proxy lists. A replica that refuses, dies or stops answering (each request
has a deadline) costs one attempt: the client aborts that connection, makes
the next replica current and sends the request again. Locator operations
are idempotent, so a retried request is harmless.

Resolutions are cached per adapter id and per identity for
C{Ice.Default.LocatorCacheTimeout} seconds (-1: forever, 0: never).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IProtocol
from twisted.internet.protocol import connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.client.endpoints import ValidatedEndpoint, client_endpoint
from gridreg.client.failover import FailoverEndpoint, locator_retry_policy
from gridreg.config.properties import Properties, PropertyError
from gridreg.ice.client import IceClientFactory, IceClientProtocol
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import AdapterNotFoundException, ObjectNotFoundException
from gridreg.ice.messages import ProtocolError
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Endpoint, Identity, OperationMode, Proxy, Version

__all__ = ["LocatorClient", "LocatorUnreachableError", "locator_retry_policy"]

#: failures that say nothing about the request, only about the replica or
#: the connection to it: the request is sent again to the next replica
TRANSPORT_FAILURES = (
    TimeoutError,  # the request's deadline passed
    error.ConnectError,  # refused, unreachable, no ValidateConnection in time
    error.ConnectionClosed,  # lost, or closed by the server before answering
    ProtocolError,  # the server sent garbage; the connection was closed
)


class LocatorUnreachableError(Exception):
    """
    No locator replica answered a request.

    @ivar attempts: how many times the request was tried.
    @ivar last_error: the failure of the last attempt.
    """

    def __init__(self, attempts: int, last_error: Optional[BaseException]) -> None:
        super().__init__(attempts, last_error)
        self.attempts = attempts
        self.last_error = last_error

    def __str__(self) -> str:
        return f"no locator replica answered after {self.attempts} attempts: {self.last_error!r}"


class _LocatorConnection(IceClientProtocol):
    """An Ice connection that also knows whether the locator client gave up on it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.condemned = False
        self.gone = False
        self.endpoint_index = 0
        self._lost_waiters: list[Deferred[None]] = []

    @property
    def usable(self) -> bool:
        return bool(self.connected) and not self.condemned

    def when_lost(self) -> Deferred[None]:
        if self.gone:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.gone = True
        super().connectionLost(reason)
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)


class _LocatorConnectionFactory(IceClientFactory):
    def buildProtocol(self, addr: object) -> _LocatorConnection:
        protocol = _LocatorConnection(self.clock, self.max_message_size)
        protocol.factory = self
        return protocol


_Entry = tuple[float, Any]


class LocatorClient(Service):
    """
    Resolves adapter ids, well-known objects and replica groups through the
    registry replicas of a locator proxy, failing over between them.

    Requests made before the service starts wait for it; requests still
    waiting when it stops fail with L{CancelledError}.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        locator: Union[str, Proxy],
        *,
        cache_timeout: float = -1,
        request_timeout: float = 0.5,
        connect_timeout: Optional[float] = None,
        max_attempts: Optional[int] = None,
        retry_policy: Optional[Callable[[int], float]] = None,
        encoding: Optional[Version] = None,
        tls_options: Optional[IOpenSSLClientConnectionCreator] = None,
    ) -> None:
        """
        @param reactor: provides L{IReactorTCP} and L{IReactorTime}.
        @param locator: the locator proxy, e.g.
            C{"DemoIceGrid/Locator:tcp -p 4061:tcp -p 4062"}; its endpoints
            are the replicas, tried in that order.
        @param cache_timeout: seconds a resolution stays cached
            (C{Ice.Default.LocatorCacheTimeout}: -1 forever, 0 never).
        @param request_timeout: seconds to wait for each reply before giving
            up on that replica.
        @param connect_timeout: seconds to connect to a replica and receive
            its ValidateConnection; defaults to C{request_timeout}.
        @param max_attempts: how many times to try a request (connection
            attempts included); defaults to twice the number of replicas.
        @param retry_policy: the reconnection back-off, attempt -> seconds;
            defaults to L{locator_retry_policy}().
        @param encoding: the encoding of request parameters; defaults to the
            locator proxy's (1.1 unless it says C{-e 1.0}).
        @param tls_options: client TLS settings, needed for C{ssl} endpoints.
        @raise ValueError: the proxy has no endpoint this client can dial.
        """
        proxy = proxy_from_string(locator) if isinstance(locator, str) else locator
        self.reactor = reactor
        self.locator = proxy
        self.cache_timeout = cache_timeout
        self.request_timeout = request_timeout
        self.encoding = encoding or proxy.encoding
        self.retry_policy = retry_policy or locator_retry_policy()
        connect_timeout = request_timeout if connect_timeout is None else connect_timeout
        endpoints = []
        for endpoint in proxy.endpoints:
            try:
                dial = client_endpoint(reactor, endpoint, tls_options, timeout_cap=connect_timeout)
            except ValueError as e:
                self.log.warn(
                    "Ignoring locator endpoint {endpoint!r}: {why}", endpoint=endpoint, why=e
                )
                continue
            endpoints.append(ValidatedEndpoint(dial, reactor, connect_timeout))
        if not endpoints:
            raise ValueError(f"the locator proxy {locator!r} has no tcp or ssl endpoint to dial")
        self.failover = FailoverEndpoint(endpoints)
        self.max_attempts = max_attempts or 2 * len(endpoints)
        self._service = ClientService(
            self.failover,
            _LocatorConnectionFactory(reactor),
            retryPolicy=self.retry_policy,
            clock=reactor,
            prepareConnection=self._prepare,
        )
        self._stopping = False
        self._live: Optional[_LocatorConnection] = None
        self._connected_callbacks: list[Callable[[IceClientProtocol], object]] = []
        self._adapters: dict[str, _Entry] = {}
        self._objects: dict[Identity, _Entry] = {}

    @classmethod
    def from_properties(cls, reactor: Any, properties: Properties, **kwargs: Any) -> LocatorClient:
        """
        A client configured as an Ice client would be: C{Ice.Default.Locator}
        (required), C{Ice.Default.LocatorCacheTimeout} and, in milliseconds,
        C{Ice.Default.Locator.InvocationTimeout} as the request timeout.

        @raise PropertyError: C{Ice.Default.Locator} is unset or malformed.
        """
        locator = properties.get_proxy("Ice.Default.Locator")
        if locator is None:
            raise PropertyError(
                "Ice.Default.Locator is not set: it must name the registry's locator, "
                "e.g. DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061"
            )
        kwargs.setdefault(
            "cache_timeout", properties.get_int("Ice.Default.LocatorCacheTimeout", -1)
        )
        invocation_timeout = properties.get_int("Ice.Default.Locator.InvocationTimeout", -1)
        if invocation_timeout > 0:
            kwargs.setdefault("request_timeout", invocation_timeout / 1000.0)
        return cls(reactor, locator, **kwargs)

    # -- life cycle ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        """Close the locator connection gracefully; fires once it is closed."""
        super().stopService()
        self._stopping = True
        if self._live is not None and self._live.connected:
            self._live.close()
        self._live = None
        return self._service.stopService()

    @property
    def connection(self) -> Optional[IceClientProtocol]:
        """The current locator connection, if one is up."""
        live = self._live
        return live if live is not None and live.usable else None

    def on_connected(self, callback: Callable[[IceClientProtocol], object]) -> Callable[[], None]:
        """
        Call C{callback} with the protocol each time a new locator connection
        is validated: the first, and every one after a failover or a registry
        restart. Returns a function that cancels the subscription.
        """
        self._connected_callbacks.append(callback)

        def cancel() -> None:
            if callback in self._connected_callbacks:
                self._connected_callbacks.remove(callback)

        return cancel

    def _prepare(self, protocol: IProtocol) -> Deferred[None]:
        validated = protocol.when_validated()  # type: ignore[attr-defined]
        return validated.addCallback(self._connected)  # type: ignore[no-any-return]

    def _connected(self, protocol: _LocatorConnection) -> None:
        protocol.endpoint_index = self.failover.current_index
        self._live = protocol
        protocol.when_lost().addCallback(lambda _: self._lost(protocol))
        self.log.info(
            "Connected to the locator at {endpoint}", endpoint=repr(self.failover.current)
        )
        # Not now: this runs inside the ClientService's state transition,
        # which a callback making a request would re-enter.
        self.reactor.callLater(0, self._notify_connected, protocol)

    def _notify_connected(self, protocol: _LocatorConnection) -> None:
        for callback in tuple(self._connected_callbacks):
            try:
                callback(protocol)
            except Exception:
                self.log.failure("A locator on_connected callback failed")

    # -- requests --------------------------------------------------------------

    def call(
        self, operation: str, mode: OperationMode, params: bytes = b""
    ) -> Deferred[InputStream]:
        """
        Invoke C{operation} on the locator object, failing over between
        replicas; fires with the result, or fails with the user exception or
        request failure the replica answered, or L{LocatorUnreachableError}.
        Only idempotent operations may be sent this way.
        """
        return Deferred.fromCoroutine(self._call(operation, mode, params))

    async def _call(self, operation: str, mode: OperationMode, params: bytes) -> InputStream:
        attempts = 0
        while True:
            if self._stopping:
                raise CancelledError("the locator client is stopping")
            try:
                protocol = await self._when_connected()
            except CancelledError:
                raise
            except Exception as e:
                # Whatever stopped the connection attempt (refused, timed
                # out, a TLS handshake refused), that replica is out for now.
                attempts = self._failed_attempt(operation, attempts, e)
                continue
            if not protocol.usable:
                # The connection is closing but the ClientService has not
                # seen it go yet: wait until it has, then ask again.
                await protocol.when_lost()
                await deferLater(self.reactor, 0, lambda: None)
                continue
            try:
                return await protocol.call(
                    self.locator.identity,
                    operation,
                    mode,
                    params,
                    facet=self.locator.facet,
                    encoding=self.encoding,
                    timeout=self.request_timeout,
                )
            except TRANSPORT_FAILURES as e:
                self._condemn(protocol)
                attempts = self._failed_attempt(operation, attempts, e)

    def _failed_attempt(self, operation: str, attempts: int, error: Exception) -> int:
        """Count a failed attempt; raise if it was the last one allowed."""
        attempts += 1
        if self._stopping:
            raise CancelledError("the locator client is stopping") from error
        if attempts >= self.max_attempts:
            raise LocatorUnreachableError(attempts, error) from error
        self.log.info(
            "Locator request {operation} failed (attempt {attempt} of {max_attempts}): {reason}",
            operation=operation,
            attempt=attempts,
            max_attempts=self.max_attempts,
            reason=repr(error),
        )
        return attempts

    def _when_connected(self) -> Deferred[_LocatorConnection]:
        """
        The live connection, or the outcome of the next connection attempt.

        The ClientService fires waiters from inside its state transitions,
        where asking it anything again raises; so a result that is not
        there at once is delivered one reactor turn later.
        """
        waiting = self._service.whenConnected(failAfterFailures=1)
        if waiting.called:
            return waiting  # type: ignore[return-value]
        later: Deferred[_LocatorConnection] = Deferred(lambda _: waiting.cancel())

        def bounce(result: object) -> None:
            self.reactor.callLater(0, _fire_unless_called, later, result)

        waiting.addBoth(bounce)
        return later

    def _lost(self, protocol: _LocatorConnection) -> None:
        """A replica dropped us (it died, or closed): reconnect to the next one."""
        if not protocol.condemned and self.failover.current_index == protocol.endpoint_index:
            self.failover.advance()

    def _condemn(self, protocol: _LocatorConnection) -> None:
        """Give up on a connection (once) and make the next replica current."""
        if protocol.condemned:
            return
        protocol.condemned = True
        if self.failover.current_index == protocol.endpoint_index:
            self.failover.advance()
        if protocol.connected:
            protocol.transport.abortConnection()

    def _params(self, write: Callable[[OutputStream], None]) -> bytes:
        out = OutputStream(self.encoding)
        write(out)
        return out.getvalue()

    def find_adapter_by_id(self, adapter_id: str) -> Deferred[Proxy]:
        """
        Ask for an adapter's (or a replica group's) direct proxy; uncached.

        @raise AdapterNotFoundException: the registry knows no such adapter.
        """
        params = self._params(lambda out: out.write_string(adapter_id))
        d = self.call("findAdapterById", OperationMode.NONMUTATING, params)
        return d.addCallback(_read_proxy, AdapterNotFoundException)

    def find_object_by_id(self, identity: Identity) -> Deferred[Proxy]:
        """
        Ask for a well-known object's proxy; uncached.

        @raise ObjectNotFoundException: the registry knows no such object.
        """
        params = self._params(lambda out: out.write_identity(identity))
        d = self.call("findObjectById", OperationMode.NONMUTATING, params)
        return d.addCallback(_read_proxy, ObjectNotFoundException)

    def get_registry(self) -> Deferred[Optional[Proxy]]:
        """The replica's C{LocatorRegistry} proxy, or C{None} if it has none."""
        d = self.call("getRegistry", OperationMode.NONMUTATING)
        return d.addCallback(lambda result: result.read_proxy())

    # -- resolution and its cache ----------------------------------------------

    def resolve(self, proxy: Union[Proxy, str]) -> Deferred[tuple[Endpoint, ...]]:
        """
        The endpoints to dial for C{proxy}, as an Ice client resolves them:
        a direct proxy's own; C{id@adapter} by the adapter (for a replica
        group, every member's); a well-known object by its registered proxy,
        which may in turn be indirect. Answers are cached (see
        C{cache_timeout}); failures are not.
        """
        return Deferred.fromCoroutine(self._resolve(proxy))

    async def _resolve(self, target: Union[Proxy, str]) -> tuple[Endpoint, ...]:
        proxy = proxy_from_string(target) if isinstance(target, str) else target
        if proxy.endpoints:
            return proxy.endpoints
        if not proxy.adapter_id:
            found = self._cached(self._objects, proxy.identity)
            if found is None:
                found = await self.find_object_by_id(proxy.identity)
                self._store(self._objects, proxy.identity, found)
            if found.endpoints or not found.adapter_id:
                return found.endpoints  # type: ignore[no-any-return]
            proxy = found
        endpoints = self._cached(self._adapters, proxy.adapter_id)
        if endpoints is None:
            endpoints = (await self.find_adapter_by_id(proxy.adapter_id)).endpoints
            self._store(self._adapters, proxy.adapter_id, endpoints)
        return endpoints  # type: ignore[no-any-return]

    def _cached(self, table: dict[Any, _Entry], key: Any) -> Any:
        entry = table.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if self.cache_timeout < 0 or self.reactor.seconds() - stored_at <= self.cache_timeout:
            return value
        del table[key]
        return None

    def _store(self, table: dict[Any, _Entry], key: Any, value: Any) -> None:
        if self.cache_timeout != 0:
            table[key] = (self.reactor.seconds(), value)

    def invalidate(
        self, adapter_id: Optional[str] = None, identity: Optional[Identity] = None
    ) -> None:
        """
        Forget cached resolutions: of C{adapter_id}, of C{identity}, or with
        neither, all of them. Call it when the resolved endpoints fail (the
        connection is refused, or the object does not exist there), as an
        Ice client does, so the next L{resolve} asks the registry again.
        """
        if adapter_id is None and identity is None:
            self._adapters.clear()
            self._objects.clear()
            return
        if adapter_id is not None:
            self._adapters.pop(adapter_id, None)
        if identity is not None:
            self._objects.pop(identity, None)


def _fire_unless_called(d: Deferred[Any], result: object) -> None:
    if not d.called:
        d.callback(result)


def _read_proxy(result: InputStream, not_found: type[Exception]) -> Proxy:
    proxy = result.read_proxy()
    if proxy is None:  # IceGrid answers unknown ids with an exception; a null proxy means the same
        raise not_found()
    return proxy
