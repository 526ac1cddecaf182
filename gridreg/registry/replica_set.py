# -*- test-case-name: tests.test_replication -*-
"""
The replica set as one replica sees it: where each replica listens (as
replicated in the database), which are active now, and the well-known
objects derived from that (Locator, Query, Registry-*, InternalRegistry-*).
"""

from __future__ import annotations

from typing import Callable, Optional

from gridreg.ice.stringify import endpoints_to_string
from gridreg.ice.types import Identity
from gridreg.registry.config import RegistryConfig
from gridreg.registry.discovery import (
    MASTER,
    ReplicaEndpoints,
    builtin_objects,
    registry_identity,
)
from gridreg.registry.servants import PublishedProxies
from gridreg.registry.state import REPLICA, RegistryState
from gridreg.store.records import Mutation


class ReplicaDirectory:
    """
    @ivar own: this replica's published endpoints, once it listens.
    @ivar active: the replicas up now, this one first.
    """

    def __init__(
        self, config: RegistryConfig, state: RegistryState, published: PublishedProxies
    ) -> None:
        self.config = config
        self.state = state
        self.published = published
        self.own: Optional[ReplicaEndpoints] = None
        self.active: list[str] = [config.replica_name]
        self._active_listeners: list[Callable[[list[str]], None]] = []
        state.on_replicas_changed(self.rediscover)

    @property
    def name(self) -> str:
        return self.config.replica_name

    def endpoints_of(self, name: str) -> Optional[ReplicaEndpoints]:
        if name == self.name:
            return self.own
        value = self.state.replicas.get(name)
        return ReplicaEndpoints.from_json(value) if value else None

    def known(self) -> list[str]:
        """Every replica this one knows of, the master first."""
        names = set(self.state.replicas) | {self.name}
        return sorted(names, key=lambda n: (n != MASTER, n))

    def others(self) -> dict[str, ReplicaEndpoints]:
        """The stored endpoints of every other replica."""
        return {
            name: ReplicaEndpoints.from_json(value)
            for name, value in self.state.replicas.items()
            if name != self.name and value
        }

    def on_active_changed(self, listener: Callable[[list[str]], None]) -> None:
        """Call C{listener} with the active replicas whenever they are set."""
        self._active_listeners.append(listener)

    def set_active(self, names: list[str]) -> None:
        self.active = [self.name, *[n for n in names if n != self.name]]
        self.rediscover()
        for listener in self._active_listeners:
            listener(list(self.active))

    def changed_records(self, replicas: dict[str, dict[str, str]]) -> list[Mutation]:
        """The mutations that record C{replicas}' endpoints where they changed."""
        return [
            Mutation(REPLICA, name, dict(endpoints))
            for name, endpoints in replicas.items()
            if self.state.replicas.get(name) != endpoints
        ]

    def master_message(self) -> str:
        master = self.endpoints_of(MASTER) if self.name != MASTER else None
        where = f" at {endpoints_to_string(master.client)}" if master else ""
        return f"writes go to the master{where}"

    def rediscover(self) -> None:
        """Derive Locator, Query, Registry-* and InternalRegistry-* from the replica set."""
        if self.own is None:
            return
        instance = self.config.instance_name
        replicas = {
            name: ReplicaEndpoints.from_json(value) for name, value in self.state.replicas.items()
        }
        replicas[self.name] = self.own
        objects = builtin_objects(instance, replicas, self.active)
        self.published.locator = objects[Identity("Locator", instance)].proxy
        self.published.query = objects[Identity("Query", instance)].proxy
        self.published.registry = objects[registry_identity(instance, self.name)].proxy
        self.state.set_builtin_objects(objects)
