# -*- test-case-name: tests.test_session_servers -*-
"""
IceGrid's C{session} activation mode, on the master: a server that only
runs for the client session that allocated it.

The allocation manager says when a session comes to hold a server and when
it lets go of it (L{AllocationManager.on_server_allocated} and
L{on_server_released}); this module keeps which session owns each
C{session}-activation server, so that locate requests
(L{gridreg.registry.activation.Activator}) and the admin's C{start} may
activate it only while it is owned, and stops it on its node
(C{StopServer}) when its owner releases it or ends. The release hook
returns the stop's Deferred: the allocation manager grants the server to
the next session only once the stop has completed, so a session server
never runs for two sessions at once.

What IceGrid 3.7.8 does, observed with C{icegridregistry}, C{icegridnode}
and IcePy sessions (C{NullPermissionsVerifier}), and what is copied:

  - Allocating the server (or any allocatable object of it, even when the
    server is not C{allocatable="true"}) does not start it: it stays
    C{inactive} until the first locate of its adapter, which starts it as
    an on-demand server. That locate may come from anybody (a client
    without a session, another session): ownership gates activation, not
    who asks.
  - Not owned, a locate answers a null proxy without starting it, and
    C{server start} fails with C{ServerStartException("The server is not
    owned by a session.")}. Owned, C{server start} and C{server stop}
    work as for any server (a stopped one starts again at the next locate).
  - Release, session destroy, the session's connection closing and the
    session timing out all stop it (the node's usual deactivation: the
    process's C{Ice::Process::shutdown}); the next waiting session is
    granted it after the stop.
  - C{server state} and C{server describe} show nothing of the owner:
    C{inactive (enabled)} / C{active (pid = N, enabled)}, C{activation =
    `session'}.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.protocol.errors import failure_reason
from gridreg.protocol.node_commands import StopServer
from gridreg.registry.allocation import AllocationManager
from gridreg.registry.nodes import MARGIN, NodeSessions

__all__ = ["NOT_OWNED", "SessionServers"]

#: IceGrid 3.7.8's ServerStartException reason for an unowned session server
NOT_OWNED = "The server is not owned by a session."
#: IceGrid.Node.WaitTime's default, for a server that sets no deactivation timeout
_DEFAULT_TIMEOUT = 60


class SessionServers:
    """The owners of the master's C{session}-activation servers; stops them on release."""

    log = Logger()

    def __init__(self, allocations: AllocationManager, nodes: NodeSessions, trace: Any) -> None:
        self.nodes = nodes
        self.trace = trace
        #: server id to the session key that owns it
        self._owners: dict[str, str] = {}
        self._closed = False
        allocations.on_server_allocated(self._allocated)
        allocations.on_server_released(self._released)

    def is_session_server(self, server_id: str) -> bool:
        found = self.nodes.server(server_id)
        return found is not None and found[1].descriptor.activation == "session"

    def owner(self, server_id: str) -> Optional[str]:
        """The session that owns C{server_id}, if any."""
        return self._owners.get(server_id)

    def close(self) -> None:
        """The registry is stopping: forget the owners, send nothing more to nodes."""
        self._closed = True
        self._owners.clear()

    def _allocated(self, server_id: str, session_key: str) -> None:
        if self._closed or not self.is_session_server(server_id):
            return
        self._owners[server_id] = session_key
        if self.trace.server > 0:
            self.log.info(
                "[Server] server `{server}' allocated by `{session}'",
                server=server_id,
                session=session_key,
            )

    def _released(self, server_id: str) -> Optional[Deferred[None]]:
        """Stop the server; the Deferred (never failing) fires once it has."""
        session_key = self._owners.pop(server_id, None)
        if self._closed or session_key is None:
            return None
        if self.trace.server > 0:
            self.log.info(
                "[Server] server `{server}' released by `{session}'",
                server=server_id,
                session=session_key,
            )
        found = self.nodes.server(server_id)
        if found is None:  # its application is gone: the node destroys it
            return None
        server = found[1]
        timeout = (server.descriptor.deactivation_timeout or _DEFAULT_TIMEOUT) + MARGIN
        # Sent even when the node reported it inactive: an activation may be
        # on its way to the node on the same connection, and a stop of an
        # inactive server is a no-op there.
        d = self.nodes.call(server.node, StopServer, timeout, server=server_id)

        def stopped(_: object) -> None:
            if self.trace.server > 1:
                self.log.info("[Server] stopped session server `{server}'", server=server_id)

        def failed(failure: Failure) -> None:
            self.log.warn(
                "[Server] could not stop session server `{server}' released by `{session}': {why}",
                server=server_id,
                session=session_key,
                why=failure_reason(failure, timeout),
            )

        return d.addCallbacks(stopped, failed)
