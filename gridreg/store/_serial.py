# -*- test-case-name: tests.test_store,tests.test_store_executor -*-
"""
The serial rules every store shares: a master's commit takes the next
serials; a slave's apply must be exactly the next ones.

Serials are given out on the calling (reactor) thread when a batch is
submitted, so batches queued behind one still in progress get the serials
that follow it; the store's C{serial} moves only once a batch is durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from gridreg.store.executor import Executor, Quiet
from gridreg.store.interfaces import SerialGapError
from gridreg.store.records import Change, Mutation, normalise


class SerialStore:
    """Mix-in: C{commit} and C{apply} on top of the store's own C{_persist_all}."""

    serial: int
    _executor: Executor
    #: the serial of the last batch submitted (durable or not yet)
    _assigned: int = 0
    #: batches submitted and not yet durable
    _in_flight: int = 0
    #: (serial, Deferred) waiting for that serial to be durable (L{reached})
    _reaching: Optional[list[tuple[int, Deferred[None]]]] = None

    def _check_open(self) -> Any:
        raise NotImplementedError()

    def _persist_all(self, changes: list[Change]) -> None:
        """Make consecutive changes durable in one transaction (runs on the executor)."""
        raise NotImplementedError()

    def _opened(self, serial: int) -> None:
        self.serial = self._assigned = serial

    def reached(self, serial: int) -> Deferred[None]:
        """
        Fire once C{serial} is durable here (at once if it is): a slave
        listed active serves Ice clients once it holds every write the
        master acknowledged without it.
        """
        if self.serial >= serial:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._reaching is None:
            self._reaching = []
        self._reaching.append((serial, d))
        return d

    def _tell_reached(self) -> None:
        """Fire the L{reached} waiters the store's serial has come to."""
        waiting, durable = self._reaching or [], self.serial
        self._reaching = [(serial, d) for serial, d in waiting if serial > durable] or None
        for serial, d in waiting:
            if serial <= durable:
                d.callback(None)

    def commit(self, mutations: Sequence[Mutation]) -> Deferred[Change]:
        return self.commit_many([mutations]).addCallback(lambda changes: changes[0])

    def commit_many(
        self,
        batches: Sequence[Sequence[Mutation]],
        copy: bool = True,
        on_assigned: Optional[Callable[[list[Change]], Optional[Callable[[], Any]]]] = None,
    ) -> Deferred[list[Change]]:
        """
        Commit several writes, each its own change under the next serial, in
        one transaction (one fsync): the master's group commit.

        @param copy: copy each value through JSON first (see L{normalise});
            C{False} when the caller has done so already.
        @param on_assigned: called on the caller's thread with the changes,
            their serials given out, before the store's work starts; what it
            returns (if not None) is called where that work runs (the
            store's thread) once they are durable and their result is
            queued for the reactor, which may hear of it first: a master's
            pushes leave from there (L{gridreg.protocol.prompt.ThreadCall}).
            That must not raise; if it returns True (every push left, each
            to be acknowledged) the reactor is not woken for the result
            (L{Quiet}).
        """
        try:
            self._check_open()
            if not batches or any(not mutations for mutations in batches):
                raise ValueError("cannot commit an empty batch")
            first = self._assigned + 1
            changes = [
                Change(first + i, normalise(m) if copy else m) for i, m in enumerate(batches)
            ]
            on_durable = None if on_assigned is None else on_assigned(changes)
        except BaseException:
            return fail(Failure())
        return self._submit(changes, on_durable)

    def apply(self, change: Change) -> Deferred[None]:
        return self.apply_many([change])

    def apply_many(
        self,
        changes: Sequence[Change],
        copy: bool = True,
        on_durable: Optional[Callable[[], Any]] = None,
    ) -> Deferred[None]:
        """
        Store consecutive changes from the master in one transaction.

        @param copy: copy each value through JSON first (see L{normalise});
            C{False} for values the caller has just decoded from JSON
            itself and will not change (a slave's pushed changes): they are
            already what the store saves.
        @param on_durable: called where the store's work runs (its thread),
            once the changes are durable: a slave's acknowledgement leaves
            from there (L{gridreg.protocol.prompt.ThreadAnswer}). It must
            not raise; it runs once the result is queued for the reactor
            (which may hear of it first), and the reactor is not
            woken for it if it returns True (the acknowledgement left: the
            master's next push wakes the reactor, whose L{deliver_ready}
            hands the result over first).
        """
        try:
            self._check_open()
            expected = self._assigned + 1
            normalised = []
            for change in changes:
                if change.serial != expected:
                    raise SerialGapError(expected, change.serial)
                normalised.append(
                    Change(change.serial, normalise(change.mutations)) if copy else change
                )
                expected += 1
        except BaseException:
            return fail(Failure())
        if not normalised:
            return fail(ValueError("cannot apply an empty batch"))
        # fires with None: a slave's every push waits on this Deferred, one step less
        return self._submit(normalised, on_durable, publish=True)

    def _submit(
        self,
        changes: list[Change],
        on_durable: Optional[Callable[[], Any]] = None,
        publish: bool = False,
    ) -> Deferred[Any]:
        """The batch to the executor: fires with it once durable (None for a slave's, published)."""
        self._assigned = changes[-1].serial
        self._in_flight += 1

        def durable(_: None) -> Optional[list[Change]]:
            self._in_flight -= 1
            self.serial = max(self.serial, changes[-1].serial)
            if self._reaching is not None:
                self._tell_reached()
            return None if publish else changes

        def failed(failure: Failure) -> Failure:
            # batches queued behind this one follow its serials: they fail too,
            # and serials are given out again from the last durable one
            self._in_flight -= 1
            if self._in_flight == 0:
                self._assigned = self.serial
            return failure

        return self._executor.submit(
            self._persist_checked, changes, on_durable, publish
        ).addCallbacks(durable, failed)

    def _persist_checked(
        self,
        changes: list[Change],
        on_durable: Optional[Callable[[], Any]] = None,
        publish: bool = False,
    ) -> Optional[Quiet]:
        """
        On the executor: refuse a batch that does not follow what is
        durable; once durable, C{on_durable}, after the result is queued for
        the reactor (L{Quiet}): whether it returns True says whether the
        reactor must be woken for the result.

        With C{publish} (a slave's batch) C{serial} moves here, as soon as
        the batch is durable: the slave's reactor may hear of the commit
        only at its next event, and whatever reads the serial there first
        (an admin's describe, an observer's start) sees it durable.
        """
        durable = self._durable_serial()
        if changes[0].serial != durable + 1:
            raise SerialGapError(durable + 1, changes[0].serial)
        self._persist_all(changes)
        if publish and changes[-1].serial > self.serial:
            self.serial = changes[-1].serial  # one int, read whole by the reactor
        if on_durable is not None:
            return Quiet(None, on_durable)
        return None

    def deliver_ready(self) -> None:
        """
        On the reactor: fire the results of work the store has finished now
        (L{ThreadExecutor.deliver_ready}), not on the reactor's next turn;
        nothing where results are handed over at once.
        """
        deliver = getattr(self._executor, "deliver_ready", None)
        if deliver is not None:
            deliver()

    def _durable_serial(self) -> int:
        """The serial of the last durable change, as the executor's thread sees it."""
        raise NotImplementedError()
