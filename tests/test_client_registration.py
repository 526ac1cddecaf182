# -*- test-case-name: tests.test_client_registration -*-
"""
Tests for L{gridreg.client.registration}: a Twisted service's endpoints stay
registered with a real in-memory registry, across its restart, and are
unregistered when the service stops.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from gridreg.client import (
    AdapterRegistration,
    LocatorClient,
    NoLocatorRegistryError,
    register_port,
)
from gridreg.client._registration_machine import RegistrationCore, build_registration
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


class _FakeRegistration:
    """The collaborators of a registration machine, scripted by the test."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.attempts: list[Deferred[None]] = []
        self.unregistered = 0
        self.dropped = 0
        self.cancelled: list[int] = []
        self.via = False
        self.core = RegistrationCore(
            clock=self.clock,
            retry_policy=lambda attempt: 10.0 * attempt,
            attempt=self.attempt,
            unregister=self.unregister,
            drop_connection=self.drop,
            via_known=lambda: self.via,
            refusals=(AdapterNotFoundException,),
            log=Logger(),
            adapter_id="HelloAdapter",
            endpoints="(...)",
        )
        self.machine = build_registration(self.core)

    def attempt(self) -> Deferred[None]:
        self.attempts.append(Deferred(lambda _: self.cancelled.append(len(self.attempts))))
        return self.attempts[-1]

    def unregister(self) -> Deferred[None]:
        self.unregistered += 1
        return succeed(None)

    def drop(self) -> None:
        self.dropped += 1

    def waiter(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.core.waiters.append(d)
        return d


class RegistrationMachineTests(SynchronousTestCase):
    """Each transition of L{gridreg.client._registration_machine}, with a fake core."""

    def setUp(self) -> None:
        self.fake = _FakeRegistration()
        self.machine = self.fake.machine
        self.core = self.fake.core

    def stop(self) -> None:
        done: Deferred[None] = Deferred()
        self.machine.stop(done)
        self.successResultOf(done)

    def test_start_attempts(self) -> None:
        self.machine.start()
        self.assertEqual(len(self.fake.attempts), 1)
        self.assertFalse(self.core.registered)

    def test_succeeded(self) -> None:
        self.machine.start()
        waiting = self.fake.waiter()
        self.fake.attempts[0].callback(None)
        self.assertTrue(self.core.registered)
        self.successResultOf(waiting)

    def test_failed_backs_off_then_retries(self) -> None:
        """A failure drops the connection and retries after the policy's delay, growing."""
        self.machine.start()
        self.fake.attempts[0].errback(ConnectionRefusedError())
        self.assertEqual(self.fake.dropped, 1)
        self.clock.advance(9.9)
        self.assertEqual(len(self.fake.attempts), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.fake.attempts), 2)
        self.fake.attempts[1].errback(ConnectionRefusedError())
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [30.0])

    @property
    def clock(self) -> Clock:
        return self.fake.clock

    def test_reconnection_during_attempt_registers_again(self) -> None:
        """
        A new locator connection while the attempt's request is in flight (its
        registry known): once it succeeds, register again through the new one.
        """
        self.machine.start()
        self.fake.via = True
        waiting = self.fake.waiter()
        self.machine.locator_reconnected()
        self.fake.attempts[0].callback(None)
        self.assertEqual(len(self.fake.attempts), 2)
        self.assertNoResult(waiting)
        self.assertFalse(self.core.registered)
        self.fake.attempts[1].callback(None)
        self.assertTrue(self.core.registered)
        self.successResultOf(waiting)

    def test_reconnection_before_registry_known(self) -> None:
        """An attempt still asking the locator goes through the new connection anyway."""
        self.machine.start()
        self.machine.locator_reconnected()
        self.fake.attempts[0].callback(None)
        self.assertEqual(len(self.fake.attempts), 1)
        self.assertTrue(self.core.registered)

    def test_reconnection_cuts_backoff_short(self) -> None:
        self.machine.start()
        self.fake.attempts[0].errback(ConnectionRefusedError())
        self.machine.locator_reconnected()
        self.assertEqual(len(self.fake.attempts), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failures_counted_within_a_cycle(self) -> None:
        """The back-off keeps growing across a reconnection, and resets once registered."""
        self.machine.start()
        self.fake.attempts[0].errback(ConnectionRefusedError())
        self.machine.locator_reconnected()
        self.fake.attempts[1].errback(ConnectionRefusedError())
        self.assertEqual(self.core.failures, 2)
        self.clock.advance(20)
        self.fake.attempts[2].callback(None)
        self.assertEqual(self.core.failures, 0)

    def test_reregister_on_reconnection(self) -> None:
        self.machine.start()
        self.fake.attempts[0].callback(None)
        self.machine.locator_reconnected()
        self.assertFalse(self.core.registered)
        self.assertEqual(len(self.fake.attempts), 2)

    def test_refused(self) -> None:
        """A refusal is final: waiters fail, nothing is retried."""
        self.machine.start()
        waiting = self.fake.waiter()
        self.fake.attempts[0].errback(AdapterNotFoundException())
        self.failureResultOf(waiting, AdapterNotFoundException)
        assert self.core.refused is not None
        self.assertTrue(self.core.refused.check(AdapterNotFoundException))
        self.clock.advance(1000)
        self.assertEqual(len(self.fake.attempts), 1)

    def test_refused_then_reconnection(self) -> None:
        """A new locator connection may be a registry that accepts: try again."""
        self.machine.start()
        self.fake.attempts[0].errback(AdapterNotFoundException())
        self.machine.locator_reconnected()
        self.assertIsNone(self.core.refused)
        self.assertEqual(len(self.fake.attempts), 2)
        self.fake.attempts[1].callback(None)
        self.assertTrue(self.core.registered)

    def test_abandoned(self) -> None:
        """An attempt cancelled from elsewhere ends the cycle until a new connection."""
        self.machine.start()
        waiting = self.fake.waiter()
        self.fake.attempts[0].cancel()
        self.assertNoResult(waiting)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.machine.locator_reconnected()
        self.fake.attempts[1].callback(None)
        self.successResultOf(waiting)

    def test_stop_during_attempt(self) -> None:
        self.machine.start()
        waiting = self.fake.waiter()
        self.stop()
        self.assertEqual(self.fake.cancelled, [1])
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(self.fake.unregistered, 1)

    def test_stop_during_backoff(self) -> None:
        self.machine.start()
        self.fake.attempts[0].errback(ConnectionRefusedError())
        self.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.fake.unregistered, 1)

    def test_stop_when_registered(self) -> None:
        self.machine.start()
        self.fake.attempts[0].callback(None)
        self.stop()
        self.assertFalse(self.core.registered)
        self.assertEqual(self.fake.unregistered, 1)

    def test_stop_when_refused_or_idle(self) -> None:
        self.machine.start()
        self.fake.attempts[0].errback(AdapterNotFoundException())
        self.stop()
        self.assertIsNone(self.core.refused)
        self.machine.start()
        self.fake.attempts[1].cancel()
        self.stop()
        self.assertEqual(self.fake.unregistered, 2)

    def test_stop_twice(self) -> None:
        self.machine.start()
        self.stop()
        self.stop()
        self.assertEqual(self.fake.unregistered, 1)

    def test_restart(self) -> None:
        """A stopped registration registers again when started."""
        self.machine.start()
        self.fake.attempts[0].callback(None)
        self.stop()
        self.machine.start()
        self.fake.attempts[1].callback(None)
        self.assertTrue(self.core.registered)

    def test_reconnection_when_stopped(self) -> None:
        self.machine.locator_reconnected()
        self.assertEqual(self.fake.attempts, [])
