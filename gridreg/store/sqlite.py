# -*- test-case-name: tests.test_store -*-
"""
The registry store on disk: one SQLite file in C{IceGrid.Registry.Data}.

Every use of the file (opening and loading it, commits with their fsync,
snapshot and log reads) runs on the store's executor: in the registry one
worker thread (L{gridreg.store.executor.ThreadExecutor}), which keeps the
order jobs were submitted in, so the reactor never waits for the disk (the
first open and read may run earlier on a thread of their own, see
L{SQLiteStore.read_ahead}, and hand the file over to the executor).  The
file is in WAL mode with C{synchronous=FULL}, so a commit is on disk before
its Deferred fires, and it is held with an exclusive lock while open, so
two registries can never share one data directory.

A commit writes its changes to the log only; the records they change are
kept in memory (L{SQLiteStore._pending}) and written to the records table
once every L{PRUNE_EVERY} serials, in the commit that prunes the log (or
at once when more than L{PENDING_MAX} are pending), or before a page of
records is read. Writing each record at once was a second
B-tree's leaf page (and now and then its split) per commit: about three
WAL frames per commit against 1.3 now (C{bench/README.rst}, "Issue 9,
eleventh session: WAL frames per commit"). Opening the file reads the
records, then applies the log's changes after C{meta}'s serial.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from importlib import resources
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, Callable, Optional, TypeVar

from zope.interface import implementer

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.store._serial import SerialStore
from gridreg.store.executor import Executor, ImmediateExecutor
from gridreg.store.interfaces import IRegistryStore, StoreError
from gridreg.store.records import (
    ENCODED_KINDS,
    KINDS,
    Change,
    EncodedValues,
    StoreState,
    change_from_json,
    change_to_json,
    encode_records,
    encode_value,
)

T = TypeVar("T")

#: The schema version this code reads and writes (1 is upgraded on open: see
#: C{schema/registry-v2.sql}).
SCHEMA_VERSION = 2

#: The database file's name inside the data directory.
DB_FILENAME = "registry.sqlite"

#: between keys and texts in one read (L{SQLiteStore._texts}): never in a valid JSON text
_SEPARATOR = "\x1f"

#: records read per joined string (L{SQLiteStore._texts}): the string, and its
#: split, are a transient of this many records (about 2 MB of objects), not of
#: the whole kind (a million objects' were 145 MB above the state at start-up);
#: 65,536 or more left 8-65 MB of freed heap in the process for good
#: (C{bench/README.rst}, "Issue 9, twelfth session: a snapshot served while
#: the master takes writes")
TEXTS_CHUNK = 16384

#: true of a record's C{value} that is not a JSON object (nor JSON), as decoding would find;
#: a valid text that begins with a brace is an object, so for those (every record the
#: store writes) validity alone decides, and SQLite parses the text once, not twice
_NOT_AN_OBJECT = (
    "(CASE WHEN value GLOB '{*' THEN NOT json_valid(value)"
    " ELSE json_type(CASE WHEN json_valid(value) THEN value END) IS NOT 'object' END)"
)

#: one chunk of L{SQLiteStore._texts} (its key bounds follow): its count,
#: joined C{key, text, key, text...} and how many texts are not JSON objects
_TEXTS_SQL = (
    "SELECT count(*), group_concat(key || char(31) || value, char(31)),"
    f" total({_NOT_AN_OBJECT}) FROM records WHERE kind = ?"
)

#: the changes log is pruned to its retention, and the records its changes
#: touched are written to the records table, once every this many serials: a
#: delete in every commit was one more statement and one more page to write,
#: and so was each record
PRUNE_EVERY = 64

#: the records are written to their table at once, whatever the serial, once
#: this many are pending: what an open reads back from the log (and the memory
#: the pending records take) stays small after a large batch
PENDING_MAX = 256

#: the last durable serial (C{meta}'s, or the changes log's last if that is
#: later: a commit adds its change and leaves C{meta} alone), and the serial
#: the records table is at (C{meta}'s)
_SERIAL_SQL = (
    "SELECT database_id, max(serial, coalesce((SELECT max(serial) FROM changes), 0)), serial"
    " FROM meta"
)

#: C{(kind, key)}: the record's text, or None for a delete
Pending = dict[tuple[str, str], Optional[str]]

#: the log is copied into the file once it holds this many pages (SQLite's
#: default is 1,000): at about 1.2 pages per commit that is every ~330 commits,
#: as the default was at three. A new log (one per open) grows until then, and
#: while it grows each commit's fdatasync also writes the file's new size: 1.6-2
#: times the CPU of a commit that overwrites the log in place
#: (C{bench/README.rst}, "Issue 9, eleventh session: WAL frames per commit")
WAL_AUTOCHECKPOINT = 400


def load_schema(version: int) -> str:
    """Return the SQL that creates schema C{version}, shipped as package data."""
    schema = resources.files("gridreg.store") / "schema" / f"registry-v{version}.sql"
    return schema.read_text(encoding="utf-8")


@implementer(IRegistryStore)
class SQLiteStore(SerialStore):
    """
    An L{IRegistryStore} in C{<path>/registry.sqlite}.

    @ivar filename: the database file, named in every error.
    """

    log = Logger()

    def __init__(
        self, path: str, log_retention: int = 10000, executor: Optional[Executor] = None
    ) -> None:
        """
        @param path: the data directory; created on open if missing.
        @param log_retention: how many recent changes L{changes_since} can
            serve; older ones are pruned, every L{PRUNE_EVERY} serials.
        @param executor: where the file is used; by default on the calling
            thread (the registry passes a L{ThreadExecutor}).
        """
        if log_retention < 0:
            raise ValueError(f"log_retention must be >= 0, not {log_retention}")
        self.path = path
        self.filename = os.path.join(path, DB_FILENAME)
        self.log_retention = log_retention
        self.database_id: str | None = None
        self.serial = 0
        self._executor: Executor = executor or ImmediateExecutor()
        #: open, as the reactor thread sees it (the connection is the executor's)
        self._is_open = False
        self._opening = False
        #: the last durable serial, as the executor's thread sees it
        self._durable = 0
        self._db: sqlite3.Connection | None = None
        #: the records the log holds past C{meta}'s serial, not yet written to
        #: the records table (executor's thread); None: to be read from the log
        self._pending: Optional[Pending] = None
        #: the first serial whose change may be among L{_pending} (None: none
        #: is pending); a snapshot begun after it needs its records in the table
        self._pending_from: Optional[int] = None
        #: the thread L{read_ahead} started, and what it found
        self._ahead: Optional[_ReadAhead] = None
        #: finds the object keys the state must look at (see
        #: L{EncodedValues.odd_keys}), run where the records are read
        self.find_odd_keys: Optional[Callable[[Iterable[str]], list[str]]] = None

    # -- opening --------------------------------------------------------

    def read_ahead(self) -> None:
        """
        Begin L{open}'s work now, on a thread of its own, so the file is
        read while the caller does other work before it has a reactor (the
        registry: importing its service); the next L{open} takes it over.
        Nothing else may use the store in between.
        """
        if self._ahead is None and not (self._is_open or self._opening):
            self._ahead = _ReadAhead(self)

    def open(self) -> Deferred[StoreState]:
        """
        Lock the file and check its schema now, on the calling thread (so a
        foreign, corrupt or locked file stops start-up at once), then load
        its records on the executor. After L{read_ahead}, its lock and check
        have been done (a failure is returned at once), and the records are
        taken from its thread on the executor.
        """
        if self._is_open or self._opening:
            return fail(StoreError(f"{self.filename}: already open"))
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            try:
                db = self._connect()
            except BaseException:
                return fail(Failure())
            loading = self._executor.submit(self._load_opened, db)
        else:
            if ahead.connect_failure is not None:
                return fail(ahead.connect_failure)
            loading = self._executor.submit(ahead.result)
        self._opening = True

        def opened(state: StoreState) -> StoreState:
            self._opening = False
            self._is_open = True
            self.database_id = state.database_id
            self._opened(state.serial)
            return state

        def failed(failure: Failure) -> Failure:
            self._opening = False
            return failure

        return loading.addCallbacks(opened, failed)

    def _connect(self) -> sqlite3.Connection:
        try:
            os.makedirs(self.path, exist_ok=True)
            # used by one thread at a time: here, then the executor's
            db = sqlite3.connect(
                self.filename, isolation_level=None, timeout=0, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"{self.filename}: cannot open: {e}") from e
        try:
            self._prepare(db)
        except BaseException:
            db.close()
            raise
        return db

    def _load_opened(self, db: sqlite3.Connection) -> StoreState:
        try:
            try:
                state = self._load(db, encoded=True)
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self.filename}: not a gridreg database: {e}") from e
        except BaseException:
            self._pending = None
            db.close()
            raise
        self._db = db
        self._durable = state.serial
        self.log.info(
            "Opened registry database {filename} (database {database_id}, serial {serial})",
            filename=self.filename,
            database_id=state.database_id,
            serial=state.serial,
        )
        return state

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Lock, and check or create the schema."""
        try:
            # Before the first read: the lock is then held until close,
            # and WAL needs no shared-memory file.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.OperationalError as e:
            raise StoreError(
                f"{self.filename}: cannot open: {e} (is another registry using {self.path}?)"
            ) from e
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.filename}: not a gridreg database: {e}") from e
        try:
            version = self._check_version(db, tables) if tables else None
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            if version is None:
                self._create(db)
            elif version != SCHEMA_VERSION:
                self._upgrade(db, version)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.filename}: not a gridreg database: {e}") from e

    def _check_version(self, db: sqlite3.Connection, tables: set[str]) -> int:
        """The file's schema version, if this code reads it."""
        if "version" not in tables:
            raise StoreError(f"{self.filename}: not a gridreg database: no version table")
        rows = db.execute("SELECT version FROM version").fetchall()
        if len(rows) != 1 or not isinstance(rows[0][0], int):
            raise StoreError(f"{self.filename}: not a gridreg database: bad version table")
        version = rows[0][0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.filename}: schema version {version} is newer than this gridreg"
                f" supports ({SCHEMA_VERSION}); run a newer gridreg"
            )
        if version not in (1, SCHEMA_VERSION):
            raise StoreError(f"{self.filename}: unknown schema version {version}")
        return version  # type: ignore[no-any-return]

    def _upgrade(self, db: sqlite3.Connection, version: int) -> None:
        """
        Schema 1 to 2: the same tables; version 1's records are current, so
        C{meta}'s serial becomes the last stored (an open then reads none of
        the log back) and the number changes (version 1 code would read a
        version 2 file's records without the log's changes after C{meta}'s
        serial, so it must refuse it). One transaction, before anything is
        read.
        """
        if db.execute("SELECT count(*) FROM meta").fetchone()[0] != 1:
            raise StoreError(f"{self.filename}: not a gridreg database: bad meta table")

        def upgrade() -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE meta SET serial ="
                " max(serial, coalesce((SELECT max(serial) FROM changes), 0))"
            )
            db.execute("UPDATE version SET version = ?", (SCHEMA_VERSION,))

        _all_or_nothing(db, upgrade)
        self.log.info(
            "Upgraded registry database {filename} from schema version {old} to {new}",
            filename=self.filename,
            old=version,
            new=SCHEMA_VERSION,
        )

    def _create(self, db: sqlite3.Connection) -> None:
        """Create schema and lineage in one transaction: all or nothing."""
        database_id = str(uuid.uuid4())

        def create() -> None:
            # executescript() leaves the transaction it began open.
            db.executescript("BEGIN IMMEDIATE;\n" + load_schema(SCHEMA_VERSION))
            db.execute("INSERT INTO meta (database_id, serial) VALUES (?, 0)", (database_id,))

        _all_or_nothing(db, create)
        self.log.info(
            "Created registry database {filename} (database {database_id})",
            filename=self.filename,
            database_id=database_id,
        )

    def _load(self, db: sqlite3.Connection, encoded: bool = False) -> StoreState:
        """
        The whole state; with C{encoded}, the kinds of L{ENCODED_KINDS} as
        their JSON texts (L{EncodedValues}), only checked here, by SQLite,
        to be JSON objects: Python decoding them was most of the load.
        """
        meta = db.execute(_SERIAL_SQL).fetchall()
        if len(meta) != 1:
            raise StoreError(f"{self.filename}: not a gridreg database: bad meta table")
        database_id, serial, folded = meta[0]
        if self._pending is None:
            self._pending = self._pending_in_log(db, folded)
        pending = self._pending
        records: dict[str, Any] = {}
        for kind in KINDS:
            if encoded and kind in ENCODED_KINDS:
                texts = self._texts(db, kind)  # checked as they are read: one pass
                _apply_pending(texts, kind, pending, str)
                odd = None
                if kind == "object" and self.find_odd_keys is not None:
                    odd = self.find_odd_keys(texts)
                records[kind] = EncodedValues(texts, odd)
                continue
            rows = db.execute("SELECT key, value FROM records WHERE kind = ?", (kind,))
            try:
                values = {key: json.loads(value) for key, value in rows}
            except ValueError as e:
                raise StoreError(f"{self.filename}: corrupt {kind} record: {e}") from e
            _apply_pending(values, kind, pending, json.loads)
            records[kind] = values
        return StoreState(database_id, serial, records)

    def _pending_in_log(self, db: sqlite3.Connection, folded: int) -> Pending:
        """The records of the log's changes after serial C{folded}, the last of each key."""
        self._pending_from = folded + 1
        pending: Pending = {}
        for (body,) in db.execute(
            "SELECT body FROM changes WHERE serial > ? ORDER BY serial", (folded,)
        ):
            try:
                change = change_from_json(body)
                for m in change.mutations:
                    pending[m.kind, m.key] = None if m.value is None else encode_value(m)
            except ValueError as e:
                raise StoreError(f"{self.filename}: corrupt change in the log: {e}") from e
        return pending

    def _texts(self, db: sqlite3.Connection, kind: str) -> dict[str, str]:
        """
        C{{key: stored text}} of C{kind}, read as one string that SQLite
        builds with the GIL released (key, text, key, text...), split in C:
        read a row at a time, Python held the GIL for most of the read,
        which then overlapped the registry's imports little. One string per
        L{TEXTS_CHUNK} records: one for the whole kind was a transient of
        its size (a million objects' 110 MB string and its split raised the
        master's peak RSS from 307 to 452 MiB, the heap it freed kept by
        glibc with larger chunks). Row by row if a key or text holds the
        separator.

        The same pass counts the texts that are not JSON objects
        (L{_check_encoded} then names the first): a pass of its own read
        every record again, 5-10 ms of the read's 100 at 100,000 objects,
        which is what a restarted master waits for before its first answer
        (C{bench/README.rst}, "Issue 9, tenth session: start-up at scale and
        CPU per locate").
        """
        texts: dict[str, str] = {}
        after: Optional[str] = None
        while True:
            lower = "" if after is None else " AND key > ?"
            bounds: tuple[str, ...] = (kind,) if after is None else (kind, after)
            # the chunk's last key: a walk of the key index, the values untouched
            row = db.execute(
                f"SELECT key FROM records WHERE kind = ?{lower} ORDER BY key LIMIT 1 OFFSET ?",
                (*bounds, TEXTS_CHUNK - 1),
            ).fetchone()
            last = None if row is None else row[0]
            upper = "" if last is None else " AND key <= ?"
            count, joined, bad = db.execute(
                _TEXTS_SQL + lower + upper, bounds if last is None else (*bounds, last)
            ).fetchone()
            if bad:
                self._check_encoded(db, frozenset({kind}))
            if count:
                parts = joined.split(_SEPARATOR)
                del joined
                if len(parts) != 2 * count:  # a separator in a key or a text
                    rows = db.execute("SELECT key, value FROM records WHERE kind = ?", (kind,))
                    return dict(rows)
                pairs = iter(parts)
                texts.update(zip(pairs, pairs))
            if last is None:
                return texts
            after = last

    def _check_encoded(self, db: sqlite3.Connection, kinds: frozenset[str] = ENCODED_KINDS) -> None:
        """Refuse a record of C{kinds} that is not a JSON object, as decoding would."""
        names = sorted(kinds)
        marks = ", ".join("?" * len(names))
        bad = db.execute(
            f"SELECT kind, key, value FROM records WHERE kind IN ({marks})"
            f" AND {_NOT_AN_OBJECT} LIMIT 1",
            names,
        ).fetchone()
        if bad is not None:
            kind, key, value = bad
            try:
                json.loads(value)
                reason = "not a JSON object"
            except ValueError as e:
                reason = str(e)
            raise StoreError(f"{self.filename}: corrupt {kind} record {key!r}: {reason}")

    # -- using ----------------------------------------------------------

    def _check_open(self) -> None:
        if not self._is_open:
            raise StoreError(f"{self.filename}: not open")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.filename}: not open")
        return self._db

    def _run(self, job: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run C{job} on the executor once the store is open."""
        if not self._is_open:
            return fail(StoreError(f"{self.filename}: not open"))
        return self._executor.submit(job, *args)

    @contextmanager
    def _errors(self) -> Iterator[sqlite3.Connection]:
        """Yield the open connection, turning SQLite errors into L{StoreError}."""
        db = self._connection()
        try:
            yield db
        except sqlite3.Error as e:
            raise StoreError(f"{self.filename}: {e}") from e

    def _in_transaction(self, write: Callable[..., None], *args: Any) -> None:
        """
        Run C{write(db, *args)} in one write transaction, committed durably,
        rolled back on any error; SQLite's errors become L{StoreError}. A
        plain call, not a context manager: a commit's two context managers
        were a tenth of the store thread's Python calls per write.
        """
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                write(db, *args)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise
        except sqlite3.Error as e:
            raise StoreError(f"{self.filename}: {e}") from e

    def _durable_serial(self) -> int:
        return self._durable

    def _persist_all(self, changes: list[Change]) -> None:
        if self._pending is None:  # a failed write's: what the file holds
            self._pending = self._read_pending()
        try:
            self._in_transaction(self._write_changes, changes)
        except BaseException:
            self._pending = None  # changed in the transaction rolled back
            raise
        self._durable = changes[-1].serial

    def _read_pending(self) -> Pending:
        with self._errors() as db:
            (folded,) = db.execute("SELECT serial FROM meta").fetchone()
            return self._pending_in_log(db, folded)

    def _write_changes(self, db: sqlite3.Connection, changes: list[Change]) -> None:
        """A batch's log entries and (when pruning) records and serial, in the open transaction."""
        last = changes[-1].serial
        pending = self._pending
        assert pending is not None
        if not pending:
            self._pending_from = changes[0].serial
        bodies = []
        # in change order: a key written then deleted in one batch ends deleted
        for change in changes:
            texts: list[Optional[str]] = []
            for m in change.mutations:
                text = None if m.value is None else encode_value(m)
                texts.append(text)
                pending[m.kind, m.key] = text
            # a pushed change's own text (Change.text) as it is; else put
            # together around the values' texts: each value is encoded once
            body = change.text
            bodies.append((change.serial, change_to_json(change, texts) if body is None else body))
        db.executemany("INSERT INTO changes (serial, body) VALUES (?, ?)", bodies)
        # the log's last change is the serial (see _SERIAL_SQL): meta is
        # written only when the records are, before the log could lose them
        if last // PRUNE_EVERY != (changes[0].serial - 1) // PRUNE_EVERY:
            self._fold(db, last)
            db.execute("DELETE FROM changes WHERE serial <= ?", (last - self.log_retention,))
        elif len(pending) > PENDING_MAX:
            self._fold(db, last)

    def _fold(self, db: sqlite3.Connection, serial: int) -> None:
        """
        Write the pending records to the records table and C{meta}'s serial
        (the log's changes up to C{serial} are then in the records), in the
        open transaction; each key once, however often it changed since.
        """
        pending = self._pending
        assert pending is not None
        deletes = [kind_key for kind_key, text in pending.items() if text is None]
        if deletes:
            db.executemany("DELETE FROM records WHERE kind = ? AND key = ?", deletes)
        if len(deletes) < len(pending):
            db.executemany(
                "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
                [(kind, key, text) for (kind, key), text in pending.items() if text is not None],
            )
        db.execute("UPDATE meta SET serial = ?", (serial,))
        pending.clear()
        self._pending_from = None

    def _fold_now(self) -> None:
        """Write the pending records in a transaction of their own (before a page is read)."""
        try:
            self._in_transaction(self._fold, self._durable)
        except BaseException:
            self._pending = None
            raise

    def changes_since(self, serial: int) -> Deferred[list[Change] | None]:
        return self._run(self._changes_since, serial)

    def _changes_since(self, serial: int) -> list[Change] | None:
        with self._errors() as db:
            if serial < 0 or serial > self._durable:
                return None
            if serial == self._durable:
                return []
            (oldest,) = db.execute("SELECT min(serial) FROM changes").fetchone()
            # the log may hold up to PRUNE_EVERY more than it keeps: they are not served
            if oldest is None or max(oldest, self._durable - self.log_retention + 1) > serial + 1:
                return None
            rows = db.execute(
                "SELECT body FROM changes WHERE serial > ? ORDER BY serial", (serial,)
            ).fetchall()
        return [change_from_json(body) for (body,) in rows]

    def replace_all(self, state: StoreState) -> Deferred[None]:
        def replaced(_: None) -> None:
            self.database_id = state.database_id
            self._opened(state.serial)

        return self._run(self._replace_all, state).addCallback(replaced)

    def _replace_all(self, state: StoreState) -> None:
        rows = encode_records(state.records)

        def replace(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM records")
            db.execute("DELETE FROM changes")
            db.execute(
                "UPDATE meta SET database_id = ?, serial = ?", (state.database_id, state.serial)
            )
            db.executemany("INSERT INTO records (kind, key, value) VALUES (?, ?, ?)", rows)

        self._in_transaction(replace)
        self._durable = state.serial
        self._pending = {}
        self._pending_from = None

    def snapshot(self) -> Deferred[StoreState]:
        return self._run(self._snapshot)

    def _snapshot(self) -> StoreState:
        with self._errors() as db:
            return self._load(db)

    def snapshot_page(
        self, kind: str, after: Optional[str], limit: int, since: Optional[int] = None
    ) -> Deferred[list[tuple[str, str]]]:
        # on the executor: a page is never read in the middle of a commit
        return self._executor.submit(self._snapshot_page, kind, after, limit, since)

    def run_with_file(self, job: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run C{job} where the file is used (the executor), after the work queued before."""
        return self._executor.submit(job, *args)

    def _snapshot_page(
        self, kind: str, after: Optional[str], limit: int, since: Optional[int] = None
    ) -> list[tuple[str, str]]:
        # one kind at a time: a column fewer to make a string of, a fifth of the read
        if self._pending is None:
            self._pending = self._read_pending()
        # the records table first, if the log holds records of the kind it lacks
        # from serial `since` or before; later ones the snapshot's catch-up brings,
        # so writes while a snapshot is paged cost no transaction (and fsync) per page
        pending_from = self._pending_from
        if (since is None or pending_from is None or pending_from <= since) and any(
            pending_kind == kind for pending_kind, _ in self._pending
        ):
            self._fold_now()
        with self._errors() as db:
            if after is None:
                cursor = db.execute(
                    "SELECT key, value FROM records WHERE kind = ? ORDER BY key LIMIT ?",
                    (kind, limit),
                )
            else:
                cursor = db.execute(
                    "SELECT key, value FROM records WHERE kind = ? AND key > ? "
                    "ORDER BY key LIMIT ?",
                    (kind, after, limit),
                )
            return cursor.fetchall()

    def _checkpoint(self) -> None:
        """Copy the write-ahead log into the database file (a bulk load's commit leaves it)."""
        with self._errors() as db:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def bulk_load(self) -> "SQLiteBulkLoad":
        self._check_open()
        return SQLiteBulkLoad(self)

    def close(self) -> Deferred[None]:
        """Close the file once the work queued before has run, then stop the executor."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:  # read ahead, never opened: let its file go
            ahead.abandon()
        if not self._is_open:
            return succeed(None)
        self._is_open = False
        d = self._executor.submit(self._close)
        return d.addBoth(lambda result: self._executor.stop().addCallback(lambda _: result))

    def _close(self) -> None:
        self._pending = None
        if self._db is not None:
            self._db.close()
            self._db = None


def _all_or_nothing(db: sqlite3.Connection, begin_and_write: Callable[[], None]) -> None:
    """
    Run C{begin_and_write} (which opens the transaction and writes) and
    commit, or roll back whatever it began: a file's creation and its
    upgrade, before the store's own L{SQLiteStore._in_transaction} has a
    connection to run on.
    """
    try:
        begin_and_write()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise


def _apply_pending(
    values: dict[str, Any], kind: str, pending: Pending, decode: Callable[[str], Any]
) -> None:
    """C{pending}'s records of C{kind} put into (or deleted from) C{values}, each C{decode}d."""
    for (pending_kind, key), text in pending.items():
        if pending_kind != kind:
            continue
        if text is None:
            values.pop(key, None)
        else:
            values[key] = decode(text)


class SQLiteBulkLoad:
    """
    A whole database replaced in one transaction, from one worker thread:
    L{begin}, L{add} as many times as needed, then L{commit} or L{abort}
    (also there); then L{installed} on the store's thread. Nothing is
    visible to a reader of the file, nor kept after a crash, before the
    commit.
    """

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self._database_id = ""
        self._serial = 0

    def begin(self) -> None:
        with self.store._errors() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM records")
            db.execute("DELETE FROM changes")

    def add_puts(self, kind: str, keys: Sequence[str], values: Sequence[str]) -> None:
        """Records of one C{kind}, as columns (a block of a snapshot), without a row each."""
        with self.store._errors() as db:
            db.executemany(
                "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
                zip(repeat(kind), keys, values),
            )

    def add(self, rows: list[tuple[str, str, str | None]]) -> None:
        """Puts and deletes (a value of None), applied in order."""
        with self.store._errors() as db:
            start = 0
            while start < len(rows):
                deleting = rows[start][2] is None
                end = start
                while end < len(rows) and (rows[end][2] is None) == deleting:
                    end += 1
                if deleting:
                    db.executemany(
                        "DELETE FROM records WHERE kind = ? AND key = ?",
                        [(kind, key) for kind, key, _ in rows[start:end]],
                    )
                else:
                    db.executemany(
                        "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
                        rows[start:end],
                    )
                start = end

    def commit(self, database_id: str, serial: int) -> None:
        """
        Make it durable (the store's own attributes change in L{installed}),
        once every record it holds is checked to be a JSON object: the
        records of L{ENCODED_KINDS} were not decoded on their way in.
        """
        with self.store._errors() as db:
            self.store._check_encoded(db)
            db.execute("UPDATE meta SET database_id = ?, serial = ?", (database_id, serial))
            # durable once in the log; copying it into the file (a fifth of a
            # large load) is left to a job of its own after it (installed)
            db.execute("PRAGMA wal_autocheckpoint=0")
            try:
                db.execute("COMMIT")
            finally:
                db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        self.store._durable = serial  # on the executor's thread, as its commits set it
        self.store._pending = {}
        self.store._pending_from = None
        self._database_id, self._serial = database_id, serial

    def abort(self) -> None:
        db = self.store._db
        if db is not None and db.in_transaction:
            db.rollback()

    def installed(self) -> None:
        self.store.database_id = self._database_id
        self.store._opened(self._serial)  # the next commit follows the snapshot's serial
        self.store._executor.submit(self.store._checkpoint).addErrback(
            lambda f: self.store.log.failure("Could not checkpoint the loaded snapshot", f)
        )


class _ReadAhead:
    """
    L{SQLiteStore.open}'s work begun early on its own thread: the lock and
    schema check, then the read. L{connect_failure} is ready once the
    constructor returns; L{result} waits for the read.
    """

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._connected = threading.Event()
        self.connect_failure: Optional[Failure] = None
        self._state: Optional[StoreState] = None
        self._failure: Optional[BaseException] = None
        # a daemon, as the store's executor: an abandoned start-up must not hang the exit
        self._thread = threading.Thread(target=self._run, name="gridreg-store-read", daemon=True)
        self._thread.start()
        self._connected.wait()  # milliseconds: the lock and schema check

    def _run(self) -> None:
        try:
            db = self._store._connect()
        except BaseException:
            self.connect_failure = Failure()
            self.connect_failure.cleanFailure()
            return
        finally:
            self._connected.set()
        try:
            self._state = self._store._load_opened(db)
        except BaseException as e:
            self._failure = e

    def abandon(self) -> None:
        """Wait for the thread, then close the file it opened, if it did."""
        self._thread.join()
        self._store._close()

    def result(self) -> StoreState:
        """The records read (on the store's executor: it waits for the thread)."""
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        assert self._state is not None
        return self._state
