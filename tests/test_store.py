# -*- test-case-name: tests.test_store -*-
"""
Tests for L{gridreg.store}: one conformance suite run against every
L{IRegistryStore}, plus what only the SQLite file can get wrong.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from gridreg.store.interfaces import IRegistryStore, SerialGapError, StoreError
from gridreg.store.memory import MemoryStore
from gridreg.store.records import (
    KINDS,
    Change,
    Mutation,
    StoreState,
    change_from_json,
    change_to_json,
)
from gridreg.store.sqlite import DB_FILENAME, SQLiteStore


def put(key: str, **value: object) -> Mutation:
    return Mutation("adapter", key, dict(value))


def delete(key: str) -> Mutation:
    return Mutation("adapter", key, None)


if TYPE_CHECKING:
    _MixinBase = SynchronousTestCase
else:
    _MixinBase = object


class StoreConformanceMixin(_MixinBase):
    """
    What every L{IRegistryStore} promises.  Subclasses provide
    L{make_store} and L{reopen}.
    """

    def make_store(self, log_retention: int = 10000) -> IRegistryStore:
        raise NotImplementedError()

    def reopen(self, store: IRegistryStore) -> IRegistryStore:
        """Close C{store} and return an unopened store over the same data."""
        raise NotImplementedError()

    def open_store(self, log_retention: int = 10000) -> IRegistryStore:
        store = self.make_store(log_retention)
        self.successResultOf(store.open())
        self.addCleanup(store.close)
        return store

    def changes_since(self, store: IRegistryStore, serial: int) -> list[Change]:
        changes = self.successResultOf(store.changes_since(serial))
        assert changes is not None
        return changes

    def records(self, store: IRegistryStore, kind: str = "adapter") -> dict[str, Any]:
        state = self.successResultOf(store.snapshot())
        return state.records[kind]

    def test_provides_interface(self) -> None:
        self.assertTrue(verifyObject(IRegistryStore, self.open_store()))

    def test_open_fresh(self) -> None:
        """A new store is empty, at serial 0, with a random UUID lineage."""
        store = self.make_store()
        state = self.successResultOf(store.open())
        self.addCleanup(store.close)
        self.assertEqual(state.serial, 0)
        self.assertEqual(str(uuid.UUID(state.database_id)), state.database_id)
        self.assertEqual(state.records, {kind: {} for kind in KINDS})
        self.assertEqual((store.database_id, store.serial), (state.database_id, 0))
        self.assertNotEqual(self.open_store().database_id, state.database_id)

    def test_commit_puts_and_deletes(self) -> None:
        """Each commit is the next serial and changes exactly its records."""
        store = self.open_store()
        change = self.successResultOf(store.commit([put("a", x=1), put("b", x=2)]))
        self.assertEqual(change, Change(1, (put("a", x=1), put("b", x=2))))
        change = self.successResultOf(store.commit([delete("a"), put("b", x=3)]))
        self.assertEqual(change.serial, 2)
        self.assertEqual(store.serial, 2)
        self.assertEqual(self.records(store), {"b": {"x": 3}})

    def test_batch_applies_in_order(self) -> None:
        store = self.open_store()
        self.successResultOf(store.commit([put("a", x=1), delete("a"), delete("b"), put("b")]))
        self.assertEqual(self.records(store), {"b": {}})

    def test_kinds_are_separate(self) -> None:
        store = self.open_store()
        self.successResultOf(
            store.commit([Mutation("object", "k", {"o": 1}), Mutation("replica", "k", {"r": 1})])
        )
        state = self.successResultOf(store.snapshot())
        self.assertEqual(state.records["object"], {"k": {"o": 1}})
        self.assertEqual(state.records["replica"], {"k": {"r": 1}})
        self.assertEqual(state.records["adapter"], {})

    def test_empty_commit_rejected(self) -> None:
        store = self.open_store()
        self.failureResultOf(store.commit([]), ValueError)
        self.assertEqual(store.serial, 0)

    def test_non_json_batch_rejected_whole(self) -> None:
        """A batch with one unstorable value stores nothing at all."""
        store = self.open_store()
        failure = self.failureResultOf(
            store.commit([put("a", x=1), put("bad", x=float("nan"))]), ValueError
        )
        self.assertIn("'bad'", str(failure.value))
        self.assertEqual(store.serial, 0)
        self.assertEqual(self.records(store), {})

    def test_values_are_copied_as_json(self) -> None:
        """Stored values are JSON copies: later edits to the caller's dict do not leak in."""
        store = self.open_store()
        value: dict[str, Any] = {"endpoints": ("tcp -p 1",)}
        change = self.successResultOf(store.commit([Mutation("adapter", "a", value)]))
        value["endpoints"] = ()
        self.assertEqual(change.mutations[0].value, {"endpoints": ["tcp -p 1"]})
        self.assertEqual(self.records(store), {"a": {"endpoints": ["tcp -p 1"]}})

    def test_reopen_keeps_everything(self) -> None:
        """Lineage, serial, records and log survive a close and reopen."""
        store = self.open_store()
        self.successResultOf(store.commit([put("a", x=1)]))
        self.successResultOf(store.commit([Mutation("object", "o", {"y": [1, None]})]))
        database_id = store.database_id
        store = self.reopen(store)
        state = self.successResultOf(store.open())
        self.addCleanup(store.close)
        self.assertEqual((state.database_id, state.serial), (database_id, 2))
        self.assertEqual((store.database_id, store.serial), (database_id, 2))
        self.assertEqual(state.records["adapter"], {"a": {"x": 1}})
        self.assertEqual(state.records["object"], {"o": {"y": [1, None]}})
        self.assertEqual([c.serial for c in self.changes_since(store, 0)], [1, 2])
        self.assertEqual(self.successResultOf(store.commit([delete("a")])).serial, 3)

    def test_changes_since(self) -> None:
        store = self.open_store()
        committed = [self.successResultOf(store.commit([put(str(n), n=n)])) for n in range(4)]
        self.assertEqual(self.successResultOf(store.changes_since(0)), committed)
        self.assertEqual(self.successResultOf(store.changes_since(2)), committed[2:])
        self.assertEqual(self.successResultOf(store.changes_since(4)), [])
        self.assertIsNone(self.successResultOf(store.changes_since(5)))
        self.assertIsNone(self.successResultOf(store.changes_since(-1)))

    def test_changes_since_after_pruning(self) -> None:
        """Only the last C{log_retention} changes can be served; older asks get None."""
        store = self.open_store(log_retention=3)
        for n in range(5):
            self.successResultOf(store.commit([put(str(n))]))
        self.assertIsNone(self.successResultOf(store.changes_since(0)))
        self.assertIsNone(self.successResultOf(store.changes_since(1)))
        self.assertEqual([c.serial for c in self.changes_since(store, 2)], [3, 4, 5])
        self.assertEqual(self.records(store), {str(n): {} for n in range(5)})

    def test_slave_applies_master_changes(self) -> None:
        """A slave fed the master's log ends with the master's records and serial."""
        master, slave = self.open_store(), self.open_store()
        self.successResultOf(master.commit([put("a", x=1), put("b", x=2)]))
        self.successResultOf(master.commit([delete("a"), Mutation("object", "o", {})]))
        for change in self.changes_since(master, 0):
            self.assertIsNone(self.successResultOf(slave.apply(change)))
        self.assertEqual(slave.serial, 2)
        master_state = self.successResultOf(master.snapshot())
        self.assertEqual(self.successResultOf(slave.snapshot()).records, master_state.records)
        self.assertEqual(
            self.successResultOf(slave.changes_since(0)),
            self.successResultOf(master.changes_since(0)),
        )

    def test_apply_gap_rejected(self) -> None:
        """A change that skips or repeats a serial is refused and changes nothing."""
        store = self.open_store()
        failure = self.failureResultOf(store.apply(Change(2, (put("a"),))), SerialGapError)
        self.assertEqual((failure.value.expected, failure.value.got), (1, 2))
        self.successResultOf(store.apply(Change(1, (put("a"),))))
        failure = self.failureResultOf(store.apply(Change(1, (put("b"),))), SerialGapError)
        self.assertEqual((failure.value.expected, failure.value.got), (2, 1))
        self.assertEqual(store.serial, 1)
        self.assertEqual(self.records(store), {"a": {}})

    def test_replace_all(self) -> None:
        """A snapshot replaces lineage, serial and records, and resets the log."""
        store = self.open_store()
        self.successResultOf(store.commit([put("old")]))
        other_id = str(uuid.uuid4())
        state = StoreState(other_id, 42, {"object": {"o": {"p": "x"}}})
        self.assertIsNone(self.successResultOf(store.replace_all(state)))
        self.assertEqual((store.database_id, store.serial), (other_id, 42))
        snapshot = self.successResultOf(store.snapshot())
        self.assertEqual(snapshot, StoreState(other_id, 42, {k: {} for k in KINDS} | state.records))
        self.assertIsNone(self.successResultOf(store.changes_since(41)))
        self.assertIsNone(self.successResultOf(store.changes_since(1)))
        self.assertEqual(self.successResultOf(store.changes_since(42)), [])
        self.successResultOf(store.apply(Change(43, (put("new"),))))
        store = self.reopen(store)
        reloaded = self.successResultOf(store.open())
        self.addCleanup(store.close)
        self.assertEqual((reloaded.database_id, reloaded.serial), (other_id, 43))
        self.assertEqual(reloaded.records["adapter"], {"new": {}})

    def test_replace_all_rejects_unknown_kind(self) -> None:
        store = self.open_store()
        self.successResultOf(store.commit([put("a")]))
        bad = StoreState(str(uuid.uuid4()), 5, {"server": {"s": {}}})
        self.failureResultOf(store.replace_all(bad), ValueError)
        self.assertEqual(store.serial, 1)
        self.assertEqual(self.records(store), {"a": {}})

    def test_closed_store_refuses_work(self) -> None:
        store = self.open_store()
        self.successResultOf(store.close())
        self.failureResultOf(store.commit([put("a")]), StoreError)
        self.failureResultOf(store.snapshot(), StoreError)
        self.successResultOf(store.close())

    def test_open_twice_refused(self) -> None:
        self.failureResultOf(self.open_store().open(), StoreError)

    def test_many_records_reload(self) -> None:
        """A large database (20,000 records here) loads whole at start-up."""
        store = self.open_store()
        keys = [f"object-{n}" for n in range(20000)]
        self.successResultOf(store.commit([Mutation("object", k, {"k": k}) for k in keys]))
        store = self.reopen(store)
        state = self.successResultOf(store.open())
        self.addCleanup(store.close)
        self.assertEqual(len(state.records["object"]), 20000)
        self.assertEqual(state.records["object"]["object-19999"], {"k": "object-19999"})


class MemoryStoreTests(StoreConformanceMixin, SynchronousTestCase):
    def make_store(self, log_retention: int = 10000) -> IRegistryStore:
        return MemoryStore(log_retention=log_retention)

    def reopen(self, store: IRegistryStore) -> IRegistryStore:
        self.successResultOf(store.close())
        return store


class SQLiteStoreTests(StoreConformanceMixin, SynchronousTestCase):
    def make_store(self, log_retention: int = 10000) -> IRegistryStore:
        return SQLiteStore(self.mktemp(), log_retention=log_retention)

    def reopen(self, store: IRegistryStore) -> IRegistryStore:
        assert isinstance(store, SQLiteStore)
        self.successResultOf(store.close())
        return SQLiteStore(store.path, log_retention=store.log_retention)

    def test_creates_data_directory(self) -> None:
        path = os.path.join(self.mktemp(), "a", "b")
        store = SQLiteStore(path)
        self.successResultOf(store.open())
        self.addCleanup(store.close)
        self.assertTrue(os.path.isfile(os.path.join(path, DB_FILENAME)))

    def test_durable_settings(self) -> None:
        """Commits go through a WAL that is synced on every commit."""
        store = SQLiteStore(self.mktemp())
        self.successResultOf(store.open())
        self.addCleanup(store.close)
        assert store._db is not None
        self.assertEqual(store._db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(store._db.execute("PRAGMA synchronous").fetchone()[0], 2)  # FULL

    def assert_open_fails(self, path: str, *fragments: str) -> None:
        store = SQLiteStore(path)
        failure = self.failureResultOf(store.open(), StoreError)
        message = str(failure.value)
        for fragment in (os.path.join(path, DB_FILENAME),) + fragments:
            self.assertIn(fragment, message)
        self.assertIsNone(store.database_id)

    def test_corrupt_file(self) -> None:
        path = self.mktemp()
        os.makedirs(path)
        with open(os.path.join(path, DB_FILENAME), "wb") as f:
            f.write(b"this is not an sqlite database at all, just some bytes" * 100)
        self.assert_open_fails(path, "not a gridreg database")

    def test_foreign_sqlite_file(self) -> None:
        """Another program's database is refused, and left as it was."""
        path = self.mktemp()
        os.makedirs(path)
        filename = os.path.join(path, DB_FILENAME)
        with sqlite3.connect(filename) as db:
            db.execute("CREATE TABLE accounts (name TEXT)")
        db.close()
        self.assert_open_fails(path, "not a gridreg database", "no version table")
        with sqlite3.connect(filename) as db:
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "delete")
        db.close()

    def set_version(self, path: str, version: int) -> None:
        store = SQLiteStore(path)
        self.successResultOf(store.open())
        self.successResultOf(store.close())
        with sqlite3.connect(os.path.join(path, DB_FILENAME)) as db:
            db.execute("UPDATE version SET version = ?", (version,))
        db.close()

    def test_newer_schema_version(self) -> None:
        path = self.mktemp()
        self.set_version(path, 2)
        self.assert_open_fails(path, "schema version 2 is newer")

    def test_unknown_schema_version(self) -> None:
        path = self.mktemp()
        self.set_version(path, 0)
        self.assert_open_fails(path, "unknown schema version 0")

    def test_one_registry_per_data_directory(self) -> None:
        """A second store on an open data directory is refused, without harm to the first."""
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        failure = self.failureResultOf(SQLiteStore(store.path).open(), StoreError)
        self.assertIn("another registry", str(failure.value))
        self.assertEqual(self.successResultOf(store.commit([put("a")])).serial, 1)


class RecordsTests(SynchronousTestCase):
    def test_unknown_kind_rejected(self) -> None:
        with self.assertRaises(ValueError):
            Mutation("server", "s", {})

    def test_value_must_be_dict_or_none(self) -> None:
        with self.assertRaises(TypeError):
            Mutation("adapter", "a", ["not", "a", "dict"])  # type: ignore[arg-type]

    def test_change_json_round_trip(self) -> None:
        change = Change(
            7,
            (put("a", endpoints=["tcp -h h -p 1"], n=None), delete("b"), Mutation("meta", "m", {})),
        )
        self.assertEqual(change_from_json(change_to_json(change)), change)
        self.assertEqual(change_from_json(change_to_json(change).encode("utf-8")), change)

    def test_change_from_bad_json(self) -> None:
        for text in [
            "[",
            "{}",
            '{"serial": 1, "mutations": [{"kind": "x", "key": "k", "value": null}]}',
        ]:
            with self.assertRaises(ValueError):
                change_from_json(text)
