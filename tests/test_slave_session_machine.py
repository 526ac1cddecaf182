"""
The slave session's state machine: what C{registry list} shows for a slave
at each step of its session with the master.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry._slave_session_machine import build_slave_session


class SlaveSessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.session = build_slave_session(self.clock)

    def state(self) -> tuple[str, str]:
        status = self.session.status()
        return status.state, status.reason

    def test_a_session_from_search_to_live_and_back(self) -> None:
        self.assertEqual(self.state(), ("disconnected", "looking for the master"))
        self.assertIsNone(self.session.master())
        master = object()
        self.clock.advance(2)
        self.session.registered(master, "changes")
        self.assertEqual(self.state()[0], "syncing")
        self.assertEqual(self.session.status().since, 2)
        self.assertIs(self.session.master(), master)
        self.session.caught_up()
        self.assertEqual(self.state(), ("live", ""))
        self.assertIs(self.session.master(), master)
        self.session.caught_up()
        self.assertEqual(self.state(), ("live", ""))
        self.session.lost()
        self.assertEqual(self.state()[0], "disconnected")
        self.assertIsNone(self.session.master())

    def test_failures_keep_their_reason_until_the_next_session(self) -> None:
        self.session.registered(object(), "snapshot")
        self.session.failed("could not apply what the master sent: disk full")
        self.assertEqual(
            self.state(), ("failed", "could not apply what the master sent: disk full")
        )
        self.assertIsNone(self.session.master(), "a failed session forwards nothing")
        self.session.lost()
        self.assertEqual(self.state()[0], "failed", "the reason stays once the master drops us")
        self.session.failed("registration with the master failed: timed out")
        self.assertEqual(self.state()[1], "registration with the master failed: timed out")
        master = object()
        self.session.registered(master, "changes")
        self.assertEqual(self.state()[0], "syncing")
        self.assertIs(self.session.master(), master)

    def test_refusals_wait_for_an_operator_but_retry(self) -> None:
        self.session.refused("the slave's database is ahead of the master's")
        self.assertEqual(self.state(), ("refused", "the slave's database is ahead of the master's"))
        self.session.caught_up()
        self.session.lost()
        self.assertEqual(self.state()[0], "refused")
        self.session.registered(object(), "changes")
        self.session.caught_up()
        self.assertEqual(self.state(), ("live", ""))
