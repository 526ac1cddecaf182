# -*- test-case-name: tests.test_replication_processes -*-
"""
Registry replication with real processes: a master and two slaves as
C{twist gridregistry} processes over mutual TLS, real Ice 3.7 servers and
clients, SIGKILL, restarts and promotion.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Awaitable, Callable

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gridreg.admin.session import AdminSession, open_admin_session
from gridreg.certs import make_demo_certs
from gridreg.config.properties import Properties
from tests._processes import (
    REPO_ROOT,
    IceServerError,
    LineProcess,
    RunningRegistry,
    free_port,
    ice_missing,
    run_ice_client,
    start_gridregistry,
    start_ice_server,
)

REPLICAS = ("Master", "Replica1", "Replica2")

#: how a slave's log line starts when the master refuses (or fails) its registration
SLAVE_REGISTRATION_FAILED = "[Replica] registration with the master failed: {reason}"
#: what a slave logs once it has lost its session with the master
SLAVE_LOST_MASTER = "[Replica] lost the session with the master; looking for it again"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """
    Retry C{check} every 0.1 s until it is true; fail once C{timeout} seconds
    of clock time have passed (a slow check counts, not just the pauses).
    """
    deadline = reactor.seconds() + timeout
    while not await check():
        if reactor.seconds() >= deadline:
            raise AssertionError(f"not true after {timeout} s")
        await deferLater(reactor, 0.1, lambda: None)


class GridProcesses:
    """Ports, certificates and configuration for a master and slaves on loopback."""

    def __init__(self, testcase: TestCase, insecure: bool = False) -> None:
        self.testcase = testcase
        #: internal sessions in plain TCP (GridReg.Internal.Insecure), as the benches run them
        self.insecure = insecure
        self.root = Path(testcase.mktemp()).resolve()
        self.root.mkdir(parents=True)
        self.certs = self.root / "certs"
        make_demo_certs(
            str(self.certs), replicas=REPLICAS, admins=["admin"], instance="DemoIceGrid"
        )
        self.ports = {
            name: {kind: free_port() for kind in ("client", "server", "internal")}
            for name in REPLICAS
        }
        self.running: dict[str, RunningRegistry] = {}

    def locator(self, *names: str) -> str:
        endpoints = ":".join(
            f"tcp -h 127.0.0.1 -p {self.ports[n]['client']}" for n in (names or REPLICAS)
        )
        return f"DemoIceGrid/Locator:{endpoints}"

    def properties(self, name: str, as_name: str, certs: Path) -> dict[str, str]:
        ports = self.ports[name]
        return {
            "IceGrid.Registry.ReplicaName": as_name,
            "IceGrid.Registry.Client.Endpoints": f"tcp -h 127.0.0.1 -p {ports['client']}",
            "IceGrid.Registry.Server.Endpoints": f"tcp -h 127.0.0.1 -p {ports['server']}",
            "IceGrid.Registry.Internal.Endpoints": f"tcp -h 127.0.0.1 -p {ports['internal']}",
            "IceGrid.Registry.ReplicaSessionTimeout": "3",
            "IceGrid.Registry.Trace.Replica": "1",
            "Ice.Default.Locator": self.locator(),
            **(
                {"GridReg.Internal.Insecure": "1"}
                if self.insecure
                else {
                    "IceSSL.DefaultDir": str(certs),
                    "IceSSL.CAs": "ca.pem",
                    "IceSSL.CertFile": f"registry-{as_name}.pem",
                    "IceSSL.KeyFile": f"registry-{as_name}.key",
                }
            ),
        }

    async def admin(self, replica: str | None = None) -> AdminSession:
        """An admin session (plain TCP grids only) with C{replica}, by default the master."""
        properties = Properties()
        properties.set("Ice.Default.Locator", self.locator())
        properties.set("GridReg.Internal.Insecure", "1")
        session = await open_admin_session(reactor, properties, replica, 10.0, warn=lambda _: None)
        self.testcase.addCleanup(session.close)
        return session

    async def start(
        self, name: str, as_name: str | None = None, certs: Path | None = None
    ) -> RunningRegistry:
        """Start replica C{name} (on its own data dir and ports), possibly renamed."""
        registry = await start_gridregistry(
            reactor,
            self.root / name,
            self.properties(name, as_name or name, certs or self.certs),
        )
        self.running[name] = registry
        self.testcase.addCleanup(registry.stop)
        return registry

    def admin_config(self) -> Path:
        path = self.root / "admin.cfg"
        path.write_text(
            f"Ice.Default.Locator = {self.locator()}\n"
            f"IceSSL.DefaultDir = {self.certs}\n"
            "IceSSL.CAs = ca.pem\n"
            "IceSSL.CertFile = admin-admin.pem\n"
            "IceSSL.KeyFile = admin-admin.key\n"
        )
        return path

    async def gridadmin(self, *args: str) -> tuple[int, str]:
        """Run gridadmin; return its exit code and output."""
        process = LineProcess.spawn(
            reactor,
            "gridadmin",
            [
                sys.executable,
                "-m",
                "gridreg.admin.cli",
                "--config",
                str(self.admin_config()),
                *args,
            ],
            {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
            str(self.root),
        )
        await process.when_ended()
        return process.exit_code, "\n".join(process.lines) + bytes(process.stderr).decode(
            "utf-8", "replace"
        )

    async def resolves(self, locator: str, proxy: str, expected: str) -> bool:
        [result] = await run_ice_client(reactor, locator, [["resolve", proxy]])
        return bool(result["ok"]) and result.get("result") == expected


class ReplicationProcessTests(TestCase):
    skip = ice_missing()
    timeout = 120

    async def test_gridadmin_changes_reach_slaves_and_clients_fail_over(self) -> None:
        """
        An object added with gridadmin on the master resolves on both slaves;
        gridadmin writes sent to a slave are refused (exit 4); with the master
        killed, real Ice clients and gridreg.client keep resolving.
        """
        grid = GridProcesses(self)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await grid.start("Replica2")
        for slave in ("Replica1", "Replica2"):
            await eventually(lambda s=slave: _knows_internal(grid.locator("Master"), s))
        server = await start_ice_server(
            reactor, grid.locator("Master"), ("HelloAdapter",), name="A", objects=("greeter",)
        )
        self.addCleanup(server.stop)
        code, output = await grid.gridadmin(
            "object", "add", "greeter@HelloAdapter", "::Demo::Hello"
        )
        self.assertEqual(code, 0, output)
        for slave in ("Replica1", "Replica2"):
            self.assertTrue(
                await grid.resolves(grid.locator(slave), "greeter", "A"),
                f"acknowledged on the master, so already on {slave}",
            )
        code, output = await grid.gridadmin("--replica", "Replica1", "object", "remove", "greeter")
        self.assertEqual(code, 4, output)
        self.assertIn("read-only", output)

        await master.kill("KILL")
        self.assertTrue(await grid.resolves(grid.locator(), "greeter", "A"))
        code, output = await grid.gridadmin("--replica", "Replica2", "object", "list")
        self.assertEqual(code, 0, output)
        self.assertIn("greeter", output)

        from gridreg.client import LocatorClient

        client = LocatorClient(reactor, grid.locator(), cache_timeout=0)
        client.startService()
        self.addCleanup(client.stopService)
        endpoints = await client.resolve("greeter")
        self.assertEqual([e.port for e in endpoints], [server.port("HelloAdapter")])

    async def test_master_and_two_slaves(self) -> None:
        """
        Registrations made on the master reach both slaves; with the master
        killed, clients resolve through the slaves; a slave restarted while
        the master is down comes back from its own database; the master
        restarted catches the slaves up.
        """
        grid = GridProcesses(self)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await grid.start("Replica2")
        server = await start_ice_server(
            reactor, grid.locator("Master"), ("HelloAdapter",), name="A"
        )
        self.addCleanup(server.stop)
        for slave in ("Replica1", "Replica2"):
            await eventually(
                lambda s=slave: grid.resolves(grid.locator(s), "hello@HelloAdapter", "A")
            )

        await master.kill("KILL")
        self.assertTrue(await grid.resolves(grid.locator(), "hello@HelloAdapter", "A"))

        await grid.running["Replica1"].stop()
        await grid.start("Replica1")
        self.assertTrue(
            await grid.resolves(grid.locator("Replica1"), "hello@HelloAdapter", "A"),
            "a slave restarted without its master serves from its own database",
        )

        await grid.start("Master")
        later = await start_ice_server(reactor, grid.locator("Master"), ("LaterAdapter",), name="B")
        self.addCleanup(later.stop)
        for slave in ("Replica1", "Replica2"):
            await eventually(
                lambda s=slave: grid.resolves(grid.locator(s), "hello@LaterAdapter", "B")
            )

    async def test_promotion_keeps_acknowledged_writes(self) -> None:
        """
        A slave restarted as Master on its own database has every write the
        old master acknowledged, and the other slave registers with it.
        """
        grid = GridProcesses(self)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await grid.start("Replica2")
        for slave in ("Replica1", "Replica2"):
            await eventually(lambda s=slave: _knows_internal(grid.locator("Master"), s))
        server = await start_ice_server(
            reactor, grid.locator("Master"), ("HelloAdapter",), name="A"
        )
        self.addCleanup(server.stop)
        # acknowledged by the master: then it dies
        await master.kill("KILL")
        await grid.running["Replica1"].stop()
        await grid.start("Replica1", as_name="Master")
        self.assertTrue(await grid.resolves(grid.locator("Replica1"), "hello@HelloAdapter", "A"))
        later = await start_ice_server(
            reactor, grid.locator("Replica1"), ("AfterPromotion",), name="C"
        )
        self.addCleanup(later.stop)
        await eventually(
            lambda: grid.resolves(grid.locator("Replica2"), "hello@AfterPromotion", "C")
        )

    async def test_replica_with_wrong_certificate_is_rejected(self) -> None:
        grid = GridProcesses(self)
        await grid.start("Master")
        impostor_certs = grid.root / "impostor-certs"
        make_demo_certs(str(impostor_certs), replicas=REPLICAS, instance="DemoIceGrid")
        impostor = await grid.start("Replica1", certs=impostor_certs)
        server = await start_ice_server(
            reactor, grid.locator("Master"), ("HelloAdapter",), name="A"
        )
        self.addCleanup(server.stop)
        # The impostor tries again after the registration, and the master's
        # certificate check refuses it once more.
        registered = reactor.seconds()
        refusal = await impostor.process.next_event(
            lambda e: (
                str(e.get("log_format")).startswith(SLAVE_REGISTRATION_FAILED)
                and e.get("log_time", 0) > registered
            ),
            timeout=20,
        )
        self.assertIn("certificate verify failed", refusal["reason"])
        self.assertFalse(await _knows_internal(grid.locator("Master"), "Replica1", live=True))
        self.assertFalse(await grid.resolves(grid.locator("Replica1"), "hello@HelloAdapter", "A"))

    async def test_write_sent_to_slave_while_master_down_is_refused(self) -> None:
        """
        Once a slave has seen its master's connection close, an Ice server
        registering with it is refused: the slave needs the master for writes.
        """
        grid = GridProcesses(self)
        master = await grid.start("Master")
        slave = await grid.start("Replica1")
        await eventually(lambda: _knows_internal(grid.locator("Master"), "Replica1"))
        killed = reactor.seconds()
        await master.kill("KILL")
        await slave.process.next_event(
            lambda e: e.get("log_format") == SLAVE_LOST_MASTER and e.get("log_time", 0) > killed,
            timeout=20,
        )
        with self.assertRaises(IceServerError) as caught:
            await start_ice_server(reactor, grid.locator("Replica1"), ("Refused",), name="R")
        # the Ice server reports why its activation failed: the slave's refusal
        self.assertEqual(caught.exception.type, "Ice.UnknownException")
        self.assertEqual(
            caught.exception.event["details"]["unknown"],
            "gridreg.protocol.errors.SyncError: the master is unreachable; "
            "registrations need the master",
        )


class PlainTcpReplicationTests(TestCase):
    """
    Internal sessions in plain TCP, where boxes go straight to the sockets
    and a slave's acknowledgement leaves from its store's thread
    (L{gridreg.protocol.prompt}).
    """

    skip = ice_missing()
    timeout = 120

    async def test_acknowledged_writes_survive_a_killed_slave(self) -> None:
        """
        Every write the master acknowledged, one at a time, is in the slave's
        own database: with the master gone, the slave killed with SIGKILL
        and started again lists each of them from its store.
        """
        grid = GridProcesses(self, insecure=True)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await eventually(lambda: _knows_internal(grid.locator("Master"), "Replica1", live=True))
        session = await grid.admin()
        names = [f"acked/obj{i}" for i in range(40)]
        for name in names:
            await session.add_object(f"{name}:tcp -h 127.0.0.1 -p 10000", "::Demo::Hello")
        await master.kill("KILL")
        await grid.running["Replica1"].kill("KILL")
        await grid.start("Replica1")
        slave = await grid.admin("Replica1")
        listed = [item["identity"] for item in await slave.list("object", "acked/*")]
        self.assertEqual(sorted(listed), sorted(names))


async def _knows_internal(locator: str, replica: str, live: bool = False) -> bool:
    """Does the registry behind C{locator} list C{replica} (in its Locator, if C{live})?"""
    if live:
        [result] = await run_ice_client(reactor, locator, [["findObjectById", "DemoIceGrid/Query"]])
        return bool(result["ok"]) and len(result["endpoints"]) > 1
    [result] = await run_ice_client(
        reactor, locator, [["findObjectById", f"DemoIceGrid/InternalRegistry-{replica}"]]
    )
    return bool(result["ok"])
