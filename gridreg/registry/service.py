# -*- test-case-name: tests.test_registry_service -*-
"""
A registry replica as one Twisted service.

Starting it opens the store, loads the state into memory, then listens on
the client, server and internal endpoints, in that order, so no locate
request is ever answered from an empty state; then it acts as the master
(accepting slaves, fanning out every change) or as a slave (registering with
the master and applying what it sends). Stopping it closes every Ice
connection gracefully (so clients fail over at once), stops listening and
closes the store last.
"""

from __future__ import annotations

import base64
import random
import re
from typing import Any, Optional, Sequence

import attrs

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.ice.encoding import OutputStream
from gridreg.ice.exceptions import KNOWN_EXCEPTIONS
from gridreg.ice.servant import ObjectAdapter
from gridreg.ice.server import IceServerFactory
from gridreg.ice.stringify import endpoints_to_string
from gridreg.ice.types import ENCODING_1_1, Endpoint, Identity, Proxy
from gridreg.protocol.commands import PROTOCOL_VERSION, Hello
from gridreg.protocol.errors import RegistryUserError
from gridreg.registry.admin import AdminResponder
from gridreg.registry.config import RegistryConfig
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.discovery import (
    MASTER,
    ReplicaEndpoints,
    builtin_objects,
    internal_identity,
    registry_identity,
)
from gridreg.registry.internal import InternalFactory
from gridreg.registry.listen import listen_ice, published_endpoint
from gridreg.registry.master import MasterReplication
from gridreg.registry.security import InternalSecurity
from gridreg.registry.servants import (
    LocatorFinderServant,
    LocatorRegistryServant,
    LocatorServant,
    PublishedProxies,
    QueryServant,
    RegistryServant,
)
from gridreg.registry.slave import SlaveReplication
from gridreg.registry.state import REPLICA, RegistryState
from gridreg.store.interfaces import IRegistryStore
from gridreg.store.records import Change, Mutation, StoreState


class RegistryStartError(Exception):
    """The replica could not start; the message says why."""


class RegistryService(Service):
    """One registry replica: store, in-memory state, endpoints, replication."""

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
        self.config = config
        self.store = store
        self.security = security or InternalSecurity.insecure()
        self.state = RegistryState(rng)
        self.database = RegistryDatabase(
            store, self.state, config.dynamic_registration, config.trace
        )
        self.published = PublishedProxies()
        self.client_adapter = ObjectAdapter("Client")
        self.server_adapter = ObjectAdapter("Server")
        self.client_factory = IceServerFactory(
            self.client_adapter, config.message_size_max, clock=reactor, acm=config.client_acm
        )
        self.server_factory = IceServerFactory(
            self.server_adapter, config.message_size_max, clock=reactor, acm=config.server_acm
        )
        self.internal_factory = InternalFactory(self, _admin_locator, self.security.authorize)
        self.ports: dict[str, list[IListeningPort]] = {"client": [], "server": [], "internal": []}
        self.own: Optional[ReplicaEndpoints] = None
        self.active: list[str] = [config.replica_name]
        self.master: Optional[MasterReplication] = None
        self.slave: Optional[SlaveReplication] = None
        self._locators: Optional[list[Any]] = None
        self._ready: Optional[Failure | bool] = None
        self._ready_waiters: list[Deferred[None]] = []
        self.state.on_change(self.client_adapter.invalidate)
        self.state.on_replicas_changed(self._rediscover)
        self._add_servants()

    @property
    def client_ports(self) -> list[IListeningPort]:
        return self.ports["client"]

    def _add_servants(self) -> None:
        instance = self.config.instance_name
        self.client_adapter.add(
            Identity("Locator", instance),
            LocatorServant(self.state, self.published, self.config.trace),
        )
        self.client_adapter.add(Identity("Query", instance), QueryServant(self.state))
        self.client_adapter.add(
            registry_identity(instance, self.config.replica_name), RegistryServant()
        )
        self.client_adapter.add(
            Identity("LocatorFinder", "Ice"), LocatorFinderServant(self.published)
        )
        self.server_adapter.add(
            Identity("LocatorRegistry", instance), LocatorRegistryServant(self.database)
        )

    # -- start -----------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Open the store and listen. Both finish at once with the stores and
        TCP endpoints gridreg uses, so a failure (a corrupt database, a port
        in use) stops twistd right here with the reason, and a non-zero exit.
        """
        super().privilegedStartService()
        self.store.open().addCallback(self._loaded).addBoth(self._started)
        if isinstance(self._ready, Failure):
            raise SystemExit(f"gridregistry: cannot start: {self._ready.getErrorMessage()}")

    def startService(self) -> None:
        if self._ready is None and not self.running:
            self.privilegedStartService()
        super().startService()

    def _loaded(self, stored: StoreState) -> Deferred[None]:
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
        ice_tls = self.security.ice_tls()
        listening = [
            (kind, listen_ice(self.reactor, endpoint, factory, ice_tls))
            for kind, endpoints, factory in (
                ("client", config.client_endpoints, self.client_factory),
                ("server", config.server_endpoints, self.server_factory),
            )
            for endpoint in endpoints
        ] + [
            ("internal", self.security.listen(self.reactor, endpoint, self.internal_factory))
            for endpoint in config.internal_endpoints
        ]
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

        self.own = ReplicaEndpoints(
            published(config.client_published, config.client_endpoints, "client"),
            published(config.server_published, config.server_endpoints, "server"),
            published(None, config.internal_endpoints, "internal"),
        )
        self.published.locator_registry = Proxy(
            Identity("LocatorRegistry", config.instance_name), endpoints=self.own.server
        )
        self._rediscover()
        self.log.info(
            "Registry {replica} serves clients on {endpoints}",
            replica=config.replica_name,
            endpoints=endpoints_to_string(self.own.client),
        )
        if config.is_master:
            self._become_master()
        else:
            self._become_slave()

    def _started(self, result: object) -> None:
        if isinstance(result, Failure):
            self._ready = result
            self.log.critical(
                "Registry replica {replica} failed to start: {reason}",
                replica=self.config.replica_name,
                reason=result.getErrorMessage(),
            )
        else:
            self._ready = True
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            self._fire_ready(waiter)

    def _fire_ready(self, waiter: Deferred[None]) -> None:
        if isinstance(self._ready, Failure):
            waiter.errback(RegistryStartError(self._ready.getErrorMessage()))
        else:
            waiter.callback(None)

    def when_ready(self) -> Deferred[None]:
        """A fresh Deferred fired once the replica answers requests."""
        d: Deferred[None] = Deferred()
        if self._ready is None:
            self._ready_waiters.append(d)
        else:
            self._fire_ready(d)
        return d

    # -- discovery -------------------------------------------------------------------

    def _rediscover(self) -> None:
        """Derive Locator, Query, Registry-* and InternalRegistry-* from the replica set."""
        if self.own is None:
            return
        config = self.config
        replicas = {
            name: ReplicaEndpoints.from_json(value) for name, value in self.state.replicas.items()
        }
        replicas[config.replica_name] = self.own
        objects = builtin_objects(config.instance_name, replicas, self.active)
        self.published.locator = objects[Identity("Locator", config.instance_name)].proxy
        self.published.query = objects[Identity("Query", config.instance_name)].proxy
        self.published.registry = objects[
            registry_identity(config.instance_name, config.replica_name)
        ].proxy
        self.state.set_builtin_objects(objects)

    def replica_endpoints(self, name: str) -> Optional[ReplicaEndpoints]:
        if name == self.config.replica_name:
            return self.own
        value = self.state.replicas.get(name)
        return ReplicaEndpoints.from_json(value) if value else None

    def not_master_message(self) -> str:
        master = self.replica_endpoints(MASTER)
        where = f" at {endpoints_to_string(master.client)}" if master else ""
        return (
            f"this replica `{self.config.replica_name}' is a read-only slave; "
            f"writes go to the master{where}"
        )

    def replica_info(self) -> list[dict[str, Any]]:
        """Every known replica: name, role, endpoints, serial, lag, alive."""
        names = set(self.state.replicas) | {self.config.replica_name}
        sessions = self.master.sessions if self.master is not None else {}
        info = []
        for name in sorted(names, key=lambda n: (n != MASTER, n)):
            endpoints = self.replica_endpoints(name)
            session = sessions.get(name)
            if name == self.config.replica_name:
                serial: Optional[int] = self.store.serial
            else:
                serial = session.serial if session is not None else None
            lag = None
            if self.master is not None and serial is not None:
                lag = self.store.serial - serial
            info.append(
                {
                    "name": name,
                    "role": "master" if name == MASTER else "slave",
                    "client": endpoints_to_string(endpoints.client) if endpoints else "",
                    "server": endpoints_to_string(endpoints.server) if endpoints else "",
                    "internal": endpoints_to_string(endpoints.internal) if endpoints else "",
                    "serial": serial,
                    "lag": lag,
                    "alive": name in self.active,
                }
            )
        return info

    # -- master ----------------------------------------------------------------------

    def _become_master(self) -> None:
        master = MasterReplication(
            self.store,
            self.reactor,
            self.config.replica_session_timeout,
            self.config.trace,
            self._slaves_changed,
        )
        self.master = master
        self.database.replicate = master.replicate
        self._record_replicas({MASTER: self.own.to_json()})
        if self.config.locator is not None:
            self._refuse_second_master().addErrback(
                lambda f: self.log.failure("Could not check for another master", f)
            )

    def _refuse_second_master(self) -> Deferred[None]:
        """
        Ask the replicas in Ice.Default.Locator where the master is; if
        another live master answers there, this one must not run.
        """

        async def check() -> None:
            for endpoint in await self._locate_master():
                try:
                    protocol = await endpoint.connect(_HelloFactory())
                except Exception:
                    continue  # a stale address: nobody is there
                try:
                    answer = await protocol.callRemote(
                        Hello, version=PROTOCOL_VERSION, role="registry", name=MASTER
                    ).addTimeout(5, self.reactor)
                except Exception:
                    continue
                finally:
                    protocol.transport.loseConnection()
                if answer["master"]:
                    self.log.critical(
                        "Another master of {instance} is running (it answered at {peer}): "
                        "there is one master per grid; this replica stops",
                        instance=self.config.instance_name,
                        peer=str(protocol.transport.getPeer()),
                    )
                    self.on_conflict()
                    return

        return Deferred.fromCoroutine(check())

    def on_conflict(self) -> None:
        """Stop the process: called when a second master is detected."""
        if getattr(self.reactor, "running", False):
            self.reactor.stop()

    def _slaves_changed(self) -> None:
        assert self.master is not None and self.own is not None
        live = self.master.live_slaves()
        self.active = [MASTER, *sorted(live)]
        self._record_replicas(live)
        self._rediscover()
        everyone = {MASTER: self.own.to_json(), **live}
        self.master.announce(everyone)

    def _record_replicas(self, replicas: dict[str, dict[str, str]]) -> None:
        """Commit replica endpoints that changed, so every replica stores them."""
        changed = [
            Mutation(REPLICA, name, dict(endpoints))
            for name, endpoints in replicas.items()
            if self.state.replicas.get(name) != endpoints
        ]
        if changed:
            self.database.commit(changed).addErrback(
                lambda f: self.log.failure("Could not record the replica set", f)
            )

    # -- slave -------------------------------------------------------------------

    def _become_slave(self) -> None:
        slave = SlaveReplication(
            self.reactor,
            self.config.replica_name,
            self.store,
            self.state,
            self._locate_master,
            lambda: self.own.to_json() if self.own else {},
            self._set_active,
            self.config.trace,
            check_master=lambda transport: self.security.check_server(transport, MASTER),
        )
        self.slave = slave
        if self.store.serial == 0:
            # An empty slave would answer "not found" for everything: like
            # IceGrid, it serves Ice clients only once it has synced.
            self.client_factory.accepting = self.server_factory.accepting = False
        self.database.read_only = self.not_master_message
        self.database.forward = self._forward_registration
        slave.startService()

    def _set_active(self, names: list[str]) -> None:
        me = self.config.replica_name
        if me in names and not self.client_factory.accepting:
            self.log.info("Replica {replica} is in sync: serving Ice clients", replica=me)
            self.client_factory.accepting = self.server_factory.accepting = True
        self.active = [me, *[n for n in names if n != me]]
        self._rediscover()

    def _locate_master(self) -> Deferred[Sequence[IStreamClientEndpoint]]:
        """
        The master's internal endpoints, as every replica named in
        C{Ice.Default.Locator} sees them, then as this replica stored them.
        Asking each one (not just the first that answers) matters after a
        promotion, when some replicas still name the old master.
        """

        async def ask(client: Any) -> tuple[Endpoint, ...]:
            proxy = await client.find_object_by_id(
                internal_identity(self.config.instance_name, MASTER)
            )
            return proxy.endpoints

        async def locate() -> Sequence[IStreamClientEndpoint]:
            endpoints: list[Endpoint] = []
            answers = await DeferredList(
                [Deferred.fromCoroutine(ask(c)) for c in self._locator_clients()],
                consumeErrors=True,
            )
            for ok, found in answers:
                if ok:
                    endpoints.extend(e for e in found if e not in endpoints)
            stored = self.replica_endpoints(MASTER)
            if stored is not None:
                endpoints.extend(e for e in stored.internal if e not in endpoints)
            mine = self.own.internal if self.own else ()
            return [
                self.security.client_endpoint(self.reactor, e, MASTER)
                for e in endpoints
                if e not in mine
            ]

        return Deferred.fromCoroutine(locate())

    def _locator_clients(self) -> list[Any]:
        """One locator client per replica listed in Ice.Default.Locator (but this one)."""
        if self._locators is None:
            from gridreg.client.locator import LocatorClient

            locator = self.config.locator
            mine = self.own.client if self.own else ()
            self._locators = []
            if locator is not None:
                for endpoint in locator.endpoints:
                    if endpoint in mine:
                        continue
                    client = LocatorClient(
                        self.reactor,
                        attrs.evolve(locator, endpoints=(endpoint,)),
                        cache_timeout=0,
                        max_attempts=1,
                    )
                    client.startService()
                    self._locators.append(client)
        return self._locators

    def _forward_registration(
        self, adapter_id: str, replica_group_id: str, proxy: Optional[Proxy]
    ) -> Deferred[Optional[Change]]:
        assert self.slave is not None
        encoded = ""
        if proxy is not None:
            out = OutputStream(ENCODING_1_1)
            out.write_proxy(proxy)
            encoded = base64.b64encode(out.getvalue()).decode("ascii")

        def ice_error(failure: Failure) -> Failure:
            if failure.check(RegistryUserError):
                # the master refused it with an Ice user exception: give the server the same
                match = re.match(r"(::[\w:]+)", failure.getErrorMessage())
                cls = KNOWN_EXCEPTIONS.get(match.group(1)) if match else None
                if cls is not None:
                    try:
                        return Failure(cls())
                    except TypeError:
                        pass
            return failure

        return (
            self.slave.forward_registration(adapter_id, replica_group_id, encoded)
            .addCallback(lambda _: None)
            .addErrback(ice_error)
        )

    # -- stop ------------------------------------------------------------------

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self.client_factory.close_all()
        self.server_factory.close_all()
        stopping: list[Deferred[Any]] = []
        if self.slave is not None:
            stopping.append(self.slave.stopService())
        for client in self._locators or ():
            stopping.append(client.stopService())
        for ports in self.ports.values():
            stopping.extend(d for d in (p.stopListening() for p in ports) if d is not None)
            ports.clear()
        d = DeferredList(stopping, consumeErrors=True)
        return d.addCallback(lambda _: self.store.close())


class _HelloFactory(Factory):
    noisy = False
    protocol = amp.AMP


def _admin_locator(protocol: Any) -> Any:
    """The admin commands of one internal connection."""
    return AdminResponder(protocol.registry, protocol)
