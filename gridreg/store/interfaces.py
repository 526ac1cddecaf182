# -*- test-case-name: tests.test_store -*-
"""
The contract between the registry and its durable state.

The registry keeps its whole state in memory and serves locate requests
from there; a store is read once at start-up (L{IRegistryStore.open}) and
written on every change.  Every method returns a L{Deferred}: the SQLite
store does its work on a worker thread, the memory store at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

from zope.interface import Attribute, Interface

from twisted.internet.defer import Deferred

from gridreg.store.records import Change, Mutation, StoreState


class StoreError(Exception):
    """
    The store cannot do what was asked: its file is unreadable, foreign or
    of an unknown schema version, or the disk refused a write.  The message
    names the file.
    """


class SerialGapError(Exception):
    """
    A slave was handed a change that does not directly follow its serial,
    so applying it would leave a hole in its history.

    @ivar expected: the serial the store would accept next.
    @ivar got: the serial of the rejected change.
    """

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(expected, got)
        self.expected = expected
        self.got = got

    def __str__(self) -> str:
        return f"expected change serial {self.expected}, got {self.got}"


class IRegistryStore(Interface):
    """
    The registry database: records of a few kinds (see
    L{gridreg.store.records.KINDS}), one serial for the whole database, the
    id of its lineage and a bounded log of recent changes.

    The master writes with L{commit}; a slave writes with L{apply} (one
    change at a time, in serial order) or L{replace_all} (a snapshot).
    Methods other than L{open} fail with L{StoreError} unless the store is
    open.
    """

    database_id = Attribute("The lineage UUID (a str); None until open() has fired.")
    serial = Attribute("The serial of the last change stored (an int); 0 until open() has fired.")

    def read_ahead() -> None:
        """
        Begin L{open}'s work now, if it has any worth starting early (reading
        a file), so it overlaps what the caller does before it opens the
        store (the registry: importing its service). Nothing else may use
        the store until L{open}; a failure is L{open}'s.
        """

    def open() -> Deferred[StoreState]:
        """
        Load the database, creating an empty one (serial 0, a new random
        database id) if there is none.

        @return: a Deferred firing with the whole state, or failing with
            L{StoreError} if the existing data is unusable. The records of
            L{gridreg.store.records.ENCODED_KINDS} may come as
            L{gridreg.store.records.EncodedValues} (their JSON texts, each
            checked to be a JSON object): a read-only mapping that decodes a
            value when it is read.
        """

    def commit(mutations: Sequence[Mutation]) -> Deferred[Change]:
        """
        Apply a non-empty batch atomically as the next serial and append it to
        the retained log, pruning changes beyond the retention.  This is the
        master's write path.

        @return: a Deferred firing with the committed L{Change} only once it
            is durable: a crash after the callback loses nothing.  It fails
            with C{ValueError} for an empty batch or a value that is not JSON.
        """

    def commit_many(
        batches: Sequence[Sequence[Mutation]],
        copy: bool = True,
        on_assigned: Optional[Callable[[list[Change]], Optional[Callable[[], Any]]]] = None,
    ) -> Deferred[list[Change]]:
        """
        L{commit} several writes in one transaction (one fsync), each as its
        own change under the next serials: the master's group commit.
        Batches submitted while one is in progress take the serials after it.
        With C{copy} false the values are taken as they are (the caller
        copied them through JSON already, see L{records.normalise}).
        C{on_assigned} is called with the changes once their serials are
        given out, before the store's work starts; what it returns is called
        where the store works (its thread), once they are durable and their
        result is queued for the reactor (which may fire the Deferred
        first); if that returns True the reactor is not woken for it.

        @return: a Deferred firing with the changes, in serial order, once
            all are durable; if the store refuses a batch, it and every batch
            submitted behind it fail.
        """

    def reached(serial: int) -> Deferred[None]:
        """
        Fire once C{serial} is durable here (at once if it is): what a slave
        waits for before it serves Ice clients.
        """

    def apply_many(
        changes: Sequence[Change],
        copy: bool = True,
        on_durable: Optional[Callable[[], Any]] = None,
    ) -> Deferred[None]:
        """
        L{apply} consecutive changes from the master in one transaction.
        With C{copy} false the values are stored as they are (the caller
        decoded them from JSON and leaves them alone). C{on_durable} is
        called where the store works (its thread), once they are durable
        and their result is queued for the reactor (which may fire the
        Deferred first); if it returns True the reactor is not woken for
        the result, which it fires on its next turn or at L{deliver_ready}.

        @return: a Deferred that fails with L{SerialGapError} unless the
            serials run on from L{serial} without a hole.
        """

    def deliver_ready() -> None:
        """
        On the reactor: fire now the Deferreds of work the store has
        finished (a quiet result, see C{apply_many}), in order.
        """

    def apply(change: Change) -> Deferred[None]:
        """
        Store a change received from the master under its own serial.  This
        is a slave's write path.

        @return: a Deferred that fails with L{SerialGapError} unless
            C{change.serial} is exactly L{serial} + 1.
        """

    def changes_since(serial: int) -> Deferred[list[Change] | None]:
        """
        The changes after C{serial}, oldest first, for a slave that has
        C{serial}.

        @return: a Deferred firing with the list (empty if C{serial} is
            current), or with C{None} when the log no longer reaches back
            to C{serial} or C{serial} is beyond the store's: the slave then
            needs a snapshot.
        """

    def replace_all(state: StoreState) -> Deferred[None]:
        """
        Atomically replace the database id, serial and every record with
        C{state}, and clear the log: a slave adopting the master's snapshot.
        """

    def snapshot() -> Deferred[StoreState]:
        """
        @return: a Deferred firing with a copy of the whole current state.
        """

    def snapshot_page(
        kind: str, after: Optional[str], limit: int, since: Optional[int] = None
    ) -> Deferred[list[tuple[str, str]]]:
        """
        Up to C{limit} records of C{kind} after key C{after} (from the
        first with None), in key order, as C{(key, JSON text)}: a snapshot
        read a page at a time, between commits. With C{since}, a record
        may be as it was at any serial from C{since} on (a snapshot that
        begins there applies every change after it last).
        """

    def bulk_load() -> object:
        """
        A replacement of the whole database, filled from a worker thread
        (C{begin}, C{add(rows)} or C{add_puts(kind, keys, values)}, then
        C{commit(database_id, serial)} or
        C{abort()}), then C{installed()} on the store's thread: see
        L{gridreg.store.sqlite.SQLiteBulkLoad}.
        """

    def run_with_file(job: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """
        Run C{job(*args)} where the database file is used (SQLite: its one
        worker thread, after the work queued before), so a bulk load never
        shares the connection with a commit; fires with its result.
        """

    def close() -> Deferred[None]:
        """
        Release the database.  Closing a closed store does nothing.
        """
