# -*- test-case-name: tests.test_icegridadmin_processes -*-
"""
The real C{icegridadmin} (ZeroC 3.7.8) against real processes: a gridreg
master and slave (C{twist gridregistry}) and a C{gridnode} running a real
Ice server. Every expected line and refusal is what the real IceGrid
registry printed for the same command.
"""

from __future__ import annotations

import shutil

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests._lineprocess import LineProcess
from tests._node_processes import managed_server_xml
from tests._processes import ice_env, ice_missing
from tests.test_nodes_processes import NodeGrid
from tests.test_replication_processes import eventually

READ_ONLY = (
    "error: ::IceGrid::DeploymentException:\n"
    "this operation is not allowed on a slave or read-only master registry."
)


class IceGridAdminGrid(NodeGrid):
    """A NodeGrid whose replicas let anyone open Ice sessions."""

    def properties(self, name: str, as_name: str, certs):  # type: ignore[no-untyped-def]
        return {
            **super().properties(name, as_name, certs),
            "IceGrid.Registry.AdminPermissionsVerifier": "DemoIceGrid/NullPermissionsVerifier",
            "IceGrid.Registry.PermissionsVerifier": "DemoIceGrid/NullPermissionsVerifier",
            "IceGrid.Registry.Trace.Session": "1",
        }

    async def icegridadmin(self, command: str, *options: str) -> tuple[int, str]:
        """Run C{icegridadmin -e COMMAND}; its exit code and output (stdout, then stderr)."""
        process = LineProcess.spawn(
            reactor,
            "icegridadmin",
            [
                shutil.which("icegridadmin") or "/usr/bin/icegridadmin",
                f"--Ice.Default.Locator={self.locator('Master', 'Replica1')}",
                "--username",
                "admin",
                "--password",
                "secret",
                *options,
                "-e",
                command,
            ],
            ice_env(),
            str(self.root),
        )
        await process.when_ended()
        output = "\n".join(process.lines) + bytes(process.stderr).decode("utf-8", "replace")
        return process.exit_code, output.strip()


class IceGridAdminProcessTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        missing = ice_missing() or (None if shutil.which("icegridadmin") else "no icegridadmin")
        if missing:
            raise self.skipTest(missing)
        self.grid = IceGridAdminGrid(self)

    async def ok(self, command: str, *options: str) -> str:
        code, output = await self.grid.icegridadmin(command, *options)
        self.assertEqual(code, 0, f"{command}: {output}")
        return output

    async def refused(self, command: str, *options: str) -> str:
        code, output = await self.grid.icegridadmin(command, *options)
        self.assertEqual(code, 1, f"{command}: {output}")
        return output

    async def test_icegridadmin(self) -> None:
        grid = self.grid
        await grid.start("Master")
        await grid.start("Replica1")
        node = grid.start_node("node1")
        await node.has_session("Master")
        await node.has_session("Replica1")
        await grid.deploy(
            "Demo",
            "<node name='node1'>"
            + managed_server_xml("IceAdminHello", "node1", activation="manual")
            + "</node>",
        )

        # -- objects, at the master
        self.assertEqual(await self.ok('object add "foo:tcp -h 127.0.0.1 -p 9" ::Foo'), "")
        self.assertEqual(
            await self.refused('object add "foo:tcp -h 127.0.0.1 -p 9" ::Foo'),
            "error: object `foo' already exists",
        )
        self.assertEqual(
            await self.refused('object add "DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 9" ::Foo'),
            "error: ::IceGrid::DeploymentException:\n"
            "adding object `DemoIceGrid/Locator' is not allowed:\n"
            "objects with identity category `DemoIceGrid' are managed by IceGrid",
        )
        self.assertIn(
            "failed to invoke ice_id() on proxy `bar -t -e 1.1:tcp -h 127.0.0.1 -p 9",
            await self.refused('object add "bar:tcp -h 127.0.0.1 -p 9"'),
        )
        listed = (await self.ok("object list")).splitlines()
        self.assertIn("foo", listed)
        self.assertIn("DemoIceGrid/Locator", listed)
        self.assertEqual(
            await self.ok("object describe foo"),
            "proxy = `foo -t -e 1.1:tcp -h 127.0.0.1 -p 9 -t 60000'\ntype = `::Foo'",
        )
        self.assertEqual(
            await self.ok("object find ::Foo"), "foo -t -e 1.1:tcp -h 127.0.0.1 -p 9 -t 60000"
        )
        self.assertEqual(
            await self.refused("object describe nope"), "error: couldn't find object `nope'"
        )
        self.assertEqual(
            await self.refused("object remove nope"), "error: couldn't find object `nope'"
        )

        # -- adapters, registries, nodes
        self.assertIn("IceAdminHello.Hello", (await self.ok("adapter list")).splitlines())
        self.assertEqual(
            await self.refused("adapter endpoints nope"), "error: couldn't find adapter `nope'"
        )
        self.assertEqual((await self.ok("registry list")).splitlines(), ["Master", "Replica1"])
        self.assertIn("registry `Master'", await self.ok("registry describe Master"))
        self.assertEqual(
            await self.refused("registry describe nope"), "error: couldn't find registry `nope'"
        )
        self.assertEqual(await self.ok("registry ping Replica1"), "registry is up")
        self.assertEqual((await self.ok("node list")).splitlines(), ["node1"])
        self.assertEqual(await self.ok("node ping node1"), "node is up")
        self.assertIn("node `node1'", await self.ok("node describe node1"))
        self.assertEqual(await self.refused("node ping nope"), "error: couldn't find node `nope'")

        # -- servers, relayed to the node (a name of its own: other process tests
        # count the running copies of theirs across the machine)
        self.assertEqual((await self.ok("server list")).splitlines(), ["IceAdminHello"])
        self.assertIn("inactive", await self.ok("server state IceAdminHello"))
        self.assertEqual(await self.ok("server start IceAdminHello"), "")
        self.assertIn("active", await self.ok("server state IceAdminHello"))
        self.assertEqual(await self.ok("server stop IceAdminHello"), "")

        async def stopped() -> bool:
            return "inactive" in await self.ok("server state IceAdminHello")

        await eventually(stopped)
        # as IceGrid 3.7.8: ServerStopException, "The server is already inactive."
        self.assertIn("The server is already inactive.", await self.refused("server stop IceAdminHello"))
        self.assertEqual(
            await self.refused("server state nope"), "error: couldn't find server `nope'"
        )
        self.assertEqual(
            await self.refused("server stop nope"), "error: couldn't find server `nope'"
        )

        # -- the slave reads, refuses writes, relays server control
        slave = ("-r", "Replica1")
        self.assertEqual(
            await self.refused('object add "bar:tcp -h 127.0.0.1 -p 9" ::Foo', *slave), READ_ONLY
        )
        self.assertEqual(await self.refused("object remove foo", *slave), READ_ONLY)
        self.assertEqual(await self.refused("adapter remove nope", *slave), READ_ONLY)

        async def replicated() -> bool:
            code, output = await grid.icegridadmin("object describe foo", *slave)
            return code == 0 and "::Foo" in output

        await eventually(replicated)
        self.assertIn("foo", (await self.ok("object list", *slave)).splitlines())
        self.assertIn("registry `Replica1'", await self.ok("registry describe Replica1", *slave))
        self.assertEqual((await self.ok("server list", *slave)).splitlines(), ["IceAdminHello"])
        self.assertEqual((await self.ok("node list", *slave)).splitlines(), ["node1"])
        self.assertEqual(await self.ok("server start IceAdminHello", *slave), "")
        self.assertEqual(await self.ok("server stop IceAdminHello", *slave), "")

        # -- back at the master: the object goes
        self.assertEqual(await self.ok("object remove foo"), "")
        self.assertNotIn("foo", (await self.ok("object list")).splitlines())

    async def test_icegridadmin_applications(self) -> None:
        """Descriptors cross the Ice wire as Slice class graphs, both ways."""
        grid = self.grid
        await grid.start("Master")
        await grid.start("Replica1")
        path = grid.root / "ice-app.xml"

        def write(value: str) -> None:
            path.write_text(
                "<icegrid><application name='IceApp'>"
                f"<variable name='greeting' value='{value}'/>"
                "<server-template id='T'><parameter name='index'/>"
                "<server id='IceApp-${index}' exe='/bin/true' activation='on-demand'>"
                "<adapter name='Ad' endpoints='tcp -h 127.0.0.1'>"
                "<object identity='ice-app-${index}' type='::Demo::Hello'/></adapter>"
                "<property name='Greeting' value='${greeting}'/></server></server-template>"
                "<replica-group id='IceAppGroup'><load-balancing type='round-robin'/>"
                "<object identity='ice-app-group' type='::Demo::Hello'/></replica-group>"
                "<node name='node1'><server-instance template='T' index='1'/></node>"
                "</application></icegrid>"
            )

        write("hello")
        self.assertEqual(await self.ok(f"application add {path}"), "")
        self.assertEqual((await self.ok("application list")).splitlines(), ["IceApp"])
        described = await self.ok("application describe IceApp")
        self.assertIn("greeting = `hello'", described)
        self.assertIn("id = `IceAppGroup' load balancing = `round-robin'", described)
        self.assertIn("IceApp-1", described)
        self.assertIn("Greeting = `hello'", await self.ok("server describe IceApp-1"))
        # the write reached the slave, which reads it and refuses to change it
        slave = ("-r", "Replica1")

        async def replicated() -> bool:
            code, output = await grid.icegridadmin("application list", *slave)
            return code == 0 and "IceApp" in output

        await eventually(replicated)
        self.assertEqual(await self.refused(f"application add {path}", *slave), READ_ONLY)
        write("again")
        self.assertEqual(await self.ok(f"application update {path}"), "")
        self.assertIn("Greeting = `again'", await self.ok("server describe IceApp-1"))
        self.assertEqual(
            await self.refused("application describe nope"),
            "error: couldn't find application `nope'",
        )
        self.assertEqual(await self.ok("application remove IceApp"), "")
        self.assertEqual(await self.ok("application list"), "")
