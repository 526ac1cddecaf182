# -*- test-case-name: tests.test_registry_service -*-
"""
A registry replica as one Twisted service.

Starting it opens the store, loads the state into memory, then listens on
the client and server endpoints, in that order, so no locate request is
ever answered from an empty state. Stopping it closes every Ice connection
gracefully (so clients fail over at once), stops listening and closes the
store last.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.servant import ObjectAdapter
from gridreg.ice.server import IceServerFactory
from gridreg.ice.stringify import endpoint_to_string
from gridreg.ice.types import Endpoint, Identity, Proxy
from gridreg.registry.config import RegistryConfig
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.listen import listen_ice, published_endpoint
from gridreg.registry.servants import (
    LocatorFinderServant,
    LocatorRegistryServant,
    LocatorServant,
    PublishedProxies,
    QueryServant,
    RegistryServant,
)
from gridreg.registry.state import ObjectInfo, RegistryState
from gridreg.store.interfaces import IRegistryStore
from gridreg.store.records import StoreState


class RegistryStartError(Exception):
    """The replica could not start; the message says why."""


class RegistryService(Service):
    """One registry replica: store, in-memory state, client and server endpoints."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: RegistryConfig,
        store: IRegistryStore,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.store = store
        self.state = RegistryState(rng)
        self.database = RegistryDatabase(
            store, self.state, config.dynamic_registration, config.trace
        )
        self.published = PublishedProxies()
        self.client_adapter = ObjectAdapter("Client")
        self.server_adapter = ObjectAdapter("Server")
        self.client_factory = IceServerFactory(self.client_adapter, config.message_size_max)
        self.server_factory = IceServerFactory(self.server_adapter, config.message_size_max)
        self.client_ports: list[IListeningPort] = []
        self.server_ports: list[IListeningPort] = []
        self._ready: Optional[Failure | bool] = None
        self._ready_waiters: list[Deferred[None]] = []
        self.state.on_change(self.client_adapter.invalidate)
        self._add_servants()

    def _add_servants(self) -> None:
        instance = self.config.instance_name
        self.client_adapter.add(
            Identity("Locator", instance),
            LocatorServant(self.state, self.published, self.config.trace),
        )
        self.client_adapter.add(Identity("Query", instance), QueryServant(self.state))
        self.client_adapter.add(Identity("Registry", instance), RegistryServant())
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
        starting = self._start()
        starting.addBoth(self._started)
        if isinstance(self._ready, Failure):
            raise SystemExit(f"gridregistry: cannot start: {self._ready.getErrorMessage()}")

    def startService(self) -> None:
        if self._ready is None and not self.running:
            # started without privilegedStartService (e.g. added to a running parent)
            self.privilegedStartService()
        super().startService()

    def _start(self) -> Deferred[None]:
        d = self.store.open()
        d.addCallback(self._loaded)
        return d

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
        listening = [
            listen_ice(self.reactor, endpoint, self.client_factory)
            for endpoint in self.config.client_endpoints
        ] + [
            listen_ice(self.reactor, endpoint, self.server_factory)
            for endpoint in self.config.server_endpoints
        ]
        return DeferredList(listening, fireOnOneErrback=True, consumeErrors=True).addCallbacks(
            self._listening, lambda f: f.value.subFailure
        )

    def _listening(self, results: list[tuple[bool, IListeningPort]]) -> None:
        ports = [port for _, port in results]
        count = len(self.config.client_endpoints)
        self.client_ports, self.server_ports = ports[:count], ports[count:]
        self._publish()

    def _publish(self) -> None:
        """Build the registry's own proxies from the endpoints it really listens on."""
        config = self.config
        client = config.client_published or tuple(
            published_endpoint(endpoint, port)
            for endpoint, port in zip(config.client_endpoints, self.client_ports)
        )
        server = config.server_published or tuple(
            published_endpoint(endpoint, port)
            for endpoint, port in zip(config.server_endpoints, self.server_ports)
        )
        instance = config.instance_name

        def proxy(name: str, endpoints: tuple[Endpoint, ...]) -> Proxy:
            return Proxy(Identity(name, instance), endpoints=endpoints)

        published = self.published
        published.locator = proxy("Locator", client)
        published.query = proxy("Query", client)
        published.registry = proxy(
            "Registry" if config.is_master else f"Registry-{config.replica_name}", client
        )
        published.locator_registry = proxy("LocatorRegistry", server)
        self.state.set_builtin_objects(
            {
                published.locator.identity: ObjectInfo(published.locator, "::IceGrid::Locator"),
                published.query.identity: ObjectInfo(published.query, "::IceGrid::Query"),
                published.registry.identity: ObjectInfo(published.registry, "::IceGrid::Registry"),
            }
        )
        for endpoint in client:
            self.log.info(
                "Registry {replica} serves clients on {endpoint}",
                replica=config.replica_name,
                endpoint=endpoint_to_string(endpoint),
            )

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

    # -- stop ------------------------------------------------------------------

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        self.client_factory.close_all()
        self.server_factory.close_all()
        stopping = [
            port.stopListening() for port in self.client_ports + self.server_ports
        ]
        self.client_ports, self.server_ports = [], []
        d = DeferredList([d for d in stopping if d is not None], consumeErrors=True)
        return d.addCallback(lambda _: self.store.close())
