# -*- test-case-name: tests.test_fencing -*-
"""
The master role: open a new epoch, accept slaves, fan out every change, and
step down (fence itself) as soon as it learns of a newer master.

Opening happens with the write lock held, so no write is acknowledged
before the master has asked the replicas it knows whether a newer epoch
exists. With C{--readonly} the master opens nothing: it serves reads,
refuses writes and refuses to sync slaves, so an operator can inspect a
promoted replica before letting it write.
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.types import Endpoint
from gridreg.protocol.errors import DivergedError, NotMasterError, QuorumError
from gridreg.registry.discovery import MASTER
from gridreg.registry.epochs import (
    Epoch,
    EpochHistory,
    check_slave_history,
    epoch_mutation,
    new_epoch,
)
from gridreg.registry.master import MasterReplication
from gridreg.registry.peers import PeerAnswer
from gridreg.registry.replica_status import DISCONNECTED, LIVE, REFUSED, ReplicaStatus
from gridreg.registry.roles import IReplicaRole, Replica


#: how long a master waits before trying again to open its epoch
OPEN_RETRY_DELAY = 1.0


@implementer(IReplicaRole)
class MasterRole:
    """
    @ivar fenced: why this master stopped accepting writes, once it has.
    @ivar opened: whether it began its epoch and accepts writes.
    """

    log = Logger()
    is_master = True

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        config = replica.config
        self.readonly = config.readonly
        self.replication = MasterReplication(
            replica.store,
            replica.reactor,
            config.replica_session_timeout,
            config.trace,
            self._slaves_changed,
            min_acks=config.min_acks,
        )
        self.history = EpochHistory()
        self.opened = False
        #: why the last attempt to open the epoch failed, until one succeeds
        self.not_opened: Optional[str] = None
        self._retry: Any = None
        self.fenced: Optional[str] = None
        self._watch = LoopingCall(self._watch_for_newer_epochs)
        self._watch.clock = replica.reactor

    # -- IReplicaRole ----------------------------------------------------------------

    def epoch(self) -> Epoch:
        return self.history.current

    def write_refusal(self) -> Optional[str]:
        if self.fenced is not None:
            return f"this master no longer accepts writes: {self.fenced}"
        if self.not_opened is not None:
            return f"the master could not open its epoch yet: {self.not_opened}"
        if self.readonly:
            return "this master was started with --readonly: it serves reads and refuses writes"
        return None

    def hello(self) -> dict[str, Any]:
        # a fenced master no longer acts as one: a master that starts later must
        # not take it for a rival, nor a slave for its master
        return {"master": self.fenced is None, "epoch": self.epoch().to_wire()}

    def register_replica(
        self,
        protocol: Any,
        name: str,
        endpoints: dict[str, str],
        database_id: str,
        serial: int,
        epoch: Epoch,
    ) -> dict[str, Any]:
        refusal = self.write_refusal()
        if refusal is not None:
            raise NotMasterError(refusal.replace("writes", "slaves", 1))
        if not self.opened:
            raise NotMasterError("the master is starting: it is checking for a newer master")
        if epoch > self.epoch():
            why = f"slave `{name}' has seen epoch {epoch}, newer than this master's {self.epoch()}"
            self.fence(why)
            raise DivergedError(f"this master is stale: {why}")
        store = self.replica.store
        if database_id == store.database_id:
            why = check_slave_history(self.history, store.serial, epoch, serial)
            if why is not None:
                self.replication.statuses[name] = ReplicaStatus(
                    REFUSED, why, self.replica.reactor.seconds()
                )
                self.log.error(
                    "[Replica] refusing slave `{replica}': {why}. Nothing is overwritten; "
                    "an operator decides: restart this master with --initdb-from-replica "
                    "{replica} to take the slave's database, or the slave with "
                    "--initdb-from-replica Master to drop what only it holds",
                    replica=name,
                    why=why,
                )
                raise DivergedError(
                    f"{why}; this master refuses to overwrite it: restart the master with "
                    f"--initdb-from-replica {name}, or this slave with "
                    "--initdb-from-replica Master"
                )
        return {
            **self.replication.register(protocol, name, endpoints, database_id, serial),
            "epoch": self.epoch().to_wire(),
        }

    def keepalive(self, protocol: Any, serial: int) -> Epoch:
        if not self.replication.heard_from(protocol, serial):
            raise NotMasterError("no session: register first")
        return self.epoch()

    def replica_lost(self, protocol: Any) -> None:
        self.replication.lost(protocol)

    def status_of(self, name: str) -> Optional[ReplicaStatus]:
        if name == self.replica.config.replica_name:
            refusal = self.write_refusal()
            return ReplicaStatus(LIVE if refusal is None else REFUSED, refusal or "")
        return self.replication.statuses.get(
            name, ReplicaStatus(DISCONNECTED, "has not registered since this master started")
        )

    def serial_of(self, name: str) -> Optional[int]:
        if name == self.replica.config.replica_name:
            return int(self.replica.store.serial)
        session = self.replication.sessions.get(name)
        return session.serial if session is not None else None

    def start(self) -> None:
        replica = self.replica
        self.history = EpochHistory.from_meta(replica.state.meta)
        replica.database.refusal = self.write_refusal
        replica.database.replicate = self.replication.replicate
        replica.database.prepare_replication = self.replication.prepare
        replica.database.abandon_replication = self.replication.abandon
        if self.readonly:
            self.log.warn(
                "Master started with --readonly: it serves reads, refuses writes and does not "
                "sync slaves (epoch {epoch}, serial {serial})",
                epoch=str(self.epoch()),
                serial=replica.store.serial,
            )
            return
        self._begin_opening()

    def _begin_opening(self) -> None:
        """Open the epoch under the write lock; if that fails, refuse writes and retry."""

        def failed(failure: Failure) -> None:
            self.log.error(
                "[Replica] the master could not open its epoch ({reason}); it refuses writes "
                "and tries again in {delay:g} s",
                reason=self.not_opened,
                delay=OPEN_RETRY_DELAY,
            )
            self._retry = self.replica.reactor.callLater(OPEN_RETRY_DELAY, self._begin_opening)

        self._retry = None
        self.replica.database.exclusively(lambda: Deferred.fromCoroutine(self._open())).addErrback(
            failed
        )

    def stop(self) -> Deferred[Any]:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._watch.running:
            self._watch.stop()
        self.replication.stop_watching()
        self.replication.close_all("the master is stopping")
        return succeed(None)

    # -- opening and fencing ----------------------------------------------------------

    def _targets(self, live_too: bool) -> dict[str, list[Endpoint]]:
        """Every stored replica, probed under its own name and as a promoted Master."""
        live = set(self.replication.live_slaves())
        targets: dict[str, list[Endpoint]] = {}
        for name, endpoints in self.replica.directory.others().items():
            if name in live and not live_too:
                continue
            for as_name in {name, MASTER}:
                targets.setdefault(as_name, []).extend(
                    e for e in endpoints.internal if e not in targets.get(as_name, [])
                )
        return targets

    async def _survey(self, live_too: bool) -> list[PeerAnswer]:
        replica = self.replica
        targets = self._targets(live_too)
        if replica.config.locator is not None:
            found = await replica.peers.master_endpoints(replica.directory.own, None)
            targets.setdefault(MASTER, []).extend(
                e for e in found if e not in targets.get(MASTER, [])
            )
        mine = set(replica.directory.own.internal if replica.directory.own else ())
        return await replica.peers.survey(
            {name: [e for e in endpoints if e not in mine] for name, endpoints in targets.items()}
        )

    async def _open(self) -> None:
        """
        Begin a new epoch, unless another master runs or a newer epoch exists.
        A failure is recorded here, with the write lock still held, so that no
        write queued behind the opening commits outside an epoch.
        """
        try:
            await self._open_epoch()
        except BaseException as exc:
            self.not_opened = str(exc) or type(exc).__name__
            raise

    async def _open_epoch(self) -> None:
        answers = await self._survey(live_too=True)
        stored = self.history.current
        masters = [a for a in answers if a.master]
        if masters:
            other = max(masters, key=lambda a: a.epoch)
            self.log.critical(
                "Another master of {instance} is running (epoch {epoch}, at {peer}): "
                "there is one master per grid; this replica stops",
                instance=self.replica.config.instance_name,
                epoch=str(other.epoch),
                peer=other.where,
            )
            self.fence(f"another master (epoch {other.epoch}) answers at {other.where}")
            self.replica.on_conflict()
            return
        newer = [a for a in answers if a.epoch > stored]
        if newer:
            seen = max(newer, key=lambda a: a.epoch)
            self.fence(
                f"superseded: replica `{seen.name}' at {seen.where} has seen epoch {seen.epoch}, "
                f"newer than this database's {stored}; promote or resync this replica with "
                "--initdb-from-replica"
            )
            return
        latest = max([stored, *(a.epoch for a in answers)])
        replica = self.replica
        history = self.history.begin(new_epoch(latest), replica.store.serial + 1)
        own = replica.directory.own
        records = replica.directory.changed_records({MASTER: own.to_json()}) if own else []
        self.not_opened = None  # a retry: its own commit must not be refused
        committed = await replica.database.write_locked(lambda: [epoch_mutation(history), *records])
        if committed is not None:
            # the slaves get the epoch when they register: no quorum to wait for
            committed[1].addErrback(lambda _: None)
        self.history = history
        self.opened = True
        self.not_opened = None
        self.replication.start_watching()
        self.log.info(
            "[Replica] master opened epoch {epoch} at serial {serial}",
            epoch=str(history.current),
            serial=replica.store.serial,
        )
        self._watch.start(replica.config.epoch_check_interval, now=False)

    async def _check(self) -> None:
        answers = await self._survey(live_too=False)
        newer = [a for a in answers if a.epoch > self.epoch()]
        if newer:
            seen = max(newer, key=lambda a: a.epoch)
            role = "the master" if seen.master else f"replica `{seen.name}'"
            self.fence(f"superseded by epoch {seen.epoch}: {role} at {seen.where} has it")

    def _watch_for_newer_epochs(self) -> Deferred[None]:
        """Ask the replicas that are not live slaves of this master for their epochs."""
        return Deferred.fromCoroutine(self._check()).addErrback(
            lambda f: self.log.failure("Could not check the other replicas' epochs", f)
        )

    def fence(self, why: str) -> None:
        """Stop accepting writes and slaves for good; Ice clients go elsewhere."""
        if self.fenced is not None:
            return
        self.fenced = why
        self.log.critical("[Replica] this master stops accepting writes: {why}", why=why)
        if self._watch.running:
            self._watch.stop()
        self.replication.close_all(f"the master is fenced: {why}")
        replica = self.replica
        replica.client_factory.accepting = replica.server_factory.accepting = False
        replica.client_factory.close_all()
        replica.server_factory.close_all()

    # -- slaves ------------------------------------------------------------------------

    def _slaves_changed(self) -> None:
        replica = self.replica
        own = replica.directory.own
        assert own is not None
        live = self.replication.live_slaves()
        replica.directory.set_active([MASTER, *sorted(live)])
        changed = replica.directory.changed_records(live)
        if changed and self.write_refusal() is None:
            replica.database.commit(changed).addErrback(self._bookkeeping_failed)
        self.replication.announce({MASTER: own.to_json(), **live})
        replica.nodes.announce_replicas({MASTER: own.to_json(), **live})

    def _bookkeeping_failed(self, failure: Failure) -> None:
        """The replica set is committed locally even without a quorum; slaves sync it."""
        if not failure.check(QuorumError, NotMasterError):
            self.log.failure("Could not record the replica set", failure)
