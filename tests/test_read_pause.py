"""
C{GridReg.Client.ReadPause} as a registry applies it: a client connection
that pipelines a few requests stops reading for that many microseconds once
they are answered; the server endpoint's connections (nodes, servers
registering) never pause.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.messages import Request, encode_request
from gridreg.ice.server import IceServerFactory
from gridreg.ice.types import Identity, OperationMode
from gridreg.registry.config import RegistryConfig
from gridreg.registry.service import RegistryService
from gridreg.store.memory import MemoryStore
from tests.test_ice_server import replies


def pings(count: int) -> bytes:
    locator = Identity("Locator", "DemoIceGrid")
    return b"".join(
        encode_request(Request(i, locator, "", "ice_ping", OperationMode.IDEMPOTENT, {}))
        for i in range(1, count + 1)
    )


class RegistryReadPauseTests(SynchronousTestCase):
    def setUp(self) -> None:
        properties = Properties()
        properties.set("IceGrid.InstanceName", "DemoIceGrid")
        properties.set("IceGrid.Registry.Client.Endpoints", "tcp -h 127.0.0.1 -p 4061")
        properties.set("GridReg.Client.ReadPause", "100")
        self.clock = MemoryReactorClock()
        self.service = RegistryService(
            self.clock, RegistryConfig.from_properties(properties), MemoryStore()
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.successResultOf(self.service.when_ready())

    def connect(self, factory: IceServerFactory) -> tuple[object, StringTransport]:
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        transport.clear()
        return protocol, transport

    def test_client_connection_pauses(self) -> None:
        protocol, transport = self.connect(self.service.client_factory)
        protocol.dataReceived(pings(2))
        self.assertEqual(
            [(r.request_id, r.status) for r in replies(transport.value())], [(1, 0), (2, 0)]
        )
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(0.0001)
        self.assertEqual(transport.producerState, "producing")

    def test_server_connection_never_pauses(self) -> None:
        protocol, transport = self.connect(self.service.server_factory)
        protocol.dataReceived(pings(2))
        self.assertEqual(transport.producerState, "producing")
