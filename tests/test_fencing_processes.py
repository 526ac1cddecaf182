"""
Promotion, fencing and recovery with real processes: C{twist gridregistry}
replicas over mutual TLS, driven with gridadmin as an operator would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from gridreg.admin.session import open_admin_session
from gridreg.config.properties import load_file
from gridreg.protocol.errors import NotMasterError, QuorumError
from tests._processes import RunningRegistry, ice_missing, start_gridregistry
from tests.test_replication_processes import GridProcesses, eventually


def logged(fragment: str) -> Any:
    """A predicate on twist's JSON log events: the format contains C{fragment}."""
    return lambda event: fragment in str(event.get("log_format", ""))


class OperatorGrid(GridProcesses):
    async def start_with(
        self, name: str, args: list[str], as_name: str | None = None, wait: bool = True
    ) -> Any:
        registry = await start_gridregistry(
            reactor,
            self.root / name,
            self.properties(name, as_name or name, self.certs),
            args,
            wait=wait,
        )
        self.running[name] = registry
        self.testcase.addCleanup(registry.stop)
        return registry

    async def replicas(self, *options: str) -> dict[str, dict[str, Any]]:
        code, output = await self.gridadmin(*options, "--json", "registry", "list")
        return {r["name"]: r for r in json.loads(output)} if code == 0 else {}

    async def state_of(self, name: str, *options: str) -> str:
        return str((await self.replicas(*options)).get(name, {}).get("state"))

    async def reaches(self, name: str, state: str, timeout: float = 20.0) -> None:
        """Wait (bounded) until the master's C{registry list} shows C{name} in C{state}."""

        seen: list[object] = []

        async def check() -> bool:
            code, output = await self.gridadmin("--json", "registry", "list")
            seen[:] = [code, output]
            return await self.state_of(name) == state

        try:
            await eventually(check, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{name} never {state}: last registry list {seen}") from exc


    async def caught_up(self, name: str, timeout: float = 20.0) -> None:
        """Wait (bounded) until the master's C{registry list} shows C{name} at its serial."""

        async def check() -> bool:
            replicas = await self.replicas()
            master, slave = replicas.get("Master", {}), replicas.get(name, {})
            return slave.get("serial") is not None and slave.get("serial") == master.get("serial")

        await eventually(check, timeout=timeout)


class FencingProcessTests(TestCase):
    skip = ice_missing()
    timeout = 120

    async def test_the_old_master_restarted_after_a_promotion_does_not_take_writes(self) -> None:
        """
        IceGrid lets the old master, restarted on its old database, accept
        writes while the promoted one runs; gridreg's refuses to run.
        """
        grid = OperatorGrid(self)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await grid.reaches("Replica1", "live")
        code, output = await grid.gridadmin("object", "add", "before@A", "::Demo::Hello")
        self.assertEqual(code, 0, output)
        await master.kill("KILL")
        await grid.running["Replica1"].stop()
        await grid.start("Replica1", as_name="Master")
        code, output = await grid.gridadmin("object", "add", "promoted@A", "::Demo::Hello")
        self.assertEqual(code, 0, output)

        old: RunningRegistry = await grid.start_with("Master", [], wait=False)
        await old.process.when_ended()
        stopped = [e for e in old.process.events if logged("Another master of {instance}")(e)]
        self.assertEqual(len(stopped), 1, "\n".join(old.process.lines[-20:]))
        self.assertEqual(stopped[0]["epoch"].split()[0], "2")
        code, output = await grid.gridadmin("--json", "object", "list")
        self.assertEqual(code, 0, output)
        names = {o["identity"] for o in json.loads(output)}
        self.assertTrue({"before", "promoted"} <= names, output)

    async def test_a_master_on_an_old_copy_is_fenced_then_settled_with_initdb(self) -> None:
        """
        The master is brought back on an old copy of its database: the slave
        holds a write the master lacks, and a newer epoch. The master fences
        itself, the slave refuses it, both say why and nothing is lost; the
        operator restarts the master with --initdb-from-replica Replica1.
        """
        grid = OperatorGrid(self)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await grid.reaches("Replica1", "live")
        await master.stop()
        backup = grid.root / "master-backup"
        shutil.copytree(grid.root / "Master" / "db", backup)
        master = await grid.start("Master")
        await grid.reaches("Replica1", "live")
        code, output = await grid.gridadmin("object", "add", "ahead@A", "::Demo::Hello")
        self.assertEqual(code, 0, output)
        await master.stop()
        shutil.rmtree(grid.root / "Master" / "db")
        shutil.copytree(backup, Path(grid.root / "Master" / "db"))

        master = await grid.start("Master")
        event = await master.process.next_event(logged("stops accepting writes"), timeout=30)
        self.assertIn("has seen epoch 2", event["why"])
        code, output = await grid.gridadmin("object", "add", "lost@A", "::Demo::Hello")
        self.assertEqual(code, 4, output)
        self.assertIn("superseded", output)

        async def slave_refuses() -> bool:
            own = (await grid.replicas("--replica", "Replica1")).get("Replica1", {})
            return own.get("state") == "refused" and "older than epoch" in own.get("reason", "")

        await eventually(slave_refuses)
        code, output = await grid.gridadmin("--replica", "Replica1", "object", "describe", "ahead")
        self.assertEqual(code, 0, "the slave kept what only it holds: " + output)

        await master.stop()
        await grid.start_with("Master", ["--initdb-from-replica", "Replica1"])
        await grid.reaches("Replica1", "live")
        code, output = await grid.gridadmin("object", "describe", "ahead")
        self.assertEqual(code, 0, output)
        code, output = await grid.gridadmin("object", "add", "after@A", "::Demo::Hello")
        self.assertEqual(code, 0, output)

    async def test_a_readonly_master_serves_reads_and_refuses_writes(self) -> None:
        grid = OperatorGrid(self)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await grid.reaches("Replica1", "live")
        code, output = await grid.gridadmin("object", "add", "kept@A", "::Demo::Hello")
        self.assertEqual(code, 0, output)
        await master.kill("KILL")
        await grid.running["Replica1"].stop()
        await grid.start_with("Replica1", ["--readonly"], as_name="Master")
        code, output = await grid.gridadmin("object", "describe", "kept")
        self.assertEqual(code, 0, output)
        code, output = await grid.gridadmin("object", "add", "new@A", "::Demo::Hello")
        self.assertEqual(code, 4, output)
        self.assertIn("--readonly", output)


class PartitionGrid(OperatorGrid):
    def properties(self, name: str, as_name: str, certs: Any) -> dict[str, str]:
        return {
            **super().properties(name, as_name, certs),
            "GridReg.Replication.MinAcks": "1",
            "GridReg.Replication.EpochCheckInterval": "1",
        }


class PartitionProcessTests(TestCase):
    skip = ice_missing()
    timeout = 120

    async def test_a_master_cut_off_during_a_promotion_never_acknowledges_a_write(self) -> None:
        """
        The master hangs (SIGSTOP: to the others it is partitioned away),
        Replica1 is promoted and Replica2 follows it. When the old master
        comes back it acknowledges nothing (MinAcks 1: its slaves are gone)
        and fences itself on learning of the newer epoch.
        """
        grid = PartitionGrid(self)
        master = await grid.start("Master")
        await grid.start("Replica1")
        await grid.start("Replica2")
        await grid.reaches("Replica1", "live")
        await grid.reaches("Replica2", "live")
        stale = await open_admin_session(reactor, load_file(str(grid.admin_config())), None, 5.0)
        self.addCleanup(stale.close)
        await stale.add_object("before@A", "::Demo::Hello")
        # MinAcks 1: the write returned once one slave had it; the promotion
        # below needs both to hold it, or Replica2 is (rightly) refused as
        # holding a write the promoted Replica1 lacks
        await grid.caught_up("Replica1")
        await grid.caught_up("Replica2")

        master.process.signal("STOP")
        self.addCleanup(master.process.signal, "CONT")
        await grid.running["Replica1"].stop()
        await grid.start("Replica1", as_name="Master")
        # the slave finds the promoted master after its back-off (up to 5 s) and the
        # new master's survey of the hung one (up to 5 s): slow on a loaded machine
        await grid.reaches("Replica2", "live", timeout=60)
        code, output = await grid.gridadmin("object", "add", "promoted@A", "::Demo::Hello")
        self.assertEqual(code, 0, output)

        master.process.signal("CONT")
        with self.assertRaises((QuorumError, NotMasterError)):
            await stale.add_object("stale@A", "::Demo::Hello")
        event = await master.process.next_event(logged("stops accepting writes"), timeout=30)
        self.assertIn("epoch 2", event["why"])
        with self.assertRaises(NotMasterError) as refused:
            await stale.add_object("stale-again@A", "::Demo::Hello")
        self.assertIn("no longer accepts writes", str(refused.exception))
        code, output = await grid.gridadmin("--json", "object", "list")
        self.assertEqual(code, 0, output)
        names = {o["identity"] for o in json.loads(output)}
        self.assertTrue({"before", "promoted"} <= names, output)
        self.assertFalse({"stale", "stale-again"} & names, output)
