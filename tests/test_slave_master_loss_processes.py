# -*- test-case-name: tests.test_slave_master_loss_processes -*-
"""
A slave whose master is killed, with real registry processes on plain TCP
(where its connections' losses are acted on a few milliseconds late,
L{gridreg.client.late_loss}): a client that fails over to it is answered at
once, the slave says it lost the master, and it registers again with the
master once that is back.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from gridreg.client import LocatorClient
from gridreg.ice.exceptions import ObjectNotFoundException
from gridreg.ice.types import Identity
from tests._processes import ice_missing
from tests.test_replication_processes import (
    SLAVE_LOST_MASTER,
    GridProcesses,
    _knows_internal,
    eventually,
)

OBJECT = "{name}:tcp -h 127.0.0.1 -p 10000"


class SlaveMasterLossTests(TestCase):
    skip = ice_missing()
    timeout = 120

    async def test_failover_answered_then_the_slave_rejoins_the_restarted_master(self) -> None:
        grid = GridProcesses(self, insecure=True)
        master = await grid.start("Master")
        slave = await grid.start("Replica1")
        await eventually(lambda: _knows_internal(grid.locator("Master"), "Replica1", live=True))
        session = await grid.admin()
        await session.add_object(OBJECT.format(name="before"), "::Demo::Hello")
        client = LocatorClient(reactor, grid.locator("Master", "Replica1"), cache_timeout=0)
        client.startService()
        self.addCleanup(client.stopService)
        found = await client.find_object_by_id(Identity("before"))
        self.assertEqual(found.endpoints[0].port, 10000)

        killed = reactor.seconds()
        await master.kill("KILL")
        # no request is lost: the client's next one is answered by the slave
        found = await client.find_object_by_id(Identity("before"))
        self.assertEqual(found.endpoints[0].port, 10000)
        await slave.process.next_event(
            lambda e: e.get("log_format") == SLAVE_LOST_MASTER and e.get("log_time", 0) > killed,
            timeout=20,
        )

        await grid.start("Master")
        await eventually(lambda: _knows_internal(grid.locator("Master"), "Replica1", live=True))
        session = await grid.admin()
        await session.add_object(OBJECT.format(name="after"), "::Demo::Hello")

        on_slave = LocatorClient(reactor, grid.locator("Replica1"), cache_timeout=0)
        on_slave.startService()
        self.addCleanup(on_slave.stopService)

        async def slave_has_it() -> bool:
            try:
                await on_slave.find_object_by_id(Identity("after"))
            except ObjectNotFoundException:
                return False
            return True

        await eventually(slave_has_it)
