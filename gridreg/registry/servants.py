# -*- test-case-name: tests.test_registry_vectors,tests.test_client_locator -*-
"""
The Ice objects a registry hosts: C{Ice::Locator} / C{IceGrid::Locator},
C{Ice::LocatorFinder}, C{IceGrid::Query}, C{IceGrid::Registry} on the client
endpoints and C{Ice::LocatorRegistry} on the server endpoints.

Read operations answer from L{RegistryState} alone. Writes go through
L{RegistryDatabase} and answer once the change is durable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    AdapterNotFoundException,
    ObjectNotFoundException,
    PermissionDeniedException,
    ServerNotFoundException,
)
from gridreg.ice.messages import Request
from gridreg.ice.servant import Servant, Uncached, operation
from gridreg.ice.types import ENCODING_1_1, Identity, Proxy
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.state import ObjectInfo, RegistryState, StoredObject
from gridreg.registry.trace import TraceLevels

if TYPE_CHECKING:
    from gridreg.registry.ice_sessions import IceSessions
    from gridreg.registry.node_relay import NodeRelay

#: the identity IceGrid gives the direct proxies that findAdapterById returns
ADAPTER_PROXY_IDENTITY = Identity("dummy")


@attrs.define
class PublishedProxies:
    """The registry's own proxies, known once its endpoints are listening."""

    locator: Optional[Proxy] = None
    query: Optional[Proxy] = None
    registry: Optional[Proxy] = None
    locator_registry: Optional[Proxy] = None


def _proxy_result(request: Request, proxy: Optional[Proxy]) -> bytes:
    out = OutputStream(request.encoding)
    out.write_proxy(proxy)
    return out.getvalue()


def _object_result(request: Request, info: ObjectInfo | StoredObject) -> bytes:
    """A well-known object's proxy; in encoding 1.1, straight from the store's bytes."""
    if type(info) is StoredObject and request.encoding == ENCODING_1_1:
        return info.wire
    return _proxy_result(request, info.proxy)


class Activation(Protocol):
    """
    What the Locator asks of on-demand activation (L{gridreg.registry.activation.Activator},
    or the service's stand-in that makes one at first use).
    """

    def is_managed(self, adapter_id: str) -> bool: ...

    def activate_for(self, adapter_id: str) -> Deferred[str]: ...


class LocatorServant(Servant):
    """C{<instance>/Locator}: resolves adapter ids and object identities."""

    type_id = "::IceGrid::Locator"
    type_ids = ("::Ice::Locator", "::IceGrid::Locator")
    log = Logger()

    def __init__(
        self,
        state: RegistryState,
        published: PublishedProxies,
        trace: TraceLevels,
        activator: Optional[Activation] = None,
    ):
        self.state = state
        self.published = published
        self.trace = trace
        self.activator = activator

    @operation("findAdapterById", idempotent=True, cacheable=True)
    def find_adapter_by_id(self, request: Request, params: InputStream) -> bytes | Deferred[bytes]:
        """
        A registered adapter's endpoints; for a deployed adapter (or group)
        without any, its on-demand servers are activated first, and what
        cannot be made active is answered with a null proxy, as IceGrid does
        (see L{gridreg.registry.activation}); anything else is not found.
        """
        adapter_id = params.read_string()
        found = self.state.locate_adapter(adapter_id)
        if found is not None and found[0]:
            if self.trace.locator > 1:
                self.log.info("[Locator] found adapter `{adapter_id}'", adapter_id=adapter_id)
            endpoints, stable = found
            result = _proxy_result(request, Proxy(ADAPTER_PROXY_IDENTITY, endpoints=endpoints))
            return result if stable else Uncached(result)
        activator = self.activator
        if activator is None or not activator.is_managed(adapter_id):
            if self.trace.locator > 0:
                self.log.info(
                    "[Locator] couldn't find adapter `{adapter_id}'", adapter_id=adapter_id
                )
            raise AdapterNotFoundException()
        return activator.activate_for(adapter_id).addCallback(
            self._after_activation, request, adapter_id
        )

    def _after_activation(self, reason: str, request: Request, adapter_id: str) -> bytes:
        found = self.state.locate_adapter(adapter_id)
        if found is not None and found[0]:
            if self.trace.locator > 1:
                self.log.info("[Locator] found adapter `{adapter_id}'", adapter_id=adapter_id)
            proxy: Optional[Proxy] = Proxy(ADAPTER_PROXY_IDENTITY, endpoints=found[0])
        else:
            if self.trace.locator > 0:
                self.log.info(
                    "[Locator] couldn't resolve adapter `{adapter_id}' endpoints: {reason}",
                    adapter_id=adapter_id,
                    reason=reason or "the adapter is not active",
                )
            proxy = None
        return Uncached(_proxy_result(request, proxy))

    @operation("findObjectById", idempotent=True, cacheable=True)
    def find_object_by_id(self, request: Request, params: InputStream) -> bytes:
        identity = params.read_identity()
        info = self.state.find_object(identity)
        if info is None:
            if self.trace.locator > 0:
                self.log.info(
                    "[Locator] couldn't find object `{category}/{name}'",
                    category=identity.category,
                    name=identity.name,
                )
            raise ObjectNotFoundException()
        return _object_result(request, info)

    @operation("getRegistry", idempotent=True, cacheable=True)
    def get_registry(self, request: Request, params: InputStream) -> bytes:
        return _proxy_result(request, self.published.locator_registry)

    @operation("getLocalRegistry", idempotent=True, cacheable=True)
    def get_local_registry(self, request: Request, params: InputStream) -> bytes:
        return _proxy_result(request, self.published.registry)

    @operation("getLocalQuery", idempotent=True, cacheable=True)
    def get_local_query(self, request: Request, params: InputStream) -> bytes:
        return _proxy_result(request, self.published.query)


class LocatorFinderServant(Servant):
    """C{Ice/LocatorFinder}: lets a client that knows only an address find the locator."""

    type_id = "::Ice::LocatorFinder"

    def __init__(self, published: PublishedProxies):
        self.published = published

    @operation("getLocator", cacheable=True)
    def get_locator(self, request: Request, params: InputStream) -> bytes:
        return _proxy_result(request, self.published.locator)


class QueryServant(Servant):
    """C{<instance>/Query}: finds well-known objects; unknown gives null, not an error."""

    type_id = "::IceGrid::Query"

    def __init__(self, state: RegistryState):
        self.state = state

    @operation("findObjectById", idempotent=True, cacheable=True)
    def find_object_by_id(self, request: Request, params: InputStream) -> bytes:
        info = self.state.find_object(params.read_identity())
        return _object_result(request, info) if info is not None else _proxy_result(request, None)

    @operation("findObjectByType", idempotent=True)
    def find_object_by_type(self, request: Request, params: InputStream) -> bytes:
        return _proxy_result(request, self.state.random_object_of_type(params.read_string()))

    @operation("findObjectByTypeOnLeastLoadedNode", idempotent=True)
    def find_object_by_type_on_least_loaded_node(
        self, request: Request, params: InputStream
    ) -> bytes:
        type_id = params.read_string()
        sample = ("1", "5", "15")[params.read_enum(2)]
        return _proxy_result(request, self.state.least_loaded_object_of_type(type_id, sample))

    @operation("findAllObjectsByType", idempotent=True, cacheable=True)
    def find_all_objects_by_type(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_proxy_seq(self.state.objects_of_type(params.read_string()))
        return out.getvalue()

    @operation("findAllReplicas", idempotent=True, cacheable=True)
    def find_all_replicas(self, request: Request, params: InputStream) -> bytes:
        proxy = params.read_proxy()
        replicas: list[Proxy] = []
        if proxy is not None:
            group_id = proxy.adapter_id
            if proxy.is_well_known:
                info = self.state.find_object(proxy.identity)
                group_id = info.proxy.adapter_id if info is not None else ""
            if group_id and proxy.is_indirect and self.state.is_replica_group(group_id):
                replicas = [
                    attrs.evolve(proxy, adapter_id=member.adapter_id)
                    for member in self.state.replica_group_members(group_id)
                ]
        out = OutputStream(request.encoding)
        out.write_proxy_seq(replicas)
        return out.getvalue()


class RegistryServant(Servant):
    """
    C{<instance>/Registry} (C{Registry-<name>} on a slave): IceGrid's session
    factory; the sessions themselves are L{gridreg.registry.ice_sessions}'.
    Without sessions (a registry built without them) every creation is
    refused with a reason rather than left unanswered.
    """

    type_id = "::IceGrid::Registry"
    _REFUSAL = "Ice sessions are not offered by this registry"

    def __init__(
        self,
        session_timeout: int = 30,
        acm_timeout: int = 30,
        sessions: Optional["IceSessions"] = None,
    ):
        self.session_timeout = session_timeout
        self.acm_timeout = acm_timeout
        self.sessions = sessions

    def _require_sessions(self) -> "IceSessions":
        if self.sessions is None:
            raise PermissionDeniedException(self._REFUSAL)
        return self.sessions

    def _created(self, request: Request, d: Deferred[Proxy]) -> Deferred[bytes]:
        return d.addCallback(lambda proxy: _proxy_result(request, proxy))

    @operation("createSession", connection=True)
    def create_session(self, request: Request, params: InputStream, connection: Any) -> Any:
        user, password = params.read_string(), params.read_string()
        sessions = self._require_sessions()
        return self._created(request, sessions.create(False, user, password, connection))

    @operation("createAdminSession", connection=True)
    def create_admin_session(self, request: Request, params: InputStream, connection: Any) -> Any:
        user, password = params.read_string(), params.read_string()
        sessions = self._require_sessions()
        return self._created(request, sessions.create(True, user, password, connection))

    @operation("createSessionFromSecureConnection", connection=True)
    def create_session_from_secure_connection(
        self, request: Request, params: InputStream, connection: Any
    ) -> Any:
        sessions = self._require_sessions()
        return self._created(request, sessions.create_secure(False, connection))

    @operation("createAdminSessionFromSecureConnection", connection=True)
    def create_admin_session_from_secure_connection(
        self, request: Request, params: InputStream, connection: Any
    ) -> Any:
        sessions = self._require_sessions()
        return self._created(request, sessions.create_secure(True, connection))

    @operation("getSessionTimeout", idempotent=True)
    def get_session_timeout(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_int(self.session_timeout)
        return out.getvalue()

    @operation("getACMTimeout", idempotent=True)
    def get_acm_timeout(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_int(self.acm_timeout)
        return out.getvalue()


class LocatorRegistryServant(Servant):
    """C{<instance>/LocatorRegistry}: where Ice servers register their adapters."""

    type_id = "::Ice::LocatorRegistry"

    def __init__(self, database: RegistryDatabase, relay: Optional["NodeRelay"] = None):
        self.database = database
        self.relay = relay

    def _register(self, adapter_id: str, group_id: str, proxy: Optional[Proxy]) -> Deferred[bytes]:
        """
        A managed server's adapter goes to its node, when the node has a
        session here; anything else is a replicated write (servers started by hand).
        """
        relayed = self.relay.adapter(adapter_id, group_id, proxy) if self.relay else None
        if relayed is None:
            relayed = self.database.set_adapter_direct_proxy(adapter_id, group_id, proxy)
        return relayed.addCallback(lambda _: b"")

    @operation("setAdapterDirectProxy", idempotent=True)
    def set_adapter_direct_proxy(self, request: Request, params: InputStream) -> Deferred[bytes]:
        adapter_id = params.read_string()
        proxy = params.read_proxy()
        return self._register(adapter_id, "", proxy)

    @operation("setReplicatedAdapterDirectProxy", idempotent=True)
    def set_replicated_adapter_direct_proxy(
        self, request: Request, params: InputStream
    ) -> Deferred[bytes]:
        adapter_id = params.read_string()
        group_id = params.read_string()
        proxy = params.read_proxy()
        return self._register(adapter_id, group_id, proxy)

    @operation("setServerProcessProxy", idempotent=True)
    def set_server_process_proxy(
        self, request: Request, params: InputStream
    ) -> bytes | Deferred[bytes]:
        """
        Handed to the server's node; a deployed server whose node has no
        session here (started by hand) is accepted and ignored; an unknown
        server is refused, as IceGrid does.
        """
        server_id = params.read_string()
        proxy = params.read_proxy()
        relayed = self.relay.process(server_id, proxy) if self.relay else None
        if relayed is None:
            raise ServerNotFoundException()
        return relayed.addCallback(lambda _: b"")
