"""
The registry's side of node sessions, on a memory network with fake nodes:
registration and deployment, takeover, session timeouts, on-demand
activation for locate requests (at the master and at a slave), managed
servers' registrations relayed to their node, and the replica list sent to
nodes.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import ReplyStatus, decode_reply
from gridreg.ice.types import Identity, OperationMode
from gridreg.registry.service import RegistryService
from tests._fake_node import FakeNode, Locate, call_servant, connect, direct
from tests.test_fencing import PORTS, Grid

NODE_TIMEOUT = 4

APP = """<icegrid><application name="App">
  <replica-group id="Group">
    <load-balancing type="adaptive" load-sample="5"/>
  </replica-group>
  <node name="node1">
    <server id="S1" exe="/bin/s1" activation="on-demand" activation-timeout="2">
      <adapter name="A" id="A1" endpoints="tcp">
        <object identity="obj1" type="::Demo::Hello"/>
      </adapter>
    </server>
    <server id="M1" exe="/bin/m1" activation="manual">
      <adapter name="M" id="MA" endpoints="tcp"/>
    </server>
    <server id="G1" exe="/bin/g" activation="on-demand">
      <adapter name="G" id="G1.A" endpoints="tcp" replica-group="Group"/>
    </server>
  </node>
  <node name="node2">
    <server id="S2" exe="/bin/s2" activation="on-demand">
      <adapter name="A" id="A2" endpoints="tcp">
        <object identity="obj2" type="::Demo::Hello"/>
      </adapter>
    </server>
    <server id="G2" exe="/bin/g" activation="on-demand">
      <adapter name="G" id="G2.A" endpoints="tcp" replica-group="Group"/>
    </server>
  </node>
  <node name="node3">
    <server id="S3" exe="/bin/s3" activation="on-demand">
      <adapter name="A" id="A3" endpoints="tcp"/>
    </server>
  </node>
</application></icegrid>"""


class NodeGrid(Grid):
    """A grid whose replicas drop silent nodes after NODE_TIMEOUT seconds."""

    def start(self, place: str, *args: Any, **extra: str) -> RegistryService:  # type: ignore[override]
        extra.setdefault("IceGrid.Registry.NodeSessionTimeout", str(NODE_TIMEOUT))
        return super().start(place, *args, **extra)

    def node(self, place: str, name: str) -> FakeNode:
        """A fake node named C{name}, registered with the replica at C{place}."""
        node = connect(self.network, PORTS[place][2], FakeNode(name))
        d = node.register()
        self.run_until(d)
        self.testcase.successResultOf(d)
        self.network.flush()
        return node

    def wait(self, d: Deferred[Any]) -> Any:
        self.run_until(d)
        return self.testcase.successResultOf(d)


class NodeTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = NodeGrid(self)
        self.master = self.grid.start("Master")
        self.grid.run_until(lambda: self.master.role.opened)
        self.grid.wait(self.master.database.add_application(APP))

    def with_slave(self) -> RegistryService:
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        return slave

    def locate(self, registry: RegistryService, adapter_id: str) -> Locate:
        locate = Locate(registry, adapter_id)
        self.grid.run_until(lambda: locate.answered)
        return locate


class RegistrationTests(NodeTestCase):
    def test_registration_answers_and_sends_the_nodes_servers(self) -> None:
        node = self.grid.node("Master", "node1")
        answer = node.answer
        assert answer is not None
        self.assertEqual(answer["replica"], "Master")
        self.assertEqual(answer["session_timeout"], NODE_TIMEOUT)
        self.assertEqual(answer["epoch"], self.master.role.epoch().to_wire())
        self.assertEqual([r["name"] for r in json.loads(answer["replicas"])], ["Master"])
        serial, servers = node.deployments[-1]
        self.assertEqual(serial, self.master.store.serial)
        self.assertEqual(sorted(s["descriptor"]["id"] for s in servers), ["G1", "M1", "S1"])
        self.assertEqual({s["application"] for s in servers}, {"App"})
        self.assertEqual(node.deployed_servers()["S1"]["descriptor"]["activation_timeout"], 2)

    def test_a_node_without_servers_gets_an_empty_deployment(self) -> None:
        node = self.grid.node("Master", "idle")
        self.assertEqual(node.deployments, [(self.master.store.serial, [])])

    def test_a_second_registration_takes_over_at_once(self) -> None:
        first = self.grid.node("Master", "node1")
        self.grid.wait(first.adapter_up("A1", 7001))
        self.assertEqual(self.locate(self.master, "A1").ports(), [7001])
        second = self.grid.node("Master", "node1")
        self.assertTrue(first.lost, "the old connection is closed")
        self.assertFalse(second.lost)
        # the old session's live state is forgotten: S1 gets activated again
        second.ports["S1"] = 7002
        self.assertEqual(self.locate(self.master, "A1").ports(), [7002])
        self.assertEqual(second.activations, ["S1"])

    def test_a_silent_node_is_dropped_and_its_adapters_vanish(self) -> None:
        node = self.grid.node("Master", "node1")
        self.grid.wait(node.adapter_up("A1", 7001))
        for _ in range(4):  # keepalives keep the session
            self.grid.network.advance(NODE_TIMEOUT / 2)
            self.grid.wait(node.keepalive(0.5, 0.5, 0.5))
        self.assertEqual(self.locate(self.master, "A1").ports(), [7001])
        self.grid.network.advance(NODE_TIMEOUT + 1.5)
        self.assertTrue(node.lost)
        self.assertNotIn("node1", self.master.nodes.sessions)
        self.assertIsNone(self.locate(self.master, "A1").ports())

    def test_live_state_invalidates_cached_answers(self) -> None:
        node = self.grid.node("Master", "node1")
        self.grid.wait(node.adapter_up("A1", 7001))
        self.assertEqual(self.locate(self.master, "A1").ports(), [7001])
        self.grid.wait(node.adapter_up("A1", 7005))
        self.assertEqual(self.locate(self.master, "A1").ports(), [7005])


class ActivationTests(NodeTestCase):
    def test_concurrent_locates_share_one_activation_at_the_master(self) -> None:
        node = self.grid.node("Master", "node1")
        node.ports["S1"] = 7101
        locates = [Locate(self.master, "A1", i) for i in (1, 2)]
        self.grid.run_until(lambda: all(loc.answered for loc in locates))
        self.assertEqual([loc.ports() for loc in locates], [[7101], [7101]])
        self.assertEqual(node.activations, ["S1"])

    def test_concurrent_locates_share_one_activation_at_a_slave(self) -> None:
        slave = self.with_slave()
        node = self.grid.node("Replica1", "node1")
        node.ports["S1"] = 7102
        locates = [Locate(slave, "A1", i) for i in (1, 2, 3)]
        self.grid.run_until(lambda: all(loc.answered for loc in locates))
        self.assertEqual([loc.ports() for loc in locates], [[7102]] * 3)
        self.assertEqual(node.activations, ["S1"])

    def test_a_server_that_fails_to_start_gives_a_null_proxy(self) -> None:
        """IceGrid 3.7.8: exe not found -> findAdapterById answers null."""
        node = self.grid.node("Master", "node1")
        node.failing["S1"] = "cannot execute `/bin/s1': No such file or directory"
        locate = self.locate(self.master, "A1")
        self.assertEqual(locate.status(), ReplyStatus.SUCCESS)
        self.assertIsNone(locate.ports())

    def test_an_activation_that_times_out_gives_a_null_proxy(self) -> None:
        node = self.grid.node("Master", "node1")
        node.hanging.add("S1")
        locate = Locate(self.master, "A1")
        for _ in range(4):
            self.grid.network.advance(1.0)
            self.grid.wait(node.keepalive())
        self.assertFalse(locate.answered)
        elapsed = self.grid.run_until(lambda: locate.answered, limit=10)
        self.assertLessEqual(elapsed, 2 + 5)
        self.assertIsNone(locate.ports())

    def test_manual_disabled_and_unconnected_servers_are_not_started(self) -> None:
        node = self.grid.node("Master", "node1")
        self.assertIsNone(self.locate(self.master, "MA").ports())
        self.grid.wait(
            node.live(servers={"S1": {"state": "inactive", "pid": None, "enabled": False}})
        )
        self.assertIsNone(self.locate(self.master, "A1").ports())
        self.assertIsNone(self.locate(self.master, "A3").ports())  # node3 never registered
        self.assertEqual(node.activations, [])

    def test_a_well_known_object_is_found_without_activation(self) -> None:
        node = self.grid.node("Master", "node1")

        def write(out: OutputStream) -> None:
            out.write_identity(Identity("obj1"))

        transport = call_servant(
            self.master, Identity("Locator", "DemoIceGrid"), "findObjectById", write
        )
        self.grid.network.flush()
        reply = decode_reply(transport.value()[14:])
        proxy = InputStream(reply.payload, reply.encoding).read_proxy()
        assert proxy is not None
        self.assertEqual(proxy.adapter_id, "A1")
        self.assertEqual(node.activations, [])

    def test_unknown_adapters_are_still_not_found(self) -> None:
        self.grid.node("Master", "node1")
        self.assertEqual(self.locate(self.master, "Nobody").status(), ReplyStatus.USER_EXCEPTION)

    def test_a_group_activates_its_on_demand_members(self) -> None:
        node1 = self.grid.node("Master", "node1")
        node2 = self.grid.node("Master", "node2")
        node1.ports["G1"] = 7201
        node2.failing["G2"] = "cannot execute `/bin/g'"
        self.assertEqual(self.locate(self.master, "Group").ports(), [7201])
        self.assertEqual((node1.activations, node2.activations), (["G1"], ["G2"]))

    def test_a_group_whose_members_all_fail_gives_a_null_proxy(self) -> None:
        node1 = self.grid.node("Master", "node1")
        node1.failing["G1"] = "cannot execute `/bin/g'"
        self.assertIsNone(self.locate(self.master, "Group").ports())  # node2 is down


class RelayTests(NodeTestCase):
    def register(self, registry: RegistryService, adapter_id: str, port: int) -> Any:
        def write(out: OutputStream) -> None:
            out.write_string(adapter_id)
            out.write_proxy(direct(port))

        transport = call_servant(
            registry,
            Identity("LocatorRegistry", "DemoIceGrid"),
            "setAdapterDirectProxy",
            write,
            adapter="server",
            mode=OperationMode.IDEMPOTENT,
        )
        self.grid.run_until(lambda: len(transport.value()) > 14)
        return transport

    def test_a_managed_servers_registration_goes_to_its_node_and_every_replica(self) -> None:
        slave = self.with_slave()
        at_slave = self.grid.node("Replica1", "node1")
        at_master = self.grid.node("Master", "node1")
        serial = self.master.store.serial
        self.register(slave, "A1", 7301)
        self.assertEqual(at_slave.calls, [("adapter", {"adapter": "A1", "replica_group": ""})])
        # the real node pushes its live state to every replica it has a session with
        self.grid.wait(at_master.adapter_up("A1", 7301))
        self.assertEqual(self.locate(slave, "A1").ports(), [7301])
        self.assertEqual(self.locate(self.master, "A1").ports(), [7301])
        self.assertEqual(self.master.store.serial, serial, "no master write")
        self.assertNotIn("A1", self.master.state.adapters)

    def test_without_a_node_session_a_registration_is_a_replicated_write(self) -> None:
        self.register(self.master, "A3", 7302)
        self.assertIn("A3", self.master.state.adapters)
        self.assertEqual(self.locate(self.master, "A3").ports(), [7302])

    def test_an_unknown_servers_process_proxy_is_refused(self) -> None:
        def write(out: OutputStream) -> None:
            out.write_string("Nobody")
            out.write_proxy(direct(1))

        transport = call_servant(
            self.master,
            Identity("LocatorRegistry", "DemoIceGrid"),
            "setServerProcessProxy",
            write,
            adapter="server",
            mode=OperationMode.IDEMPOTENT,
        )
        self.grid.network.flush()
        self.assertEqual(decode_reply(transport.value()[14:]).status, ReplyStatus.USER_EXCEPTION)


class DeploymentTests(NodeTestCase):
    def test_an_update_is_sent_only_to_affected_nodes(self) -> None:
        node1 = self.grid.node("Master", "node1")
        node2 = self.grid.node("Master", "node2")
        updated = APP.replace('exe="/bin/s2"', 'exe="/bin/s2-new"')
        self.grid.wait(self.master.database.add_application(updated, True))
        self.grid.network.flush()
        self.assertEqual(len(node1.deployments), 1)
        self.assertEqual(len(node2.deployments), 2)
        self.assertEqual(node2.deployments[-1][0], self.master.store.serial)
        self.assertEqual(node2.deployed_servers()["S2"]["descriptor"]["exe"], "/bin/s2-new")

    def test_a_slave_deploys_what_it_replicated(self) -> None:
        slave = self.with_slave()
        node = self.grid.node("Replica1", "node2")
        self.grid.wait(self.master.database.remove_application("App"))
        self.grid.run_until(lambda: len(node.deployments) == 2)
        self.assertEqual(node.deployments[-1], (slave.store.serial, []))

    def test_the_master_tells_its_nodes_when_a_slave_joins(self) -> None:
        node = self.grid.node("Master", "node1")
        self.with_slave()
        self.grid.run_until(lambda: bool(node.replicas))
        self.assertEqual([r["name"] for r in node.replicas[-1]], ["Master", "Replica1"])
        self.assertIn(str(PORTS["Replica1"][2]), node.replicas[-1][1]["internal"])


class LoadTests(NodeTestCase):
    def test_adaptive_groups_order_members_by_their_nodes_load(self) -> None:
        node1 = self.grid.node("Master", "node1")
        node2 = self.grid.node("Master", "node2")
        self.grid.wait(node1.adapter_up("G1.A", 7401))
        self.grid.wait(node2.adapter_up("G2.A", 7402))
        # the group's policy uses the 5-minute sample
        self.grid.wait(node1.keepalive(0.1, 0.9, 0.1))
        self.grid.wait(node2.keepalive(0.9, 0.2, 0.9))
        for _ in range(3):
            self.assertEqual(self.locate(self.master, "Group").ports(), [7402, 7401])
        self.grid.wait(node2.keepalive(0.9, 1.5, 0.9))
        self.assertEqual(self.locate(self.master, "Group").ports(), [7401, 7402])

    def test_members_without_a_node_session_come_last(self) -> None:
        node1 = self.grid.node("Master", "node1")
        self.grid.wait(node1.adapter_up("G1.A", 7401))
        self.grid.wait(node1.keepalive(3.0, 3.0, 3.0))
        self.grid.wait(self.master.database.set_adapter_direct_proxy("G2.A", "Group", direct(7402)))
        for _ in range(3):
            self.assertEqual(self.locate(self.master, "Group").ports(), [7401, 7402])

    def least_loaded(self, sample: int) -> str:
        def write(out: OutputStream) -> None:
            out.write_string("::Demo::Hello")
            out.write_enum(sample, 2)

        transport = call_servant(
            self.master,
            Identity("Query", "DemoIceGrid"),
            "findObjectByTypeOnLeastLoadedNode",
            write,
        )
        self.grid.network.flush()
        reply = decode_reply(transport.value()[14:])
        proxy = InputStream(reply.payload, reply.encoding).read_proxy()
        assert proxy is not None
        return proxy.identity.name

    def test_find_object_by_type_on_least_loaded_node(self) -> None:
        node1 = self.grid.node("Master", "node1")
        node2 = self.grid.node("Master", "node2")
        self.grid.wait(node1.keepalive(0.1, 0.8, 0.8))
        self.grid.wait(node2.keepalive(0.5, 0.2, 0.2))
        for _ in range(3):
            self.assertEqual(self.least_loaded(0), "obj1")
            self.assertEqual(self.least_loaded(1), "obj2")
            self.assertEqual(self.least_loaded(2), "obj2")
