# -*- test-case-name: tests.test_registry_nodes -*-
"""
A replica's side of node sessions (L{gridreg.protocol.node_commands}).

Every replica, master and slave alike, accepts sessions from nodes, sends
each node the servers the deployed applications place on it, and keeps what
the node reports (server states, registered adapters, load) as the node's
live state: never a master write, gone when the session ends. A node that
registers again under the same name takes over at once (IceGrid refuses it
until the old session times out).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols import amp

from gridreg.ice.stringify import endpoints_to_string
from gridreg.protocol.chunking import new_transfer_id, send_blob
from gridreg.protocol.errors import NodeError, NodeUnreachableError, NotFoundError, failure_reason
from gridreg.protocol.node_commands import DeployServers, ReplicasChanged
from gridreg.registry.discovery import MASTER
from gridreg.registry.loadbalancing import LoadSamples
from gridreg.registry.state import AdapterInfo, decode_proxy_field

if TYPE_CHECKING:
    from gridreg.registry.descriptors import DeployedServer
    from gridreg.registry.roles import Replica

#: seconds added to a node-side timeout, so the node answers before the replica gives up
MARGIN = 5.0
#: what a node runs, as sent: server id to (application, descriptor JSON,
#: written without restart)
Plan = dict[str, tuple[str, dict[str, Any], bool]]


@attrs.define(eq=False)
class NodeSession:
    """One node, as this replica sees it."""

    name: str
    protocol: amp.AMP
    info: dict[str, Any]
    heard: float
    load: Optional[LoadSamples] = None
    #: server id to {"state", "pid", "enabled"}, as the node reported
    servers: dict[str, dict[str, Any]] = attrs.Factory(dict)
    adapters: dict[str, AdapterInfo] = attrs.Factory(dict)
    #: the servers last sent in DeployServers (None: nothing sent yet)
    deployed: Optional[Plan] = None
    closed: bool = False

    def abort(self) -> None:
        self.closed = True
        transport: Any = self.protocol.transport
        if transport is not None:
            transport.abortConnection()


class NodeSessions:
    """The node sessions of one replica, and what they report."""

    log = Logger()

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.sessions: dict[str, NodeSession] = {}
        self._applications: list[Any] = []
        self._announced: Optional[str] = None
        self._on_registered: list[Callable[[str], object]] = []
        #: told of node changes (L{gridreg.registry.observers.ObserverHub}'s
        #: node_up, node_down, server_updated, adapter_updated)
        self.listeners: list[Any] = []
        self._watch = LoopingCall(self._drop_silent)
        self._watch.clock = replica.reactor
        replica.state.node_load = self.load_of
        # told only when the applications may have changed: it follows nothing else
        replica.state.on_change(self._state_changed, deployed_only=True)

    @property
    def timeout(self) -> int:
        return self.replica.config.node_session_timeout

    @property
    def _trace(self) -> Any:
        return self.replica.config.trace

    def start(self) -> None:
        if not self._watch.running:
            self._watch.start(self.timeout / 4, now=False)

    def stop(self) -> None:
        if self._watch.running:
            self._watch.stop()
        for session in list(self.sessions.values()):
            self._forget(session, "the registry is stopping")

    # -- sessions ------------------------------------------------------------------

    def register(self, protocol: amp.AMP, name: str, info: dict[str, Any]) -> dict[str, Any]:
        """Accept node C{name} on C{protocol}; an older session of it is closed at once."""
        old = self.sessions.get(name)
        if old is not None and old.protocol is not protocol:
            self._forget(old, "it registered again on another connection")
        clock = self.replica.reactor
        session = NodeSession(name, protocol, info, clock.seconds())
        self.sessions[name] = session
        self._tell("node_up", session)
        if self._trace.node > 0:
            self.log.info(
                "[Node] node `{node}' up (hostname {hostname})",
                node=name,
                hostname=info.get("hostname", "?"),
            )
        # after the answer, on the same connection
        clock.callLater(0, self._deploy, session)
        for callback in self._on_registered:
            clock.callLater(0, callback, name)
        return {
            "replica": self.replica.config.replica_name,
            "replicas": json.dumps(self.replicas()),
            "session_timeout": self.timeout,
            "epoch": self.replica.role.epoch().to_wire(),
        }

    def on_registered(self, callback: Callable[[str], object]) -> None:
        """Call C{callback(node)} after each registration, once its servers are on their way."""
        self._on_registered.append(callback)

    def session_on(self, protocol: amp.AMP) -> NodeSession:
        for session in self.sessions.values():
            if session.protocol is protocol and not session.closed:
                return session
        raise NotFoundError("no node session on this connection: register first")

    def keepalive(self, protocol: amp.AMP, load: LoadSamples) -> str:
        session = self.session_on(protocol)
        session.heard = self.replica.reactor.seconds()
        session.load = load
        return self.replica.role.epoch().to_wire()

    def live_state(
        self, protocol: amp.AMP, servers: dict[str, Any], adapters: dict[str, Any], full: bool
    ) -> None:
        """What changed on the node: server states and registered adapters."""
        session = self.session_on(protocol)
        session.heard = self.replica.reactor.seconds()
        before = dict(session.adapters)
        if full:
            gone = set(session.servers) - set(servers)
            session.servers = {s: v for s, v in session.servers.items() if s not in gone}
            session.adapters = {}
        for server_id, value in servers.items():
            self._server_state(session, server_id, dict(value))
        state = self.replica.state
        for adapter_id, value in adapters.items():
            text = value.get("proxy", "")
            if not text:
                session.adapters.pop(adapter_id, None)
                continue
            deployed_group = state.deployed_group_of(adapter_id)
            group = deployed_group if deployed_group is not None else value.get("replica_group", "")
            session.adapters[adapter_id] = AdapterInfo(
                adapter_id, decode_proxy_field(text), group or ""
            )
        state.set_node_adapters(session.name, session.adapters)
        if self.listeners:
            for adapter_id in sorted(set(before) | set(session.adapters)):
                now = session.adapters.get(adapter_id)
                if now != before.get(adapter_id):
                    proxy = now.proxy if now is not None else None
                    self._tell("adapter_updated", session.name, adapter_id, proxy)

    def _server_state(self, session: NodeSession, server_id: str, value: dict[str, Any]) -> None:
        previous = session.servers.get(server_id, {})
        old = previous.get("state")
        session.servers[server_id] = value
        new = value.get("state")
        if value != previous:
            self._tell("server_updated", session.name, server_id, value)
        if new != old and self._trace.server > 0:
            self.log.info(
                "[Server] changed server `{server}' state to `{state}'",
                server=server_id,
                state=str(new).capitalize(),
            )

    def lost(self, protocol: amp.AMP) -> None:
        """A node's connection is gone."""
        for session in list(self.sessions.values()):
            if session.protocol is protocol:
                self._forget(session, "its connection was lost")

    def _forget(self, session: NodeSession, why: str) -> None:
        session.abort()
        if self.sessions.get(session.name) is session:
            del self.sessions[session.name]
            self.replica.state.set_node_adapters(session.name, {})
            self._tell("node_down", session.name)
            if self._trace.node > 0:
                self.log.info("[Node] node `{node}' down: {why}", node=session.name, why=why)

    def _tell(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:  # an observer's trouble must not break the node session
                self.log.failure("Telling the observers of a node change failed")

    def _drop_silent(self) -> None:
        try:
            now = self.replica.reactor.seconds()
            for session in list(self.sessions.values()):
                if now - session.heard > self.timeout:
                    self.log.warn(
                        "[Node] dropping node `{node}': nothing heard from it for {seconds:.1f} s",
                        node=session.name,
                        seconds=now - session.heard,
                    )
                    self._forget(session, "session timed out")
        except Exception:  # a LoopingCall that raises stops for good
            self.log.failure("Could not check the nodes' keepalives")

    # -- what others ask -------------------------------------------------------------

    def load_of(self, node: str) -> Optional[LoadSamples]:
        session = self.sessions.get(node)
        return session.load if session is not None else None

    def server(self, server_id: str) -> Optional[tuple[str, DeployedServer]]:
        """The application deploying server C{server_id}, and the server."""
        for name, app in self.replica.state.deployed.derived.items():
            server = app.servers.get(server_id)
            if server is not None:
                return name, server
        return None

    def server_status(self, server_id: str, node: str) -> dict[str, Any]:
        """C{{"state", "pid", "enabled"}} as the node reported ("unknown" without a session)."""
        session = self.sessions.get(node)
        if session is None:
            return {"state": "unknown", "pid": None, "enabled": None}
        value = session.servers.get(server_id, {})
        return {
            "state": value.get("state", "inactive"),
            "pid": value.get("pid"),
            "enabled": value.get("enabled", True),
        }

    def call(
        self, node: str, command: type[amp.Command], timeout: float, **kwargs: Any
    ) -> Deferred[dict[str, Any]]:
        """
        Call C{command} on node C{node}; fails with L{NodeUnreachableError}
        without a session, L{NodeError} when the node does not answer in time.
        """
        session = self.sessions.get(node)
        if session is None or session.closed:
            return fail(NodeUnreachableError(f"node `{node}' is not active"))
        clock = self.replica.reactor

        def failed(failure: Any) -> Any:
            if failure.check(NodeError, NodeUnreachableError, NotFoundError):
                return failure
            return fail(NodeError(f"node `{node}': {failure_reason(failure, timeout)}"))

        d = session.protocol.callRemote(command, **kwargs).addTimeout(timeout, clock)
        return d.addErrback(failed)

    def replicas(self) -> list[dict[str, str]]:
        """The replicas a node should have sessions with: name and internal endpoints."""
        directory = self.replica.directory
        master = self.replica.master
        if master is not None:
            names = [directory.name, *sorted(master.live_slaves())]
        else:
            names = directory.known()
        found = []
        for name in names:
            endpoints = directory.endpoints_of(name)
            if endpoints is not None and endpoints.internal:
                found.append({"name": name, "internal": endpoints_to_string(endpoints.internal)})
        return found

    def announce_replicas(self, replicas: dict[str, dict[str, str]]) -> None:
        """The master's replica set changed: tell every node (C{ReplicasChanged})."""
        listed = [
            {"name": name, "internal": endpoints.get("internal", "")}
            for name, endpoints in sorted(replicas.items(), key=lambda i: (i[0] != MASTER, i[0]))
            if endpoints.get("internal")
        ]
        payload = json.dumps(listed)
        if payload == self._announced:
            return
        self._announced = payload
        for session in list(self.sessions.values()):
            self.call(session.name, ReplicasChanged, self.timeout, replicas=payload).addErrback(
                lambda f, s=session: self.log.warn(
                    "[Node] could not tell node `{node}' the replicas: {why}",
                    node=s.name,
                    why=f.getErrorMessage(),
                )
            )

    # -- deployment ------------------------------------------------------------------

    def plan(self) -> dict[str, Plan]:
        """What every node should run, by node name."""
        nodes: dict[str, Plan] = {}
        deployed = self.replica.state.deployed
        if not deployed.derived:
            return nodes
        from gridreg.registry.descriptors import server_to_json  # only with applications

        for name, app in deployed.derived.items():
            meta = deployed.metadata.get(name)
            live = meta is not None and meta.live_update
            for server_id, server in app.servers.items():
                nodes.setdefault(server.node, {})[server_id] = (
                    name,
                    server_to_json(server.descriptor),
                    live,
                )
        return nodes

    def _state_changed(self) -> None:
        """Send DeployServers to the nodes whose servers changed with the applications."""
        applications = list(self.replica.state.deployed.derived.values())
        if len(applications) == len(self._applications) and all(
            a is b for a, b in zip(applications, self._applications)
        ):
            return
        self._applications = applications
        plan = self.plan()
        for session in list(self.sessions.values()):
            servers = plan.get(session.name, {})
            if session.deployed is not None and servers != session.deployed:
                self._deploy(session, servers)

    def _deploy(self, session: NodeSession, servers: Optional[Plan] = None) -> None:
        """Send C{servers} (by default what the node should run now) to the node."""
        if session.closed:
            return
        if servers is None:
            servers = self.plan().get(session.name, {})
        session.deployed = servers
        payload = json.dumps(
            [
                {"application": app, "descriptor": descriptor, "live": live}
                for _, (app, descriptor, live) in sorted(servers.items())
            ]
        ).encode("utf-8")
        serial = int(self.replica.store.serial)
        clock = self.replica.reactor

        def call(command: type[amp.Command], **kwargs: Any) -> Deferred[Any]:
            return session.protocol.callRemote(command, **kwargs).addTimeout(self.timeout, clock)

        transfer = new_transfer_id("deploy")
        d = send_blob(call, transfer, payload)
        d.addCallback(lambda _: call(DeployServers, transfer=transfer, serial=serial))

        def deployed(answer: dict[str, Any]) -> None:
            if self._trace.node > 1:
                self.log.info(
                    "[Node] sent {count} server(s) at serial {serial} to node `{node}'",
                    count=len(servers),
                    serial=serial,
                    node=session.name,
                )

        def failed(failure: Any) -> None:
            if not session.closed:
                self.log.warn(
                    "[Node] could not deploy servers to node `{node}': {why}",
                    node=session.name,
                    why=failure_reason(failure, self.timeout),
                )

        d.addCallbacks(deployed, failed)
