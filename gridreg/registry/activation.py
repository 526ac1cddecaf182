# -*- test-case-name: tests.test_registry_nodes -*-
"""
On-demand activation for locate requests, at any replica.

A locate request for the adapter of a node-managed server that has no
endpoints asks the server's node to start it (C{ActivateServer}) when the
server is C{on-demand} and its node has a session with this replica, then
answers with whatever registered. Concurrent requests for one server share
one call.

What real IceGrid 3.7.8 answers was observed (icegridnode with a collocated
registry, C{Locator.findAdapterById} and an Ice client's C{ice_ping} on
C{obj@Adapter}): whenever a deployed adapter cannot be made active, it is
B{a null proxy}, not C{AdapterNotFoundException}, and the client's call
then raises C{Ice::NoEndpointException}:

  - the exe does not exist: null at once ("cannot execute ...");
  - the server never registers its adapter (activation-timeout 2): null
    after the 2 s timeout;
  - the server is disabled, or C{manual} and not running: null at once,
    without starting anything;
  - the node is down: null at once (C{NodeUnreachableException} in the
    registry's trace, "the node is not active").

A C{session}-activation server is asked for like an on-demand one, at any
replica: its node starts it only while the client session holding it owns
it (L{gridreg.registry.session_servers}) and otherwise refuses, so the
answer is null, as IceGrid 3.7.8's.

The registry traces each as "couldn't resolve adapter `X' endpoints" with
the reason (C{IceGrid.Registry.Trace.Locator}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.protocol.errors import failure_reason
from gridreg.protocol.node_commands import ActivateServer
from gridreg.registry.descriptors import DeployedAdapter
from gridreg.registry.nodes import MARGIN, NodeSessions
from gridreg.registry.state import RegistryState

#: IceGrid.Node.WaitTime's default: a server's activation timeout when it sets none
DEFAULT_ACTIVATION_TIMEOUT = 60


class Activator:
    """Starts on-demand servers so that their adapters can be located."""

    log = Logger()

    def __init__(self, state: RegistryState, nodes: NodeSessions) -> None:
        self.state = state
        self.nodes = nodes
        #: server id to the callers waiting for its activation
        self._pending: dict[str, list[Deferred[str]]] = {}

    def is_managed(self, adapter_id: str) -> bool:
        """Is C{adapter_id} a deployed adapter or replica group (null, not "not found")?"""
        deployed = self.state.deployed
        return adapter_id in deployed.adapters or adapter_id in deployed.replica_groups

    def activate_for(self, adapter_id: str) -> Deferred[str]:
        """
        Activate what C{adapter_id} needs: its server, or every on-demand
        member of a replica group. Fires (never fails) with "" once one is
        up, or with why none could be.
        """
        deployed = self.state.deployed
        if adapter_id in deployed.adapters:
            members = [deployed.adapters[adapter_id]]
        else:
            members = [a for a in deployed.adapters.values() if a.replica_group_id == adapter_id]
        reasons: list[str] = []
        waits: list[Deferred[str]] = []
        for member in members:
            why = self._why_not(member)
            if why:
                reasons.append(why)
            else:
                waits.append(self.activate_server(member.server_id, member.node))
        if not waits:
            return succeed("; ".join(reasons) or "no server to activate")
        return _first_success(waits, reasons)

    def _why_not(self, member: DeployedAdapter) -> str:
        """Why the member's server cannot be activated on demand ("" if it can)."""
        found = self.nodes.server(member.server_id)
        if found is None:
            return f"server `{member.server_id}' is not deployed"
        server = found[1].descriptor
        if server.activation not in ("on-demand", "session"):
            return f"server `{server.id}' is not on-demand ({server.activation})"
        if member.node not in self.nodes.sessions:
            return f"node `{member.node}' is not active"
        status = self.nodes.server_status(server.id, member.node)
        if status["enabled"] is False:
            return f"server `{server.id}' is disabled"
        return ""

    def timeout_of(self, server_id: str) -> float:
        found = self.nodes.server(server_id)
        seconds = found[1].descriptor.activation_timeout if found is not None else 0
        return (seconds or DEFAULT_ACTIVATION_TIMEOUT) + MARGIN

    def activate_server(self, server_id: str, node: str) -> Deferred[str]:
        """Ask C{node} to start C{server_id}; concurrent callers share one call."""
        waiting = self._pending.get(server_id)
        if waiting is None:
            waiting = self._pending[server_id] = []
            timeout = self.timeout_of(server_id)
            d = self.nodes.call(node, ActivateServer, timeout, server=server_id)
            d.addCallbacks(lambda _: "", lambda f: failure_reason(f, timeout))
            d.addCallback(self._activated, server_id)
        mine: Deferred[str] = Deferred()
        waiting.append(mine)
        return mine

    def _activated(self, reason: str, server_id: str) -> None:
        if reason:
            self.log.info(
                "[Server] server `{server}' activation failed: {reason}",
                server=server_id,
                reason=reason,
            )
        for waiter in self._pending.pop(server_id, []):
            waiter.callback(reason)


def _first_success(waits: list[Deferred[str]], reasons: list[str]) -> Deferred[str]:
    """Fire with "" at the first success, or with every reason once all failed."""
    done: Deferred[str] = Deferred()
    left = {"count": len(waits)}

    def one(reason: str) -> None:
        left["count"] -= 1
        if done.called:
            return
        if not reason:
            done.callback("")
            return
        reasons.append(reason)
        if left["count"] == 0:
            done.callback("; ".join(reasons))

    def broken(failure: Failure) -> None:
        one(failure.getErrorMessage() or "activation failed")

    for wait in waits:
        wait.addCallbacks(one, broken)
    return done


__all__ = ["Activator", "DEFAULT_ACTIVATION_TIMEOUT"]
