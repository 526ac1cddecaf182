# -*- test-case-name: tests.test_slave_sync -*-
"""
The slave's side of replication (L{gridreg.registry.slave}) against a fake
master over an in-memory AMP connection and a fake clock: registration and
the checks before it (who the master is, its epoch, whether it acts as the
master), applying changes and snapshots, keepalives and forwarding.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from twisted.application import _client_service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, formatEvent
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from gridreg.client.late_loss import late_loss_protocol
from gridreg.protocol.chunking import BeginTransfer, TransferChunk
from gridreg.protocol.commands import (
    PROTOCOL_VERSION,
    BeginSnapshot,
    ForwardAdapterRegistration,
    Hello,
    InstallSnapshot,
    PushChanges,
    RegisterReplica,
    ReplicaKeepAlive,
    ReplicaSetChanged,
)
from gridreg.protocol.errors import (
    DivergedError,
    DuplicateReplicaError,
    NotAuthorizedError,
    TransferError,
    NotMasterError,
    SyncError,
)
from gridreg.registry import slave as slave_module
from gridreg.registry.epochs import Epoch, EpochHistory, epoch_mutation
from gridreg.registry.slave import (
    FIRST_RETRY_DELAY,
    LOSS_REACTION_DELAY,
    MAX_RETRY_DELAY,
    MasterEndpoint,
    SlaveProtocol,
    SlaveReplication,
    data_straight_to,
)
from gridreg.registry.state import RegistryState
from gridreg.registry.trace import TraceLevels
from gridreg.store.executor import ManualExecutor
from gridreg.store.interfaces import SerialGapError, StoreError
from gridreg.store.memory import MemoryStore
from gridreg.store.records import Change, Mutation, StoreState, change_to_json
from gridreg.store.snapshot_codec import SnapshotEncoder
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Identity
from gridreg.registry.state import ObjectInfo, object_mutation

SESSION_TIMEOUT = 4.0


class MasterControl:
    """What the fake master answers, and what it was asked."""

    def __init__(self) -> None:
        self.master = True
        self.epoch = Epoch(3, "abc")
        self.answer_epoch: Optional[Epoch] = None
        self.refusal: Optional[Exception] = None
        self.registrations: list[dict[str, Any]] = []
        self.keepalives: list[int] = []
        self.silent = False
        self.forwarded: list[dict[str, str]] = []


class FakeMaster(amp.AMP):
    def __init__(self, control: MasterControl) -> None:
        super().__init__()
        self.control = control

    @Hello.responder
    def hello(self, version: int, role: str, name: str) -> dict[str, Any]:
        return {
            "version": PROTOCOL_VERSION,
            "instance": "DemoIceGrid",
            "replica": "Master",
            "master": self.control.master,
            "epoch": self.control.epoch.to_wire(),
        }

    @RegisterReplica.responder
    def register(
        self, name: str, endpoints: str, database_id: str, serial: int, epoch: str
    ) -> dict[str, Any]:
        self.control.registrations.append(
            {
                "name": name,
                "endpoints": json.loads(endpoints),
                "database_id": database_id,
                "serial": serial,
                "epoch": epoch,
            }
        )
        if self.control.refusal is not None:
            raise self.control.refusal
        answer = self.control.answer_epoch or self.control.epoch
        return {"database_id": "db", "serial": 9, "sync": "changes", "epoch": answer.to_wire()}

    @ReplicaKeepAlive.responder
    def keepalive(self, serial: int) -> Any:
        self.control.keepalives.append(serial)
        if self.control.silent:
            return Deferred()
        return {"epoch": self.control.epoch.to_wire()}

    @ForwardAdapterRegistration.responder
    def forward(self, adapter_id: str, replica_group_id: str, proxy: str) -> dict[str, str]:
        self.control.forwarded.append(
            {"adapter_id": adapter_id, "replica_group_id": replica_group_id, "proxy": proxy}
        )
        return {"exception": "", "reason": ""}


def put(name: str) -> Mutation:
    return object_mutation(Identity(name), ObjectInfo(proxy_from_string(f"{name}@A"), "::T"))


def change(serial: int, name: str) -> Change:
    return Change(serial, (put(name),))


def names(state: RegistryState) -> list[str]:
    return sorted(identity.name for identity in state.objects)


def records(*names: str) -> dict[str, Any]:
    return {"object": {put(n).key: put(n).value for n in names}}


def encode_snapshot(state: StoreState) -> bytes:
    """C{state} as the master streams it (in one block)."""
    encoder = SnapshotEncoder(state.database_id, state.serial)
    rows = [
        (kind, key, json.dumps(value))
        for kind, values in state.records.items()
        for key, value in values.items()
    ]
    return encoder.header() + encoder.block(rows) + encoder.trailer(state.serial)


class FakeAnswer(amp.AmpBox):
    """Stands for a L{ThreadAnswer}: says when it was armed and sent."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.armed = False

    def arm(self) -> None:
        self.armed = True
        self.events.append("armed")

    def send_from_thread(self) -> None:
        self.events.append(
            "sent from the store" if self.armed else "not armed: left to the reactor"
        )


class SlaveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.store = MemoryStore()
        self.successResultOf(self.store.open())
        self.state = RegistryState()
        self.active: list[list[str]] = []
        #: each list the role was told, with the master's serial at it
        self.listed: list[tuple[list[str], Optional[int]]] = []
        self.checked: list[Any] = []
        self.check_error: Optional[Exception] = None
        self.events: list[dict[str, Any]] = []
        #: what the slave told its role of each snapshot the state took
        self.snapshots: list[bool] = []
        self.patch(SlaveReplication, "log", Logger(observer=self.events.append))
        self.slave = SlaveReplication(
            self.reactor,
            "Replica1",
            self.store,
            self.state,
            lambda: succeed([]),
            lambda: {"internal": "tcp -p 5063"},
            self.told_active,
            TraceLevels(replica=3),
            request_timeout=1.0,
            check_master=self.check_master,
            session_timeout=SESSION_TIMEOUT,
            on_snapshot=self.snapshots.append,
        )
        self.control = MasterControl()

    def check_master(self, transport: Any) -> None:
        self.checked.append(transport)
        if self.check_error is not None:
            raise self.check_error

    def connect(self) -> tuple[SlaveProtocol, FakeMaster, Any]:
        protocol, master, pump = connectedServerAndClient(
            lambda: FakeMaster(self.control),
            lambda: SlaveProtocol(self.slave),
            greet=False,
        )
        return protocol, master, pump

    def told_active(self, names: list[str], serial: Optional[int]) -> None:
        self.active.append(names)
        self.listed.append((names, serial))

    def register(self) -> tuple[Deferred[None], SlaveProtocol, Any]:
        protocol, _, pump = self.connect()
        d = self.slave._register(protocol)
        pump.flush()
        return d, protocol, pump

    def messages(self) -> str:
        return "\n".join(formatEvent(e) for e in self.events)


class RegisterTests(SlaveTests):
    def test_registers_with_its_name_endpoints_database_and_epoch(self) -> None:
        self.successResultOf(self.store.commit([change(1, "a").mutations[0]]))
        d, protocol, pump = self.register()
        self.successResultOf(d)
        (sent,) = self.control.registrations
        self.assertEqual(sent["name"], "Replica1")
        self.assertEqual(sent["endpoints"], {"internal": "tcp -p 5063"})
        self.assertEqual(sent["database_id"], self.store.database_id)
        self.assertEqual(sent["serial"], 1)
        self.assertEqual(sent["epoch"], "0:")
        self.assertIs(self.slave.master, protocol)
        self.assertEqual(self.slave.status.state, "syncing")
        self.assertEqual(self.slave.seen_epoch, self.control.epoch)
        self.assertEqual(self.checked, [protocol.transport])
        self.assertIn("registered with the master (serial 9 there, 1 here)", self.messages())

    def test_a_peer_that_is_not_the_master_by_certificate_is_refused(self) -> None:
        """check_master (the TLS peer is the master) is asked before registering."""
        self.check_error = NotAuthorizedError("peer is `Replica2.registry.gridreg'")
        d, protocol, pump = self.register()
        self.successResultOf(d)
        self.assertEqual(self.control.registrations, [], "nothing is sent to an impostor")
        self.assertIsNone(self.slave.master)
        self.assertEqual(self.slave.status.state, "failed")
        self.assertIn("Replica2.registry.gridreg", self.slave.status.reason)
        self.assertFalse(protocol.transport.disconnecting)
        self.reactor.advance(FIRST_RETRY_DELAY)
        self.assertTrue(protocol.transport.disconnecting, "closed after the retry delay")

    def test_a_master_of_an_older_epoch_is_refused(self) -> None:
        self.slave.seen_epoch = Epoch(4, "zzz")
        d, protocol, pump = self.register()
        self.successResultOf(d)
        self.assertEqual(self.control.registrations, [])
        self.assertEqual(self.slave.status.state, "refused")
        self.assertIn("of epoch 3 (abc), older than epoch 4", self.slave.status.reason)
        self.assertIn("cannot sync with this master", self.messages())

    def test_the_epoch_held_in_the_database_counts_too(self) -> None:
        history = EpochHistory().begin(Epoch(5, "x"), 1)
        self.state.apply([epoch_mutation(history)])
        self.assertEqual(self.slave.held_epoch(), Epoch(5, "x"))
        self.assertEqual(self.slave.epoch(), Epoch(5, "x"))
        d, _, _ = self.register()
        self.successResultOf(d)
        self.assertEqual(self.slave.status.state, "refused")
        self.slave.seen_epoch = Epoch(6, "y")
        self.assertEqual(self.slave.epoch(), Epoch(6, "y"))

    def test_a_master_of_the_same_epoch_is_accepted(self) -> None:
        self.slave.seen_epoch = self.control.epoch
        d, _, _ = self.register()
        self.successResultOf(d)
        self.assertEqual(len(self.control.registrations), 1)

    def test_a_replica_that_does_not_act_as_master_is_not_registered_with(self) -> None:
        self.control.master = False
        d, _, _ = self.register()
        self.successResultOf(d)
        self.assertEqual(self.control.registrations, [])
        self.assertEqual(self.slave.status.state, "failed")
        self.assertIn("does not act as the master", self.slave.status.reason)

    def test_refusals_that_need_an_operator(self) -> None:
        for error in (DuplicateReplicaError("taken"), DivergedError("ahead")):
            self.control.refusal = error
            d, _, _ = self.register()
            self.successResultOf(d)
            self.assertEqual(self.slave.status.state, "refused")
            self.assertIn(str(error), self.slave.status.reason)

    def test_a_master_still_opening_is_retried_without_an_operator(self) -> None:
        self.control.refusal = NotMasterError("the master is starting")
        d, _, _ = self.register()
        self.successResultOf(d)
        self.assertEqual(self.slave.status.state, "failed")
        self.assertIn(
            "registration with the master failed: the master is starting",
            self.slave.status.reason,
        )

    def test_retry_delay_doubles_up_to_a_bound_and_resets(self) -> None:
        self.control.refusal = NotMasterError("not yet")
        delays = []
        for _ in range(6):
            d, protocol, _ = self.register()
            self.successResultOf(d)
            (call,) = [c for c in self.reactor.getDelayedCalls() if c.active()]
            delays.append(call.getTime() - self.reactor.seconds())
            call.cancel()
        self.assertEqual(delays, [0.5, 1.0, 2.0, 4.0, 5.0, 5.0])
        self.assertEqual(MAX_RETRY_DELAY, 5.0)
        self.control.refusal = None
        d, _, _ = self.register()
        self.successResultOf(d)
        self.assertEqual(self.slave._retry_delay, FIRST_RETRY_DELAY)

    def test_an_unanswered_hello_times_out(self) -> None:
        protocol, _, pump = self.connect()
        d = self.slave._register(protocol)
        self.reactor.advance(1.0)
        self.successResultOf(d)
        self.assertEqual(self.slave.status.state, "failed")
        self.assertEqual(self.checked, [])

    def test_a_newer_epoch_in_the_answer_is_remembered(self) -> None:
        self.control.answer_epoch = Epoch(7, "n")
        d, _, _ = self.register()
        self.successResultOf(d)
        self.assertEqual(self.slave.seen_epoch, Epoch(7, "n"))
        self.slave.seen_epoch = Epoch(9, "q")
        self.control.answer_epoch = Epoch(9, "p")
        self.control.epoch = Epoch(9, "p")
        d, _, _ = self.register()
        self.assertEqual(self.slave.seen_epoch, Epoch(9, "q"), "never goes back")


class KeepaliveTests(SlaveTests):
    def test_keepalives_go_four_times_a_session_timeout(self) -> None:

        d, protocol, pump = self.register()
        self.successResultOf(d)
        self.reactor.advance(SESSION_TIMEOUT / 4 - 0.01)
        pump.flush()
        self.assertEqual(self.control.keepalives, [])
        self.reactor.advance(0.01)
        pump.flush()
        self.assertEqual(self.control.keepalives, [0])
        self.reactor.advance(SESSION_TIMEOUT / 4)
        pump.flush()
        self.assertEqual(self.control.keepalives, [0, 0])
        self.assertFalse(protocol.transport.disconnecting)

    def test_an_answer_carries_the_master_epoch(self) -> None:
        d, protocol, pump = self.register()
        self.control.epoch = Epoch(8, "k")
        self.reactor.advance(SESSION_TIMEOUT / 4)
        pump.flush()
        self.assertEqual(self.slave.seen_epoch, Epoch(8, "k"))

    def test_an_unanswered_keepalive_drops_the_session(self) -> None:
        d, protocol, pump = self.register()
        self.control.silent = True
        self.reactor.advance(SESSION_TIMEOUT / 4)
        pump.flush()
        self.assertEqual(len(self.control.keepalives), 1)
        self.reactor.advance(SESSION_TIMEOUT - 0.01)
        self.assertFalse(protocol.transport.disconnecting)
        self.reactor.advance(0.01)
        self.assertTrue(protocol.transport.disconnecting)
        self.assertIn("did not answer a keepalive", self.messages())
        pump.flush()
        self.assertIsNone(self.slave.master)

    def test_no_keepalive_without_a_session(self) -> None:
        self.assertIsNone(self.slave._keep_alive())

    def test_stopping_stops_the_keepalives(self) -> None:
        d, protocol, pump = self.register()
        self.slave.startService()
        self.slave.stopService()
        self.reactor.advance(SESSION_TIMEOUT)
        pump.flush()
        self.assertEqual(self.control.keepalives, [])


class SessionTests(SlaveTests):
    def test_losing_the_master_forgets_the_session(self) -> None:
        d, protocol, pump = self.register()
        protocol.transport.loseConnection()
        pump.flush()
        self.assertIsNone(self.slave.master)
        self.assertEqual(self.slave.status.state, "disconnected")
        self.reactor.advance(LOSS_REACTION_DELAY)
        self.assertEqual(self.active, [[]])
        self.assertIn("lost the session with the master", self.messages())
        self.reactor.advance(2 * SESSION_TIMEOUT)
        self.assertNotIn("keepalive", self.messages(), "no keepalive goes to a lost master")

    def test_the_loss_is_acted_on_after_the_clients_failing_over(self) -> None:
        """
        At the master's loss the session is over at once, but the log line
        and the replica set without the master wait: the reactor serves the
        clients that fail over to this slave in that millisecond first.
        """
        d, protocol, pump = self.register()
        protocol.transport.loseConnection()
        pump.flush()
        self.assertEqual(self.slave.status.state, "disconnected")
        self.assertIsNone(self.slave.master)
        self.assertEqual(self.active, [])
        self.assertNotIn("lost the session with the master", self.messages())
        self.reactor.advance(LOSS_REACTION_DELAY * 0.9)
        self.assertEqual(self.active, [])
        self.reactor.advance(LOSS_REACTION_DELAY * 0.1)
        self.assertEqual(self.active, [[]])
        self.assertEqual(self.messages().count("lost the session with the master"), 1)

    def test_registering_again_before_the_reaction_keeps_the_new_replica_set(self) -> None:
        """
        A master found again before the loss is acted on: the loss is
        logged then, and the replica set is the new master's, never emptied
        behind it.
        """
        d, protocol, pump = self.register()
        protocol.transport.loseConnection()
        pump.flush()
        d, protocol, pump = self.register()
        self.successResultOf(d)
        self.assertEqual(self.messages().count("lost the session with the master"), 1)
        self.slave.set_active({"Master": {}, "Replica1": {}})
        self.reactor.advance(10 * LOSS_REACTION_DELAY)
        self.assertEqual(self.active, [["Master", "Replica1"]])
        self.assertEqual(self.slave.status.state, "live")

    def test_stopping_drops_a_pending_reaction(self) -> None:
        d, protocol, pump = self.register()
        protocol.transport.loseConnection()
        pump.flush()
        self.slave.stopService()
        self.assertEqual([c for c in self.reactor.getDelayedCalls() if c.active()], [])

    def test_losing_another_connection_changes_nothing(self) -> None:
        d, protocol, pump = self.register()
        other, _, other_pump = self.connect()
        other.transport.loseConnection()
        other_pump.flush()
        self.assertIs(self.slave.master, protocol)
        self.assertEqual(self.active, [])

    def test_live_once_the_master_lists_this_replica(self) -> None:
        d, protocol, pump = self.register()
        self.slave.set_active({"Master": {}, "Replica2": {}})
        self.assertEqual(self.slave.status.state, "syncing")
        self.slave.set_active({"Replica2": {}, "Master": {}, "Replica1": {}})
        self.assertEqual(self.slave.status.state, "live")
        self.assertEqual(self.active, [["Master", "Replica2"], ["Master", "Replica1", "Replica2"]])

    def test_replica_set_changed_from_the_master(self) -> None:
        d, protocol, pump = self.register()
        master = pump.server
        done = master.callRemote(ReplicaSetChanged, replicas=json.dumps({"Replica1": {}}))
        pump.flush()
        self.successResultOf(done)
        self.assertEqual(self.slave.status.state, "live")
        self.assertEqual(self.listed[-1], (["Replica1"], None), "an older master says no serial")

    def test_replica_set_changed_passes_the_masters_serial_on(self) -> None:
        d, protocol, pump = self.register()
        done = pump.server.callRemote(
            ReplicaSetChanged, replicas=json.dumps({"Master": {}, "Replica1": {}}), serial=7
        )
        pump.flush()
        self.successResultOf(done)
        self.assertEqual(self.listed[-1], (["Master", "Replica1"], 7))

    def test_forwarding_needs_the_master(self) -> None:
        failure = self.failureResultOf(self.slave.forward_registration("A", "", ""), SyncError)
        self.assertIn("the master is unreachable", failure.getErrorMessage())

    def test_forwarding_goes_to_the_master(self) -> None:
        d, protocol, pump = self.register()
        forwarded = self.slave.forward_registration("A", "G", "proxy")
        pump.flush()
        self.assertEqual(self.successResultOf(forwarded), {"exception": "", "reason": ""})
        self.assertEqual(
            self.control.forwarded, [{"adapter_id": "A", "replica_group_id": "G", "proxy": "proxy"}]
        )

    def test_forwarding_is_bounded_in_time(self) -> None:
        d, protocol, pump = self.register()
        forwarded = self.slave.forward_registration("A", "G", "proxy")
        self.reactor.advance(1.0)
        self.failureResultOf(forwarded)


class ApplyTests(SlaveTests):
    def test_changes_are_applied_to_the_store_and_the_state(self) -> None:
        payload = "[" + ",".join(change_to_json(change(i, f"k{i}")) for i in (1, 2)) + "]"
        answer = self.successResultOf(self.slave.apply_changes(self.store.database_id, payload))
        self.assertEqual(answer, {"serial": 2})
        self.assertEqual(self.store.serial, 2)
        self.assertEqual(names(self.state), ["k1", "k2"])
        self.assertIn("applied serial 2", self.messages())

    def test_changes_already_held_are_skipped(self) -> None:
        self.successResultOf(self.slave.apply_changes(self.store.database_id, self.payload(1)))
        again = "[" + ",".join(change_to_json(change(i, f"n{i}")) for i in (1, 2)) + "]"
        answer = self.successResultOf(self.slave.apply_changes(self.store.database_id, again))
        self.assertEqual(answer, {"serial": 2})
        self.assertEqual(names(self.state), ["k1", "n2"])

    def payload(self, serial: int) -> str:
        return "[" + change_to_json(change(serial, f"k{serial}")) + "]"

    def test_a_push_has_the_last_commits_result_handed_over_first(self) -> None:
        """
        A commit durable but not yet handed to the reactor (a quiet result)
        holds the write lock: the next push has it handed over first, so it
        is not queued behind it, and the answers keep their order.
        """
        waiting: list[tuple[Deferred[None], Deferred[None]]] = []
        durable = self.store.apply_many

        def quiet(changes: Any, **kwargs: Any) -> Deferred[None]:
            handed: Deferred[None] = Deferred()
            waiting.append((durable(changes, **kwargs), handed))
            return handed

        def deliver_ready() -> None:
            while waiting:
                done, handed = waiting.pop(0)
                done.chainDeferred(handed)

        self.patch(self.store, "apply_many", quiet)
        self.patch(self.store, "deliver_ready", deliver_ready)
        seen, reply = self.replying()
        first = self.slave.apply_changes(self.store.database_id, self.payload(1), reply=reply)
        self.assertNoResult(first)
        self.assertTrue(self.slave._lock.locked)
        second = self.slave.apply_changes(self.store.database_id, self.payload(2), reply=reply)
        self.assertEqual(self.successResultOf(first), "box 1")
        self.assertNoResult(second)
        self.assertEqual(len(waiting), 1)  # the second commit, on the fast path
        deliver_ready()
        self.assertEqual(self.successResultOf(second), "box 2")
        self.assertEqual(seen, [({"serial": 1}, False), ({"serial": 2}, False)])
        self.assertEqual(names(self.state), ["k1", "k2"])

    def replying(self) -> tuple[list[tuple[dict[str, int], bool]], Any]:
        """A reply that notes each answer and whether the write lock was held then."""
        seen: list[tuple[dict[str, int], bool]] = []

        def reply(result: dict[str, int]) -> str:
            seen.append((result, self.slave._lock.locked))
            return f"box {result['serial']}"

        return seen, reply

    def test_a_reply_is_made_once_the_lock_is_released(self) -> None:
        """
        With C{reply}, the answer is C{reply}'s of the result, made after
        the write lock is released: at one write in flight, in the
        commit's own callback.
        """
        seen, reply = self.replying()
        commits = self.hold_the_commits()
        replied = self.slave.apply_changes(self.store.database_id, self.payload(1), reply=reply)
        self.assertNoResult(replied)
        self.assertTrue(self.slave._lock.locked)
        commits.run_next()
        self.assertEqual(self.successResultOf(replied), "box 1")
        self.assertEqual(seen, [({"serial": 1}, False)])

    def test_a_reply_behind_a_held_lock(self) -> None:
        """A push that waits for the lock (a commit still running) replies as well, in order."""
        seen, reply = self.replying()
        commits = self.hold_the_commits()
        first = self.slave.apply_changes(self.store.database_id, self.payload(1), reply=reply)
        second = self.slave.apply_changes(self.store.database_id, self.payload(2), reply=reply)
        commits.run_next()
        self.assertEqual(self.successResultOf(first), "box 1")
        commits.run_next()
        self.assertEqual(self.successResultOf(second), "box 2")
        # the first's release handed the lock to the second push, as before
        self.assertEqual(seen, [({"serial": 1}, True), ({"serial": 2}, False)])

    def test_a_reply_when_nothing_is_new(self) -> None:
        seen, reply = self.replying()
        self.successResultOf(self.slave.apply_changes(self.store.database_id, self.payload(1)))
        replied = self.slave.apply_changes(self.store.database_id, self.payload(1), reply=reply)
        self.assertEqual(self.successResultOf(replied), "box 1")
        self.assertEqual(seen, [({"serial": 1}, False)])

    def test_no_reply_for_a_failed_commit(self) -> None:
        """The state is reloaded, the lock released, the failure passed on, nothing replied."""
        seen, reply = self.replying()
        self.successResultOf(self.slave.apply_changes(self.store.database_id, self.payload(1)))
        self.patch(self.store, "apply_many", lambda c, **kw: fail(OSError("disk is full")))
        failure = self.failureResultOf(
            self.slave.apply_changes(self.store.database_id, self.payload(2), reply=reply),
            OSError,
        )
        self.assertIn("disk is full", failure.getErrorMessage())
        self.assertEqual((seen, names(self.state)), ([], ["k1"]))
        self.assertFalse(self.slave._lock.locked)
        self.flushLoggedErrors()

    def test_no_reply_for_a_refused_push(self) -> None:
        seen, reply = self.replying()
        self.failureResultOf(
            self.slave.apply_changes(self.store.database_id, self.payload(2), reply=reply),
            SerialGapError,
        )
        self.assertEqual(seen, [])
        self.assertFalse(self.slave._lock.locked)

    def test_changes_of_another_database_are_refused(self) -> None:
        failure = self.failureResultOf(
            self.slave.apply_changes("other", self.payload(1)), SyncError
        )
        self.assertIn("changes of database other", failure.getErrorMessage())
        self.assertEqual(self.store.serial, 0)

    def hold_the_commits(self) -> ManualExecutor:
        """The store's commits wait until the returned executor runs them."""
        executor = ManualExecutor()
        self.patch(self.store, "_executor", executor)
        return executor

    def test_the_acknowledgement_may_leave_from_the_store_once_durable(self) -> None:
        """
        A pushed batch is visible before its commit; its acknowledgement is
        handed to the store's thread, armed once the state holds the batch,
        and sent from there once the commit is durable, before the reactor
        hears of it.
        """
        commits = self.hold_the_commits()
        answer = FakeAnswer()
        acknowledged = self.slave.apply_changes(self.store.database_id, self.payload(1), answer)
        self.assertEqual(names(self.state), ["k1"])
        self.assertEqual((answer.events, answer.get(b"serial")), (["armed"], b"1"))
        self.assertNoResult(acknowledged)
        acknowledged.addCallback(lambda result: (answer.events.append("reactor told"), result)[1])
        commits.run_next()
        self.assertEqual(answer.events, ["armed", "sent from the store", "reactor told"])
        self.assertEqual(self.successResultOf(acknowledged), {"serial": 1})
        self.assertEqual(self.store.serial, 1)

    def test_a_refused_commit_sends_no_acknowledgement_from_the_store(self) -> None:
        """The store refuses the batch: nothing leaves from its thread, the state reloads."""
        commits = self.hold_the_commits()
        answer = FakeAnswer()

        def refuse(changes: Any) -> None:
            raise StoreError("disk full")

        self.patch(self.store, "_persist_all", refuse)
        acknowledged = self.slave.apply_changes(self.store.database_id, self.payload(1), answer)
        self.assertEqual(names(self.state), ["k1"])
        commits.run_all()
        self.failureResultOf(acknowledged, StoreError)
        self.assertEqual(answer.events, ["armed"])
        self.assertEqual(names(self.state), [])

    def test_a_batch_the_state_refuses_is_never_armed(self) -> None:
        """The state could not take the batch: the store's thread must not acknowledge it."""
        commits = self.hold_the_commits()
        answer = FakeAnswer()

        def broken(mutations: Any) -> None:
            raise ValueError("cannot take it")

        self.patch(self.state, "apply", broken)
        acknowledged = self.slave.apply_changes(self.store.database_id, self.payload(1), answer)
        commits.run_all()
        self.failureResultOf(acknowledged, ValueError)
        self.assertEqual(answer.events, ["not armed: left to the reactor"])
        self.flushLoggedErrors()

    def install(self, data: bytes, database_id: str, serial: int) -> Deferred[Any]:
        """Stream C{data} in as a snapshot (one chunk) and install it, as the responders do."""
        protocol = SlaveProtocol(self.slave)

        def stream(_: object) -> Deferred[Any]:
            protocol.transfers.chunk("s", 0, data).addErrback(lambda _: None)
            return self.slave.install_snapshot(protocol.snapshots.pop("s"), database_id, serial)

        begun = self.slave.begin_snapshot(protocol, "s", database_id, serial)
        return begun.addCallback(stream)

    def test_a_snapshot_replaces_the_database(self) -> None:
        self.successResultOf(self.slave.apply_changes(self.store.database_id, self.payload(1)))
        state = StoreState("db2", 7, records("x"))
        answer = self.successResultOf(self.install(encode_snapshot(state), "db2", 7))
        self.assertEqual(answer, {"serial": 7})
        self.assertEqual((self.store.database_id, self.store.serial), ("db2", 7))
        self.assertEqual(names(self.state), ["x"])
        self.assertIn("loaded a snapshot of database db2 at serial 7", self.messages())

    def hold_the_store(self) -> ManualExecutor:
        """The store's bulk-load jobs wait until the returned executor runs them."""
        executor = ManualExecutor()
        self.patch(self.store, "run_with_file", executor.submit)
        return executor

    def test_a_snapshot_answers_lookups_before_its_commit_and_is_acknowledged_after(
        self,
    ) -> None:
        """
        A fresh slave serves from the master's records as soon as they are
        decoded; the master counts it as holding them once they are durable here.
        """
        store = self.hold_the_store()
        answer = self.install(encode_snapshot(StoreState("db2", 7, records("x", "y"))), "db2", 7)
        self.assertEqual(names(self.state), ["x", "y"])
        self.assertEqual(self.snapshots, [True])
        self.assertNoResult(answer)
        self.assertEqual(self.store.serial, 0)
        store.run_all()
        self.assertEqual(self.successResultOf(answer), {"serial": 7})
        self.assertEqual((self.store.database_id, self.store.serial), ("db2", 7))
        self.assertEqual(self.snapshots, [True])

    def test_a_snapshot_the_store_refuses_takes_the_state_back(self) -> None:
        """The state answered from it meanwhile: it goes back to what the store holds."""
        self.successResultOf(self.slave.apply_changes(self.store.database_id, self.payload(1)))
        encoder = SnapshotEncoder("db2", 7)
        rows = [
            ("object", put("x").key, json.dumps(put("x").value)),
            ("object", put("y").key, "[1]"),
        ]
        data = encoder.header() + encoder.block(rows) + encoder.trailer(7)
        store = self.hold_the_store()
        answer = self.install(data, "db2", 7)
        self.assertEqual(names(self.state), ["x", "y"])
        store.run_all()
        failure = self.failureResultOf(answer, SyncError)
        self.assertIn("not a JSON object", failure.getErrorMessage())
        self.assertEqual(names(self.state), ["k1"])
        self.assertEqual(self.snapshots, [True, False])
        self.assertEqual(self.store.serial, 1)
        self.flushLoggedErrors()

    def test_a_snapshot_must_be_what_was_announced(self) -> None:
        data = encode_snapshot(StoreState("db2", 7, records("x")))
        for database_id, serial in (("db3", 7), ("db2", 6)):
            failure = self.failureResultOf(self.install(data, database_id, serial), SyncError)
            self.assertIn("announced as", failure.getErrorMessage())
        failure = self.failureResultOf(self.install(b"{not json", "db2", 7), SyncError)
        self.assertIn("not a gridreg snapshot", failure.getErrorMessage())
        self.assertEqual(self.store.serial, 0)
        self.assertEqual(names(self.state), [])
        self.flushLoggedErrors()

    def gate_commits(self) -> Deferred[None]:
        """Hold the store's commits until the returned Deferred fires."""
        gate: Deferred[None] = Deferred()
        real_apply = self.store.apply_many
        self.patch(
            self.store,
            "apply_many",
            lambda c, **kw: gate.addCallback(lambda _: real_apply(c, **kw)),
        )
        return gate

    def test_a_pushed_change_is_visible_during_the_commit_and_acknowledged_after(self) -> None:
        """The master has it durably: lookups here may see it before this replica's fsync."""
        gate = self.gate_commits()
        answer = self.slave.apply_changes(self.store.database_id, self.payload(1))
        self.assertEqual(names(self.state), ["k1"])
        self.assertNoResult(answer)
        self.assertEqual(self.store.serial, 0)
        gate.callback(None)
        self.assertEqual(self.successResultOf(answer), {"serial": 1})
        self.assertEqual(self.store.serial, 1)

    def test_a_change_the_store_refuses_leaves_the_state(self) -> None:
        """The state goes back to what the store holds; the master is told it failed."""
        self.successResultOf(self.slave.apply_changes(self.store.database_id, self.payload(1)))
        self.patch(self.store, "apply_many", lambda c, **kw: fail(OSError("disk is full")))
        failure = self.failureResultOf(
            self.slave.apply_changes(self.store.database_id, self.payload(2)), OSError
        )
        self.assertIn("disk is full", failure.getErrorMessage())
        self.assertEqual(names(self.state), ["k1"])
        self.flushLoggedErrors()

    def test_a_change_after_a_gap_is_refused_before_the_state_sees_it(self) -> None:
        failure = self.failureResultOf(
            self.slave.apply_changes(self.store.database_id, self.payload(2)), SerialGapError
        )
        self.assertEqual((failure.value.expected, failure.value.got), (1, 2))
        self.assertEqual(names(self.state), [])
        self.assertEqual(self.store.serial, 0)
        self.flushLoggedErrors()

    def test_apply_and_install_are_serialized(self) -> None:
        gate = self.gate_commits()
        first = self.slave.apply_changes(self.store.database_id, self.payload(1))
        second = self.install(encode_snapshot(StoreState("db2", 7, {})), "db2", 7)
        self.assertNoResult(second)
        gate.callback(None)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(self.store.serial, 7)

    def test_changes_wait_for_a_snapshot_streaming_in(self) -> None:
        """From its first chunk to its install, a snapshot holds the replica's write lock."""
        protocol = SlaveProtocol(self.slave)
        self.successResultOf(self.slave.begin_snapshot(protocol, "s", "db2", 7))
        applied = self.slave.apply_changes("db2", self.payload(8))
        self.assertNoResult(applied)
        protocol.transfers.chunk("s", 0, encode_snapshot(StoreState("db2", 7, records("x"))))
        self.successResultOf(self.slave.install_snapshot(protocol.snapshots.pop("s"), "db2", 7))
        self.assertEqual(self.successResultOf(applied), {"serial": 8})
        self.assertEqual(names(self.state), ["k8", "x"])


class ResponderTests(SlaveTests):
    """The master's commands, as the slave answers them over AMP."""

    def setUp(self) -> None:
        super().setUp()
        d, self.protocol, self.pump = self.register()
        self.master = self.pump.server

    def call(self, command: type[amp.Command], **kwargs: Any) -> Deferred[Any]:
        captured: Deferred[Any] = Deferred()
        self.master.callRemote(command, **kwargs).chainDeferred(captured)
        self.pump.flush()
        return captured

    def send(self, transfer: str, data: bytes, chunks: Optional[list[bytes]] = None) -> None:
        self.successResultOf(
            self.call(
                BeginTransfer,
                transfer=transfer,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        for seq, chunk in enumerate(chunks if chunks is not None else [data]):
            self.successResultOf(self.call(TransferChunk, transfer=transfer, seq=seq, data=chunk))

    def test_inline_changes(self) -> None:
        payload = "[" + change_to_json(change(1, "a")) + "]"
        answer = self.call(
            PushChanges, database_id=self.store.database_id, changes=payload, transfer=""
        )
        self.assertEqual(self.successResultOf(answer), {"serial": 1})
        self.assertEqual(names(self.state), ["a"])

    def test_a_push_whose_arguments_do_not_decode_is_refused(self) -> None:
        """The raw responder leaves a malformed box to AMP's, which refuses it."""
        captured: Deferred[Any] = Deferred()
        self.master.callRemoteString(
            PushChanges.commandName, database_id=self.store.database_id.encode(), changes=b"[]"
        ).chainDeferred(captured)
        self.pump.flush()
        self.failureResultOf(captured, amp.RemoteAmpError)
        self.assertEqual(self.store.serial, 0)
        self.flushLoggedErrors(KeyError)

    def test_changes_through_a_transfer(self) -> None:
        payload = ("[" + change_to_json(change(1, "big")) + "]").encode("utf-8")
        self.send("t1", payload)
        answer = self.call(
            PushChanges, database_id=self.store.database_id, changes="", transfer="t1"
        )
        self.assertEqual(self.successResultOf(answer), {"serial": 1})

    def test_a_failed_apply_is_reported_and_the_slave_says_why(self) -> None:
        self.patch(self.store, "apply_many", lambda c, **kw: fail(OSError("disk is full")))
        payload = "[" + change_to_json(change(1, "a")) + "]"
        answer = self.call(
            PushChanges, database_id=self.store.database_id, changes=payload, transfer=""
        )
        failure = self.failureResultOf(answer, SyncError)
        self.assertIn("disk is full", failure.getErrorMessage())
        self.assertEqual(self.slave.status.state, "failed")
        self.assertIn(
            "could not apply what the master sent: disk is full", self.slave.status.reason
        )
        self.flushLoggedErrors()

    def test_a_refusal_that_cannot_be_answered_is_an_unhandled_error(self) -> None:
        """
        What escapes a refused push's answer goes to AMP's C{unhandledError},
        as from an errback after the answer's; nothing is sent back.
        """
        unhandled: list[Failure] = []
        self.patch(self.protocol, "unhandledError", unhandled.append)
        self.patch(self.slave, "failed", lambda failure: 1 / 0)  # saying why breaks
        received: list[amp.AmpBox] = []
        self.patch(self.master, "ampBoxReceived", received.append)
        payload = "[" + change_to_json(change(1, "a")) + "]"
        self.call(PushChanges, database_id="other", changes=payload, transfer="")
        [failure] = unhandled
        failure.trap(ZeroDivisionError)
        self.assertEqual(received, [])
        self.assertEqual(self.store.serial, 0)

    def test_pushes_are_answered_from_the_box_in_order(self) -> None:
        """Each push is answered once, with its serial, as AMP's responder would."""
        answers = [
            self.call(
                PushChanges,
                database_id=self.store.database_id,
                changes="[" + change_to_json(change(serial, f"k{serial}")) + "]",
                transfer="",
            )
            for serial in (1, 2)
        ]
        self.assertEqual([self.successResultOf(a) for a in answers], [{"serial": 1}, {"serial": 2}])
        self.assertEqual(names(self.state), ["k1", "k2"])

    def test_a_push_not_asking_for_its_answer_is_applied_unanswered(self) -> None:
        """A push without C{_ask} goes through AMP's dispatch: applied, nothing sent back."""
        received: list[amp.AmpBox] = []
        self.patch(self.master, "ampBoxReceived", received.append)
        self.master.callRemoteString(
            PushChanges.commandName,
            requiresAnswer=False,
            database_id=self.store.database_id.encode(),
            changes=("[" + change_to_json(change(1, "a")) + "]").encode(),
            transfer=b"",
        )
        self.pump.flush()
        self.assertEqual(names(self.state), ["a"])
        self.assertEqual(self.store.serial, 1)
        self.assertEqual(received, [])

    def test_changes_of_another_database_are_refused_over_amp(self) -> None:
        payload = "[" + change_to_json(change(1, "a")) + "]"
        answer = self.call(PushChanges, database_id="other", changes=payload, transfer="")
        failure = self.failureResultOf(answer, SyncError)
        self.assertIn("changes of database other", failure.getErrorMessage())
        self.assertIn("changes of database other", self.slave.status.reason)
        self.assertFalse(self.protocol.transport.disconnecting, "a declared error")
        self.flushLoggedErrors()

    def stream(self, transfer: str, chunks: list[bytes]) -> None:
        self.successResultOf(
            self.call(BeginSnapshot, transfer=transfer, database_id="db2", serial=4)
        )
        for seq, chunk in enumerate(chunks):
            self.successResultOf(self.call(TransferChunk, transfer=transfer, seq=seq, data=chunk))

    def install(self, transfer: str, data: bytes) -> Deferred[Any]:
        return self.call(
            InstallSnapshot,
            transfer=transfer,
            database_id="db2",
            serial=4,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def test_a_snapshot_through_a_stream(self) -> None:
        data = encode_snapshot(StoreState("db2", 4, records("x")))
        self.stream("s1", [data[:10], data[10:]])
        self.assertEqual(self.successResultOf(self.install("s1", data)), {"serial": 4})
        self.assertEqual(self.store.database_id, "db2")
        self.assertEqual(names(self.state), ["x"])

    def test_a_corrupted_snapshot_is_refused_and_nothing_replaced(self) -> None:
        """The stream's size and hash are checked before anything is kept."""
        data = encode_snapshot(StoreState("db2", 4, records("x")))
        self.stream("s1", [data])
        answer = self.install("s1", data[:-1] + bytes([data[-1] ^ 1]))
        failure = self.failureResultOf(answer, SyncError)
        self.assertIn("SHA-256", failure.getErrorMessage())
        self.assertEqual(self.slave.status.state, "failed")
        self.assertNotEqual(self.store.database_id, "db2")
        self.assertEqual(names(self.state), [])
        self.flushLoggedErrors()

    def test_a_damaged_chunk_is_refused_as_it_arrives(self) -> None:
        data = bytearray(encode_snapshot(StoreState("db2", 4, records("x"))))
        data[40] ^= 0xFF
        self.successResultOf(self.call(BeginSnapshot, transfer="s1", database_id="db2", serial=4))
        answer = self.call(TransferChunk, transfer="s1", seq=0, data=bytes(data))
        self.assertIn(
            "corrupt snapshot", self.failureResultOf(answer, TransferError).getErrorMessage()
        )
        self.assertEqual(self.slave.status.state, "failed")
        self.assertFalse(self.protocol.transport.disconnecting, "a declared error")
        self.flushLoggedErrors()

    def test_an_unknown_transfer_is_refused(self) -> None:
        answer = self.install("nope", b"")
        failure = self.failureResultOf(answer, SyncError)
        self.assertIn("no snapshot is streaming as `nope'", failure.getErrorMessage())
        self.flushLoggedErrors()

    def test_a_lost_connection_forgets_pending_transfers(self) -> None:
        self.successResultOf(self.call(BeginTransfer, transfer="t", size=10, sha256="00"))
        self.assertEqual(self.protocol.transfers.reserved, 10)
        self.protocol.transport.loseConnection()
        self.pump.flush()
        self.assertEqual(self.protocol.transfers.reserved, 0)


class MasterEndpointTests(SynchronousTestCase):
    class Candidate:
        def __init__(self, name: str, calls: list[str], works: Optional[bool]) -> None:
            self.name, self.calls, self.works = name, calls, works

        def connect(self, factory: Any) -> Deferred[Any]:
            self.calls.append(self.name)
            if self.works is None:
                return Deferred()  # a hung master: TCP accepted, TLS never finishes
            if self.works:
                return succeed(self.name)
            return fail(ConnectError(string=f"{self.name} refused"))

    def endpoint(self, works: dict[str, Optional[bool]]) -> tuple[MasterEndpoint, list[str]]:
        calls: list[str] = []
        candidates = [self.Candidate(n, calls, ok) for n, ok in works.items()]
        self.clock = Clock()
        return MasterEndpoint(lambda: succeed(candidates), self.clock, 5.0), calls

    def test_a_hung_candidate_times_out_and_the_next_is_tried(self) -> None:
        endpoint, calls = self.endpoint({"hung": None, "b": True})
        d = endpoint.connect(None)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), "b")
        self.assertEqual(calls, ["hung", "b"])

    def test_each_attempt_starts_one_further(self) -> None:
        endpoint, calls = self.endpoint({"a": True, "b": True, "c": True})
        got = [self.successResultOf(endpoint.connect(None)) for _ in range(4)]
        self.assertEqual(got, ["a", "b", "c", "a"])

    def test_a_refused_candidate_falls_through_to_the_next(self) -> None:
        endpoint, calls = self.endpoint({"a": False, "b": True})
        self.assertEqual(self.successResultOf(endpoint.connect(None)), "b")
        self.assertEqual(calls, ["a", "b"])

    def test_every_candidate_refused(self) -> None:
        endpoint, calls = self.endpoint({"a": False, "b": False})
        failure = self.failureResultOf(endpoint.connect(None), ConnectError)
        self.assertIn("the master is unreachable", failure.getErrorMessage())
        self.assertIn("b refused", failure.getErrorMessage())

    def test_no_candidate(self) -> None:
        endpoint, _ = self.endpoint({})
        failure = self.failureResultOf(endpoint.connect(None), ConnectError)
        self.assertIn("no known endpoint", failure.getErrorMessage())


class TuningTests(SlaveTests):
    """The bounds and delays a slave runs with."""

    def test_a_lost_master_is_looked_for_with_a_capped_back_off(self) -> None:
        real = slave_module.backoffPolicy
        self.patch(
            slave_module,
            "backoffPolicy",
            lambda **kwargs: real(**kwargs, jitter=lambda: 0.0),
        )
        attempts: list[float] = []

        def locate() -> Deferred[list[Any]]:
            attempts.append(round(self.reactor.seconds(), 3))
            return succeed([])

        slave = SlaveReplication(
            self.reactor,
            "Replica1",
            self.store,
            self.state,
            locate,
            dict,
            lambda names, serial: self.active.append(names),
            TraceLevels(),
        )
        slave.startService()
        while len(attempts) < 20:
            next_call = min(c.getTime() for c in self.reactor.getDelayedCalls())
            self.reactor.advance(next_call - self.reactor.seconds())
        delays = [round(b - a, 3) for a, b in zip(attempts, attempts[1:])]
        self.assertEqual(delays[:3], [0.3, 0.45, 0.675])  # 0.2 s, growing 1.5 times
        self.assertEqual(max(delays), 5.0)
        self.assertEqual(delays[-3:], [5.0, 5.0, 5.0])
        self.successResultOf(slave.stopService())

    def test_default_timeouts(self) -> None:
        """Without settings, a request waits 5 s and keepalives go every 30 s / 4."""
        slave = SlaveReplication(
            self.reactor,
            "Replica1",
            self.store,
            self.state,
            lambda: succeed([]),
            dict,
            lambda names, serial: self.active.append(names),
            TraceLevels(),
        )
        self.slave = slave
        protocol, _, pump = self.connect()
        d = slave._register(protocol)
        self.reactor.advance(4.99)
        self.assertEqual(slave.status.state, "disconnected", "still waiting for Hello")
        self.reactor.advance(0.01)
        self.successResultOf(d)
        self.assertEqual(slave.status.state, "failed")
        protocol, _, pump = self.connect()
        d = slave._register(protocol)
        pump.flush()
        self.successResultOf(d)
        self.reactor.advance(7.49)
        pump.flush()
        self.assertEqual(self.control.keepalives, [])
        self.reactor.advance(0.01)
        pump.flush()
        self.assertEqual(self.control.keepalives, [0])

    def test_the_master_may_have_two_gib_in_transit(self) -> None:
        protocol, _, pump = self.connect()
        receiver = protocol.transfers
        receiver.begin("a", 2 * 1024**3, "00")
        with self.assertRaises(TransferError):
            receiver.begin("b", 1, "00")
        receiver.discard("a")
        for name in "abcd":
            receiver.begin(name, 1, "00")
        with self.assertRaises(TransferError) as caught:
            receiver.begin("e", 1, "00")
        self.assertIn("at most 4 at once", str(caught.exception))

    def test_the_master_endpoint_is_an_endpoint(self) -> None:
        from zope.interface.verify import verifyObject

        from twisted.internet.interfaces import IStreamClientEndpoint

        self.assertTrue(
            verifyObject(IStreamClientEndpoint, MasterEndpoint(lambda: succeed([]), Clock(), 5.0))
        )

    def test_stopping_fires_once_the_connection_is_closed(self) -> None:
        self.slave.startService()
        self.successResultOf(self.slave.stopService())


class TraceTests(SlaveTests):
    def run_session(self, level: int) -> str:
        self.slave.trace = TraceLevels(replica=level)
        self.events.clear()
        self.control.refusal = NotMasterError("not yet")
        d, _, _ = self.register()
        self.control.refusal = None
        d, _, _ = self.register()
        payload = "[" + change_to_json(change(self.store.serial + 1, f"t{level}")) + "]"
        self.successResultOf(self.slave.apply_changes(self.store.database_id, payload))
        protocol = SlaveProtocol(self.slave)
        serial = self.store.serial
        self.successResultOf(self.slave.begin_snapshot(protocol, "s", "db", serial))
        protocol.transfers.chunk("s", 0, encode_snapshot(StoreState("db", serial, {})))
        self.successResultOf(self.slave.install_snapshot(protocol.snapshots.pop("s"), "db", serial))
        return self.messages()

    def test_what_each_level_logs(self) -> None:
        quiet = self.run_session(0)
        self.assertIn("registration with the master failed: not yet (trying again in 0.5 s)", quiet)
        self.assertNotIn("registered with the master", quiet)
        self.assertNotIn("loaded a snapshot", quiet)
        one = self.run_session(1)
        self.assertIn("registered with the master", one)
        self.assertIn("loaded a snapshot of database db", one)
        self.assertNotIn("applied serial", one)
        two = self.run_session(2)
        self.assertNotIn("applied serial", two)
        self.assertIn("applied serial", self.run_session(3))

    def test_a_refusal_that_needs_an_operator_is_critical(self) -> None:
        self.control.refusal = DivergedError("ahead")
        self.register()
        (event,) = [e for e in self.events if "cannot sync" in formatEvent(e)]
        self.assertEqual(event["log_level"].name, "critical")
        self.assertIn("(asking again in 0.5 s)", formatEvent(event))


class DataStraightToTests(SynchronousTestCase):
    """
    What a slave's connection reads goes straight to its protocol, past the
    wrappers that only pass it on; the loss still goes through them.
    """

    def chain(self) -> tuple[Any, Any, list[bytes], list[str], Clock]:
        received: list[bytes] = []
        notices: list[str] = []

        class Receiver:
            def dataReceived(self, data: bytes) -> None:
                received.append(data)

            def connectionLost(self, reason: Any) -> None:
                notices.append("protocol")

        clock = Clock()
        inner = Receiver()
        proxy = _client_service._ReconnectingProtocolProxy(  # type: ignore[arg-type]
            inner, lambda reason: notices.append("service")
        )
        outer = endpoints._WrappingProtocol(Deferred(), late_loss_protocol(proxy, clock, 0.005))
        transport = StringTransport()
        transport.protocol = outer
        inner.transport = transport  # type: ignore[attr-defined]
        return inner, outer, received, notices, clock

    def test_data_skips_the_wrappers_and_the_loss_does_not(self) -> None:
        inner, outer, received, notices, clock = self.chain()
        self.assertTrue(data_straight_to(inner))
        self.assertEqual(outer.dataReceived, inner.dataReceived)
        outer.dataReceived(b"box")
        self.assertEqual(received, [b"box"])
        outer.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(notices, [])  # the late loss's delay, as before
        clock.advance(0.005)
        self.assertEqual(notices, ["protocol", "service"])

    def test_under_tls_the_data_it_decrypts_skips_the_wrappers(self) -> None:
        """The TLS layer is the protocol's transport: what it decrypts goes straight on."""
        from twisted.protocols.tls import TLSMemoryBIOProtocol

        inner, outer, received, notices, clock = self.chain()
        late = outer._wrappedProtocol
        layer = TLSMemoryBIOProtocol(None, late, _connectWrapped=False)
        inner.transport = layer
        self.assertTrue(data_straight_to(inner))
        self.assertEqual(late.dataReceived, inner.dataReceived)
        layer.wrappedProtocol.dataReceived(b"plain")  # as ProtocolWrapper.dataReceived calls it
        self.assertEqual(received, [b"plain"])

    def test_an_unknown_wrapper_is_left_alone(self) -> None:
        inner, outer, received, notices, clock = self.chain()
        outer._wrappedProtocol = object.__new__(type("Other", (), {}))
        self.assertFalse(data_straight_to(inner))
        self.assertNotIn("dataReceived", vars(outer))

    def test_a_protocol_its_transport_calls_itself_is_left_alone(self) -> None:
        inner, outer, received, notices, clock = self.chain()
        inner.transport.protocol = inner
        self.assertTrue(data_straight_to(inner))
        self.assertNotIn("dataReceived", vars(inner))
