# -*- test-case-name: tests.test_demo -*-
"""
The README's quick start: C{python3 -m gridreg.demo} brings up three
replicas over mutual TLS and deploys the sample application.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests._processes import LineProcess, REPO_ROOT


def free_port_block(size: int = 23) -> int:
    """A base port with C{size} free ports after it (checked, not reserved)."""
    for base in range(20000, 60000, 97):
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports")


class DemoTests(TestCase):
    timeout = 90

    async def test_demo_grid_comes_up_and_deploys_the_application(self) -> None:
        root = Path(self.mktemp()).resolve()
        process = LineProcess.spawn(
            reactor,
            "demo",
            [
                sys.executable,
                "-m",
                "gridreg.demo",
                "--dir",
                str(root),
                "--base-port",
                str(free_port_block()),
                "--exit-after-start",
            ],
            {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
            str(REPO_ROOT),
        )
        await process.when_ended()
        self.assertEqual(process.exit_code, 0, process.describe())
        self.assertIn("The demo grid is up", "\n".join(process.lines), process.describe())
        added = (root / "logs" / "gridadmin-add.log").read_text()
        self.assertIn("application `DemoApp' added", added)
        for replica in ("Master", "Replica1", "Replica2"):
            self.assertTrue((root / "db" / replica / "registry.sqlite").exists())
