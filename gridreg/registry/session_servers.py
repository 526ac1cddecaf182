# -*- test-case-name: tests.test_session_servers -*-
"""
IceGrid's C{session} activation mode, on the master: a server that only
runs for the client session that holds it.

The allocation manager says when a session comes to hold a server and when
it lets go of it (L{AllocationManager.on_server_allocated} and
L{on_server_released}). This module tells the server's node
(C{SetServerSession}): the node then starts the server for locate requests
from any replica, and for the admin's C{start}, only while it is owned, and
stops it when told it no longer is. Both hooks return the node's answer:
the grant is answered once the node knows the owner, and the release (and
the next session's grant) once the server has stopped, so a session server
never runs for two sessions at once. A node that registers is told the
owner (or none) of each of its session servers again.

What IceGrid 3.7.8 does, observed with C{icegridregistry} (a master and a
slave), C{icegridnode} and IcePy sessions (C{NullPermissionsVerifier}),
and what is copied:

  - Allocating the server (or any allocatable object of it, even when the
    server is not C{allocatable="true"}: the server is held whole) does
    not start it: it stays C{inactive} until the first locate of its
    adapter, which starts it as an on-demand server. That locate may come
    from anybody (a client without a session, another session) and
    through any replica (the master loads the server on the node with the
    session, the node decides): ownership gates activation, not who asks.
  - Not owned, a locate answers a null proxy without starting it, and
    C{server start} (through the master or a slave) fails with
    C{ServerStartException("The server is not owned by a session.")}.
    Owned, C{server start} and C{server stop} work as for any server (a
    stopped one starts again at the next locate).
  - Release, session destroy, the session's connection closing and the
    session timing out all stop it (the node's usual deactivation: the
    process's C{Ice::Process::shutdown}); C{releaseObject} and C{destroy}
    answer once it has exited, and the next waiting session is granted it
    after that. A locate during the stop answers null once it is over.
  - C{server state} and C{server describe} show nothing of the owner:
    C{inactive (enabled)} / C{active (pid = N, enabled)}, C{activation =
    `session'}.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.identities import identity_to_string
from gridreg.ice.types import Identity
from gridreg.protocol.errors import failure_reason
from gridreg.protocol.node_commands import NOT_OWNED, SetServerSession
from gridreg.registry.allocation import AllocationManager
from gridreg.registry.nodes import MARGIN, NodeSessions

__all__ = ["NOT_OWNED", "SessionServers"]

#: IceGrid.Node.WaitTime's default, for a server that sets no deactivation timeout
_DEFAULT_TIMEOUT = 60


class SessionServers:
    """The owners of the master's C{session}-activation servers, told to their nodes."""

    log = Logger()

    def __init__(self, allocations: AllocationManager, nodes: NodeSessions, trace: Any) -> None:
        self.nodes = nodes
        self.trace = trace
        #: server id to the session key that owns it
        self._owners: dict[str, str] = {}
        self._closed = False
        allocations.on_server_allocated(self._allocated)
        allocations.on_server_released(self._released)
        nodes.on_registered(self._node_registered)

    def owner(self, server_id: str) -> Optional[str]:
        """The session that owns C{server_id}, if any."""
        return self._owners.get(server_id)

    def close(self) -> None:
        """The registry is stopping: forget the owners, send nothing more to nodes."""
        self._closed = True
        self._owners.clear()

    def _session_server(self, server_id: str) -> Any:
        """The deployed server if it is session-activated, else None."""
        found = self.nodes.server(server_id)
        if found is None or found[1].descriptor.activation != "session":
            return None
        return found[1]

    def _allocated(self, server_id: str, session_key: object) -> Optional[Deferred[None]]:
        """Tell the node the owner; the Deferred (never failing) fires once it knows."""
        server = self._session_server(server_id)
        if self._closed or server is None:
            return None
        owner = self._owners[server_id] = _session_name(session_key)
        if self.trace.server > 0:
            self.log.info(
                "[Server] server `{server}' allocated by `{session}'",
                server=server_id,
                session=owner,
            )
        return self._tell(server, owner)

    def _released(self, server_id: str) -> Optional[Deferred[None]]:
        """Tell the node nobody owns it; the Deferred (never failing) fires once it stopped."""
        session_key = self._owners.pop(server_id, None)
        server = self._session_server(server_id)
        if self._closed or session_key is None or server is None:
            return None  # an application gone: its node destroys the server
        if self.trace.server > 0:
            self.log.info(
                "[Server] server `{server}' released by `{session}'",
                server=server_id,
                session=session_key,
            )
        return self._tell(server, "")

    def _node_registered(self, node: str) -> None:
        """A node (re)started or came back: it learns every owner of its servers again."""
        if self._closed:
            return
        for app in self.nodes.replica.state.deployed.derived.values():
            for server_id, server in app.servers.items():
                if server.node == node and server.descriptor.activation == "session":
                    self._tell(server, self._owners.get(server_id, ""))

    def _tell(self, server: Any, session_key: str) -> Deferred[None]:
        seconds = server.descriptor.deactivation_timeout or _DEFAULT_TIMEOUT
        timeout = seconds + MARGIN if not session_key else self.nodes.timeout
        d = maybeDeferred(
            self.nodes.call,
            server.node,
            SetServerSession,
            timeout,
            server=server.server_id,
            session=session_key,
        )

        def told(_: object) -> None:
            if self.trace.server > 1:
                self.log.info(
                    "[Server] node `{node}' told server `{server}' is owned by `{session}'",
                    node=server.node,
                    server=server.server_id,
                    session=session_key,
                )

        def failed(failure: Failure) -> None:
            self.log.warn(
                "[Server] could not tell node `{node}' that session server `{server}' is "
                "owned by `{session}': {why}",
                node=server.node,
                server=server.server_id,
                session=session_key,
                why=failure_reason(failure, timeout),
            )

        return d.addCallbacks(told, failed)


def _session_name(key: object) -> str:
    """A client session's key as nodes and traces show it: its servant's identity."""
    return identity_to_string(key) if isinstance(key, Identity) else str(key)
