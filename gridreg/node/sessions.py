# -*- test-case-name: tests.test_node_sessions -*-
"""
A node's sessions with the registry replicas: one with every replica.

The node finds replicas through C{Ice.Default.Locator} (each replica listed
there names itself and the master), registers with each one it finds, and
learns the others from their answers; the master tells it when a replica
joins or leaves. So a node that starts while the master is down still
registers with the slaves, gets its servers from them and starts them; and
it registers again by itself with a restarted or promoted master.

Each session is kept up by a C{ClientService} (capped back-off, forever);
keepalives carry the node's load twice per session timeout (as IceGrid's
nodes do), and a
replica that stops answering them is dropped and looked for again.
Everything the node reports (server states, registered adapters) is pushed
to every replica it has a session with.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, Optional

import attrs

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredLock, succeed
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.stringify import EndpointParseError, endpoints_from_string
from gridreg.ice.types import Endpoint, OperationMode
from gridreg.node.admin import NodeAdmin
from gridreg.node.config import NodeConfig
from gridreg.node.protocol import NodeProtocol
from gridreg.protocol.commands import PROTOCOL_VERSION, Hello
from gridreg.protocol.errors import NotFoundError, failure_reason
from gridreg.protocol.node_commands import NodeKeepAlive, NodeLiveState, RegisterNode
from gridreg.registry.discovery import MASTER, internal_identity
from gridreg.registry.epochs import NO_EPOCH, Epoch
from gridreg.registry.security import InternalSecurity
from gridreg.registry.slave import MasterEndpoint

#: how often the node asks the replicas in its Ice.Default.Locator who they are
DISCOVERY_INTERVAL = 10.0
#: how long one request to a replica may take (registration, keepalive aside)
REQUEST_TIMEOUT = 10.0
#: an AMP value holds 65,535 bytes: live state is sent in batches below that
LIVE_STATE_BATCH = 48 * 1024

Load = Callable[[], tuple[float, float, float]]


class RegistrationRefused(Exception):
    """A replica the node must not register with (a stale master, a wrong name)."""


def batches(servers: Mapping[str, Any], adapters: Mapping[str, Any]) -> list[tuple[dict, dict]]:
    """
    Split live state into (servers, adapters) batches whose JSON fits in an
    AMP value each; always at least one batch, so a full update is sent even
    when the node runs nothing.
    """
    out: list[tuple[dict, dict]] = [({}, {})]
    size = 0
    for which, items in ((0, servers), (1, adapters)):
        for key, value in items.items():
            entry = len(json.dumps({key: value}))
            if size + entry > LIVE_STATE_BATCH and (out[-1][0] or out[-1][1]):
                out.append(({}, {}))
                size = 0
            out[-1][which][key] = value
            size += entry
    return out


class ReplicaLink:
    """The node's session with one replica, kept up for as long as the replica is known."""

    log = Logger()

    def __init__(self, sessions: "NodeSessions", name: str, endpoints: Iterable[Endpoint]) -> None:
        self.sessions = sessions
        self.name = name
        self.endpoints = list(endpoints)
        #: the registered connection, until it is lost
        self.protocol: Optional[NodeProtocol] = None
        self.is_master = False
        self.session_timeout = 30.0
        reactor = sessions.reactor
        self._keepalive = LoopingCall(self._keep_alive)
        self._keepalive.clock = reactor
        self._client = ClientService(
            MasterEndpoint(self._candidates, reactor, REQUEST_TIMEOUT),
            _LinkFactory(self),
            retryPolicy=backoffPolicy(initialDelay=0.2, maxDelay=5.0, factor=1.5),
            clock=reactor,
            prepareConnection=self._register,
        )

    def _candidates(self) -> Deferred[list[Any]]:
        security, reactor = self.sessions.security, self.sessions.reactor
        return succeed([security.client_endpoint(reactor, e, self.name) for e in self.endpoints])

    def start(self) -> None:
        if self.sessions.config.trace.replica > 1:
            self.log.info(
                "[Replica] trying to establish session with replica `{replica}'", replica=self.name
            )
        self._client.startService()

    def stop(self) -> Deferred[None]:
        if self._keepalive.running:
            self._keepalive.stop()
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abortConnection()  # a hung replica never finishes a close
        return self._client.stopService()

    @property
    def registered(self) -> bool:
        return self.protocol is not None

    # -- registration --------------------------------------------------------------

    def _register(self, protocol: NodeProtocol) -> Deferred[None]:
        sessions = self.sessions
        reactor = sessions.reactor

        async def register() -> None:
            greeting = await protocol.callRemote(
                Hello, version=PROTOCOL_VERSION, role="node", name=sessions.config.name
            ).addTimeout(REQUEST_TIMEOUT, reactor)
            if greeting["replica"] != self.name:
                raise RegistrationRefused(
                    f"`{greeting['replica']}' answered at replica `{self.name}''s address"
                )
            epoch = Epoch.from_wire(greeting["epoch"])
            if greeting["master"] and epoch < sessions.seen_epoch:
                raise RegistrationRefused(
                    f"the master is of epoch {epoch}, older than epoch "
                    f"{sessions.seen_epoch} this node has seen"
                )
            answer = await protocol.callRemote(
                RegisterNode,
                name=sessions.config.name,
                info=json.dumps(sessions.info),
                epoch=sessions.seen_epoch.to_wire() if sessions.seen_epoch != NO_EPOCH else "",
            ).addTimeout(REQUEST_TIMEOUT, reactor)
            sessions.saw_epoch(answer["epoch"])
            self.is_master = bool(greeting["master"])
            self.session_timeout = float(answer["session_timeout"]) or 30.0
            self.protocol = protocol.itself()
            if self._keepalive.running:
                self._keepalive.stop()
            sessions.registered(self)
            sessions.learn(json.loads(answer["replicas"]), complete=self.is_master)
            self.send_live_state(*sessions.servers.live_state(), full=True)
            # the first keepalive at once: it carries the load, which `node load`
            # and adaptive groups would otherwise lack for half a session timeout
            self._keepalive.start(self.session_timeout / 2, now=True)

        def refused(failure: Failure) -> None:
            self.log.info(
                "[Replica] could not register with replica `{replica}': {reason}",
                replica=self.name,
                reason=failure_reason(failure),
            )
            # Closed after a pause, not by failing prepareConnection (see
            # gridreg.registry.slave: ClientService mishandles that).
            transport = protocol.transport
            if transport is not None:
                reactor.callLater(1.0, transport.abortConnection)

        return Deferred.fromCoroutine(register()).addErrback(refused)

    def _keep_alive(self) -> Optional[Deferred[None]]:
        protocol = self.protocol
        if protocol is None:
            return None
        load1, load5, load15 = self.sessions.load()

        def answered(answer: dict[str, Any]) -> None:
            self.sessions.saw_epoch(answer["epoch"])

        def unanswered(failure: Failure) -> None:
            if self.protocol is not protocol or protocol.transport is None:
                return
            if failure.check(NotFoundError):
                reason = "the replica has no session for this node any more"
            else:
                reason = failure_reason(failure)
            self.log.warn(
                "[Replica] lost the session with replica `{replica}' ({reason}); "
                "registering again",
                replica=self.name,
                reason=reason,
            )
            protocol.transport.abortConnection()

        d = protocol.callRemote(NodeKeepAlive, load1=load1, load5=load5, load15=load15)
        return d.addTimeout(self.session_timeout, self.sessions.reactor).addCallbacks(
            answered, unanswered
        )

    def send_live_state(self, servers: Mapping[str, Any], adapters: Mapping[str, Any], full: bool) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        for i, (some_servers, some_adapters) in enumerate(batches(servers, adapters)):
            d = protocol.callRemote(
                NodeLiveState,
                servers=json.dumps(some_servers),
                adapters=json.dumps(some_adapters),
                full=full and i == 0,
            )
            d.addErrback(self._not_delivered, protocol)

    def _not_delivered(self, failure: Failure, protocol: NodeProtocol) -> None:
        if self.protocol is protocol and protocol.transport is not None:
            self.log.warn(
                "[Replica] replica `{replica}' refused this node's state ({reason}); "
                "registering again",
                replica=self.name,
                reason=failure_reason(failure),
            )
            protocol.transport.abortConnection()

    def lost(self, protocol: NodeProtocol) -> None:
        if self.protocol is protocol:
            self.protocol = None
            if self._keepalive.running:
                self._keepalive.stop()
            self.sessions.unregistered(self)


class _LinkFactory(Factory):
    noisy = False

    def __init__(self, link: ReplicaLink) -> None:
        self.link = link

    def buildProtocol(self, addr: Any) -> NodeProtocol:
        return NodeProtocol(self.link)


class NodeSessions(Service):
    """Every session of one node, and what crosses all of them."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: NodeConfig,
        security: InternalSecurity,
        servers: Any,
        info: Mapping[str, Any],
        load: Load,
        shutdown: Callable[[], object] = lambda: None,
        discovery_interval: float = DISCOVERY_INTERVAL,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.security = security
        #: the node's L{gridreg.node.servers.ServerManager}
        self.servers = servers
        #: the node's end of IceGrid's admin routers
        self.admin = NodeAdmin(reactor, dict(config.properties or {}), servers)
        self.info = dict(info)
        self.load = load
        self.shutdown = shutdown
        self.links: dict[str, ReplicaLink] = {}
        #: the newest replication epoch any replica answered
        self.seen_epoch = NO_EPOCH
        self.applied_serial = -1
        self._deploying = DeferredLock()
        self._preferred: Optional[ReplicaLink] = None
        self._locators: list[Any] = []
        self._discovery = LoopingCall(self._discover)
        self._discovery.clock = reactor
        self._discovery_interval = discovery_interval
        self._on_registered: list[Callable[[str], object]] = []

    # -- the service ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        from gridreg.client.locator import LocatorClient

        locator = self.config.locator
        for endpoint in locator.endpoints:
            try:
                client = LocatorClient(
                    self.reactor,
                    attrs.evolve(locator, endpoints=(endpoint,)),
                    cache_timeout=0,
                    max_attempts=1,
                    request_timeout=REQUEST_TIMEOUT / 2,
                )
            except ValueError as exc:
                self.log.warn("Ignoring locator endpoint {endpoint}: {why}", endpoint=endpoint, why=exc)
                continue
            client.startService()
            self._locators.append(client)
        self._discovery.start(self._discovery_interval, now=True).addErrback(
            lambda f: self.log.failure("replica discovery stopped", f)
        )

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._discovery.running:
            self._discovery.stop()
        stopping = [link.stop() for link in self.links.values()]
        stopping += [client.stopService() for client in self._locators]
        self._locators = []
        return DeferredList(stopping, consumeErrors=True)

    # -- finding replicas ----------------------------------------------------------

    def _discover(self) -> Deferred[None]:
        """
        Ask every replica in Ice.Default.Locator who it is and where the
        master is; sessions follow for every replica found.
        """
        instance = self.config.instance_name

        async def ask(client: Any) -> list[dict[str, str]]:
            found = []
            registry = (await client.call("getLocalRegistry", OperationMode.NONMUTATING)).read_proxy()
            names = [MASTER]
            if registry is not None:
                own = registry.identity.name
                names.append(MASTER if own == "Registry" else own.removeprefix("Registry-"))
            for name in dict.fromkeys(names):
                try:
                    proxy = await client.find_object_by_id(internal_identity(instance, name))
                except Exception:  # not known there (yet): the other answers will do
                    continue
                found.append({"name": name, "endpoints": tuple(proxy.endpoints)})
            return found

        def learned(results: list[tuple[bool, Any]]) -> None:
            for ok, found in results:
                if ok:
                    for entry in found:
                        self._know(entry["name"], entry["endpoints"])

        return DeferredList(
            [Deferred.fromCoroutine(ask(c)) for c in self._locators], consumeErrors=True
        ).addCallback(learned)

    def learn(self, replicas: Iterable[Mapping[str, str]], complete: bool = False) -> None:
        """
        Replicas named by a replica (C{[{"name", "internal"}]}); with
        C{complete} (the master's list), those it no longer names and that
        have no session are dropped.
        """
        named = set()
        for entry in replicas:
            name = entry.get("name", "")
            try:
                endpoints = endpoints_from_string(entry.get("internal") or "")
            except EndpointParseError:
                self.log.warn("Ignoring replica {name}'s malformed endpoints", name=name)
                continue
            if name:
                named.add(name)
                self._know(name, endpoints)
        if complete:
            for name in [n for n, link in self.links.items() if n not in named and not link.registered]:
                self.links.pop(name).stop()

    def _know(self, name: str, endpoints: Iterable[Endpoint]) -> None:
        endpoints = list(endpoints)
        link = self.links.get(name)
        if link is None:
            if not endpoints or not self.running:
                return
            link = self.links[name] = ReplicaLink(self, name, endpoints)
            link.start()
            return
        # new endpoints first: after a restart or promotion they are the live ones
        link.endpoints = endpoints + [e for e in link.endpoints if e not in endpoints]

    def saw_epoch(self, wire: str) -> None:
        if wire:
            self.seen_epoch = max(self.seen_epoch, Epoch.from_wire(wire))

    # -- sessions ------------------------------------------------------------------

    def registered(self, link: ReplicaLink) -> None:
        if self.config.trace.replica > 0:
            self.log.info(
                "[Replica] established session with replica `{replica}'", replica=link.name
            )
        for callback in list(self._on_registered):
            callback(link.name)

    def unregistered(self, link: ReplicaLink) -> None:
        self.log.info(
            "[Replica] lost session with replica `{replica}'; trying to establish it again",
            replica=link.name,
        )

    def on_registered(self, callback: Callable[[str], object]) -> None:
        """Call C{callback(replica)} whenever a session is established."""
        self._on_registered.append(callback)

    def replicas(self) -> list[str]:
        """The replicas this node has a session with now."""
        return sorted(name for name, link in self.links.items() if link.registered)

    # -- what crosses every session ------------------------------------------------------

    def deploy(
        self,
        entries: list[tuple[str, Any]],
        serial: int,
        replica: str,
        live: frozenset[str] = frozenset(),
    ) -> Deferred[bool]:
        """
        A replica's deployment: applied only when newer than the last one
        applied (the replicas' databases agree on serials), in arrival order.
        C{live}: the servers written without restart (L{ServerManager.deploy}).
        """

        def apply() -> Deferred[bool]:
            if serial <= self.applied_serial:
                return succeed(False)
            self.applied_serial = serial
            if self.config.trace.server > 0:
                self.log.info(
                    "[Server] deploying {count} servers from replica `{replica}' (serial {serial})",
                    count=len(entries),
                    replica=replica,
                    serial=serial,
                )
            return self.servers.deploy(entries, live).addCallback(lambda _: True)

        return self._deploying.run(apply)

    def prefer(self, link: Optional[ReplicaLink]) -> None:
        """Push to C{link} first while it waits for the answer (a registration it relayed)."""
        self._preferred = link

    def push(self, servers: Mapping[str, Any], adapters: Mapping[str, Any]) -> None:
        """The servers' live state changed: tell every replica this node has a session with."""
        links = list(self.links.values())
        if self._preferred in links:
            links.remove(self._preferred)
            links.insert(0, self._preferred)
        for link in links:
            link.send_live_state(servers, adapters, full=False)
