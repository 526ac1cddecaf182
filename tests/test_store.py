# -*- test-case-name: tests.test_store -*-
"""
Tests for L{gridreg.store}: one conformance suite run against every
L{IRegistryStore}, plus what only the SQLite file can get wrong.
"""

from __future__ import annotations

import json

import os
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

from zope.interface.verify import verifyObject

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from gridreg.store.interfaces import IRegistryStore, SerialGapError, StoreError
from gridreg.store.memory import MemoryStore
from gridreg.store.records import (
    KINDS,
    Change,
    EncodedValues,
    Mutation,
    StoreState,
    change_from_json,
    change_to_json,
    copied,
    encode_value,
)
from gridreg.store import sqlite as sqlite_module
from gridreg.store.sqlite import DB_FILENAME, SQLiteStore, load_schema


def put(key: str, **value: object) -> Mutation:
    return Mutation("adapter", key, dict(value))


def delete(key: str) -> Mutation:
    return Mutation("adapter", key, None)


class FailingConnection:
    """
    A store's SQLite connection that fails the first statement containing
    C{fail_on} as a failing disk would, leaving the transaction open (as
    SQLite does for most errors), and otherwise passes everything through.
    """

    def __init__(self, db: sqlite3.Connection, fail_on: str) -> None:
        self._db = db
        self._fail_on = fail_on
        self.failed = False

    def _check(self, sql: str) -> None:
        if not self.failed and self._fail_on in sql:
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._db.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


if TYPE_CHECKING:
    _MixinBase = SynchronousTestCase
else:
    _MixinBase = object


class StoreConformanceMixin(_MixinBase):
    """
    What every L{IRegistryStore} promises.  Subclasses provide
    L{make_store} and L{reopen}.
    """

    def make_store(self, log_retention: int | None = None) -> IRegistryStore:
        """A new store; C{log_retention=None} means the constructor's default."""
        raise NotImplementedError()

    def fast_commits(self, store: IRegistryStore) -> None:
        """Let a test make thousands of commits quickly (durability is not its point)."""

    def reopen(self, store: IRegistryStore) -> IRegistryStore:
        """Close C{store} and return an unopened store over the same data."""
        raise NotImplementedError()

    def open_store(self, log_retention: int | None = None) -> IRegistryStore:
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

    def test_default_log_retention(self) -> None:
        """By default a slave up to 10,000 changes behind catches up from the log."""
        store = self.open_store()
        self.fast_commits(store)
        for n in range(10001):
            self.successResultOf(store.apply(Change(n + 1, (put("a", n=n),))))
        self.assertEqual(store.serial, 10001)
        self.assertIsNone(self.successResultOf(store.changes_since(0)))
        changes = self.changes_since(store, 1)
        self.assertEqual((len(changes), changes[0].serial), (10000, 2))

    def test_reached_fires_once_the_serial_is_durable(self) -> None:
        """Waiters for serials at or below the durable one fire, in any order asked; others wait."""
        store = self.open_store()
        self.successResultOf(store.reached(0))
        two, one, three = store.reached(2), store.reached(1), store.reached(3)
        self.successResultOf(store.apply(Change(1, (put("a"),))))
        self.successResultOf(one)
        self.assertNoResult(two)
        self.successResultOf(store.apply_many([Change(2, (put("b"),)), Change(3, (put("c"),))]))
        self.successResultOf(two)
        self.successResultOf(three)
        self.successResultOf(store.reached(3))

    def test_no_log_retention(self) -> None:
        """With a log of 0 changes every slave that is behind needs a snapshot."""
        store = self.open_store(log_retention=0)
        self.successResultOf(store.commit([put("a")]))
        self.successResultOf(store.commit([put("b")]))
        self.assertEqual(self.successResultOf(store.changes_since(2)), [])
        self.assertIsNone(self.successResultOf(store.changes_since(1)))
        self.assertEqual(self.records(store), {"a": {}, "b": {}})

    def test_negative_log_retention_refused(self) -> None:
        """A negative retention is refused, naming the parameter."""
        with self.assertRaises(ValueError) as raised:
            self.make_store(log_retention=-1)
        self.assertIn("log_retention must be >= 0", str(raised.exception))

    def test_delete_of_missing_record(self) -> None:
        """Deleting what is not there is a change like any other, and harmless."""
        store = self.open_store()
        change = self.successResultOf(store.commit([delete("nothing")]))
        self.assertEqual(change, Change(1, (delete("nothing"),)))
        self.assertEqual(self.records(store), {})
        self.assertEqual(self.changes_since(store, 0), [change])

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
    def make_store(self, log_retention: int | None = None) -> IRegistryStore:
        if log_retention is None:
            return MemoryStore()
        return MemoryStore(log_retention=log_retention)

    def reopen(self, store: IRegistryStore) -> IRegistryStore:
        self.successResultOf(store.close())
        return store


class SQLiteStoreTests(StoreConformanceMixin, SynchronousTestCase):
    def make_store(self, log_retention: int | None = None) -> IRegistryStore:
        if log_retention is None:
            return SQLiteStore(self.mktemp())
        return SQLiteStore(self.mktemp(), log_retention=log_retention)

    def fast_commits(self, store: IRegistryStore) -> None:
        assert isinstance(store, SQLiteStore) and store._db is not None
        store._db.execute("PRAGMA synchronous=OFF")

    def _log_bodies(self, store: SQLiteStore) -> list[tuple[int, str]]:
        assert store._db is not None
        return store._db.execute("SELECT serial, body FROM changes ORDER BY serial").fetchall()

    def test_a_pushed_changes_text_is_logged_as_it_is(self) -> None:
        """
        A change with its own text (a slave's pushed change) is logged as
        that text, the master's spelling kept; one without is put together
        as before. One change and several in one batch alike.
        """
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        pushed = '{"serial":1,"mutations":[{"kind":"adapter","key":"\\u0061","value":{"n":1.0E2}}]}'
        value = Mutation("adapter", "a", {"n": 100.0}, text='{"n":1.0E2}')
        self.successResultOf(store.apply_many([Change(1, [value], text=pushed)], copy=False))
        plain = Change(2, [Mutation("adapter", "b", {"x": 1})])
        third = '{"serial":3,"mutations":[{"kind":"adapter","key":"a","value":null}]}'
        self.successResultOf(
            store.apply_many(
                [plain, Change(3, [Mutation("adapter", "a", None)], text=third)], copy=False
            )
        )
        self.assertEqual(
            self._log_bodies(store), [(1, pushed), (2, change_to_json(plain)), (3, third)]
        )
        self.assertEqual(
            self.changes_since(store, 0),
            [
                Change(1, [Mutation("adapter", "a", {"n": 100.0})]),
                plain,
                Change(3, [Mutation("adapter", "a", None)]),
            ],
        )
        self.assertEqual(self.records(store), {"b": {"x": 1}})

    def test_the_log_is_pruned_in_batches_and_serves_only_its_retention(self) -> None:
        """
        The changes log is pruned every PRUNE_EVERY serials, so it holds at
        most that many changes past its retention; those are never served.
        """
        store = self.open_store(log_retention=3)
        self.fast_commits(store)
        assert isinstance(store, SQLiteStore) and store._db is not None
        sizes = []
        for n in range(3 * sqlite_module.PRUNE_EVERY + 5):
            self.successResultOf(store.commit([put(str(n))]))
            (rows,) = store._db.execute("SELECT count(*) FROM changes").fetchone()
            sizes.append(rows)
            serial = store.serial
            self.assertIsNone(self.successResultOf(store.changes_since(serial - 4)))
            served = self.changes_since(store, max(0, serial - 3))
            self.assertEqual(
                [c.serial for c in served], list(range(max(1, serial - 2), serial + 1))
            )
        self.assertLessEqual(max(sizes), 3 + sqlite_module.PRUNE_EVERY)
        self.assertLess(min(sizes[sqlite_module.PRUNE_EVERY :]), sqlite_module.PRUNE_EVERY)

    def test_serial_survives_reopen_with_meta_written_only_at_pruning(self) -> None:
        """
        A commit writes its change and leaves C{meta} alone (one page fewer
        per commit) except when it prunes the log; every serial, at any
        retention (0 too: the log is then emptied), is what a reopen finds.
        """
        for retention in (0, 3):
            store = self.open_store(log_retention=retention)
            self.fast_commits(store)
            assert isinstance(store, SQLiteStore) and store._db is not None
            metas = set()
            for n in range(sqlite_module.PRUNE_EVERY + 3):
                if n in (1, sqlite_module.PRUNE_EVERY - 2, sqlite_module.PRUNE_EVERY + 2):
                    store = self.reopen(store)
                    self.assertEqual(self.successResultOf(store.open()).serial, n)
                    self.fast_commits(store)
                    assert isinstance(store, SQLiteStore) and store._db is not None
                self.successResultOf(store.commit([put(str(n))]))
                (meta,) = store._db.execute("SELECT serial FROM meta").fetchone()
                metas.add(meta)
            self.assertEqual(metas, {0, sqlite_module.PRUNE_EVERY})
            store = self.reopen(store)
            self.assertEqual(
                self.successResultOf(store.open()).serial, sqlite_module.PRUNE_EVERY + 3
            )
            self.successResultOf(store.close())

    def _table(self, store: SQLiteStore, sql: str) -> list[Any]:
        assert store._db is not None
        return store._db.execute(sql).fetchall()

    def test_records_are_written_to_their_table_when_the_log_is_pruned(self) -> None:
        """
        A commit writes its change to the log only (one B-tree page, not
        two); the records table gets the records, each key once, in the
        commit that prunes the log, with meta's serial. Reads, the log and a
        reopen see every commit all along.
        """
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        self.fast_commits(store)
        self.successResultOf(store.commit([put("gone")]))
        for n in range(1, sqlite_module.PRUNE_EVERY - 2):
            self.successResultOf(store.commit([put("a", n=n), put(f"k{n}")]))
        self.successResultOf(store.commit([delete("gone")]))
        self.assertEqual(store.serial, sqlite_module.PRUNE_EVERY - 1)
        self.assertEqual(self._table(store, "SELECT kind, key FROM records"), [])
        self.assertEqual(self._table(store, "SELECT serial FROM meta"), [(0,)])
        expected = {"a": {"n": sqlite_module.PRUNE_EVERY - 3}}
        expected.update({f"k{n}": {} for n in range(1, sqlite_module.PRUNE_EVERY - 2)})
        self.assertEqual(self.records(store), expected)
        self.assertEqual(len(self.changes_since(store, 0)), sqlite_module.PRUNE_EVERY - 1)
        store = self.reopen(store)
        self.assertEqual(self.successResultOf(store.open()).records["adapter"], expected)
        self.addCleanup(store.close)
        assert isinstance(store, SQLiteStore)
        self.successResultOf(store.commit([put("last")]))
        expected["last"] = {}
        self.assertEqual(
            dict(self._table(store, "SELECT key, json(value) FROM records")),
            {key: json.dumps(value, separators=(",", ":")) for key, value in expected.items()},
        )
        self.assertEqual(
            self._table(store, "SELECT serial FROM meta"), [(sqlite_module.PRUNE_EVERY,)]
        )
        self.assertEqual(self.records(store), expected)

    def test_a_large_batch_writes_the_records_at_once(self) -> None:
        """
        More than PENDING_MAX records pending are written to their table in
        the commit that makes them so: an open reads back little of the log.
        """
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        self.successResultOf(store.commit([put("small")]))
        self.assertEqual(self._table(store, "SELECT count(*) FROM records"), [(0,)])
        many = [put(f"k{n}") for n in range(sqlite_module.PENDING_MAX)]
        self.successResultOf(store.commit(many))
        self.assertEqual(
            self._table(store, "SELECT count(*) FROM records"), [(sqlite_module.PENDING_MAX + 1,)]
        )
        self.assertEqual(self._table(store, "SELECT serial FROM meta"), [(2,)])
        self.assertEqual(len(self.records(store)), sqlite_module.PENDING_MAX + 1)

    def test_a_page_of_records_is_current(self) -> None:
        """
        A page read for a fresh slave's snapshot holds every commit so far:
        the records the log holds of its kind are written to the table first.
        """
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        self.successResultOf(store.commit([put("a", n=1), put("b"), put("c")]))
        self.successResultOf(store.commit([delete("b"), put("a", n=2)]))
        self.successResultOf(store.commit([Mutation("object", '["c", "o"]', {"type": "::T"})]))
        page = self.successResultOf(store.snapshot_page("adapter", None, 10))
        self.assertEqual(page, [("a", '{"n":2}'), ("c", "{}")])
        self.assertEqual(
            self.successResultOf(store.snapshot_page("adapter", "a", 10)), [("c", "{}")]
        )
        self.assertEqual(self._table(store, "SELECT serial FROM meta"), [(3,)])
        self.assertEqual(
            self.successResultOf(store.snapshot_page("object", None, 10)),
            [('["c", "o"]', '{"type":"::T"}')],
        )
        self.successResultOf(store.commit([put("d")]))
        self.assertEqual(store.serial, 4)
        store = self.reopen(store)
        state = self.successResultOf(store.open())
        self.addCleanup(store.close)
        self.assertEqual(state.records["adapter"], {"a": {"n": 2}, "c": {}, "d": {}})
        self.assertEqual([c.serial for c in self.changes_since(store, 0)], [1, 2, 3, 4])

    def test_a_failed_write_of_the_records_is_rolled_back(self) -> None:
        """
        The commit that writes the records to their table and prunes the log
        fails whole: nothing of it stays, the records it would have written
        are still read from the log, and the next commit writes them.
        """
        store = self.open_store(log_retention=2)
        assert isinstance(store, SQLiteStore)
        self.fast_commits(store)
        for n in range(1, sqlite_module.PRUNE_EVERY):
            self.successResultOf(store.commit([put(f"k{n}")]))
        failing = self.fail_next(store, "UPDATE meta")
        self.failureResultOf(store.commit([put("lost")]), StoreError)
        self.assertTrue(failing.failed)
        self.assertEqual(self._table(store, "SELECT count(*) FROM records"), [(0,)])
        expected = {f"k{n}": {} for n in range(1, sqlite_module.PRUNE_EVERY)}
        self.assertEqual(self.records(store), expected)
        self.successResultOf(store.commit([put("next")]))
        expected["next"] = {}
        self.assertEqual(self._table(store, "SELECT count(*) FROM records"), [(len(expected),)])
        self.assertEqual(self.records(store), expected)
        self.assertEqual(
            [c.serial for c in self.changes_since(store, store.serial - 2)],
            [store.serial - 1, store.serial],
        )
        store = self.reopen(store)
        self.assertEqual(self.successResultOf(store.open()).records["adapter"], expected)
        self.addCleanup(store.close)

    def write_version_1(self, path: str) -> None:
        """
        A file as schema version 1 code leaves it: the records current (a
        commit wrote its records and its change), C{meta}'s serial that of
        the last pruning (16), and the log's changes after it (17-19: a
        put, an update, a put then a delete) already in the records.
        """
        os.makedirs(path)
        db = sqlite3.connect(os.path.join(path, DB_FILENAME), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript("BEGIN;\n" + load_schema(1))
        db.execute("INSERT INTO meta (database_id, serial) VALUES ('lineage-1', 16)")
        records = [
            ("adapter", "a", '{"n":2}'),
            ("adapter", "old", "{}"),
            ("object", '["c", "o"]', '{"proxy":"AAAA","type":"::T"}'),
            ("application", "app", '{"x":[1]}'),
        ]
        db.executemany("INSERT INTO records (kind, key, value) VALUES (?, ?, ?)", records)
        log = [
            Change(15, [Mutation("adapter", "old", {})]),
            Change(16, [Mutation("adapter", "a", {"n": 1})]),
            Change(17, [Mutation("object", '["c", "o"]', {"proxy": "AAAA", "type": "::T"})]),
            Change(
                18, [Mutation("adapter", "a", {"n": 2}), Mutation("application", "app", {"x": [1]})]
            ),
            Change(19, [Mutation("adapter", "tmp", {})]),
            Change(20, [Mutation("adapter", "tmp", None)]),
        ]
        db.executemany(
            "INSERT INTO changes (serial, body) VALUES (?, ?)",
            [(c.serial, change_to_json(c)) for c in log],
        )
        db.execute("COMMIT")
        db.close()

    def test_a_version_1_file_is_upgraded_once(self) -> None:
        """
        A file schema version 1 code wrote opens with everything it holds
        (records, serial, lineage, the log), is upgraded to the current
        version once (its records were current: meta's serial becomes the
        last change's), and takes commits as any other.
        """
        path = self.mktemp()
        self.write_version_1(path)
        expected = {
            "adapter": {"a": {"n": 2}, "old": {}},
            "object": {'["c", "o"]': {"proxy": "AAAA", "type": "::T"}},
            "application": {"app": {"x": [1]}},
            "replica": {},
            "meta": {},
        }
        for opening in range(3):
            store = SQLiteStore(path)
            with capturedLogs() as events:
                state = self.successResultOf(store.open())
            upgrades = [e for e in events if "Upgraded" in e.get("log_format", "")]
            self.assertEqual(len(upgrades), 1 if opening == 0 else 0)
            self.assertEqual((state.database_id, state.serial), ("lineage-1", 20 + opening))
            self.assertEqual({k: dict(v) for k, v in state.records.items()}, expected)
            self.assertEqual(
                [c.serial for c in self.changes_since(store, 14)], list(range(15, 21 + opening))
            )
            self.assertEqual(
                self._table(store, "SELECT version FROM version"),
                [(sqlite_module.SCHEMA_VERSION,)],
            )
            # the records were current: none of the log is read back at open
            self.assertEqual(self._table(store, "SELECT serial FROM meta"), [(20,)])
            self.successResultOf(store.commit([put(f"new{opening}")]))
            expected["adapter"][f"new{opening}"] = {}
            self.successResultOf(store.close())

    def reopen(self, store: IRegistryStore) -> IRegistryStore:
        assert isinstance(store, SQLiteStore)
        self.successResultOf(store.close())
        return SQLiteStore(store.path, log_retention=store.log_retention)

    def fail_next(self, store: SQLiteStore, fail_on: str) -> FailingConnection:
        assert store._db is not None
        failing = FailingConnection(store._db, fail_on)
        store._db = failing  # type: ignore[assignment]
        return failing

    def test_failed_write_is_rolled_back(self) -> None:
        """
        A write the disk refuses is not acknowledged, leaves nothing behind,
        and the next write succeeds with the next serial.
        """
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        self.successResultOf(store.commit([put("a")]))
        failing = self.fail_next(store, "INSERT INTO changes")
        failure = self.failureResultOf(store.commit([put("lost")]), StoreError)
        self.assertTrue(failing.failed)
        self.assertIn(store.filename, str(failure.value))
        self.assertIn("disk I/O error", str(failure.value))
        self.assertEqual(store.serial, 1)
        self.assertEqual(self.records(store), {"a": {}})
        self.assertEqual(self.successResultOf(store.commit([put("b")])).serial, 2)
        store = self.reopen(store)
        state = self.successResultOf(store.open())
        self.addCleanup(store.close)
        self.assertEqual((state.serial, state.records["adapter"]), (2, {"a": {}, "b": {}}))
        self.assertEqual([c.serial for c in self.changes_since(store, 0)], [1, 2])

    def test_failed_apply_is_rolled_back(self) -> None:
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        self.fail_next(store, "COMMIT")
        self.failureResultOf(store.apply(Change(1, (put("lost"),))), StoreError)
        self.assertEqual((store.serial, self.records(store)), (0, {}))
        self.assertIsNone(self.successResultOf(store.apply(Change(1, (put("a"),)))))
        self.assertEqual(self.records(store), {"a": {}})

    def test_failed_snapshot_install_is_rolled_back(self) -> None:
        """A snapshot that cannot be written leaves the old database whole and usable."""
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        self.successResultOf(store.commit([put("a")]))
        database_id = store.database_id
        self.fail_next(store, "INSERT INTO records")
        state = StoreState(str(uuid.uuid4()), 9, {"adapter": {"new": {}}})
        self.failureResultOf(store.replace_all(state), StoreError)
        self.assertEqual((store.database_id, store.serial), (database_id, 1))
        self.assertEqual(self.records(store), {"a": {}})
        self.assertEqual([c.serial for c in self.changes_since(store, 0)], [1])
        self.assertEqual(self.successResultOf(store.commit([put("b")])).serial, 2)

    def test_disk_full(self) -> None:
        """A full disk fails the write with a clear error; writes succeed once space returns."""
        store = self.open_store()
        assert isinstance(store, SQLiteStore) and store._db is not None
        self.successResultOf(store.commit([put("a")]))
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()
        store._db.execute(f"PRAGMA max_page_count = {pages + 2}")
        failure = self.failureResultOf(store.commit([put("big", blob="x" * 100000)]), StoreError)
        self.assertIn("full", str(failure.value))
        self.assertIn(store.filename, str(failure.value))
        self.assertEqual(store.serial, 1)
        store._db.execute("PRAGMA max_page_count = 1073741823")
        self.assertEqual(self.successResultOf(store.commit([put("b")])).serial, 2)
        self.assertEqual(self.records(store), {"a": {}, "b": {}})

    def test_data_directory_cannot_be_made(self) -> None:
        """A data directory path that runs through a file is refused with the file named."""
        parent = self.mktemp()
        with open(parent, "w") as f:
            f.write("a file, not a directory")
        self.assert_open_fails(os.path.join(parent, "data"), "cannot open")

    def test_second_registry_refused_at_once(self) -> None:
        """The second registry on a directory fails immediately, without waiting for the lock."""
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        started = time.monotonic()
        self.failureResultOf(SQLiteStore(store.path).open(), StoreError)
        self.assertLess(time.monotonic() - started, 0.5)

    def edit_database(self, path: str, *statements: str) -> None:
        store = SQLiteStore(path)
        self.successResultOf(store.open())
        self.successResultOf(store.close())
        with sqlite3.connect(os.path.join(path, DB_FILENAME)) as db:
            for statement in statements:
                db.execute(statement)
        db.close()

    def test_bad_version_table(self) -> None:
        for statements in [
            ("INSERT INTO version (version) VALUES (1)",),
            ("UPDATE version SET version = 'one'",),
            ("DELETE FROM version",),
        ]:
            path = self.mktemp()
            self.edit_database(path, *statements)
            self.assert_open_fails(path, "not a gridreg database", "bad version table")

    def test_bad_meta_table(self) -> None:
        path = self.mktemp()
        self.edit_database(path, "INSERT INTO meta (database_id, serial) VALUES ('x', 3)")
        self.assert_open_fails(path, "not a gridreg database", "bad meta table")

    def test_corrupt_record(self) -> None:
        """A record that is not JSON is refused at start-up, naming the file and the kind."""
        path = self.mktemp()
        self.edit_database(
            path, "INSERT INTO records (kind, key, value) VALUES ('object', 'o', '{not json')"
        )
        self.assert_open_fails(path, "corrupt object record")

    def test_a_record_that_is_not_an_object_is_refused(self) -> None:
        """The records handed over undecoded are checked too: a JSON array is no record."""
        path = self.mktemp()
        self.edit_database(
            path, "INSERT INTO records (kind, key, value) VALUES ('object', 'o', '[1, 2]')"
        )
        self.assert_open_fails(path, "corrupt object record", "'o'", "not a JSON object")

    def test_one_bad_record_among_many_is_named(self) -> None:
        """
        The read that hands the texts over checks them in the same pass: one
        bad text among good ones still stops the open, naming that record.
        """
        path = self.mktemp()
        good = ", ".join(
            f"""('object', '["c", "o{i}"]', '{{"proxy":"AAAA","type":"::T"}}')""" for i in range(50)
        )
        self.edit_database(
            path,
            "INSERT INTO records (kind, key, value) VALUES " + good,
            """INSERT INTO records (kind, key, value) VALUES ('object', '["c", "o25x"]', '{"a":')""",
        )
        self.assert_open_fails(path, "corrupt object record", "o25x")

    def test_texts_that_are_objects_however_spelt_load(self) -> None:
        """
        An object's text that does not begin with its brace (white space
        first) is an object still, and loads; a JSON string, which begins
        with neither, is refused.
        """
        _, objects = self.open_with_objects(
            """('object', '["c", "o"]', ' {"proxy":"AAAA","type":"::T"}')"""
        )
        self.assertEqual(dict(objects), {'["c", "o"]': {"proxy": "AAAA", "type": "::T"}})
        path = self.mktemp()
        self.edit_database(
            path, """INSERT INTO records (kind, key, value) VALUES ('object', 'o', '"{x}"')"""
        )
        self.assert_open_fails(path, "corrupt object record", "'o'", "not a JSON object")

    def test_object_records_load_as_their_texts(self) -> None:
        """
        Open hands the well-known objects over as their stored texts, which
        read as the values written: records written before there was such a
        form load the same, as they are the same rows.
        """
        store, objects = self.open_with_objects(
            """('object', '["c", "o"]', '{"proxy":"AAAA","type":"::T"}')"""
        )
        self.assertIsInstance(objects, EncodedValues)
        self.assertEqual(objects.texts, {'["c", "o"]': '{"proxy":"AAAA","type":"::T"}'})
        self.assertEqual(dict(objects), {'["c", "o"]': {"proxy": "AAAA", "type": "::T"}})
        self.assertEqual(self.successResultOf(store.snapshot()).records["object"], dict(objects))

    def test_failed_creation_leaves_no_database(self) -> None:
        """If creating the schema fails, the next start creates it from scratch."""
        path = self.mktemp()
        self.patch(sqlite_module, "load_schema", lambda version: "CREATE TABLE version (x);\nbad")
        self.assert_open_fails(path, "bad")
        self.patch(sqlite_module, "load_schema", load_schema)
        store = SQLiteStore(path)
        self.assertEqual(self.successResultOf(store.open()).serial, 0)
        self.addCleanup(store.close)

    def test_open_twice_names_the_mistake(self) -> None:
        """Opening an open store says so, and leaves it working."""
        store = self.open_store()
        assert isinstance(store, SQLiteStore)
        failure = self.failureResultOf(store.open(), StoreError)
        self.assertIn("already open", str(failure.value))
        self.assertEqual(self.successResultOf(store.commit([put("a")])).serial, 1)

    def test_reopen_same_store(self) -> None:
        """A closed store refuses work as not open, and can be opened again."""
        store = self.open_store()
        self.successResultOf(store.commit([put("a")]))
        self.successResultOf(store.close())
        failure = self.failureResultOf(store.commit([put("b")]), StoreError)
        self.assertIn("not open", str(failure.value))
        state = self.successResultOf(store.open())
        self.assertEqual((state.serial, state.records["adapter"]), (1, {"a": {}}))

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
        self.assertEqual(
            store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0],
            sqlite_module.WAL_AUTOCHECKPOINT,
        )

    def open_with_objects(
        self, rows: str, prepare: Callable[[SQLiteStore], None] = lambda store: None
    ) -> tuple[SQLiteStore, Any]:
        """
        A store opened on a database whose records table was given C{rows}
        (an SQL VALUES list) behind its back, C{prepare}d before its open;
        and the object records its open handed over.
        """
        path = self.mktemp()
        self.edit_database(path, "INSERT INTO records (kind, key, value) VALUES " + rows)
        store = SQLiteStore(path)
        prepare(store)
        objects = self.successResultOf(store.open()).records["object"]
        self.addCleanup(store.close)
        return store, objects

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
        newer = sqlite_module.SCHEMA_VERSION + 1
        self.set_version(path, newer)
        self.assert_open_fails(path, f"schema version {newer} is newer")

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

    def test_keys_holding_the_read_separators(self) -> None:
        """
        Object records are read as one joined text, split on two control
        characters; a key holding one (a JSON text cannot) still loads as
        stored, read row by row.
        """
        _, objects = self.open_with_objects(
            """('object', 'odd' || char(31) || 'key' || char(30), '{"type":"::A"}'),"""
            """('object', 'plain', '{"type":"::B"}')"""
        )
        self.assertEqual(
            dict(objects), {"odd\x1fkey\x1e": {"type": "::A"}, "plain": {"type": "::B"}}
        )

    def test_object_records_read_a_chunk_at_a_time_all_load(self) -> None:
        """
        The joined read takes TEXTS_CHUNK records at a time (its string is a
        transient of a chunk, not of every object): every record loads,
        whether the last chunk is full or not, and one bad text in a later
        chunk still stops the open, naming it.
        """
        self.patch(sqlite_module, "TEXTS_CHUNK", 3)
        for count in (9, 10):
            rows = ", ".join(
                f"""('object', '["c", "o{i}"]', '{{"type":"::T{i}"}}')""" for i in range(count)
            )
            _, objects = self.open_with_objects(rows + """, ('adapter', 'a', '{"x":1}')""")
            self.assertEqual(
                dict(objects), {f'["c", "o{i}"]': {"type": f"::T{i}"} for i in range(count)}
            )
        path = self.mktemp()
        good = ", ".join(f"""('object', '["c", "o{i}"]', '{{"type":"::T"}}')""" for i in range(8))
        self.edit_database(
            path,
            "INSERT INTO records (kind, key, value) VALUES " + good,
            """INSERT INTO records (kind, key, value) VALUES ('object', '["c", "o7x"]', '[1]')""",
        )
        self.assert_open_fails(path, "corrupt object record", "o7x")

    def test_odd_keys_found_where_the_records_are_read(self) -> None:
        """The store runs C{find_odd_keys} over the object keys it read, for the state's load."""

        def odd_but_b(store: SQLiteStore) -> None:
            store.find_odd_keys = lambda keys: sorted(k for k in keys if k != "b")

        _, objects = self.open_with_objects(
            """('object', 'a', '{}'), ('object', 'b', '{}'), ('object', 'c', '{}')""", odd_but_b
        )
        assert isinstance(objects, EncodedValues)
        self.assertEqual(objects.odd_keys, ["a", "c"])


class ReadAheadSQLiteStoreTests(SQLiteStoreTests):
    """
    Every SQLite test again, each store opened after L{SQLiteStore.read_ahead}
    (as the registry opens its own): the same records, and the same refusals
    of a locked, foreign or corrupt file, at open.
    """

    def setUp(self) -> None:
        open_now = SQLiteStore.open

        def open_after_reading_ahead(store: SQLiteStore) -> Any:
            store.read_ahead()
            return open_now(store)

        self.patch(SQLiteStore, "open", open_after_reading_ahead)

    def test_abandoned_read_ahead_lets_the_file_go(self) -> None:
        """A store read ahead, then closed without being opened, no longer holds the lock."""
        path = self.mktemp()
        first = SQLiteStore(path)
        first.read_ahead()
        self.failureResultOf(SQLiteStore(path).open(), StoreError)
        self.successResultOf(first.close())
        second = SQLiteStore(path)
        self.successResultOf(second.open())
        self.addCleanup(second.close)


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

    def test_change_json_around_known_texts_is_the_same_json(self) -> None:
        """
        A change whose puts carry their values' JSON (the master's write
        path) is encoded around those texts into exactly the JSON of the
        same change without them; the texts are not part of equality.
        """
        values = [
            {"proxy": "AAEC", "type": "::Demo::Hello"},
            {"x": [1, 2.5, None, True, {"y": '\u00e9\u2028"\\'}], "\u00fc": ""},
            {},
        ]
        plain = [Mutation("object", f'k\u00fc"{i}', v) for i, v in enumerate(values)]
        plain.append(delete("gone"))
        with_texts = [m if m.value is None else copied(m, encode_value(m)) for m in plain]
        self.assertEqual(with_texts[0].text, encode_value(plain[0]))
        self.assertEqual(with_texts, plain)
        texts = [None if m.value is None else encode_value(m) for m in plain]
        for serial in (1, 12345678901):
            expected = change_to_json(Change(serial, plain))
            self.assertEqual(change_to_json(Change(serial, with_texts)), expected)
            self.assertEqual(change_to_json(Change(serial, plain), texts), expected)
        self.assertEqual(json.loads(expected)["mutations"][1]["value"], values[1])
        self.assertEqual(change_to_json(Change(3, ())), '{"serial":3,"mutations":[]}')

    def test_change_from_bad_json(self) -> None:
        for text in [
            "[",
            "{}",
            '{"serial": 1, "mutations": [{"kind": "x", "key": "k", "value": null}]}',
        ]:
            with self.assertRaises(ValueError):
                change_from_json(text)

    def test_state_serial_not_negative(self) -> None:
        self.assertEqual(StoreState("id", 0, {}).serial, 0)
        with self.assertRaises(ValueError):
            StoreState("id", -1, {})

    def test_change_json_is_strict(self) -> None:
        """What is shipped to slaves is strict JSON: NaN and infinities are refused."""
        for bad in (float("nan"), float("inf")):
            with self.assertRaises(ValueError):
                change_to_json(Change(1, (put("a", x=bad),)))
