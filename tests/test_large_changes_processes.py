"""
The change from issue 6's report, with real processes: an application
descriptor of about 114 kB (2,000 well-known objects in one replica group),
deployed with gridadmin on a master over mutual TLS, reaches the slave
before gridadmin returns, and reaches a slave that was down when it
restarts; every replica lists the other as live.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from tests._processes import ice_missing
from tests.test_replication import large_application
from tests.test_replication_processes import GridProcesses, eventually


class LargeChangeProcessTests(TestCase):
    skip = ice_missing()
    timeout = 120

    async def test_large_descriptor_replicates_by_fan_out_and_by_sync(self) -> None:
        grid = GridProcesses(self)
        await grid.start("Master")
        await grid.start("Replica1")

        async def live(name: str) -> bool:
            code, output = await grid.gridadmin("--json", "registry", "list")
            replicas = {r["name"]: r for r in json.loads(output)} if code == 0 else {}
            return replicas.get(name, {}).get("state") == "live"

        await eventually(lambda: live("Replica1"))
        descriptor = grid.root / "large.xml"
        descriptor.write_text(large_application("Large"))
        self.assertGreater(descriptor.stat().st_size, 110_000)
        code, output = await grid.gridadmin("application", "add", str(descriptor))
        self.assertEqual(code, 0, output)
        # acknowledged by the master, so already on the slave
        code, output = await grid.gridadmin(
            "--replica", "Replica1", "object", "describe", "Large-object-01999"
        )
        self.assertEqual(code, 0, output)
        self.assertTrue(await live("Replica1"), "the slave stays live")

        await grid.running["Replica1"].stop()
        descriptor.write_text(large_application("Later"))
        code, output = await grid.gridadmin("application", "add", str(descriptor))
        self.assertEqual(code, 0, output)
        await grid.start("Replica1")
        await eventually(lambda: live("Replica1"))
        code, output = await grid.gridadmin(
            "--replica", "Replica1", "--json", "application", "list"
        )
        self.assertEqual(code, 0, output)
        self.assertEqual(sorted(a["name"] for a in json.loads(output)), ["Large", "Later"])
        code, output = await grid.gridadmin("--replica", "Replica1", "--json", "registry", "list")
        self.assertEqual(code, 0, output)
        own = next(r for r in json.loads(output) if r["name"] == "Replica1")
        self.assertEqual((own["state"], own["reason"]), ("live", ""))
