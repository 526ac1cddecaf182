# -*- test-case-name: tests.test_node_sessions -*-
"""
The node's side of one node session: what a replica asks of the node.

AMP is symmetric, so the replica calls the node over the connection the
node opened: the node needs no listening port. Every responder hands the
request to the node's servers (L{gridreg.node.servers.ServerManager}) or to
its sessions; nothing here decides anything.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.ice.types import Proxy
from gridreg.protocol.chunking import TransferReceiver, TransferResponder
from gridreg.protocol.errors import TransferError
from gridreg.protocol.node_commands import (
    ActivateServer,
    AdminRequest,
    AdapterRegistered,
    DeployServers,
    EnableServer,
    ProcessRegistered,
    ReplicasChanged,
    SetServerSession,
    ShutdownNode,
    SignalServer,
    StopServer,
)
from gridreg.protocol.node_commands import OpenNodeFile, ReadNodeFile  # log files
from gridreg.registry.descriptors import DescriptorError, server_from_json
from gridreg.registry.state import decode_proxy_field

#: the largest deployment a replica may send a node at once
MAX_DEPLOYMENT_BYTES = 256 * 1024**2


def decode_proxy(text: str) -> Optional[Proxy]:
    """A proxy as node sessions carry it: base64 of its 1.1 marshaling, "" for none."""
    return decode_proxy_field(text) if text else None


class SessionLink(Protocol):
    """
    What the protocol uses of the session it carries
    (L{gridreg.node.sessions.ReplicaLink}): the replica's name, whether it
    is the master, the node's sessions, and being told the connection is gone.
    """

    name: str
    is_master: bool
    sessions: Any

    def lost(self, protocol: "NodeProtocol") -> None: ...


class NodeProtocol(TransferResponder, amp.AMP):
    """One node session, seen from the node."""

    log = Logger()

    def __init__(self, link: SessionLink) -> None:
        super().__init__()
        self.link = link
        self.transfers = TransferReceiver(MAX_DEPLOYMENT_BYTES, max_transfers=2)

    @property
    def _servers(self) -> Any:
        return self.link.sessions.servers

    def itself(self) -> "NodeProtocol":
        """This protocol, also when called through ClientService's proxy of it."""
        return self

    @DeployServers.responder
    def deploy_servers(self, transfer: str, serial: int) -> Deferred[dict[str, Any]]:
        def deploy() -> Any:
            try:
                deployment = json.loads(self.transfers.take(transfer).decode("utf-8"))
                entries = [
                    (entry["application"], server_from_json(entry["descriptor"]))
                    for entry in deployment
                ]
                # servers written without restart (absent from older replicas' deployments)
                live = frozenset(
                    server.id
                    for (_, server), entry in zip(entries, deployment)
                    if entry.get("live")
                )
            except (ValueError, KeyError, TypeError, AttributeError, DescriptorError) as exc:
                raise TransferError(f"a malformed deployment: {exc}") from None
            return self.link.sessions.deploy(entries, serial, self.link.name, live)

        return maybeDeferred(deploy).addCallback(lambda applied: {"applied": applied})

    @ActivateServer.responder
    def activate_server(self, server: str) -> Deferred[dict[str, Any]]:
        return maybeDeferred(self._servers.activate, server).addCallback(
            lambda pid: {"pid": pid or 0}
        )

    @StopServer.responder
    def stop_server(self, server: str) -> Deferred[dict[str, Any]]:
        return maybeDeferred(self._servers.stop, server).addCallback(lambda _: {})

    @SetServerSession.responder
    def set_server_session(self, server: str, session: str) -> Deferred[dict[str, Any]]:
        return maybeDeferred(self._servers.set_session, server, session).addCallback(lambda _: {})

    @EnableServer.responder
    def enable_server(self, server: str, enabled: bool) -> dict[str, Any]:
        self._servers.enable(server, enabled)
        return {}

    @SignalServer.responder
    def signal_server(self, server: str, signal: str) -> dict[str, Any]:
        self._servers.signal(server, signal)
        return {}

    @AdapterRegistered.responder
    def adapter_registered(self, adapter: str, replica_group: str, proxy: str) -> dict[str, Any]:
        # The live state reaches every replica (this one first) from inside
        # this call, before the answer goes back on this connection.
        self.link.sessions.prefer(self.link)
        try:
            self._servers.adapter_registered(adapter, replica_group, decode_proxy(proxy))
        finally:
            self.link.sessions.prefer(None)
        return {}

    @ProcessRegistered.responder
    def process_registered(self, server: str, proxy: str) -> dict[str, Any]:
        decoded = decode_proxy(proxy)
        if decoded is not None:
            self._servers.process_registered(server, decoded)
        return {}

    @AdminRequest.responder
    def admin_request(
        self,
        server: str,
        facet: str,
        operation: str,
        mode: int,
        context: str,
        encoding: str,
        params: bytes,
    ) -> Deferred[dict[str, Any]]:
        d = maybeDeferred(
            self.link.sessions.admin.request,
            server,
            facet,
            operation,
            mode,
            json.loads(context or "{}"),
            encoding,
            params,
        )
        return d.addCallback(lambda reply: {"reply": reply})

    @ReplicasChanged.responder
    def replicas_changed(self, replicas: str) -> dict[str, Any]:
        self.link.sessions.learn(json.loads(replicas), complete=self.link.is_master)
        return {}

    @ShutdownNode.responder
    def shutdown_node(self) -> dict[str, Any]:
        self.log.warn(
            "Node {node} was asked to shut down by replica {replica}",
            node=self.link.sessions.config.name,
            replica=self.link.name,
        )
        # after the answer is written
        self.link.sessions.reactor.callLater(0, self.link.sessions.shutdown)
        return {}

    # == log files (IceGrid's FileReader) ==========================================

    def _files(self) -> Any:
        from gridreg.node.files import NodeFiles

        sessions = self.link.sessions
        return NodeFiles(sessions.reactor, sessions.config, sessions.servers)

    @OpenNodeFile.responder
    def open_node_file(self, server: str, file: str, count: int) -> Deferred[dict[str, Any]]:
        return self._files().open(server, file, count).addCallback(lambda o: {"offset": o})

    @ReadNodeFile.responder
    def read_node_file(
        self, server: str, file: str, offset: int, length: int
    ) -> Deferred[dict[str, Any]]:
        d = self._files().read(server, file, offset, length)
        return d.addCallback(lambda r: {"data": r[0], "size": r[1]})

    # == end of log files ===========================================================

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.transfers.clear()
        self.link.lost(self)
