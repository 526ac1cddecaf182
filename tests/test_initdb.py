"""
IceGrid's operator tools for promotion and recovery, on a memory network:
C{--readonly} masters and C{--initdb-from-replica}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gridreg.protocol.errors import NotMasterError
from gridreg.registry.epochs import EpochHistory
from gridreg.registry.service import RegistryStartError
from tests.test_fencing import Grid, settled
from tests.test_replication import has_object, hello


class ReadonlyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)
        master = self.grid.start("Master")
        self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(master, "Replica1"))
        self.successResultOf(settled(self.grid, master.database.add_object(hello("kept"))))
        self.grid.kill("Master")
        self.grid.kill("Replica1")

    def test_a_readonly_master_serves_reads_and_refuses_writes_and_slaves(self) -> None:
        promoted = self.grid.start("Replica1", as_name="Master", options={"readonly": True})
        epoch = EpochHistory.from_meta(promoted.state.meta).current
        self.assertTrue(has_object(promoted, "kept"))
        self.assertTrue(promoted.client_factory.accepting)
        failure = self.failureResultOf(promoted.database.add_object(hello("new")), NotMasterError)
        self.assertIn("--readonly", failure.getErrorMessage())
        slave = self.grid.start("Master", as_name="Replica2")
        self.grid.network.advance(3)
        self.assertEqual(promoted.master.live_slaves(), {})
        self.assertIn("--readonly", slave.slave.status.reason)
        self.assertIn("refuses slaves", slave.slave.status.reason)
        self.assertEqual(
            EpochHistory.from_meta(promoted.state.meta).current, epoch, "no epoch is opened"
        )
        self.assertEqual(promoted.store.serial, self.grid.stores["Replica1"].serial)

    def test_reopened_without_readonly_it_opens_a_new_epoch(self) -> None:
        promoted = self.grid.start("Replica1", as_name="Master", options={"readonly": True})
        before = EpochHistory.from_meta(promoted.state.meta).current
        self.grid.kill("Replica1")
        promoted = self.grid.start("Replica1", as_name="Master")
        self.grid.run_until(lambda: promoted.role.opened)
        self.assertGreater(EpochHistory.from_meta(promoted.state.meta).current, before)
        self.successResultOf(settled(self.grid, promoted.database.add_object(hello("new"))))


class InitdbTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)
        self.master = self.grid.start("Master")
        self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))

    def test_a_slave_ahead_is_settled_by_copying_it_to_the_master(self) -> None:
        """
        The master came back on an old copy of its database and refused the
        slave that holds more; the operator restarts it from the slave.
        """
        grid = self.grid
        old = self.successResultOf(grid.stores["Master"].snapshot())
        self.successResultOf(settled(grid, self.master.database.add_object(hello("ahead"))))
        grid.kill("Master")
        store = grid.stores["Master"]
        self.successResultOf(store.open())
        self.successResultOf(store.replace_all(old))
        self.successResultOf(store.close())
        refused = grid.start("Master")
        slave = grid.running["Replica1"]
        grid.run_until(lambda: slave.slave.status.state == "refused")
        grid.kill("Master")
        del refused

        master = grid.start("Master", options={"initdb_from_replica": "Replica1"})
        self.assertTrue(has_object(master, "ahead"), "the slave's database, copied")
        self.assertEqual(master.store.database_id, slave.store.database_id)
        grid.run_until(lambda: grid.live(master, "Replica1"), limit=30)
        self.assertTrue(has_object(slave, "ahead"))
        self.assertEqual(slave.store.serial, master.store.serial)

    def test_a_new_slave_starts_from_a_copy_of_another_one(self) -> None:
        grid = self.grid
        self.successResultOf(settled(grid, self.master.database.add_object(hello("x"))))
        copy = grid.start("Replica2", options={"initdb_from_replica": "Replica1"})
        self.assertTrue(has_object(copy, "x"))
        grid.run_until(lambda: grid.live(self.master, "Replica1", "Replica2"))

    def test_an_unreachable_source_stops_start_up(self) -> None:
        grid = self.grid
        grid.kill("Replica1")
        registry = grid.start("Replica2", options={"initdb_from_replica": "Replica1"}, wait=False)
        d = registry.when_ready()
        grid.run_until(d)
        failure = self.failureResultOf(d, RegistryStartError)
        self.assertIn("--initdb-from-replica Replica1", failure.getErrorMessage())
        self.assertEqual(grid.stores["Replica2"].serial, 0, "nothing was replaced")
