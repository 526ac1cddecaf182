# -*- test-case-name: tests.test_client_locator -*-
"""
Tests for L{gridreg.client.locator.LocatorClient} against real in-memory
registry replicas, over memory connections on a clock: resolution, the
locator cache, and failover from refused, killed and hung replicas.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gridreg.client import LocatorClient, LocatorUnreachableError
from gridreg.client.locator import locator_retry_policy
from gridreg.config.properties import Properties, PropertyError
from gridreg.ice.client import IceClientProtocol
from gridreg.ice.exceptions import (
    AdapterNotFoundException,
    ObjectNotExistError,
    ObjectNotFoundException,
)
from gridreg.ice.messages import CLOSE_CONNECTION
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import ENCODING_1_0, Identity, OperationMode, Proxy, TcpEndpoint
from tests._helpers import MemoryNetwork, RegistryReplica

HELLO = (TcpEndpoint("10.0.0.1", 10001),)
REP1 = (TcpEndpoint("10.0.0.2", 10002),)
REP2 = (TcpEndpoint("10.0.0.3", 10003),)

#: the worst jitter the default policy can draw, so timings are worst cases
WORST_CASE_POLICY = locator_retry_policy(random=lambda: 1.0)


def populate(replica: RegistryReplica) -> None:
    """What every replica of the tests knows (replication keeps them alike)."""
    replica.register_adapter("HelloAdapter", HELLO)
    replica.register_adapter("Rep1", REP1, "RepGroup")
    replica.register_adapter("Rep2", REP2, "RepGroup")
    replica.add_object(proxy_from_string("hello@HelloAdapter"))
    replica.add_object(proxy_from_string("rhello@RepGroup"))
    replica.add_object(proxy_from_string("direct:tcp -h 10.0.0.9 -p 10009"))


class LocatorTestCase(SynchronousTestCase):
    """Two replicas, A (port 4061) and B (port 5061); the locator lists A first."""

    def setUp(self) -> None:
        self.network = MemoryNetwork()
        self.reactor = self.network.reactor
        self.a = RegistryReplica(("127.0.0.1", 4061), ("127.0.0.1", 4062))
        self.b = RegistryReplica(("127.0.0.1", 5061), ("127.0.0.1", 5062))
        for replica in (self.a, self.b):
            populate(replica)

    def make_client(self, **kwargs: Any) -> LocatorClient:
        kwargs.setdefault("retry_policy", WORST_CASE_POLICY)
        client = LocatorClient(
            self.reactor,
            f"DemoIceGrid/Locator:{self.a.locator_endpoint}:{self.b.locator_endpoint}",
            **kwargs,
        )
        client.startService()
        self.addCleanup(self.stop, client)
        return client

    def stop(self, client: LocatorClient) -> None:
        if client.running:
            d = client.stopService()
            self.network.flush()
            self.successResultOf(d)

    def outcome(self, d: Deferred[Any]) -> Any:
        """Run the network until C{d} fires; its result (a Failure for errors)."""
        results: list[Any] = []
        d.addBoth(results.append)
        self.network.run_until(lambda: bool(results))
        return results[0]

    def result(self, d: Deferred[Any]) -> Any:
        result = self.outcome(d)
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def locates(self) -> list[str]:
        return [r.operation for r in self.a.locate_requests() + self.b.locate_requests()]


class ResolveTests(LocatorTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.a.serve(self.network)
        self.client = self.make_client()

    def test_adapter(self) -> None:
        """C{id@adapter} resolves to the adapter's endpoints via findAdapterById."""
        self.assertEqual(self.result(self.client.resolve("hello@HelloAdapter")), HELLO)
        [request] = self.a.locate_requests()
        self.assertEqual(request.operation, "findAdapterById")
        self.assertEqual(request.identity, Identity("Locator", "DemoIceGrid"))

    def test_replica_group(self) -> None:
        """A replica group resolves to every member's endpoints."""
        self.assertEqual(self.result(self.client.resolve("x@RepGroup")), REP1 + REP2)

    def test_well_known_indirect(self) -> None:
        """A well-known object registered as C{rhello@RepGroup} needs two lookups."""
        self.assertEqual(self.result(self.client.resolve("rhello")), REP1 + REP2)
        self.assertEqual(self.locates(), ["findObjectById", "findAdapterById"])

    def test_well_known_direct(self) -> None:
        endpoints = self.result(self.client.resolve(Proxy(Identity("direct"))))
        self.assertEqual(endpoints, (TcpEndpoint("10.0.0.9", 10009),))
        self.assertEqual(self.locates(), ["findObjectById"])

    def test_direct_proxy(self) -> None:
        """A proxy with endpoints needs no registry at all."""
        endpoints = self.successResultOf(self.client.resolve("x:tcp -h 10.0.0.5 -p 1"))
        self.assertEqual(endpoints, (TcpEndpoint("10.0.0.5", 1),))
        self.assertEqual(self.locates(), [])

    def test_modes(self) -> None:
        """Requests carry the mode a real Ice client sends: 1, Nonmutating."""
        self.result(self.client.resolve("hello"))
        self.result(self.client.get_registry())
        self.assertEqual(
            [(r.operation, r.mode) for r in self.a.locate_requests()],
            [("findObjectById", 1), ("findAdapterById", 1), ("getRegistry", 1)],
        )

    def test_find(self) -> None:
        proxy = self.result(self.client.find_object_by_id(Identity("hello")))
        self.assertEqual(proxy, proxy_from_string("hello@HelloAdapter"))
        proxy = self.result(self.client.find_adapter_by_id("HelloAdapter"))
        self.assertEqual(proxy.endpoints, HELLO)

    def test_get_registry(self) -> None:
        self.assertEqual(self.result(self.client.get_registry()), self.a.locator_registry)

    def test_adapter_not_found_is_not_retried(self) -> None:
        """An unknown adapter is an answer, not a failure to fail over from."""
        failure = self.outcome(self.client.resolve("x@Nowhere"))
        failure.trap(AdapterNotFoundException)
        self.assertEqual(self.locates(), ["findAdapterById"])

    def test_object_not_found(self) -> None:
        failure = self.outcome(self.client.resolve("nobody"))
        failure.trap(ObjectNotFoundException)
        self.assertEqual(self.locates(), ["findObjectById"])

    def test_wrong_instance_name(self) -> None:
        """A locator proxy with the wrong identity fails at once, without retries."""
        client = LocatorClient(self.reactor, f"Other/Locator:{self.a.locator_endpoint}")
        client.startService()
        self.addCleanup(self.stop, client)
        self.outcome(client.resolve("x@HelloAdapter")).trap(ObjectNotExistError)
        self.assertEqual(len(self.a.locate_requests()), 1)

    def test_encoding_1_0(self) -> None:
        """A locator proxy with C{-e 1.0} gets 1.0-encoded requests."""
        client = LocatorClient(
            self.reactor, f"DemoIceGrid/Locator -e 1.0:{self.a.locator_endpoint}"
        )
        client.startService()
        self.addCleanup(self.stop, client)
        self.assertEqual(self.result(client.resolve("hello")), HELLO)
        self.assertEqual({r.encoding for r in self.a.locate_requests()}, {ENCODING_1_0})

    def test_one_connection(self) -> None:
        """
        Requests share one connection to the replica; hedging dials the
        next replica once, for a spare (here refused), not per request.
        """
        for _ in range(3):
            self.result(self.client.find_adapter_by_id("HelloAdapter"))
        self.assertEqual(self.network.attempts, [("127.0.0.1", 4061), ("127.0.0.1", 5061)])
        self.assertEqual(len(self.a.locate_requests()), 3)

    def test_raw_call(self) -> None:
        result = self.result(self.client.call("getRegistry", OperationMode.NONMUTATING))
        self.assertEqual(result.read_proxy(), self.a.locator_registry)


class CacheTests(LocatorTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.a.serve(self.network)

    def resolve_twice(self, client: LocatorClient, wait: float = 0.0) -> int:
        """Resolve the same proxies twice, C{wait} seconds apart; count lookups."""
        for _ in range(2):
            self.assertEqual(self.result(client.resolve("rhello")), REP1 + REP2)
            self.network.advance(wait)
        return len(self.locates())

    def test_forever(self) -> None:
        """-1 (the default): asked once, ever."""
        client = self.make_client()
        self.assertEqual(self.resolve_twice(client, wait=86400), 2)

    def test_never(self) -> None:
        """0: every resolution asks the registry."""
        client = self.make_client(cache_timeout=0)
        self.assertEqual(self.resolve_twice(client), 4)

    def test_timeout(self) -> None:
        """N seconds: reused for N seconds, asked again after."""
        client = self.make_client(cache_timeout=10)
        self.assertEqual(self.resolve_twice(client, wait=9.9), 2)
        self.network.advance(0.2)
        self.result(client.resolve("rhello"))
        self.assertEqual(len(self.locates()), 4)

    def test_entries_are_separate(self) -> None:
        """The adapter resolved for an object serves a direct lookup of it too."""
        client = self.make_client()
        self.result(client.resolve("rhello"))
        self.result(client.resolve("other@RepGroup"))
        self.assertEqual(len(self.locates()), 2)

    def test_invalidate(self) -> None:
        client = self.make_client()
        self.result(client.resolve("rhello"))
        client.invalidate(adapter_id="RepGroup")
        self.result(client.resolve("rhello"))
        self.assertEqual(self.locates(), ["findObjectById", "findAdapterById", "findAdapterById"])
        client.invalidate(identity=Identity("rhello"))
        self.result(client.resolve("rhello"))
        self.assertEqual(self.locates()[3:], ["findObjectById"])
        client.invalidate()
        self.result(client.resolve("rhello"))
        self.assertEqual(self.locates()[4:], ["findObjectById", "findAdapterById"])

    def test_failures_not_cached(self) -> None:
        client = self.make_client()
        for _ in range(2):
            self.outcome(client.resolve("x@Later")).trap(AdapterNotFoundException)
        self.a.register_adapter("Later", HELLO)
        self.assertEqual(self.result(client.resolve("x@Later")), HELLO)


class FailoverTests(LocatorTestCase):
    def test_refused(self) -> None:
        """The first replica refuses: the second answers, well within a second."""
        self.b.serve(self.network)
        client = self.make_client(hedging=False)  # no spare: only the failover walk dials
        d = client.resolve("hello")
        elapsed = self.network.run_until(d)
        self.assertEqual(self.successResultOf(d), HELLO)
        self.assertLess(elapsed, 0.3)
        self.assertEqual(self.network.attempts, [("127.0.0.1", 4061), ("127.0.0.1", 5061)])

    def test_killed(self) -> None:
        """
        The replica dies between requests: the client reconnects, is refused,
        and fails over to the other replica.
        """
        self.a.serve(self.network)
        self.b.serve(self.network)
        client = self.make_client()
        self.result(client.find_adapter_by_id("HelloAdapter"))
        self.a.kill(self.network)
        d = client.find_adapter_by_id("Rep1")
        elapsed = self.network.run_until(d)
        self.assertEqual(self.successResultOf(d).endpoints, REP1)
        self.assertLess(elapsed, 1.0)
        self.assertEqual(len(self.b.locate_requests()), 1)

    def test_killed_with_request_in_flight(self) -> None:
        """A replica that dies while a request waits: it is sent again to the next."""
        self.a.serve(self.network)
        self.b.serve(self.network)
        client = self.make_client()
        self.result(client.get_registry())
        self.a.hang(self.network)
        d = client.find_adapter_by_id("Rep1")
        self.network.flush()
        self.a.kill(self.network)
        elapsed = self.network.run_until(d)
        self.assertEqual(self.successResultOf(d).endpoints, REP1)
        self.assertLess(elapsed, 1.0)

    def test_hung_at_connect(self) -> None:
        """
        The first replica is stopped (SIGSTOP): it accepts connections but
        never validates them. The client gives up on it after its connect
        timeout and the second replica answers, all in under a second.
        """
        self.a.serve(self.network)
        self.a.hang(self.network)
        self.b.serve(self.network)
        client = self.make_client()
        d = client.resolve("hello")
        elapsed = self.network.run_until(d)
        self.assertEqual(self.successResultOf(d), HELLO)
        self.assertLess(elapsed, 1.0)
        self.assertEqual(self.a.locate_requests(), [])
        # the spare dialled back to the first replica gives up on it as well
        self.network.advance(0.6)
        self.assertEqual(self.network.open_clients("127.0.0.1", 4061), [])

    def test_hung_with_request_in_flight(self) -> None:
        """
        Without hedging, a replica that stops answering on a live connection
        costs request_timeout: the request times out, the connection is
        aborted and the request is answered by the second replica, in under
        a second.
        """
        self.a.serve(self.network)
        self.b.serve(self.network)
        client = self.make_client(hedging=False)
        self.result(client.get_registry())
        self.a.hang(self.network)
        d = client.resolve("hello")
        self.network.advance(0.49)
        self.assertNoResult(d)
        elapsed = 0.49 + self.network.run_until(d)
        self.assertEqual(self.successResultOf(d), HELLO)
        self.assertLess(elapsed, 1.0)
        self.assertEqual(self.network.open_clients("127.0.0.1", 4061), [])
        self.assertEqual(self.locates()[-2:], ["findObjectById", "findAdapterById"])
        self.assertEqual(len(self.b.locate_requests()), 2)

    def test_hung_with_request_in_flight_hedged(self) -> None:
        """
        With hedging (the default) the same stall costs a few milliseconds:
        the request is sent to the second replica too, which answers, and
        the next request goes there directly.
        """
        self.a.serve(self.network)
        self.b.serve(self.network)
        client = self.make_client()
        self.result(client.get_registry())
        self.a.hang(self.network)
        d = client.resolve("hello")
        elapsed = self.network.run_until(d)
        self.assertEqual(self.successResultOf(d), HELLO)
        self.assertLess(elapsed, 0.1)
        self.assertEqual(
            [r.operation for r in self.b.locate_requests()], ["findObjectById", "findAdapterById"]
        )
        self.assertEqual(client.hedges, 1)

    def test_concurrent_requests_fail_over_once(self) -> None:
        """Many requests timing out together move on by one replica, not several."""
        c = RegistryReplica(("127.0.0.1", 6061), ("127.0.0.1", 6062))
        populate(c)
        for replica in (self.a, self.b, c):
            replica.serve(self.network)
        client = LocatorClient(
            self.reactor,
            f"DemoIceGrid/Locator:{self.a.locator_endpoint}:{self.b.locator_endpoint}"
            f":{c.locator_endpoint}",
            retry_policy=WORST_CASE_POLICY,
        )
        client.startService()
        self.addCleanup(self.stop, client)
        self.result(client.get_registry())
        self.a.hang(self.network)
        ds = [client.find_adapter_by_id("HelloAdapter") for _ in range(5)]
        for d in ds:
            self.assertEqual(self.result(d).endpoints, HELLO)
        self.assertEqual(len(self.b.locate_requests()), 5)
        self.assertEqual(c.locate_requests(), [])

    def test_unreachable(self) -> None:
        """No replica at all: the request fails after max_attempts with the last error."""
        client = self.make_client(max_attempts=3)
        failure = self.outcome(client.resolve("hello"))
        failure.trap(LocatorUnreachableError)
        self.assertEqual(failure.value.attempts, 3)
        self.assertEqual(len(self.network.attempts), 3)
        self.assertIn("ConnectionRefusedError", str(failure.value))

    def test_default_attempts(self) -> None:
        """By default every replica is tried twice."""
        client = self.make_client()
        self.assertEqual(client.max_attempts, 4)
        self.outcome(client.resolve("hello")).trap(LocatorUnreachableError)
        self.assertEqual(self.network.attempts, [("127.0.0.1", 4061), ("127.0.0.1", 5061)] * 2)

    def test_recovers(self) -> None:
        """After every replica was down, a replica that comes back is used."""
        client = self.make_client(max_attempts=2)
        self.outcome(client.resolve("hello")).trap(LocatorUnreachableError)
        self.b.serve(self.network)
        self.assertEqual(self.result(client.resolve("hello")), HELLO)

    def test_default_policy(self) -> None:
        """The default back-off is capped and jittered."""
        client = LocatorClient(self.reactor, "DemoIceGrid/Locator:tcp -p 4061")
        delays = {client.retry_policy(50) for _ in range(20)}
        self.assertGreater(len(delays), 1)
        self.assertLessEqual(max(delays), 2.1)
        self.assertGreaterEqual(min(delays), 2.0)


class SingleReplicaTests(LocatorTestCase):
    def test_no_redial_at_once(self) -> None:
        """
        A client of one replica that dies does not dial it again in the same
        moment (a slave's client to its dead master would, just when the
        master's clients come to the slave), but soon after; a request made
        meanwhile is answered once the replica is back.
        """
        self.a.serve(self.network)
        client = LocatorClient(self.reactor, f"DemoIceGrid/Locator:{self.a.locator_endpoint}")
        client.startService()
        self.addCleanup(self.stop, client)
        self.result(client.get_registry())
        self.a.kill(self.network)
        self.network.flush()
        self.assertEqual(len(self.network.attempts), 1)
        self.network.advance(0.049)
        self.assertEqual(len(self.network.attempts), 1)
        self.a.serve(self.network)
        d = client.get_registry()
        self.assertEqual(self.result(d), self.a.locator_registry)
        self.assertEqual(len(self.network.attempts), 2)


class LifeCycleTests(LocatorTestCase):
    def test_waits_for_start(self) -> None:
        """A request made before the service starts is sent once it has."""
        self.a.serve(self.network)
        client = LocatorClient(self.reactor, f"DemoIceGrid/Locator:{self.a.locator_endpoint}")
        d = client.get_registry()
        self.network.flush()
        self.assertNoResult(d)
        client.startService()
        self.addCleanup(self.stop, client)
        self.assertEqual(self.result(d), self.a.locator_registry)

    def test_stop_closes_gracefully(self) -> None:
        """Stopping sends CloseConnection, so the replica knows nothing is lost."""
        self.a.serve(self.network)
        client = self.make_client()
        self.result(client.get_registry())
        [link] = self.network.links_to("127.0.0.1", 4061)
        d = client.stopService()
        self.network.flush()
        self.successResultOf(d)
        self.assertTrue(link.received[-1].endswith(CLOSE_CONNECTION))
        self.assertTrue(link.closed)
        self.assertEqual(self.a.client_factory.connections, set())

    def test_stop_fails_waiting_requests(self) -> None:
        client = self.make_client()
        d = client.get_registry()
        self.network.flush()
        stopped = client.stopService()
        self.network.flush()
        self.successResultOf(stopped)
        self.failureResultOf(d, CancelledError)

    def test_stop_during_request(self) -> None:
        self.a.serve(self.network)
        client = self.make_client()
        self.result(client.get_registry())
        self.a.hang(self.network)
        d = client.get_registry()
        self.network.flush()
        stopped = client.stopService()
        self.network.flush()
        self.successResultOf(stopped)
        self.failureResultOf(d, CancelledError)

    def test_on_connected(self) -> None:
        """Subscribers hear of every new connection, once each."""
        self.a.serve(self.network)
        self.b.serve(self.network)
        client = self.make_client()
        seen: list[IceClientProtocol] = []
        cancel = client.on_connected(seen.append)
        self.result(client.get_registry())
        self.result(client.get_registry())
        self.assertEqual(len(seen), 1)
        self.assertTrue(seen[0].validated)
        self.a.kill(self.network)
        self.network.advance(1.0)
        self.assertEqual(len(seen), 2)
        cancel()
        self.b.kill(self.network)
        self.a.serve(self.network)
        self.network.advance(1.0)
        self.assertEqual(len(seen), 2)

    def test_on_connected_can_call(self) -> None:
        """A subscriber may make requests from its callback."""
        self.a.serve(self.network)
        client = LocatorClient(self.reactor, f"DemoIceGrid/Locator:{self.a.locator_endpoint}")
        answers: list[Deferred[Any]] = []
        client.on_connected(lambda _: answers.append(client.get_registry()))
        client.startService()
        self.addCleanup(self.stop, client)
        self.network.run_until(lambda: bool(answers) and answers[0].called)
        self.assertEqual(self.successResultOf(answers[0]), self.a.locator_registry)

    def test_restart(self) -> None:
        self.a.serve(self.network)
        client = self.make_client()
        self.result(client.get_registry())
        self.stop(client)
        client.startService()
        self.assertEqual(self.result(client.get_registry()), self.a.locator_registry)


class ConfigurationTests(SynchronousTestCase):
    def properties(self, **values: str) -> Properties:
        properties = Properties()
        for key, value in values.items():
            properties.set(key.replace("_", "."), value)
        return properties

    def test_from_properties(self) -> None:
        client = LocatorClient.from_properties(
            MemoryNetwork().reactor,
            self.properties(
                Ice_Default_Locator="DemoIceGrid/Locator:tcp -p 4061:tcp -p 5061",
                Ice_Default_LocatorCacheTimeout="30",
            ),
        )
        self.assertEqual(client.locator.identity, Identity("Locator", "DemoIceGrid"))
        self.assertEqual(len(client.failover.endpoints), 2)
        self.assertEqual(client.cache_timeout, 30)
        self.assertEqual(client.request_timeout, 0.5)

    def test_defaults(self) -> None:
        client = LocatorClient.from_properties(
            MemoryNetwork().reactor, self.properties(Ice_Default_Locator="L:tcp -p 1")
        )
        self.assertEqual(client.cache_timeout, -1)

    def test_invocation_timeout(self) -> None:
        properties = self.properties(Ice_Default_Locator="L:tcp -p 1")
        properties.set("Ice.Default.Locator.InvocationTimeout", "250")
        client = LocatorClient.from_properties(MemoryNetwork().reactor, properties)
        self.assertEqual(client.request_timeout, 0.25)

    def test_missing(self) -> None:
        with self.assertRaises(PropertyError) as caught:
            LocatorClient.from_properties(MemoryNetwork().reactor, Properties())
        self.assertIn("Ice.Default.Locator", str(caught.exception))

    def test_no_endpoints(self) -> None:
        """A locator must be reachable: a well-known or indirect proxy will not do."""
        self.assertRaises(ValueError, LocatorClient, MemoryNetwork().reactor, "DemoIceGrid/Locator")
        self.assertRaises(
            ValueError, LocatorClient, MemoryNetwork().reactor, "L:udp -h 127.0.0.1 -p 1"
        )
