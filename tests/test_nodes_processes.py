# -*- test-case-name: tests.test_nodes_processes -*-
"""
Nodes with real processes: a master and a slave (C{twist gridregistry}), two
C{twist gridnode}s over mutual TLS, and real Ice 3.7 Python servers deployed
as on-demand servers, started by real Ice clients through the master, and
through the slave while the master is dead.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from gridreg.certs import make_demo_certs
from tests._node_processes import RunningNode, managed_server_xml, start_gridnode
from tests._processes import ice_missing, run_ice_client
from tests.test_replication_processes import GridProcesses, eventually

NODES = ("node1", "node2")


class NodeGrid(GridProcesses):
    """A master, a slave and two nodes on loopback, with their certificates."""

    def __init__(self, testcase: TestCase) -> None:
        super().__init__(testcase)
        make_demo_certs(str(self.certs), nodes=NODES, instance="DemoIceGrid")
        self.nodes: dict[str, RunningNode] = {}
        # the first cleanup added runs last: after the nodes have stopped
        testcase.addCleanup(self.kill_orphans)

    def kill_orphans(self) -> None:
        """Servers a SIGKILLed node left running (as icegridnode's would be) end with the test."""
        import os
        import signal

        for pid in _grid_servers(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended meanwhile

    def properties(self, name: str, as_name: str, certs: Path) -> dict[str, str]:
        return {
            **super().properties(name, as_name, certs),
            "IceGrid.Registry.NodeSessionTimeout": "4",
            "IceGrid.Registry.Trace.Node": "1",
            "IceGrid.Registry.Trace.Server": "1",
        }

    def start_node(self, name: str, **extra: str) -> RunningNode:
        node = start_gridnode(
            reactor,
            self.root / name,
            name,
            {
                "Ice.Default.Locator": self.locator("Master", "Replica1"),
                "IceSSL.DefaultDir": str(self.certs),
                "IceSSL.CAs": "ca.pem",
                "IceSSL.CertFile": f"node-{name}.pem",
                "IceSSL.KeyFile": f"node-{name}.key",
                **extra,
            },
        )
        self.nodes[name] = node
        self.testcase.addCleanup(node.stop)
        return node

    async def deploy(self, name: str, body: str) -> None:
        path = self.root / f"{name}.xml"
        path.write_text(f'<icegrid><application name="{name}">{body}</application></icegrid>')
        code, output = await self.gridadmin("application", "add", str(path))
        self.testcase.assertEqual(code, 0, output)

    async def deploy_group(self, prefix: str, group: str, policy: str, identity: str) -> None:
        """One on-demand member per node in replica group C{group}, serving C{identity}."""
        members = "".join(
            f"<node name='{node}'>"
            + managed_server_xml(
                f"{prefix}-{node}", node, group=group,
                extra=f"<property name='Hello.Identity' value='{identity}'/>",
            )
            + "</node>"
            for node in NODES
        )
        await self.deploy(
            group,
            f"<replica-group id='{group}'><load-balancing {policy}/>"
            f"<object identity='{identity}' type='::Demo::Hello'/></replica-group>" + members,
        )

    async def group_size(self, group: str) -> int:
        """How many members' endpoints the master answers for C{group} now."""
        [result] = await run_ice_client(
            reactor, self.locator("Master"), [["findAdapterById", group]]
        )
        return len(result.get("endpoints") or ()) if result["ok"] else 0

    async def hello(self, proxy: str, *replicas: str) -> str:
        """
        Call sayHello on C{proxy} from a fresh Ice client whose locator lists
        C{replicas}; it takes the first endpoint of a locate answer, so the
        registry's order decides.
        """
        [result] = await run_ice_client(
            reactor,
            self.locator(*replicas),
            [["sayHello", proxy]],
            {"Ice.Default.EndpointSelection": "Ordered"},
        )
        self.testcase.assertTrue(result["ok"], result)
        return str(result["result"])


class NodeGridTestCase(TestCase):
    """A test with a L{NodeGrid} of its own (C{grid_class}), when real Ice is there."""

    timeout = 180
    grid_class: type[NodeGrid] = NodeGrid

    def setUp(self) -> None:
        missing = ice_missing()
        if missing:
            raise self.skipTest(missing)
        self.grid = self.grid_class(self)


class NodeProcessTests(NodeGridTestCase):


    async def start_grid(self) -> None:
        await self.grid.start("Master")
        await self.grid.start("Replica1")
        for name in NODES:
            node = self.grid.start_node(name)
            await node.has_session("Master")

    async def test_on_demand_server_started_through_master_then_slave(self) -> None:
        await self.start_grid()
        await self.grid.deploy(
            "Demo", "<node name='node1'>" + managed_server_xml("Hello1", "node1") + "</node>"
        )
        self.assertEqual(await self.grid.hello("hello@Hello1.Hello", "Master"), "Hello1")
        await self.grid.running["Master"].kill()
        code, output = await self.grid.gridadmin("--replica", "Replica1", "server", "stop", "Hello1")
        self.assertEqual(code, 0, output)
        self.assertEqual(await self.grid.hello("hello@Hello1.Hello", "Replica1"), "Hello1")

    async def test_round_robin_group_across_two_nodes_alternates(self) -> None:
        await self.start_grid()
        await self.grid.deploy_group("RR", "RRGroup", "type='round-robin'", "rr")
        # the first lookup starts every member; it answers as soon as one is up
        self.assertIn(await self.grid.hello("rr", "Master"), ("RR-node1", "RR-node2"))

        async def both_up() -> bool:
            return await self.grid.group_size("RRGroup") == 2

        await eventually(both_up)
        answers = [await self.grid.hello("rr", "Master") for _ in range(4)]
        self.assertEqual(sorted(set(answers)), ["RR-node1", "RR-node2"])
        self.assertNotEqual(answers[0], answers[1])
        self.assertEqual(answers[0], answers[2])

    async def test_killed_nodes_adapters_disappear(self) -> None:
        await self.start_grid()
        await self.grid.deploy(
            "Demo",
            "<node name='node2'>" + managed_server_xml("Hello2", "node2") + "</node>",
        )
        self.assertEqual(await self.grid.hello("hello@Hello2.Hello", "Master"), "Hello2")
        await self.grid.nodes["node2"].kill()

        async def gone() -> bool:
            [result] = await run_ice_client(
                reactor, self.grid.locator("Master"), [["findAdapterById", "Hello2.Hello"]]
            )
            return not result["ok"] or not result.get("endpoints")

        await eventually(gone, timeout=30)


def _grid_servers(root: Path) -> list[int]:
    """The pids of every server started from a node data directory under C{root}."""
    return _running_copies("", root)


def _running_copies(server_id: str, root: Path) -> list[int]:
    """
    The pids of every process running server C{server_id}'s configuration
    under C{root} (a test's own grid: other tests may run the same ids).
    """
    import os

    needle = (f"/servers/{server_id}/config/config" if server_id else "/config/config").encode()
    where = str(root).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read()
                if needle in command and where in command:
                    pids.append(int(entry))
            except OSError:
                continue  # it exited meanwhile
    return pids


class NodeFailureProcessTests(NodeGridTestCase):
    """Nodes and replicas failing, with real processes."""


    async def server_state(self, server: str, *replica: str) -> str:
        args = ("--replica", replica[0]) if replica else ()
        code, output = await self.grid.gridadmin(*args, "server", "state", server)
        return output.strip() if code == 0 else f"error {code}: {output}"

    async def test_restarted_node_never_runs_a_second_copy(self) -> None:
        """
        A node SIGKILLed while its always server runs is restarted: the
        orphan is stopped and one copy runs again (IceGrid 3.7.8 starts a
        second copy here).
        """
        await self.grid.start("Master")
        node = self.grid.start_node("node1")
        await node.has_session("Master")
        await self.grid.deploy(
            "Always", "<node name='node1'>" + managed_server_xml("Always1", "node1", "always") + "</node>"
        )

        async def active() -> bool:
            return (await self.server_state("Always1")).startswith("active")

        await eventually(active)
        [orphan] = _running_copies("Always1", self.grid.root)
        await node.kill()
        self.assertEqual(_running_copies("Always1", self.grid.root), [orphan])  # still running, unmanaged
        restarted = self.grid.start_node("node1")
        await restarted.has_session("Master")

        async def one_new_copy() -> bool:
            copies = _running_copies("Always1", self.grid.root)
            return len(copies) == 1 and copies != [orphan] and await active()

        await eventually(one_new_copy, timeout=40)

    async def test_node_started_with_the_master_down_starts_its_servers(self) -> None:
        """ice#5368: with the master down, a node still gets its servers from a slave."""
        await self.grid.start("Master")
        await self.grid.start("Replica1")
        await self.grid.deploy(
            "Always", "<node name='node1'>" + managed_server_xml("Always1", "node1", "always") + "</node>"
        )

        async def replicated() -> bool:
            code, output = await self.grid.gridadmin("--replica", "Replica1", "server", "list")
            return code == 0 and "Always1" in output

        await eventually(replicated)
        await self.grid.running["Master"].kill()
        node = self.grid.start_node("node1")
        await node.has_session("Replica1")

        async def active() -> bool:
            return (await self.server_state("Always1", "Replica1")).startswith("active")

        await eventually(active)
        self.assertEqual(len(_running_copies("Always1", self.grid.root)), 1)

    async def test_node_stopped_with_sigterm_stops_its_servers(self) -> None:
        await self.grid.start("Master")
        node = self.grid.start_node("node1")
        await node.has_session("Master")
        await self.grid.deploy(
            "Demo", "<node name='node1'>" + managed_server_xml("Hello1", "node1") + "</node>"
        )
        self.assertEqual(await self.grid.hello("hello@Hello1.Hello", "Master"), "Hello1")
        self.assertEqual(len(_running_copies("Hello1", self.grid.root)), 1)
        await node.process.stop_gracefully(timeout=30)
        # twist ends by the SIGTERM it handled (not the SIGKILL stop_gracefully falls back on)
        self.assertEqual(node.process.exit_signal, 15, node.process.describe())
        self.assertEqual(_running_copies("Hello1", self.grid.root), [])
        stopped = [e for e in node.process.events if "changed server" in str(e.get("log_format"))]
        self.assertEqual(stopped[-1].get("log_format"), "[Server] changed server `{server}' state to `Inactive'")

    async def test_node_registers_again_with_a_restarted_master(self) -> None:
        await self.grid.start("Master")
        node = self.grid.start_node("node1")
        await node.has_session("Master")
        await self.grid.deploy(
            "Demo", "<node name='node1'>" + managed_server_xml("Hello1", "node1") + "</node>"
        )
        await self.grid.running["Master"].kill()
        await self.grid.start("Master")
        await node.has_session("Master")
        self.assertEqual(await self.grid.hello("hello@Hello1.Hello", "Master"), "Hello1")

    async def test_adaptive_group_prefers_the_idle_node(self) -> None:
        await self.grid.start("Master")
        for name, load in (("node1", "0.10 0.10 0.10"), ("node2", "8.00 8.00 8.00")):
            path = self.grid.root / f"{name}.loadavg"
            path.write_text(f"{load} 1/100 4242\n")
            node = self.grid.start_node(
                name,
                **{"GridReg.Node.LoadAverageFile": str(path), "IceGrid.Node.ProcessorSocketCount": "1"},
            )
            await node.has_session("Master")
        await self.grid.deploy_group("AD", "AdaptiveGroup", "type='adaptive' load-sample='1'", "ad")

        async def loads_known() -> bool:
            code, output = await self.grid.gridadmin("node", "load", "node2")
            return code == 0 and "8.00" in output

        await eventually(loads_known)
        await self.grid.hello("ad", "Master")  # starts both members

        async def both_up() -> bool:
            return await self.grid.group_size("AdaptiveGroup") == 2

        await eventually(both_up)
        answers = [await self.grid.hello("ad", "Master") for _ in range(3)]
        self.assertEqual(answers, ["AD-node1"] * 3)


class NodeDeploymentProcessTests(NodeGridTestCase):
    """Application changes reaching a node, and a promoted master, with real processes."""


    async def pid(self, server: str) -> str:
        code, output = await self.grid.gridadmin("server", "pid", server)
        return output.strip() if code == 0 else ""

    async def test_update_stops_only_changed_servers_and_remove_stops_them(self) -> None:
        """
        As IceGrid 3.7.8: the changed on-demand U2 is stopped by the update
        and started again, with its new descriptor, by the next locate.
        """
        await self.grid.start("Master")
        node = self.grid.start_node("node1")
        await node.has_session("Master")

        def servers(changed: str = "") -> str:
            return (
                "<node name='node1'>"
                + managed_server_xml("U1", "node1")
                + managed_server_xml("U2", "node1", extra=changed)
                + "</node>"
            )

        await self.grid.deploy("Upd", servers())
        for server in ("U1", "U2"):
            self.assertEqual(await self.grid.hello(f"hello@{server}.Hello", "Master"), server)
        before = {server: await self.pid(server) for server in ("U1", "U2")}
        path = self.grid.root / "Upd.xml"
        path.write_text(
            "<icegrid><application name='Upd'>"
            + servers("<property name='Changed' value='1'/>")
            + "</application></icegrid>"
        )
        code, output = await self.grid.gridadmin("application", "update", str(path))
        self.assertEqual(code, 0, output)

        async def u2_stopped() -> bool:
            return (await self.pid("U2")) == ""

        await eventually(u2_stopped)
        self.assertEqual(await self.pid("U1"), before["U1"])
        self.assertEqual(await self.grid.hello("hello@U2.Hello", "Master"), "U2")
        self.assertNotIn(await self.pid("U2"), ("", before["U2"]))
        code, output = await self.grid.gridadmin("application", "remove", "Upd")
        self.assertEqual(code, 0, output)

        async def stopped() -> bool:
            return _running_copies("U1", self.grid.root) == [] and _running_copies("U2", self.grid.root) == []

        await eventually(stopped)

    async def test_node_follows_a_promoted_slave(self) -> None:
        await self.grid.start("Master")
        await self.grid.start("Replica1")
        node = self.grid.start_node("node1")
        await node.has_session("Master")
        await node.has_session("Replica1")
        await self.grid.deploy(
            "Demo", "<node name='node1'>" + managed_server_xml("Hello1", "node1") + "</node>"
        )
        await self.grid.running["Master"].kill()
        await self.grid.running["Replica1"].stop()
        await self.grid.start("Replica1", as_name="Master")
        await node.has_session("Master", timeout=60)
        self.assertEqual(await self.grid.hello("hello@Hello1.Hello", "Replica1"), "Hello1")


class NodeAppearsProcessTests(NodeGridTestCase):
    """Nodes that appear late, or come back from a pause."""


    async def node_up(self, name: str) -> bool:
        code, _ = await self.grid.gridadmin("node", "ping", name)
        return code == 0

    async def test_servers_of_a_node_that_registers_later(self) -> None:
        """A descriptor naming a node that never registered deploys, and runs once it does."""
        await self.grid.start("Master")
        await self.grid.deploy(
            "Late", "<node name='node2'>" + managed_server_xml("Late2", "node2") + "</node>"
        )
        node = self.grid.start_node("node2")
        await node.has_session("Master")
        self.assertEqual(await self.grid.hello("hello@Late2.Hello", "Master"), "Late2")

    async def test_node_paused_beyond_its_session_timeout_comes_back(self) -> None:
        await self.grid.start("Master")
        node = self.grid.start_node("node1")
        await node.has_session("Master")
        await self.grid.deploy(
            "Demo", "<node name='node1'>" + managed_server_xml("Hello1", "node1") + "</node>"
        )
        node.process.signal("STOP")

        async def down() -> bool:
            return not await self.node_up("node1")

        await eventually(down, timeout=30)  # the session timed out at the registry
        node.process.signal("CONT")

        async def up() -> bool:
            return await self.node_up("node1")

        await eventually(up, timeout=30)
        self.assertEqual(await self.grid.hello("hello@Hello1.Hello", "Master"), "Hello1")
