"""
A node's sessions with the replicas, on a memory network against replicas
played by the test: it registers with every replica it learns of, pushes
its live state to all of them, takes a deployment once however many replicas
send it, re-registers when a replica forgot it, and refuses a stale master.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.stringify import proxy_from_string
from gridreg.node.config import NodeConfig
from gridreg.node.service import NodeService
from gridreg.node.sessions import LIVE_STATE_BATCH, batches
from gridreg.protocol.chunking import (
    TransferReceiver,
    TransferResponder,
    new_transfer_id,
    send_blob,
)
from gridreg.protocol.commands import PROTOCOL_VERSION, Hello
from gridreg.protocol.errors import NotFoundError
from gridreg.protocol.node_commands import (
    ActivateServer,
    AdapterRegistered,
    DeployServers,
    NodeKeepAlive,
    NodeLiveState,
    RegisterNode,
    ReplicasChanged,
)
from gridreg.registry.descriptors import ServerDescriptor, server_to_json
from gridreg.registry.epochs import Epoch
from gridreg.registry.state import encode_proxy_field
from tests._helpers import MemoryNetwork

HOST = "127.0.0.1"
PORTS = {"Master": 4063, "Replica1": 5063, "Replica2": 6063}


def internal(name: str) -> str:
    return f"tcp -h {HOST} -p {PORTS[name]}"


class FakeServers:
    """The node's servers, as the sessions see them."""

    def __init__(self) -> None:
        self.deployed: list[list[tuple[str, ServerDescriptor]]] = []
        self.activations: list[str] = []
        self.registered: list[tuple[str, str, Any]] = []
        self.on_live_state: Any = None
        self.states: dict[str, dict] = {}
        self.adapters: dict[str, dict] = {}

    def deploy(self, entries: list, live: frozenset[str] = frozenset()) -> Deferred[None]:
        self.deployed.append(entries)
        return succeed(None)

    def activate(self, server_id: str) -> Deferred[int]:
        self.activations.append(server_id)
        self.states[server_id] = {"state": "active", "pid": 42, "enabled": True}
        self.on_live_state({server_id: self.states[server_id]}, {})
        return succeed(42)

    def adapter_registered(self, adapter_id: str, group: str, proxy: Any) -> None:
        self.registered.append((adapter_id, group, proxy))
        entry = {"proxy": encode_proxy_field(proxy) if proxy else "", "replica_group": group}
        self.adapters[adapter_id] = entry
        self.on_live_state({}, {adapter_id: entry})

    def live_state(self) -> tuple[dict, dict]:
        return dict(self.states), dict(self.adapters)

    def always_servers(self) -> dict:
        return {}

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop_all(self) -> Deferred[None]:
        return succeed(None)


class FakeReplica(TransferResponder, amp.AMP):
    """One replica's side of a node session, as the registry will play it."""

    def __init__(self, home: "ReplicaHome") -> None:
        super().__init__()
        self.home = home
        self.transfers = TransferReceiver(1 << 20)

    @Hello.responder
    def hello(self, version: int, role: str, name: str) -> dict[str, Any]:
        self.home.hellos.append((role, name))
        return {
            "version": PROTOCOL_VERSION,
            "instance": "DemoIceGrid",
            "replica": self.home.name,
            "master": self.home.name == "Master",
            "epoch": self.home.epoch,
        }

    @RegisterNode.responder
    def register_node(self, name: str, info: str, epoch: str) -> dict[str, Any]:
        self.home.sessions.append(self)
        self.home.registrations.append((name, json.loads(info), epoch))
        return {
            "replica": self.home.name,
            "replicas": json.dumps(
                [{"name": n, "internal": internal(n)} for n in self.home.replicas]
            ),
            "session_timeout": 8,
            "epoch": self.home.epoch,
        }

    @NodeKeepAlive.responder
    def keepalive(self, load1: float, load5: float, load15: float) -> dict[str, Any]:
        if self.home.forget:
            self.home.forget = False
            raise NotFoundError("no session for this node")
        self.home.loads.append((load1, load5, load15))
        return {"epoch": self.home.epoch}

    @NodeLiveState.responder
    def live_state(self, servers: str, adapters: str, full: bool) -> dict[str, Any]:
        self.home.live.append((json.loads(servers), json.loads(adapters), full))
        return {}

    def call(self, command: Any, **kwargs: Any) -> Deferred[Any]:
        return self.callRemote(command, **kwargs)

    def deploy(self, servers: list[ServerDescriptor], serial: int) -> Deferred[Any]:
        blob = json.dumps(
            [{"application": "App", "descriptor": server_to_json(s)} for s in servers]
        ).encode()
        transfer = new_transfer_id("deploy")
        return send_blob(self.call, transfer, blob).addCallback(
            lambda _: self.callRemote(DeployServers, transfer=transfer, serial=serial)
        )


class ReplicaHome(Factory):
    noisy = False

    def __init__(self, name: str, replicas: list[str], epoch: str = "1:aaaa") -> None:
        self.name = name
        self.replicas = replicas
        self.epoch = epoch
        self.hellos: list[tuple[str, str]] = []
        self.registrations: list[tuple[str, dict, str]] = []
        self.sessions: list[FakeReplica] = []
        self.loads: list[tuple[float, float, float]] = []
        self.live: list[tuple[dict, dict, bool]] = []
        self.forget = False

    def buildProtocol(self, addr: Any) -> FakeReplica:
        return FakeReplica(self)

    @property
    def session(self) -> FakeReplica:
        return self.sessions[-1]


def node_config() -> NodeConfig:
    properties = Properties()
    properties.set("IceGrid.Node.Name", "node1")
    properties.set("IceGrid.Node.Data", "node1-data")
    properties.set("Ice.Default.Locator", f"DemoIceGrid/Locator:tcp -h {HOST} -p 4061")
    return NodeConfig.from_properties(properties)


class NodeSessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork()
        self.homes: dict[str, ReplicaHome] = {}
        self.servers = FakeServers()
        self.node = NodeService(
            self.network.reactor, node_config(), servers=self.servers, load=lambda: (0.5, 0.25, 0.125)
        )
        self.servers.on_live_state = self.node._live_state_changed
        self.sessions = self.node.sessions

    def tearDown(self) -> None:
        if self.node.running:
            self.node.stopService()
        self.network.flush()

    def serve(self, name: str, replicas: Optional[list[str]] = None, **kwargs: Any) -> ReplicaHome:
        home = self.homes[name] = ReplicaHome(name, replicas or [name], **kwargs)
        self.network.listen(HOST, PORTS[name], home)
        return home

    def start(self, *names: str) -> None:
        self.node.startService()
        self.sessions.learn([{"name": n, "internal": internal(n)} for n in names])
        self.network.flush()

    def test_registers_with_every_replica_the_master_names(self) -> None:
        """The master's answer lists the slaves: the node registers with each."""
        master = self.serve("Master", ["Master", "Replica1", "Replica2"])
        slaves = [self.serve(n) for n in ("Replica1", "Replica2")]
        self.start("Master")
        self.assertEqual(self.sessions.replicas(), ["Master", "Replica1", "Replica2"])
        for home in [master, *slaves]:
            self.assertEqual(home.hellos, [("node", "node1")])
            name, info, _ = home.registrations[0]
            self.assertEqual(name, "node1")
            self.assertEqual(info["data"], node_config().data_dir)

    def test_full_live_state_first_then_changes_to_every_replica(self) -> None:
        master = self.serve("Master", ["Master", "Replica1"])
        slave = self.serve("Replica1")
        self.start("Master")
        self.assertEqual(master.live, [({}, {}, True)])
        self.assertEqual(slave.live, [({}, {}, True)])
        self.servers.adapter_registered(
            "Hello", "", proxy_from_string("dummy:tcp -h 127.0.0.1 -p 9999")
        )
        self.network.flush()
        for home in (master, slave):
            self.assertEqual(list(home.live[-1][1]), ["Hello"])
            self.assertFalse(home.live[-1][2])

    def test_registration_relayed_reaches_the_asking_replica_before_its_answer(self) -> None:
        """A replica that relays a server's registration knows of it when the node answers."""
        self.serve("Master", ["Master", "Replica1"])
        slave = self.serve("Replica1")
        self.start("Master")
        proxy = encode_proxy_field(proxy_from_string("dummy:tcp -h 127.0.0.1 -p 9999"))
        seen_at_answer: list[int] = []
        d = slave.session.callRemote(AdapterRegistered, adapter="Hello", replica_group="", proxy=proxy)
        d.addCallback(lambda _: seen_at_answer.append(len(slave.live)))
        self.network.flush()
        self.assertEqual(seen_at_answer, [2])
        self.assertEqual(self.servers.registered[0][0], "Hello")

    def test_deployment_taken_once_from_any_number_of_replicas(self) -> None:
        master = self.serve("Master", ["Master", "Replica1"])
        slave = self.serve("Replica1")
        self.start("Master")
        server = ServerDescriptor("S", "/bin/true", activation="on-demand")
        answers: list[dict] = []
        master.session.deploy([server], 7).addCallback(answers.append)
        slave.session.deploy([server], 7).addCallback(answers.append)
        self.network.flush()
        self.assertEqual([a["applied"] for a in answers], [True, False])
        self.assertEqual(self.servers.deployed, [[("App", server)]])
        # an older deployment (a lagging slave) is not applied
        slave.session.deploy([], 5).addCallback(answers.append)
        self.network.flush()
        self.assertEqual(answers[-1], {"applied": False})
        self.assertEqual(len(self.servers.deployed), 1)

    def test_activation_relayed_to_the_servers(self) -> None:
        master = self.serve("Master")
        self.start("Master")
        answers: list[dict] = []
        master.session.callRemote(ActivateServer, server="S").addCallback(answers.append)
        self.network.flush()
        self.assertEqual(answers, [{"pid": 42}])
        self.assertEqual(master.live[-1][0], {"S": {"state": "active", "pid": 42, "enabled": True}})

    def test_keepalives_carry_the_load(self) -> None:
        master = self.serve("Master")
        self.start("Master")
        # one at once (the load is known from the start), then twice per session timeout
        self.assertEqual(master.loads, [(0.5, 0.25, 0.125)])
        self.network.advance(8)
        self.assertEqual(len(master.loads), 3)

    def test_registers_again_with_a_replica_that_forgot_it(self) -> None:
        master = self.serve("Master")
        self.start("Master")
        master.forget = True
        self.network.advance(10)
        self.assertEqual(len(master.registrations), 2)
        self.assertEqual(self.sessions.replicas(), ["Master"])

    def test_registers_again_with_a_restarted_replica(self) -> None:
        master = self.serve("Master")
        self.start("Master")
        self.network.kill(HOST, PORTS["Master"])
        self.network.flush()
        self.assertEqual(self.sessions.replicas(), [])
        self.network.listen(HOST, PORTS["Master"], master)
        self.network.advance(10)
        self.assertEqual(len(master.registrations), 2)
        self.assertEqual(self.sessions.replicas(), ["Master"])

    def test_hung_replica_dropped_and_found_again(self) -> None:
        """A replica that stops answering keepalives (SIGSTOP) is registered with again."""
        master = self.serve("Master")
        self.start("Master")
        self.network.hang(HOST, PORTS["Master"])
        self.network.advance(16)  # two unanswered keepalive periods and their timeout
        self.assertEqual(self.sessions.replicas(), [])
        self.network.resume(HOST, PORTS["Master"])
        self.network.advance(10)
        self.assertEqual(self.sessions.replicas(), ["Master"])
        self.assertGreaterEqual(len(master.registrations), 2)

    def test_master_down_slaves_still_managed(self) -> None:
        """With the master down at start-up, the slaves it cannot reach through are found."""
        slave = self.serve("Replica1", ["Master", "Replica1"])
        self.start("Master", "Replica1")
        self.assertEqual(self.sessions.replicas(), ["Replica1"])
        self.assertEqual(len(slave.registrations), 1)

    def test_refuses_a_master_older_than_an_epoch_seen(self) -> None:
        self.serve("Replica1", ["Master", "Replica1"], epoch="5:bbbb")
        stale = self.serve("Master", epoch="3:aaaa")
        self.start("Replica1")
        self.assertEqual(self.sessions.seen_epoch, Epoch.from_wire("5:bbbb"))
        self.sessions.learn([{"name": "Master", "internal": internal("Master")}])
        self.network.flush()
        self.assertEqual(stale.registrations, [])
        self.assertEqual(self.sessions.replicas(), ["Replica1"])

    def test_replicas_changed_drops_a_replica_without_session(self) -> None:
        master = self.serve("Master", ["Master", "Replica1"])
        self.start("Master")
        self.assertIn("Replica1", self.sessions.links)  # known, unreachable
        master.session.callRemote(
            ReplicasChanged, replicas=json.dumps([{"name": "Master", "internal": internal("Master")}])
        )
        self.network.flush()
        self.assertNotIn("Replica1", self.sessions.links)

    def test_wrong_replica_at_an_address_is_not_registered_with(self) -> None:
        impostor = ReplicaHome("Replica2", ["Replica2"])
        self.network.listen(HOST, PORTS["Replica1"], impostor)
        self.start("Replica1")
        self.assertEqual(impostor.registrations, [])


class BatchTests(SynchronousTestCase):
    def test_empty_state_is_one_batch(self) -> None:
        self.assertEqual(batches({}, {}), [({}, {})])

    def test_batches_fit_an_amp_value(self) -> None:
        adapters = {f"adapter-{i}": {"proxy": "x" * 200, "replica_group": ""} for i in range(1000)}
        out = batches({}, adapters)
        self.assertGreater(len(out), 1)
        for servers, some in out:
            self.assertLess(len(json.dumps(some)), LIVE_STATE_BATCH + 1024)
        merged: dict = {}
        for _, some in out:
            merged.update(some)
        self.assertEqual(merged, adapters)


class PrintServersReadyTests(SynchronousTestCase):
    """IceGrid.Node.PrintServersReady: one line once every always server is active."""

    def test_printed_once_always_servers_are_up(self) -> None:
        import io

        import attrs

        network = MemoryNetwork()
        servers = FakeServers()
        servers.always_servers = lambda: {"A": object()}  # type: ignore[method-assign]
        out = io.StringIO()
        config = attrs.evolve(node_config(), print_servers_ready="grid")
        node = NodeService(network.reactor, config, servers=servers, load=lambda: (0, 0, 0), stdout=out)
        servers.on_live_state = node._live_state_changed
        node.sessions.applied_serial = 3  # a deployment was taken in
        node._maybe_print_ready()
        self.assertEqual(out.getvalue(), "")
        servers.activate("A")
        servers.activate("A")
        self.assertEqual(out.getvalue(), "grid ready\n")
