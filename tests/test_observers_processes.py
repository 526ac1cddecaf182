# -*- test-case-name: tests.test_observers_processes -*-
"""
Admin-session observers with real processes: a real Ice 3.7 admin client
(C{tests/interop/ice_observer_client.py}) registers the five IceGrid
observers at a gridreg master, over its session's connection
(setObserversByIdentity, as the IceGrid GUI does) or as proxies of its own
(setObservers), and sees the initial state, then an added object and a
server a gridnode starts; at a slave too.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor

from tests._lineprocess import LineProcess
from tests._node_processes import managed_server_xml
from tests._processes import ICE_PYTHON, INTEROP_DIR, ice_env
from tests.test_nodes_processes import NodeGrid, NodeGridTestCase


class ObserverGrid(NodeGrid):
    def properties(self, name: str, as_name: str, certs: Any) -> dict[str, str]:
        return {
            **super().properties(name, as_name, certs),
            "IceGrid.Registry.AdminPermissionsVerifier": "DemoIceGrid/NullPermissionsVerifier",
        }

    def observer(self, *options: str, replica: str = "Master") -> LineProcess:
        process = LineProcess.spawn(
            reactor,
            "observer",
            [
                ICE_PYTHON,
                str(INTEROP_DIR / "ice_observer_client.py"),
                "--locator",
                self.locator(replica),
                "--replica",
                replica,
                *options,
            ],
            ice_env(),
            INTEROP_DIR,
        )
        self.testcase.addCleanup(process.terminate)
        return process


def _answer(event: dict[str, Any]) -> bool:
    return "command" in event


class ObserverProcessTests(NodeGridTestCase):
    grid_class = ObserverGrid

    async def start_grid(self) -> None:
        grid = self.grid
        await grid.start("Master")
        node = grid.start_node("node1")
        await node.has_session("Master")
        await grid.deploy(
            "Obs",
            "<node name='node1'>"
            + managed_server_xml("Obs1", "node1", activation="manual")
            + "</node>",
        )

    async def check_observer(self, *options: str) -> None:
        await self.start_grid()
        client = self.grid.observer(*options)
        inits = {}
        for name in ("registryInit", "nodeInit", "applicationInit", "adapterInit", "objectInit"):
            inits[name] = await client.next_event(name, timeout=30)
        await client.next_event("ready", timeout=30)
        self.assertEqual(inits["registryInit"]["registries"], ["Master"])
        [node] = inits["nodeInit"]["nodes"]
        self.assertEqual(node["name"], "node1")
        [app] = inits["applicationInit"]["applications"]
        self.assertEqual((app["name"], app["servers"]), ("Obs", ["Obs1"]))
        types = {o["type"] for o in inits["objectInit"]["objects"]}
        # the types IceGrid 3.7.8's objectInit gave
        self.assertIn("::Ice::Locator", types)
        self.assertIn("::Ice::LocatorRegistry", types)

        client.write_line("add-object hello@SomeAdapter ::Demo::Hello")
        added = await client.next_event("objectAdded", timeout=30)
        self.assertEqual(added["object"]["type"], "::Demo::Hello")
        self.assertIn("hello", added["object"]["proxy"])
        answer = await client.next_event(_answer, timeout=30)
        self.assertTrue(answer["ok"], answer)

        client.write_line("start Obs1")
        answer = await client.next_event(_answer, timeout=60)
        self.assertTrue(answer["ok"], answer)

        def active(event: dict[str, Any]) -> bool:
            return event.get("event") == "updateServer" and event["server"]["state"] == "Active"

        update = await client.next_event(active, timeout=30)
        self.assertEqual((update["node"], update["server"]["id"]), ("node1", "Obs1"))
        self.assertGreater(update["server"]["pid"], 0)
        adapter = await client.next_event("updateAdapter", timeout=30)
        self.assertEqual(adapter["node"], "node1")
        self.assertTrue(adapter["adapter"]["proxy"])

    async def test_observers_on_the_session_connection(self) -> None:
        await self.check_observer()

    async def test_observers_as_proxies(self) -> None:
        await self.check_observer("--direct")

    async def test_observers_at_a_slave(self) -> None:
        """A slave's observers see the replicas, replicated objects and its nodes' servers."""
        grid = self.grid
        await grid.start("Master")
        await grid.start("Replica1")
        node = grid.start_node("node1")
        await node.has_session("Replica1")
        await grid.deploy(
            "Obs",
            "<node name='node1'>"
            + managed_server_xml("Obs1", "node1", activation="manual")
            + "</node>",
        )
        client = self.grid.observer(replica="Replica1")
        registries = await client.next_event("registryInit", timeout=30)
        self.assertIn("Replica1", registries["registries"])
        if "Master" not in registries["registries"]:  # the slave's session was still opening
            up = await client.next_event("registryUp", timeout=30)
            self.assertEqual(up["name"], "Master")
        await client.next_event("ready", timeout=30)

        code, output = await grid.gridadmin("object", "add", "replicated@A", "::Demo::Hello")
        self.assertEqual(code, 0, output)
        added = await client.next_event("objectAdded", timeout=30)
        self.assertIn("replicated", added["object"]["proxy"])

        client.write_line("start Obs1")  # relayed by the slave to the node
        answer = await client.next_event(_answer, timeout=60)
        self.assertTrue(answer["ok"], answer)

        def active(event: dict[str, Any]) -> bool:
            return event.get("event") == "updateServer" and event["server"]["state"] == "Active"

        update = await client.next_event(active, timeout=30)
        self.assertEqual(update["server"]["id"], "Obs1")
