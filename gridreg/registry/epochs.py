# -*- test-case-name: tests.test_epochs -*-
"""
Replication epochs: which master a change stream belongs to.

Every time a replica starts as the master and opens for writes, it begins a
new epoch: a number one higher than any epoch it knows of, and a random
token that orders two masters that happened to pick the same number. The
epoch and the history of epochs (each with the serial it began at) are a
record of the database (C{meta}/C{epoch}), committed as the first change of
the epoch, so they replicate with the data and survive restarts.

This gives two guarantees IceGrid does not have:

  - fencing: a replica that has seen epoch I{E} refuses a master of an
    older epoch, and a master that learns of a newer epoch than its own
    stops accepting writes;
  - a history check: a slave's serial only means something within its
    epoch. A slave of an older epoch is consistent with the master when its
    serial is not past the point where the master's history left that
    epoch; otherwise it holds writes the master never had, and overwriting
    it would lose them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Optional

import attrs

from gridreg.store.records import Mutation

META = "meta"
EPOCH_KEY = "epoch"


@attrs.frozen(order=True)
class Epoch:
    """
    @ivar number: grows by one at each new master.
    @ivar token: random, so that two masters never share an epoch.
    """

    number: int
    token: str = ""

    def __str__(self) -> str:
        return f"{self.number}" + (f" ({self.token[:8]})" if self.token else "")

    def to_wire(self) -> str:
        return f"{self.number}:{self.token}"

    @classmethod
    def from_wire(cls, text: str) -> "Epoch":
        """
        @raise ValueError: C{text} is not C{number:token}.
        """
        number, _, token = text.partition(":")
        return cls(int(number), token)


#: the epoch of a database that no epoch-aware master has written yet
NO_EPOCH = Epoch(0, "")


@attrs.frozen
class EpochHistory:
    """
    The epochs of a database, oldest first, each with the serial its first
    change has.
    """

    entries: tuple[tuple[Epoch, int], ...] = ()

    @property
    def current(self) -> Epoch:
        return self.entries[-1][0] if self.entries else NO_EPOCH

    def began(self, epoch: Epoch) -> Optional[int]:
        """The serial at which C{epoch} began, if it is in this history."""
        if epoch == NO_EPOCH:
            return 0
        for entry, start in self.entries:
            if entry == epoch:
                return start
        return None

    def ended(self, epoch: Epoch) -> Optional[int]:
        """The last serial of C{epoch} (None: it is the current one, or unknown)."""
        found = epoch == NO_EPOCH
        for entry, start in self.entries:
            if found:
                return start - 1
            found = entry == epoch
        return None

    def knows(self, epoch: Epoch) -> bool:
        return self.began(epoch) is not None

    def begin(self, epoch: Epoch, serial: int) -> "EpochHistory":
        return EpochHistory((*self.entries, (epoch, serial)))

    def to_value(self) -> dict[str, Any]:
        return {
            "number": self.current.number,
            "token": self.current.token,
            "history": [[e.number, e.token, start] for e, start in self.entries],
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Mapping[str, Any]]) -> "EpochHistory":
        """The history stored in a database's C{meta} records (empty if none)."""
        value = meta.get(EPOCH_KEY)
        if not value:
            return cls()
        return cls(tuple((Epoch(int(n), str(t)), int(s)) for n, t, s in value["history"]))


def new_epoch(after: Epoch) -> Epoch:
    """An epoch newer than C{after}."""
    return Epoch(after.number + 1, secrets.token_hex(8))


def epoch_mutation(history: EpochHistory) -> Mutation:
    return Mutation(META, EPOCH_KEY, history.to_value())


def check_slave_history(
    master: EpochHistory, master_serial: int, slave_epoch: Epoch, slave_serial: int
) -> Optional[str]:
    """
    Why the master must not sync a slave that is at C{slave_serial} of
    C{slave_epoch} (None when it may). The master's own epoch is newer or
    equal: a newer slave epoch is fencing, checked before this.
    """
    if slave_epoch == master.current:
        if slave_serial > master_serial:
            return (
                f"the slave's database is ahead of the master's (serial {slave_serial} "
                f"against {master_serial} in epoch {slave_epoch})"
            )
        return None
    if not master.knows(slave_epoch):
        return (
            f"the slave's database was written by a master (epoch {slave_epoch}) that is "
            "not in this master's history: the two databases diverged"
        )
    ended = master.ended(slave_epoch)
    if ended is not None and slave_serial > ended:
        return (
            f"the slave holds changes of epoch {slave_epoch} up to serial {slave_serial}, "
            f"which ended at serial {ended} in this master's history: those writes "
            "never reached this master"
        )
    return None
