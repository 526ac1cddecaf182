# -*- test-case-name: tests.test_admin_router_processes -*-
"""
IceGrid's admin routers with real processes: a gridreg master and slave, a
gridnode running a real Ice server, the real C{icegridadmin}'s C{server
properties} and C{server property}, and a real Ice admin client
(C{tests/interop/ice_admin_router_client.py}) reading the registries', the
node's and the server's C{Properties} facets through C{get*Admin}. What is
expected is what IceGrid 3.7.8 answered for the same descriptor
(docs/icegrid-node-facts.md, "Admin routers").
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor

from tests._lineprocess import LineProcess
from tests._node_processes import managed_server_xml
from tests._processes import ICE_PYTHON, INTEROP_DIR, ice_env
from tests.test_glacier2_processes import RoutedGrid
from tests.test_icegridadmin_processes import IceGridAdminGrid
from tests.test_nodes_processes import NodeGridTestCase
from tests.test_replication_processes import eventually

SERVER = "RouterHello"
#: the properties IceGrid 3.7.8's `server properties` listed for the same server
#: (with IcePy's own Ice.AcceptClassCycles), sorted
SERVER_KEYS = [
    "Demo.Prop",
    "Hello.AdapterId",
    "Hello.Endpoints",
    "Ice.AcceptClassCycles",
    "Ice.Admin.Endpoints",
    "Ice.Admin.ServerId",
    "Ice.Config",
    "Ice.Default.Locator",
    "Ice.ProgramName",
    "Ice.StdErr",
    "Ice.StdOut",
]
ADMIN_FACETS = {
    "Properties": ["::Ice::Object", "::Ice::PropertiesAdmin"],
    "Process": ["::Ice::Object", "::Ice::Process"],
    "Logger": ["::Ice::LoggerAdmin", "::Ice::Object"],
    "Metrics": ["::Ice::Object", "::IceMX::MetricsAdmin"],
}


class AdminRouterProcessTests(NodeGridTestCase):
    grid_class = IceGridAdminGrid
    grid: IceGridAdminGrid

    async def ok(self, command: str, *options: str) -> str:
        code, output = await self.grid.icegridadmin(command, *options)
        self.assertEqual(code, 0, f"{command}: {output}")
        return output

    async def refused(self, command: str, *options: str) -> str:
        code, output = await self.grid.icegridadmin(command, *options)
        self.assertEqual(code, 1, f"{command}: {output}")
        return output

    async def read_admins(self, registry: str, *targets: str) -> dict[str, dict[str, Any]]:
        """Run the real Ice admin client; its answer for each target."""
        process = LineProcess.spawn(
            reactor,
            "admin-router-client",
            [
                ICE_PYTHON,
                str(INTEROP_DIR / "ice_admin_router_client.py"),
                "--locator",
                self.grid.locator("Master", "Replica1"),
                "--registry",
                registry,
                *targets,
            ],
            ice_env(),
            INTEROP_DIR,
        )
        await process.when_ended()
        self.assertEqual(process.exit_code, 0, bytes(process.stderr).decode("utf-8", "replace"))
        answers = [json.loads(line) for line in process.lines]
        return {answer["target"]: answer for answer in answers}

    async def test_server_node_and_registry_admin_objects(self) -> None:
        grid = self.grid
        await grid.start("Master")
        await grid.start("Replica1")
        node = grid.start_node("node1")
        await node.has_session("Master")
        await node.has_session("Replica1")
        await grid.deploy(
            "RouterDemo",
            "<node name='node1'>"
            + managed_server_xml(
                SERVER,
                "node1",
                activation="manual",
                extra='<property name="Demo.Prop" value="v1"/>',
            )
            + "</node>",
        )
        slave = ("-r", "Replica1")

        # not running: IceGrid 3.7.8's icegridadmin says the same
        self.assertEqual(
            await self.refused(f"server properties {SERVER}"),
            "error: couldn't reach the server's Admin object",
        )
        self.assertEqual(
            await self.refused("server properties nope"), "error: couldn't find server `nope'"
        )
        self.assertEqual(await self.ok(f"server start {SERVER}"), "")

        for options in ((), slave):
            listed = (await self.ok(f"server properties {SERVER}", *options)).splitlines()
            self.assertEqual([line.partition("=")[0] for line in listed], SERVER_KEYS)
            self.assertIn("Demo.Prop=v1", listed)
            self.assertIn(f"Ice.Admin.ServerId={SERVER}", listed)
            self.assertIn(f"Hello.AdapterId={SERVER}.Hello", listed)
            self.assertEqual(await self.ok(f"server property {SERVER} Demo.Prop", *options), "v1")
            self.assertEqual(await self.ok(f"server property {SERVER} Nope", *options), "")

        # `server stdout ID MESSAGE`: the server's own Process facet writes it
        # to its output, which the node keeps in IceGrid.Node.Output
        self.assertEqual(await self.ok(f"server stdout {SERVER} routed-hello"), "")

        async def written() -> bool:
            return "routed-hello" in await self.ok(f"server show {SERVER} stdout")

        await eventually(written)

        at_master = await self.read_admins(
            "DemoIceGrid/Registry",
            "registry:Master",
            "registry:Replica1",
            "node:node1",
            f"server:{SERVER}",
        )
        at_slave = await self.read_admins(
            "DemoIceGrid/Registry-Replica1", "registry:Master", "node:node1"
        )
        for answers in (at_master, at_slave):
            for target, answer in answers.items():
                self.assertEqual(answer["BuildId"], "", target)
                self.assertEqual(answer["set"], "1", target)
                self.assertEqual(answer["other_connection"]["error"], "Ice.ObjectNotExistException")
                self.assertEqual(
                    answer["facets"]["Bogus"]["error"], "Ice.ObjectNotExistException", target
                )
                self.assertEqual(answer["facets"]["Properties"], ADMIN_FACETS["Properties"], target)
        self.assertEqual(
            at_master["registry:Master"]["prefix"]["IceGrid.InstanceName"], "DemoIceGrid"
        )
        self.assertEqual(
            at_master["registry:Replica1"]["prefix"]["IceGrid.Registry.ReplicaName"], "Replica1"
        )
        self.assertEqual(
            at_slave["registry:Master"]["prefix"]["IceGrid.InstanceName"], "DemoIceGrid"
        )
        # the master's own properties, relayed by the slave
        self.assertEqual(
            at_slave["registry:Master"]["prefix"], at_master["registry:Master"]["prefix"]
        )
        self.assertEqual(at_master["node:node1"]["prefix"]["IceGrid.Node.Name"], "node1")
        self.assertEqual(at_slave["node:node1"]["prefix"]["IceGrid.Node.Name"], "node1")
        # the server's own admin object, every facet it has, through the node
        self.assertEqual(
            {f: at_master[f"server:{SERVER}"]["facets"][f] for f in ADMIN_FACETS}, ADMIN_FACETS
        )


class UnfilteredRoutedGrid(RoutedGrid):
    """Admin sessions through a glacier2router that filters nothing."""

    def properties(self, name: str, as_name: str, certs: Any) -> dict[str, str]:
        return {
            **super().properties(name, as_name, certs),
            "IceGrid.Registry.AdminSessionFilters": "0",
        }


class RoutedAdminRouterProcessTests(NodeGridTestCase):
    """
    IceGrid 3.7.8 hands a Glacier2 admin session the router proxies on its
    session manager's endpoints, and routes them there (checked; with
    AdminSessionFilters=1 the glacier2router itself refuses them).
    """

    grid_class = UnfilteredRoutedGrid

    async def test_server_properties_through_a_glacier2router(self) -> None:
        grid = self.grid
        assert isinstance(grid, UnfilteredRoutedGrid)
        await grid.start("Master")
        node = grid.start_node("node1")
        await node.has_session("Master")
        await grid.deploy(
            "RoutedDemo",
            "<node name='node1'>"
            + managed_server_xml(
                "RoutedHello",
                "node1",
                activation="manual",
                extra='<property name="Demo.Prop" value="v1"/>',
            )
            + "</node>",
        )
        admins = await grid.router("AdminRouter", "AdminSessionManager", "Master")
        code, output = await grid.icegridadmin(
            admins, "server start RoutedHello", "server property RoutedHello Demo.Prop"
        )
        self.assertEqual((code, output.strip()), (0, "v1"))
