# -*- test-case-name: tests.test_master_fanout -*-
"""
The master's side of replication (L{gridreg.registry.master}) against fake
slave connections on a fake clock: what each slave is sent and in which
order, when a write is acknowledged (with and without a quorum), and when a
slave is dropped, its connection closed and its status recorded.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from twisted.internet.defer import Deferred, TimeoutError, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from gridreg.protocol.chunking import CHUNK_SIZE, BeginTransfer, TransferChunk, TransferReceiver
from gridreg.protocol.commands import (
    BeginSnapshot,
    InstallSnapshot,
    PushChanges,
    ReplicaSetChanged,
)
from gridreg.protocol.errors import (
    DuplicateReplicaError,
    QuorumError,
    SyncError,
    TransferError,
)
from gridreg.registry import master as master_module
from gridreg.registry.master import _BATCH_BYTES, INLINE_BYTES, MasterReplication, SlaveSession
from gridreg.registry.trace import TraceLevels
from gridreg.store.memory import MemoryStore
from gridreg.store.records import Change, Mutation, StoreState
from gridreg.store.snapshot_codec import SnapshotDecoder

TIMEOUT = 2.0


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = 0

    def abortConnection(self) -> None:
        self.aborted += 1


class FakeSlave:
    """
    A slave's connection as the master sees it: it receives transfers with a
    real L{TransferReceiver} and answers each command at once, unless told
    to hold its answers or to fail a command.
    """

    def __init__(self) -> None:
        self.transport: Optional[FakeTransport] = FakeTransport()
        self.calls: list[tuple[type[amp.Command], dict[str, Any]]] = []
        self.receiver = TransferReceiver(10**9)
        self.hold = False
        self.held: list[Deferred[dict[str, Any]]] = []
        self.failing: dict[type[amp.Command], Exception] = {}
        #: what the slave applied, in order
        self.applied: list[int] = []
        self.snapshots: list[Any] = []
        #: the snapshots streaming in: their decoder and the records read so far
        self.streams: dict[str, tuple[SnapshotDecoder, list[Any]]] = {}

    def commands(self) -> list[type[amp.Command]]:
        return [command for command, _ in self.calls]

    def callRemote(self, command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
        self.calls.append((command, kwargs))
        if command in self.failing:
            return fail(self.failing[command])
        if self.hold:
            d: Deferred[dict[str, Any]] = Deferred()
            self.held.append(d)
            return d
        d = Deferred()
        d.callback(self.answer(command, kwargs))
        return d

    def callRemoteString(
        self, command: bytes, requiresAnswer: bool = True, **box: bytes
    ) -> Deferred[amp.AmpBox]:
        """AMP's low-level call: decoded as the slave would, answered as a box."""
        assert command == PushChanges.commandName, command
        kwargs = PushChanges.parseArguments(amp.AmpBox(box), self)
        answered = self.callRemote(PushChanges, **kwargs)
        return answered.addCallback(lambda answer: PushChanges.makeResponse(answer, self))

    def answer(self, command: type[amp.Command], kwargs: dict[str, Any]) -> dict[str, Any]:
        if command is BeginTransfer:
            self.receiver.begin(kwargs["transfer"], kwargs["size"], kwargs["sha256"])
            return {}
        if command is TransferChunk:
            self.receiver.chunk(kwargs["transfer"], kwargs["seq"], kwargs["data"])
            return {}
        if command is PushChanges:
            payload = kwargs["changes"]
            if kwargs["transfer"]:
                payload = self.receiver.take(kwargs["transfer"]).decode("utf-8")
            serials = [c["serial"] for c in json.loads(payload)]
            self.applied.extend(serials)
            return {"serial": serials[-1]}
        if command is BeginSnapshot:
            decoder, rows = self.streams[kwargs["transfer"]] = (SnapshotDecoder(), [])

            def consume(data: bytes) -> Deferred[None]:
                rows.extend(decoder.feed(data))
                return succeed(None)

            self.receiver.begin_stream(kwargs["transfer"], consume)
            return {}
        if command is InstallSnapshot:
            self.receiver.end_stream(kwargs["transfer"], kwargs["size"], kwargs["sha256"])
            decoder, rows = self.streams.pop(kwargs["transfer"])
            info = decoder.finish()
            records: dict[str, dict[str, Any]] = {}
            for kind, key, value in rows:
                if value is None:
                    records.get(kind, {}).pop(key, None)
                else:
                    records.setdefault(kind, {})[key] = json.loads(value)
            state = StoreState(info.database_id, info.serial, records)
            self.snapshots.append(state)
            return {"serial": state.serial}
        return {}


def change(serial: int, size: int = 10) -> Change:
    return Change(serial, (Mutation("object", f"o{serial}", {"pad": "x" * size}),))


class MasterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.successResultOf(self.store.open())
        self.changed: list[None] = []
        self.events: list[dict[str, Any]] = []
        logger = Logger(observer=self.events.append)
        self.patch(master_module.SlaveSession, "log", logger)
        self.patch(master_module.MasterReplication, "log", logger)
        self.master = self.replication()

    def replication(self, min_acks: int = 0, trace: int = 0) -> MasterReplication:
        return MasterReplication(
            self.store,
            self.clock,
            TIMEOUT,
            TraceLevels(replica=trace),
            lambda: self.changed.append(None),
            min_acks=min_acks,
        )

    def commit(self, count: int = 1) -> list[Change]:
        return [
            self.successResultOf(self.store.commit([Mutation("object", f"k{i}", {"i": i})]))
            for i in range(count)
        ]

    def join(
        self, name: str, slave: Optional[FakeSlave] = None, serial: Optional[int] = None
    ) -> FakeSlave:
        """A slave of the master's lineage registers and catches up."""
        slave = slave or FakeSlave()
        self.master.register(
            slave,
            name,
            {"internal": name},
            self.store.database_id,
            self.store.serial if serial is None else serial,
        )
        self.clock.advance(0)
        return slave

    def write(self) -> tuple[Change, Deferred[None]]:
        (committed,) = self.commit(1)
        return committed, self.master.replicate(committed)

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]


class RegisterTests(MasterTests):
    def test_same_lineage_syncs_by_changes_from_its_serial(self) -> None:
        self.commit(3)
        slave = FakeSlave()
        answer = self.master.register(slave, "R1", {}, self.store.database_id, 1)
        self.assertEqual(
            answer, {"database_id": self.store.database_id, "serial": 3, "sync": "changes"}
        )
        status = self.master.statuses["R1"]
        self.assertEqual(status.state, "syncing")
        self.assertIn("changes from serial 1", status.reason)
        self.assertEqual(slave.calls, [], "the sync starts on the next turn")
        self.clock.advance(0)
        self.assertEqual(slave.applied, [2, 3])
        self.assertEqual(slave.snapshots, [])
        self.assertEqual(self.master.live_slaves(), {"R1": {}})
        self.assertEqual(self.master.statuses["R1"].state, "live")
        self.assertEqual(self.master.sessions["R1"].serial, 3)
        self.assertEqual(len(self.changed), 1)

    def test_an_up_to_date_slave_is_sent_nothing(self) -> None:
        self.commit(2)
        slave = self.join("R1", serial=2)
        self.assertEqual(slave.calls, [])
        self.assertIn("R1", self.master.live_slaves())

    def test_a_foreign_database_gets_a_snapshot(self) -> None:
        self.commit(2)
        slave = FakeSlave()
        answer = self.master.register(slave, "R1", {}, "another-database", 1)
        self.assertEqual(answer["sync"], "snapshot")
        self.assertIn("snapshot", self.master.statuses["R1"].reason)
        self.clock.advance(0)
        self.assertEqual(slave.commands()[0], BeginSnapshot)
        self.assertEqual(slave.commands()[-1], InstallSnapshot)
        (state,) = slave.snapshots
        self.assertEqual((state.database_id, state.serial), (self.store.database_id, 2))
        self.assertEqual(state.records["object"], {"k0": {"i": 0}, "k1": {"i": 1}})
        install = slave.calls[-1][1]
        self.assertEqual(install["database_id"], self.store.database_id)
        self.assertEqual(install["serial"], 2)
        self.assertEqual(self.master.sessions["R1"].database_id, self.store.database_id)
        self.assertEqual(self.master.sessions["R1"].serial, 2)
        self.assertIn("R1", self.master.live_slaves())

    def test_a_change_committed_right_after_registration_waits_for_the_sync(self) -> None:
        """
        A write that commits in the same turn as a registration is sent after
        what the slave missed, so the slave receives every serial in order.
        """
        self.commit(1)
        slave = FakeSlave()
        self.master.register(slave, "R1", {}, self.store.database_id, 0)
        committed, d = self.write()
        self.clock.advance(0)
        self.assertEqual(slave.applied, [1, committed.serial])
        self.assertIn("R1", self.master.live_slaves())

    def test_a_snapshot_chunk_that_fails_drops_the_slave(self) -> None:
        """The errback of a failed chunk ends the sync: the slave is dropped, not left waiting."""
        self.commit(2)
        slave = FakeSlave()
        slave.failing[TransferChunk] = TransferError("chunk 0 of transfer refused")
        self.master.register(slave, "R1", {}, "another-database", 0)
        self.clock.advance(0)
        self.assertNotIn(InstallSnapshot, slave.commands())
        self.assertNotIn("R1", self.master.sessions)
        status = self.master.statuses["R1"]
        self.assertEqual(status.state, "failed")
        self.assertEqual(status.reason, "sync failed: chunk 0 of transfer refused")
        self.assertEqual(slave.transport.aborted, 1)

    def test_a_slave_ahead_of_the_master_gets_a_snapshot(self) -> None:
        self.commit(2)
        answer = self.master.register(FakeSlave(), "R1", {}, self.store.database_id, 3)
        self.assertEqual(answer["sync"], "snapshot")
        answer = self.master.register(FakeSlave(), "R2", {}, self.store.database_id, 2)
        self.assertEqual(answer["sync"], "changes")

    def test_changes_no_longer_retained_are_replaced_by_a_snapshot(self) -> None:
        self.store = MemoryStore(log_retention=1)
        self.successResultOf(self.store.open())
        self.master = self.replication()
        self.commit(4)
        slave = self.join("R1", serial=1)
        self.assertEqual(slave.applied, [])
        self.assertEqual([s.serial for s in slave.snapshots], [4])
        self.assertIn("R1", self.master.live_slaves())

    def test_a_name_is_taken_until_its_session_closes(self) -> None:
        first = self.join("R1")
        with self.assertRaises(DuplicateReplicaError):
            self.master.register(FakeSlave(), "R1", {}, self.store.database_id, 0)
        with self.assertRaises(DuplicateReplicaError):
            self.master.register(FakeSlave(), "Master", {}, self.store.database_id, 0)
        # the same connection registering again is not a duplicate
        self.master.register(first, "R1", {}, self.store.database_id, 0)
        self.master.drop(self.master.sessions["R1"], "gone")
        self.join("R1")
        self.assertIn("R1", self.master.live_slaves())

    def test_a_failed_sync_drops_the_slave_with_the_reason(self) -> None:
        self.commit(1)
        slave = FakeSlave()
        slave.failing[PushChanges] = SyncError("disk full")
        self.join("R1", slave, serial=0)
        self.assertNotIn("R1", self.master.sessions)
        self.assertEqual(self.master.statuses["R1"].state, "failed")
        self.assertIn("sync failed: disk full", self.master.statuses["R1"].reason)
        self.assertEqual(slave.transport.aborted, 1)
        self.assertEqual(self.changed, [], "it never was live")

    def test_a_slave_dropped_while_syncing_does_not_become_live(self) -> None:
        self.commit(1)
        slave = FakeSlave()
        slave.hold = True
        self.join("R1", slave, serial=0)
        session = self.master.sessions["R1"]
        self.master.drop(session, "operator")
        slave.held[0].callback({"serial": 1})
        self.assertFalse(session.live)
        self.assertEqual(self.master.live_slaves(), {})
        self.assertEqual(self.master.statuses["R1"].state, "failed")
        self.assertEqual(self.changed, [])

    def test_registration_and_sync_are_traced(self) -> None:
        self.master = self.replication(trace=1)
        self.commit(1)
        self.clock.advance(10)
        self.join("R1", serial=0)
        text = "\n".join(self.messages())
        self.assertIn("(0.000 s)", text)
        self.assertIn("slave `R1' registered at serial 0", text)
        self.assertIn("syncing by changes", text)
        self.assertIn("slave `R1' is up to date at serial 1", text)

    def test_nothing_traced_at_level_zero(self) -> None:
        self.commit(1)
        slave = self.join("R1", serial=0)
        self.master.lost(slave)
        self.assertEqual(self.messages(), [])


class PushTests(MasterTests):
    def session(self, serial: int = 0) -> tuple[SlaveSession, FakeSlave]:
        slave = FakeSlave()
        session = SlaveSession(
            "R1", {}, slave, serial, "db", self.clock, TIMEOUT, TraceLevels(replica=3)
        )
        return session, slave

    def test_only_changes_past_the_slave_serial_are_sent(self) -> None:
        session, slave = self.session(serial=2)
        self.successResultOf(session.push([change(1), change(2)]))
        self.assertEqual(slave.calls, [])
        self.successResultOf(session.push([change(2), change(3), change(4)]))
        self.assertEqual(slave.applied, [3, 4])
        self.assertEqual(session.serial, 4)
        (call,) = slave.calls
        self.assertEqual(call[1]["database_id"], "db")
        self.assertEqual(call[1]["transfer"], "")

    def test_a_push_over_amp_gets_the_slave_serial_and_its_declared_errors(self) -> None:
        """The push's low-level AMP call answers as callRemote would, errors included."""
        answers: list[Any] = [{"serial": 7}, SyncError("changes of database other")]

        class Slave(amp.AMP):
            @PushChanges.responder
            def push(self, database_id: str, changes: str, transfer: str) -> dict[str, int]:
                self.seen = (database_id, json.loads(changes), transfer)
                answer = answers.pop(0)
                if isinstance(answer, Exception):
                    raise answer
                return answer  # type: ignore[no-any-return]

        slave, master, pump = connectedServerAndClient(amp.AMP, Slave)
        session = SlaveSession("R1", {}, master, 0, "db", self.clock, TIMEOUT, TraceLevels())
        # through send(), which takes each push's outcome before AMP's last errback
        pushed = session.send([change(1)])
        pump.flush()
        self.successResultOf(pushed)
        self.assertEqual(session.serial, 7)
        self.assertEqual(slave.seen[0], "db")
        self.assertEqual([c["serial"] for c in slave.seen[1]], [1])
        refused = session.send([change(8)])
        pump.flush()
        failure = self.failureResultOf(refused, SyncError)
        self.assertEqual(failure.getErrorMessage(), "changes of database other")

    def test_changes_travel_in_batches_of_bounded_size_in_order(self) -> None:
        session, slave = self.session()
        changes = [change(i, size=_BATCH_BYTES // 4) for i in range(1, 11)]
        self.successResultOf(session.push(changes))
        self.assertEqual(slave.applied, list(range(1, 11)))
        pushes = [kw for command, kw in slave.calls if command is PushChanges]
        # three changes of a quarter budget (and some JSON) fill a batch
        self.assertEqual([len(json.loads(kw["changes"])) for kw in pushes], [3, 3, 3, 1])
        for kw in pushes:
            self.assertLessEqual(len(kw["changes"].encode("utf-8")), INLINE_BYTES)
            self.assertEqual(kw["transfer"], "")

    def test_a_batch_just_under_the_budget_is_one_push(self) -> None:
        session, slave = self.session()
        changes = [change(1, size=_BATCH_BYTES // 2 - 200), change(2, size=_BATCH_BYTES // 2 - 200)]
        self.successResultOf(session.push(changes))
        self.assertEqual(slave.commands(), [PushChanges])
        self.assertEqual(slave.applied, [1, 2])

    def test_a_change_larger_than_an_amp_value_is_chunked(self) -> None:
        session, slave = self.session()
        self.successResultOf(session.push([change(1, size=3 * CHUNK_SIZE)]))
        commands = slave.commands()
        self.assertEqual(commands[0], BeginTransfer)
        self.assertEqual(commands.count(TransferChunk), 4)
        self.assertEqual(commands[-1], PushChanges)
        push = slave.calls[-1][1]
        self.assertEqual(push["changes"], "")
        self.assertEqual(push["transfer"], slave.calls[0][1]["transfer"])
        self.assertEqual(push["database_id"], "db")
        self.assertEqual(slave.applied, [1])
        self.assertEqual(session.serial, 1)

    def test_an_acknowledgement_counts_as_heard_from_and_is_traced(self) -> None:
        session, slave = self.session()
        self.clock.advance(7)
        self.successResultOf(session.push([change(1)]))
        self.assertEqual(session.heard, 7)
        self.assertIn("slave `R1' acknowledged serial 1", "\n".join(self.messages()))

    def test_an_unanswered_push_is_overdue_after_the_timeout(self) -> None:
        """
        An unanswered push is overdue once it waited longer than the
        timeout; timing it out fails it, and an answer coming later is
        ignored.
        """
        session, slave = self.session()
        slave.hold = True
        d = session.push([change(1)])
        self.clock.advance(TIMEOUT)
        self.assertFalse(session.push_overdue(self.clock.seconds()))
        self.clock.advance(0.1)
        self.assertTrue(session.push_overdue(self.clock.seconds()))
        self.assertNoResult(d)
        session.time_out_push()
        self.failureResultOf(d, TimeoutError)
        slave.held[0].callback({"serial": 1})
        self.assertEqual(session.serial, 0)
        self.assertFalse(session.push_overdue(self.clock.seconds() + 10 * TIMEOUT))

    def test_an_answered_push_is_never_overdue(self) -> None:
        session, slave = self.session()
        slave.hold = True
        d = session.push([change(1)])
        slave.held[0].callback({"serial": 1})
        self.successResultOf(d)
        self.assertFalse(session.push_overdue(self.clock.seconds() + 10 * TIMEOUT))

    def test_drop_closes_the_connection_once(self) -> None:
        session, slave = self.session()
        session.live = True
        session.drop("why")
        session.drop("again")
        self.assertEqual(slave.transport.aborted, 1)
        self.assertTrue(session.closed)
        self.assertFalse(session.live)
        self.assertIn("dropping slave `R1': why", "\n".join(self.messages()))
        self.assertNotIn("again", "\n".join(self.messages()))

    def test_drop_without_a_transport(self) -> None:
        session, slave = self.session()
        slave.transport = None
        session.drop("why")
        self.assertTrue(session.closed)

    def test_jobs_run_in_order(self) -> None:
        session, slave = self.session()
        slave.hold = True
        order: list[int] = []
        first = session.run(lambda: session.push([change(1)]))
        first.addCallback(lambda _: order.append(1))
        second = session.run(lambda: session.push([change(1), change(2)]))
        second.addCallback(lambda _: order.append(2))
        self.assertEqual(len(slave.held), 1, "the second job waits for the first")
        slave.held[0].callback({"serial": 1})
        self.assertEqual(len(slave.held), 2)
        self.assertEqual(json.loads(slave.calls[1][1]["changes"])[0]["serial"], 2)
        slave.held[1].callback({"serial": 2})
        self.assertEqual(order, [1, 2])

    def test_a_failed_job_fails_its_caller_and_the_next_one_runs(self) -> None:
        session, _ = self.session()
        gate: Deferred[None] = Deferred()
        first = session.run(lambda: gate)
        second = session.run(lambda: fail(ValueError("refused")))
        third = session.run(lambda: succeed("third"))
        self.assertNoResult(second)
        gate.callback(None)
        self.assertIsNone(self.successResultOf(first))
        self.failureResultOf(second, ValueError)
        self.assertEqual(self.successResultOf(third), "third")
        # synchronous jobs run at once when nothing is in progress
        self.assertEqual(self.successResultOf(session.run(lambda: succeed(4))), 4)


class DropTests(MasterTests):
    def test_dropping_a_live_slave_announces_the_change(self) -> None:
        slave = self.join("R1")
        self.changed.clear()
        self.master.drop(self.master.sessions["R1"], "broken")
        self.assertEqual(slave.transport.aborted, 1)
        self.assertEqual(self.master.sessions, {})
        self.assertEqual(self.master.statuses["R1"].state, "failed")
        self.assertEqual(self.master.statuses["R1"].reason, "broken")
        self.assertEqual(len(self.changed), 1)

    def test_dropping_a_replaced_session_keeps_the_new_one(self) -> None:
        self.join("R1")
        old = self.master.sessions["R1"]
        self.master.lost(old.protocol)
        self.join("R1")
        new = self.master.sessions["R1"]
        self.master.drop(old, "late failure of the old session")
        self.assertIs(self.master.sessions["R1"], new)
        self.assertEqual(self.master.statuses["R1"].state, "live")

    def test_a_lost_connection_forgets_only_its_slave(self) -> None:
        one = self.join("R1")
        self.join("R2")
        self.changed.clear()
        self.master.lost(one)
        self.assertEqual(sorted(self.master.sessions), ["R2"])
        self.assertEqual(self.master.statuses["R1"].state, "disconnected")
        self.assertIn("lost", self.master.statuses["R1"].reason)
        self.assertEqual(one.transport.aborted, 0)
        self.assertEqual(len(self.changed), 1)
        self.master.lost(FakeSlave())
        self.assertEqual(len(self.changed), 1)

    def test_a_connection_lost_while_syncing_is_not_made_live(self) -> None:
        self.commit(1)
        slave = FakeSlave()
        slave.hold = True
        self.join("R1", slave, serial=0)
        self.master.lost(slave)
        slave.held[0].callback({"serial": 1})
        self.assertEqual(self.master.statuses["R1"].state, "disconnected")
        self.assertEqual(self.master.live_slaves(), {})
        self.assertEqual(len(self.changed), 1)

    def test_a_push_failing_after_the_connection_was_lost(self) -> None:
        slave = self.join("R1")
        slave.hold = True
        self.changed.clear()
        _, d = self.write()
        self.master.lost(slave)
        self.assertEqual(len(self.changed), 1)
        slave.held[0].errback(SyncError("connection lost"))
        self.successResultOf(d)
        self.assertEqual(len(self.changed), 1, "the slave was already gone")
        self.assertEqual(self.master.statuses["R1"].state, "disconnected")

    def test_a_lost_connection_is_traced(self) -> None:
        self.master = self.replication(trace=1)
        slave = self.join("R1")
        self.master.lost(slave)
        self.assertIn("slave `R1' disconnected", "\n".join(self.messages()))

    def test_close_all_drops_every_slave(self) -> None:
        slaves = [self.join("R1"), self.join("R2")]
        self.master.close_all("the master is stopping")
        self.assertEqual(self.master.sessions, {})
        self.assertEqual([s.transport.aborted for s in slaves], [1, 1])
        self.assertEqual(self.master.statuses["R2"].reason, "the master is stopping")

    def test_only_live_slaves_are_listed(self) -> None:
        self.commit(1)
        self.join("R1")
        holding = FakeSlave()
        holding.hold = True
        self.join("R2", holding, serial=0)
        self.assertEqual(self.master.live_slaves(), {"R1": {"internal": "R1"}})


class KeepaliveTests(MasterTests):
    def test_a_silent_slave_is_dropped_after_a_session_timeout(self) -> None:
        self.clock.advance(100)
        slave = self.join("R1")
        self.master.start_watching()
        self.master.start_watching()  # a second start is harmless
        self.clock.advance(TIMEOUT)
        self.assertIn("R1", self.master.live_slaves(), "silent for exactly the timeout")
        self.clock.advance(TIMEOUT / 4)
        self.assertNotIn("R1", self.master.sessions)
        self.assertEqual(slave.transport.aborted, 1)
        self.assertIn("nothing heard from it for 2.5 s", self.master.statuses["R1"].reason)

    def test_keepalives_keep_a_slave(self) -> None:
        slave = self.join("R1")
        self.master.start_watching()
        for _ in range(12):
            self.clock.advance(TIMEOUT / 2)
            self.assertTrue(self.master.heard_from(slave, 0))
        self.assertIn("R1", self.master.live_slaves())
        self.assertEqual(self.master.sessions["R1"].heard, self.clock.seconds())

    def test_keepalive_from_an_unknown_or_closed_session(self) -> None:
        slave = self.join("R1")
        self.assertIs(self.master.heard_from(FakeSlave(), 0), False)
        session = self.master.sessions["R1"]
        session.closed = True
        self.clock.advance(1)
        self.assertFalse(self.master.heard_from(slave, 0))
        self.assertEqual(session.heard, 0)

    def test_the_watch_checks_four_times_a_timeout(self) -> None:
        self.master.start_watching()
        (call,) = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), TIMEOUT / 4)

    def test_stopped_watching_drops_nobody(self) -> None:
        self.join("R1")
        self.master.start_watching()
        self.master.stop_watching()
        self.master.stop_watching()
        self.clock.advance(10 * TIMEOUT)
        self.assertIn("R1", self.master.live_slaves())

    def test_an_error_in_the_check_does_not_stop_the_watch(self) -> None:
        slave = self.join("R1")
        self.master.start_watching()
        calls: list[None] = []
        real_drop = self.master.drop

        def broken(session: SlaveSession, why: str) -> None:
            calls.append(None)
            if len(calls) == 1:
                raise RuntimeError("boom")
            real_drop(session, why)

        self.patch(self.master, "drop", broken)
        self.clock.advance(TIMEOUT + TIMEOUT / 4)
        self.assertEqual(len(calls), 1)
        self.assertIn("Could not check the slaves' keepalives", self.messages())
        self.clock.advance(TIMEOUT / 4)
        self.assertEqual(len(calls), 2)
        self.assertEqual(slave.transport.aborted, 1)


class FanOutTests(MasterTests):
    def test_a_write_waits_for_every_live_slave(self) -> None:
        one, two = self.join("R1"), self.join("R2")
        one.hold = two.hold = True
        committed, d = self.write()
        self.assertNoResult(d)
        one.held[0].callback({"serial": committed.serial})
        self.assertNoResult(d)
        two.held[0].callback({"serial": committed.serial})
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.master.sessions["R1"].serial, committed.serial)

    def test_a_syncing_slave_gets_the_change_but_is_not_waited_for(self) -> None:
        self.join("R1")
        self.commit(1)
        syncing = FakeSlave()
        syncing.hold = True
        self.join("R2", syncing, serial=0)
        committed, d = self.write()
        self.successResultOf(d)
        self.assertEqual(len(syncing.held), 1, "the change waits behind the sync")
        syncing.held[0].callback({"serial": 1})
        self.assertEqual(len(syncing.held), 2)
        syncing.held[1].callback({"serial": committed.serial})
        self.assertIn("R2", self.master.live_slaves())

    def test_a_slave_that_does_not_acknowledge_is_dropped_and_the_write_returns(self) -> None:
        one = self.join("R1")
        two = self.join("R2")
        two.failing[PushChanges] = SyncError("cannot apply")
        committed, d = self.write()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(sorted(self.master.sessions), ["R1"])
        self.assertEqual(two.transport.aborted, 1)
        self.assertIn("no acknowledgement: cannot apply", self.master.statuses["R2"].reason)
        self.assertEqual(one.applied, [committed.serial])

    def test_a_hung_slave_delays_a_write_by_at_most_the_timeout_and_a_check(self) -> None:
        """
        The watch (every quarter timeout) drops a slave whose push waited
        longer than the timeout: the write returns, the reason says so.
        """
        slave = self.join("R1")
        self.master.start_watching()
        self.clock.advance(0.1)
        slave.hold = True
        _, d = self.write()
        self.clock.advance(TIMEOUT - 0.1)
        self.assertNoResult(d)
        self.assertIn("R1", self.master.live_slaves())
        self.clock.advance(TIMEOUT / 4)
        self.successResultOf(d)
        self.assertEqual(slave.transport.aborted, 1)
        self.assertNotIn("R1", self.master.sessions)
        self.assertEqual(
            self.master.statuses["R1"].reason, "no acknowledgement: no answer within 2 s"
        )

    def test_closed_sessions_are_skipped(self) -> None:
        slave = self.join("R1")
        other = self.join("R2")
        self.master.sessions["R1"].closed = True
        committed, d = self.write()
        self.successResultOf(d)
        self.assertEqual(slave.calls, [])
        self.assertEqual(other.applied, [committed.serial])

    def test_a_write_without_slaves_returns_at_once(self) -> None:
        _, d = self.write()
        self.successResultOf(d)

    def test_replication_is_traced_at_level_two(self) -> None:
        self.master = self.replication(trace=2)
        self.join("R1")
        committed, d = self.write()
        self.successResultOf(d)
        self.assertIn(
            f"replicating serial {committed.serial} to 1 slave(s)", "\n".join(self.messages())
        )
        self.assertNotIn("acknowledged serial", "\n".join(self.messages()))

    def test_replication_is_not_traced_at_level_one(self) -> None:
        self.master = self.replication(trace=1)
        self.join("R1")
        _, d = self.write()
        self.successResultOf(d)
        self.assertNotIn("replicating serial", "\n".join(self.messages()))

    def test_by_default_a_write_needs_no_slave(self) -> None:
        """GridReg.Replication.MinAcks is 0 unless set: IceGrid's rule."""
        self.master = MasterReplication(
            self.store, self.clock, TIMEOUT, TraceLevels(), lambda: None
        )
        _, d = self.write()
        self.successResultOf(d)


class QuorumTests(MasterTests):
    def setUp(self) -> None:
        super().setUp()
        self.master = self.replication(min_acks=1)

    def test_acknowledged_once_enough_slaves_committed(self) -> None:
        one, two = self.join("R1"), self.join("R2")
        one.hold = two.hold = True
        (committed,) = self.commit(1)
        d = self.master.replicate(committed)
        self.assertNoResult(d)
        two.held[0].callback({"serial": committed.serial})
        self.successResultOf(d)
        timers = [c for c in self.clock.getDelayedCalls() if c.func.__name__ == "refuse"]
        self.assertEqual(timers, [], "the quorum timer is cancelled")
        one.held[0].callback({"serial": committed.serial})

    def test_two_acknowledgements_needed(self) -> None:
        self.master = self.replication(min_acks=2)
        one, two = self.join("R1"), self.join("R2")
        one.hold = two.hold = True
        (committed,) = self.commit(1)
        d = self.master.replicate(committed)
        one.held[0].callback({"serial": committed.serial})
        self.assertNoResult(d)
        two.held[0].callback({"serial": committed.serial})
        self.successResultOf(d)

    def test_refused_at_once_without_enough_slaves(self) -> None:
        (committed,) = self.commit(1)
        failure = self.failureResultOf(self.master.replicate(committed), QuorumError)
        message = failure.getErrorMessage()
        self.assertIn(f"serial {committed.serial} is committed on the master", message)
        self.assertIn("only 0 slave(s)", message)
        self.assertIn("MinAcks is 1", message)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refused_once_every_slave_failed(self) -> None:
        one, two = self.join("R1"), self.join("R2")
        one.failing[PushChanges] = two.failing[PushChanges] = SyncError("no")
        (committed,) = self.commit(1)
        self.failureResultOf(self.master.replicate(committed), QuorumError)

    def test_refused_after_the_timeout_while_a_slave_is_hung(self) -> None:
        self.master = self.replication(min_acks=2)
        one, two = self.join("R1"), self.join("R2")
        two.hold = True
        (committed,) = self.commit(1)
        d = self.master.replicate(committed)
        self.assertNoResult(d)
        self.clock.advance(TIMEOUT)
        failure = self.failureResultOf(d, QuorumError)
        self.assertIn("only 1 slave(s) committed it within 2 s", failure.getErrorMessage())
        self.assertEqual(one.applied, [committed.serial])

    def test_a_syncing_slave_counts_once_it_committed(self) -> None:
        self.commit(1)
        slave = FakeSlave()
        slave.hold = True
        self.join("R1", slave, serial=0)
        (committed,) = self.commit(1)
        d = self.master.replicate(committed)
        self.assertNoResult(d)
        slave.hold = False
        slave.held[0].callback(slave.answer(*slave.calls[0]))
        self.successResultOf(d)
        self.assertEqual(slave.applied, [1, committed.serial])


class AnnounceTests(MasterTests):
    def test_live_slaves_are_told_the_replica_set(self) -> None:
        self.commit(1)
        one = self.join("R1")
        syncing = FakeSlave()
        syncing.hold = True
        self.join("R2", syncing, serial=0)
        replicas = {"Master": {"internal": "m"}, "R1": {"internal": "R1"}}
        self.master.announce(replicas)
        command, kwargs = one.calls[-1]
        self.assertIs(command, ReplicaSetChanged)
        self.assertEqual(json.loads(kwargs["replicas"]), replicas)
        self.assertNotIn(ReplicaSetChanged, syncing.commands())

    def test_the_replica_set_says_the_masters_serial(self) -> None:
        """What a newly listed slave must hold before it serves: every write acknowledged without it."""
        one = self.join("R1")
        self.commit(3)
        self.master.announce({"Master": {"internal": "m"}, "R1": {"internal": "R1"}})
        command, kwargs = one.calls[-1]
        self.assertIs(command, ReplicaSetChanged)
        self.assertEqual(kwargs["serial"], self.master.store.serial)
        self.assertGreaterEqual(kwargs["serial"], 3)

    def test_a_slave_that_misses_the_announcement_is_dropped(self) -> None:
        slave = self.join("R1")
        slave.failing[ReplicaSetChanged] = SyncError("gone")
        self.master.announce({})
        self.assertNotIn("R1", self.master.sessions)
        self.assertIn("replica set not delivered: gone", self.master.statuses["R1"].reason)
        self.assertEqual(slave.transport.aborted, 1)
