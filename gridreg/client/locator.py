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

A replica that stops answering without closing its connections (hung,
or a killed one whose kernel is still tearing it down) would cost a whole
request timeout; instead a request unanswered after a few times that
connection's recent round trip is I{hedged}: sent once more, to the next
replica, on a spare connection opened for the purpose, and the first
answer wins (the other is ignored, apart from its round trip). The spare
connection to the next replica is opened as soon as the ClientService's
is up, so that a hedge costs no handshake. The replica
that was overtaken is suspect until it answers again: new requests skip it.
L{gridreg.client.hedging} says when and how often this happens (at most one
hedge per request, at most 10% of requests plus a burst of two).

Resolutions are cached per adapter id and per identity for
C{Ice.Default.LocatorCacheTimeout} seconds (-1: forever, 0: never).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

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
from gridreg.client.hedging import HedgeBudget, HedgePolicy, LatencyWindow
from gridreg.client.late_loss import LateLossEndpoint, late_loss_protocol
from gridreg.client.warm import QuietClientService, warm_loss_path
from gridreg.config.properties import Properties, PropertyError
from gridreg.direct_send import idle_socket, send_direct
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
        #: overtaken by a hedge and silent since: new requests skip it
        self.suspect = False
        #: a spare to close once its last request is answered
        self.retiring = False
        self.latency = LatencyWindow()
        #: hedges the budget refused for requests waiting here: sent if it turns suspect
        self.held_hedges: set[Callable[[], None]] = set()
        self._lost_waiters: list[Deferred[None]] = []

    @property
    def usable(self) -> bool:
        return bool(self.connected) and not self.condemned

    def _send(self, message: bytes) -> None:
        """
        A request on an idle plain TCP connection goes to the socket now, not
        at the reactor's next writable event: a retry after a replica's loss
        would otherwise wait behind everything else the reactor read in that
        turn (in C{bench.failover}, the dead master's pipes), then one more
        C{epoll_wait}.
        """
        if self.validated:
            socket = idle_socket(self.transport)
            if socket is not None:
                send_direct(socket, message)
                return
        super()._send(message)

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
    #: the connection class (C{bench.failover} swaps in one without direct sends)
    connection: type[_LocatorConnection] = _LocatorConnection

    def buildProtocol(self, addr: object) -> _LocatorConnection:
        protocol = self.connection(self.clock, self.max_message_size)
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
        hedging: bool = True,
        hedge_policy: Optional[HedgePolicy] = None,
        hedge_budget: Optional[HedgeBudget] = None,
        loss_notice_delay: float = 0.0,
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
            defaults to L{locator_retry_policy} for this many replicas (with
            one, not even the first reconnection is at once).
        @param encoding: the encoding of request parameters; defaults to the
            locator proxy's (1.1 unless it says C{-e 1.0}).
        @param tls_options: client TLS settings, needed for C{ssl} endpoints.
        @param hedging: send a request that is slow to be answered to the
            next replica too (see L{gridreg.client.hedging}).
        @param hedge_policy: when to hedge; defaults to L{HedgePolicy}().
        @param hedge_budget: how often; defaults to L{HedgeBudget}().
        @param loss_notice_delay: seconds by which the loss of the
            connection is acted on late (L{gridreg.client.late_loss}): for a
            client of one replica inside a server that has more urgent work
            at that loss (a slave's client of its master); 0 for clients
            that fail over.
        @raise ValueError: the proxy has no endpoint this client can dial.
        """
        proxy = proxy_from_string(locator) if isinstance(locator, str) else locator
        self.reactor = reactor
        self.locator = proxy
        self.cache_timeout = cache_timeout
        self.request_timeout = request_timeout
        self.encoding = encoding or proxy.encoding
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
        self.retry_policy = retry_policy or locator_retry_policy(replicas=len(endpoints))
        self.hedging = hedging and len(endpoints) > 1
        self.hedge_policy = hedge_policy or HedgePolicy()
        self.hedge_budget = hedge_budget or HedgeBudget()
        #: requests sent a second time, to another replica
        self.hedges = 0
        self._factory = _LocatorConnectionFactory(reactor)
        #: connections to replicas other than the ClientService's, by index
        self._spares: dict[int, _LocatorConnection] = {}
        #: spares being dialled: who waits for them, and the attempts
        self._dialling: dict[int, list[Deferred[_LocatorConnection]]] = {}
        self._attempts: dict[int, Deferred[Any]] = {}
        self.max_attempts = max_attempts or 2 * len(endpoints)
        self._service = QuietClientService(
            (
                LateLossEndpoint(self.failover, reactor, loss_notice_delay)
                if loss_notice_delay > 0
                else self.failover
            ),
            self._factory,
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
        # a replica's loss (a failover) must not pay for first-time interface look-ups
        warm_loss_path(late_loss_protocol)
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        """Close the locator connection gracefully; fires once it is closed."""
        super().stopService()
        self._stopping = True
        if self._live is not None and self._live.connected:
            self._live.close()
        self._live = None
        spares, self._spares = self._spares, {}
        for spare in spares.values():
            spare.close()
        attempts, self._attempts = self._attempts, {}
        for attempt in attempts.values():
            attempt.cancel()
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
        spare = self._spares.pop(protocol.endpoint_index, None)
        if spare is not None:  # the ClientService's connection reaches it now
            self._retire(spare)
        protocol.when_lost().addCallback(lambda _: self._lost(protocol))
        self.log.info(
            "Connected to the locator at {endpoint}", endpoint=repr(self.failover.current)
        )
        # Not now: this runs inside the ClientService's state transition,
        # which a callback making a request would re-enter.
        self.reactor.callLater(0, self._notify_connected, protocol)

    def _notify_connected(self, protocol: _LocatorConnection) -> None:
        if self.hedging and protocol.usable and not self._stopping:
            # a hedge should not wait for a TCP handshake and a validation
            warm = self._spare(self._next_index(protocol.endpoint_index))
            if warm is not None:
                warm.addErrback(lambda _: None)  # _spare_failed logged it
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
            protocol = self._preferred()
            if protocol is None:
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
                return await self._exchange(protocol, operation, mode, params)
            except TRANSPORT_FAILURES as e:
                attempts = self._failed_attempt(operation, attempts, e)

    def _exchange(
        self, first: _LocatorConnection, operation: str, mode: OperationMode, params: bytes
    ) -> Deferred[InputStream]:
        """
        One attempt: send the request on C{first}; if it is unanswered after
        the hedge delay, send it once more to the next replica. Fires with
        the first answer (a reply or a user exception), or with a transport
        failure once every copy has failed. Connections that fail are
        condemned; a connection that answers is no longer suspect.
        """
        result: Deferred[InputStream] = Deferred()
        pending: list[_LocatorConnection] = []
        self.hedge_budget.request()

        def send(protocol: _LocatorConnection) -> None:
            started = self.reactor.seconds()
            pending.append(protocol)
            d = protocol.call(
                self.locator.identity,
                operation,
                mode,
                params,
                facet=self.locator.facet,
                encoding=self.encoding,
                timeout=self.request_timeout,
            )
            d.addBoth(settled, protocol, started)

        def settled(outcome: Any, protocol: _LocatorConnection, started: float) -> None:
            pending.remove(protocol)
            transport_failure = isinstance(outcome, Failure) and outcome.check(*TRANSPORT_FAILURES)
            if transport_failure:
                self._condemn(protocol)
            else:
                protocol.latency.add(self.reactor.seconds() - started)
                protocol.suspect = False
                if protocol.retiring and not protocol.in_flight:
                    protocol.close()
            if result.called:
                return
            if transport_failure and pending:
                return  # the other copy may still be answered
            if timer is not None and timer.active():
                timer.cancel()
            first.held_hedges.discard(hedge)
            for overtaken in pending:
                self._suspect(overtaken, operation)
            result.callback(outcome)  # a Failure errbacks

        def hedge() -> None:
            if result.called or not pending:
                return
            index = self._next_index(first.endpoint_index)
            if index is None or self._stopping:
                return
            if not (first.suspect or self.hedge_budget.spend()):
                first.held_hedges.add(hedge)
                return
            self.hedges += 1
            self.log.debug(
                "Hedging {operation} to locator replica {index}",
                operation=operation,
                index=index,
            )
            spare = self._spare(index)
            assert spare is not None

            def hedged(protocol: _LocatorConnection) -> None:
                if not result.called and protocol.usable and pending:
                    send(protocol)

            spare.addCallbacks(hedged, lambda _: None)  # _spare_failed logged it

        def due() -> None:
            # The reactor runs due timers before it reads the sockets: after
            # a stall of this process the answer may be waiting unread, so
            # look once more after the next read.
            self.reactor.callLater(0, hedge)

        timer = None
        if self.hedging:
            timer = self.reactor.callLater(self.hedge_policy.delay(first.latency), due)
        send(first)
        return result

    def _suspect(self, protocol: _LocatorConnection, operation: str) -> None:
        """
        C{protocol} was overtaken by a hedge: skip it until it answers, and
        send the hedges the budget held back for its other requests now.
        """
        if protocol.suspect:
            return
        protocol.suspect = True
        self.log.info(
            "Locator replica {index} was overtaken by a hedged {operation}: suspect until "
            "it answers",
            index=protocol.endpoint_index,
            operation=operation,
        )
        held, protocol.held_hedges = protocol.held_hedges, set()
        for hedge in held:
            self.reactor.callLater(0, hedge)

    def _next_index(self, index: int) -> Optional[int]:
        """The replica after C{index} whose connection is not suspect, if any."""
        count = len(self.failover.endpoints)
        live = self._live
        for step in range(1, count):
            candidate = (index + step) % count
            if live is not None and live.endpoint_index == candidate and live.suspect:
                continue
            spare = self._spares.get(candidate)
            if spare is not None and spare.suspect:
                continue
            return candidate
        return None

    def _preferred(self) -> Optional[_LocatorConnection]:
        """
        Where a request can go at once: the ClientService's connection if
        it is up and not suspect; else a spare to the next replica (so a
        request waits neither for the reconnection after a replica died nor
        for a suspect one); C{None} if neither is there.
        """
        live = self._live
        if live is None:
            return None
        if live.usable and not live.suspect:
            return live
        # a lost connection is being replaced already: dial no spare for it
        return self._usable_spare(live.endpoint_index, dial=live.usable)

    def _usable_spare(self, index: int, dial: bool = True) -> Optional[_LocatorConnection]:
        """
        A connected, unsuspected spare to a replica after C{index}, if there
        is one; if there is none yet, one is dialled for later requests
        (with C{dial}).
        """
        candidate = self._next_index(index)
        if candidate is None:
            return None
        spare = self._spares.get(candidate)
        if spare is not None and spare.usable:
            return spare
        if not (dial and self.hedging):
            return None
        dialled = self._spare(candidate)
        if dialled is not None:
            dialled.addErrback(lambda _: None)  # _spare_failed logged it
        return None

    def _spare(self, index: Optional[int]) -> Optional[Deferred[_LocatorConnection]]:
        """
        A connection to replica C{index} beside the ClientService's: the
        ClientService's own if it reaches that replica, a kept spare, or a
        new one; C{None} when there is no such replica or we are stopping.
        """
        if index is None or self._stopping:
            return None
        live = self._live
        if live is not None and live.usable and live.endpoint_index == index:
            return succeed(live)
        spare = self._spares.get(index)
        if spare is not None:
            if spare.usable:
                return succeed(spare)
            del self._spares[index]
        waiter: Deferred[_LocatorConnection] = Deferred()
        waiters = self._dialling.get(index)
        if waiters is None:
            waiters = self._dialling[index] = []
            attempt = self.failover.endpoints[index].connect(self._factory)
            self._attempts[index] = attempt
            attempt.addCallbacks(
                self._spare_made,
                self._spare_failed,
                callbackArgs=(index,),
                errbackArgs=(index,),
            )
        waiters.append(waiter)
        return waiter

    def _spare_made(self, protocol: _LocatorConnection, index: int) -> None:
        self._attempts.pop(index, None)
        waiters = self._dialling.pop(index, [])
        protocol.endpoint_index = index
        self._spares[index] = protocol
        protocol.when_lost().addCallback(lambda _: self._spare_lost(index, protocol))
        for waiter in waiters:
            waiter.callback(protocol)
        live = self._live
        if live is not None and live.usable and live.endpoint_index == index:
            self._spares.pop(index, None)  # the ClientService got there meanwhile
            self._retire(protocol)

    def _spare_failed(self, failure: Failure, index: int) -> None:
        self._attempts.pop(index, None)
        waiters = self._dialling.pop(index, [])
        self.log.info(
            "No spare locator connection to replica {index}: {reason}",
            index=index,
            reason=failure.getErrorMessage(),
        )
        for waiter in waiters:
            waiter.errback(failure)

    def _spare_lost(self, index: int, protocol: _LocatorConnection) -> None:
        if self._spares.get(index) is protocol:
            del self._spares[index]

    def _retire(self, protocol: _LocatorConnection) -> None:
        """Close a spare that is no longer needed, once it has nothing in flight."""
        if protocol.in_flight:
            protocol.retiring = True
        else:
            protocol.close()

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
