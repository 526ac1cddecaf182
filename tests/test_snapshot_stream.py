"""
A snapshot from a master's store into a slave's, as the replication
streams it: the slave ends up with exactly the master's database, also
when writes go on while the pages are read; a damaged or cut stream
leaves the slave's database as it was.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.protocol.errors import SyncError
from gridreg.registry.snapshot_stream import SnapshotLoad, SnapshotProducer
from gridreg.registry.state import ObjectInfo, RegistryState, object_mutation
from gridreg.store.executor import ManualExecutor
from gridreg.store.memory import MemoryStore
from gridreg.store.records import Mutation
from gridreg.store.snapshot_codec import SnapshotEncoder
from gridreg.store.sqlite import SQLiteStore

ENDPOINTS = (TcpEndpoint("127.0.0.1", 10000),)


def obj(name: str) -> Mutation:
    identity = Identity(name, "sync")
    return object_mutation(identity, ObjectInfo(Proxy(identity, endpoints=ENDPOINTS), "::T"))


class SnapshotStreamTests(SynchronousTestCase):
    def result(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def open(self, store: Any) -> Any:
        self.result(store.open())
        self.addCleanup(store.close)
        return store

    def sqlite(self) -> SQLiteStore:
        return self.open(SQLiteStore(self.mktemp()))

    def fill(self, store: Any, count: int, batch: int = 100) -> None:
        for first in range(0, count, batch):
            self.result(store.commit([obj(f"o{i}") for i in range(first, first + batch)]))

    def stream(self, master: Any, during: Optional[Any] = None) -> list[bytes]:
        """Every piece the master makes, C{during(piece number)} called between them."""
        producer = SnapshotProducer(master, maybeDeferred, page_rows=50)
        pieces = []
        while True:
            piece = self.result(producer.produce())
            if piece is None:
                break
            pieces.append(piece)
            if during is not None:
                during(len(pieces))
        self.producer = producer
        return pieces

    def install(self, slave: Any, pieces: list[bytes], database_id: str, serial: int) -> Any:
        load = SnapshotLoad(slave, maybeDeferred)
        for piece in pieces:
            load.feed(piece).addErrback(lambda _: None)
        return load.finish(database_id, serial)

    def test_the_slave_gets_the_masters_database(self) -> None:
        master, slave = self.sqlite(), self.sqlite()
        self.fill(master, 300)
        odd = Identity('q"uote', "caf\u00e9")
        for type_id in ('::A"B', "::\u00c9t\u00e9", '","type":"'):
            self.result(master.commit([object_mutation(odd, ObjectInfo(Proxy(odd), type_id))]))
        pieces = self.stream(master)
        records = self.result(self.install(slave, pieces, master.database_id, master.serial))
        self.assertEqual((slave.database_id, slave.serial), (master.database_id, master.serial))
        expected = self.result(master.snapshot()).records
        self.assertEqual(records, expected)
        self.assertEqual(self.result(slave.snapshot()).records, expected)
        state = RegistryState()
        state.load(records)
        self.assertEqual(len(state.objects), 301)
        self.assertEqual(state.objects[odd].type, '","type":"')

    def test_a_key_spelt_otherwise_is_found_on_the_slave(self) -> None:
        """The slave's worker thread finds the keys the state must respell; they answer."""
        master, slave = self.sqlite(), self.sqlite()
        self.fill(master, 10, batch=10)
        identity = Identity("caf\u00e9", "c")
        value = obj("x").value
        self.result(master.commit([Mutation("object", '["c","caf\\u00e9"]', value)]))
        records = self.result(
            self.install(slave, self.stream(master), master.database_id, master.serial)
        )
        self.assertEqual(records["object"].odd_keys, ['["c","caf\\u00e9"]'])
        state = RegistryState()
        state.load(records)
        self.assertEqual(len(state.objects), 11)
        self.assertIn(identity, state.objects)
        self.assertIn(Identity("o3", "sync"), state.objects)

    def test_writes_while_the_pages_are_read_end_up_on_the_slave(self) -> None:
        """Puts and deletes committed between pages come after them, in order."""
        master, slave = self.sqlite(), self.sqlite()
        self.fill(master, 300)
        base = master.serial

        def write(piece: int) -> None:
            if piece == 2:  # o0..o49 already sent: change some behind and ahead of the reader
                self.result(master.commit([obj("o10"), Mutation("object", obj("o250").key, None)]))
                self.result(master.commit([obj("new"), Mutation("object", obj("o10").key, None)]))

        pieces = self.stream(master, during=write)
        self.assertEqual(self.producer.base_serial, base)
        self.assertEqual(self.producer.serial, base + 2)
        records = self.result(self.install(slave, pieces, master.database_id, base + 2))
        expected = self.result(master.snapshot()).records
        self.assertEqual(records, expected)
        self.assertEqual(self.result(slave.snapshot()).records, expected)
        self.assertEqual(slave.serial, master.serial)

    def count_folds(self, store: SQLiteStore) -> list[int]:
        """The serial at each fold of the pending records a page read asks for."""
        folds: list[int] = []
        fold_now = store._fold_now

        def counted() -> None:
            folds.append(store._durable)
            fold_now()

        store._fold_now = counted  # type: ignore[method-assign]
        return folds

    def test_writes_between_every_page_are_folded_at_most_once(self) -> None:
        """
        A write committed while the pages are read is in the snapshot's
        catch-up: it costs the page that follows no transaction (and fsync)
        of its own, and still reaches the slave.
        """
        master, slave = self.sqlite(), self.sqlite()
        self.fill(master, 300)
        folds = self.count_folds(master)
        written: list[str] = []

        def write(piece: int) -> None:
            name = f"during{piece}"
            self.result(master.commit([obj(name)]))
            written.append(name)

        pieces = self.stream(master, during=write)
        self.assertGreater(len(written), 6)  # a write after every page of 50
        self.assertLessEqual(len(folds), 1)
        records = self.result(self.install(slave, pieces, master.database_id, self.producer.serial))
        for name in written[:-1]:  # the last came after the catch-up was read
            self.assertIn(obj(name).key, records["object"])
        expected = self.result(master.snapshot()).records
        self.assertNotIn(obj(written[-1]).key, records["object"])
        del expected["object"][obj(written[-1]).key]
        self.assertEqual(records, expected)

    def test_records_pending_before_the_snapshot_are_in_its_pages(self) -> None:
        """
        Records committed before the snapshot began, still only in the log,
        are folded into the table before a page of their kind is read: the
        catch-up (changes after the first page's serial) does not bring them.
        """
        master, slave = self.sqlite(), self.sqlite()
        self.fill(master, 300)
        self.result(master.commit([obj("late1"), Mutation("object", obj("o7").key, None)]))
        self.result(master.commit([obj("late2")]))
        self.assertTrue(master._pending)
        folds = self.count_folds(master)
        pieces = self.stream(master)
        self.assertEqual(folds, [master.serial])
        self.assertEqual(self.producer.serial, self.producer.base_serial)  # no catch-up
        records = self.result(self.install(slave, pieces, master.database_id, master.serial))
        self.assertIn(obj("late2").key, records["object"])
        self.assertNotIn(obj("o7").key, records["object"])
        self.assertEqual(records, self.result(master.snapshot()).records)

    def test_a_fold_while_pages_are_read_keeps_the_file_equal_to_the_state(self) -> None:
        """
        After a snapshot whose pages were read between writes (a fold for
        the records pending before it, the rest left in the log), the file
        opened again holds exactly the master's state and serial.
        """
        master = self.sqlite()
        self.fill(master, 300)
        self.result(master.commit([obj("before"), Mutation("object", obj("o3").key, None)]))

        def write(piece: int) -> None:
            self.result(
                master.commit([obj(f"w{piece}"), Mutation("object", obj(f"o{piece}").key, None)])
            )

        self.stream(master, during=write)
        expected = self.result(master.snapshot())
        self.result(master.close())
        again = self.open(SQLiteStore(master.path))
        self.assertEqual(self.result(again.snapshot()), expected)
        self.assertEqual(again.serial, expected.serial)

    def test_a_log_that_no_longer_reaches_back_fails_the_snapshot(self) -> None:
        master = self.open(SQLiteStore(self.mktemp(), log_retention=1))
        self.fill(master, 100)
        producer = SnapshotProducer(master, maybeDeferred, page_rows=1000)
        self.result(producer.produce())  # the header
        self.result(producer.produce())  # every record
        self.fill(master, 2, batch=1)
        failure = self.failureResultOf(producer.produce(), SyncError)
        self.assertIn("no longer reaches back", failure.getErrorMessage())

    def assert_untouched(self, slave: Any, before: Any) -> None:
        self.assertEqual(self.result(slave.snapshot()), before)
        self.assertEqual((slave.database_id, slave.serial), (before.database_id, before.serial))
        # and the store still takes writes: no transaction was left open
        self.result(slave.commit([obj("after")]))

    def test_a_damaged_stream_installs_nothing(self) -> None:
        master = self.sqlite()
        self.fill(master, 300)
        pieces = self.stream(master)
        for slave in (self.sqlite(), self.open(MemoryStore())):
            self.result(slave.commit([obj("mine")]))
            before = self.result(slave.snapshot())
            damaged = list(pieces)
            middle = bytearray(damaged[3])
            middle[len(middle) // 2] ^= 0xFF
            damaged[3] = bytes(middle)
            failure = self.failureResultOf(
                self.install(slave, damaged, master.database_id, master.serial), SyncError
            )
            self.assertIn("corrupt snapshot", failure.getErrorMessage())
            self.assert_untouched(slave, before)

    def test_a_record_that_is_not_an_object_installs_nothing(self) -> None:
        """Object records go in undecoded; the store checks them before it commits."""
        master = self.sqlite()
        self.fill(master, 10)
        encoder = SnapshotEncoder(master.database_id, master.serial)
        page = self.result(master.snapshot_page("object", None, 100))
        rows = [("object", key, value) for key, value in page] + [("object", '["c", "x"]', "[1]")]
        pieces = [encoder.header(), encoder.block(rows), encoder.trailer(master.serial)]
        for slave in (self.sqlite(), self.open(MemoryStore())):
            self.result(slave.commit([obj("mine")]))
            before = self.result(slave.snapshot())
            failure = self.failureResultOf(
                self.install(slave, pieces, master.database_id, master.serial), SyncError
            )
            self.assertIn("not a JSON object", failure.getErrorMessage())
            self.assert_untouched(slave, before)

    def test_an_installed_snapshot_is_durable_before_its_checkpoint(self) -> None:
        """
        The copy of the log into the file comes after the install, as a job
        of its own: the database files as they are before it (a crash then)
        already hold the snapshot; after it the file alone does.
        """
        master = self.sqlite()
        self.fill(master, 300)
        pieces = self.stream(master)
        executor = ManualExecutor()
        slave = SQLiteStore(self.mktemp(), executor=executor)
        opened = slave.open()
        executor.run_all()
        self.result(opened)
        self.addCleanup(lambda: (slave.close(), executor.run_all()))
        load = SnapshotLoad(slave, slave.run_with_file)
        for piece in pieces:
            load.feed(piece)
        finished = load.finish(master.database_id, master.serial)
        while not executor.pending or executor.pending[-1][0] != slave._checkpoint:
            executor.run_next()
        records = self.result(finished)
        expected = self.result(master.snapshot()).records
        self.assertEqual(records, expected)
        crashed = self.mktemp()
        shutil.copytree(slave.path, crashed)  # the file and its log, as a crash leaves them
        executor.run_all()
        copied = self.mktemp()
        os.makedirs(copied)
        shutil.copy(slave.filename, copied)  # the file alone, once checkpointed
        for path in (crashed, copied):
            store = self.open(SQLiteStore(path))
            self.assertEqual(self.result(store.snapshot()).records, expected)
            self.assertEqual(store.serial, master.serial)

    def test_a_cut_stream_installs_nothing(self) -> None:
        master, slave = self.sqlite(), self.sqlite()
        self.fill(master, 300)
        self.result(slave.commit([obj("mine")]))
        before = self.result(slave.snapshot())
        pieces = self.stream(master)[:-1]
        failure = self.failureResultOf(
            self.install(slave, pieces, master.database_id, master.serial), SyncError
        )
        self.assertIn("truncated snapshot", failure.getErrorMessage())
        self.assert_untouched(slave, before)

    def test_a_snapshot_other_than_announced_installs_nothing(self) -> None:
        master, slave = self.sqlite(), self.sqlite()
        self.fill(master, 100)
        before = self.result(slave.snapshot())
        failure = self.failureResultOf(
            self.install(slave, self.stream(master), master.database_id, master.serial + 1),
            SyncError,
        )
        self.assertIn("announced as", failure.getErrorMessage())
        self.assert_untouched(slave, before)

    def test_an_abandoned_stream_installs_nothing(self) -> None:
        """The master's connection is lost half way."""
        master, slave = self.sqlite(), self.sqlite()
        self.fill(master, 300)
        before = self.result(slave.snapshot())
        load = SnapshotLoad(slave, maybeDeferred)
        for piece in self.stream(master)[:3]:
            self.result(load.feed(piece))
        self.result(load.abort("the master's connection was lost"))
        self.assert_untouched(slave, before)
