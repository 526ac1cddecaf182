# -*- test-case-name: tests.test_discovery -*-
"""
Tests for L{gridreg.registry.discovery}: the well-known objects a replica
derives from the replica set (Locator, Query, Registry[-name],
InternalRegistry-name) and the stored form of a replica's endpoints.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity, Proxy, SslEndpoint, TcpEndpoint
from gridreg.registry.discovery import (
    ReplicaEndpoints,
    builtin_objects,
    internal_identity,
    registry_identity,
)
from gridreg.registry.state import ObjectInfo

MASTER = ReplicaEndpoints(
    client=(TcpEndpoint("127.0.0.1", 4061),),
    server=(TcpEndpoint("127.0.0.1", 4062),),
    internal=(SslEndpoint("127.0.0.1", 4063),),
)
REPLICA1 = ReplicaEndpoints(
    client=(TcpEndpoint("127.0.0.1", 4071), TcpEndpoint("::1", 4071)),
    internal=(SslEndpoint("127.0.0.1", 4073),),
)
REPLICA2 = ReplicaEndpoints(client=(TcpEndpoint("127.0.0.1", 4081),))


class IdentityTests(SynchronousTestCase):
    def test_registry(self) -> None:
        """IceGrid names the master's Registry plainly and a slave's after it."""
        self.assertEqual(registry_identity("Demo", "Master"), Identity("Registry", "Demo"))
        self.assertEqual(
            registry_identity("Demo", "Replica1"), Identity("Registry-Replica1", "Demo")
        )

    def test_internal(self) -> None:
        self.assertEqual(
            internal_identity("Demo", "Master"), Identity("InternalRegistry-Master", "Demo")
        )


class BuiltinObjectsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.replicas = {"Master": MASTER, "Replica1": REPLICA1, "Replica2": REPLICA2}

    def test_locator_and_query_list_active_replicas_in_order(self) -> None:
        """Locator and Query carry the client endpoints of the active replicas, this one first."""
        objects = builtin_objects("Demo", self.replicas, ["Replica1", "Master"])
        expected = REPLICA1.client + MASTER.client
        locator = objects[Identity("Locator", "Demo")]
        self.assertEqual(
            locator,
            ObjectInfo(
                Proxy(Identity("Locator", "Demo"), endpoints=expected), "::Ice::Locator"
            ),
        )
        self.assertEqual(objects[Identity("Query", "Demo")].proxy.endpoints, expected)
        self.assertEqual(objects[Identity("Query", "Demo")].type, "::IceGrid::Query")

    def test_locator_registry_lists_active_server_endpoints(self) -> None:
        """
        As IceGrid 3.7.8's C{object list}: C{LocatorRegistry}, typed
        C{::Ice::LocatorRegistry}, on the server endpoints of the replicas up.
        """
        replica1 = ReplicaEndpoints(
            client=REPLICA1.client, server=(TcpEndpoint("127.0.0.1", 4072),)
        )
        objects = builtin_objects(
            "Demo", {"Master": MASTER, "Replica1": replica1}, ["Replica1", "Master"]
        )
        self.assertEqual(
            objects[Identity("LocatorRegistry", "Demo")],
            ObjectInfo(
                Proxy(
                    Identity("LocatorRegistry", "Demo"),
                    endpoints=replica1.server + MASTER.server,
                ),
                "::Ice::LocatorRegistry",
            ),
        )
        alone = builtin_objects("Demo", {"Master": MASTER, "Replica1": replica1}, ["Master"])
        self.assertEqual(
            alone[Identity("LocatorRegistry", "Demo")].proxy.endpoints, MASTER.server
        )

    def test_inactive_and_unknown_replicas_left_out(self) -> None:
        objects = builtin_objects("Demo", self.replicas, ["Master", "Gone"])
        self.assertEqual(objects[Identity("Locator", "Demo")].proxy.endpoints, MASTER.client)

    def test_shared_endpoints_listed_once(self) -> None:
        same = ReplicaEndpoints(client=MASTER.client)
        objects = builtin_objects("Demo", {"Master": MASTER, "Twin": same}, ["Master", "Twin"])
        self.assertEqual(objects[Identity("Locator", "Demo")].proxy.endpoints, MASTER.client)

    def test_registry_of_every_active_replica(self) -> None:
        """Every active replica's Registry is published, with its client endpoints."""
        objects = builtin_objects("Demo", self.replicas, ["Master", "Replica1", "Replica2"])
        for name, endpoints in self.replicas.items():
            info = objects[registry_identity("Demo", name)]
            self.assertEqual(info.proxy.endpoints, endpoints.client)
            self.assertEqual(info.type, "::IceGrid::Registry")

    def test_slave_objects_only_while_it_is_up(self) -> None:
        """
        As IceGrid 3.7.8's master: a slave that goes down loses its
        C{Registry-<name>}, C{InternalRegistry-<name>} and session managers;
        the master's stay on a slave that lost it.
        """
        managers = ReplicaEndpoints(
            client=REPLICA1.client,
            internal=REPLICA1.internal,
            admin_session_manager=(TcpEndpoint("127.0.0.1", 4075),),
        )
        replicas = {"Master": MASTER, "Replica1": managers}
        up = builtin_objects("Demo", replicas, ["Master", "Replica1"])
        slave_objects = {
            registry_identity("Demo", "Replica1"),
            internal_identity("Demo", "Replica1"),
            Identity("AdminSessionManager-Replica1", "Demo"),
            Identity("AdminSSLSessionManager-Replica1", "Demo"),
        }
        self.assertLessEqual(slave_objects, set(up))
        down = builtin_objects("Demo", replicas, ["Master"])
        self.assertEqual(set(up) - set(down), slave_objects)
        master_lost = builtin_objects("Demo", replicas, ["Replica1"])
        self.assertIn(registry_identity("Demo", "Master"), master_lost)
        self.assertIn(internal_identity("Demo", "Master"), master_lost)

    def test_internal_registry_only_with_internal_endpoints(self) -> None:
        objects = builtin_objects("Demo", self.replicas, ["Master", "Replica1", "Replica2"])
        self.assertEqual(
            objects[internal_identity("Demo", "Master")],
            ObjectInfo(
                Proxy(internal_identity("Demo", "Master"), endpoints=MASTER.internal),
                "::IceGrid::InternalRegistry",
            ),
        )
        self.assertIn(internal_identity("Demo", "Replica1"), objects)
        self.assertNotIn(internal_identity("Demo", "Replica2"), objects)
        self.assertEqual(len(objects), 3 + 3 + 2)

    def test_no_active_replica(self) -> None:
        objects = builtin_objects("Demo", self.replicas, [])
        self.assertEqual(objects[Identity("Locator", "Demo")].proxy.endpoints, ())


class ReplicaEndpointsTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        for endpoints in (MASTER, REPLICA1, REPLICA2):
            self.assertEqual(ReplicaEndpoints.from_json(endpoints.to_json()), endpoints)

    def test_json_is_ice_strings(self) -> None:
        self.assertEqual(
            REPLICA2.to_json(),
            {"client": "tcp -h 127.0.0.1 -p 4081 -t 60000", "server": "", "internal": ""},
        )

    def test_missing_keys(self) -> None:
        """A record from an older replica may lack kinds: they are empty."""
        self.assertEqual(
            ReplicaEndpoints.from_json({"client": "tcp -h 127.0.0.1 -p 4081"}),
            ReplicaEndpoints(client=(TcpEndpoint("127.0.0.1", 4081),)),
        )
