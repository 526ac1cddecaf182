# -*- test-case-name: tests.test_slave_role -*-
"""
The slave role (L{gridreg.registry.slave_role}) on a memory network: what a
slave answers about itself and others, that it refuses what only a master
does, when it serves Ice clients, and how a registration forwarded to the
master comes back.
"""

from __future__ import annotations

from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.defer import succeed
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.exceptions import AdapterNotFoundException
from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.protocol.errors import NotMasterError, RegistryUserError
from gridreg.registry import slave_role
from gridreg.registry.epochs import EpochHistory
from gridreg.registry.roles import IReplicaRole
from gridreg.store.records import Change, Mutation
from tests.test_replication import HOST, Grid, hello


class OneSlave(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)
        self.master = self.grid.start("Master")
        self.slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.role = self.slave.role

    def settled(self, d: Any) -> Any:
        self.grid.run_until(d)
        return d


class SlaveRoleTests(OneSlave):
    def test_a_slave_does_not_act_as_master(self) -> None:
        self.assertFalse(self.role.is_master)
        answer = self.role.hello()
        self.assertIs(answer["master"], False)
        epoch = EpochHistory.from_meta(self.master.state.meta).current
        self.assertEqual(answer["epoch"], epoch.to_wire())
        self.assertEqual(self.role.epoch(), epoch)

    def test_slaves_and_keepalives_are_refused_naming_the_master(self) -> None:
        with self.assertRaises(NotMasterError) as caught:
            self.role.register_replica(object(), "Replica2", {}, "db", 0, self.role.epoch())
        self.assertIn("`Replica1' is a read-only slave", str(caught.exception))
        self.assertIn("4061", str(caught.exception))
        with self.assertRaises(NotMasterError):
            self.role.keepalive(object(), 0)
        self.role.replica_lost(object())

    def test_status_and_serial(self) -> None:
        self.assertEqual(self.role.status_of("Replica1").state, "live")
        self.assertEqual(self.role.status_of("Master").state, "live")
        self.assertIsNone(self.role.status_of("Replica9"))
        self.successResultOf(self.settled(self.master.database.add_object(hello())))
        self.assertEqual(self.role.serial_of("Replica1"), self.master.store.serial)
        self.assertIsNone(self.role.serial_of("Master"))

    def test_a_slave_with_data_serves_clients_at_once(self) -> None:
        """Only an empty slave waits for its first sync before serving Ice clients."""
        self.successResultOf(self.settled(self.master.database.add_object(hello())))
        self.grid.run_until(lambda: self.slave.store.serial == self.master.store.serial)
        self.grid.kill("Replica1")
        self.grid.kill("Master")
        slave = self.grid.start("Replica1")
        self.assertTrue(slave.client_factory.accepting)
        self.assertTrue(slave.server_factory.accepting)
        self.assertIsNotNone(slave.client_factory.buildProtocol(None))

    def test_an_empty_slave_serves_clients_once_listed_active(self) -> None:
        self.grid.kill("Replica1")
        self.grid.stores.pop("Replica1")
        slave = self.grid.start("Replica1")
        self.assertFalse(slave.client_factory.accepting)
        self.assertFalse(slave.server_factory.accepting)
        self.grid.run_until(lambda: slave.client_factory.accepting)
        self.assertTrue(slave.server_factory.accepting)
        self.assertIn("Replica1", slave.directory.active)

    def empty_slave_alone(self) -> tuple[Any, list[dict[str, Any]]]:
        """Replica1 started again on an empty store, the master down; its role's log."""
        self.grid.kill("Replica1")
        self.grid.stores.pop("Replica1")
        self.grid.kill("Master")
        events: list[dict[str, Any]] = []
        self.patch(slave_role.SlaveRole, "log", Logger(observer=events.append))
        return self.grid.start("Replica1"), events

    def test_an_empty_slave_does_not_serve_from_a_snapshot_alone(self) -> None:
        """
        Its state holds the master's snapshot, but the master acknowledges
        writes without it until it lists it: a client answered from the
        snapshot would miss them. A commit that fails keeps it closed.
        """
        slave, events = self.empty_slave_alone()
        slave.role._snapshot_loaded(True)
        self.assertFalse(slave.client_factory.accepting)
        self.assertFalse(slave.server_factory.accepting)
        slave.role._snapshot_loaded(False)
        self.assertFalse(slave.client_factory.accepting, "its store is still empty")
        self.assertEqual(events, [])

    def commit_on(self, slave: Any, serial: int) -> None:
        """The slave's store takes change C{serial} (an object put), as a push would."""
        mutation = Mutation("object", f'["c", "o{serial}"]', {"proxy": "x"})
        self.settled(slave.store.apply(Change(serial, (mutation,))))

    def test_an_empty_slave_serves_once_it_holds_the_listed_serial(self) -> None:
        """Listed at the master's serial 2, it waits for 2 to be durable here, then serves."""
        slave, events = self.empty_slave_alone()
        slave.role._set_active(["Master", "Replica1"], 2)
        self.assertFalse(slave.client_factory.accepting, "the master acknowledged 1 and 2 without it")
        self.commit_on(slave, 1)
        self.assertFalse(slave.client_factory.accepting)
        self.commit_on(slave, 2)
        self.assertTrue(slave.client_factory.accepting)
        self.assertTrue(slave.server_factory.accepting)
        self.assertEqual(
            [formatEvent(e) for e in events], ["Replica Replica1 is in sync: serving Ice clients"]
        )
        slave.role._set_active(["Master", "Replica1"], 2)
        self.assertEqual(len(events), 1, "said once")

    def test_an_empty_slave_unlisted_before_it_holds_the_serial_stays_closed(self) -> None:
        slave, events = self.empty_slave_alone()
        slave.role._set_active(["Master", "Replica1"], 1)
        slave.role._set_active([])  # the master lost meanwhile
        self.commit_on(slave, 1)
        self.assertFalse(slave.client_factory.accepting)
        slave.role._set_active(["Master", "Replica1"], 1)
        self.assertTrue(slave.client_factory.accepting, "listed again, it holds the serial")

    def test_a_slave_with_data_keeps_serving_when_a_snapshot_fails(self) -> None:
        """Its state went back to its own database, which it served before."""
        self.successResultOf(self.settled(self.master.database.add_object(hello())))
        self.grid.run_until(lambda: self.slave.store.serial == self.master.store.serial)
        self.slave.role._snapshot_loaded(False)
        self.assertTrue(self.slave.client_factory.accepting)

    def test_an_empty_slave_stays_closed_until_it_is_listed(self) -> None:
        slave, events = self.empty_slave_alone()
        slave.role._set_active(["Master"])
        self.assertFalse(slave.client_factory.accepting, "the master lost before any sync")
        self.assertEqual(slave.directory.active, ["Replica1", "Master"])
        slave.role._set_active(["Master", "Replica1"])
        self.assertTrue(slave.client_factory.accepting)
        self.assertEqual(
            [formatEvent(e) for e in events], ["Replica Replica1 is in sync: serving Ice clients"]
        )
        slave.role._set_active(["Master", "Replica1"])
        self.assertEqual(len(events), 1, "said once")

    def test_a_changed_replica_record_is_published_at_once(self) -> None:
        """
        The master's endpoints change in the replicated records (it moved):
        the slave's InternalRegistry-Master and its refusals follow the record.
        """
        moved = {
            "client": "tcp -h 127.0.0.1 -p 7061",
            "server": "tcp -h 127.0.0.1 -p 7062",
            "internal": "tcp -h 127.0.0.1 -p 7063",
        }
        d = self.master.database.commit([Mutation("replica", "Master", moved)])
        self.successResultOf(self.settled(d))
        self.grid.run_until(lambda: self.slave.store.serial == self.master.store.serial)
        internal = self.slave.state.find_object(Identity("InternalRegistry-Master", "DemoIceGrid"))
        self.assertEqual(internal.proxy.endpoints[0].port, 7063)
        self.assertIn("-p 7061", self.role.write_refusal())

    def test_the_role_interface(self) -> None:
        self.assertTrue(verifyObject(IReplicaRole, self.role))

    def test_a_stopped_slave_stops_its_session(self) -> None:
        self.successResultOf(self.settled(self.role.stop()))
        self.assertNotIn("Replica1", self.master.master.live_slaves())


class ForwardingTests(OneSlave):
    def forward(self, answer: dict[str, str]) -> Any:
        self.patch(self.role.replication, "forward_registration", lambda *args: succeed(answer))
        proxy = Proxy(Identity("dummy"), endpoints=(TcpEndpoint(HOST, 9999),))
        return self.role._forward_registration("A", "", proxy)

    def test_no_exception_is_success(self) -> None:
        self.assertIsNone(self.successResultOf(self.forward({"exception": "", "reason": ""})))

    def test_an_ice_exception_of_the_master_is_raised_here(self) -> None:
        d = self.forward({"exception": AdapterNotFoundException.type_id, "reason": ""})
        self.failureResultOf(d, AdapterNotFoundException)

    def test_an_exception_with_members_becomes_a_user_error(self) -> None:
        d = self.forward(
            {"exception": "::IceGrid::DeploymentException", "reason": "bad descriptor"}
        )
        failure = self.failureResultOf(d, RegistryUserError)
        self.assertEqual(
            failure.getErrorMessage(), "::IceGrid::DeploymentException: bad descriptor"
        )

    def test_an_unknown_exception_becomes_a_user_error(self) -> None:
        failure = self.failureResultOf(
            self.forward({"exception": "::X::Odd", "reason": "why"}), RegistryUserError
        )
        self.assertEqual(failure.getErrorMessage(), "::X::Odd: why")

    def test_a_removal_forwards_no_proxy(self) -> None:
        sent: list[tuple[Any, ...]] = []
        self.patch(
            self.role.replication,
            "forward_registration",
            lambda *args: sent.append(args) or succeed({"exception": "", "reason": ""}),
        )
        self.successResultOf(self.role._forward_registration("A", "G", None))
        self.assertEqual(sent, [("A", "G", "")])

    def test_a_removal_at_the_slave_reaches_the_master(self) -> None:
        proxy = Proxy(Identity("dummy"), endpoints=(TcpEndpoint(HOST, 9999),))
        self.successResultOf(
            self.settled(self.slave.database.set_adapter_direct_proxy("A", "", proxy))
        )
        self.assertIn("A", self.master.state.adapters)
        self.successResultOf(
            self.settled(self.slave.database.set_adapter_direct_proxy("A", "", None))
        )
        self.assertNotIn("A", self.master.state.adapters)
