# -*- test-case-name: tests.test_registry_vectors -*-
"""
Replay the requests a real Ice client sent to a real IceGrid registry and
check that gridreg answers with the very same bytes.

The registry is given the state IceGrid had during the capture (adapters,
a replica group, two well-known objects and its published endpoints), so
every reply must match the captured one byte for byte.
"""

from __future__ import annotations

import json
import os
import random

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.messages import VALIDATE_CONNECTION
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import TcpEndpoint, UdpEndpoint
from gridreg.registry.config import RegistryConfig
from gridreg.registry.service import RegistryService
from gridreg.store.memory import MemoryStore

VECTORS = os.path.join(os.path.dirname(__file__), "data", "ice-vectors")

#: vectors whose replies depend only on the state rebuilt in L{make_registry}
REPLAYED = [
    "02_ice_isA_locator_true",
    "03_ice_isA_locator_false",
    "04_ice_ping",
    "05_ice_id",
    "06_ice_ids",
    "07_findAdapterById_known",
    "08_findAdapterById_replica_group",
    "09_findAdapterById_unknown",
    "10_findObjectById_known_indirect",
    "11_findObjectById_registry_wellknown",
    "12_findObjectById_unknown",
    "13_getRegistry",
    "14_getLocalRegistry",
    "15_getLocalQuery",
    "16_query_findObjectById_known",
    "17_query_findObjectById_unknown_null",
    "18_query_findObjectByType",
    "19_query_findAllObjectsByType",
    "20_query_findAllReplicas",
    "21_proxy_param_exotic_1_1",
    "22_proxy_param_indirect_datagram_1_1",
    "23_object_not_exist",
    "24_facet_not_exist",
    "25_operation_not_exist",
    "26_oneway_request",
    "27_batch_request",
    "28_request_with_context",
    "35_setServerProcessProxy_ServerNotFound",
    "36_enc10_findAdapterById_known",
    "37_enc10_findAdapterById_unknown",
    "38_enc10_findObjectById_unknown",
    "39_enc10_proxy_param_udp",
    "48_compression",
    "49_proxy_param_wellknown",
    "50_LocatorFinder_getLocator",
]


def load_vector(name: str) -> dict:
    with open(os.path.join(VECTORS, name + ".json")) as f:
        return json.load(f)


class FirstChoice(random.Random):
    """Picks the first candidate, as IceGrid's random pick happened to in the capture."""

    def choice(self, seq):  # type: ignore[no-untyped-def,override]
        return seq[0]


def make_registry(testcase: SynchronousTestCase) -> RegistryService:
    """A started registry holding the state of the captured IceGrid."""
    properties = Properties()
    for key, value in {
        "IceGrid.InstanceName": "DemoIceGrid",
        "IceGrid.Registry.Client.Endpoints": "tcp -h 127.0.0.1 -p 0",
        "IceGrid.Registry.Server.Endpoints": "tcp -h 127.0.0.1 -p 0",
        "IceGrid.Registry.Client.PublishedEndpoints": "tcp -h 127.0.0.1 -p 24071",
        "IceGrid.Registry.Server.PublishedEndpoints": "tcp -h 127.0.0.1 -p 24072",
        "IceGrid.Registry.DynamicRegistration": "1",
    }.items():
        properties.set(key, value)
    service = RegistryService(
        MemoryReactorClock(),
        RegistryConfig.from_properties(properties),
        MemoryStore(),
        rng=FirstChoice(),
    )
    service.privilegedStartService()
    service.startService()
    testcase.successResultOf(service.when_ready())
    database = service.database

    def register(adapter: str, group: str, *endpoints: object) -> None:
        proxy = proxy_from_string("dummy")
        proxy = proxy.__class__(proxy.identity, endpoints=tuple(endpoints))
        testcase.successResultOf(database.set_adapter_direct_proxy(adapter, group, proxy))

    register("HelloAdapter", "", TcpEndpoint("127.0.0.1", 24081))
    register("Rep1", "RepGroup", TcpEndpoint("127.0.0.1", 24082))
    register("Rep2", "RepGroup", TcpEndpoint("127.0.0.1", 24083), UdpEndpoint("127.0.0.1", 24083))
    testcase.successResultOf(
        database.add_object(proxy_from_string("hello@HelloAdapter"), "::Demo::Hello")
    )
    testcase.successResultOf(
        database.add_object(proxy_from_string("rhello@RepGroup"), "::Demo::Hello")
    )
    return service


class CapturedReplyTests(SynchronousTestCase):
    """gridreg answers each captured request exactly as IceGrid 3.7.8 did."""

    def replay(self, name: str) -> None:
        service = make_registry(self)
        vector = load_vector(name)
        first = vector["messages"][0]["summary"].get("identity", {})
        # the LocatorRegistry lives on the server endpoints, the rest on the client ones
        factory = (
            service.server_factory
            if first.get("name") == "LocatorRegistry"
            else service.client_factory
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), VALIDATE_CONNECTION)
        for message in vector["messages"]:
            if message["direction"] != "client->server":
                continue
            transport.clear()
            protocol.dataReceived(bytes.fromhex(message["hex"]))
            expected = [
                bytes.fromhex(m["hex"])
                for m in vector["messages"]
                if m["direction"] == "server->client"
                and m["summary"].get("requestId") == message["summary"].get("requestId")
                and m["summary"]["messageType"] == "Reply"
            ]
            if message["summary"].get("messageType") != "Request" or not message["summary"].get(
                "requestId"
            ):
                self.assertEqual(transport.value(), b"", "oneway and batch requests get no reply")
                continue
            self.assertEqual(transport.value().hex(), expected[0].hex())


def _make_test(name: str):  # type: ignore[no-untyped-def]
    def test(self: CapturedReplyTests) -> None:
        self.replay(name)

    test.__name__ = "test_" + name
    test.__doc__ = f"Vector {name}: the same reply bytes as IceGrid."
    return test


for _name in REPLAYED:
    setattr(CapturedReplyTests, "test_" + _name, _make_test(_name))
