# -*- test-case-name: tests.test_node_sessions -*-
"""
A node as one Twisted service: the composition root.

Starting it makes the data directory, settles what a previous run left
(servers still running after the node was killed are stopped, never
doubled), then opens a session with every replica. Stopping it (SIGTERM,
or C{gridadmin node shutdown}) stops every server first, while the
replicas still hear about it, then closes the sessions.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any, Mapping, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gridreg._version import __version__
from gridreg.node.config import NodeConfig
from gridreg.node.sessions import Load, NodeSessions
from gridreg.registry.security import InternalSecurity

#: the longest a stopping node waits for its servers before closing its sessions
STOP_TIMEOUT = 120.0


def node_info(config: NodeConfig) -> dict[str, Any]:
    """What the registry shows of this node (IceGrid's NodeInfo)."""
    uname = platform.uname()
    return {
        "hostname": socket.gethostname(),
        "os": uname.system,
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
        "nproc": os.cpu_count() or 1,
        "data": config.data_dir,
        "gridreg": __version__,
    }


def _load_sampler(config: NodeConfig) -> Load:
    """The node's load: its load-average file divided by its processors."""
    from gridreg.node.load import LoadSampler

    def read() -> str:
        with open(config.load_file, encoding="ascii") as f:
            return f.read()

    return LoadSampler(read, lambda: config.processors or os.cpu_count()).sample


class NodeService(Service):
    """One node: its servers and its sessions with the replicas."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: NodeConfig,
        security: Optional[InternalSecurity] = None,
        servers: Any = None,
        load: Optional[Load] = None,
        stdout: Any = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.security = security or InternalSecurity.insecure()
        if servers is None:
            from gridreg.node.servers import ServerManager

            servers = ServerManager(reactor, config, self._live_state_changed)
        if load is None:
            load = _load_sampler(config)
        self.servers = servers
        self.sessions = NodeSessions(
            reactor,
            config,
            self.security,
            self.servers,
            node_info(config),
            load,
            shutdown=self._shutdown,
        )
        self._stdout = stdout or sys.stdout
        self._ready_printed = False

    def _live_state_changed(self, servers: Mapping[str, Any], adapters: Mapping[str, Any]) -> None:
        self.sessions.push(servers, adapters)
        self._maybe_print_ready()

    def _maybe_print_ready(self) -> None:
        """IceGrid.Node.PrintServersReady: C{<token> ready} once every C{always} server is up."""
        token = self.config.print_servers_ready
        if not token or self._ready_printed or self.sessions.applied_serial < 0:
            return
        states, _ = self.servers.live_state()
        waiting = [
            server_id
            for server_id, info in self.servers.always_servers().items()
            if states.get(server_id, {}).get("state") != "active"
        ]
        if not waiting:
            self._ready_printed = True
            self._stdout.write(f"{token} ready\n")
            self._stdout.flush()

    def startService(self) -> None:
        super().startService()
        os.makedirs(os.path.join(self.config.data_dir, "servers"), exist_ok=True)
        self.log.info(
            "Node {node} starting: finding the registry replicas through {locator}",
            node=self.config.name,
            locator=self.config.locator,
        )

        def settled(_: object) -> None:
            if self.running:
                self.sessions.startService()
                self.sessions.on_registered(self._registered)

        def failed(failure: Any) -> None:
            self.log.critical(
                "Node {node} cannot start: {reason}",
                node=self.config.name,
                reason=failure.getErrorMessage(),
            )
            if getattr(self.reactor, "running", False):
                self.reactor.stop()

        self.servers.start().addCallbacks(settled, failed)

    def _registered(self, replica: str) -> None:
        self.log.info(
            "Node {node} has a session with replica {replica}", node=self.config.name, replica=replica
        )
        self._maybe_print_ready()

    def _shutdown(self) -> None:
        if getattr(self.reactor, "running", False):
            self.reactor.stop()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        d = self.servers.stop_all().addTimeout(STOP_TIMEOUT, self.reactor)
        d.addErrback(
            lambda f: self.log.error("Node {node}: servers did not all stop: {reason}",
                                     node=self.config.name, reason=f.getErrorMessage())
        )

        def close(_: object) -> Deferred[Any]:
            if self.sessions.running:
                return self.sessions.stopService()
            return Deferred.fromCoroutine(_nothing())

        return d.addCallback(close)


async def _nothing() -> None:
    return None
