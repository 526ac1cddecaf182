# -*- test-case-name: tests.test_logfiles_processes -*-
"""
The real C{icegridadmin} (ZeroC 3.7.8) reads log files through gridreg:
C{server show} (a real Ice server's stdout and stderr, written where the
gridnode's IceGrid.Node.Output puts them, and its declared log files),
C{node show} (the gridnode's Ice.StdOut) and C{registry show} (the master's
and, through the master, the slave's Ice.StdErr). What each
prints is what real IceGrid printed for the same files
(docs/icegrid-node-facts.md, "Log files").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests._node_processes import managed_server_xml
from tests._processes import ice_missing
from tests.test_icegridadmin_processes import IceGridAdminGrid
from tests.test_nodes_processes import NodeGridTestCase
from tests.test_replication_processes import eventually

SERVER = "LogHello"


class LogFileGrid(IceGridAdminGrid):
    """The replicas' stderr go to files that already hold a line."""

    def properties(self, name: str, as_name: str, certs: Path) -> dict[str, str]:
        properties = super().properties(name, as_name, certs)
        if name in ("Master", "Replica1"):
            properties["Ice.StdErr"] = str(self.stderr_of(name))
        return properties

    def stderr_of(self, name: str) -> Path:
        return self.root / f"{name}-stderr.txt"


class LogFileProcessTests(NodeGridTestCase):
    grid_class = LogFileGrid

    def setUp(self) -> None:
        missing = ice_missing() or (None if shutil.which("icegridadmin") else "no icegridadmin")
        if missing:
            raise self.skipTest(missing)
        super().setUp()

    async def show(self, command: str) -> list[str]:
        """The lines icegridadmin printed for C{command}, after its heading."""
        grid = self.grid
        assert isinstance(grid, LogFileGrid)
        code, output = await grid.icegridadmin(command)
        self.assertEqual(code, 0, f"{command}: {output}")
        heading, *lines = output.splitlines()
        return [heading.rstrip(), *lines]

    async def test_icegridadmin_shows_log_files(self) -> None:
        grid = self.grid
        assert isinstance(grid, LogFileGrid)
        for name in ("Master", "Replica1"):
            grid.stderr_of(name).write_text(f"{name} stderr before start\n")
        await grid.start("Master")
        await grid.start("Replica1")
        node_stdout = grid.root / "node1-stdout.txt"
        node_stdout.write_text("node1 stdout before start\n")
        grid.start_node("node1", **{"Ice.StdOut": str(node_stdout)})
        app_log = grid.root / "app-server.log"
        app_log.write_text("app line 1\napp line 2\n")
        # a relative <log> path is the node's working directory's
        (grid.root / "node1" / "rel.log").write_text("relative line\n")

        async def node_up() -> bool:
            code, output = await grid.icegridadmin("node ping node1")
            return code == 0 and output == "node is up"

        # the node's log goes to its Ice.StdOut now, not to the test's pipe
        await eventually(node_up, timeout=60)
        await grid.deploy(
            "Logs",
            "<node name='node1'>"
            + managed_server_xml(
                SERVER,
                "node1",
                activation="manual",
                extra="<property name='LogTest.PrintLines' value='3'/>"
                f"<log path='{app_log}'/><log path='rel.log'/>",
            )
            + "</node>",
        )
        self.assertEqual((await grid.icegridadmin(f"server start {SERVER}"))[0], 0)

        self.assertEqual(
            await self.show(f"server show {SERVER} stdout"),
            [f"server `{SERVER}' stdout:"] + [f"stdout line {i} of {SERVER}" for i in range(3)],
        )
        self.assertEqual(
            await self.show(f"server show -t 2 {SERVER} stderr"),
            [f"server `{SERVER}' stderr:"] + [f"stderr line {i} of {SERVER}" for i in (1, 2)],
        )
        self.assertEqual(
            await self.show(f"server show -h 1 {SERVER} stderr"),
            [f"server `{SERVER}' stderr:", f"stderr line 0 of {SERVER}"],
        )
        node_lines = await self.show("node show node1 stdout")
        self.assertEqual(node_lines[:2], ["node `node1' stdout:", "node1 stdout before start"])
        # then what the node logged since (twist writes JSON events when not on a terminal)
        events = [json.loads(line.strip("\x1e")) for line in node_lines[2:] if line.strip()]
        self.assertIn(
            ("Node {node} has a session with replica {replica}", "Master"),
            [(e.get("log_format"), e.get("replica")) for e in events],
        )
        master_lines = await self.show("registry show Master stderr")
        self.assertEqual(
            master_lines[:2], ["registry `Master' stderr:", "Master stderr before start"]
        )
        # the slave's, through the master (IceGrid's master relays to the slave)
        slave_lines = await self.show("registry show -h 1 Replica1 stderr")
        self.assertEqual(
            slave_lines, ["registry `Replica1' stderr:", "Replica1 stderr before start"]
        )
        with grid.stderr_of("Master").open("a") as f:
            f.write("written later\n")
        self.assertEqual(
            await self.show("registry show -t 1 Master stderr"),
            ["registry `Master' stderr:", "written later"],
        )

        self.assertEqual(
            await self.show(f"server show -t 1 {SERVER} {app_log}"),
            [f"server `{SERVER}' {app_log}:", "app line 2"],
        )
        self.assertEqual(
            await self.show(f"server show {SERVER} rel.log"),
            [f"server `{SERVER}' rel.log:", "relative line"],
        )
        code, output = await grid.icegridadmin(f"server show {SERVER} app.log")
        self.assertEqual(
            (code, output),
            (
                1,
                f"server `{SERVER}' app.log: error: couldn't access file:\n"
                # relative to the node's working directory, as icegridnode resolves it
                f"unknown log file `{grid.root}/node1/app.log'",
            ),
        )
        code, output = await grid.icegridadmin("node show node1 stderr")
        self.assertEqual(
            (code, output),
            (
                1,
                "node `node1' stderr: error: couldn't access file:\n"
                "Ice.StdErr configuration property is not set",
            ),
        )
