# -*- test-case-name: tests.test_master_role -*-
"""
The master role (L{gridreg.registry.master_role}) on a memory network: what
it answers before and after opening its epoch, how it refuses slaves, what
it reports about itself and its slaves, and what fencing shuts down.
"""

from __future__ import annotations

from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from gridreg.protocol.errors import DivergedError, NotMasterError, QuorumError
from gridreg.registry import master_role
from gridreg.registry.discovery import MASTER
from gridreg.registry.epochs import Epoch
from gridreg.registry.peers import PeerAnswer, Peers
from gridreg.registry.roles import IReplicaRole
from tests.test_fencing import Grid, epoch_of, settled
from tests.test_replication import hello


class MasterRoleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)
        self.master = self.grid.start("Master")
        self.slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        self.role = self.master.role

    def test_an_open_master_reports_itself_live(self) -> None:
        self.assertTrue(self.role.is_master)
        self.assertIsNone(self.role.write_refusal())
        self.assertEqual(
            self.role.hello(), {"master": True, "epoch": epoch_of(self.master).to_wire()}
        )
        status = self.role.status_of("Master")
        self.assertEqual((status.state, status.reason), ("live", ""))
        self.assertEqual(self.role.serial_of("Master"), self.master.store.serial)

    def test_what_it_reports_about_slaves(self) -> None:
        self.successResultOf(settled(self.grid, self.master.database.add_object(hello())))
        self.assertEqual(self.role.status_of("Replica1").state, "live")
        self.assertEqual(self.role.serial_of("Replica1"), self.master.store.serial)
        unknown = self.role.status_of("Replica9")
        self.assertEqual(unknown.state, "disconnected")
        self.assertIn("has not registered since this master started", unknown.reason)
        self.assertIsNone(self.role.serial_of("Replica9"))

    def test_a_registered_slave_is_told_the_epoch(self) -> None:
        answer = self.role.register_replica(
            object(), "Replica2", {}, self.master.store.database_id, 0, Epoch(0)
        )
        self.assertEqual(answer["epoch"], epoch_of(self.master).to_wire())
        self.assertEqual(answer["sync"], "changes")

    def test_keepalives_need_a_session(self) -> None:
        with self.assertRaises(NotMasterError) as caught:
            self.role.keepalive(object(), 0)
        self.assertIn("register first", str(caught.exception))
        (session,) = self.role.replication.sessions.values()
        self.assertEqual(self.role.keepalive(session.protocol, 0), epoch_of(self.master))

    def test_a_slave_of_a_newer_epoch_fences_the_master(self) -> None:
        newer = Epoch(epoch_of(self.master).number + 1, "f")
        with self.assertRaises(DivergedError) as caught:
            self.role.register_replica(object(), "Replica2", {}, "db", 0, newer)
        self.assertIn("this master is stale", str(caught.exception))
        self.assertIn("slave `Replica2' has seen epoch", self.role.fenced)
        self.assertIs(self.role.hello()["master"], False)
        self.assertIn("no longer accepts writes", self.role.write_refusal())
        status = self.role.status_of("Master")
        self.assertEqual(status.state, "refused")
        self.assertIn("has seen epoch", status.reason)
        with self.assertRaises(NotMasterError) as refused:
            self.role.register_replica(object(), "Replica3", {}, "db", 0, Epoch(0))
        self.assertIn("no longer accepts slaves", str(refused.exception))

    def test_a_slave_of_the_same_epoch_and_another_database_is_not_history_checked(
        self,
    ) -> None:
        answer = self.role.register_replica(
            object(), "Replica2", {}, "another-db", 10**6, epoch_of(self.master)
        )
        self.assertEqual(answer["sync"], "snapshot")

    def test_a_slave_ahead_is_refused_and_recorded(self) -> None:
        events: list[dict[str, Any]] = []
        self.patch(master_role.MasterRole, "log", Logger(observer=events.append))
        store = self.master.store
        with self.assertRaises(DivergedError) as caught:
            self.role.register_replica(
                object(), "Replica2", {}, store.database_id, store.serial + 1, epoch_of(self.master)
            )
        self.assertIn("--initdb-from-replica Replica2", str(caught.exception))
        status = self.role.status_of("Replica2")
        self.assertEqual(status.state, "refused")
        self.assertIn("ahead of the master's", status.reason)
        self.assertIsNone(self.role.fenced, "a slave ahead does not fence the master")
        (event,) = events
        self.assertEqual(event["log_level"].name, "error")
        self.assertIn("refusing slave `Replica2'", formatEvent(event))
        self.assertIn("Nothing is overwritten", formatEvent(event))

    def test_a_fencing_reason_is_quoted_unchanged(self) -> None:
        self.role.fence("Master2 took the writes")
        with self.assertRaises(NotMasterError) as refused:
            self.role.register_replica(object(), "Replica3", {}, "db", 0, Epoch(0))
        self.assertEqual(
            str(refused.exception),
            "this master no longer accepts slaves: Master2 took the writes",
        )

    def test_fencing_shuts_everything_once(self) -> None:
        closed: list[str] = []
        self.patch(self.master.client_factory, "close_all", lambda: closed.append("client"))
        self.patch(self.master.server_factory, "close_all", lambda: closed.append("server"))
        self.role.fence("first reason")
        self.role.fence("second reason")
        self.assertEqual(self.role.fenced, "first reason")
        with self.assertRaises(NotMasterError) as refused:
            self.role.register_replica(object(), "Replica3", {}, "db", 0, Epoch(0))
        self.assertEqual(
            str(refused.exception), "this master no longer accepts slaves: first reason"
        )
        self.assertEqual(closed, ["client", "server"])
        self.assertFalse(self.master.client_factory.accepting)
        self.assertFalse(self.master.server_factory.accepting)
        self.assertEqual(self.role.replication.sessions, {})
        self.assertIn("the master is fenced: first reason", self.role.status_of("Replica1").reason)
        self.assertFalse(self.role._watch.running, "no more epoch checks")
        failure = self.failureResultOf(self.master.database.add_object(hello()), NotMasterError)
        self.assertIn("first reason", failure.getErrorMessage())

    def test_stopping_closes_slaves_and_watches(self) -> None:
        self.successResultOf(self.role.stop())
        self.assertFalse(self.role._watch.running)
        self.assertFalse(self.role.replication._watch.running)
        self.assertEqual(self.role.replication.sessions, {})
        self.assertEqual(self.role.status_of("Replica1").reason, "the master is stopping")

    def test_epochs_are_checked_every_interval(self) -> None:
        call = self.role._watch
        self.assertTrue(call.running)
        self.assertEqual(call.interval, self.master.config.epoch_check_interval)
        self.assertTrue(self.role.replication._watch.running, "the keepalive watch too")

    def test_slaves_joining_are_recorded_and_announced(self) -> None:
        from gridreg.ice.types import Identity

        self.assertIsNotNone(
            self.master.state.find_object(Identity("Registry-Replica1", "DemoIceGrid"))
        )
        self.assertEqual(self.master.directory.active, ["Master", "Replica1"])
        self.assertIn("Replica1", self.slave.directory.active)

    def test_a_fenced_master_records_no_replica_set(self) -> None:
        self.role.fence("test")
        serial = self.master.store.serial
        self.role._slaves_changed()
        self.assertEqual(self.master.store.serial, serial)

    def test_bookkeeping_failures_are_logged_unless_expected(self) -> None:
        events: list[dict[str, Any]] = []
        self.patch(master_role.MasterRole, "log", Logger(observer=events.append))
        for error in (QuorumError("q"), NotMasterError("n")):
            fail(error).addErrback(self.role._bookkeeping_failed)
        self.assertEqual(events, [])
        fail(RuntimeError("disk")).addErrback(self.role._bookkeeping_failed)
        self.assertIn("Could not record the replica set", formatEvent(events[0]))


class OpeningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)
        master = self.grid.start("Master")
        self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(master, "Replica1"))
        self.grid.kill("Master")

    def test_slaves_wait_until_the_master_opened(self) -> None:
        self.grid.cut("Replica1")  # the opening's probe of it hangs
        master = self.grid.start("Master")
        self.assertFalse(master.role.opened)
        with self.assertRaises(NotMasterError) as caught:
            master.role.register_replica(
                object(), "Replica2", {}, master.store.database_id, 0, Epoch(0)
            )
        self.assertIn("checking for a newer master", str(caught.exception))
        self.grid.run_until(lambda: master.role.opened)

    def test_a_new_epoch_is_newer_than_any_seen(self) -> None:
        before = epoch_of(self.grid.running["Replica1"])
        master = self.grid.start("Master")
        self.grid.run_until(lambda: master.role.opened)
        self.assertEqual(epoch_of(master).number, before.number + 1)
        self.assertEqual(master.role.epoch(), epoch_of(master))

    def test_a_readonly_master_opens_nothing(self) -> None:
        master = self.grid.start("Master", options={"readonly": True})
        self.grid.network.advance(10)
        self.assertFalse(master.role.opened)
        self.assertFalse(master.role._watch.running)
        status = master.role.status_of("Master")
        self.assertEqual(status.state, "refused")
        self.assertIn("--readonly", status.reason)
        with self.assertRaises(NotMasterError) as caught:
            master.role.register_replica(
                object(), "Replica2", {}, master.store.database_id, 0, Epoch(0)
            )
        self.assertIn("refuses slaves", str(caught.exception))


class SurveyTests(SynchronousTestCase):
    """Whom the master asks for newer epochs, and what it does with the answers."""

    def setUp(self) -> None:
        self.grid = Grid(self)
        self.master = self.grid.start("Master")
        self.grid.start("Replica1")
        self.grid.start("Replica2")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1", "Replica2"))
        self.grid.kill("Replica2")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        self.role = self.master.role
        self.events: list[dict[str, Any]] = []
        self.patch(master_role.MasterRole, "log", Logger(observer=self.events.append))

    def answers(self, *answers: PeerAnswer) -> None:
        async def survey(targets: Any) -> list[PeerAnswer]:
            self.targets = targets
            return list(answers)

        self.patch(self.master.peers, "survey", survey)

    def check(self) -> None:
        d = Deferred.fromCoroutine(self.role._check())
        self.successResultOf(settled(self.grid, d))

    def test_targets_are_the_stored_replicas_under_their_name_and_as_master(self) -> None:
        internal = {n: self.master.directory.others()[n].internal for n in ("Replica1", "Replica2")}
        checked = self.role._targets(live_too=False)
        self.assertEqual(
            checked, {"Replica2": list(internal["Replica2"]), MASTER: list(internal["Replica2"])}
        )
        everyone = self.role._targets(live_too=True)
        self.assertEqual(everyone["Replica1"], list(internal["Replica1"]))
        self.assertEqual(everyone["Replica2"], list(internal["Replica2"]))
        self.assertEqual(
            sorted(map(str, everyone[MASTER])),
            sorted(map(str, internal["Replica1"] + internal["Replica2"])),
        )

    def test_the_check_skips_live_slaves_and_its_own_endpoints(self) -> None:
        self.answers()
        self.check()
        own = set(self.master.directory.own.internal)
        probed = {e for endpoints in self.targets.values() for e in endpoints}
        self.assertFalse(own & probed)
        self.assertNotIn("Replica1", self.targets)
        self.assertIn("Replica2", self.targets)

    def test_a_replica_of_the_same_epoch_does_not_fence(self) -> None:
        self.answers(PeerAnswer("Replica2", "tcp -p 6063", False, self.role.epoch()))
        self.check()
        self.assertIsNone(self.role.fenced)

    def test_a_replica_of_a_newer_epoch_fences_naming_it(self) -> None:
        newer = Epoch(self.role.epoch().number + 1, "n")
        self.answers(
            PeerAnswer("Replica2", "tcp -p 6063", False, newer),
            PeerAnswer("Replica1", "tcp -p 5063", False, self.role.epoch()),
        )
        self.check()
        self.assertEqual(
            self.role.fenced,
            f"superseded by epoch {newer}: replica `Replica2' at tcp -p 6063 has it",
        )

    def test_a_newer_master_fences_naming_it(self) -> None:
        newer = Epoch(self.role.epoch().number + 2, "m")
        self.answers(
            PeerAnswer("Replica2", "tcp -p 6063", False, Epoch(newer.number - 1, "a")),
            PeerAnswer("Master", "tcp -p 7063", True, newer),
        )
        self.check()
        self.assertIn(f"superseded by epoch {newer}: the master at tcp -p 7063", self.role.fenced)
        self.assertIn(
            "this master stops accepting writes", "\n".join(formatEvent(e) for e in self.events)
        )


class OpeningSurveyTests(SynchronousTestCase):
    """What the master does with what it learns before opening its epoch."""

    def setUp(self) -> None:
        self.grid = Grid(self)
        master = self.grid.start("Master")
        self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(master, "Replica1"))
        self.grid.kill("Master")
        self.events: list[dict[str, Any]] = []
        self.patch(master_role.MasterRole, "log", Logger(observer=self.events.append))

    def start(self, *answers: PeerAnswer) -> Any:
        async def survey(self: Any, targets: Any) -> list[PeerAnswer]:
            return list(answers)

        self.patch(Peers, "survey", survey)
        master = self.grid.start("Master")
        self.grid.network.advance(1)
        return master

    def text(self) -> str:
        return "\n".join(formatEvent(e) for e in self.events)

    def test_another_master_stops_this_one(self) -> None:
        other = Epoch(1, "o")
        master = self.start(
            PeerAnswer("Master", "tcp -p 7063", True, other),
            PeerAnswer("Master", "tcp -p 8063", True, Epoch(9, "p")),
        )
        self.assertFalse(master.role.opened)
        self.assertEqual(self.grid.conflicts, [master])
        self.assertEqual(master.role.fenced, "another master (epoch 9 (p)) answers at tcp -p 8063")
        self.assertIn(
            "Another master of DemoIceGrid is running (epoch 9 (p), at tcp -p 8063)", self.text()
        )

    def test_a_newer_epoch_elsewhere_keeps_it_closed(self) -> None:
        stored = epoch_of(self.grid.running["Replica1"])
        master = self.start(
            PeerAnswer("Replica1", "tcp -p 5063", False, Epoch(stored.number + 1, "a")),
            PeerAnswer("Replica2", "tcp -p 6063", False, Epoch(stored.number + 2, "b")),
        )
        self.assertFalse(master.role.opened)
        self.assertEqual(self.grid.conflicts, [])
        self.assertIn(
            f"superseded: replica `Replica2' at tcp -p 6063 has seen epoch "
            f"{stored.number + 2} (b), newer than this database's {stored}",
            master.role.fenced,
        )
        self.failureResultOf(master.database.add_object(hello()), NotMasterError)

    def test_the_new_epoch_is_newer_than_every_answer(self) -> None:
        stored = epoch_of(self.grid.running["Replica1"])
        master = self.start(PeerAnswer("Replica1", "tcp -p 5063", False, stored))
        self.assertTrue(master.role.opened)
        self.assertEqual(epoch_of(master).number, stored.number + 1)
        self.assertIn("master opened epoch", self.text())

    def test_readonly_is_said_at_start(self) -> None:
        self.grid.start("Master", options={"readonly": True})
        self.assertIn("Master started with --readonly", self.text())


class InterfaceTests(SynchronousTestCase):
    def test_both_roles_provide_the_role_interface(self) -> None:
        grid = Grid(self)
        master = grid.start("Master")
        slave = grid.start("Replica1")
        for registry in (master, slave):
            self.assertTrue(verifyObject(IReplicaRole, registry.role))
