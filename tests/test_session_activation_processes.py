# -*- test-case-name: tests.test_session_activation_processes -*-
"""
C{session} activation with real processes: real Ice 3.7 clients open
IceGrid client sessions at a gridreg master and allocate the object of a
session server that a gridnode runs only while a session holds it; a slave
relays locates and the admin's start to the node, which decides.
Checked against IceGrid 3.7.8 (docs/icegrid-node-facts.md, "Session
activation").
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor

from tests._node_processes import managed_server_xml
from tests._processes import run_ice_client
from tests.test_allocation_processes import AllocationGrid
from tests.test_nodes_processes import NodeGridTestCase
from tests.test_replication_processes import eventually

SERVER = managed_server_xml(
    "Sess1",
    "node1",
    activation="session",
    adapter_id="SessAdapter",
    attributes='allocatable="true"',
    extra="<property name='Hello.Identity' value='res'/>",
    adapter_children="<allocatable identity='res' type='::Demo::Hello'/>",
)


def _answer(event: dict[str, Any]) -> bool:
    return "command" in event


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class SessionActivationProcessTests(NodeGridTestCase):
    grid_class = AllocationGrid

    async def admin(self, *args: str, replica: str = "Master") -> str:
        code, output = await self.grid.gridadmin("--replica", replica, "server", *args)
        return output.strip() if code == 0 else f"error {code}: {output.strip()}"

    async def hello_without_session(self, replica: str = "Master") -> dict[str, Any]:
        [result] = await run_ice_client(
            reactor, self.grid.locator(replica), [["sayHello", "res@SessAdapter"]]
        )
        return result

    async def test_started_for_its_session_and_stopped_when_it_ends(self) -> None:
        grid = self.grid
        await grid.start("Master")
        await grid.start("Replica1")
        node = grid.start_node("node1")
        await node.has_session("Master")
        await node.has_session("Replica1")
        await grid.deploy("Sess", "<node name='node1'>" + SERVER + "</node>")

        async def replicated() -> bool:
            return await self.admin("state", "Sess1", replica="Replica1") == "inactive (enabled)"

        await eventually(replicated)
        # held by nobody: no client can start it, nor can the admin (as IceGrid 3.7.8)
        for replica in ("Master", "Replica1"):
            refused = await self.hello_without_session(replica)
            self.assertEqual(refused.get("error"), "Ice.NoEndpointException", refused)
            started = await self.admin("start", "Sess1", replica=replica)
            self.assertIn("The server is not owned by a session.", started)
        self.assertEqual(await self.admin("state", "Sess1"), "inactive (enabled)")

        first, second = grid.client("first"), grid.client("second")
        for client in (first, second):
            await client.next_event("ready", timeout=30)
        first.write_line("allocate res -1")
        granted = await first.next_event(_answer, timeout=60)
        self.assertTrue(granted["ok"], granted)
        self.assertEqual(granted["hello"], "Sess1")  # started at its first locate
        # held, the admin may stop and start it, through a slave too (as IceGrid 3.7.8)
        for action in ("stop", "start"):
            done = await self.admin(action, "Sess1", replica="Replica1")
            self.assertFalse(done.startswith("error"), done)
        self.assertTrue((await self.admin("state", "Sess1")).startswith("active"))
        first_pid = int(await self.admin("pid", "Sess1"))
        # held, anybody reaches it through any replica (as IceGrid 3.7.8)
        through_slave = await self.hello_without_session("Replica1")
        self.assertEqual(through_slave.get("result"), "Sess1", through_slave)

        second.write_line("allocate res 300")
        timed_out = await second.next_event(_answer, timeout=30)
        self.assertEqual(timed_out["error"], "IceGrid.AllocationTimeoutException", timed_out)
        second.write_line("allocate res -1")  # waits in line

        first.write_line("destroy")  # the first session ends: its server stops
        await first.next_event(_answer, timeout=30)
        waited = await second.next_event(_answer, timeout=60)
        self.assertTrue(waited["ok"], waited)
        self.assertEqual(waited["hello"], "Sess1")
        second_pid = int(await self.admin("pid", "Sess1"))
        self.assertNotEqual(second_pid, first_pid)
        self.assertFalse(_alive(first_pid))  # stopped before the second session got it

        second.write_line("destroy")
        await second.next_event(_answer, timeout=30)

        async def stopped() -> bool:
            return await self.admin("state", "Sess1") == "inactive (enabled)"

        await eventually(stopped)
        self.assertFalse(_alive(second_pid))
        refused = await self.hello_without_session()
        self.assertEqual(refused.get("error"), "Ice.NoEndpointException", refused)
