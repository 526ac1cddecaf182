"""
A fresh slave of a master holding 100,000 well-known objects, with real
processes over mutual TLS: it gets the streamed snapshot, answers for the
master's last object, and gets a write made while it synced.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.registry.state import ObjectInfo, object_mutation
from gridreg.store.sqlite import SQLiteStore
from tests._processes import ice_missing
from tests.test_replication_processes import GridProcesses, eventually

OBJECTS = 100_000
BATCH = 5_000


async def fill_store(path: str, count: int) -> None:
    """C{count} objects C{sync/obj<i>} in a new store, before its registry starts."""
    store = SQLiteStore(path)
    await store.open()
    endpoints = (TcpEndpoint("127.0.0.1", 10000),)
    try:
        for first in range(0, count, BATCH):
            mutations = []
            for i in range(first, min(count, first + BATCH)):
                identity = Identity(f"obj{i}", "sync")
                info = ObjectInfo(Proxy(identity, endpoints=endpoints), "::Demo::Hello")
                mutations.append(object_mutation(identity, info))
            await store.commit(mutations)
    finally:
        await store.close()


class FreshSlaveSyncProcessTests(TestCase):
    skip = ice_missing()
    timeout = 180

    async def test_a_fresh_slave_gets_a_hundred_thousand_objects(self) -> None:
        grid = GridProcesses(self)
        await fill_store(str(grid.root / "Master" / "db"), OBJECTS)
        await grid.start("Master")
        await grid.start("Replica1")
        code, output = await grid.gridadmin("object", "add", "during@DuringAdapter")
        self.assertEqual(code, 0, output)

        async def live() -> bool:
            code, output = await grid.gridadmin("--json", "registry", "list")
            replicas = {r["name"]: r for r in json.loads(output)} if code == 0 else {}
            return replicas.get("Replica1", {}).get("state") == "live"

        await eventually(live, timeout=60)
        for name in (f"sync/obj{OBJECTS - 1}", "sync/obj0", "sync/obj54321", "during"):
            code, output = await grid.gridadmin("--replica", "Replica1", "object", "describe", name)
            self.assertEqual(code, 0, output)
        code, output = await grid.gridadmin("--replica", "Replica1", "object", "describe", "nope")
        self.assertNotEqual(code, 0, output)
