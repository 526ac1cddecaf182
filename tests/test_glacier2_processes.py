# -*- test-case-name: tests.test_glacier2_processes -*-
"""
The Glacier2 session managers with real processes: a gridreg master and
slave, a gridnode, and three real C{glacier2router}s, one per session
manager (client sessions on the master, admin sessions on the master, admin
sessions on the slave). Real Ice 3.7 clients (C{tests/interop/
ice_routed_client.py}) and the real C{icegridadmin} reach the grid only
through the routers.
"""

from __future__ import annotations

import shutil
from typing import Any

from twisted.internet import reactor

from tests._lineprocess import LOOPBACK, LineProcess, free_port, wait_for_port
from tests._node_processes import managed_server_xml
from tests._processes import ICE_PYTHON, INTEROP_DIR, ice_env, write_config
from tests.test_nodes_processes import NodeGrid, NodeGridTestCase

GLACIER2ROUTER = shutil.which("glacier2router") or "glacier2router"
ICEGRIDADMIN = shutil.which("icegridadmin") or "icegridadmin"
READ_ONLY = "this operation is not allowed on a slave or read-only master registry."


class RoutedGrid(NodeGrid):
    """A L{NodeGrid} whose replicas serve the Glacier2 session managers, and routers to them."""

    def __init__(self, testcase: Any) -> None:
        super().__init__(testcase)
        for ports in self.ports.values():
            ports.update(session_manager=free_port(), admin_session_manager=free_port())

    def properties(self, name: str, as_name: str, certs: Any) -> dict[str, str]:
        ports = self.ports[name]
        return {
            **super().properties(name, as_name, certs),
            "IceGrid.Registry.SessionManager.Endpoints": (
                f"tcp -h 127.0.0.1 -p {ports['session_manager']}"
            ),
            "IceGrid.Registry.AdminSessionManager.Endpoints": (
                f"tcp -h 127.0.0.1 -p {ports['admin_session_manager']}"
            ),
            "IceGrid.Registry.SessionFilters": "1",
            "IceGrid.Registry.AdminSessionFilters": "1",
            "IceGrid.Registry.Trace.Session": "1",
        }

    async def router(self, name: str, session_manager: str, *replicas: str) -> str:
        """
        Start a glacier2router whose sessions are C{<instance>/session_manager}'s,
        found through C{replicas}' locator, with its own null permissions
        verifier; return its router proxy.
        """
        port = free_port()
        config = self.root / f"router-{name}.cfg"
        write_config(
            config,
            {
                "Glacier2.InstanceName": name,
                "Glacier2.Client.Endpoints": f"tcp -h 127.0.0.1 -p {port}",
                "Glacier2.Server.Endpoints": "tcp -h 127.0.0.1",
                "Glacier2.SessionManager": f"DemoIceGrid/{session_manager}",
                "Glacier2.PermissionsVerifier": f"{name}/NullPermissionsVerifier",
                "Glacier2.Trace.Session": "1",
                "Glacier2.Client.Trace.Reject": "1",
                "Ice.Default.Locator": self.locator(*replicas),
            },
        )
        process = LineProcess.spawn(
            reactor,
            f"glacier2router-{name}",
            [GLACIER2ROUTER, f"--Ice.Config={config}"],
            ice_env(),
            self.root,
        )
        self.testcase.addCleanup(process.terminate)
        await wait_for_port(reactor, LOOPBACK, port, 20, process)
        return f"{name}/router:tcp -h 127.0.0.1 -p {port}"

    async def client(self, router: str, user: str) -> LineProcess:
        process = LineProcess.spawn(
            reactor,
            f"routed-{user}",
            [
                ICE_PYTHON,
                str(INTEROP_DIR / "ice_routed_client.py"),
                "--router",
                router,
                "--user",
                user,
            ],
            ice_env(),
            INTEROP_DIR,
        )
        self.testcase.addCleanup(process.terminate)
        await process.next_event("ready", timeout=30)
        return process

    async def icegridadmin(self, router: str, *commands: str) -> tuple[int, str]:
        """The real icegridadmin through C{router} only (no locator)."""
        args = [ICEGRIDADMIN, f"--Ice.Default.Router={router}", "-u", "admin", "-p", "x"]
        for command in commands:
            args += ["-e", command]
        process = LineProcess.spawn(reactor, "icegridadmin", args, ice_env(), self.root)
        await process.when_ended()
        output = "\n".join([*process.lines, bytes(process.stderr).decode("utf-8", "replace")])
        return process.exit_code, output


def _answer(event: dict[str, Any]) -> bool:
    return "command" in event


class Glacier2ProcessTests(NodeGridTestCase):
    grid_class = RoutedGrid

    async def test_three_routers(self) -> None:
        grid = self.grid
        assert isinstance(grid, RoutedGrid)
        await grid.start("Master")
        await grid.start("Replica1")
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
        clients = await grid.router("ClientRouter", "SessionManager", "Master")
        admins = await grid.router("AdminRouter", "AdminSessionManager", "Master")
        slave_admins = await grid.router(
            "SlaveAdminRouter", "AdminSessionManager-Replica1", "Replica1"
        )

        # a routed client session allocates the server's object and calls it
        alice = await grid.client(clients, "alice")
        alice.write_line("allocate res 0")
        granted = await alice.next_event(_answer, timeout=60)
        self.assertTrue(granted["ok"], granted)
        self.assertEqual(granted["hello"], "Alloc1")  # started on demand, reached via the router
        bob = await grid.client(clients, "bob")
        bob.write_line("allocate res 300")
        refused = await bob.next_event(_answer, timeout=30)
        self.assertEqual(refused["error"], "IceGrid.AllocationTimeoutException", refused)
        # destroying alice's router session ends her IceGrid session: bob gets the object
        alice.write_line("destroy")
        await alice.next_event(_answer, timeout=30)
        bob.write_line("allocate res 10000")
        regained = await bob.next_event(_answer, timeout=30)
        self.assertTrue(regained["ok"], regained)
        # with SessionFilters, a release takes the object out of the router's filter
        bob.write_line("release res")
        self.assertTrue((await bob.next_event(_answer, timeout=30))["ok"])
        bob.write_line("hello")
        filtered = await bob.next_event(_answer, timeout=30)
        self.assertEqual(filtered["error"], "Ice.ObjectNotExistException", filtered)

        # a routed admin session on the master writes
        code, output = await grid.icegridadmin(
            admins, 'object add "added@Nowhere" ::Demo::Hello', "object list"
        )
        self.assertEqual(code, 0, output)
        self.assertIn("added", output.split())

        # a routed admin session on the slave reads the grid and may not write
        reader = await grid.client(slave_admins, "reader")
        reader.write_line("admin-read")
        read = await reader.next_event(_answer, timeout=30)
        self.assertTrue(read["ok"], read)
        self.assertEqual(
            (read["replica"], read["nodes"], read["applications"]),
            ("Replica1", ["node1"], ["Alloc"]),
        )
        reader.write_line("admin-add-object other@Nowhere ::Demo::Hello")
        write = await reader.next_event(_answer, timeout=30)
        self.assertEqual(write["error"], "IceGrid.DeploymentException", write)
        self.assertEqual(write["details"]["reason"], READ_ONLY)
        code, output = await grid.icegridadmin(
            slave_admins, "application list", 'object add "more@Nowhere" ::Demo::Hello'
        )
        self.assertIn("Alloc", output.split())
        self.assertIn(READ_ONLY, output)
        self.assertNotEqual(code, 0, output)
