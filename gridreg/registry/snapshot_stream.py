# -*- test-case-name: tests.test_snapshot_stream,tests.test_replication -*-
"""
A fresh slave's snapshot as a stream: made by the master a page of records
at a time, installed by the slave a chunk at a time, the encoding and
decoding in a worker thread (L{gridreg.store.snapshot_codec}).

The master reads its store in pages between commits, without stopping
writes, so the pages are not of one instant; the snapshot therefore ends
with every change committed since its first page (from the store's log of
recent changes), applied in order after the pages. A put or delete of a
whole record is idempotent, so the result is exactly the database at the
serial the trailer names: the slave installs one consistent state.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, TypeVar

from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from gridreg.protocol.errors import SyncError
from gridreg.registry.object_table import odd_keys
from gridreg.store.records import (
    ENCODED_KINDS,
    KINDS,
    EncodedValues,
    Records,
    empty_records,
    encode_value,
)
from gridreg.store.snapshot_codec import (
    Block,
    SnapshotDecoder,
    SnapshotEncoder,
    SnapshotFormatError,
    SnapshotInfo,
)

T = TypeVar("T")
#: runs a function somewhere (a worker thread) and fires with its result
Run = Callable[..., "Deferred[Any]"]

#: records read from the master's store per page (about 100 kB of objects)
PAGE_ROWS = 1000


def in_thread(reactor: Any) -> Run:
    """Run functions in C{reactor}'s thread pool; in place for a reactor without threads."""
    if IReactorThreads.providedBy(reactor):
        return lambda f, *args: deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
    return maybeDeferred


class SnapshotProducer:
    """
    The master's side: L{produce} gives the stream's next piece (header,
    a block per page, the catch-up and the trailer), or None at its end.
    Pages are read on the store's thread, blocks are encoded in C{run};
    the next page is read while one is encoded (compressing it lets go of
    the interpreter lock), so neither thread waits for the other.
    """

    def __init__(self, store: Any, run: Run, page_rows: int = PAGE_ROWS) -> None:
        self.store = store
        self.run = run
        self.page_rows = page_rows
        self.database_id: str = store.database_id
        #: the serial the first page was read at; the catch-up starts after it
        self.base_serial: int = store.serial
        #: the serial the stream brings the slave to, once it is made
        self.serial = self.base_serial
        self._encoder = SnapshotEncoder(self.database_id, self.base_serial)
        #: the kinds still to read, the one being read first, and its last key read
        self._kinds = sorted(KINDS)
        self._after: Optional[str] = None
        #: the page being read ahead, if any
        self._ahead: Optional[Deferred[list[tuple[str, str]]]] = None
        self._step: Callable[[], Deferred[Optional[bytes]]] = self._header

    def produce(self) -> Deferred[Optional[bytes]]:
        return self._step()

    def _header(self) -> Deferred[Optional[bytes]]:
        self._step = self._page
        self._ahead = self._read()
        return succeed(self._encoder.header())  # a few bytes: not worth a thread's hop

    def _read(self) -> Deferred[list[tuple[str, str]]]:
        return self.store.snapshot_page(
            self._kinds[0], self._after, self.page_rows, self.base_serial
        )

    def _page(self) -> Deferred[Optional[bytes]]:
        def encode(page: list[tuple[str, str]]) -> Deferred[Optional[bytes]]:
            kind = self._kinds[0]
            if not page:
                del self._kinds[0]
                self._after = None
                if not self._kinds:
                    self._step = self._catch_up
                    return self._catch_up()
                return self._page()
            self._after = page[-1][0]
            self._ahead = self._read()
            return self.run(self._encoder.puts, kind, page)

        reading, self._ahead = self._ahead or self._read(), None
        return reading.addCallback(encode)

    def _catch_up(self) -> Deferred[Optional[bytes]]:
        self._step = self._ended

        def encode(changes: Optional[list[Any]]) -> Deferred[Optional[bytes]]:
            if changes is None:
                raise SyncError(
                    f"the master's log of changes no longer reaches back to serial "
                    f"{self.base_serial}, where its snapshot began"
                )
            if changes:
                self.serial = changes[-1].serial
            return self.run(self._encode_changes, changes, self.serial)

        return self.store.changes_since(self.base_serial).addCallback(encode)

    def _encode_changes(self, changes: list[Any], serial: int) -> bytes:
        rows = [
            (m.kind, m.key, None if m.value is None else encode_value(m))
            for change in changes
            for m in change.mutations
        ]
        return self._encoder.block(rows) + self._encoder.trailer(serial)

    def _ended(self) -> Deferred[Optional[bytes]]:
        return succeed(None)


class SnapshotLoad:
    """
    The slave's side: one snapshot decoded chunk by chunk, in order, in
    C{decode_in} (a worker thread); L{records} gives the records for the
    in-memory state once the stream is decoded, L{commit} makes them
    durable, L{finish} does both; L{abort} leaves the store as it was.

    A chunk is acknowledged once decoded, and its blocks go to the store's
    bulk load (in C{run}, where the store uses its file) at once, so the
    inserts run while the master streams the rest: an empty slave serves
    Ice clients only once its commit is durable and it holds the serial
    the master lists it at (L{gridreg.registry.slave_role}), so the commit,
    not the state, is on its way to ready. (Holding the blocks back until
    the stream was decoded made the state ready sooner and the commit
    later: 10-13 % slower to ready, at 10,000 and 100,000 objects.)
    """

    log = Logger()

    def __init__(self, store: Any, run: Run, decode_in: Optional[Run] = None) -> None:
        self.run = run
        self.decode_in = decode_in or run
        self._bulk = store.bulk_load()
        self._decoder = SnapshotDecoder()
        self._records: Records = empty_records()
        #: object keys the state must look at (L{odd_keys}), found as blocks arrive
        self._odd_keys: list[str] = []
        self._decoding = DeferredLock()
        self._failed: Optional[BaseException] = None
        self._info: Optional[SnapshotInfo] = None
        # a failure here is kept in _failed, and the next chunk reports it
        self._store(self._bulk.begin)

    def _guarded(self, f: Callable[..., T]) -> Callable[..., T]:
        def guarded(*a: Any) -> T:
            if self._failed is not None:
                raise SyncError(f"the snapshot was abandoned: {self._failed}")
            try:
                return f(*a)
            except BaseException as e:
                self._failed = e
                raise

        return guarded

    def _store(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """
        Queue C{f} for the store after the store's work queued before it
        (C{run} runs jobs in order); a failure is kept for the next chunk,
        or L{commit}, to report.
        """
        d = self.run(self._guarded(f), *args)
        d.addErrback(lambda _: None)
        return d

    def feed(self, data: bytes) -> Deferred[None]:
        """Decode C{data} and queue its records for the store; fires once decoded."""

        def decode() -> Deferred[None]:
            return self.decode_in(self._guarded(self._decode), data).addCallback(self._write)

        return self._decoding.run(decode).addErrback(self._abandon)

    def _decode(self, data: bytes) -> list[Block]:
        """A chunk's blocks, their records taken for the state (a worker thread)."""
        records = self._records
        blocks = self._decoder.feed_blocks(data)
        for block in blocks:
            if block.kind in ENCODED_KINDS:
                # puts kept as the texts they came as, checked by the store before it commits
                records[block.kind].update(zip(block.keys, block.values))  # type: ignore[arg-type]
                self._odd_keys.extend(odd_keys(block.keys))  # here, not on the reactor
                continue
            for kind, key, value in block.rows:
                if value is None:
                    records[kind].pop(key, None)
                elif kind in ENCODED_KINDS:
                    records[kind][key] = value  # type: ignore[assignment]
                    self._odd_keys.extend(odd_keys([key]))
                else:
                    try:
                        decoded = json.loads(value)
                    except ValueError as e:
                        raise SnapshotFormatError(
                            f"corrupt snapshot: {kind} {key!r}: {e}"
                        ) from None
                    if not isinstance(decoded, dict):
                        raise SnapshotFormatError(
                            f"corrupt snapshot: {kind} {key!r} is not an object"
                        )
                    records[kind][key] = decoded
        return blocks

    def _write(self, blocks: list[Block]) -> None:
        """Queue C{blocks} for the store's bulk load, in order."""
        for block in blocks:
            if block.kind is not None:
                self._store(self._bulk.add_puts, block.kind, block.keys, block.values)
            else:
                self._store(self._bulk.add, block.rows)

    def records(self, database_id: str, serial: int) -> Deferred[Records]:
        """
        Once every chunk fed is decoded: the snapshot's records, for the
        in-memory state, checked to be the snapshot announced (complete,
        of C{database_id} at C{serial}); the store's bulk load, which took
        each block as it came, makes them durable in L{commit}, once it has
        checked that every object record is a JSON object (a record that
        was not one is refused there, and the state taken back).
        """

        def take() -> Records:
            if self._failed is not None:
                raise SyncError(f"the snapshot was abandoned: {self._failed}")
            info = self._decoder.finish()
            if (info.database_id, info.serial) != (database_id, serial):
                raise SnapshotFormatError(
                    f"the snapshot holds database {info.database_id} at serial "
                    f"{info.serial}, announced as {database_id} at {serial}"
                )
            self._info = info
            records, self._records = self._records, empty_records()
            assert set(records) == set(KINDS)
            for kind in ENCODED_KINDS:  # the texts, for the state to take over
                texts: Any = records[kind]
                odd = None
                if kind == "object":
                    odd = [key for key in dict.fromkeys(self._odd_keys) if key in texts]
                records[kind] = EncodedValues(texts, odd)  # type: ignore[assignment]
            return records

        return self._decoding.run(maybeDeferred, take).addErrback(self._abandon)

    def commit(self) -> Deferred[None]:
        """Once every record is in the store: commit the snapshot (after L{records})."""
        info = self._info
        if info is None:
            raise SyncError("the snapshot's records were not taken")
        d = self.run(self._guarded(self._bulk.commit), info.database_id, info.serial)
        return d.addCallbacks(lambda _: self._bulk.installed(), self._abandon)

    def finish(self, database_id: str, serial: int) -> Deferred[Records]:
        """L{records}, then L{commit}; fires with the records."""

        def commit(records: Records) -> Deferred[Records]:
            return self.commit().addCallback(lambda _: records)

        return self.records(database_id, serial).addCallback(commit)

    def abort(self, why: str) -> Deferred[None]:
        """Give up (the connection is gone, or the stream was refused): nothing is installed."""
        if self._failed is None:
            self._failed = SyncError(why)
        self._records = empty_records()
        return self.run(self._bulk.abort)

    def _abandon(self, failure: Any) -> Any:
        if self._failed is None:
            self._failed = failure.value
        self._records = empty_records()
        self.run(self._bulk.abort).addErrback(
            lambda f: self.log.failure("Could not roll back a snapshot", f)
        )
        return _as_sync_error(failure)


def _as_sync_error(failure: Any) -> Any:
    if failure.check(SyncError):
        return failure
    raise SyncError(f"could not install the snapshot: {failure.getErrorMessage()}")
