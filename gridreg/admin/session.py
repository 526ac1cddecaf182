# -*- test-case-name: tests.test_admin -*-
"""
An admin session with one registry replica, as C{gridadmin} opens it.

The admin tool is configured like any Ice client, with C{Ice.Default.Locator}
(plus the C{IceSSL.*} files of an admin certificate). It asks the locator
for C{<instance>/InternalRegistry-Master} (or C{-<replica>}), dials the
internal endpoints of that proxy over mutual TLS, checking that the server
is that replica, and says C{Hello} as an admin. Every call after that is
bounded by the session's timeout, so a hung registry costs the operator a
few seconds, not a hung terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import attrs

from twisted.internet.defer import Deferred, DeferredList, TimeoutError
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.client.locator import LocatorClient
from gridreg.config.properties import Properties
from gridreg.endpoints import client_endpoint, with_transport
from gridreg.ice.exceptions import ObjectNotFoundException
from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.protocol.commands import (
    PROTOCOL_VERSION,
    AdminAdapterRemove,
    AdminApplicationAdd,
    AdminApplicationRemove,
    AdminDescribe,
    AdminList,
    AdminObjectAdd,
    AdminObjectRemove,
    AdminPing,
    Hello,
)
from gridreg.protocol.chunking import new_transfer_id, send_blob
from gridreg.protocol.errors import (
    ApplicationError,
    NodeError,
    NodeUnreachableError,
    NotAuthorizedError,
    NotFoundError,
    NotMasterError,
    QuorumError,
    RegistryUserError,
    TransferError,
)
from gridreg.protocol.node_commands import AdminNodeControl, AdminServerControl
from gridreg.protocol.prompt import TURN, PromptWriter, batch_tls_turns
from gridreg.admin.calls import PAGE_LIMIT, AdminCalls  # noqa: F401 (re-exported)
from gridreg.admin.common import (  # noqa: F401 (re-exported)
    ADMIN_NAME_PROPERTY,
    MASTER,
    AdminConfigError,
    AdminSessionError,
    AdminUnreachableError,
    admin_name,
    instance_name,
    reason,
    tls_settings,
)
from gridreg.tls import (
    ADMIN,
    REGISTRY,
    PeerNotAuthorized,
    TLSConfig,
    authorize,
    client_tls_options,
    dns_name,
    peer_identity,
)

__all__ = [
    "MASTER",
    "AdminConfigError",
    "AdminSession",
    "AdminSessionError",
    "AdminUnreachableError",
    "open_admin_session",
]


#: errors the registry answers with; they pass through to the caller as they are
REFUSALS = (
    QuorumError,
    NotAuthorizedError,
    NotFoundError,
    NotMasterError,
    RegistryUserError,
    ApplicationError,
    TransferError,
    NodeError,
    NodeUnreachableError,
)


class _AdminProtocol(PromptWriter, amp.AMP):
    """
    An AMP client that can say when its connection is gone. The calls made
    in one reactor turn reach the socket at its end, not a turn later
    (L{gridreg.protocol.prompt}).
    """

    prompt = TURN

    def __init__(self, clock: Any = None) -> None:
        super().__init__()
        self.prompt_clock = clock
        self.gone = False
        self._lost: list[Deferred[None]] = []

    def when_lost(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.gone:
            d.callback(None)
        else:
            self._lost.append(d)
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.gone = True
        super().connectionLost(reason)
        waiters, self._lost = self._lost, []
        for d in waiters:
            d.callback(None)


class AdminSession(AdminCalls):
    """
    Typed admin calls (L{AdminCalls}) over one AMP connection to one replica.

    @ivar replica: the name of the replica answering.
    @ivar instance: the grid's instance name.
    @ivar is_master: whether that replica is the master (only it accepts writes).
    """

    def __init__(
        self,
        protocol: amp.AMP,
        clock: Any,
        timeout: float,
        replica: str,
        instance: str,
        is_master: bool,
    ) -> None:
        self.protocol = protocol
        self.clock = clock
        self.timeout = timeout
        self.replica = replica
        self.instance = instance
        self.is_master = is_master

    def _call_deferred(self, command: type[amp.Command], **arguments: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self.call(command, **arguments))

    async def call(self, command: type[amp.Command], **arguments: Any) -> dict[str, Any]:
        """
        Send C{command}; a registry refusal raises its declared error, no
        answer in time raises L{AdminUnreachableError}.
        """
        try:
            d = self.protocol.callRemote(command, **arguments)
        except amp.TooLong as e:
            raise AdminConfigError(f"a {command.__name__} argument is too large to send ({e})")
        d.addTimeout(self.timeout, self.clock)
        try:
            result: dict[str, Any] = await d
        except REFUSALS:
            raise
        except TimeoutError:
            raise AdminUnreachableError(
                f"registry replica `{self.replica}' did not answer within {self.timeout:g}s"
            ) from None
        except Exception as e:
            raise AdminUnreachableError(
                f"the connection to registry replica `{self.replica}' failed: {_reason(e)}"
            ) from None
        return result

    # -- applications ----------------------------------------------------------

    async def upload_and_add_application(self, xml: str, update: bool) -> tuple[str, int]:
        """Upload a descriptor in chunks, then deploy it; returns (name, serial)."""
        transfer = new_transfer_id("upload")
        await send_blob(self._call_deferred, transfer, xml.encode("utf-8"))
        result = await self.call(AdminApplicationAdd, transfer=transfer, update=update)
        return result["name"], result["serial"]

    async def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        return await self.call(_COMMANDS[command], **arguments)

    def is_alive(self) -> bool:
        """Whether the connection is still up (a script reconnects when it is not)."""
        return not getattr(self.protocol, "gone", False)

    def close(self) -> Deferred[None]:
        """Close the connection; fires once it is closed."""
        transport = self.protocol.transport
        if isinstance(self.protocol, _AdminProtocol):
            lost = self.protocol.when_lost()
        else:
            lost = Deferred()
            lost.callback(None)
        if transport is not None:
            transport.loseConnection()
        return lost.addTimeout(self.timeout, self.clock).addErrback(lambda _: None)


_reason = reason

_COMMANDS: dict[str, type[amp.Command]] = {
    command.__name__: command
    for command in (
        AdminAdapterRemove,
        AdminApplicationRemove,
        AdminDescribe,
        AdminList,
        AdminObjectAdd,
        AdminObjectRemove,
        AdminPing,
        AdminNodeControl,
        AdminServerControl,
    )
}


def dial_endpoints(
    reactor: Any,
    proxy: Proxy,
    replica: str,
    tls: Optional[TLSConfig],
    timeout: float,
) -> list[tuple[str, IStreamClientEndpoint]]:
    """The (address, endpoint) pairs to try for a replica's internal proxy, in order."""
    options = client_tls_options(tls, dns_name(REGISTRY, replica)) if tls is not None else None
    found = []
    for endpoint in proxy.endpoints:
        if not isinstance(endpoint, TcpEndpoint):
            continue
        secure = with_transport(endpoint, options is not None)
        # an internal AMP session: each call leaves in the turn it is made
        dial = client_endpoint(reactor, secure, options, timeout_cap=timeout, buffered=False)
        found.append((f"{endpoint.host or '127.0.0.1'}:{endpoint.port}", dial))
    return found


async def discover(
    reactor: Any, properties: Properties, replica: Optional[str], timeout: float
) -> Proxy:
    """
    The proxy of C{InternalRegistry-<replica>} (the master's by default),
    asked of every replica C{Ice.Default.Locator} lists at once: their
    endpoints are merged, in the locator's order, because right after a
    promotion some replicas still name the old master.
    """
    name = replica or MASTER
    try:
        instance = instance_name(properties)
        locator = LocatorClient.from_properties(reactor, properties)
    except ValueError as e:  # PropertyError too
        raise AdminConfigError(str(e)) from None
    identity = Identity(f"InternalRegistry-{name}", instance)
    clients = [
        LocatorClient(
            reactor,
            attrs.evolve(locator.locator, endpoints=(endpoint,)),
            cache_timeout=0,
            max_attempts=1,
            request_timeout=locator.request_timeout,
        )
        for endpoint in locator.locator.endpoints
    ]
    for client in clients:
        client.startService()
    try:
        answers = await DeferredList(
            [c.find_object_by_id(identity).addTimeout(timeout, reactor) for c in clients],
            consumeErrors=True,
        )
    finally:
        await DeferredList([c.stopService() for c in clients], consumeErrors=True)
    found: list[Proxy] = [answer for ok, answer in answers if ok]
    if found:
        endpoints = [e for proxy in found for e in proxy.endpoints]
        unique = [e for i, e in enumerate(endpoints) if e not in endpoints[:i]]
        return attrs.evolve(found[0], endpoints=tuple(unique))
    failures = [answer for ok, answer in answers if not ok]
    if any(f.check(ObjectNotFoundException) for f in failures):
        if replica is None:
            raise AdminUnreachableError(
                f"the registry of `{instance}' has no master now (no {instance}/InternalRegistry-"
                f"{MASTER}); use --replica NAME for read-only access to a slave"
            )
        raise NotFoundError(f"the registry of `{instance}' has no replica `{replica}'")
    last = failures[-1].value if failures else None
    raise AdminUnreachableError(
        f"no registry replica answered at {properties.get('Ice.Default.Locator')}: "
        f"{_reason(getattr(last, 'last_error', None) or last)}"
    )


async def open_admin_session(
    reactor: Any,
    properties: Properties,
    replica: Optional[str],
    timeout: float,
    *,
    warn: Optional[Callable[[str], None]] = None,
) -> AdminSession:
    """
    Find a replica through C{Ice.Default.Locator}, connect to its internal
    endpoint and open an admin session.

    @param replica: the replica to administer; C{None} for the master.
    @param timeout: seconds allowed for discovery, connecting, and each call.
    @param warn: told about insecure settings (the CLI prints them).
    @raise AdminConfigError: bad properties or TLS files, or no TLS without
        C{GridReg.Internal.Insecure}.
    @raise AdminUnreachableError: no replica answered, or the one asked for
        could not be reached.
    @raise NotFoundError: there is no such replica.
    @raise NotAuthorizedError: the registry refused our admin session.
    """
    tls, user = tls_settings(properties, warn or _log_warning)
    name = replica or MASTER
    proxy = await discover(reactor, properties, replica, timeout)
    candidates = dial_endpoints(reactor, proxy, name, tls, timeout)
    if not candidates:
        raise AdminUnreachableError(f"registry replica `{name}' publishes no tcp internal endpoint")
    failures = []
    for address, endpoint in candidates:
        try:
            return await _hello(reactor, endpoint, name, user, timeout, tls is not None)
        except AdminUnreachableError as e:
            failures.append(f"{address}: {e}")
    hint = "; use --replica NAME for read-only access to a slave" if replica is None else ""
    raise AdminUnreachableError(
        f"cannot reach registry replica `{name}' ({'; '.join(failures)}){hint}"
    )


async def _hello(
    reactor: Any,
    endpoint: IStreamClientEndpoint,
    replica: str,
    user: str,
    timeout: float,
    check_peer: bool,
) -> AdminSession:
    protocol = _AdminProtocol(reactor)
    try:
        await connectProtocol(endpoint, protocol).addTimeout(timeout, reactor)
    except TimeoutError:
        raise AdminUnreachableError(f"no connection within {timeout:g}s") from None
    except Exception as e:
        raise AdminUnreachableError(_reason(e)) from None
    batch_tls_turns(protocol.transport, reactor)  # many calls in one turn: one TLS record
    session = AdminSession(protocol, reactor, timeout, replica, "", False)
    try:
        hello = await session.call(Hello, version=PROTOCOL_VERSION, role=ADMIN, name=user)
        if check_peer:
            # the handshake checked the DNS name, which folds case; this is the exact name
            try:
                authorize(peer_identity(protocol.transport), REGISTRY, replica)
            except PeerNotAuthorized as e:
                raise AdminUnreachableError(f"not the replica we asked for: {e}") from None
    except BaseException:
        protocol.transport.abortConnection()  # type: ignore[union-attr]
        raise
    session.instance = hello["instance"]
    session.replica = hello["replica"]
    session.is_master = hello["master"]
    return session


_log = Logger(namespace="gridreg.admin")


def _log_warning(message: str) -> None:
    _log.warn("{message}", message=message)
