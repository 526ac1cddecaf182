# -*- test-case-name: tests.test_demo_processes -*-
"""
The README's quick start with real processes: C{python3 -m gridreg.demo}
brings up a master, a slave and two nodes over mutual TLS and deploys the
sample application. Needs the C{gridnode} twistd plugin.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests._processes import REPO_ROOT, LineProcess
from tests.test_demo import free_port_block


class DemoProcessTests(TestCase):
    timeout = 120

    async def test_demo_grid_comes_up_with_its_nodes(self) -> None:
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
        output = "\n".join(process.lines)
        self.assertEqual(process.exit_code, 0, process.describe())
        self.assertIn("application DemoApp added", output, process.describe())
        for node in ("node1", "node2"):
            self.assertIn(f"node {node} is up", output, process.describe())
        self.assertIn("The demo grid is up", output, process.describe())
        for replica in ("Master", "Replica1"):
            self.assertTrue((root / "db" / replica / "registry.sqlite").exists())
