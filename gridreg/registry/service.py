# -*- test-case-name: tests.test_replication -*-
"""
A registry replica as one Twisted service: the composition root.

Starting it opens the store, loads the state into memory, then listens on
the client, server and internal endpoints, in that order, so no locate
request is ever answered from an empty state; then it takes up its role,
the master's (L{MasterRole}) or a slave's (L{SlaveRole}). Stopping it lets
queued writes finish, closes every Ice connection gracefully (so clients
fail over at once), closes the replica and admin sessions, stops listening
and closes the store last.
"""

from __future__ import annotations

import os
import random
import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.servant import ObjectAdapter
from gridreg.ice.server import IceServerFactory
from gridreg.ice.stringify import endpoints_to_string
from gridreg.ice.types import Endpoint, Identity, Proxy
from gridreg.registry.reactor_probe import ReactorProbe, probe_from
from gridreg.registry._readiness import RegistryStartError, build_readiness
from gridreg.registry.admin_routers import AdminRouters
from gridreg.registry.admin_model import AdminModel
from gridreg.registry.ice_sessions import IceSessions
from gridreg.registry.config import RegistryConfig
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.discovery import MASTER, ReplicaEndpoints, registry_identity
from gridreg.registry.discovery_service import Discovery
from gridreg.registry.internal import InternalFactory
from gridreg.registry.listen import listen_ice, published_endpoint
from gridreg.registry.node_relay import NodeRelay
from gridreg.registry.nodes import NodeSessions
from gridreg.registry.peers import Peers
from gridreg.registry.replica_set import ReplicaDirectory
from gridreg.registry.roles import IReplicaRole
from gridreg.registry.security import InternalSecurity
from gridreg.registry.servants import (
    LocatorFinderServant,
    LocatorRegistryServant,
    LocatorServant,
    PublishedProxies,
    QueryServant,
    RegistryServant,
)
from gridreg.registry.state import RegistryState
from gridreg.registry.verifiers import build_verifiers
from gridreg.store.interfaces import IRegistryStore
from gridreg.store.records import StoreState

if TYPE_CHECKING:  # imported where they are used: a slave never uses some of them
    from gridreg.registry.activation import Activator
    from gridreg.registry.allocation import AllocationManager
    from gridreg.registry.glacier2_managers import Glacier2Managers, ManagerAdapter
    from gridreg.registry.session_servers import SessionServers

__all__ = ["RegistryService", "RegistryStartError"]

#: the listening ports of the Glacier2 session manager adapters, when configured
GLACIER2_KINDS = ("session_manager", "admin_session_manager")

#: the longest a stopping replica waits for its writes to drain, then for its
#: connections to close, before it closes its store anyway
STOP_TIMEOUT = 5.0


def _role(service: "RegistryService") -> IReplicaRole:
    """The master's role or a slave's, whose module alone is imported."""
    if service.config.is_master:
        from gridreg.registry.master_role import MasterRole

        return MasterRole(service)
    from gridreg.registry.slave_role import SlaveRole

    return SlaveRole(service)


class _NoGlacier2:
    """
    The Glacier2 session managers of a replica configured without any (the
    usual case): nothing to serve, warn of or publish, and
    L{gridreg.registry.glacier2_managers} left unimported.
    """

    adapters: Sequence["ManagerAdapter"] = ()

    def warn(self) -> None:
        pass

    def published(self, kind: str) -> tuple[Endpoint, ...]:
        return ()


def _glacier2(
    reactor: Any, config: RegistryConfig, sessions: IceSessions
) -> "Glacier2Managers | _NoGlacier2":
    """The replica's Glacier2 session managers (L{Glacier2Managers}), when configured."""
    if not (config.session_manager_endpoints or config.admin_session_manager_endpoints):
        return _NoGlacier2()
    from gridreg.registry.glacier2_managers import Glacier2Managers

    return Glacier2Managers(reactor, config, sessions)


class _Activation:
    """
    On-demand activation for the Locator, its L{Activator} made at the first
    locate request that may need one (an adapter it has no endpoints for):
    a replica whose clients find every adapter, as a fresh slave's first
    clients do, never imports L{gridreg.registry.activation}.
    """

    def __init__(self, state: RegistryState, nodes: NodeSessions) -> None:
        self._state = state
        self._nodes = nodes
        self._activator: Optional["Activator"] = None

    @property
    def activator(self) -> "Activator":
        if self._activator is None:
            from gridreg.registry.activation import Activator

            self._activator = Activator(self._state, self._nodes)
        return self._activator

    def is_managed(self, adapter_id: str) -> bool:
        return self.activator.is_managed(adapter_id)

    def activate_for(self, adapter_id: str) -> Deferred[str]:
        return self.activator.activate_for(adapter_id)


def _exit_failed() -> None:
    """
    End a registry whose start-up failed once the reactor ran, with status 1:
    C{twist} would exit 0 when its reactor stops.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


class RegistryService(Service):
    """One registry replica: store, in-memory state, endpoints, and its role."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: RegistryConfig,
        store: IRegistryStore,
        rng: Optional[random.Random] = None,
        security: Optional[InternalSecurity] = None,
    ) -> None:
        self.reactor = reactor
        #: GridReg.Debug.ReactorProbe: how late timers run (benchmarks)
        self.reactor_probe: Optional[ReactorProbe] = None
        self.config = config
        self.store = store
        self.security = security or InternalSecurity.insecure()
        self.state = RegistryState(rng)
        self.database = RegistryDatabase(
            store, self.state, config.dynamic_registration, config.trace
        )
        self.published = PublishedProxies()
        self.directory = ReplicaDirectory(config, self.state, self.published)
        self.peers = Peers(reactor, config, self.security)
        self.client_adapter = ObjectAdapter("Client")
        self.server_adapter = ObjectAdapter("Server")
        self.client_factory = IceServerFactory(
            self.client_adapter,
            config.message_size_max,
            clock=reactor,
            acm=config.client_acm,
            read_pause=config.client_read_pause_us / 1e6,
        )
        self.server_factory = IceServerFactory(
            self.server_adapter, config.message_size_max, clock=reactor, acm=config.server_acm
        )
        self.internal_factory = InternalFactory(
            self, self._admin_responder, self.security.authorize
        )
        self.ports: dict[str, list[IListeningPort]] = {
            kind: [] for kind in ("client", "server", "internal", *GLACIER2_KINDS)
        }
        self.role: IReplicaRole = _role(self)
        self._starting = False
        self._readiness = build_readiness()
        self.state.on_change(self.client_adapter.invalidate)
        self.nodes = NodeSessions(self)
        self.activation = _Activation(self.state, self.nodes)
        # answers IceLocatorDiscovery lookups with the Locator of every active replica
        self.discovery = Discovery(
            reactor,
            config.instance_name,
            config.discovery_endpoints,
            lambda: self.published.locator,
            config.discovery_trace,
        )
        #: allocation lives on the master only; a slave refuses client sessions
        self.allocations: Optional[AllocationManager] = None
        #: who owns each session-activation server: the master's allocations
        self.session_servers: Optional[SessionServers] = None
        if config.is_master:
            from gridreg.registry.allocation import AllocationManager
            from gridreg.registry.session_servers import SessionServers

            self.allocations = AllocationManager(self.state, reactor)
            self.session_servers = SessionServers(self.allocations, self.nodes, config.trace)
        self.admin_model = AdminModel(self)
        self.ice_sessions = IceSessions(
            self,
            self.client_adapter,
            self.admin_model,
            config.session_timeout,
            self._verifiers(),
        )
        #: IceGrid's admin routers (getServerAdmin, getNodeAdmin, getRegistryAdmin)
        self.admin_routers = AdminRouters(self, self.ice_sessions)
        self.admin_routers.install(self.client_adapter)
        #: the Glacier2 session managers, each on its own adapter, when configured
        self.glacier2 = _glacier2(reactor, config, self.ice_sessions)
        for where in self.glacier2.adapters:
            if where.kind == "admin_session_manager":  # its admin sessions' get*Admin proxies
                self.admin_routers.install(where.adapter, require_session=False)
        self.glacier2_factories: dict[str, IceServerFactory] = {}
        if self.glacier2.adapters:
            from gridreg.registry.glacier2_managers import ManagerFactory

            self.glacier2_factories = {
                where.kind: ManagerFactory(
                    self.client_factory, where.adapter, config.message_size_max, clock=reactor
                )
                for where in self.glacier2.adapters
            }
        self._add_servants()

    def _admin_responder(self, protocol: Any) -> Any:
        """
        The admin commands of one internal connection. Imported at the first
        connection, not at start-up: a replica no one connects to never
        loads the admin surface (C{tests.test_registry_launch}).
        """
        from gridreg.registry.admin import AdminResponder

        return AdminResponder(self, protocol)

    def _verifiers(self) -> dict[str, Any]:
        """The session verifiers the IceGrid.Registry.*PermissionsVerifier properties set."""
        config = self.config
        return build_verifiers(
            config.verifiers, config.crypt_passwords, config.instance_name, self.reactor, self.state
        )

    @property
    def client_ports(self) -> list[IListeningPort]:
        return self.ports["client"]

    @property
    def master(self) -> Any:
        """The master's replication (sessions, fan-out), or None on a slave."""
        return self.role.replication if self.role.is_master else None

    @property
    def slave(self) -> Any:
        """The slave's replication, or None on the master."""
        return None if self.role.is_master else self.role.replication

    def _add_servants(self) -> None:
        instance = self.config.instance_name
        self.client_adapter.add(
            Identity("Locator", instance),
            LocatorServant(self.state, self.published, self.config.trace, self.activation),
        )
        self.client_adapter.add(Identity("Query", instance), QueryServant(self.state))
        self.client_adapter.add(
            registry_identity(instance, self.config.replica_name),
            RegistryServant(
                self.config.session_timeout,
                int(self.config.client_acm.timeout),
                self.ice_sessions,
            ),
        )
        self.client_adapter.add(
            Identity("LocatorFinder", "Ice"), LocatorFinderServant(self.published)
        )
        self.server_adapter.add(
            Identity("LocatorRegistry", instance),
            LocatorRegistryServant(self.database, NodeRelay(self.nodes, self.database)),
        )

    # -- start -----------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Open the store and listen. Both finish at once with the stores and
        TCP endpoints gridreg uses, so a failure (a corrupt database, a port
        in use) stops twistd right here with the reason, and a non-zero exit.
        """
        super().privilegedStartService()
        self._starting = True
        self.store.open().addCallback(self._loaded).addBoth(self._started)
        failure = self._readiness.failure()
        if failure is not None:
            raise SystemExit(f"gridregistry: cannot start: {failure.getErrorMessage()}")

    def startService(self) -> None:
        if not self._starting:
            self.privilegedStartService()
        super().startService()

    def _loaded(self, stored: StoreState) -> Deferred[None]:
        if self.config.initdb_from_replica:
            return Deferred.fromCoroutine(self._initdb(stored)).addCallback(self._serve)
        return self._serve(stored)

    async def _initdb(self, stored: StoreState) -> StoreState:
        """Replace the database with a copy of the replica C{--initdb-from-replica} names."""
        from gridreg.registry.initdb import fetch_database  # only with --initdb-from-replica

        name = self.config.initdb_from_replica
        assert name is not None
        copy = await fetch_database(
            self.peers,
            name,
            stored.records.get("replica", {}),
            max(60.0, self.config.replica_session_timeout),
        )
        await self.peers.stop()  # its locator clients were made before this replica listened
        await self.store.replace_all(copy)
        self.log.warn(
            "Replica {replica} now holds a copy of {source}'s database (serial {serial}); "
            "its own was replaced",
            replica=self.config.replica_name,
            source=name,
            serial=copy.serial,
        )
        return copy

    def _serve(self, stored: StoreState) -> Deferred[None]:
        self.state.load(stored.records)
        self.log.info(
            "Registry replica {replica} of {instance} loaded {adapters} adapters and "
            "{objects} objects at serial {serial}",
            replica=self.config.replica_name,
            instance=self.config.instance_name,
            adapters=len(self.state.adapters),
            objects=len(self.state.objects),
            serial=stored.serial,
        )
        config = self.config
        self.reactor_probe = probe_from(config.reactor_probe_ms, self.reactor)
        if self.reactor_probe is not None:
            self.reactor_probe.start()
        ice_tls = self.security.ice_tls()
        ice = [
            ("client", config.client_endpoints, self.client_factory),
            ("server", config.server_endpoints, self.server_factory),
            *(
                (where.kind, where.endpoints, self.glacier2_factories[where.kind])
                for where in self.glacier2.adapters
            ),
        ]
        listening = [
            (kind, listen_ice(self.reactor, endpoint, factory, ice_tls))
            for kind, endpoints, factory in ice
            for endpoint in endpoints
        ] + [
            ("internal", self.security.listen(self.reactor, endpoint, self.internal_factory))
            for endpoint in config.internal_endpoints
        ]
        self.glacier2.warn()
        kinds = [kind for kind, _ in listening]
        return DeferredList(
            [d for _, d in listening], fireOnOneErrback=True, consumeErrors=True
        ).addCallbacks(
            lambda results: self._listening(kinds, results), lambda f: f.value.subFailure
        )

    def _listening(self, kinds: list[str], results: list[tuple[bool, IListeningPort]]) -> None:
        for kind, (_, port) in zip(kinds, results):
            self.ports[kind].append(port)
        config = self.config

        def published(
            given: Optional[tuple[Endpoint, ...]], endpoints: Sequence[Endpoint], kind: str
        ) -> tuple[Endpoint, ...]:
            return given or tuple(
                published_endpoint(e, p) for e, p in zip(endpoints, self.ports[kind])
            )

        for where in self.glacier2.adapters:
            where.published = published(where.given, where.endpoints, where.kind)
        own = self.directory.own = ReplicaEndpoints(
            published(config.client_published, config.client_endpoints, "client"),
            published(config.server_published, config.server_endpoints, "server"),
            published(None, config.internal_endpoints, "internal"),
            self.glacier2.published("session_manager"),
            self.glacier2.published("admin_session_manager"),
        )
        self.published.locator_registry = Proxy(
            Identity("LocatorRegistry", config.instance_name), endpoints=own.server
        )
        self.directory.rediscover()
        self.nodes.start()
        self.ice_sessions.start()
        self.log.info(
            "Registry {replica} serves clients on {endpoints}",
            replica=config.replica_name,
            endpoints=endpoints_to_string(own.client),
        )
        self.discovery.start()
        self.role.start()

    def _started(self, result: object) -> None:
        if isinstance(result, Failure):
            self.log.critical(
                "Registry replica {replica} failed to start: {reason}",
                replica=self.config.replica_name,
                reason=result.getErrorMessage(),
            )
            self._readiness.failed(result)
            if self.running and getattr(self.reactor, "running", False):
                # failed after start-up returned (the store's read, --initdb-from-replica):
                # stop, and exit non-zero as a failure found before the reactor ran does
                self.reactor.addSystemEventTrigger("after", "shutdown", _exit_failed)
                self.reactor.stop()
        else:
            self._readiness.started()

    def when_ready(self) -> Deferred[None]:
        """A fresh Deferred fired once the replica answers requests."""
        return self._readiness.when_ready()

    # -- what the admin sees -------------------------------------------------------------

    def replica_info(self) -> list[dict[str, Any]]:
        """Every known replica: name, role, endpoints, serial, lag, alive, state and why."""
        me = self.config.replica_name
        master_serial = self.store.serial if self.role.is_master else None
        info = []
        for name in self.directory.known():
            endpoints = self.directory.endpoints_of(name)
            serial = self.role.serial_of(name)
            status = self.role.status_of(name)
            entry: dict[str, Any] = {
                "name": name,
                "role": "master" if name == MASTER else "slave",
                "client": endpoints_to_string(endpoints.client) if endpoints else "",
                "server": endpoints_to_string(endpoints.server) if endpoints else "",
                "internal": endpoints_to_string(endpoints.internal) if endpoints else "",
                "serial": serial,
                "lag": (
                    master_serial - serial
                    if master_serial is not None and serial is not None
                    else None
                ),
                "alive": name in self.directory.active,
                "state": status.state if status else "",
                "reason": status.reason if status else "",
            }
            if name == me:
                entry["epoch"] = str(self.role.epoch())
            info.append(entry)
        return info

    def on_conflict(self) -> None:
        """Stop the process: called when a second master is detected."""
        if getattr(self.reactor, "running", False):
            self.reactor.stop()

    # -- stop ------------------------------------------------------------------

    def stopService(self) -> Deferred[Any]:
        """
        Let the writes queued now finish, then close Ice connections, the
        role's sessions, admin sessions and the listening ports; the store
        last.
        """
        super().stopService()
        if self.reactor_probe is not None:
            self.reactor_probe.stop()
        factories = [self.client_factory, self.server_factory, *self.glacier2_factories.values()]
        for factory in factories:
            factory.accepting = False

        def close(_: object) -> Deferred[Any]:
            for factory in factories:
                factory.close_all()
            if self.session_servers is not None:
                self.session_servers.close()  # no stops sent to nodes being closed
            if self.allocations is not None:
                self.allocations.close()  # waiting allocations fail; nothing stays held
            stopping: list[Deferred[Any]] = [
                self.ice_sessions.stop(),
                self.role.stop(),
                self.peers.stop(),
                self.discovery.stop(),
            ]
            self.nodes.stop()
            self.internal_factory.close_all()
            for ports in self.ports.values():
                stopping.extend(d for d in (p.stopListening() for p in ports) if d is not None)
                ports.clear()
            # a hung peer must not keep this replica from stopping
            return DeferredList(stopping, consumeErrors=True).addTimeout(STOP_TIMEOUT, self.reactor)

        d = self.database.drain().addTimeout(STOP_TIMEOUT, self.reactor).addBoth(close)
        return d.addBoth(lambda _: self.store.close())
