# -*- test-case-name: tests.test_store -*-
"""
A registry store that lives only as long as its object: for tests, and for a
registry run without C{IceGrid.Registry.Data}.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Sequence
from itertools import islice, repeat
from typing import Any, Callable, TypeVar

from zope.interface import implementer

from twisted.internet.defer import Deferred, maybeDeferred, succeed

from gridreg.store._serial import SerialStore
from gridreg.store.executor import ImmediateExecutor
from gridreg.store.interfaces import IRegistryStore, StoreError
from gridreg.store.records import (
    Change,
    Records,
    StoreState,
    empty_records,
    encode_records,
)

T = TypeVar("T")


@implementer(IRegistryStore)
class MemoryStore(SerialStore):
    """
    An L{IRegistryStore} in memory.  Closing and reopening the same object
    finds the same state, as reopening a file would.
    """

    def __init__(self, log_retention: int = 10000) -> None:
        """
        @param log_retention: how many recent changes L{changes_since} can
            serve.
        """
        if log_retention < 0:
            raise ValueError(f"log_retention must be >= 0, not {log_retention}")
        self.log_retention = log_retention
        self.database_id: str | None = None
        self.serial = 0
        self._durable = 0
        self._executor = ImmediateExecutor()
        self._records: Records = empty_records()
        self._log: deque[Change] = deque(maxlen=log_retention)
        self._is_open = False

    def _check_open(self) -> None:
        if not self._is_open:
            raise StoreError("memory store is not open")

    def read_ahead(self) -> None:
        """Nothing to read: memory opens at once."""

    def open(self) -> Deferred[StoreState]:
        return maybeDeferred(self._open)

    def _open(self) -> StoreState:
        if self._is_open:
            raise StoreError("memory store is already open")
        if self.database_id is None:
            self.database_id = str(uuid.uuid4())
        self._is_open = True
        self._opened(self.serial)
        return self._snapshot()

    def _durable_serial(self) -> int:
        return self._durable

    def _persist_all(self, changes: list[Change]) -> None:
        for change in changes:
            for m in change.mutations:
                if m.value is None:
                    self._records[m.kind].pop(m.key, None)
                else:
                    self._records[m.kind][m.key] = m.value
            self._log.append(change)
        self._durable = changes[-1].serial

    def changes_since(self, serial: int) -> Deferred[list[Change] | None]:
        return maybeDeferred(self._changes_since, serial)

    def _changes_since(self, serial: int) -> list[Change] | None:
        self._check_open()
        if serial < 0 or serial > self.serial:
            return None
        if serial == self.serial:
            return []
        if not self._log or self._log[0].serial > serial + 1:
            return None
        return list(islice(self._log, serial + 1 - self._log[0].serial, None))

    def replace_all(self, state: StoreState) -> Deferred[None]:
        return maybeDeferred(self._replace_all, state)

    def _replace_all(self, state: StoreState) -> None:
        self._check_open()
        records = empty_records()
        for kind, key, value in encode_records(state.records):
            records[kind][key] = json.loads(value)
        self._records = records
        self.database_id = state.database_id
        self._durable = state.serial
        self._opened(state.serial)
        self._log.clear()

    def snapshot(self) -> Deferred[StoreState]:
        return maybeDeferred(self._snapshot)

    def _snapshot(self) -> StoreState:
        self._check_open()
        assert self.database_id is not None
        records: Records = json.loads(json.dumps(self._records))
        return StoreState(self.database_id, self.serial, records)

    def snapshot_page(
        self, kind: str, after: str | None, limit: int, since: int | None = None
    ) -> Deferred[list[tuple[str, str]]]:
        return maybeDeferred(self._snapshot_page, kind, after, limit)

    def run_with_file(self, job: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run C{job} at once (there is no file, nor a thread of its own)."""
        return self._executor.submit(job, *args)

    def _snapshot_page(self, kind: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        self._check_open()
        values = self._records[kind]
        keys = sorted(key for key in values if after is None or key > after)[:limit]
        return [(key, json.dumps(values[key])) for key in keys]

    def bulk_load(self) -> "MemoryBulkLoad":
        self._check_open()
        return MemoryBulkLoad(self)

    def close(self) -> Deferred[None]:
        self._is_open = False
        return succeed(None)


class MemoryBulkLoad:
    """L{gridreg.store.sqlite.SQLiteBulkLoad}'s contract, in memory."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._records: Records = empty_records()
        self._meta: tuple[str, int] | None = None

    def begin(self) -> None:
        self._records = empty_records()

    def add_puts(self, kind: str, keys: Sequence[str], values: Sequence[str]) -> None:
        self.add(list(zip(repeat(kind), keys, values)))

    def add(self, rows: list[tuple[str, str, str | None]]) -> None:
        for kind, key, value in rows:
            if value is None:
                self._records[kind].pop(key, None)
            else:
                try:
                    decoded = json.loads(value)
                except ValueError as e:
                    raise StoreError(f"corrupt {kind} record {key!r}: {e}") from None
                if not isinstance(decoded, dict):
                    raise StoreError(f"corrupt {kind} record {key!r}: not a JSON object")
                self._records[kind][key] = decoded

    def commit(self, database_id: str, serial: int) -> None:
        self._meta = (database_id, serial)

    def abort(self) -> None:
        self._meta = None

    def installed(self) -> None:
        assert self._meta is not None
        self.store._records = self._records
        database_id, serial = self._meta
        self.store.database_id = database_id
        self.store._opened(serial)  # the next commit follows the snapshot's serial
        self.store._durable = serial
        self.store._log.clear()
