# -*- test-case-name: tests.test_glacier2_managers -*-
"""
IceGrid's Glacier2 session managers: a C{glacier2router} configured with
C{Glacier2.SessionManager=<instance>/SessionManager} (or
C{AdminSessionManager}, C{AdminSessionManager-<replica>}) has its router
sessions open IceGrid sessions here, the same session servants as
C{Registry.createSession} and C{createAdminSession} (L{IceSessions}).

What IceGrid 3.7.8 does, observed with C{icegridregistry} and
C{glacier2router} on loopback, and what this module copies:

  - The managers exist only when C{IceGrid.Registry.SessionManager.Endpoints}
    / C{AdminSessionManager.Endpoints} are set, each pair on its own adapter;
    the sessions (and an admin session's admin object) are served and
    published on that adapter's endpoints, not the client endpoints.
  - C{create} does not verify anything: the router has (its
    C{Glacier2.PermissionsVerifier}). The SSL managers take the user from
    the subject of the first certificate in the C{SSLInfo} (none: C{""}).
  - A slave serves C{AdminSessionManager-<name>} (read-only admin sessions)
    and listens on its C{SessionManager.Endpoints} without serving anything
    there: client sessions are the master's.
  - After creating the session, the registry asks the router's
    C{SessionControl} for C{getSessionTimeout}: the session ends that many
    seconds after its last C{keepAlive} (0, or no control: never); the
    router destroys it when its own session ends. Neither the connection
    nor the registry's C{SessionTimeout} ends it, and the registry never
    calls C{SessionControl.destroy}.
  - With C{SessionFilters} (C{AdminSessionFilters}) on, the registry first
    adds to the control's C{identities()}: C{<instance>/Query} and the
    session (admin sessions: Query, the admin object, the session); each
    allocation adds, and each release removes, the identities C{[""]} and
    the object's (an empty identity comes first, as in 3.7.8).
  - A failed call to the control fails C{create} with
    C{CannotCreateSessionException("internal server error")}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import CannotCreateSessionException
from gridreg.ice.messages import Request
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.server import IceServerFactory
from gridreg.ice.types import Endpoint, Identity, OperationMode, Proxy
from gridreg.registry.discovery import (
    MASTER,
    SESSION_MANAGER,
    SSL_SESSION_MANAGER,
    session_manager_identities,
)
from gridreg.registry.ice_sessions import (
    AdminSessionServant,
    ClientSessionServant,
    IceSessions,
    SessionServant,
)

if TYPE_CHECKING:
    from gridreg.registry.config import RegistryConfig

#: IceGrid's reason when the router's session control fails
INTERNAL_ERROR = "internal server error"
#: the identity IceGrid 3.7.8 sends first with each allocated object's
NO_IDENTITY = Identity("", "")


class SessionControl:
    """
    The router's C{Glacier2::SessionControl} for one session, called back
    with gridreg's Ice client (one connection per call).
    """

    def __init__(self, reactor: Any, proxy: Proxy) -> None:
        self.reactor = reactor
        self.proxy = proxy
        self._identity_set: Optional[Proxy] = None

    def _call(
        self, target: Proxy, operation: str, mode: OperationMode, params: bytes = b""
    ) -> Deferred[InputStream]:
        from gridreg.registry.remote import call_direct  # its Ice client, once a router asks

        return call_direct(self.reactor, target.endpoints, target, operation, mode, params)

    def session_timeout(self) -> Deferred[int]:
        return self._call(self.proxy, "getSessionTimeout", OperationMode.IDEMPOTENT).addCallback(
            lambda result: result.read_int()
        )

    def _identities(self) -> Deferred[Proxy]:
        if self._identity_set is not None:
            return succeed(self._identity_set)

        def got(result: InputStream) -> Proxy:
            proxy = result.read_proxy()
            if proxy is None:  # IceGrid 3.7.8 fails too (a NullHandleException)
                raise ValueError("the session control has no identity set")
            self._identity_set = proxy
            return proxy

        return self._call(self.proxy, "identities", OperationMode.NORMAL).addCallback(got)

    def change_identities(self, operation: str, identities: list[Identity]) -> Deferred[None]:
        """C{add} or C{remove} C{identities} on the router's identity filter."""
        out = OutputStream()
        out.write_size(len(identities))
        for identity in identities:
            out.write_identity(identity)
        params = out.getvalue()

        def change(target: Proxy) -> Deferred[None]:
            return self._call(target, operation, OperationMode.IDEMPOTENT, params).addCallback(
                lambda _: None
            )

        return self._identities().addCallback(change)


class _Routed:
    """What a session created through Glacier2 adds: the router's control."""

    control: Optional[SessionControl] = None
    filters = False


class RoutedClientSession(_Routed, ClientSessionServant):
    """A client session of a router: allocations also open the router's filter."""

    log = Logger()

    def _filter(self, operation: str, identity: Identity) -> Deferred[None]:
        control = self.control
        if not self.filters or control is None:
            return succeed(None)
        return control.change_identities(operation, [NO_IDENTITY, identity])

    def _allowed(self, payload: bytes, request: Request) -> Deferred[bytes]:
        proxy = InputStream(payload, request.encoding).read_proxy()
        if proxy is None:
            return succeed(payload)
        return self._filter("add", proxy.identity).addCallbacks(
            lambda _: payload, self._filter_failed, errbackArgs=(payload,)
        )

    def _filter_failed(self, failure: Failure, payload: bytes) -> bytes:
        """The object is granted anyway: the router refuses calls to it, the holder sees why."""
        self.log.failure(
            "Updating the router's filters of session `{user}' failed", failure, user=self.user
        )
        return payload

    @operation("allocateObjectById")
    def routed_allocate_by_id(self, request: Request, params: InputStream) -> Deferred[bytes]:
        d = maybeDeferred(ClientSessionServant.allocate_by_id, self, request, params)
        return d.addCallback(self._allowed, request)

    @operation("allocateObjectByType")
    def routed_allocate_by_type(self, request: Request, params: InputStream) -> Deferred[bytes]:
        d = maybeDeferred(ClientSessionServant.allocate_by_type, self, request, params)
        return d.addCallback(self._allowed, request)

    @operation("releaseObject")
    def routed_release_object(self, request: Request, params: InputStream) -> Deferred[bytes]:
        identity = InputStream(request.params, request.encoding).read_identity()
        d = maybeDeferred(ClientSessionServant.release_object, self, request, params)
        return d.addCallback(
            lambda payload: self._filter("remove", identity).addCallbacks(
                lambda _: payload, self._filter_failed, errbackArgs=(payload,)
            )
        )


class RoutedAdminSession(_Routed, AdminSessionServant):
    """An admin session of a router."""


@attrs.define
class ManagerAdapter:
    """
    One session manager adapter: what it serves, where it listens and
    (once listening) the endpoints its sessions are published on.
    """

    kind: str
    adapter: ObjectAdapter
    endpoints: tuple[Endpoint, ...]
    #: the adapter's PublishedEndpoints, when set
    given: Optional[tuple[Endpoint, ...]] = None
    published: tuple[Endpoint, ...] = ()


class _Manager(Servant):
    """What both session managers share: opening the session and taking up the control."""

    log = Logger()

    def __init__(
        self, managers: "Glacier2Managers", where: ManagerAdapter, admin: bool, filters: bool
    ) -> None:
        self.managers = managers
        self.where = where
        self.admin = admin
        self.filters = filters

    def open(self, request: Request, user: str, control: Optional[Proxy]) -> Deferred[bytes]:
        sessions = self.managers.sessions
        cls: type[SessionServant] = RoutedAdminSession if self.admin else RoutedClientSession
        proxy = sessions._open(
            self.admin, user, None, cls, self.where.adapter, self.where.published
        )
        session = sessions.sessions[proxy.identity]
        assert isinstance(session, _Routed)
        session.filters = self.filters
        session.timeout = 0  # until the router says otherwise; without a control, never
        if control is None:
            return succeed(_proxy_payload(request, proxy))
        session.control = SessionControl(self.managers.reactor, control)
        return Deferred.fromCoroutine(self._take_control(request, session, proxy))

    async def _take_control(self, request: Request, session: Any, proxy: Proxy) -> bytes:
        control: SessionControl = session.control
        try:
            if self.filters:
                allowed = [Identity("Query", self.managers.instance)]
                if isinstance(session, AdminSessionServant):
                    allowed.append(session.admin_identity)
                await control.change_identities("add", [*allowed, proxy.identity])
            session.timeout = await control.session_timeout()
        except Exception:
            self.log.failure(
                "The router's session control of `{user}' failed", Failure(), user=session.user
            )
            await self.managers.sessions.destroy(session, "destroyed")
            raise CannotCreateSessionException(INTERNAL_ERROR) from None
        return _proxy_payload(request, proxy)


def _proxy_payload(request: Request, proxy: Proxy) -> bytes:
    out = OutputStream(request.encoding)
    out.write_proxy(proxy)
    return out.getvalue()


class SessionManagerServant(_Manager):
    """C{Glacier2::SessionManager}: C{create(userId, control)}."""

    type_id = SESSION_MANAGER

    @operation("create")
    def create(self, request: Request, params: InputStream) -> Deferred[bytes]:
        user = params.read_string()
        control = params.read_proxy()
        return self.open(request, user, control)


class SSLSessionManagerServant(_Manager):
    """C{Glacier2::SSLSessionManager}: C{create(SSLInfo, control)}; the user is the subject DN."""

    type_id = SSL_SESSION_MANAGER

    @operation("create")
    def create(self, request: Request, params: InputStream) -> Deferred[bytes]:
        for _ in range(2):  # remote and local host and port
            params.read_string()
            params.read_int()
        params.read_string()  # cipher
        certs = params.read_string_seq()
        control = params.read_proxy()
        return self.open(request, subject_of(certs[0]) if certs else "", control)


def subject_of(pem: str) -> str:
    """A certificate's subject DN, as the secure Registry.create*Session name users."""
    from OpenSSL import crypto

    try:
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, pem.encode("ascii"))
    except (crypto.Error, UnicodeEncodeError):
        raise CannotCreateSessionException("invalid certificate") from None
    return ",".join(
        f"{k.decode()}={v.decode()}" for k, v in reversed(cert.get_subject().get_components())
    )


class ManagerFactory(IceServerFactory):
    """
    A session manager adapter's connections: accepted while the client
    endpoints accept theirs (a slave that has not synced, or a fenced master,
    serves no routers either).
    """

    def __init__(self, client_factory: IceServerFactory, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_factory = client_factory

    def buildProtocol(self, addr: Any) -> Any:
        if not self.client_factory.accepting:
            return None
        return super().buildProtocol(addr)


class Glacier2Managers:
    """
    The session manager adapters of one replica, as its configuration asks:
    none, C{SessionManager.Endpoints}'s, C{AdminSessionManager.Endpoints}'s, or both.
    """

    log = Logger()

    def __init__(self, reactor: Any, config: "RegistryConfig", sessions: IceSessions) -> None:
        self.reactor = reactor
        self.config = config
        self.sessions = sessions
        self.instance = config.instance_name
        self.adapters: list[ManagerAdapter] = []
        if config.session_manager_endpoints:
            where = ManagerAdapter(
                "session_manager",
                ObjectAdapter("SessionManager"),
                config.session_manager_endpoints,
                config.session_manager_published,
            )
            self._add(where, False, config.session_filters)
        if config.admin_session_manager_endpoints:
            where = ManagerAdapter(
                "admin_session_manager",
                ObjectAdapter("AdminSessionManager"),
                config.admin_session_manager_endpoints,
                config.admin_session_manager_published,
            )
            self._add(where, True, config.admin_session_filters)

    def _add(self, where: ManagerAdapter, admin: bool, filters: bool) -> None:
        self.adapters.append(where)
        served = {
            SESSION_MANAGER: SessionManagerServant,
            SSL_SESSION_MANAGER: SSLSessionManagerServant,
        }
        for identity, type_id in session_manager_identities(
            self.instance, self.config.replica_name, admin
        ):
            where.adapter.add(identity, served[type_id](self, where, admin, filters))

    def warn(self) -> None:
        """IceGrid's start-up warnings, one per configured manager adapter."""
        for where in self.adapters:
            admin = where.kind.startswith("admin")
            filters = self.config.admin_session_filters if admin else self.config.session_filters
            self.log.warn(
                "{what} endpoints `IceGrid.Registry.{name}.Endpoints' enabled{filters}",
                what="administrative session manager" if admin else "session manager",
                name="AdminSessionManager" if admin else "SessionManager",
                filters="" if filters else " (with Glacier2 filters disabled)",
            )

    def published(self, kind: str) -> tuple[Endpoint, ...]:
        for where in self.adapters:
            if where.kind == kind:
                return where.published
        return ()


__all__ = [
    "Glacier2Managers",
    "ManagerAdapter",
    "ManagerFactory",
    "MASTER",
    "RoutedAdminSession",
    "RoutedClientSession",
    "SessionControl",
    "SessionManagerServant",
    "SSLSessionManagerServant",
]
