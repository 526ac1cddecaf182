"""
Fencing and write quorum on a memory network: every master start opens a
new epoch; a master that learns of a newer one stops accepting writes; a
slave that holds what the master lacks is refused and kept; with
GridReg.Replication.MinAcks a write is acknowledged only once enough
slaves committed it.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from gridreg.protocol.errors import NotMasterError, QuorumError
from gridreg.registry.config import RegistryConfig
from gridreg.registry.epochs import EpochHistory
from gridreg.registry.service import RegistryService
from gridreg.store.interfaces import StoreError
from gridreg.store.memory import MemoryStore
from tests._helpers import MemoryNetwork
from tests.test_replication import HOST, hello, registry_properties

PORTS = {
    "Master": (4061, 4062, 4063),
    "Replica1": (5061, 5062, 5063),
    "Replica2": (6061, 6062, 6063),
}


class Grid:
    """Replicas on a memory network, each listed in every Ice.Default.Locator."""

    def __init__(self, testcase: SynchronousTestCase) -> None:
        self.testcase = testcase
        self.network = MemoryNetwork()
        self.stores: dict[str, MemoryStore] = {}
        self.running: dict[str, RegistryService] = {}
        self.conflicts: list[RegistryService] = []
        testcase.patch(RegistryService, "on_conflict", lambda r: self.conflicts.append(r))

    def start(
        self,
        place: str,
        as_name: Optional[str] = None,
        options: Optional[dict[str, Any]] = None,
        wait: bool = True,
        **extra: str,
    ) -> RegistryService:
        """
        Start the replica living at C{place} (its store and ports), as
        C{as_name}, with command-line C{options} (RegistryConfig fields).
        """
        locator = "DemoIceGrid/Locator:" + ":".join(
            f"tcp -h {HOST} -p {ports[0]}" for ports in PORTS.values()
        )
        properties = registry_properties(
            as_name or place,
            PORTS[place],
            **{"Ice.Default.Locator": locator, **extra},
        )
        config = attrs.evolve(RegistryConfig.from_properties(properties), **(options or {}))
        store = self.stores.setdefault(place, MemoryStore())
        registry = RegistryService(self.network.reactor, config, store)
        registry.privilegedStartService()
        registry.startService()
        if wait:
            self.run_until(registry.when_ready())
        for port, factory in zip(
            PORTS[place],
            (registry.client_factory, registry.server_factory, registry.internal_factory),
        ):
            self.network.listen(HOST, port, factory)
        self.running[place] = registry
        return registry

    def kill(self, place: str) -> None:
        registry = self.running.pop(place)
        for port in PORTS[place]:
            self.network.kill(HOST, port)
        registry.stopService()
        self.network.flush()

    def cut(self, place: str) -> None:
        """Nothing reaches C{place} any more, nor leaves it (a partition)."""
        for port in PORTS[place]:
            self.network.hang(HOST, port)

    def heal(self, place: str) -> None:
        for port in PORTS[place]:
            self.network.resume(HOST, port)

    def run_until(self, done: Any, limit: float = 60.0) -> float:
        """Move time until C{done} (a predicate, or a Deferred with a result)."""
        if isinstance(done, Deferred):
            results: list[object] = []
            done.addBoth(lambda r: results.append(r) or r)
            return self.network.run_until(lambda: bool(results), limit=limit)
        return self.network.run_until(done, limit=limit)

    def live(self, master: RegistryService, *names: str) -> bool:
        return sorted(master.master.live_slaves()) == sorted(names)


def epoch_of(registry: RegistryService) -> Any:
    return EpochHistory.from_meta(registry.state.meta).current


def settled(grid: Grid, d: Deferred[Any]) -> Deferred[Any]:
    grid.run_until(d)
    return d


class EpochTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)

    def test_each_master_start_opens_an_epoch_that_slaves_hold(self) -> None:
        master = self.grid.start("Master")
        self.grid.run_until(lambda: master.role.opened)
        first = epoch_of(master)
        self.assertEqual(first.number, 1)
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(master, "Replica1"))
        self.assertEqual(epoch_of(slave), first)

        self.grid.kill("Master")
        master = self.grid.start("Master")
        self.grid.run_until(lambda: self.grid.live(master, "Replica1"))
        self.assertEqual(epoch_of(master).number, 2)
        self.assertEqual(epoch_of(slave), epoch_of(master))
        described = {r["name"]: r for r in master.replica_info()}["Master"]
        self.assertEqual(described["epoch"], str(epoch_of(master)))

    def test_writes_sent_while_the_master_opens_wait_for_it(self) -> None:
        """A hung replica delays the opening; a write queued meanwhile commits after it."""
        self.grid.start("Master")
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(self.grid.running["Master"], "Replica1"))
        self.grid.kill("Master")
        self.grid.cut("Replica1")  # the slave is hung (SIGSTOP): probes of it time out
        master = self.grid.start("Master")
        d = master.database.add_object(hello("early"))
        self.assertNoResult(d)
        self.assertFalse(master.role.opened)
        self.grid.run_until(d)
        self.successResultOf(d)
        self.assertTrue(master.role.opened)
        self.assertEqual(epoch_of(master).number, 2)
        del slave


class OpeningTests(SynchronousTestCase):
    def test_a_master_that_cannot_open_its_epoch_refuses_writes_and_retries(self) -> None:
        grid = Grid(self)
        store = grid.stores["Master"] = MemoryStore()
        real_commit = store.commit_many
        failures = [StoreError("registry.sqlite: database or disk is full")]

        def commit(batches: Any, **kwargs: Any) -> Deferred[Any]:
            if failures:
                return fail(failures.pop())
            return real_commit(batches, **kwargs)

        self.patch(store, "commit_many", commit)
        master = grid.start("Master")
        queued = master.database.add_object(hello("queued"))
        grid.network.flush()
        self.assertFalse(master.role.opened)
        failure = self.failureResultOf(queued, NotMasterError)
        self.assertIn("could not open its epoch yet: registry.sqlite", failure.getErrorMessage())
        self.assertNotIn(hello("queued").identity, master.state.objects)
        grid.run_until(lambda: master.role.opened, limit=5)
        self.assertEqual(epoch_of(master).number, 1)
        self.successResultOf(settled(grid, master.database.add_object(hello("later"))))


class FencingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)
        self.old = self.grid.start("Master")
        self.grid.start("Replica1")
        self.grid.start("Replica2")
        self.grid.run_until(lambda: self.grid.live(self.old, "Replica1", "Replica2"))

    def promote_replica1_while_the_master_is_cut_off(self) -> RegistryService:
        """Replica1 restarted as Master on its own database; Replica2 follows it."""
        grid = self.grid
        grid.cut("Master")
        grid.kill("Replica1")
        grid.kill("Replica2")
        promoted = grid.start("Replica1", as_name="Master")
        grid.run_until(lambda: promoted.role.opened)
        self.assertEqual(epoch_of(promoted).number, 2)
        grid.start("Replica2")
        grid.run_until(lambda: grid.live(promoted, "Replica2"))
        self.assertEqual(epoch_of(grid.running["Replica2"]), epoch_of(promoted))
        return promoted

    def test_a_stale_master_fences_itself_when_the_partition_heals(self) -> None:
        promoted = self.promote_replica1_while_the_master_is_cut_off()
        self.grid.heal("Master")
        self.grid.run_until(lambda: self.old.role.fenced is not None, limit=30)
        self.assertIn("epoch 2", self.old.role.fenced)
        failure = self.failureResultOf(self.old.database.add_object(hello("late")), NotMasterError)
        self.assertIn("no longer accepts writes", failure.getErrorMessage())
        self.assertFalse(self.old.client_factory.accepting, "Ice clients go to live replicas")
        own = {r["name"]: r for r in self.old.replica_info()}["Master"]
        self.assertEqual(own["state"], "refused")
        self.assertIn("superseded", own["reason"])
        # the promoted master goes on, also after a restart: the fenced one is no rival
        self.successResultOf(settled(self.grid, promoted.database.add_object(hello("after"))))
        self.grid.kill("Replica1")
        promoted = self.grid.start("Replica1", as_name="Master")
        self.grid.run_until(lambda: promoted.role.opened)
        self.assertEqual(epoch_of(promoted).number, 3)
        self.assertConflicts([])

    def test_a_slave_refuses_a_master_older_than_its_epoch(self) -> None:
        promoted = self.promote_replica1_while_the_master_is_cut_off()
        # Replica2 is pointed at the old master only: it must not follow it
        self.grid.kill("Replica2")
        self.grid.heal("Master")
        self.grid.kill("Replica1")
        slave = self.grid.start("Replica2")
        self.grid.run_until(lambda: slave.slave.status.state == "refused", limit=30)
        self.assertIn("older than epoch 2", slave.slave.status.reason)
        self.assertEqual(epoch_of(slave), epoch_of(promoted))

    def test_old_master_restarted_while_the_promoted_one_runs_stops(self) -> None:
        promoted = self.promote_replica1_while_the_master_is_cut_off()
        self.grid.kill("Master")
        again = self.grid.start("Master")
        self.grid.run_until(lambda: again.role.fenced is not None)
        self.assertConflicts([again])
        self.failureResultOf(again.database.add_object(hello("twice")), NotMasterError)
        self.assertIsNone(promoted.role.fenced)

    def test_a_slave_ahead_of_the_master_is_refused_and_kept(self) -> None:
        """
        The master is restarted on an older copy of its database: the slave
        holds writes it lacks. IceGrid's serial check: nothing is overwritten.
        """
        grid = self.grid
        before = MemoryStore()
        grid.stores["Master"], saved = before, grid.stores["Master"]
        self.successResultOf(before.open())
        state = self.successResultOf(saved.snapshot())
        self.successResultOf(settled(grid, self.old.database.add_object(hello("only-on-slaves"))))
        self.successResultOf(before.replace_all(state))
        self.successResultOf(before.close())
        grid.kill("Master")
        master = grid.start("Master")
        grid.run_until(lambda: grid.running["Replica1"].slave.status.state == "refused", limit=30)
        slave = grid.running["Replica1"]
        self.assertIn("never reached this master", slave.slave.status.reason)
        self.assertIn("--initdb-from-replica", slave.slave.status.reason)
        self.assertIn(hello("only-on-slaves").identity, slave.state.objects)
        seen = {r["name"]: r for r in master.replica_info()}["Replica1"]
        self.assertEqual(seen["state"], "refused")

    def assertConflicts(self, expected: list[RegistryService]) -> None:
        self.assertEqual(self.grid.conflicts, expected)


class QuorumTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)
        self.master = self.grid.start("Master", **{"GridReg.Replication.MinAcks": "1"})

    def test_no_slave_no_acknowledgement(self) -> None:
        self.grid.run_until(lambda: self.master.role.opened)
        failure = self.failureResultOf(
            settled(self.grid, self.master.database.add_object(hello())), QuorumError
        )
        self.assertIn("only 0 slave(s) committed it", failure.getErrorMessage())
        self.assertIn("MinAcks is 1", failure.getErrorMessage())

    def test_acknowledged_once_a_slave_committed_it(self) -> None:
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        d = self.master.database.add_object(hello())
        seen: list[bool] = []
        d.addCallback(lambda _: seen.append(hello().identity in slave.state.objects))
        self.grid.run_until(d)
        self.successResultOf(d)
        self.assertEqual(seen, [True])

    def test_a_hung_slave_fails_the_write_within_the_session_timeout(self) -> None:
        self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        # the slave hangs (SIGSTOP): its session with the master stops moving
        for link in self.grid.network.links_to(HOST, PORTS["Master"][2]):
            link.frozen = True
        d = self.master.database.add_object(hello())
        elapsed = self.grid.run_until(d)
        self.assertLessEqual(elapsed, 2.5)  # ReplicaSessionTimeout is 2 s
        self.failureResultOf(d, QuorumError)
