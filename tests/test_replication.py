# -*- test-case-name: tests.test_replication -*-
"""
Master and slaves in memory: sync, fan-out, read-only slaves, forwarding,
reconnection and dropped slaves, on a memory network and a fake clock.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.protocol.errors import (
    DuplicateReplicaError,
    NotMasterError,
    RegistryUserError,
    SyncError,
)
from gridreg.registry.config import RegistryConfig
from gridreg.registry.service import RegistryService
from gridreg.registry.state import ObjectInfo, object_mutation
from gridreg.store.interfaces import StoreError
from gridreg.store.memory import MemoryStore
from tests._helpers import MemoryNetwork

HOST = "127.0.0.1"
MASTER_PORTS = (4061, 4062, 4063)


def registry_properties(name: str, ports: tuple[int, int, int], **extra: str) -> Properties:
    client, server, internal = ports
    properties = Properties()
    for key, value in {
        "IceGrid.InstanceName": "DemoIceGrid",
        "IceGrid.Registry.ReplicaName": name,
        "IceGrid.Registry.Client.Endpoints": f"tcp -h {HOST} -p {client}",
        "IceGrid.Registry.Server.Endpoints": f"tcp -h {HOST} -p {server}",
        "IceGrid.Registry.Internal.Endpoints": f"tcp -h {HOST} -p {internal}",
        "IceGrid.Registry.DynamicRegistration": "1",
        "IceGrid.Registry.ReplicaSessionTimeout": "2",
        "Ice.Default.Locator": f"DemoIceGrid/Locator:tcp -h {HOST} -p {MASTER_PORTS[0]}",
        **extra,
    }.items():
        properties.set(key, value)
    return properties


class Grid:
    """Registries on one memory network, started and stopped by name."""

    def __init__(self, testcase: SynchronousTestCase) -> None:
        self.testcase = testcase
        self.network = MemoryNetwork()
        self.stores: dict[str, MemoryStore] = {}
        self.registries: dict[str, RegistryService] = {}
        self.ports: dict[str, tuple[int, int, int]] = {}

    def start(self, name: str, ports: Optional[tuple[int, int, int]] = None) -> RegistryService:
        ports = (
            ports
            or self.ports.get(name)
            or (MASTER_PORTS if name == "Master" else (5000 + 10 * len(self.ports),) * 3)
        )
        if ports[0] == ports[1]:
            ports = (ports[0], ports[0] + 1, ports[0] + 2)
        self.ports[name] = ports
        store = self.stores.setdefault(name, MemoryStore())
        config = RegistryConfig.from_properties(registry_properties(name, ports))
        registry = RegistryService(self.network.reactor, config, store)
        registry.privilegedStartService()
        registry.startService()
        self.testcase.successResultOf(registry.when_ready())
        for port, factory in zip(
            ports, (registry.client_factory, registry.server_factory, registry.internal_factory)
        ):
            self.network.listen(HOST, port, factory)
        self.registries[name] = registry
        return registry

    def kill(self, name: str) -> None:
        """The replica dies: its connections drop, its ports refuse."""
        registry = self.registries.pop(name)
        for port in self.ports[name]:
            self.network.kill(HOST, port)
        registry.stopService()
        self.network.flush()

    def run_until(self, done: Any, limit: float = 30.0) -> float:
        """Move time until C{done} (a predicate, or a Deferred with a result)."""
        if isinstance(done, Deferred):
            results: list[object] = []
            done.addBoth(lambda r: results.append(r) or r)
            return self.network.run_until(lambda: bool(results), limit=limit)
        return self.network.run_until(done, limit=limit)

    def settle(self, seconds: float = 1.0) -> None:
        self.network.advance(seconds)


def hello(name: str = "hello") -> Proxy:
    return proxy_from_string(f"{name}@HelloAdapter")


def has_object(registry: RegistryService, name: str) -> bool:
    return Identity(name) in registry.state.objects


def large_application(name: str = "Large", objects: int = 2000) -> str:
    """A descriptor of about 114 kB with C{objects} well-known objects in one replica group."""
    lines = "\n".join(
        f'      <object identity="{name}-object-{i:05d}" type="::Demo::Hello"/>'
        for i in range(objects)
    )
    return (
        f'<icegrid>\n  <application name="{name}">\n'
        f'    <replica-group id="{name}Group">\n{lines}\n    </replica-group>\n'
        "  </application>\n</icegrid>\n"
    )


def has_application(registry: RegistryService, name: str, objects: int = 2000) -> bool:
    """The application is deployed on C{registry}, its last object resolvable."""
    return name in registry.state.applications and (
        registry.state.find_object(Identity(f"{name}-object-{objects - 1:05d}")) is not None
    )


class ReplicationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)
        self.master = self.grid.start("Master")

    def give_replica1_a_foreign_database(self, name: str) -> None:
        """
        Replica1 will start on a database of another lineage (its own id),
        holding one object C{name}: only a snapshot can bring it in line.
        """
        foreign = MemoryStore()
        self.successResultOf(foreign.open())
        self.successResultOf(
            foreign.commit([object_mutation(Identity(name), ObjectInfo(hello(name)))])
        )
        self.successResultOf(foreign.close())
        self.grid.stores["Replica1"] = foreign

    def settled(self, d: Any) -> Any:
        """Let the network move until C{d} fires; return it."""
        self.grid.run_until(d)
        return d

    def test_slave_syncs_existing_state(self) -> None:
        """A fresh slave gets everything the master had before it joined."""
        for i in range(5):
            self.successResultOf(self.master.database.add_object(hello(f"o{i}"), "::Demo::Hello"))
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.assertEqual(sorted(slave.state.objects), sorted(self.master.state.objects))
        self.assertEqual(slave.store.serial, self.master.store.serial)
        self.assertEqual(slave.store.database_id, self.master.store.database_id)

    def test_write_returns_after_slaves_acknowledged(self) -> None:
        """When a master write returns, every live slave has applied it."""
        slaves = [self.grid.start("Replica1"), self.grid.start("Replica2")]
        self.grid.run_until(lambda: len(self.master.master.live_slaves()) == 2)
        d = self.master.database.add_object(hello(), "::Demo::Hello")
        seen_at_ack: list[bool] = []
        d.addCallback(lambda _: seen_at_ack.extend(has_object(s, "hello") for s in slaves))
        self.grid.run_until(d)
        self.assertEqual(seen_at_ack, [True, True])

    def test_slave_is_read_only(self) -> None:
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        failure = self.failureResultOf(slave.database.add_object(hello()), NotMasterError)
        self.assertIn("read-only", failure.getErrorMessage())
        self.assertIn("4061", failure.getErrorMessage())

    def test_registration_at_slave_is_forwarded_to_master(self) -> None:
        """An Ice server registering with a slave ends up registered everywhere."""
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        proxy = Proxy(Identity("dummy"), endpoints=(TcpEndpoint(HOST, 9999),))
        d = slave.database.set_adapter_direct_proxy("HelloAdapter", "", proxy)
        self.grid.run_until(d)
        self.successResultOf(d)
        self.assertIn("HelloAdapter", self.master.state.adapters)
        self.assertIn("HelloAdapter", slave.state.adapters)

    def test_replica_set_is_published_everywhere(self) -> None:
        """Every replica's Locator carries the client endpoints of all active replicas."""
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: len(slave.published.locator.endpoints) == 2)
        self.grid.run_until(lambda: len(self.master.published.locator.endpoints) == 2)
        internal = slave.state.find_object(Identity("InternalRegistry-Master", "DemoIceGrid"))
        self.assertEqual(internal.proxy.endpoints[0].port, MASTER_PORTS[2])
        self.assertIsNotNone(
            self.master.state.find_object(Identity("Registry-Replica1", "DemoIceGrid"))
        )

    def test_slave_keeps_serving_and_catches_up_after_master_restart(self) -> None:
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.successResultOf(self.settled(self.master.database.add_object(hello("before"))))
        self.grid.run_until(lambda: has_object(slave, "before"))
        self.grid.kill("Master")
        self.assertTrue(has_object(slave, "before"), "the slave still answers from its copy")
        self.assertIsNone(slave.slave.master, "the slave forgot the dead master's session")
        self.assertEqual(slave.slave.status.state, "disconnected")
        self.failureResultOf(
            slave.database.set_adapter_direct_proxy("A", "", Proxy(Identity("a"))),
            SyncError,
        )
        self.grid.settle(3)
        master = self.grid.start("Master")
        self.grid.run_until(lambda: "Replica1" in master.master.live_slaves(), limit=20)
        self.successResultOf(self.settled(master.database.add_object(hello("after"))))
        self.grid.run_until(lambda: has_object(slave, "after"), limit=20)

    def test_restarted_slave_gets_only_missed_changes(self) -> None:
        self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.grid.kill("Replica1")
        self.grid.run_until(lambda: not self.master.master.live_slaves())
        self.successResultOf(self.master.database.add_object(hello("missed")))
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: has_object(slave, "missed"))
        self.assertEqual(slave.store.serial, self.master.store.serial)

    def test_snapshot_in_chunks_for_a_foreign_database(self) -> None:
        """A slave holding another lineage is replaced by a chunked snapshot."""
        for batch in range(3):
            mutations = []
            for i in range(600):
                name = f"obj-{batch}-{i}-" + "x" * 40
                mutations.append(
                    object_mutation(Identity(name), ObjectInfo(hello(name), "::Demo::Hello"))
                )
            self.successResultOf(self.master.database.commit(mutations))
        self.give_replica1_a_foreign_database("stale")
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.assertEqual(len(slave.state.objects), 1800)
        self.assertNotIn(Identity("stale"), slave.state.objects)
        self.assertEqual(slave.store.database_id, self.master.store.database_id)

    def test_a_damaged_snapshot_installs_nothing_and_the_next_one_does(self) -> None:
        """
        A snapshot whose bytes are damaged on the way is refused whole: the
        slave keeps its old database, says why, and the next sync succeeds.
        """
        from gridreg.registry import snapshot_stream

        for i in range(300):
            self.successResultOf(self.master.database.add_object(hello(f"o{i}")))
        self.give_replica1_a_foreign_database("stale")
        real_puts = snapshot_stream.SnapshotEncoder.puts  # how the master encodes its pages
        damaged: list[bool] = []

        def damage_once(encoder: Any, kind: str, records: Any) -> bytes:
            data = real_puts(encoder, kind, records)
            if damaged or not data:
                return data
            damaged.append(True)
            return data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:]

        self.patch(snapshot_stream.SnapshotEncoder, "puts", damage_once)
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves(), limit=30)
        self.assertEqual(damaged, [True])
        self.assertEqual(len(slave.state.objects), 300)
        self.assertNotIn(Identity("stale"), slave.state.objects)
        self.assertEqual(slave.store.serial, self.master.store.serial)

    def test_large_change_reaches_live_slaves_before_the_write_returns(self) -> None:
        """
        A change far larger than an AMP value (a 114 kB descriptor) goes
        through the chunked channel: acknowledged only once the slaves have it.
        """
        xml = large_application()
        self.assertGreater(len(xml), 110_000)
        slaves = [self.grid.start("Replica1"), self.grid.start("Replica2")]
        self.grid.run_until(lambda: len(self.master.master.live_slaves()) == 2)
        d = self.master.database.add_application(xml)
        seen_at_ack: list[bool] = []
        d.addCallback(lambda _: seen_at_ack.extend(has_application(s, "Large") for s in slaves))
        self.grid.run_until(d)
        self.successResultOf(d)
        self.assertEqual(seen_at_ack, [True, True])
        self.assertEqual(sorted(self.master.master.live_slaves()), ["Replica1", "Replica2"])
        for slave in slaves:
            self.assertEqual(slave.store.serial, self.master.store.serial)

    def test_large_change_reaches_a_slave_that_missed_it(self) -> None:
        """Sync by missed changes carries large changes too."""
        self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.grid.kill("Replica1")
        self.grid.run_until(lambda: not self.master.master.live_slaves())
        self.successResultOf(
            self.settled(self.master.database.add_application(large_application()))
        )
        self.successResultOf(self.settled(self.master.database.add_object(hello("after"))))
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.assertTrue(has_application(slave, "Large"))
        self.assertTrue(has_object(slave, "after"))
        self.assertEqual(slave.store.serial, self.master.store.serial)

    def test_large_change_reaches_a_fresh_slave_by_snapshot(self) -> None:
        self.successResultOf(
            self.settled(self.master.database.add_application(large_application()))
        )
        self.give_replica1_a_foreign_database("x")
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.assertTrue(has_application(slave, "Large"))
        self.assertEqual(slave.store.database_id, self.master.store.database_id)

    def test_a_change_too_large_to_replicate_is_refused_before_commit(self) -> None:
        self.master.database.max_change_bytes = 50_000
        serial = self.master.store.serial
        failure = self.failureResultOf(
            self.master.database.add_application(large_application()), RegistryUserError
        )
        self.assertIn("at most 50000", failure.getErrorMessage())
        self.assertEqual(self.master.store.serial, serial)
        self.assertNotIn("Large", self.master.state.applications)

    def test_a_slave_out_of_sync_says_why_and_recovers(self) -> None:
        """
        A slave whose disk refuses a change is shown as failed, with the
        reason, on the master and on itself; once the disk accepts writes
        again it syncs by itself.
        """
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        store = self.grid.stores["Replica1"]
        real_apply = store.apply_many

        def disk_full(changes: Any, **kwargs: Any) -> Deferred[None]:
            return fail(StoreError("registry.sqlite: database or disk is full"))

        self.patch(store, "apply_many", disk_full)
        self.successResultOf(self.settled(self.master.database.add_object(hello("during"))))

        def status(registry: RegistryService, name: str) -> dict[str, Any]:
            return next(r for r in registry.replica_info() if r["name"] == name)

        seen = status(self.master, "Replica1")
        self.assertEqual((seen["state"], seen["alive"]), ("failed", False))
        self.assertIn("disk is full", seen["reason"])
        self.assertEqual(status(slave, "Replica1")["state"], "failed")
        self.assertIn("disk is full", status(slave, "Replica1")["reason"])
        self.assertFalse(has_object(slave, "during"))

        self.patch(store, "apply_many", real_apply)
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves(), limit=20)
        self.assertTrue(has_object(slave, "during"))
        self.assertEqual(status(self.master, "Replica1")["state"], "live")
        self.assertEqual(status(slave, "Replica1")["state"], "live")

    def test_hung_slave_is_dropped_and_write_completes(self) -> None:
        self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        # the slave stops reading (SIGSTOP): its session with the master freezes
        for link in self.grid.network.links_to(HOST, MASTER_PORTS[2]):
            link.frozen = True
        d = self.master.database.add_object(hello())
        elapsed = self.grid.run_until(d, limit=10)
        self.successResultOf(d)
        self.assertLess(elapsed, 3.0)
        self.assertNotIn("Replica1", self.master.master.live_slaves())
        seen = {r["name"]: r for r in self.master.replica_info()}["Replica1"]
        self.assertTrue(
            seen["reason"].startswith(
                ("no acknowledgement: no answer within 2 s", "nothing heard from it for")
            ),
            seen["reason"],
        )
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_both_sides_notice_a_silent_session_without_any_write(self) -> None:
        """
        A session cut without a reset (a partition): the master drops the
        slave after a session timeout of silence, the slave drops the master
        after an unanswered keepalive, and they meet again once it heals.
        """
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        links = self.grid.network.links_to(HOST, MASTER_PORTS[2])
        for link in links:
            link.frozen = True
        elapsed = self.grid.run_until(
            lambda: "Replica1" not in self.master.master.live_slaves(), limit=10
        )
        self.assertLessEqual(elapsed, 2 + 0.5 + 0.1)  # ReplicaSessionTimeout + one check
        seen = {r["name"]: r for r in self.master.replica_info()}["Replica1"]
        self.assertIn("nothing heard from it", seen["reason"])
        self.grid.run_until(lambda: slave.slave.master is None, limit=10)
        for link in links:
            link.frozen = False
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves(), limit=20)
        self.assertEqual(slave.slave.status.state, "live")

    def test_duplicate_replica_name_refused(self) -> None:
        """A second live replica with a taken name, or a second Master, is refused."""
        self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        store = self.master.store
        for name in ("Replica1", "Master"):
            with self.assertRaises(DuplicateReplicaError) as caught:
                self.master.master.register(object(), name, {}, store.database_id, 0)
            self.assertIn(name, str(caught.exception))

    def test_second_master_refuses_to_run(self) -> None:
        """A Master started while another one answers stops itself."""
        conflicts: list[RegistryService] = []
        self.patch(RegistryService, "on_conflict", lambda registry: conflicts.append(registry))
        self.grid.settle(0.5)
        self.assertEqual(conflicts, [], "the first master is alone")
        self.grid.ports["Master2"] = (7001, 7002, 7003)
        config = RegistryConfig.from_properties(
            registry_properties("Master", self.grid.ports["Master2"])
        )
        second = RegistryService(self.grid.network.reactor, config, MemoryStore())
        second.privilegedStartService()
        second.startService()
        self.grid.run_until(lambda: bool(conflicts), limit=10)
        self.assertEqual(conflicts, [second])

    def test_fresh_slave_serves_clients_only_once_synced(self) -> None:
        """An empty slave refuses Ice connections until its first sync is done."""
        self.successResultOf(self.settled(self.master.database.add_object(hello())))
        slave = self.grid.start("Replica1")
        self.assertIsNone(slave.client_factory.buildProtocol(None))
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.grid.settle(0.1)
        self.assertIsNotNone(slave.client_factory.buildProtocol(None))
        self.assertTrue(has_object(slave, "hello"))
