# -*- test-case-name: tests.test_store -*-
"""
The serial rules every store shares: a master's commit takes the next
serial; a slave's apply must be exactly the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

from gridreg.store.interfaces import SerialGapError
from gridreg.store.records import Change, Mutation, normalise


class SerialStore:
    """Mix-in: C{commit} and C{apply} on top of the store's own C{_persist}."""

    serial: int

    def _check_open(self) -> Any:
        raise NotImplementedError()

    def _persist(self, change: Change) -> None:
        """Make one change durable and visible; the store's own part."""
        raise NotImplementedError()

    def commit(self, mutations: Sequence[Mutation]) -> Deferred[Change]:
        return maybeDeferred(self._commit, mutations)

    def _commit(self, mutations: Sequence[Mutation]) -> Change:
        self._check_open()
        if not mutations:
            raise ValueError("cannot commit an empty batch")
        change = Change(self.serial + 1, normalise(mutations))
        self._persist(change)
        return change

    def apply(self, change: Change) -> Deferred[None]:
        return maybeDeferred(self._apply, change)

    def _apply(self, change: Change) -> None:
        self._check_open()
        if change.serial != self.serial + 1:
            raise SerialGapError(self.serial + 1, change.serial)
        self._persist(Change(change.serial, normalise(change.mutations)))
