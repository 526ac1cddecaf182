# -*- test-case-name: tests.test_client_registration -*-
"""
Tests for L{gridreg.client.registration}: a Twisted service's endpoints stay
registered with a real in-memory registry, across its restart, and are
unregistered when the service stops.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from gridreg.client import (
    AdapterRegistration,
    LocatorClient,
    NoLocatorRegistryError,
    register_port,
)
from gridreg.client.locator import locator_retry_policy
from gridreg.ice.encoding import InputStream
from gridreg.ice.exceptions import AdapterNotFoundException
from gridreg.ice.types import Identity, OperationMode, Proxy, TcpEndpoint
from tests._helpers import MemoryNetwork, RegistryReplica

ENDPOINTS = (TcpEndpoint("10.0.0.1", 10001),)
WORST_CASE_POLICY = locator_retry_policy(random=lambda: 1.0)


class RegistrationTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork()
        self.reactor = self.network.reactor
        self.registry = RegistryReplica()
        self.locator = LocatorClient(
            self.reactor,
            f"DemoIceGrid/Locator:{self.registry.locator_endpoint}",
            retry_policy=WORST_CASE_POLICY,
        )
        self.locator.startService()
        self.addCleanup(self.stop, self.locator)

    def stop(self, service: Any) -> None:
        if service.running:
            d = service.stopService()
            self.network.flush()
            self.successResultOf(d)

    def registration(self, **kwargs: Any) -> AdapterRegistration:
        kwargs.setdefault("retry_policy", WORST_CASE_POLICY)
        registration = AdapterRegistration(
            self.reactor, self.locator, "HelloAdapter", ENDPOINTS, **kwargs
        )
        registration.startService()
        self.addCleanup(self.stop, registration)
        return registration

    def registered(self, registration: AdapterRegistration) -> None:
        d = registration.when_registered()
        self.network.run_until(d)
        self.successResultOf(d)

    def adapters(self, registry: RegistryReplica | None = None) -> dict[str, Proxy]:
        registry = registry or self.registry
        return {a: info.proxy for a, info in registry.state.adapters.items()}


class RegisterTests(RegistrationTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.registry.serve(self.network)

    def test_register(self) -> None:
        """The adapter's endpoints are registered as a Ice server would."""
        registration = self.registration()
        self.registered(registration)
        self.assertTrue(registration.registered)
        self.assertEqual(
            self.adapters(), {"HelloAdapter": Proxy(Identity("dummy"), endpoints=ENDPOINTS)}
        )
        [request] = self.registry.registry_requests()
        self.assertEqual(request.operation, "setAdapterDirectProxy")
        self.assertEqual(request.mode, OperationMode.IDEMPOTENT)
        self.assertEqual(request.identity, Identity("LocatorRegistry", "DemoIceGrid"))
        self.assertEqual(self.registry.locate_requests("getRegistry")[0].mode, 1)

    def test_resolvable(self) -> None:
        """Clients find the registered adapter through the locator."""
        self.registered(self.registration())
        d = self.locator.resolve("hello@HelloAdapter")
        self.network.run_until(d)
        self.assertEqual(self.successResultOf(d), ENDPOINTS)

    def test_replica_group(self) -> None:
        registration = self.registration(replica_group_id="HelloGroup")
        self.registered(registration)
        [request] = self.registry.registry_requests()
        self.assertEqual(request.operation, "setReplicatedAdapterDirectProxy")
        info = self.registry.state.adapters["HelloAdapter"]
        self.assertEqual(info.replica_group_id, "HelloGroup")
        d = self.locator.resolve("hello@HelloGroup")
        self.network.run_until(d)
        self.assertEqual(self.successResultOf(d), ENDPOINTS)

    def test_when_registered_is_fresh(self) -> None:
        """Each caller gets its own Deferred; a later caller is answered at once."""
        registration = self.registration()
        first, second = registration.when_registered(), registration.when_registered()
        self.assertIsNot(first, second)
        first.addCallback(lambda _: "changed")
        self.network.run_until(second)
        self.assertIsNone(self.successResultOf(second))
        self.assertIsNone(self.successResultOf(registration.when_registered()))

    def test_unregister_on_stop(self) -> None:
        """Stopping unregisters with a null proxy and closes the connection."""
        registration = self.registration()
        self.registered(registration)
        d = registration.stopService()
        self.network.flush()
        self.successResultOf(d)
        self.assertEqual(self.adapters(), {})
        last = self.registry.registry_requests()[-1]
        self.assertEqual(last.operation, "setAdapterDirectProxy")
        params = InputStream(last.params, last.encoding)
        self.assertEqual(params.read_string(), "HelloAdapter")
        self.assertIsNone(params.read_proxy())
        self.assertEqual(self.network.links_to(*self.registry.server_address), [])

    def test_unregister_failure_is_logged(self) -> None:
        """A registry that does not answer the unregistration delays the stop, boundedly."""
        registration = self.registration(request_timeout=2.0)
        self.registered(registration)
        self.registry.hang(self.network)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        d = registration.stopService()
        elapsed = self.network.run_until(d)
        self.successResultOf(d)
        self.assertAlmostEqual(elapsed, 2.0)
        self.assertTrue(
            any("Could not unregister" in e["log_format"] for e in events), list(events)
        )

    def test_stop_before_registered(self) -> None:
        """Waiting callers learn that it stopped."""
        self.registry.hang(self.network)
        registration = self.registration()
        waiting = registration.when_registered()
        self.network.advance(0.1)
        d = registration.stopService()
        self.network.flush()
        self.successResultOf(d)
        self.failureResultOf(waiting, CancelledError)

    def test_refused(self) -> None:
        """A registry without dynamic registration refuses: that is final, not retried."""
        registry = RegistryReplica(
            ("127.0.0.1", 6061), ("127.0.0.1", 6062), dynamic_registration=False
        )
        registry.serve(self.network)
        locator = LocatorClient(self.reactor, f"DemoIceGrid/Locator:{registry.locator_endpoint}")
        locator.startService()
        self.addCleanup(self.stop, locator)
        registration = AdapterRegistration(self.reactor, locator, "HelloAdapter", ENDPOINTS)
        registration.startService()
        self.addCleanup(self.stop, registration)
        d = registration.when_registered()
        self.network.advance(10)
        self.failureResultOf(d, AdapterNotFoundException)
        self.failureResultOf(registration.when_registered(), AdapterNotFoundException)
        self.assertEqual(len(registry.registry_requests()), 1)

    def test_no_locator_registry(self) -> None:
        """A locator without a LocatorRegistry cannot take registrations: said once, clearly."""
        self.registry.published.locator_registry = None
        registration = self.registration()
        d = registration.when_registered()
        self.network.advance(10)
        self.failureResultOf(d, NoLocatorRegistryError)
        self.assertEqual(len(self.registry.locate_requests("getRegistry")), 1)

    def test_register_port(self) -> None:
        """A listening port is published as tcp on the given host and its real port."""
        port = _FakePort(IPv4Address("TCP", "0.0.0.0", 43210))
        registration = register_port(
            self.reactor,
            self.locator,
            "HelloAdapter",
            port,  # type: ignore[arg-type]
        )
        self.assertEqual(registration.endpoints, (TcpEndpoint("127.0.0.1", 43210),))
        registration.startService()
        self.addCleanup(self.stop, registration)
        self.registered(registration)
        self.assertEqual(self.adapters()["HelloAdapter"].endpoints, registration.endpoints)


class _FakePort:
    def __init__(self, address: IPv4Address) -> None:
        self.address = address

    def getHost(self) -> IPv4Address:
        return self.address


class RecoveryTests(RegistrationTestCase):
    def test_registry_down_at_start(self) -> None:
        """Retries with back-off until a registry answers."""
        registration = self.registration()
        d = registration.when_registered()
        self.network.advance(5)
        self.assertNoResult(d)
        self.registry.serve(self.network)
        self.network.run_until(d, limit=3.0)
        self.successResultOf(d)
        self.assertIn("HelloAdapter", self.adapters())

    def test_registry_restart(self) -> None:
        """
        The registry restarts with an empty database: the locator client
        reconnects, and the adapter is registered again with the new state.
        """
        self.registry.serve(self.network)
        registration = self.registration()
        self.registered(registration)
        self.registry.kill(self.network)
        self.network.advance(1.0)
        fresh = RegistryReplica()
        self.assertEqual(self.adapters(fresh), {})
        fresh.serve(self.network)
        self.network.run_until(lambda: "HelloAdapter" in self.adapters(fresh), limit=3.0)
        self.assertEqual(self.adapters(fresh)["HelloAdapter"].endpoints, ENDPOINTS)
        self.registered(registration)

    def test_failover_to_another_replica(self) -> None:
        """A failover to a replica that never heard of the adapter registers it there."""
        other = RegistryReplica(("127.0.0.1", 5061), ("127.0.0.1", 5062))
        for registry in (self.registry, other):
            registry.serve(self.network)
        locator = LocatorClient(
            self.reactor,
            f"DemoIceGrid/Locator:{self.registry.locator_endpoint}:{other.locator_endpoint}",
            retry_policy=WORST_CASE_POLICY,
        )
        locator.startService()
        self.addCleanup(self.stop, locator)
        registration = AdapterRegistration(self.reactor, locator, "HelloAdapter", ENDPOINTS)
        registration.startService()
        self.addCleanup(self.stop, registration)
        self.registered(registration)
        self.assertEqual(self.adapters(other), {})
        self.registry.kill(self.network)
        elapsed = self.network.run_until(lambda: "HelloAdapter" in self.adapters(other))
        self.assertLess(elapsed, 1.0)

    def test_reconnection_during_backoff(self) -> None:
        """A new locator connection cuts a long back-off short."""
        registration = self.registration(retry_policy=lambda attempt: 60.0)
        d = registration.when_registered()
        self.network.advance(1.0)
        self.registry.serve(self.network)
        elapsed = self.network.run_until(d, limit=10.0)
        self.assertLess(elapsed, 5.0)

    def test_lost_registry_connection(self) -> None:
        """A registration whose registry connection died is retried on a new one."""
        self.registry.serve(self.network)
        registration = self.registration()
        self.registered(registration)
        for link in self.network.links_to(*self.registry.server_address):
            link.kill()
        self.registry.state.load({})
        self.locator_reconnected()
        self.network.run_until(lambda: "HelloAdapter" in self.adapters(), limit=3.0)

    def locator_reconnected(self) -> None:
        for link in self.network.links_to(*self.registry.client_address):
            link.kill()
