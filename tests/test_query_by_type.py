"""
IceGrid's Query by type, as an Ice client asks it: a well-known object that
was removed (or changed type) is no longer returned, by findObjectByType or
by findAllObjectsByType, whose replies are cached.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import Request, decode_reply, encode_request
from gridreg.ice.types import Identity, OperationMode, Proxy, TcpEndpoint
from gridreg.registry.config import RegistryConfig
from gridreg.registry.service import RegistryService
from gridreg.store.memory import MemoryStore


def hello(name: str, port: int) -> Proxy:
    return Proxy(Identity(name), endpoints=(TcpEndpoint("127.0.0.1", port),))


class QueryByTypeTests(SynchronousTestCase):
    def setUp(self) -> None:
        properties = Properties()
        properties.set("IceGrid.InstanceName", "DemoIceGrid")
        properties.set("IceGrid.Registry.Client.Endpoints", "tcp -h 127.0.0.1 -p 4061")
        self.service = RegistryService(
            MemoryReactorClock(), RegistryConfig.from_properties(properties), MemoryStore()
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.successResultOf(self.service.when_ready())
        self.request_id = 0

    def query(self, operation: str, type_id: str) -> InputStream:
        """Call C{DemoIceGrid/Query} over a client connection; return the results."""
        protocol = self.service.client_factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        transport.clear()
        params = OutputStream()
        params.write_string(type_id)
        self.request_id += 1
        identity = Identity("Query", "DemoIceGrid")
        mode = OperationMode.NONMUTATING
        request = Request(
            self.request_id, identity, "", operation, mode, {}, params=params.getvalue()
        )
        protocol.dataReceived(encode_request(request))
        reply = decode_reply(transport.value()[14:])
        self.assertEqual(reply.status, 0)
        return InputStream(reply.payload, reply.encoding)

    def find_all(self, type_id: str) -> list[Proxy | None]:
        return self.query("findAllObjectsByType", type_id).read_proxy_seq()

    def find_one(self, type_id: str) -> Proxy | None:
        return self.query("findObjectByType", type_id).read_proxy()

    def test_removed_object_not_found_by_type(self) -> None:
        database = self.service.database
        self.successResultOf(database.add_object(hello("one", 1000), "::Demo::Hello"))
        self.successResultOf(database.add_object(hello("two", 2000), "::Demo::Hello"))
        self.assertEqual(len(self.find_all("::Demo::Hello")), 2)
        self.successResultOf(database.remove_object(Identity("one")))
        self.assertEqual(self.find_all("::Demo::Hello"), [hello("two", 2000)])
        for _ in range(10):
            self.assertEqual(self.find_one("::Demo::Hello"), hello("two", 2000))
        self.successResultOf(database.remove_object(Identity("two")))
        self.assertEqual(self.find_all("::Demo::Hello"), [])
        self.assertIsNone(self.find_one("::Demo::Hello"))

    def test_retyped_object_found_by_its_new_type(self) -> None:
        database = self.service.database
        self.successResultOf(database.add_object(hello("one", 1000), "::Demo::Hello"))
        self.assertEqual(self.find_all("::Demo::Hello"), [hello("one", 1000)])
        self.successResultOf(database.remove_object(Identity("one")))
        self.successResultOf(database.add_object(hello("one", 1001), "::Demo::Other"))
        self.assertEqual(self.find_all("::Demo::Hello"), [])
        self.assertEqual(self.find_one("::Demo::Other"), hello("one", 1001))
