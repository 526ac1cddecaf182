# -*- test-case-name: tests.test_allocation_processes -*-
"""
Allocation with real processes: real Ice 3.7 clients open IceGrid client
sessions at a gridreg master and allocate an allocatable object of a
server a gridnode starts on demand; a second session times out, then waits
and is granted the object once the first releases it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor

from tests._lineprocess import LineProcess
from tests._node_processes import managed_server_xml
from tests._processes import ICE_PYTHON, INTEROP_DIR, ice_env
from tests.test_nodes_processes import NodeGrid, NodeGridTestCase


class AllocationGrid(NodeGrid):
    def properties(self, name: str, as_name: str, certs: Any) -> dict[str, str]:
        return {
            **super().properties(name, as_name, certs),
            "IceGrid.Registry.PermissionsVerifier": "DemoIceGrid/NullPermissionsVerifier",
        }

    def client(self, user: str) -> LineProcess:
        process = LineProcess.spawn(
            reactor,
            f"allocation-{user}",
            [
                ICE_PYTHON,
                str(INTEROP_DIR / "ice_allocation_client.py"),
                "--locator",
                self.locator("Master"),
                "--user",
                user,
            ],
            ice_env(),
            INTEROP_DIR,
        )
        self.testcase.addCleanup(process.terminate)
        return process


def _answer(event: dict[str, Any]) -> bool:
    return "command" in event


class AllocationProcessTests(NodeGridTestCase):
    grid_class = AllocationGrid

    async def test_allocate_timeout_wait_and_release(self) -> None:
        grid = self.grid
        await grid.start("Master")
        node = grid.start_node("node1")
        await node.has_session("Master")
        await grid.deploy(
            "Alloc",
            "<node name='node1'>"
            + managed_server_xml(
                "Alloc1",
                "node1",
                extra="<property name='Hello.Identity' value='res'/>",
                adapter_children="<allocatable identity='res' type='::Demo::Hello'/>",
            )
            + "</node>",
        )
        first, second = grid.client("first"), grid.client("second")
        for client in (first, second):
            await client.next_event("ready", timeout=30)

        first.write_line("allocate res 0")
        granted = await first.next_event(_answer, timeout=60)
        self.assertTrue(granted["ok"], granted)
        self.assertEqual(granted["hello"], "Alloc1")  # started on demand for the session

        second.write_line("allocate res 300")
        refused = await second.next_event(_answer, timeout=30)
        self.assertEqual(refused["error"], "IceGrid.AllocationTimeoutException", refused)

        second.write_line("allocate res -1")  # waits for ever, in line
        first.write_line("release res")
        released = await first.next_event(_answer, timeout=30)
        self.assertTrue(released["ok"], released)
        waited = await second.next_event(_answer, timeout=30)
        self.assertTrue(waited["ok"], waited)

        first.write_line("allocate res 200")  # now the second session holds it
        again = await first.next_event(_answer, timeout=30)
        self.assertEqual(again["error"], "IceGrid.AllocationTimeoutException", again)
        second.write_line("destroy")  # ending the session releases what it held
        await second.next_event(_answer, timeout=30)
        first.write_line("allocate res 5000")
        regained = await first.next_event(_answer, timeout=30)
        self.assertTrue(regained["ok"], regained)
