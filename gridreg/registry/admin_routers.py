# -*- test-case-name: tests.test_admin_routers -*-
"""
IceGrid's admin routers: the objects C{getServerAdmin}, C{getNodeAdmin}
and C{getRegistryAdmin} hand out, C{<instance>-RegistryServerAdminRouter/<server>},
C{<instance>-RegistryNodeAdminRouter/<node>} and
C{<instance>-RegistryReplicaAdminRouter/<replica>} on the client endpoints.
A request on one (any facet) goes, unchanged, to the admin object behind it:

  - a server's: relayed to its node (L{AdminRequest}), which calls the
    admin object the server registered (L{gridreg.node.admin});
  - a node's: relayed the same way, answered by the node itself
    (its C{Properties} facet);
  - this replica's: answered here (C{Properties}: its configuration as
    loaded); another replica's: asked of that replica over a connection of
    its own to its internal endpoint (L{ReplicaAdminRequest}, role
    C{registry}), whichever the two replicas are. IceGrid 3.7.8's master
    reaches the slaves' but a slave answers C{ObjectNotExistException} for
    the master's (checked): gridreg answers from every replica.

What IceGrid 3.7.8 does and we do too (checked with icegridregistry,
icegridnode, glacier2router and IcePy): on the client endpoints the routers
answer only on a connection that holds a live admin session (elsewhere, and
after the session ended, every request gets C{ObjectNotExistException});
a Glacier2 admin session gets the proxies on its session manager's
endpoints, where they answer every caller; a success or a user exception comes back
as it came; everything else (an unknown name, a server not running, its
node down, a facet or operation the admin object lacks, an operation
mode the object refuses: any local exception) is
C{ObjectNotExistException} naming the router's identity, the request's
facet and its operation.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.ice.admin_facets import AdminObject
from gridreg.ice.messages import ReplyStatus, Request, not_exist_body
from gridreg.ice.servant import DispatchResult, ObjectAdapter
from gridreg.protocol.commands import PROTOCOL_VERSION, Hello, ReplicaAdminRequest
from gridreg.protocol.errors import NotFoundError
from gridreg.protocol.node_commands import AdminRequest
from gridreg.registry.nodes import MARGIN

if TYPE_CHECKING:
    from gridreg.registry.ice_sessions import IceSessions
    from gridreg.registry.roles import Replica

#: how long a routed request may take: the node's own forwarding timeout, plus a margin
ROUTE_TIMEOUT = 10.0 + MARGIN

#: the router kinds, as their categories name them (C{<instance>-Registry<kind>AdminRouter})
KINDS = ("Server", "Node", "Replica")


def router_category(instance: str, kind: str) -> str:
    return f"{instance}-Registry{kind}AdminRouter"


def not_exist(request: Request) -> bytes:
    """IceGrid's answer for every request it could not route."""
    return not_exist_body(
        ReplyStatus.OBJECT_NOT_EXIST, request.identity, request.facet, request.operation
    )


def ice_request_fields(request: Request) -> dict[str, Any]:
    """A request's fields as L{AdminRequest} and L{ReplicaAdminRequest} carry them."""
    return {
        "facet": request.facet,
        "operation": request.operation,
        "mode": int(request.mode),
        "context": json.dumps(request.context),
        "encoding": str(request.encoding),
        "params": request.params,
    }


class _Router:
    """One category: checks the connection, then hands the request to C{target}."""

    def __init__(
        self, routers: "AdminRouters", target: Callable[[Request], Any], require_session: bool
    ) -> None:
        self.routers = routers
        self.target = target
        self.require_session = require_session

    def route(self, request: Request, connection: Any) -> DispatchResult:
        if self.require_session and not self.routers.admin_connection(connection):
            return not_exist(request)
        d = maybeDeferred(self.target, request)
        return d.addCallbacks(
            lambda body: _routed(request, body), lambda f: self.routers.unrouted(request, f)
        )


def _routed(request: Request, body: bytes) -> bytes:
    """
    The admin object's answer when a success or a user exception; any
    other (not-exist, unknown exceptions) is the router's ObjectNotExist, as IceGrid's.
    """
    if body[:1] in (bytes([ReplyStatus.SUCCESS]), bytes([ReplyStatus.USER_EXCEPTION])):
        return body
    return not_exist(request)


class _HelloFactory(Factory):
    noisy = False
    protocol = amp.AMP


class AdminRouters:
    """The three admin routers of one replica (see the module docstring)."""

    log = Logger()

    def __init__(self, registry: "Replica", sessions: "IceSessions") -> None:
        self.registry = registry
        self.sessions = sessions
        config = registry.config
        #: this replica's own admin object
        self.admin = AdminObject.with_properties(dict(getattr(config, "properties", None) or {}))

    def install(self, adapter: ObjectAdapter, require_session: bool = True) -> None:
        """
        Serve the routers on C{adapter}: on the client endpoints for the
        connections of admin sessions only; on the Glacier2 admin session
        manager's (C{require_session=False}) for every caller, as IceGrid
        3.7.8 does (checked: there a glacier2router's filters are the guard).
        """
        instance = self.registry.config.instance_name
        targets = {"Server": self._server, "Node": self._node, "Replica": self._replica}
        for kind in KINDS:
            router = _Router(self, targets[kind], require_session)
            adapter.add_category(router_category(instance, kind), router)

    def admin_connection(self, connection: Any) -> bool:
        """Does C{connection} hold a live admin session (IceGrid routes only for those)?"""
        if connection is None:
            return False
        from gridreg.registry.ice_sessions import AdminSessionServant

        return any(
            isinstance(s, AdminSessionServant) and s.connection is connection and not s.destroyed
            for s in self.sessions.sessions.values()
        )

    def unrouted(self, request: Request, failure: Failure) -> bytes:
        self.log.debug(
            "[Admin] could not route {operation} on {category}/{name} (facet `{facet}'): {why}",
            operation=request.operation,
            category=request.identity.category,
            name=request.identity.name,
            facet=request.facet,
            why=failure.getErrorMessage(),
        )
        return not_exist(request)

    # -- targets ---------------------------------------------------------------------

    def _server(self, request: Request) -> Deferred[bytes]:
        server_id = request.identity.name
        found = self.registry.nodes.server(server_id)
        if found is None:
            raise NotFoundError(f"server `{server_id}' is not deployed")
        return self._to_node(found[1].node, server_id, request)

    def _node(self, request: Request) -> Deferred[bytes]:
        return self._to_node(request.identity.name, "", request)

    def _to_node(self, node: str, server: str, request: Request) -> Deferred[bytes]:
        d = self.registry.nodes.call(
            node, AdminRequest, ROUTE_TIMEOUT, server=server, **ice_request_fields(request)
        )
        return d.addCallback(lambda answer: answer["reply"])

    def _replica(self, request: Request) -> Any:
        name = request.identity.name
        if name == self.registry.config.replica_name:
            return self.admin.dispatch(request)
        return Deferred.fromCoroutine(self._other_replica(name, request))

    def local(self, request: Request) -> DispatchResult:
        """A request another replica relayed for this replica's admin object."""
        return self.admin.dispatch(request)

    async def _other_replica(self, name: str, request: Request) -> bytes:
        endpoints = self.registry.directory.endpoints_of(name)
        if endpoints is None or not endpoints.internal:
            raise NotFoundError(f"replica `{name}' is not known here")
        reactor, peers = self.registry.reactor, self.registry.peers
        protocol: Any = (
            await peers.connect(endpoints.internal[0], name)
            .connect(_HelloFactory())
            .addTimeout(ROUTE_TIMEOUT, reactor)
        )
        try:
            hello = await protocol.callRemote(
                Hello,
                version=PROTOCOL_VERSION,
                role="registry",
                name=self.registry.config.replica_name,
            ).addTimeout(ROUTE_TIMEOUT, reactor)
            peers.security.check_server(protocol.transport, hello["replica"])
            if hello["replica"] != name:
                raise NotFoundError(f"replica `{hello['replica']}' answered for `{name}'")
            answer = await protocol.callRemote(
                ReplicaAdminRequest, **ice_request_fields(request)
            ).addTimeout(ROUTE_TIMEOUT, reactor)
            return bytes(answer["reply"])
        finally:
            protocol.transport.loseConnection()
