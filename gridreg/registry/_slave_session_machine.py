# -*- test-case-name: tests.test_slave_session_machine -*-
"""
The state machine of a slave's session with its master
(L{gridreg.registry.slave.SlaveReplication}), which is also what
C{gridadmin registry list} shows for the slave.

States::

    Searching --registered--> Syncing --caught_up--> Live
    Syncing, Live --lost--> Searching          (the master's connection is gone)
    any --failed--> Failed                     (retried: registration or applying)
    any --refused--> Refused                   (an operator must act)
    Failed, Refused --registered--> Syncing
    Searching, Failed, Refused --lost--> (stay)

The machine only says where the session is; the slave's service connects,
registers and applies, and feeds it what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from automat import TypeMachineBuilder

from twisted.internet.interfaces import IReactorTime

from gridreg.registry.replica_status import (
    DISCONNECTED,
    FAILED,
    LIVE,
    REFUSED,
    SYNCING,
    ReplicaStatus,
)

__all__ = ["SlaveSessionCore", "SlaveSessionInputs", "build_slave_session"]


class SlaveSessionInputs(Protocol):
    """What happens to a slave's session, and what can be asked of it."""

    def registered(self, master: Any, sync: str) -> None:
        """The master accepted the slave on connection C{master}; it syncs by C{sync}."""

    def caught_up(self) -> None:
        """The master lists this slave among the active replicas."""

    def lost(self) -> None:
        """The connection to the master this session uses is gone."""

    def failed(self, reason: str) -> None:
        """Registration, or applying what the master sent, failed; it is retried."""

    def refused(self, reason: str) -> None:
        """The session cannot go on without an operator (diverged, stale, a duplicate)."""

    def status(self) -> ReplicaStatus:
        """Where the session is, in words."""

    def master(self) -> Optional[Any]:
        """The master's connection, while registered with it."""


@dataclass
class SlaveSessionCore:
    """@ivar master: the connection of the current session (Syncing and Live only)."""

    clock: IReactorTime
    master: Optional[Any] = None
    since: float = 0.0

    def enter(self, master: Optional[Any] = None) -> None:
        self.master = master
        self.since = self.clock.seconds()


@dataclass
class _Why:
    reason: str


def _build() -> Callable[[SlaveSessionCore], SlaveSessionInputs]:
    builder = TypeMachineBuilder(SlaveSessionInputs, SlaveSessionCore)
    Searching = builder.state("Searching")
    Syncing = builder.state("Syncing")
    Live = builder.state("Live")
    Failed = builder.state("Failed", lambda inputs, core, reason: (core.enter(), _Why(reason))[1])
    Refused = builder.state("Refused", lambda inputs, core, reason: (core.enter(), _Why(reason))[1])
    plain = (Searching, Syncing, Live)
    with_reason = (Failed, Refused)

    for state in plain:
        state.upon(SlaveSessionInputs.failed).to(Failed).returns(None)
        state.upon(SlaveSessionInputs.refused).to(Refused).returns(None)
    Failed.upon(SlaveSessionInputs.refused).to(Refused).returns(None)
    Refused.upon(SlaveSessionInputs.failed).to(Failed).returns(None)
    for state, again in (
        (Failed, SlaveSessionInputs.failed),
        (Refused, SlaveSessionInputs.refused),
    ):

        @state.upon(again).loop()
        def new_reason(
            inputs: SlaveSessionInputs, core: SlaveSessionCore, why: _Why, reason: str
        ) -> None:
            why.reason = reason
            core.enter()

    for state in plain:

        @state.upon(SlaveSessionInputs.registered).to(Syncing)
        def registered(
            inputs: SlaveSessionInputs, core: SlaveSessionCore, master: Any, sync: str
        ) -> None:
            core.enter(master)

    for state in with_reason:

        @state.upon(SlaveSessionInputs.registered).to(Syncing)
        def registered_again(
            inputs: SlaveSessionInputs, core: SlaveSessionCore, why: _Why, master: Any, sync: str
        ) -> None:
            core.enter(master)

    @Syncing.upon(SlaveSessionInputs.caught_up).to(Live)
    def caught_up(inputs: SlaveSessionInputs, core: SlaveSessionCore) -> None:
        core.enter(core.master)

    for state in (Syncing, Live):

        @state.upon(SlaveSessionInputs.lost).to(Searching)
        def lost(inputs: SlaveSessionInputs, core: SlaveSessionCore) -> None:
            core.enter()

        @state.upon(SlaveSessionInputs.master).loop()
        def master(inputs: SlaveSessionInputs, core: SlaveSessionCore) -> Optional[Any]:
            return core.master

    Live.upon(SlaveSessionInputs.caught_up).loop().returns(None)
    for state in (Searching, *with_reason):
        state.upon(SlaveSessionInputs.lost).loop().returns(None)
        state.upon(SlaveSessionInputs.caught_up).loop().returns(None)

    Searching.upon(SlaveSessionInputs.master).loop().returns(None)
    for state in with_reason:

        @state.upon(SlaveSessionInputs.master).loop()
        def no_master(inputs: SlaveSessionInputs, core: SlaveSessionCore, why: _Why) -> None:
            return None

    def status_of(name: str) -> Callable[..., ReplicaStatus]:
        def status(inputs: SlaveSessionInputs, core: SlaveSessionCore) -> ReplicaStatus:
            reasons = {
                DISCONNECTED: "looking for the master",
                SYNCING: "catching up with the master",
                LIVE: "",
            }
            return ReplicaStatus(name, reasons[name], core.since)

        return status

    Searching.upon(SlaveSessionInputs.status).loop()(status_of(DISCONNECTED))
    Syncing.upon(SlaveSessionInputs.status).loop()(status_of(SYNCING))
    Live.upon(SlaveSessionInputs.status).loop()(status_of(LIVE))

    @Failed.upon(SlaveSessionInputs.status).loop()
    def failed_status(
        inputs: SlaveSessionInputs, core: SlaveSessionCore, why: _Why
    ) -> ReplicaStatus:
        return ReplicaStatus(FAILED, why.reason, core.since)

    @Refused.upon(SlaveSessionInputs.status).loop()
    def refused_status(
        inputs: SlaveSessionInputs, core: SlaveSessionCore, why: _Why
    ) -> ReplicaStatus:
        return ReplicaStatus(REFUSED, why.reason, core.since)

    return builder.build()


_factory = _build()


def build_slave_session(clock: IReactorTime) -> SlaveSessionInputs:
    """A new session machine, searching for the master since now."""
    core = SlaveSessionCore(clock)
    core.enter()
    return _factory(core)
