# -*- test-case-name: tests.test_store -*-
"""
The registry store on disk: one SQLite file in C{IceGrid.Registry.Data}.

Transactions are tiny (one batch of mutations each), so they run on the
calling thread.  The file is in WAL mode with C{synchronous=FULL}, so a
commit is on disk before its Deferred fires, and it is held with an
exclusive lock while open, so two registries can never share one data
directory.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from contextlib import contextmanager
from importlib import resources
from collections.abc import Iterator

from zope.interface import implementer

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger

from gridreg.store._serial import SerialStore
from gridreg.store.interfaces import IRegistryStore, StoreError
from gridreg.store.records import (
    KINDS,
    Change,
    Records,
    StoreState,
    change_from_json,
    change_to_json,
    encode_records,
    encode_value,
)

#: The schema version this code reads and writes.
SCHEMA_VERSION = 1

#: The database file's name inside the data directory.
DB_FILENAME = "registry.sqlite"


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

    def __init__(self, path: str, log_retention: int = 10000) -> None:
        """
        @param path: the data directory; created on open if missing.
        @param log_retention: how many recent changes L{changes_since} can
            serve; older ones are pruned on each write.
        """
        if log_retention < 0:
            raise ValueError(f"log_retention must be >= 0, not {log_retention}")
        self.path = path
        self.filename = os.path.join(path, DB_FILENAME)
        self.log_retention = log_retention
        self.database_id: str | None = None
        self.serial = 0
        self._db: sqlite3.Connection | None = None

    # -- opening --------------------------------------------------------

    def open(self) -> Deferred[StoreState]:
        return maybeDeferred(self._open)

    def _open(self) -> StoreState:
        if self._db is not None:
            raise StoreError(f"{self.filename}: already open")
        try:
            os.makedirs(self.path, exist_ok=True)
            # not only this thread: a snapshot is bulk-loaded from a worker thread
            db = sqlite3.connect(
                self.filename, isolation_level=None, timeout=0, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"{self.filename}: cannot open: {e}") from e
        try:
            state = self._prepare(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        self.database_id = state.database_id
        self.serial = state.serial
        self.log.info(
            "Opened registry database {filename} (database {database_id}, serial {serial})",
            filename=self.filename,
            database_id=state.database_id,
            serial=state.serial,
        )
        return state

    def _prepare(self, db: sqlite3.Connection) -> StoreState:
        """Lock, check or create the schema, and load everything."""
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
            if tables:
                self._check_version(db, tables)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if not tables:
                self._create(db)
            return self._load(db)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.filename}: not a gridreg database: {e}") from e

    def _check_version(self, db: sqlite3.Connection, tables: set[str]) -> None:
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
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.filename}: unknown schema version {version}")

    def _create(self, db: sqlite3.Connection) -> None:
        """Create schema and lineage in one transaction: all or nothing."""
        database_id = str(uuid.uuid4())
        try:
            # executescript() leaves the transaction it began open.
            db.executescript("BEGIN IMMEDIATE;\n" + load_schema(SCHEMA_VERSION))
            db.execute("INSERT INTO meta (database_id, serial) VALUES (?, 0)", (database_id,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.rollback()
            raise
        self.log.info(
            "Created registry database {filename} (database {database_id})",
            filename=self.filename,
            database_id=database_id,
        )

    def _load(self, db: sqlite3.Connection) -> StoreState:
        meta = db.execute("SELECT database_id, serial FROM meta").fetchall()
        if len(meta) != 1:
            raise StoreError(f"{self.filename}: not a gridreg database: bad meta table")
        records: Records = {}
        for kind in KINDS:
            rows = db.execute("SELECT key, value FROM records WHERE kind = ?", (kind,))
            try:
                records[kind] = {key: json.loads(value) for key, value in rows}
            except ValueError as e:
                raise StoreError(f"{self.filename}: corrupt {kind} record: {e}") from e
        database_id, serial = meta[0]
        return StoreState(database_id, serial, records)

    # -- using ----------------------------------------------------------

    def _check_open(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.filename}: not open")
        return self._db

    @contextmanager
    def _errors(self) -> Iterator[sqlite3.Connection]:
        """Yield the open connection, turning SQLite errors into L{StoreError}."""
        db = self._check_open()
        try:
            yield db
        except sqlite3.Error as e:
            raise StoreError(f"{self.filename}: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the body in one write transaction, committed durably on exit."""
        with self._errors() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise

    def _persist(self, change: Change) -> None:
        with self._transaction() as db:
            for m in change.mutations:
                if m.value is None:
                    db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (m.kind, m.key))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
                        (m.kind, m.key, encode_value(m)),
                    )
            db.execute(
                "INSERT INTO changes (serial, body) VALUES (?, ?)",
                (change.serial, change_to_json(change)),
            )
            db.execute(
                "DELETE FROM changes WHERE serial <= ?", (change.serial - self.log_retention,)
            )
            db.execute("UPDATE meta SET serial = ?", (change.serial,))
        self.serial = change.serial

    def changes_since(self, serial: int) -> Deferred[list[Change] | None]:
        return maybeDeferred(self._changes_since, serial)

    def _changes_since(self, serial: int) -> list[Change] | None:
        with self._errors() as db:
            if serial < 0 or serial > self.serial:
                return None
            if serial == self.serial:
                return []
            (oldest,) = db.execute("SELECT min(serial) FROM changes").fetchone()
            if oldest is None or oldest > serial + 1:
                return None
            rows = db.execute(
                "SELECT body FROM changes WHERE serial > ? ORDER BY serial", (serial,)
            ).fetchall()
        return [change_from_json(body) for (body,) in rows]

    def replace_all(self, state: StoreState) -> Deferred[None]:
        return maybeDeferred(self._replace_all, state)

    def _replace_all(self, state: StoreState) -> None:
        rows = encode_records(state.records)
        with self._transaction() as db:
            db.execute("DELETE FROM records")
            db.execute("DELETE FROM changes")
            db.execute(
                "UPDATE meta SET database_id = ?, serial = ?", (state.database_id, state.serial)
            )
            db.executemany("INSERT INTO records (kind, key, value) VALUES (?, ?, ?)", rows)
        self.database_id = state.database_id
        self.serial = state.serial

    def snapshot(self) -> Deferred[StoreState]:
        return maybeDeferred(self._snapshot)

    def _snapshot(self) -> StoreState:
        with self._errors() as db:
            return self._load(db)

    def snapshot_rows(
        self, after: tuple[str, str] | None, limit: int
    ) -> Deferred[list[tuple[str, str, str]]]:
        return maybeDeferred(self._snapshot_rows, after, limit)

    def _snapshot_rows(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[tuple[str, str, str]]:
        with self._errors() as db:
            if after is None:
                cursor = db.execute(
                    "SELECT kind, key, value FROM records ORDER BY kind, key LIMIT ?", (limit,)
                )
            else:
                cursor = db.execute(
                    "SELECT kind, key, value FROM records WHERE (kind, key) > (?, ?) "
                    "ORDER BY kind, key LIMIT ?",
                    (after[0], after[1], limit),
                )
            return cursor.fetchall()

    def bulk_load(self) -> "SQLiteBulkLoad":
        self._check_open()
        return SQLiteBulkLoad(self)

    def close(self) -> Deferred[None]:
        if self._db is not None:
            self._db.close()
            self._db = None
        return succeed(None)


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
        """Make it durable (the store's own attributes change in L{installed})."""
        with self.store._errors() as db:
            db.execute("UPDATE meta SET database_id = ?, serial = ?", (database_id, serial))
            db.execute("COMMIT")
        self._database_id, self._serial = database_id, serial

    def abort(self) -> None:
        db = self.store._db
        if db is not None and db.in_transaction:
            db.rollback()

    def installed(self) -> None:
        self.store.database_id = self._database_id
        self.store.serial = self._serial
