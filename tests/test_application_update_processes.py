# -*- test-case-name: tests.test_application_update_processes -*-
"""
Application updates with real processes: the real C{icegridadmin} (its
C{application update -n}, C{server template instantiate} and C{server
remove}, which call C{syncApplicationWithoutRestart}, C{instantiateServer}
and C{updateApplication}) and a real Ice 3.7 admin program calling
C{updateApplication} and C{updateApplicationWithoutRestart}, against a
gridreg master and slave and a gridnode running a real Ice server. Every
expected refusal is what IceGrid 3.7.8 said to the same calls
(docs/icegrid-node-facts.md).
"""

from __future__ import annotations

import json
import re

from twisted.internet import reactor

from tests._lineprocess import LineProcess
from tests._node_processes import managed_server_xml
from tests._processes import ICE_PYTHON, INTEROP_DIR, ice_env
from tests.test_icegridadmin_processes import IceGridAdminGrid
from tests.test_nodes_processes import NodeGridTestCase
from tests.test_replication_processes import eventually

APP = "UpdApp"
SERVER = "UpdHello"


def descriptor(option: str = "", live: str = "") -> str:
    extra = f"<property name='Upd.Live' value='{live}'/>" if live else ""
    server = managed_server_xml(SERVER, "node1", activation="manual", extra=extra)
    if option:
        server = server.replace("</option>", f"</option><option>{option}</option>", 1)
    return (
        f"<icegrid><application name='{APP}'>"
        "<server-template id='T'><parameter name='n'/>"
        "<server id='UpdT-${n}' exe='/bin/true' activation='manual'/></server-template>"
        f"<node name='node1'>{server}</node></application></icegrid>"
    )


def metadata(described: str) -> dict[str, str]:
    """The `key = `value'' lines icegridadmin prints for an application's metadata."""
    keys = ("uuid", "revision", "created by", "updated by")
    found = dict(re.findall(r"^\s*([a-z ]+) = `([^']*)'$", described, re.M))
    return {k: found[k] for k in keys if k in found}


class UpdateGrid(IceGridAdminGrid):
    def update_client(self) -> LineProcess:
        process = LineProcess.spawn(
            reactor,
            "ice_update_client",
            [
                ICE_PYTHON,
                str(INTEROP_DIR / "ice_update_client.py"),
                "--locator",
                self.locator("Master"),
                "--user",
                "scripter",
                "--application",
                APP,
                "--node",
                "node1",
                "--server",
                SERVER,
            ],
            ice_env(),
            INTEROP_DIR,
        )
        self.testcase.addCleanup(process.terminate)
        return process


class ApplicationUpdateProcessTests(NodeGridTestCase):
    grid_class = UpdateGrid

    async def ok(self, command: str, *options: str) -> str:
        code, output = await self.grid.icegridadmin(command, *options)
        self.assertEqual(code, 0, f"{command}: {output}")
        return output

    async def refused(self, command: str, *options: str) -> str:
        code, output = await self.grid.icegridadmin(command, *options)
        self.assertEqual(code, 1, f"{command}: {output}")
        return output

    async def test_updates(self) -> None:
        grid = self.grid
        assert isinstance(grid, UpdateGrid)
        await grid.start("Master")
        await grid.start("Replica1")
        node = grid.start_node("node1")
        await node.has_session("Master")
        path = grid.root / "upd-app.xml"
        path.write_text(descriptor())
        self.assertEqual(await self.ok(f"application add {path}"), "")
        added = metadata(await self.ok(f"application describe {APP}"))
        self.assertRegex(added.pop("uuid"), r"^[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}$")
        self.assertEqual(added, {"revision": "1", "created by": "admin", "updated by": "admin"})
        uuid = metadata(await self.ok(f"application describe {APP}"))["uuid"]

        # icegridadmin's `application update -n' (syncApplicationWithoutRestart)
        self.assertEqual(await self.ok(f"server start {SERVER}"), "")
        path.write_text(descriptor(option="--changed"))
        self.assertEqual(
            await self.refused(f"application update -n {path}"),
            "error: ::IceGrid::DeploymentException:\n"
            f"check for application `{APP}' update failed:\n"
            f"the server `{SERVER}' would need to be stopped",
        )
        self.assertIn("active", await self.ok(f"server state {SERVER}"))

        # a property-only change without restart: the running server takes it
        # through its Properties facet and keeps its pid, as with IceGrid 3.7.8
        pid = await self.ok(f"server pid {SERVER}")
        path.write_text(descriptor(live="two"))
        self.assertEqual(await self.ok(f"application update -n {path}"), "")

        async def taken() -> bool:
            return await self.ok(f"server property {SERVER} Upd.Live") == "two"

        await eventually(taken)
        self.assertEqual(await self.ok(f"server pid {SERVER}"), pid)

        # a real Ice program's updateApplication and updateApplicationWithoutRestart
        client = grid.update_client()
        before = await client.next_event(lambda e: e.get("step") == "info", timeout=60)
        self.assertEqual((before["uuid"], before["revision"]), (uuid, 2))
        updated = await client.next_event(lambda e: e.get("step") == "update", timeout=60)
        self.assertEqual(
            {k: updated[k] for k in ("uuid", "revision", "createUser", "updateUser")},
            {"uuid": uuid, "revision": 3, "createUser": "admin", "updateUser": "scripter"},
        )
        self.assertEqual(updated["description"], "updated by a script")
        self.assertEqual(updated["variables"], {"added": "yes"})
        self.assertGreaterEqual(updated["updateTime"], before["updateTime"])
        refusal = await client.next_event(lambda e: e.get("step") == "no-restart", timeout=60)
        self.assertEqual(
            (refusal["error"], refusal["details"]["reason"]),
            (
                "IceGrid.DeploymentException",
                f"check for application `{APP}' update failed:\n"
                f"the server `{SERVER}' would need to be stopped",
            ),
            json.dumps(refusal),
        )
        unknown = await client.next_event(lambda e: e.get("step") == "unknown", timeout=60)
        self.assertEqual(
            (unknown["error"], unknown["details"]),
            ("IceGrid.ApplicationNotExistException", {"name": "NoSuchApplication"}),
        )
        await client.when_ended()
        self.assertIn("Hello.Note = `updated'", await self.ok(f"server describe {SERVER}"))

        # instantiateServer, then `server remove' (getServerInfo, updateApplication)
        self.assertEqual(await self.ok(f"server template instantiate {APP} node1 T n=2"), "")
        self.assertIn("UpdT-2", (await self.ok("server list")).splitlines())
        self.assertEqual(
            await self.refused(f"server template instantiate {APP} node1 T n=2"),
            "error: ::IceGrid::DeploymentException:\n"
            "node `node1':\nduplicate server `UpdT-2' in node `node1'",
        )
        self.assertEqual(await self.ok("server remove UpdT-2"), "")
        self.assertNotIn("UpdT-2", (await self.ok("server list")).splitlines())
        final = {"uuid": uuid, "revision": "5", "created by": "admin", "updated by": "admin"}
        self.assertEqual(metadata(await self.ok(f"application describe {APP}")), final)

        # the slave has the same metadata
        async def replicated() -> bool:
            code, output = await grid.icegridadmin(f"application describe {APP}", "-r", "Replica1")
            return code == 0 and metadata(output) == final

        await eventually(replicated)
