# -*- test-case-name: tests.test_interop_gridreg -*-
"""
Unchanged Ice 3.7 servers and clients against gridreg.

The shared cases of L{tests._interop_cases} run against a real
C{twist gridregistry} process, exactly as they run against ZeroC's
C{icegridregistry} in L{tests.test_interop_icegrid}. The cases below add what
is gridreg's own: well-known objects added through the Python API, and a
registry killed with SIGKILL that comes back with every registration.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from gridreg.config.properties import Properties
from gridreg.ice.stringify import proxy_from_string
from gridreg.registry.config import RegistryConfig
from gridreg.registry.service import RegistryService
from gridreg.store.sqlite import SQLiteStore
from tests._interop_cases import LocatorInteropTests
from tests._processes import (
    RunningRegistry,
    free_port,
    ice_missing,
    run_ice_client,
    start_gridregistry,
    start_ssl_gridregistry,
    start_ice_server,
)


class GridregInteropTests(LocatorInteropTests, TestCase):
    """The shared interop cases against C{twist gridregistry}."""

    skip = ice_missing()

    def start_registry(self, dynamic: bool = True) -> Deferred[RunningRegistry]:
        return start_gridregistry(
            reactor,
            self.mktemp(),
            {"IceGrid.Registry.DynamicRegistration": "1" if dynamic else "0"},
        )


class WellKnownObjectTests(TestCase):
    """
    A registry in this process, on real loopback ports, with well-known
    objects added through the Python API, used by real Ice clients.
    """

    skip = ice_missing()
    timeout = 30

    async def start_registry(self) -> RegistryService:
        properties = Properties()
        properties.set("IceGrid.InstanceName", "DemoIceGrid")
        properties.set("IceGrid.Registry.Client.Endpoints", "tcp -h 127.0.0.1 -p 0")
        properties.set("IceGrid.Registry.Server.Endpoints", "tcp -h 127.0.0.1 -p 0")
        properties.set("IceGrid.Registry.DynamicRegistration", "1")
        data = Path(self.mktemp())
        service = RegistryService(
            reactor, RegistryConfig.from_properties(properties), SQLiteStore(str(data))
        )
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        await service.when_ready()
        return service

    def locator(self, service: RegistryService) -> str:
        port = service.client_ports[0].getHost().port
        return f"DemoIceGrid/Locator:tcp -h 127.0.0.1 -p {port}"

    async def test_well_known_objects_resolve_and_invoke(self) -> None:
        """
        Objects added with the Python API resolve by bare identity (through
        an adapter and through a replica group), are found by type through
        Query, and an unknown identity gives the client Ice's own error.
        """
        service = await self.start_registry()
        locator = self.locator(service)
        single = await start_ice_server(reactor, locator, ("HelloAdapter",), name="single")
        self.addCleanup(single.stop)
        first = await start_ice_server(
            reactor, locator, ("Rep1",), replica_group="RepGroup", name="r1", objects=("rhello",)
        )
        self.addCleanup(first.stop)
        database = service.database
        await database.add_object(proxy_from_string("hello@HelloAdapter"), "::Demo::Hello")
        await database.add_object(proxy_from_string("rhello@RepGroup"), "::Demo::Hello")

        hello, rhello, by_type, missing, query = await run_ice_client(
            reactor,
            locator,
            [
                ["resolve", "hello"],
                ["resolve", "rhello"],
                ["query-findAllObjectsByType", "::Demo::Hello"],
                ["resolve", "nosuch"],
                ["resolve", "DemoIceGrid/Query"],
            ],
        )
        self.assertTrue(hello["ok"], hello)
        self.assertEqual(hello["result"], "single")
        self.assertTrue(rhello["ok"], rhello)
        self.assertEqual(rhello["result"], "r1")
        self.assertTrue(by_type["ok"], by_type)
        self.assertEqual(
            sorted(by_type["result"]),
            ["hello -t -e 1.1 @ HelloAdapter", "rhello -t -e 1.1 @ RepGroup"],
        )
        self.assertFalse(missing["ok"])
        self.assertEqual(missing["error"], "Ice.NotRegisteredException")
        self.assertTrue(query["ok"], query)

    async def test_removed_object_is_gone(self) -> None:
        service = await self.start_registry()
        locator = self.locator(service)
        await service.database.add_object(proxy_from_string("gone@Nowhere"), "::Demo::Hello")
        await service.database.remove_object(proxy_from_string("gone").identity)
        [result] = await run_ice_client(reactor, locator, [["findObjectById", "gone"]])
        self.assertFalse(result["ok"])
        self.assertEqual(result["error"], "Ice.ObjectNotFoundException")


class CrashRecoveryTests(TestCase):
    """A registry killed with SIGKILL keeps every registration it acknowledged."""

    skip = ice_missing()
    timeout = 60

    async def test_sigkill_and_restart_keeps_registrations(self) -> None:
        workdir = self.mktemp()
        ports = {
            "IceGrid.Registry.Client.Endpoints": f"tcp -h 127.0.0.1 -p {free_port()}",
            "IceGrid.Registry.Server.Endpoints": f"tcp -h 127.0.0.1 -p {free_port()}",
        }
        registry = await start_gridregistry(reactor, workdir, ports)
        server = await start_ice_server(
            reactor, registry.locator, ("HelloAdapter", "Rep1@RepGroup"), name="survivor"
        )
        self.addCleanup(server.stop)
        await registry.kill("KILL")

        restarted = await start_gridregistry(reactor, workdir, ports)
        self.addCleanup(restarted.stop)
        adapter, group = await run_ice_client(
            reactor,
            restarted.locator,
            [["resolve", "hello@HelloAdapter"], ["resolve", "hello@RepGroup"]],
        )
        self.assertTrue(adapter["ok"], adapter)
        self.assertEqual(adapter["result"], "survivor")
        self.assertTrue(group["ok"], group)


class SslEndpointTests(TestCase):
    """Real Ice clients with IceSSL use gridreg's ssl client endpoints."""

    skip = ice_missing()
    timeout = 30

    async def test_ssl_locator(self) -> None:
        ssl = await start_ssl_gridregistry(reactor, self.mktemp())
        self.addCleanup(ssl.registry.stop)
        locator, port, tls, client_tls = ssl.locator, ssl.port, ssl.trust, ssl.client_properties
        query, missing = await run_ice_client(
            reactor,
            locator,
            [["findObjectById", "DemoIceGrid/Query"], ["findAdapterById", "Nope"]],
            client_tls,
        )
        self.assertTrue(query["ok"], query)
        self.assertEqual(query["endpoints"], [f"ssl -h 127.0.0.1 -p {port} -t 60000"])
        self.assertEqual(missing["error"], "Ice.AdapterNotFoundException")
        # without a certificate from the grid's CA, the TLS handshake fails
        [refused] = await run_ice_client(
            reactor,
            locator,
            [["findObjectById", "DemoIceGrid/Query"]],
            {"Ice.Plugin.IceSSL": "IceSSL:createIceSSL", **tls},
        )
        self.assertFalse(refused["ok"])
