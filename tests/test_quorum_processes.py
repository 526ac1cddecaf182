"""
GridReg.Replication.MinAcks with real processes: with one slave required,
SIGKILL of the master while writes are in flight (and one slave hung, then
catching up), followed by the promotion of the most up-to-date slave, loses
no acknowledged write.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gridreg.admin.session import AdminUnreachableError, open_admin_session
from gridreg.config.properties import load_file
from gridreg.protocol.errors import NotMasterError, QuorumError
from tests._processes import ice_missing
from tests.test_fencing_processes import OperatorGrid


class QuorumGrid(OperatorGrid):
    def properties(self, name: str, as_name: str, certs: Any) -> dict[str, str]:
        return {**super().properties(name, as_name, certs), "GridReg.Replication.MinAcks": "1"}


class QuorumProcessTests(TestCase):
    skip = ice_missing()
    timeout = 120

    async def test_promoting_the_newest_slave_keeps_every_acknowledged_write(self) -> None:
        grid = QuorumGrid(self)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await grid.start("Replica2")
        await grid.reaches("Replica1", "live")
        await grid.reaches("Replica2", "live")
        session = await open_admin_session(reactor, load_file(str(grid.admin_config())), None, 5.0)
        acknowledged: list[str] = []
        refused: list[str] = []

        async def write(name: str) -> bool:
            try:
                await session.add_object(f"{name}@A", "::Demo::Hello")
            except QuorumError:
                refused.append(name)
                return True
            except (AdminUnreachableError, NotMasterError):
                return False  # the master is gone
            acknowledged.append(name)
            return True

        for i in range(20):
            self.assertTrue(await write(f"before-{i}"))
        # Replica2 hangs: writes go on with Replica1's acknowledgements alone
        grid.running["Replica2"].process.signal("STOP")
        for i in range(20):
            self.assertTrue(await write(f"lagging-{i}"))
        grid.running["Replica2"].process.signal("CONT")
        # the master dies while writes are in flight
        killing = deferLater(reactor, 0.3, lambda: master.kill("KILL"))
        i = 0
        while await write(f"during-{i}"):
            i += 1
        await killing
        await session.close()
        self.assertEqual(refused, [], "a slave was there to acknowledge every write")
        self.assertGreater(len(acknowledged), 40)

        serials = {}
        for name in ("Replica1", "Replica2"):
            code, output = await grid.gridadmin(
                "--replica", name, "--json", "registry", "describe", name
            )
            self.assertEqual(code, 0, output)
            serials[name] = json.loads(output)["serial"]
        newest = max(serials, key=lambda n: serials[n])
        await grid.running[newest].stop()
        await grid.start(newest, as_name="Master")
        code, output = await grid.gridadmin("--json", "object", "list")
        self.assertEqual(code, 0, output)
        present = {o["identity"] for o in json.loads(output)}
        self.assertEqual(sorted(set(acknowledged) - present), [])
        other = "Replica2" if newest == "Replica1" else "Replica1"
        await grid.reaches(other, "live")
