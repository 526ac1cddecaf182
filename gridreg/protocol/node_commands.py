# -*- test-case-name: tests.test_registry_nodes -*-
"""
The AMP commands of node sessions: a node and one replica, over the
replica's internal endpoint (mutual TLS, the node's certificate names it
with role C{node}).

A node opens one session with every replica. It starts with
L{gridreg.protocol.commands.Hello} (role C{node}, the node's name), then:

  - node to replica: L{RegisterNode} (once; a second session under the same
    name takes over the old one at once), then L{NodeKeepAlive} twice
    per C{IceGrid.Registry.NodeSessionTimeout} carrying the node's load, and
    L{NodeLiveState} whenever a server's state or a registered adapter
    changes (first a full one, right after registering);
  - replica to node (AMP is symmetric: the node needs no listening port):
    L{DeployServers} after registering and after every change of the
    deployed applications, L{ActivateServer}, L{StopServer},
    L{EnableServer}, L{SignalServer}, L{SetServerSession} (the master
    only: which client session owns a C{session}-activation server),
    L{AdapterRegistered} and
    L{ProcessRegistered} (a managed server registered through this replica's
    LocatorRegistry), L{ReplicasChanged} (the master, when a replica joins
    or leaves), L{ShutdownNode}, L{AdminRequest} (an Ice request for the
    admin object of the node or of one of its servers, IceGrid's admin
    routers).

Everything a node reports (server states, the endpoints its servers
registered, its load) is the node's live state, never a master write: it
reaches every replica the node has a session with, so activation and
registration keep working while the master is down.

JSON values (C{servers}, C{adapters}, C{replicas}, C{info}) are described
where they are used. Proxies travel as base64 of their encoding 1.1
marshaling (C{""} for none), as in L{ForwardAdapterRegistration}.
"""

from __future__ import annotations

from twisted.protocols import amp

from gridreg.protocol.chunking import BigBytes
from gridreg.protocol.errors import (
    NodeError,
    NodeUnreachableError,
    NotAuthorizedError,
    NotFoundError,
    NotMasterError,
    TransferError,
)

_ERRORS = {
    NotAuthorizedError: b"NOT_AUTHORIZED",
    NotMasterError: b"NOT_MASTER",
    NotFoundError: b"NOT_FOUND",
    NodeError: b"NODE_ERROR",
    NodeUnreachableError: b"NODE_UNREACHABLE",
    TransferError: b"TRANSFER_ERROR",
}


# -- node to replica ------------------------------------------------------------


class RegisterNode(amp.Command):
    """
    The node asks the replica to manage it.

    C{info} is JSON: C{{"hostname", "os", "release", "version", "machine",
    "nproc", "data"}}. C{epoch} is the newest replication epoch the node has
    seen (C{number:token}, or C{""}); a replica holding an older one is
    refused by the node, not the other way round.

    The answer: C{replicas} is JSON, every replica this one knows,
    C{[{"name": ..., "internal": "<endpoints>"}, ...]}, so a node that
    reached one replica finds the others; C{session_timeout} is
    C{IceGrid.Registry.NodeSessionTimeout} in seconds; C{epoch} the
    replica's newest epoch. The replica then sends L{DeployServers}.
    """

    arguments = [
        (b"name", amp.Unicode()),
        (b"info", amp.Unicode()),
        (b"epoch", amp.Unicode()),
    ]
    response = [
        (b"replica", amp.Unicode()),
        (b"replicas", amp.Unicode()),
        (b"session_timeout", amp.Integer()),
        (b"epoch", amp.Unicode()),
    ]
    errors = _ERRORS


class NodeKeepAlive(amp.Command):
    """
    The node is alive, with its load averages (1, 5 and 15 minutes, divided
    by its number of processors). C{NotFoundError} means the replica has no
    session for this node (it timed out): the node registers again.
    """

    arguments = [
        (b"load1", amp.Float()),
        (b"load5", amp.Float()),
        (b"load15", amp.Float()),
    ]
    response = [(b"epoch", amp.Unicode())]
    errors = _ERRORS


class NodeLiveState(amp.Command):
    """
    What changed on the node. C{servers}: JSON
    C{{server_id: {"state": "inactive|activating|active|deactivating|destroyed",
    "pid": int or null, "enabled": bool}}}; C{adapters}: JSON
    C{{adapter_id: {"proxy": base64 or "", "replica_group": str}}}, C{"proxy": ""}
    meaning the adapter is no longer registered. With C{full}, these are the
    node's whole live state and replace what the replica held for it.
    """

    arguments = [
        (b"servers", amp.Unicode()),
        (b"adapters", amp.Unicode()),
        (b"full", amp.Boolean()),
    ]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


# -- replica to node ------------------------------------------------------------


class DeployServers(amp.Command):
    """
    The servers the deployed applications place on this node, as the
    replica's database at C{serial} holds them: a blob sent first over the
    chunked channel as C{transfer} (L{gridreg.protocol.chunking}), JSON
    C{[{"application": name, "descriptor": <ServerDescriptor as
    gridreg.registry.descriptors.server_to_json gives it>}, ...]}.

    Every replica sends it; a node applies a deployment only when C{serial}
    is newer than the one it applied last, so the replicas' copies agree.
    The node adds new servers, restarts (when running) those whose
    descriptor changed, and stops and removes the others; it answers once
    the deployment is taken in (not once servers have started).
    """

    arguments = [(b"transfer", amp.Unicode()), (b"serial", amp.Integer())]
    response = [(b"applied", amp.Boolean())]
    errors = _ERRORS


class ActivateServer(amp.Command):
    """
    Start server C{server} if it is not running (concurrent calls share one
    start) and answer once it is active: its process runs and every adapter
    it must register has registered, within its activation timeout.
    C{NodeError} says why not (disabled, failed, timed out).
    """

    arguments = [(b"server", amp.Unicode())]
    response = [(b"pid", amp.Integer())]
    errors = _ERRORS


class StopServer(amp.Command):
    """Stop server C{server}; answers once its process has exited."""

    arguments = [(b"server", amp.Unicode())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


#: IceGrid 3.7.8's refusal to start a session server that no client session holds
NOT_OWNED = "The server is not owned by a session."


class SetServerSession(amp.Command):
    """
    The master says which client session owns C{session}-activation server
    C{server} (C{""}: none). Owned, it is started like an on-demand server,
    whichever replica asks; not owned, activating it fails with
    L{NOT_OWNED}, and a running one is stopped: the answer comes once it
    has exited. The node keeps what it is told for servers it does not run
    yet; the master tells it again for all its session servers whenever it
    registers.
    """

    arguments = [(b"server", amp.Unicode()), (b"session", amp.Unicode())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


class EnableServer(amp.Command):
    """Enable or disable server C{server}: a disabled server is never activated."""

    arguments = [(b"server", amp.Unicode()), (b"enabled", amp.Boolean())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


class SignalServer(amp.Command):
    """Send C{signal} (a name such as C{SIGUSR1}, or a number) to server C{server}."""

    arguments = [(b"server", amp.Unicode()), (b"signal", amp.Unicode())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


class AdapterRegistered(amp.Command):
    """
    A managed server registered (or, with C{proxy ""}, unregistered) adapter
    C{adapter} through the calling replica's LocatorRegistry. The node
    records it and sends L{NodeLiveState} to every replica it has a session
    with (this one first, before it answers).
    """

    arguments = [
        (b"adapter", amp.Unicode()),
        (b"replica_group", amp.Unicode()),
        (b"proxy", amp.Unicode()),
    ]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


class ProcessRegistered(amp.Command):
    """Server C{server} registered its C{Ice::Process} proxy (for a graceful shutdown)."""

    arguments = [(b"server", amp.Unicode()), (b"proxy", amp.Unicode())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


class ReplicasChanged(amp.Command):
    """
    The master's replica list changed: C{replicas} as in L{RegisterNode}'s
    answer. The node opens sessions with new replicas and drops the others.
    """

    arguments = [(b"replicas", amp.Unicode())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


class ShutdownNode(amp.Command):
    """Stop every server, then the node process (C{gridadmin node shutdown})."""

    arguments: list[tuple[bytes, amp.Argument]] = []
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


#: the Ice request fields an admin router forwards (L{AdminRequest},
#: L{gridreg.protocol.commands.ReplicaAdminRequest}): C{mode} is the
#: operation mode byte, C{context} JSON C{{key: value}}, C{encoding} as
#: C{"1.1"}, C{params} the bytes inside the parameter encapsulation
ICE_REQUEST_ARGUMENTS: list[tuple[bytes, amp.Argument]] = [
    (b"facet", amp.Unicode()),
    (b"operation", amp.Unicode()),
    (b"mode", amp.Integer()),
    (b"context", amp.Unicode()),
    (b"encoding", amp.Unicode()),
    (b"params", BigBytes()),
]


class AdminRequest(amp.Command):
    """
    An Ice request for the admin object of server C{server} (its
    C{Ice.Admin} object, facet and all, as the server registered it with
    C{setServerProcessProxy}), or with C{server ""} of the node itself. The
    node sends it on and answers C{reply}: the reply body (status byte
    onward) exactly as it came back. C{NotFoundError}: no such server;
    C{NodeError}: the server is not running or did not answer.
    """

    arguments = [(b"server", amp.Unicode()), *ICE_REQUEST_ARGUMENTS]
    response = [(b"reply", BigBytes())]
    errors = _ERRORS


# -- admin commands about servers and nodes (gridadmin to any replica) ---------------


class AdminServerControl(amp.Command):
    """
    C{gridadmin server start|stop|enable|disable|signal|state|pid ID}: any
    replica relays it to the server's node over its node session.
    C{argument} is the signal for C{signal}, else C{""}. C{result} is JSON:
    C{{"server", "node", "state", "pid", "enabled"}} after the action.
    """

    arguments = [
        (b"server", amp.Unicode()),
        (b"action", amp.Unicode()),
        (b"argument", amp.Unicode()),
    ]
    response = [(b"result", amp.Unicode())]
    errors = _ERRORS


class AdminNodeControl(amp.Command):
    """
    C{gridadmin node ping|load|shutdown NAME}. C{result} is JSON: for
    C{ping} C{{"node", "alive"}}, for C{load} C{{"node", "load1", "load5",
    "load15"}}, for C{shutdown} C{{"node"}}.
    """

    arguments = [(b"node", amp.Unicode()), (b"action", amp.Unicode())]
    response = [(b"result", amp.Unicode())]
    errors = _ERRORS


# == log files (IceGrid's FileReader): replica to node ==============================
# (kept in one block: other commands are added above)


class FileUnavailableError(Exception):
    """The node cannot serve the file: the message is IceGrid's FileNotAvailableException reason."""


_FILE_ERRORS = {**_ERRORS, FileUnavailableError: b"FILE_NOT_AVAILABLE"}


class OpenNodeFile(amp.Command):
    """
    Where reading a file of the node starts: the offset of its last C{count}
    lines (negative: the whole file, 0: its end). C{server} is a server id,
    or C{""} for the node itself; C{file} is C{stdout}, C{stderr} (the
    server's or the node's C{Ice.StdOut} / C{Ice.StdErr}) or, for a server,
    the path of a log file its descriptor declares. Stateless, as IceGrid's
    FileReader: the replica keeps the iterator and its offset.
    """

    arguments = [(b"server", amp.Unicode()), (b"file", amp.Unicode()), (b"count", amp.Integer())]
    response = [(b"offset", amp.Integer())]
    errors = _FILE_ERRORS


class ReadNodeFile(amp.Command):
    """
    At most C{length} bytes (and never more than
    L{gridreg.log_files.MAX_CHUNK}) of the file L{OpenNodeFile} names, from
    C{offset}; C{size} is the file's size when read.
    """

    arguments = [
        (b"server", amp.Unicode()),
        (b"file", amp.Unicode()),
        (b"offset", amp.Integer()),
        (b"length", amp.Integer()),
    ]
    response = [(b"data", amp.String()), (b"size", amp.Integer())]
    errors = _FILE_ERRORS


# == end of log files ==========================================================
