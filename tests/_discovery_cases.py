"""
The discovery cases that run inside a network namespace of their own:
real Ice 3.7 programs with the IceLocatorDiscovery plug-in find a
gridregistry by multicast, resolve through it and register adapters.

This module is not collected by C{trial tests} (its name does not start
with C{test_}): L{tests.test_discovery_processes.NetnsTests} runs it under
C{unshare -n} in a nested trial, so multicast never leaves the namespace's
loopback interface. Run by hand anywhere else, L{InNamespace} skips itself.
"""

from __future__ import annotations

import os
import random
from typing import Any
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests._processes import (
    run_ice_client,
    start_gridregistry,
    start_ice_server,
)

from tests.test_replication_processes import GridProcesses, eventually

#: set by NetnsTests inside the namespace
IN_NETNS = "GRIDREG_DISCOVERY_NETNS"
INSTANCE = "DemoIceGrid"


def plugin_properties(port: int, instance: str = INSTANCE) -> dict[str, str]:
    """An Ice client's discovery settings: the group on loopback, short retries."""
    return {
        "Ice.Plugin.IceLocatorDiscovery": "IceLocatorDiscovery:createIceLocatorDiscovery",
        "IceLocatorDiscovery.InstanceName": instance,
        "IceLocatorDiscovery.Port": str(port),
        "IceLocatorDiscovery.Interface": "127.0.0.1",
        "IceLocatorDiscovery.Timeout": "300",
        "IceLocatorDiscovery.RetryCount": "3",
    }


class InNamespace(TestCase):
    """Run only inside the network namespace L{NetnsTests} creates."""

    skip = None if os.environ.get(IN_NETNS) == "1" else "runs only inside NetnsTests' namespace"
    timeout = 60

    async def start_registry(self) -> int:
        port = random.randrange(20000, 60000)
        registry = await start_gridregistry(
            reactor,
            self.mktemp(),
            {
                "IceGrid.InstanceName": INSTANCE,
                "IceGrid.Registry.Discovery.Enabled": "1",
                "IceGrid.Registry.Discovery.Interface": "127.0.0.1",
                "IceGrid.Registry.Discovery.Port": str(port),
                "IceGrid.Registry.Trace.Discovery": "1",
            },
        )
        self.addCleanup(registry.stop)
        return port

    async def test_server_registers_and_client_resolves(self) -> None:
        """No Ice.Default.Locator anywhere: the server and the client find the registry."""
        port = await self.start_registry()
        server = await start_ice_server(
            reactor, None, name="A", properties=plugin_properties(port)
        )
        self.addCleanup(server.stop)
        results = await run_ice_client(
            reactor,
            None,
            [["resolve", "hello@HelloAdapter"], ["findAdapterById", "HelloAdapter"]],
            plugin_properties(port),
        )
        self.assertTrue(all(r["ok"] for r in results), results)
        self.assertEqual(results[0]["result"], "A")
        self.assertIn(f"-p {server.port('HelloAdapter')}", str(results[1]["result"]))

    async def test_empty_instance_name(self) -> None:
        """As icegridregistry 3.7.8 does, a lookup naming no instance is answered."""
        port = await self.start_registry()
        [result] = await run_ice_client(reactor, None, [["getRegistry"]], plugin_properties(port, ""))
        self.assertTrue(result["ok"], result)
        self.assertIn(f"{INSTANCE}/LocatorRegistry", str(result["result"]))

    async def test_other_instance_is_not_answered(self) -> None:
        port = await self.start_registry()
        [result] = await run_ice_client(
            reactor, None, [["getRegistry"]], plugin_properties(port, "OtherGrid")
        )
        self.assertIsNone(result.get("result"), result)

    async def test_replicas_found_after_master_stops(self) -> None:
        """
        Every replica answers with the Locator of all active replicas; with
        the master stopped, a new client still finds the slave and resolves.
        """
        port = random.randrange(20000, 60000)
        grid = _DiscoveryGrid(self, port)
        master = await grid.start("Master")
        await grid.start("Replica1")
        ports = grid.ports

        async def both_listed() -> bool:
            [found] = await run_ice_client(
                reactor, None, [["findObjectById", f"{INSTANCE}/Locator"]], plugin_properties(port)
            )
            text = str(found.get("result"))
            return all(f"-p {ports[n]['client']}" in text for n in ("Master", "Replica1"))

        await eventually(both_listed)
        server = await start_ice_server(
            reactor, None, name="B", properties=plugin_properties(port)
        )
        self.addCleanup(server.stop)
        await master.stop()
        [result] = await run_ice_client(
            reactor, None, [["resolve", "hello@HelloAdapter"]], plugin_properties(port)
        )
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["result"], "B")


class _DiscoveryGrid(GridProcesses):
    """The replication tests' master and slaves, each answering lookups on loopback."""

    def __init__(self, testcase: TestCase, port: int) -> None:
        super().__init__(testcase)
        self.discovery_port = port

    def properties(self, name: str, as_name: str, certs: Any) -> dict[str, str]:
        return {
            **super().properties(name, as_name, certs),
            "IceGrid.InstanceName": INSTANCE,
            "IceGrid.Registry.DynamicRegistration": "1",
            "IceGrid.Registry.Discovery.Enabled": "1",
            "IceGrid.Registry.Discovery.Interface": "127.0.0.1",
            "IceGrid.Registry.Discovery.Port": str(self.discovery_port),
        }
