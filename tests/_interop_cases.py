# -*- test-case-name: tests.test_interop_icegrid -*-
"""
Interop test bodies shared by every registry implementation.

L{LocatorInteropTests} drives unmodified Ice 3.7 servers and clients (see
C{tests/interop/}) against a registry supplied by L{start_registry}. Run
against ZeroC's C{icegridregistry} (C{tests.test_interop_icegrid}) they
record the reference behaviour; run against C{twist gridregistry} they show
that gridreg matches it, which is what real Ice programs rely on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from tests._processes import (
    Event,
    IceServer,
    IceServerError,
    RunningRegistry,
    free_port,
    run_ice_client,
    start_ice_client,
    start_ice_server,
)

if TYPE_CHECKING:
    from twisted.trial.unittest import TestCase

    _Base = TestCase
else:
    _Base = object


class LocatorInteropTests(_Base):
    """
    Mix into a L{twisted.trial.unittest.TestCase} that implements
    L{start_registry}.
    """

    timeout = 30

    def start_registry(self, dynamic: bool = True) -> Deferred[RunningRegistry]:
        """
        Start a fresh registry with instance name C{DemoIceGrid}, its
        database in a new temporary directory; C{dynamic} says whether
        servers may register adapters the registry does not know.
        """
        raise NotImplementedError()

    @property
    def reactor(self) -> Any:
        from twisted.internet import reactor

        return reactor

    async def registry(self, dynamic: bool = True) -> RunningRegistry:
        registry = await self.start_registry(dynamic)
        self.addCleanup(registry.stop)
        return registry

    async def server(self, registry: RunningRegistry, *adapters: str, **kwargs: Any) -> IceServer:
        """
        A registered Ice server that is stopped after the test.
        """
        server = await start_ice_server(
            self.reactor, registry.locator, adapters or ("HelloAdapter",), **kwargs
        )
        self.addCleanup(server.stop)
        return server

    async def client(self, locator: str, *commands: Any, **properties: str) -> list[Event]:
        return await run_ice_client(self.reactor, locator, commands, properties)

    def assert_ok(self, result: Event) -> Event:
        self.assertTrue(result["ok"], result)
        return result

    def assert_error(self, result: Event, error: str) -> Event:
        self.assertFalse(result["ok"], result)
        self.assertEqual(result["error"], error, result)
        return result

    async def test_registered_adapter_resolves(self) -> None:
        """
        A client resolves C{hello@HelloAdapter} to the endpoints the server
        registered on activation, and its call reaches that server.
        """
        registry = await self.registry()
        server = await self.server(registry, "HelloAdapter", name="A")
        port = server.port("HelloAdapter")
        resolved, found = await self.client(
            registry.locator,
            ["resolve", "hello@HelloAdapter"],
            ["findAdapterById", "HelloAdapter"],
        )
        self.assert_ok(resolved)
        self.assertEqual((resolved["result"], resolved["remote_port"]), ("A", port))
        self.assert_ok(found)
        self.assertEqual(len(found["endpoints"]), 1)
        self.assertIn(f"-h 127.0.0.1 -p {port} ", found["endpoints"][0] + " ")

    async def test_replica_group_resolves(self) -> None:
        """
        Two servers whose adapters join one replica group: the group
        resolves to both adapters' endpoints, and calls reach one of them.
        """
        registry = await self.registry()
        first = await self.server(registry, "HelloAdapter-1", replica_group="RepGroup", name="A")
        second = await self.server(registry, "HelloAdapter-2", replica_group="RepGroup", name="B")
        found, resolved = await self.client(
            registry.locator,
            ["findAdapterById", "RepGroup"],
            ["resolve", "hello@RepGroup"],
        )
        self.assert_ok(found)
        ports = {int(e.split("-p ")[1].split()[0]) for e in found["endpoints"]}
        self.assertEqual(ports, {first.port("HelloAdapter-1"), second.port("HelloAdapter-2")})
        self.assert_ok(resolved)
        self.assertIn(resolved["result"], {"A", "B"})

    async def test_unknown_adapter(self) -> None:
        """
        An adapter nobody registered: the client's call fails with
        C{Ice.NotRegisteredException} naming it, and the locator itself
        answers C{Ice.AdapterNotFoundException}.
        """
        registry = await self.registry()
        resolved, found = await self.client(
            registry.locator,
            ["resolve", "hello@NoSuchAdapter"],
            ["findAdapterById", "NoSuchAdapter"],
        )
        self.assert_error(resolved, "Ice.NotRegisteredException")
        self.assertEqual(
            resolved["details"], {"kindOfObject": "object adapter", "id": "NoSuchAdapter"}
        )
        self.assert_error(found, "Ice.AdapterNotFoundException")

    async def test_dead_first_locator_endpoint(self) -> None:
        """
        A locator proxy listing a dead endpoint before the live one (tried
        in that order) still resolves: clients fail over along the list.
        """
        registry = await self.registry()
        await self.server(registry, "HelloAdapter", name="A")
        locator = (
            f"{registry.instance}/Locator:tcp -h 127.0.0.1 -p {free_port()}"
            f":{registry.client_endpoint}"
        )
        (resolved,) = await self.client(
            locator,
            ["resolve", "hello@HelloAdapter"],
            **{"Ice.Default.Locator.EndpointSelection": "Ordered"},
        )
        self.assert_ok(resolved)
        self.assertEqual(resolved["result"], "A")

    async def test_stopped_server_unregisters(self) -> None:
        """
        A server that shuts down unregisters its adapter, so a client
        resolving it afterwards gets C{Ice.NotRegisteredException}.
        """
        registry = await self.registry()
        server = await self.server(registry, "HelloAdapter")
        await server.stop()
        (resolved,) = await self.client(registry.locator, ["resolve", "hello@HelloAdapter"])
        self.assert_error(resolved, "Ice.NotRegisteredException")

    async def test_deactivated_adapter_unregisters(self) -> None:
        """
        Deactivating one adapter unregisters it while the server's other
        adapter stays resolvable.
        """
        registry = await self.registry()
        server = await self.server(registry, "HelloAdapter", "OtherAdapter", name="A")
        deactivated = await server.deactivate("OtherAdapter")
        self.assertEqual(deactivated["event"], "deactivated", deactivated)
        gone, kept = await self.client(
            registry.locator,
            ["resolve", "hello@OtherAdapter"],
            ["resolve", "hello@HelloAdapter"],
        )
        self.assert_error(gone, "Ice.NotRegisteredException")
        self.assertEqual(self.assert_ok(kept)["result"], "A")

    async def test_reregistration_replaces_endpoints(self) -> None:
        """
        A second server registering an adapter id already registered
        replaces the endpoints: dynamic registration is last writer wins.
        """
        registry = await self.registry()
        await self.server(registry, "HelloAdapter", name="A")
        second = await self.server(registry, "HelloAdapter", name="B")
        (resolved,) = await self.client(registry.locator, ["resolve", "hello@HelloAdapter"])
        self.assertEqual(self.assert_ok(resolved)["result"], "B")
        self.assertEqual(resolved["remote_port"], second.port("HelloAdapter"))

    async def test_registration_refused_without_dynamic_registration(self) -> None:
        """
        With dynamic registration off, activating an unknown adapter fails
        on the server with C{Ice.NotRegisteredException}.
        """
        registry = await self.registry(dynamic=False)
        with self.assertRaises(IceServerError) as caught:
            await start_ice_server(self.reactor, registry.locator, ["HelloAdapter"])
        self.assertEqual(caught.exception.type, "Ice.NotRegisteredException")

    async def test_registry_well_known_objects(self) -> None:
        """
        The locator, query and locator registry are reachable the way Ice
        programs look them up: well-known C{Locator} and C{Query} objects
        on the client endpoint, and C{getRegistry} on the server endpoint.
        """
        registry = await self.registry()
        instance = registry.instance
        query, locator, local_query, locator_registry, unknown = await self.client(
            registry.locator,
            ["findObjectById", f"{instance}/Query"],
            ["findObjectById", f"{instance}/Locator"],
            ["locator-getLocalQuery"],
            ["getRegistry"],
            ["findObjectById", "NoSuchObject"],
        )
        client_endpoint = f"{registry.client_endpoint} "
        for result in (query, locator, local_query):
            self.assert_ok(result)
            self.assertIn(client_endpoint, result["endpoints"][0] + " ")
        self.assertEqual(query["identity"], f"{instance}/Query")
        self.assertEqual(local_query["identity"], f"{instance}/Query")
        self.assertEqual(locator["identity"], f"{instance}/Locator")
        self.assert_ok(locator_registry)
        self.assertIn(f"-p {registry.server_port} ", locator_registry["endpoints"][0] + " ")
        self.assert_error(unknown, "Ice.ObjectNotFoundException")

    async def test_query_finds_replicas(self) -> None:
        """
        C{IceGrid::Query.findAllReplicas} lists one indirect proxy per
        member adapter of a replica group.
        """
        registry = await self.registry()
        await self.server(registry, "HelloAdapter-1", replica_group="RepGroup")
        await self.server(registry, "HelloAdapter-2", replica_group="RepGroup")
        (replicas,) = await self.client(
            registry.locator, ["query-findAllReplicas", "hello@RepGroup"]
        )
        self.assert_ok(replicas)
        self.assertEqual(
            sorted(replicas["result"]),
            ["hello -t -e 1.1 @ HelloAdapter-1", "hello -t -e 1.1 @ HelloAdapter-2"],
        )

    async def test_client_reresolves_after_server_restart(self) -> None:
        """
        A long-lived client whose cached endpoints died (the server
        restarted on a new port) asks the locator again and reaches the new
        server, without the application seeing an error.
        """
        registry = await self.registry()
        first = await self.server(registry, "HelloAdapter", name="A")
        client = start_ice_client(self.reactor, registry.locator)
        self.addCleanup(client.stop)
        before = await client.call("resolve", "hello@HelloAdapter")
        self.assertEqual(self.assert_ok(before)["result"], "A")
        await first.stop()
        await self.server(registry, "HelloAdapter", name="B")
        after = await client.call("resolve", "hello@HelloAdapter")
        self.assertEqual(self.assert_ok(after)["result"], "B")
