# -*- test-case-name: tests.test_applications -*-
"""
Deployed applications in the registry: what a descriptor makes resolvable,
what it lets servers register, and how its replica groups balance.
"""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    AdapterNotFoundException,
    DeploymentException,
    InvalidReplicaGroupIdException,
)
from gridreg.ice.messages import Request, decode_reply, encode_request
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Identity, OperationMode, Proxy, TcpEndpoint
from gridreg.protocol.errors import NotFoundError
from gridreg.registry.config import RegistryConfig
from gridreg.registry.descriptors import DescriptorError
from gridreg.registry.service import RegistryService
from gridreg.store.memory import MemoryStore

DEMO_APP = os.path.join(os.path.dirname(__file__), os.pardir, "etc", "demo-app.xml")


def demo_xml() -> str:
    with open(DEMO_APP) as f:
        return f.read()


def make_registry(testcase: SynchronousTestCase, dynamic: bool = False) -> RegistryService:
    properties = Properties()
    properties.set("IceGrid.InstanceName", "DemoIceGrid")
    properties.set("IceGrid.Registry.Client.Endpoints", "tcp -h 127.0.0.1 -p 4061")
    properties.set("IceGrid.Registry.DynamicRegistration", "1" if dynamic else "0")
    service = RegistryService(
        MemoryReactorClock(), RegistryConfig.from_properties(properties), MemoryStore()
    )
    service.privilegedStartService()
    service.startService()
    testcase.successResultOf(service.when_ready())
    return service


def direct(port: int) -> Proxy:
    return Proxy(Identity("dummy"), endpoints=(TcpEndpoint("127.0.0.1", port),))


def locate(service: RegistryService, adapter_id: str, request_id: int = 1) -> list[int]:
    """Ask the Locator over a connection, as an Ice client does; return the ports."""
    protocol = service.client_factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    out = OutputStream()
    out.write_string(adapter_id)
    transport.clear()
    protocol.dataReceived(
        encode_request(
            Request(
                request_id,
                Identity("Locator", "DemoIceGrid"),
                "",
                "findAdapterById",
                OperationMode.NONMUTATING,
                {},
                params=out.getvalue(),
            )
        )
    )
    reply = decode_reply(transport.value()[14:])
    proxy = InputStream(reply.payload, reply.encoding).read_proxy()
    return [e.port for e in proxy.endpoints]


class ApplicationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = make_registry(self)
        self.database = self.registry.database
        self.successResultOf(self.database.add_application(demo_xml()))

    def test_deployed_objects_resolve(self) -> None:
        info = self.registry.state.find_object(Identity("hello"))
        self.assertEqual(info.proxy, proxy_from_string("hello@HelloGroup"))
        self.assertEqual(info.type, "::Demo::Hello")
        self.assertEqual(list(self.registry.state.applications), ["DemoApp"])

    def test_deployed_adapters_register_without_dynamic_registration(self) -> None:
        self.successResultOf(
            self.database.set_adapter_direct_proxy("HelloServer-1.Hello", "HelloGroup", direct(1))
        )
        self.successResultOf(
            self.database.set_adapter_direct_proxy("HelloServer-2.Hello", "", direct(2))
        )
        self.assertEqual(
            self.registry.state.adapters["HelloServer-2.Hello"].replica_group_id, "HelloGroup"
        )
        self.failureResultOf(
            self.database.set_adapter_direct_proxy("Stranger", "", direct(3)),
            AdapterNotFoundException,
        )

    def test_wrong_replica_group_refused(self) -> None:
        self.failureResultOf(
            self.database.set_adapter_direct_proxy("HelloServer-1.Hello", "Other", direct(1)),
            InvalidReplicaGroupIdException,
        )

    def test_round_robin_rotates_and_is_not_cached(self) -> None:
        """Each locate of a round-robin group starts with the next member."""
        for index, port in ((1, 1001), (2, 1002)):
            self.successResultOf(
                self.database.set_adapter_direct_proxy(
                    f"HelloServer-{index}.Hello", "HelloGroup", direct(port)
                )
            )
        answers = [locate(self.registry, "HelloGroup", i)[0] for i in range(1, 5)]
        self.assertEqual(sorted(set(answers)), [1001, 1002])
        self.assertNotEqual(answers[0], answers[1])
        self.assertEqual(answers[0], answers[2])

    def test_deployed_group_without_registered_members_is_not_found(self) -> None:
        self.failureResultOf(
            self.database.set_adapter_direct_proxy("Nobody", "", direct(1)),
            AdapterNotFoundException,
        )
        self.assertIsNone(self.registry.state.locate_adapter("HelloGroup"))

    def test_update_and_remove(self) -> None:
        self.successResultOf(
            self.database.set_adapter_direct_proxy("HelloServer-1.Hello", "", direct(1))
        )
        updated = demo_xml().replace(
            'index="2"/>', 'index="2"/>\n<server-instance template="HelloServer" index="3"/>'
        )
        self.successResultOf(self.database.add_application(updated, update=True))
        self.assertIn("HelloServer-3.Hello", self.registry.state.deployed.adapters)
        self.successResultOf(self.database.remove_application("DemoApp"))
        self.assertEqual(self.registry.state.applications, {})
        self.assertNotIn("HelloServer-1.Hello", self.registry.state.adapters)
        self.assertIsNone(self.registry.state.find_object(Identity("hello")))
        self.failureResultOf(self.database.remove_application("DemoApp"), NotFoundError)

    def test_conflicts_refused(self) -> None:
        self.failureResultOf(self.database.add_application(demo_xml()), DescriptorError)
        other = demo_xml().replace('name="DemoApp"', 'name="Other"')
        failure = self.failureResultOf(self.database.add_application(other), DescriptorError)
        self.assertIn("already used by application 'DemoApp'", failure.getErrorMessage())

    def test_deployed_object_cannot_be_removed_as_admin_object(self) -> None:
        failure = self.failureResultOf(
            self.database.remove_object(Identity("hello")), DeploymentException
        )
        self.assertIn("DemoApp", str(failure.value))

    def test_applications_survive_reload(self) -> None:
        """A restarted registry rebuilds its deployed indexes from the store."""
        store = self.registry.store
        self.successResultOf(self.registry.stopService())
        properties = Properties()
        properties.set("IceGrid.Registry.Client.Endpoints", "tcp -h 127.0.0.1 -p 4061")
        again = RegistryService(
            MemoryReactorClock(), RegistryConfig.from_properties(properties), store
        )
        again.privilegedStartService()
        self.successResultOf(again.when_ready())
        self.assertIn("HelloGroup", again.state.deployed.replica_groups)
