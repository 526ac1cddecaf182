# -*- test-case-name: tests.test_registry_nodes -*-
"""
Registrations of managed servers, handed to their node.

A server a node runs registers its adapters (and its C{Ice::Process}) with
whichever replica's LocatorRegistry it reached. When the server's node has
a session with that replica, the registration goes to the node
(C{AdapterRegistered}, C{ProcessRegistered}), which pushes it as live state
to every replica: no master write, so it works while the master is down.
Otherwise (a server of a deployed id started by hand, or its node is
connected elsewhere only) it stays today's replicated write.
"""

from __future__ import annotations

import base64
from typing import Any, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from gridreg.ice.encoding import OutputStream
from gridreg.ice.exceptions import InvalidReplicaGroupIdException
from gridreg.ice.types import ENCODING_1_1, Proxy
from gridreg.protocol.node_commands import AdapterRegistered, ProcessRegistered
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.nodes import NodeSessions


def proxy_field(proxy: Optional[Proxy]) -> str:
    """A proxy as node commands carry it: base64 of its 1.1 marshaling, "" for none."""
    if proxy is None:
        return ""
    out = OutputStream(ENCODING_1_1)
    out.write_proxy(proxy)
    return base64.b64encode(out.getvalue()).decode("ascii")


class NodeRelay:
    """What the LocatorRegistry servant hands to nodes."""

    log = Logger()

    def __init__(self, nodes: NodeSessions, database: RegistryDatabase) -> None:
        self.nodes = nodes
        self.database = database

    def adapter(
        self, adapter_id: str, group_id: str, proxy: Optional[Proxy]
    ) -> Optional[Deferred[Any]]:
        """
        Relay an adapter registration to its server's node; None when that
        node has no session here (the caller writes it instead).
        """
        deployed = self.nodes.replica.state.deployed.adapters.get(adapter_id)
        if deployed is None or deployed.node not in self.nodes.sessions:
            return None
        if group_id and group_id != deployed.replica_group_id:
            return fail(InvalidReplicaGroupIdException())
        d = self.nodes.call(
            deployed.node,
            AdapterRegistered,
            self.nodes.timeout,
            adapter=adapter_id,
            replica_group=deployed.replica_group_id,
            proxy=proxy_field(proxy),
        )

        def unrelayed(failure: Any) -> Deferred[Any]:
            self.log.warn(
                "[Adapter] node `{node}' did not take adapter `{adapter_id}' ({why}); "
                "registering it in the database instead",
                node=deployed.node,
                adapter_id=adapter_id,
                why=failure.getErrorMessage(),
            )
            return self.database.set_adapter_direct_proxy(adapter_id, group_id, proxy)

        return d.addErrback(unrelayed)

    def process(self, server_id: str, proxy: Optional[Proxy]) -> Optional[Deferred[Any]]:
        """
        Relay a server's process proxy to its node; None for an unknown
        server; a deployed server whose node has no session here is ignored.
        """
        found = self.nodes.server(server_id)
        if found is None:
            return None
        node = found[1].node
        if node not in self.nodes.sessions:
            return succeed(None)
        d = self.nodes.call(
            node, ProcessRegistered, self.nodes.timeout, server=server_id, proxy=proxy_field(proxy)
        )
        return d.addErrback(
            lambda f: self.log.warn(
                "[Server] node `{node}' did not take the process proxy of `{server}': {why}",
                node=node,
                server=server_id,
                why=f.getErrorMessage(),
            )
        )
