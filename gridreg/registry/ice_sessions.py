# -*- test-case-name: tests.test_ice_admin -*-
"""
IceGrid's Ice sessions: C{IceGrid::Registry} creates them, and they are
objects on the client endpoints under C{<instance>/<UUID>}, as IceGrid's are.

A session lives while the connection that created it is open and heard
from (Ice ACM heartbeats count, as for IceGrid 3.7's sessions), or until
C{IceGrid.Registry.SessionTimeout} after its last C{keepAlive}; it ends when
that connection closes, when destroyed, or on expiry. An ending session
gives back what it holds: the update lock, its admin object, and (client
sessions) its allocations.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    AccessDeniedException,
    AllocationException,
    ObjectNotRegisteredException,
    PermissionDeniedException,
    RegistryNotExistException,
)
from gridreg.ice.messages import Request
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.types import Identity, Proxy
from gridreg.registry.file_iterators import SessionFiles
from gridreg.registry.verifiers import (
    CertificateVerifier,
    PasswordVerifier,
    SSLInfo,
    not_configured,
)

if TYPE_CHECKING:
    from gridreg.registry.admin_model import AdminModel

TRACE = "IceGrid.Registry.Trace.Session"
#: IceGrid's reason for a client session asked of a slave (RegistryI.cpp)
SLAVE_CLIENT_SESSION = "client session creation is only allowed with the master registry."


def _empty(request: Request) -> bytes:
    return b""


def _proxy(request: Request, proxy: Optional[Proxy]) -> bytes:
    out = OutputStream(request.encoding)
    out.write_proxy(proxy)
    return out.getvalue()


class SessionServant(Servant):
    """What client and admin sessions share: keepAlive and destroy."""

    log = Logger()
    kind = "session"
    #: where the session is served and published, when not on the client endpoints
    #: (sessions created through a Glacier2 session manager)
    adapter: Optional[ObjectAdapter] = None
    endpoints: Optional[tuple[Any, ...]] = None
    #: seconds without keepAlive before the session ends; None: the registry's
    #: SessionTimeout, 0: never
    timeout: Optional[float] = None

    def __init__(self, sessions: "IceSessions", identity: Identity, user: str, connection: Any):
        self.sessions = sessions
        self.identity = identity
        self.user = user
        self.connection = connection
        self.last_keepalive = sessions.clock.seconds()
        self.destroyed = False

    @operation("keepAlive", idempotent=True)
    def keep_alive(self, request: Request, params: InputStream) -> bytes:
        self.last_keepalive = self.sessions.clock.seconds()
        if self.sessions.trace > 1:
            self.log.info(
                "[Session] {kind} session `{user}' keep alive",
                kind=self.kind,
                user=self.user,
            )
        return b""

    @operation("destroy")
    def destroy_op(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self.sessions.destroy(self, "destroyed").addCallback(lambda _: b"")

    def released(self) -> Deferred[Any]:
        """Give back what the session holds; subclasses add theirs."""
        return succeed(None)


class ClientSessionServant(SessionServant):
    """C{IceGrid::Session}: allocation of objects, delegated to the registry's allocations."""

    type_id = "::IceGrid::Session"
    type_ids = ("::Glacier2::Session", "::IceGrid::Session")
    kind = "client"
    #: setAllocationTimeout's milliseconds; IceGrid's sessions wait for ever by default
    allocation_timeout = -1

    @property
    def _timeout_seconds(self) -> float:
        return self.allocation_timeout / 1000 if self.allocation_timeout >= 0 else -1

    def _allocations(self) -> Any:
        return getattr(self.sessions.registry, "allocations", None)

    @operation("allocateObjectById")
    def allocate_by_id(self, request: Request, params: InputStream) -> Any:
        """Without allocatable objects, IceGrid 3.7.8 answers ObjectNotRegisteredException."""
        identity = params.read_identity()
        allocations = self._allocations()
        if allocations is None:
            raise ObjectNotRegisteredException(identity)
        d = allocations.allocate_by_id(self.identity, identity, self._timeout_seconds)
        return d.addCallback(lambda proxy: _proxy(request, proxy))

    @operation("allocateObjectByType")
    def allocate_by_type(self, request: Request, params: InputStream) -> Any:
        type_id = params.read_string()
        allocations = self._allocations()
        if allocations is None:
            raise AllocationException(f"no allocatable objects with type `{type_id}' registered")
        d = allocations.allocate_by_type(self.identity, type_id, self._timeout_seconds)
        return d.addCallback(lambda proxy: _proxy(request, proxy))

    @operation("releaseObject")
    def release_object(self, request: Request, params: InputStream) -> Any:
        identity = params.read_identity()
        allocations = self._allocations()
        if allocations is None:
            raise ObjectNotRegisteredException(identity)
        return maybeDeferred(allocations.release, self.identity, identity).addCallback(
            lambda _: b""
        )

    @operation("setAllocationTimeout", idempotent=True)
    def set_allocation_timeout(self, request: Request, params: InputStream) -> bytes:
        self.allocation_timeout = params.read_int()
        return b""

    def released(self) -> Deferred[Any]:
        allocations = self._allocations()
        if allocations is None:
            return succeed(None)
        return maybeDeferred(allocations.release_all, self.identity)


class AdminSessionServant(SessionServant):
    """
    C{IceGrid::AdminSession}: the admin object, the update lock, observers
    (L{gridreg.registry.observers}) and log files
    (L{gridreg.registry.file_iterators}).
    """

    type_id = "::IceGrid::AdminSession"
    type_ids = ("::Glacier2::Session", "::IceGrid::AdminSession")
    kind = "admin"

    def __init__(self, sessions: "IceSessions", identity: Identity, user: str, connection: Any):
        super().__init__(sessions, identity, user, connection)
        self.admin_identity = Identity(str(uuid.uuid4()).upper(), identity.category)
        self.observers: tuple[Any, ...] = ()
        self.file_iterators = SessionFiles(self)

    @property
    def model(self) -> "AdminModel":
        return self.sessions.model

    @operation("getAdmin", idempotent=True)
    def get_admin(self, request: Request, params: InputStream) -> bytes:
        return _proxy(request, self.sessions.proxy_for(self.admin_identity, self))

    @operation("getAdminCallbackTemplate", idempotent=True)
    def get_admin_callback_template(self, request: Request, params: InputStream) -> bytes:
        """Null: gridreg routes no callbacks to servers' admin objects."""
        return _proxy(request, None)

    @operation("setObservers", idempotent=True)
    def set_observers(self, request: Request, params: InputStream) -> bytes:
        """Observer proxies: called over connections of the registry's own."""
        from gridreg.registry.observers import links_by_proxy

        self.observers = tuple(params.read_proxy() for _ in range(5))
        registry = self.sessions.registry
        links = links_by_proxy(self, self.observers, registry.reactor, registry.state)
        self.sessions.observer_hub.subscribe(self, links)
        return b""

    @operation("setObserversByIdentity", idempotent=True, connection=True)
    def set_observers_by_identity(
        self, request: Request, params: InputStream, connection: Any
    ) -> bytes:
        """
        Observers the client serves on this session's connection (bidirectional,
        as the IceGrid GUI registers them): called back over it.
        """
        from gridreg.registry.observers import links_by_identity

        self.observers = tuple(params.read_identity() for _ in range(5))
        connection = connection or self.connection
        if connection is None or not hasattr(connection, "call"):
            return b""
        links = links_by_identity(self, self.observers, connection)
        self.sessions.observer_hub.subscribe(self, links)
        return b""

    @operation("startUpdate")
    def start_update(self, request: Request, params: InputStream) -> bytes:
        serial = self.sessions.lock(self)
        out = OutputStream(request.encoding)
        out.write_int(serial)
        return out.getvalue()

    @operation("finishUpdate")
    def finish_update(self, request: Request, params: InputStream) -> bytes:
        self.sessions.unlock(self)
        return b""

    @operation("getReplicaName", idempotent=True)
    def get_replica_name(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_string(self.sessions.registry.config.replica_name)
        return out.getvalue()

    # -- log files (L{gridreg.registry.file_iterators}) ---------------------------

    @staticmethod
    def _iterator(request: Request, d: Deferred[Proxy]) -> Deferred[bytes]:
        return d.addCallback(lambda proxy: _proxy(request, proxy))

    @operation("openServerLog")
    def open_server_log(self, request: Request, params: InputStream) -> Deferred[bytes]:
        server_id, path, count = params.read_string(), params.read_string(), params.read_int()
        return self._iterator(request, self.file_iterators.server(server_id, path, count))

    def _server_stream(self, request: Request, params: InputStream, name: str) -> Deferred[bytes]:
        server_id, count = params.read_string(), params.read_int()
        return self._iterator(request, self.file_iterators.server(server_id, name, count))

    @operation("openServerStdErr")
    def open_server_stderr(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._server_stream(request, params, "stderr")

    @operation("openServerStdOut")
    def open_server_stdout(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._server_stream(request, params, "stdout")

    def _node_stream(self, request: Request, params: InputStream, name: str) -> Deferred[bytes]:
        node, count = params.read_string(), params.read_int()
        return self._iterator(request, self.file_iterators.node(node, name, count))

    @operation("openNodeStdErr")
    def open_node_stderr(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._node_stream(request, params, "stderr")

    @operation("openNodeStdOut")
    def open_node_stdout(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._node_stream(request, params, "stdout")

    def _registry_stream(
        self, request: Request, params: InputStream, name: str
    ) -> Deferred[bytes]:
        replica, count = params.read_string(), params.read_int()
        return self._iterator(request, self.file_iterators.registry(replica, name, count))

    @operation("openRegistryStdErr")
    def open_registry_stderr(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._registry_stream(request, params, "stderr")

    @operation("openRegistryStdOut")
    def open_registry_stdout(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._registry_stream(request, params, "stdout")

    def released(self) -> Deferred[Any]:
        if self.sessions._observer_hub is not None:
            self.sessions._observer_hub.unsubscribe(self)
        self.sessions.adapter_of(self).remove(self.admin_identity)
        self.file_iterators.close()
        if self.sessions.lock_holder is self:
            self.sessions.lock_holder = None
        return succeed(None)


class IceSessions:
    """Every Ice session of one replica, and the admin update lock."""

    log = Logger()

    def __init__(
        self,
        registry: Any,
        adapter: ObjectAdapter,
        model: "AdminModel",
        timeout: int = 30,
        verifiers: Optional[dict[str, Any]] = None,
    ) -> None:
        """
        @param verifiers: by kind ("", "admin", "ssl", "ssl admin"), the
            L{PasswordVerifier} or L{CertificateVerifier}; a kind left out
            refuses its sessions.
        """
        self.registry = registry
        self.adapter = adapter
        self.model = model
        self.timeout = timeout
        self.clock = registry.reactor
        self.verifiers = verifiers or {}
        self.sessions: dict[Identity, SessionServant] = {}
        self.lock_holder: Optional[AdminSessionServant] = None
        self._reaper: Optional[LoopingCall] = None
        self._observer_hub: Any = None

    @property
    def observer_hub(self) -> Any:
        """The replica's L{ObserverHub}, made when a session first registers observers."""
        if self._observer_hub is None:
            from gridreg.registry.observers import ObserverHub

            self._observer_hub = ObserverHub(self.registry)
        return self._observer_hub

    @property
    def trace(self) -> int:
        return int(getattr(self.registry.config.trace, "session", 0))

    def start(self) -> None:
        """Expire sessions every half timeout, as IceGrid's reaper does."""
        self._reaper = LoopingCall(self.reap)
        self._reaper.clock = self.clock
        self._reaper.start(max(1.0, self.timeout / 2), now=False).addErrback(
            lambda f: self.log.failure("The session reaper failed", f)
        )

    def stop(self) -> Deferred[Any]:
        if self._reaper is not None and self._reaper.running:
            self._reaper.stop()
        from twisted.internet.defer import DeferredList

        return DeferredList(
            [self.destroy(s, "registry stopping") for s in list(self.sessions.values())],
            consumeErrors=True,
        )

    # -- creation ----------------------------------------------------------------

    def create(self, admin: bool, user: str, password: str, connection: Any) -> Deferred[Proxy]:
        kind = "admin" if admin else ""
        if not admin and not self.registry.role.is_master:
            raise PermissionDeniedException(SLAVE_CLIENT_SESSION)
        verifier: Optional[PasswordVerifier] = self.verifiers.get(kind)
        if verifier is None:
            raise not_configured(kind)
        d = maybeDeferred(verifier.check, user, password)
        return d.addCallback(lambda _: self._open(admin, user, connection)).addErrback(
            self._refused, admin, user
        )

    def create_secure(self, admin: bool, connection: Any) -> Deferred[Proxy]:
        """The ssl variants: the client certificate's subject is the user."""
        kind = "ssl admin" if admin else "ssl"
        if not admin and not self.registry.role.is_master:
            raise PermissionDeniedException(SLAVE_CLIENT_SESSION)
        verifier: Optional[CertificateVerifier] = self.verifiers.get(kind)
        if verifier is None:
            raise not_configured(kind)
        info, user = _ssl_info(connection)
        d = maybeDeferred(verifier.authorize, info)
        return d.addCallback(lambda _: self._open(admin, user, connection)).addErrback(
            self._refused, admin, user
        )

    def _refused(self, failure: Failure, admin: bool, user: str) -> Failure:
        if self.trace > 0:
            self.log.info(
                "[Session] {kind} session creation for `{user}' refused: {reason}",
                kind="admin" if admin else "client",
                user=user,
                reason=getattr(failure.value, "reason", failure.getErrorMessage()),
            )
        return failure

    def _open(
        self,
        admin: bool,
        user: str,
        connection: Any,
        session_class: Optional[type[SessionServant]] = None,
        adapter: Optional[ObjectAdapter] = None,
        endpoints: Optional[tuple[Any, ...]] = None,
    ) -> Proxy:
        """
        @param session_class, adapter, endpoints: for sessions created
            through Glacier2 (L{gridreg.registry.glacier2_managers}), their
            servant class and the adapter and endpoints they are served on.
        """
        identity = Identity(str(uuid.uuid4()).upper(), self.registry.config.instance_name)
        cls = session_class or (AdminSessionServant if admin else ClientSessionServant)
        session = cls(self, identity, user, connection)
        session.adapter, session.endpoints = adapter, endpoints
        if session_class is None:
            # as IceGrid 3.7.8: served to the creating connection alone (Glacier2's
            # sessions are called over the router's connections of the moment)
            session.bound_to = connection
        self.sessions[identity] = session
        self.adapter_of(session).add(identity, session)
        if isinstance(session, AdminSessionServant):
            from gridreg.registry.ice_admin import AdminServant

            admin_servant = AdminServant(self.model, session)
            admin_servant.bound_to = session.bound_to
            self.adapter_of(session).add(session.admin_identity, admin_servant)
        if connection is not None and hasattr(connection, "on_close"):
            session.on_close = lambda: self._connection_closed(session)  # type: ignore[attr-defined]
            connection.on_close(session.on_close)  # type: ignore[attr-defined]
        if self.trace > 0:
            self.log.info(
                "[Session] {kind} session `{user}' created",
                kind=session.kind,
                user=user,
            )
        return self.proxy_for(identity, session)

    def proxy_for(self, identity: Identity, session: Optional[SessionServant] = None) -> Proxy:
        """A proxy on the client endpoints, or on those C{session} is served on."""
        if session is not None and session.endpoints is not None:
            return Proxy(identity, endpoints=tuple(session.endpoints))
        own = self.registry.directory.own
        endpoints = own.client if own is not None else ()
        return Proxy(identity, endpoints=tuple(endpoints))

    def adapter_of(self, session: SessionServant) -> ObjectAdapter:
        return session.adapter or self.adapter

    # -- ending ------------------------------------------------------------------

    def _connection_closed(self, session: SessionServant) -> None:
        if not session.destroyed:
            self.destroy(session, "connection closed").addErrback(
                lambda f: self.log.failure("Destroying a session failed", f)
            )

    def destroy(self, session: SessionServant, why: str) -> Deferred[Any]:
        if session.destroyed:
            return succeed(None)
        session.destroyed = True
        self.sessions.pop(session.identity, None)
        self.adapter_of(session).remove(session.identity)
        forget = getattr(session.connection, "forget_close", None)
        if forget is not None and hasattr(session, "on_close"):
            forget(session.on_close)
        if self.trace > 0:
            self.log.info(
                "[Session] {kind} session `{user}' {why}",
                kind=session.kind,
                user=session.user,
                why=why,
            )
        return maybeDeferred(session.released).addErrback(
            lambda f: self.log.failure(
                "Releasing what session `{user}' held failed", f, user=session.user
            )
        )

    def reap(self) -> None:
        """
        End the sessions not heard from for a timeout: neither a keepAlive nor,
        on their connection, any message (heartbeats included).
        """
        now = self.clock.seconds()
        for session in list(self.sessions.values()):
            heard = session.last_keepalive
            connection = session.connection
            if connection is not None and getattr(connection, "is_open", False):
                monitored = getattr(connection, "monitor", None) is not None
                heard = max(heard, connection.last_activity if monitored else now)
            timeout = self.timeout if session.timeout is None else session.timeout
            if timeout > 0 and now - heard > timeout:
                self.destroy(session, "timed out").addErrback(
                    lambda f: self.log.failure("Destroying a session failed", f)
                )

    # -- the update lock ----------------------------------------------------------

    def lock(self, session: AdminSessionServant) -> int:
        """
        Take the exclusive update lock, as IceGrid's startUpdate: the
        answer is the database serial; another holder is named in the refusal.
        """
        holder = self.lock_holder
        if holder is not None and holder is not session and not holder.destroyed:
            raise AccessDeniedException(holder.user)
        self.lock_holder = session
        return int(self.registry.store.serial)

    def unlock(self, session: AdminSessionServant) -> None:
        if self.lock_holder is not session:
            raise AccessDeniedException("")
        self.lock_holder = None


def _ssl_info(connection: Any) -> tuple[SSLInfo, str]:
    """The connection's SSLInfo and the subject of its client certificate, as IceGrid reads them."""
    if connection is None or not getattr(connection, "is_secure", lambda: False)():
        raise PermissionDeniedException("not ssl connection")
    cert = connection.peer_certificate()
    certs: list[str] = []
    user = ""
    if cert is not None:
        from OpenSSL import crypto

        certs.append(crypto.dump_certificate(crypto.FILETYPE_PEM, cert).decode("ascii"))
        user = ",".join(
            f"{k.decode()}={v.decode()}" for k, v in reversed(cert.get_subject().get_components())
        )
    if not user:
        raise PermissionDeniedException("empty user DN")
    transport = connection.transport
    peer, host = transport.getPeer(), transport.getHost()
    cipher = ""
    try:
        cipher = transport.getHandle().get_cipher_name() or ""
    except Exception:
        pass
    info = SSLInfo(
        getattr(peer, "host", ""),
        getattr(peer, "port", 0),
        getattr(host, "host", ""),
        getattr(host, "port", 0),
        cipher,
        certs,
    )
    return info, user


__all__ = [
    "AdminSessionServant",
    "ClientSessionServant",
    "IceSessions",
    "RegistryNotExistException",
    "SLAVE_CLIENT_SESSION",
]
