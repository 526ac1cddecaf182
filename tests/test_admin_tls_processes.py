# -*- test-case-name: tests.test_admin_tls_processes -*-
"""
C{gridadmin}'s own TLS client (the standard library's C{ssl}, in
L{gridreg.admin.wire}) against real registry processes: it loads none of
pyOpenSSL, C{cryptography} and C{service_identity} for a command, and it
still refuses a registry that is not the replica asked for, and is refused
with a certificate the grid did not sign, with errors that say so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from gridreg.certs import make_demo_certs
from gridreg.tls_gate import REFUSED
from tests._lineprocess import LineProcess
from tests._processes import REPO_ROOT, start_gridregistry
from tests.test_replication_processes import GridProcesses


class _Grid(GridProcesses):
    async def start_as(self, name: str, certificate: str, certs: Path) -> None:
        """Start replica C{name} presenting the registry certificate of C{certificate}."""
        properties = self.properties(name, name, certs)
        properties["IceSSL.CertFile"] = f"registry-{certificate}.pem"
        properties["IceSSL.KeyFile"] = f"registry-{certificate}.key"
        registry = await start_gridregistry(reactor, self.root / name, properties)
        self.running[name] = registry
        self.testcase.addCleanup(registry.stop)


class AdminTLSProcessTests(TestCase):
    """gridadmin over mutual TLS against C{twist gridregistry} processes."""

    timeout = 120

    async def gridadmin(
        self, grid: GridProcesses, *args: str, config: Path | None = None, importtime: bool = False
    ) -> tuple[int | None, str, str]:
        """Run C{gridadmin --config F ARGS}: its exit code, stdout and stderr."""
        process = LineProcess.spawn(
            reactor,
            "gridadmin",
            [
                sys.executable,
                *(["-X", "importtime"] if importtime else []),
                "-m",
                "gridreg.admin",
                "--config",
                str(config or grid.admin_config()),
                *args,
            ],
            {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
            str(grid.root),
        )
        await process.when_ended()
        stderr = bytes(process.stderr).decode("utf-8", "replace")
        return process.exit_code, "\n".join(process.lines), stderr

    def config(self, grid: GridProcesses, certs: Path, ca: Path) -> Path:
        """An admin configuration with the admin certificate in C{certs}, trusting C{ca}."""
        path = grid.root / "other-admin.cfg"
        path.write_text(
            f"Ice.Default.Locator = {grid.locator('Master')}\n"
            f"IceSSL.CAs = {ca}\n"
            f"IceSSL.CertFile = {certs / 'admin-admin.pem'}\n"
            f"IceSSL.KeyFile = {certs / 'admin-admin.key'}\n"
        )
        return path

    async def test_registry_list_loads_no_tls_library(self) -> None:
        """
        C{registry list} over mutual TLS answers, and the process imports
        neither Twisted nor pyOpenSSL, C{cryptography} or C{service_identity}
        (C{-X importtime} lists every module it imports).
        """
        grid = GridProcesses(self)
        await grid.start("Master")
        code, out, err = await self.gridadmin(grid, "registry", "list", importtime=True)
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"(?m)^Master +master ")
        imported = {
            line.rsplit("|", 1)[-1].strip()
            for line in err.splitlines()
            if line.startswith("import time:")
        }
        self.assertIn("ssl", imported, "importtime lists the modules (the check can fail)")
        top = {name.partition(".")[0] for name in imported}
        self.assertEqual(top & {*REFUSED, "twisted"}, set())

    async def test_replica_with_another_replicas_certificate(self) -> None:
        """
        A master whose certificate names another replica fails the
        handshake's name check: gridadmin does not talk to it.
        """
        grid = _Grid(self)
        await grid.start_as("Master", "Replica1", grid.certs)
        code, out, err = await self.gridadmin(grid, "registry", "list")
        self.assertEqual((code, out), (3, ""), err)
        self.assertIn("cannot reach registry replica `Master'", err)
        self.assertIn(f"127.0.0.1:{grid.ports['Master']['internal']}", err)
        self.assertIn("certificate verify failed", err)
        self.assertIn("master.registry.gridreg", err)

    async def test_replica_whose_name_differs_in_case(self) -> None:
        """
        A certificate for C{master} carries the same DNS name as
        C{Master}'s (DNS folds case), so the handshake accepts it; the
        exact name in its subject CN is then checked, and refused.
        """
        grid = _Grid(self)
        make_demo_certs(str(grid.certs), replicas=["master"], instance="DemoIceGrid")
        await grid.start_as("Master", "master", grid.certs)
        code, out, err = await self.gridadmin(grid, "registry", "list")
        self.assertEqual((code, out), (3, ""), err)
        self.assertIn("not the replica we asked for", err)
        self.assertIn("'master' (master.registry.gridreg) is not the registry 'Master'", err)

    async def test_admin_certificate_of_another_grid(self) -> None:
        """An admin certificate another CA signed is refused by the registry."""
        grid = GridProcesses(self)
        await grid.start("Master")
        other = grid.root / "other-certs"
        make_demo_certs(str(other), admins=["admin"], instance="DemoIceGrid")
        config = self.config(grid, other, grid.certs / "ca.pem")
        code, out, err = await self.gridadmin(grid, "registry", "list", config=config)
        self.assertEqual((code, out), (3, ""), err)
        self.assertIn("registry replica `Master'", err)
        self.assertIn("unknown ca", err.lower())

    async def test_registry_of_another_grid(self) -> None:
        """Trusting another CA than the one that signed the registry: no session."""
        grid = GridProcesses(self)
        await grid.start("Master")
        other = grid.root / "other-certs"
        make_demo_certs(str(other), admins=["admin"], instance="DemoIceGrid")
        config = self.config(grid, other, other / "ca.pem")
        code, out, err = await self.gridadmin(grid, "registry", "list", config=config)
        self.assertEqual((code, out), (3, ""), err)
        self.assertIn("cannot reach registry replica `Master'", err)
        self.assertIn("certificate verify failed", err)
