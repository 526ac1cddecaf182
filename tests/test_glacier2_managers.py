"""
Tests for the Glacier2 session managers on a registry in memory: a router's
requests go into the session manager adapter's connection, and the router's
C{SessionControl} and C{IdentitySet} are Ice servants on a
L{MemoryNetwork}, which the registry calls back. What is expected is what
IceGrid 3.7.8 did (docs/icegrid-node-facts.md, "Glacier2 session managers");
tests/test_glacier2_processes.py runs the real glacier2router.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    CannotCreateSessionException,
    DeploymentException,
    ObjectNotExistError,
)
from gridreg.ice.messages import HEADER_SIZE, Request, decode_reply, encode_request, reply_error
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.server import IceServerFactory
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Identity, OperationMode, Proxy
from gridreg.registry.config import RegistryConfig
from gridreg.registry.glacier2_managers import RoutedClientSession
from gridreg.registry.service import RegistryService
from gridreg.store.memory import MemoryStore
from tests._helpers import MemoryNetwork

NORMAL, IDEMPOTENT = OperationMode.NORMAL, OperationMode.IDEMPOTENT
READ_ONLY = "this operation is not allowed on a slave or read-only master registry."
ROUTER_PORT = 9100
SM = "tcp -h 127.0.0.1 -p 24075"
ASM = "tcp -h 127.0.0.1 -p 24076"


class IdentitySetServant(Servant):
    type_id = "::Glacier2::IdentitySet"

    def __init__(self) -> None:
        self.changes: list[tuple[str, list[str]]] = []

    def _change(self, what: str, params: InputStream) -> bytes:
        identities = [params.read_identity() for _ in range(params.read_size())]
        self.changes.append((what, [f"{i.category}/{i.name}".lstrip("/") for i in identities]))
        return b""

    @operation("add", idempotent=True)
    def add(self, request: Request, params: InputStream) -> bytes:
        return self._change("add", params)

    @operation("remove", idempotent=True)
    def remove(self, request: Request, params: InputStream) -> bytes:
        return self._change("remove", params)


class SessionControlServant(Servant):
    """The router's side: its session timeout and identity filter; C{destroy} recorded."""

    type_id = "::Glacier2::SessionControl"

    def __init__(self, timeout: int, fail: bool = False) -> None:
        self.timeout = timeout
        self.fail = fail
        self.identity_set = IdentitySetServant()
        self.destroyed = 0

    @operation("identities")
    def identities(self, request: Request, params: InputStream) -> bytes:
        if self.fail:
            raise RuntimeError("the router failed")
        out = OutputStream(request.encoding)
        out.write_proxy(proxy_from_string(f"ids:tcp -h 127.0.0.1 -p {ROUTER_PORT}"))
        return out.getvalue()

    @operation("getSessionTimeout", idempotent=True)
    def get_session_timeout(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_int(self.timeout)
        return out.getvalue()

    @operation("destroy")
    def destroy(self, request: Request, params: InputStream) -> bytes:
        self.destroyed += 1
        return b""


class Router:
    """A fake glacier2router: one connection to a session manager adapter, and its controls."""

    def __init__(self, testcase: SynchronousTestCase, network: MemoryNetwork, factory: Any):
        self.testcase = testcase
        self.network = network
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.transport.clear()
        self.next_id = 1
        self.adapter = ObjectAdapter("Router")
        self.control = SessionControlServant(0)
        self.adapter.add(Identity("ctl", ""), self.control)
        self.adapter.add(Identity("ids", ""), self.control.identity_set)
        network.listen("127.0.0.1", ROUTER_PORT, IceServerFactory(self.adapter))

    @property
    def control_proxy(self) -> Proxy:
        return proxy_from_string(f"ctl:tcp -h 127.0.0.1 -p {ROUTER_PORT}")

    def invoke(
        self, identity: Identity, operation: str, mode: OperationMode = NORMAL, params: bytes = b""
    ) -> Any:
        """The result stream, or the exception the reply carries, once the network is quiet."""
        request_id, self.next_id = self.next_id, self.next_id + 1
        self.protocol.dataReceived(
            encode_request(
                Request(request_id, identity, "", operation, int(mode), {}, params=params)
            )
        )
        self.network.flush()
        data = self.transport.value()
        self.transport.clear()
        self.testcase.assertTrue(data, f"no reply to {operation}")
        reply = decode_reply(data[HEADER_SIZE:])
        error = reply_error(reply)
        return error if error is not None else InputStream(reply.payload, reply.encoding)

    def create(self, manager: str, user: str, control: Optional[Proxy] = None) -> Any:
        out = OutputStream()
        out.write_string(user)
        out.write_proxy(control)
        result = self.invoke(Identity(manager, "TG"), "create", NORMAL, out.getvalue())
        return result.read_proxy() if isinstance(result, InputStream) else result


def make_registry(
    testcase: SynchronousTestCase, network: MemoryNetwork, **extra: str
) -> RegistryService:
    properties = Properties()
    for key, value in {
        "IceGrid.InstanceName": "TG",
        "IceGrid.Registry.Client.Endpoints": "tcp -h 127.0.0.1 -p 24071",
        "IceGrid.Registry.Server.Endpoints": "tcp -h 127.0.0.1 -p 24072",
        **extra,
    }.items():
        properties.set(key, value)
    service = RegistryService(
        network.reactor, RegistryConfig.from_properties(properties), MemoryStore()
    )
    service.privilegedStartService()
    service.startService()
    testcase.successResultOf(service.when_ready())
    testcase.addCleanup(lambda: service.stopService() and None)
    return service


MANAGERS = {
    "IceGrid.Registry.SessionManager.Endpoints": SM,
    "IceGrid.Registry.AdminSessionManager.Endpoints": ASM,
}


class Allocations:
    """Stands for the master's allocations: every object is granted at once."""

    def __init__(self) -> None:
        self.released: list[Identity] = []

    def allocate_by_id(self, key: Any, identity: Identity, timeout: float) -> Any:
        from twisted.internet.defer import succeed

        return succeed(Proxy(identity, adapter_id="Alloc1.Hello"))

    def release(self, key: Any, identity: Identity) -> None:
        self.released.append(identity)

    def release_all(self, key: Any) -> None:
        pass


def identity_params(identity: Identity) -> bytes:
    out = OutputStream()
    out.write_identity(identity)
    return out.getvalue()


class NotConfiguredTests(SynchronousTestCase):
    def test_nothing_listens_nothing_is_registered(self) -> None:
        """As IceGrid: without the Endpoints properties, no manager exists."""
        service = make_registry(self, MemoryNetwork())
        self.assertEqual(service.glacier2_factories, {})
        names = {i.name for i in service.state.builtin_objects}
        self.assertEqual(names & {"SessionManager", "AdminSessionManager"}, set())
        self.assertEqual(len(service.reactor.tcpServers), 2)  # client and server endpoints


class WellKnownTests(SynchronousTestCase):
    def test_master_registers_four_managers_on_their_endpoints(self) -> None:
        service = make_registry(self, MemoryNetwork(), **MANAGERS)
        found = {
            identity.name: (info.type, info.proxy.endpoints[0].port)
            for identity, info in service.state.builtin_objects.items()
            if "SessionManager" in identity.name
        }
        self.assertEqual(
            found,
            {
                "SessionManager": ("::Glacier2::SessionManager", 24075),
                "SSLSessionManager": ("::Glacier2::SSLSessionManager", 24075),
                "AdminSessionManager": ("::Glacier2::SessionManager", 24076),
                "AdminSSLSessionManager": ("::Glacier2::SSLSessionManager", 24076),
            },
        )
        ports = sorted(port for port, *_ in service.reactor.tcpServers)
        self.assertEqual(ports, [24071, 24072, 24075, 24076])

    def test_published_endpoints(self) -> None:
        """The managers and their sessions carry the adapter's PublishedEndpoints."""
        network = MemoryNetwork()
        service = make_registry(
            self,
            network,
            **MANAGERS,
            **{"IceGrid.Registry.SessionManager.PublishedEndpoints": "tcp -h gw.example -p 4444"},
        )
        info = service.state.builtin_objects[Identity("SessionManager", "TG")]
        self.assertEqual(
            (info.proxy.endpoints[0].host, info.proxy.endpoints[0].port), ("gw.example", 4444)
        )
        router = Router(self, network, service.glacier2_factories["session_manager"])
        proxy = router.create("SessionManager", "alice")
        self.assertEqual(proxy.endpoints, info.proxy.endpoints)

    def test_slave_serves_only_its_admin_managers(self) -> None:
        network = MemoryNetwork()
        service = make_registry(
            self,
            network,
            **MANAGERS,
            **{
                "IceGrid.Registry.ReplicaName": "Replica1",
                "Ice.Default.Locator": "TG/Locator:tcp -h 127.0.0.1 -p 24099",
            },
        )
        found = {
            identity.name
            for identity in service.state.builtin_objects
            if "SessionManager" in identity.name
        }
        self.assertEqual(found, {"AdminSessionManager-Replica1", "AdminSSLSessionManager-Replica1"})
        # like its client endpoints, it refuses connections until it has synced
        factory = service.glacier2_factories["admin_session_manager"]
        self.assertIsNone(factory.buildProtocol(None))
        service.client_factory.accepting = True
        # it listens on SessionManager.Endpoints, as IceGrid, and serves nothing there
        router = Router(self, network, service.glacier2_factories["session_manager"])
        for name in ("SessionManager", "SessionManager-Replica1"):
            self.assertIsInstance(router.create(name, "u"), ObjectNotExistError)
        admin_router = Router(self, network, service.glacier2_factories["admin_session_manager"])
        session = admin_router.create("AdminSessionManager-Replica1", "reader")
        admin = admin_router.invoke(session.identity, "getAdmin", IDEMPOTENT).read_proxy()
        out = OutputStream()
        out.write_proxy(proxy_from_string("foo:tcp -h 127.0.0.1 -p 9"))
        out.write_string("::Foo")
        self.assertEqual(
            admin_router.invoke(admin.identity, "addObjectWithType", NORMAL, out.getvalue()),
            DeploymentException(READ_ONLY),
        )


class SessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork()

    def registry(self, **extra: str) -> RegistryService:
        return make_registry(self, self.network, **MANAGERS, **extra)

    def test_client_session_without_control(self) -> None:
        """
        Served and published on the manager's endpoints, not the client
        endpoints; never expires; ended by destroy.
        """
        service = self.registry(**{"IceGrid.Registry.SessionTimeout": "5"})
        router = Router(self, self.network, service.glacier2_factories["session_manager"])
        proxy = router.create("SessionManager", "alice")
        self.assertEqual(proxy.endpoints[0].port, 24075)
        self.assertIsNone(service.client_adapter.find(proxy.identity))
        self.assertIsInstance(router.invoke(proxy.identity, "keepAlive", IDEMPOTENT), InputStream)
        ids = router.invoke(proxy.identity, "ice_ids", IDEMPOTENT).read_string_seq()
        self.assertIn("::IceGrid::Session", ids)
        self.network.advance(60)
        [session] = service.ice_sessions.sessions.values()
        self.assertEqual(session.user, "alice")
        router.protocol.connectionLost(None)  # the router's connection does not hold it
        self.network.advance(60)
        self.assertIn(proxy.identity, service.ice_sessions.sessions)
        other = Router(self, self.network, service.glacier2_factories["session_manager"])
        self.assertIsInstance(other.invoke(proxy.identity, "destroy"), InputStream)
        self.assertEqual(service.ice_sessions.sessions, {})
        self.assertIsInstance(
            other.invoke(proxy.identity, "keepAlive", IDEMPOTENT), ObjectNotExistError
        )

    def test_control_timeout_without_filters(self) -> None:
        """The router's session timeout ends a session not kept alive; no filter is touched."""
        service = self.registry()
        router = Router(self, self.network, service.glacier2_factories["session_manager"])
        router.control.timeout = 5
        proxy = router.create("SessionManager", "alice", router.control_proxy)
        self.assertEqual(router.control.identity_set.changes, [])
        for _ in range(4):
            self.network.advance(3)
            router.invoke(proxy.identity, "keepAlive", IDEMPOTENT)
        self.assertIn(proxy.identity, service.ice_sessions.sessions)
        self.network.advance(18)  # the reaper's second run: the registry's 30 s would keep it
        self.assertEqual(service.ice_sessions.sessions, {})
        self.assertEqual(router.control.destroyed, 0)  # IceGrid 3.7.8 does not call it

    def test_client_filters(self) -> None:
        service = self.registry(**{"IceGrid.Registry.SessionFilters": "1"})
        allocations = service.allocations = Allocations()  # type: ignore[assignment]
        router = Router(self, self.network, service.glacier2_factories["session_manager"])
        proxy = router.create("SessionManager", "alice", router.control_proxy)
        session = service.ice_sessions.sessions[proxy.identity]
        self.assertIsInstance(session, RoutedClientSession)
        res = Identity("res", "")
        got = router.invoke(
            proxy.identity, "allocateObjectById", NORMAL, identity_params(res)
        ).read_proxy()
        self.assertEqual(got.identity, res)
        router.invoke(proxy.identity, "releaseObject", NORMAL, identity_params(res))
        self.assertEqual(allocations.released, [res])
        self.assertEqual(
            router.control.identity_set.changes,
            [
                ("add", ["TG/Query", f"TG/{proxy.identity.name}"]),
                ("add", ["", "res"]),  # 3.7.8 sends an empty identity first
                ("remove", ["", "res"]),
            ],
        )

    def test_admin_filters_and_admin_object(self) -> None:
        service = self.registry(**{"IceGrid.Registry.AdminSessionFilters": "1"})
        router = Router(self, self.network, service.glacier2_factories["admin_session_manager"])
        proxy = router.create("AdminSessionManager", "root", router.control_proxy)
        admin = router.invoke(proxy.identity, "getAdmin", IDEMPOTENT).read_proxy()
        self.assertEqual(admin.endpoints[0].port, 24076)
        names = router.invoke(admin.identity, "getAllRegistryNames", IDEMPOTENT).read_string_seq()
        self.assertEqual(names, ["Master"])
        self.assertEqual(
            router.control.identity_set.changes,
            [("add", ["TG/Query", f"TG/{admin.identity.name}", f"TG/{proxy.identity.name}"])],
        )
        router.invoke(proxy.identity, "destroy")
        self.assertIsNone(service.glacier2.adapters[1].adapter.find(admin.identity))

    def test_failed_control_refuses_the_session(self) -> None:
        service = self.registry(**{"IceGrid.Registry.SessionFilters": "1"})
        router = Router(self, self.network, service.glacier2_factories["session_manager"])
        router.control.fail = True
        self.assertEqual(
            router.create("SessionManager", "alice", router.control_proxy),
            CannotCreateSessionException("internal server error"),
        )
        self.assertEqual(service.ice_sessions.sessions, {})
        from gridreg.ice.exceptions import UnknownError

        self.flushLoggedErrors(RuntimeError)  # the fake router's, logged by its adapter
        self.assertEqual(len(self.flushLoggedErrors(UnknownError)), 1)  # the registry's

    def test_ssl_manager_names_the_certificate_subject(self) -> None:
        from gridreg.certs import make_demo_certs

        certs = self.mktemp()
        make_demo_certs(certs, admins=["alice"], instance="TG")
        with open(os.path.join(certs, "admin-alice.pem")) as f:
            pem = f.read()
        service = self.registry()
        router = Router(self, self.network, service.glacier2_factories["admin_session_manager"])
        out = OutputStream()
        for host, port in (("127.0.0.1", 5000), ("127.0.0.1", 4063)):
            out.write_string(host)
            out.write_int(port)
        out.write_string("TLS_AES_256_GCM_SHA384")
        out.write_string_seq([pem])
        out.write_proxy(None)
        result = router.invoke(
            Identity("AdminSSLSessionManager", "TG"), "create", NORMAL, out.getvalue()
        )
        proxy = result.read_proxy()
        session = service.ice_sessions.sessions[proxy.identity]
        self.assertIn("CN=", session.user)
        self.assertEqual(session.kind, "admin")
