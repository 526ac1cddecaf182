# -*- test-case-name: tests.test_replication -*-
"""
The narrow interface between a replica's protocols and its role.

A replica is the master or a slave. The admin responders, the internal
protocol and the write path ask the role only what differs between the
two: may this replica write now (and if not, why), what it says in
C{Hello}, whether it accepts a slave, and what it knows of each replica's
replication. L{Replica} is what a role (and the protocols) may use of the
replica that holds it.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from zope.interface import Attribute, Interface

from twisted.internet.defer import Deferred

from gridreg.registry.config import RegistryConfig
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.epochs import Epoch
from gridreg.registry.peers import Peers
from gridreg.registry.replica_set import ReplicaDirectory
from gridreg.registry.replica_status import ReplicaStatus
from gridreg.registry.security import InternalSecurity
from gridreg.registry.state import RegistryState
from gridreg.store.interfaces import IRegistryStore


class IReplicaRole(Interface):
    """The master's or a slave's part of one replica."""

    is_master = Attribute("True for the master role (fenced or read-only included).")

    def epoch() -> Epoch:
        """The newest epoch this replica holds (a master: its own)."""

    def write_refusal() -> Optional[str]:
        """Why writes are refused here now, or None when this replica accepts them."""

    def hello() -> dict[str, Any]:
        """This replica's part of a C{Hello} answer: C{master} and C{epoch}."""

    def register_replica(
        protocol: Any,
        name: str,
        endpoints: dict[str, str],
        database_id: str,
        serial: int,
        epoch: Epoch,
    ) -> dict[str, Any]:
        """
        A slave asks to be synced and replicated to.

        @raise NotMasterError: this replica does not accept slaves now.
        @raise DivergedError: the slave's database cannot be synced without
            losing changes (or shows this master is stale).
        """

    def keepalive(protocol: Any, serial: int) -> Epoch:
        """
        A slave's keepalive on C{protocol}; returns this replica's epoch.

        @raise NotMasterError: this replica has no session with that slave.
        """

    def replica_lost(protocol: Any) -> None:
        """An internal connection that may have been a slave's is gone."""

    def status_of(name: str) -> Optional[ReplicaStatus]:
        """What replica C{name}'s replication is doing, as far as this one knows."""

    def serial_of(name: str) -> Optional[int]:
        """The serial replica C{name} is known to hold, if known."""

    def start() -> None:
        """Take up the role: the replica listens and has loaded its database."""

    def stop() -> Deferred[Any]:
        """Close the role's sessions; fires once they are closed."""


class Replica(Protocol):
    """What a role and the internal and admin protocols use of their replica."""

    reactor: Any
    config: RegistryConfig
    store: IRegistryStore
    state: RegistryState
    database: RegistryDatabase
    security: InternalSecurity
    directory: ReplicaDirectory
    peers: Peers
    role: IReplicaRole
    client_factory: Any
    server_factory: Any
    #: the node sessions (gridreg.registry.nodes.NodeSessions)
    nodes: Any
    #: the master's replication, or None on a slave
    master: Any

    def replica_info(self) -> list[dict[str, Any]]: ...

    def on_conflict(self) -> None: ...
