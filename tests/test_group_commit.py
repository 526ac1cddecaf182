# -*- test-case-name: tests.test_group_commit -*-
"""
Group commit: the writes that reach the master while a commit is in
progress share the next transaction and go to each slave as one message,
in serial order; each is acknowledged only once durable (and replicated as
the rules say); a slave stores a batch in one transaction.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.exceptions import ObjectExistsException
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Identity
from gridreg.protocol.commands import PushChanges
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.master import MasterReplication, SlaveSession
from gridreg.registry.state import RegistryState
from gridreg.registry.trace import TraceLevels
from gridreg.store.executor import ManualExecutor
from gridreg.store.interfaces import StoreError
from gridreg.store.memory import MemoryStore
from gridreg.store.records import Change, Mutation, change_to_json
from gridreg.store.sqlite import SQLiteStore
from tests.test_master_fanout import FakeSlave
from tests.test_slave_sync import SlaveTests, change


class CountingStore(SQLiteStore):
    """An SQLite store that records the serials of each transaction."""

    def __init__(self, path: str, executor: ManualExecutor) -> None:
        super().__init__(path, executor=executor)
        self.transactions: list[list[int]] = []

    def _persist_all(self, changes: list[Change]) -> None:
        super()._persist_all(changes)
        self.transactions.append([c.serial for c in changes])


class GroupCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        self.executor = ManualExecutor()
        self.store = self.open_store()
        self.state = RegistryState()
        self.patch(RegistryDatabase, "log", Logger(observer=lambda e: None))
        self.database = RegistryDatabase(self.store, self.state, True, TraceLevels())
        self.replicated: list[list[int]] = []
        self.acks: list[Deferred[None]] = []

        def replicate(changes: list[Change]) -> Deferred[None]:
            self.replicated.append([c.serial for c in changes])
            self.acks.append(Deferred())
            return self.acks[-1]

        self.database.replicate = replicate

    def open_store(self) -> CountingStore:
        store = CountingStore(self.path, self.executor)
        opened = store.open()
        self.executor.run_all()
        self.successResultOf(opened)
        self.addCleanup(self.close, store)
        return store

    def close(self, store: CountingStore) -> None:
        closed = store.close()
        self.executor.run_all()
        self.successResultOf(closed)

    def add(self, name: str) -> Deferred[Any]:
        return self.database.add_object(proxy_from_string(f"{name}@A"))

    def test_writes_queued_during_a_commit_share_the_next_transaction(self) -> None:
        first = self.add("a")
        queued = [self.add("b"), self.add("c"), self.add("d")]
        self.assertEqual(len(self.executor.pending), 1, "one transaction in progress")
        self.executor.run_next()
        self.assertEqual(len(self.executor.pending), 1, "the queued writes: one transaction")
        self.executor.run_next()
        self.assertEqual(self.store.transactions, [[1], [2, 3, 4]])
        self.assertEqual(self.replicated, [[1], [2, 3, 4]], "one fan-out per transaction")
        for ack in self.acks:
            ack.callback(None)
        self.assertEqual([self.successResultOf(d).serial for d in [first, *queued]], [1, 2, 3, 4])

    def test_a_write_is_acknowledged_only_once_durable_and_replicated(self) -> None:
        d = self.add("a")
        self.assertNoResult(d)
        self.assertEqual(self.store.serial, 0)
        self.executor.run_next()
        self.assertEqual(self.store.serial, 1)
        self.assertNoResult(d)  # durable, the slaves have not acknowledged it
        self.acks[0].callback(None)
        self.assertEqual(self.successResultOf(d).serial, 1)

    def test_a_write_is_validated_against_the_writes_before_it(self) -> None:
        self.add("a")
        first = self.add("x")
        second = self.add("x")  # waits for the commit of a, then meets the staged x
        self.executor.run_next()
        self.failureResultOf(second, ObjectExistsException)
        self.executor.run_all()
        for ack in self.acks:
            ack.callback(None)
        self.assertEqual(self.successResultOf(first).serial, 2)
        self.assertEqual(self.store.transactions, [[1], [2]])

    def test_listeners_see_only_durable_writes(self) -> None:
        seen: list[tuple[int, bool]] = []
        self.state.on_change(
            lambda: seen.append((self.store.serial, Identity("b") in self.state.objects))
        )
        self.add("a")
        self.add("b")  # arrives while a commits
        self.executor.run_next()
        self.assertEqual(seen, [(1, False)])
        self.executor.run_next()
        self.assertEqual(seen, [(1, False), (2, True)])

    def test_listeners_are_told_once_durable_in_serial_order(self) -> None:
        told: list[int] = []
        self.state.on_change(lambda: told.append(self.store.serial))
        self.add("a")
        self.add("b")
        self.add("c")
        self.assertEqual(told, [])
        self.executor.run_next()
        self.assertEqual(told, [1])
        self.executor.run_next()
        self.assertEqual(told, [1, 3, 3])

    def test_a_refused_batch_fails_and_the_writes_behind_it_go_on(self) -> None:
        self.add("before")
        self.executor.run_all()
        self.acks[0].callback(None)
        real = self.store._persist_all

        def disk_full(changes: list[Change]) -> None:
            raise StoreError("registry.sqlite: database or disk is full")

        self.patch(self.store, "_persist_all", disk_full)
        refused = self.add("a")
        behind = self.add("b")  # waits for the commit of a
        self.executor.run_next()  # the refused transaction
        self.failureResultOf(refused, StoreError)
        self.assertNoResult(behind)
        self.patch(self.store, "_persist_all", real)
        self.executor.run_all()  # the reload from the store, then b's transaction
        self.assertNotIn(Identity("a"), self.state.objects)
        self.assertIn(Identity("b"), self.state.objects)
        self.assertIn(Identity("before"), self.state.objects)
        self.acks[-1].callback(None)
        self.assertEqual(self.successResultOf(behind).serial, 2)

    def test_a_batch_is_durable_across_a_reopen(self) -> None:
        self.add("a")
        self.add("b")
        self.add("c")
        self.executor.run_all()
        self.close(self.store)
        reopened = self.open_store()
        opened = reopened.snapshot()
        self.executor.run_all()
        state = self.successResultOf(opened)
        self.assertEqual(state.serial, 3)
        self.assertEqual(len(state.records["object"]), 3)
        changes = reopened.changes_since(0)
        self.executor.run_all()
        self.assertEqual([c.serial for c in self.successResultOf(changes)], [1, 2, 3])

    def test_drain_waits_for_the_writes_being_committed(self) -> None:
        self.add("a")
        self.add("b")
        drained = self.database.drain()
        self.assertNoResult(drained)
        self.executor.run_next()
        self.assertNoResult(drained)
        self.executor.run_next()
        self.successResultOf(drained)


class FanOutTests(SynchronousTestCase):
    """One message per batch, and the batches queued meanwhile together."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.successResultOf(self.store.open())
        self.patch(SlaveSession, "log", Logger(observer=lambda e: None))
        self.master = MasterReplication(self.store, self.clock, 2.0, TraceLevels(), lambda: None)
        self.slave = FakeSlave()
        self.master.register(self.slave, "Replica1", {}, self.store.database_id, 0)
        self.clock.advance(0)

    def commit(self, *names: str) -> list[Change]:
        return self.successResultOf(
            self.store.commit_many([[Mutation("object", name, {"n": name})] for name in names])
        )

    def pushes(self) -> list[list[int]]:
        return [
            [c["serial"] for c in json.loads(kw["changes"])]
            for command, kw in self.slave.calls
            if command is PushChanges
        ]

    def test_a_batch_goes_to_each_slave_as_one_message(self) -> None:
        self.successResultOf(self.master.replicate(self.commit("a", "b", "c")))
        self.assertEqual(self.pushes(), [[1, 2, 3]])

    def test_batches_queued_while_a_push_is_unanswered_go_together(self) -> None:
        self.slave.hold = True
        first = self.master.replicate(self.commit("a"))
        second = self.master.replicate(self.commit("b"))
        third = self.master.replicate(self.commit("c", "d"))
        self.assertEqual(self.pushes(), [[1]])
        self.assertNoResult(second)
        self.slave.hold = False
        self.slave.held[0].callback({"serial": 1})
        self.successResultOf(first)
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(self.pushes(), [[1], [2, 3, 4]])


class SlaveBatchTests(SlaveTests):
    def test_a_slave_stores_a_pushed_batch_in_one_transaction(self) -> None:
        batches: list[list[int]] = []
        real = self.store.apply_many

        def apply_many(changes: list[Change], **kwargs: Any) -> Deferred[None]:
            batches.append([c.serial for c in changes])
            return real(changes, **kwargs)

        self.patch(self.store, "apply_many", apply_many)
        payload = "[" + ",".join(change_to_json(change(i, f"k{i}")) for i in (1, 2, 3)) + "]"
        answer = self.slave.apply_changes(self.store.database_id, payload)
        self.assertEqual(self.successResultOf(answer), {"serial": 3})
        self.assertEqual(batches, [[1, 2, 3]])
        self.assertEqual(self.store.serial, 3)
