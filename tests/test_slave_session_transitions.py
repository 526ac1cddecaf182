# -*- test-case-name: tests.test_slave_session_transitions -*-
"""
Every transition of the slave session machine
(L{gridreg.registry._slave_session_machine}): from each state, each input
leads where C{registry list} says, with the master connection, the reason
and the time since which the slave is in that state.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry._slave_session_machine import SlaveSessionInputs, build_slave_session

OLD = object()
NEW = object()

#: how to reach each state from a fresh session (at time 1), with the old master
REACH: dict[str, Callable[[SlaveSessionInputs], None]] = {
    "disconnected": lambda s: None,
    "syncing": lambda s: s.registered(OLD, "changes"),
    "live": lambda s: (s.registered(OLD, "changes"), s.caught_up()),
    "failed": lambda s: s.failed("old failure"),
    "refused": lambda s: s.refused("old refusal"),
}

#: what each state says about itself
REASONS = {
    "disconnected": "looking for the master",
    "syncing": "catching up with the master",
    "live": "",
    "failed": "old failure",
    "refused": "old refusal",
}

#: the master a state hands out for forwarding
MASTERS: dict[str, Optional[object]] = {
    "disconnected": None,
    "syncing": OLD,
    "live": OLD,
    "failed": None,
    "refused": None,
}


class TransitionTests(SynchronousTestCase):
    def at(self, state: str) -> tuple[SlaveSessionInputs, Clock]:
        clock = Clock()
        session = build_slave_session(clock)
        clock.advance(1)
        REACH[state](session)
        self.assertEqual(session.status().state, state)
        clock.advance(1)
        return session, clock

    def check(
        self,
        start: str,
        step: Callable[[SlaveSessionInputs], Any],
        state: str,
        reason: str,
        master: Optional[object],
        since: float,
    ) -> None:
        session, clock = self.at(start)
        step(session)
        clock.advance(1)
        status = session.status()
        where = f"from {start}"
        self.assertEqual((status.state, status.reason), (state, reason), where)
        self.assertIs(session.master(), master, where)
        self.assertEqual(status.since, since, where)

    def test_the_states_as_reached(self) -> None:
        for state in REACH:
            session, _ = self.at(state)
            status = session.status()
            self.assertEqual(status.reason, REASONS[state], state)
            self.assertIs(session.master(), MASTERS[state], state)
            expected_since = 0 if state == "disconnected" else 1
            self.assertEqual(status.since, expected_since, state)

    def test_registered_always_starts_syncing_with_the_new_master(self) -> None:
        for start in REACH:
            self.check(
                start,
                lambda s: s.registered(NEW, "snapshot"),
                "syncing",
                REASONS["syncing"],
                NEW,
                2,
            )

    def test_failed_from_anywhere_says_why(self) -> None:
        for start in REACH:
            self.check(start, lambda s: s.failed("new failure"), "failed", "new failure", None, 2)

    def test_refused_from_anywhere_says_why(self) -> None:
        for start in REACH:
            self.check(start, lambda s: s.refused("new refusal"), "refused", "new refusal", None, 2)

    def test_lost(self) -> None:
        for start, after in (("syncing", 2), ("live", 2)):
            self.check(
                start, lambda s: s.lost(), "disconnected", REASONS["disconnected"], None, after
            )
        # where there is no session, losing one changes nothing, not even since when
        for start, since in (("disconnected", 0), ("failed", 1), ("refused", 1)):
            self.check(start, lambda s: s.lost(), start, REASONS[start], None, since)

    def test_caught_up(self) -> None:
        self.check("syncing", lambda s: s.caught_up(), "live", "", OLD, 2)
        self.check("live", lambda s: s.caught_up(), "live", "", OLD, 1)
        for start, since in (("disconnected", 0), ("failed", 1), ("refused", 1)):
            self.check(start, lambda s: s.caught_up(), start, REASONS[start], None, since)
