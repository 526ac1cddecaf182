# -*- test-case-name: tests.test_replication -*-
"""
The slave role: keep a session with the master, answer from the local copy,
refuse writes (naming the master) and forward the registrations of Ice
servers that reached this replica to the master.
"""

from __future__ import annotations

import base64
from typing import Any, Optional, Sequence

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger

from gridreg.ice.encoding import OutputStream
from gridreg.ice.exceptions import KNOWN_EXCEPTIONS
from gridreg.ice.types import ENCODING_1_1, Proxy
from gridreg.protocol.errors import NotMasterError, RegistryUserError
from gridreg.registry.discovery import MASTER
from gridreg.registry.epochs import Epoch
from gridreg.registry.replica_status import LIVE, ReplicaStatus
from gridreg.registry.roles import IReplicaRole, Replica
from gridreg.registry.slave import SlaveReplication
from gridreg.store.records import Change


@implementer(IReplicaRole)
class SlaveRole:
    log = Logger()
    is_master = False

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        #: listed active by the master's last list
        self._listed = False
        config = replica.config
        self.replication = SlaveReplication(
            replica.reactor,
            config.replica_name,
            replica.store,
            replica.state,
            self._locate_master,
            lambda: replica.directory.own.to_json() if replica.directory.own else {},
            self._set_active,
            config.trace,
            check_master=lambda transport: replica.security.check_server(transport, MASTER),
            session_timeout=config.replica_session_timeout,
            properties=config.properties,
            on_snapshot=self._snapshot_loaded,
        )

    # -- IReplicaRole ----------------------------------------------------------------

    def epoch(self) -> Epoch:
        return self.replication.epoch()

    def write_refusal(self) -> Optional[str]:
        return (
            f"this replica `{self.replica.config.replica_name}' is a read-only slave; "
            f"{self.replica.directory.master_message()}"
        )

    def hello(self) -> dict[str, Any]:
        return {"master": False, "epoch": self.epoch().to_wire()}

    def register_replica(
        self,
        protocol: Any,
        name: str,
        endpoints: dict[str, str],
        database_id: str,
        serial: int,
        epoch: Epoch,
    ) -> dict[str, Any]:
        raise NotMasterError(self.write_refusal())

    def keepalive(self, protocol: Any, serial: int) -> Epoch:
        raise NotMasterError(self.write_refusal())

    def replica_lost(self, protocol: Any) -> None:
        """Slaves do not register with slaves: nothing to forget."""

    def status_of(self, name: str) -> Optional[ReplicaStatus]:
        if name == self.replica.config.replica_name:
            return self.replication.status
        return ReplicaStatus(LIVE) if name in self.replica.directory.active else None

    def serial_of(self, name: str) -> Optional[int]:
        if name == self.replica.config.replica_name:
            return int(self.replica.store.serial)
        return None

    def start(self) -> None:
        replica = self.replica
        if replica.store.serial == 0:
            # An empty slave would answer "not found" for everything: like
            # IceGrid, it serves Ice clients only once it has synced.
            replica.client_factory.accepting = replica.server_factory.accepting = False
        replica.database.refusal = self.write_refusal
        replica.database.forward = self._forward_registration
        self.replication.startService()

    def stop(self) -> Deferred[Any]:
        return self.replication.stopService()

    # -- the master ------------------------------------------------------------------

    def _set_active(self, names: list[str], serial: Optional[int] = None) -> None:
        """
        The master's list of active replicas. An empty slave serves Ice
        clients once it is listed and holds the master's C{serial} at the
        listing: the writes the master acknowledged before it counted this
        replica are at or below it, so a client answered here sees every
        acknowledged write (the later ones wait for this replica).
        """
        replica = self.replica
        self._listed = replica.config.replica_name in names
        if self._listed and not replica.client_factory.accepting:
            # an older master does not say its serial: at once, as before
            replica.store.reached(serial or 0).addCallback(self._serve_if_listed).addErrback(
                lambda f: self.log.failure("Could not start serving Ice clients", f)
            )
        replica.directory.set_active(names)

    def _serve_if_listed(self, _: object) -> None:
        replica = self.replica
        if self._listed and not replica.client_factory.accepting:
            self.log.info(
                "Replica {replica} is in sync: serving Ice clients",
                replica=replica.config.replica_name,
            )
            replica.client_factory.accepting = replica.server_factory.accepting = True

    def _snapshot_loaded(self, loaded: bool) -> None:
        """
        The state answers from the master's snapshot, this replica committing
        it meanwhile. An empty slave still waits to be listed active before it
        serves Ice clients (L{_set_active}): until the master counts it, the
        master acknowledges writes without it, and a client answered from the
        snapshot would not see them. A commit that failed takes an empty slave
        back to refusing.
        """
        replica = self.replica
        if not loaded and replica.store.serial == 0:
            replica.client_factory.accepting = replica.server_factory.accepting = False

    def _locate_master(self) -> Deferred[Sequence[IStreamClientEndpoint]]:
        replica = self.replica
        directory = replica.directory

        async def locate() -> Sequence[IStreamClientEndpoint]:
            endpoints = await replica.peers.master_endpoints(
                directory.own, directory.endpoints_of(MASTER)
            )
            return [replica.peers.connect(e, MASTER) for e in endpoints]

        return Deferred.fromCoroutine(locate())

    def _forward_registration(
        self, adapter_id: str, replica_group_id: str, proxy: Optional[Proxy]
    ) -> Deferred[Optional[Change]]:
        encoded = ""
        if proxy is not None:
            out = OutputStream(ENCODING_1_1)
            out.write_proxy(proxy)
            encoded = base64.b64encode(out.getvalue()).decode("ascii")

        def answered(answer: dict[str, Any]) -> None:
            type_id = answer["exception"]
            if not type_id:
                return None
            cls = KNOWN_EXCEPTIONS.get(type_id)
            if cls is not None:
                try:
                    exception = cls()
                except TypeError:
                    exception = None
                if exception is not None:
                    raise exception
            raise RegistryUserError(f"{type_id}: {answer['reason']}")

        d = self.replication.forward_registration(adapter_id, replica_group_id, encoded)
        return d.addCallback(answered)
