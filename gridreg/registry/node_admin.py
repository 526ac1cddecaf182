# -*- test-case-name: tests.test_registry_node_admin -*-
"""
C{gridadmin}'s view of servers and nodes, at any replica.

Listings and descriptions come from the deployed applications and what the
nodes with a session here report. Control (start, stop, enable, signal,
shutdown) is relayed to the node over its session with this replica, so it
works at a slave and while the master is down: nothing is written.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.protocol.errors import NodeError, NodeUnreachableError, NotFoundError
from gridreg.protocol.node_commands import AdminNodeControl, AdminServerControl
from gridreg.ice.exceptions import NodeUnreachableException
from gridreg.registry.admin_model import AdminModel
from gridreg.registry.descriptors import server_to_json
from gridreg.registry.nodes import NodeSessions

if TYPE_CHECKING:
    from gridreg.registry.roles import Replica

SERVER_ACTIONS = ("start", "stop", "enable", "disable", "signal", "state", "pid")
NODE_ACTIONS = ("ping", "load", "shutdown")
_DECLARED = (NodeError, NodeUnreachableError, NotFoundError)

Listing = tuple[list[str], Callable[[str], dict[str, Any]]]


def _declared(failure: Failure) -> Failure:
    """Node commands declare only node errors: anything else is said as one."""
    if failure.check(*_DECLARED):
        return failure
    return Failure(NodeError(failure.getErrorMessage() or repr(failure.value)))


# -- listings --------------------------------------------------------------------


def server_item(nodes: NodeSessions, server_id: str) -> dict[str, Any]:
    found = nodes.server(server_id)
    if found is None:
        raise NotFoundError(f"server `{server_id}' not found")
    application, server = found
    return {
        "server": server_id,
        "application": application,
        "node": server.node,
        "activation": server.descriptor.activation,
        **nodes.server_status(server_id, server.node),
    }


def server_listing(nodes: NodeSessions) -> Listing:
    ids = sorted(s for app in nodes.replica.state.deployed.derived.values() for s in app.servers)
    return ids, lambda key: server_item(nodes, key)


def server_details(nodes: NodeSessions, server_id: str) -> dict[str, Any]:
    item = server_item(nodes, server_id)
    found = nodes.server(server_id)
    assert found is not None
    return {**item, "descriptor": server_to_json(found[1].descriptor)}


def _node_names(nodes: NodeSessions) -> set[str]:
    names = set(nodes.sessions)
    for app in nodes.replica.state.deployed.derived.values():
        names.update(server.node for server in app.servers.values())
    return names


def node_item(nodes: NodeSessions, name: str) -> dict[str, Any]:
    if name not in _node_names(nodes):
        raise NotFoundError(f"node `{name}' not found")
    session = nodes.sessions.get(name)
    info = session.info if session is not None else {}
    load = session.load if session is not None else None
    servers = sorted(
        server_id
        for app in nodes.replica.state.deployed.derived.values()
        for server_id, server in app.servers.items()
        if server.node == name
    )
    return {
        "node": name,
        "alive": session is not None,
        "hostname": info.get("hostname", ""),
        "os": info.get("os", ""),
        "load1": load.avg1 if load else None,
        "load5": load.avg5 if load else None,
        "load15": load.avg15 if load else None,
        "servers": servers,
    }


def node_listing(nodes: NodeSessions) -> Listing:
    return sorted(_node_names(nodes)), lambda key: node_item(nodes, key)


def node_details(nodes: NodeSessions, name: str) -> dict[str, Any]:
    item = node_item(nodes, name)
    session = nodes.sessions.get(name)
    return {**item, "info": dict(session.info) if session is not None else {}}


# -- control ---------------------------------------------------------------------


class NodeAdminResponder(amp.CommandLocator):
    """The server and node control commands of an admin session."""

    log = Logger()
    registry: Replica

    @property
    def _nodes(self) -> NodeSessions:
        nodes: NodeSessions = self.registry.nodes
        return nodes

    @AdminServerControl.responder
    def server_control(self, server: str, action: str, argument: str) -> Deferred[dict[str, Any]]:
        return maybeDeferred(self._server_control, server, action, argument).addErrback(_declared)

    def _server_control(self, server_id: str, action: str, argument: str) -> Deferred[Any]:
        nodes = self._nodes
        if nodes.server(server_id) is None:
            raise NotFoundError(f"server `{server_id}' not found")
        if action not in SERVER_ACTIONS:
            raise NodeError(
                f"unknown action `{action}': expected one of {', '.join(SERVER_ACTIONS)}"
            )
        try:
            d = AdminModel(self.registry).control_server(server_id, action, argument)
        except NodeUnreachableException as e:
            raise NodeUnreachableError(f"node `{e.name}' is not active") from None

        def result(_: object) -> dict[str, Any]:
            item = server_item(nodes, server_id)
            fields = ("server", "node", "state", "pid", "enabled")
            return {"result": _json({f: item[f] for f in fields})}

        return d.addCallback(result)

    @AdminNodeControl.responder
    def node_control(self, node: str, action: str) -> Deferred[dict[str, Any]]:
        return maybeDeferred(self._node_control, node, action).addErrback(_declared)

    def _node_control(self, name: str, action: str) -> Any:
        nodes = self._nodes
        item = node_item(nodes, name)
        if action == "ping":
            return {"result": _json({"node": name, "alive": item["alive"]})}
        if action not in NODE_ACTIONS:
            raise NodeError(f"unknown action `{action}': expected one of {', '.join(NODE_ACTIONS)}")
        if not item["alive"]:
            raise NodeUnreachableError(f"node `{name}' is not active")
        if action == "load":
            fields = ("node", "load1", "load5", "load15")
            return {"result": _json({f: item[f] for f in fields})}
        d = AdminModel(self.registry).shutdown_node(name)
        return d.addCallback(lambda _: {"result": _json({"node": name})})


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
