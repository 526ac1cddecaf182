"""
Tests for IceGrid's Ice sessions and C{IceGrid::Admin} on a registry in
memory: an Ice client's requests go into the client endpoint's protocol and
the replies are decoded as C{icegridadmin} would. The refusals expected are
those the real IceGrid 3.7.8 answered (tests/test_icegridadmin_processes.py
runs the real C{icegridadmin}).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Optional

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    AccessDeniedException,
    AdapterNotExistException,
    AllocationException,
    ApplicationNotExistException,
    DeploymentException,
    FileNotAvailableException,
    NodeNotExistException,
    NodeUnreachableException,
    ObjectExistsException,
    ObjectNotExistError,
    ObjectNotRegisteredException,
    PermissionDeniedException,
    RegistryNotExistException,
    ServerNotExistException,
)
from gridreg.ice.messages import HEADER_SIZE, Request, decode_reply, encode_request, reply_error
from gridreg.ice.stringify import identity_from_string, proxy_from_string
from gridreg.ice.types import Identity, OperationMode, Proxy, TcpEndpoint
from gridreg.registry.config import RegistryConfig
from gridreg.registry.discovery import ReplicaEndpoints
from gridreg.registry.state import REPLICA, Mutation
from gridreg.registry.service import RegistryService
from gridreg.store.memory import MemoryStore

NORMAL, IDEMPOTENT = OperationMode.NORMAL, OperationMode.IDEMPOTENT
READ_ONLY = "this operation is not allowed on a slave or read-only master registry."


def make_registry(testcase: SynchronousTestCase, **extra: str) -> RegistryService:
    properties = Properties()
    for key, value in {
        "IceGrid.InstanceName": "TG",
        "IceGrid.Registry.Client.Endpoints": "tcp -h 127.0.0.1 -p 0",
        "IceGrid.Registry.Server.Endpoints": "tcp -h 127.0.0.1 -p 0",
        "IceGrid.Registry.Client.PublishedEndpoints": "tcp -h 127.0.0.1 -p 24071",
        "IceGrid.Registry.Server.PublishedEndpoints": "tcp -h 127.0.0.1 -p 24072",
        "IceGrid.Registry.DynamicRegistration": "1",
        **extra,
    }.items():
        properties.set(key, value)
    service = RegistryService(
        MemoryReactorClock(), RegistryConfig.from_properties(properties), MemoryStore()
    )
    service.privilegedStartService()
    service.startService()
    testcase.successResultOf(service.when_ready())
    testcase.addCleanup(lambda: service.stopService() and None)
    return service


class Client:
    """One Ice connection to the registry's client endpoint, answered synchronously."""

    def __init__(self, testcase: SynchronousTestCase, service: RegistryService) -> None:
        self.testcase = testcase
        self.service = service
        self.protocol = service.client_factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.transport.clear()
        self.next_id = 1

    def invoke(
        self, identity: Identity, operation: str, mode: OperationMode = NORMAL, params: bytes = b""
    ) -> Any:
        """The result stream, or the exception the reply carries (returned, not raised)."""
        request_id, self.next_id = self.next_id, self.next_id + 1
        self.protocol.dataReceived(
            encode_request(
                Request(request_id, identity, "", operation, int(mode), {}, params=params)
            )
        )
        data = self.transport.value()
        self.transport.clear()
        self.testcase.assertTrue(data, f"no reply to {operation}")
        reply = decode_reply(data[HEADER_SIZE:])
        error = reply_error(reply)
        if error is not None:
            return error
        return InputStream(reply.payload, reply.encoding)

    def close(self) -> None:
        self.protocol.connectionLost(None)  # type: ignore[arg-type]


def strings(*values: str) -> bytes:
    out = OutputStream()
    for value in values:
        out.write_string(value)
    return out.getvalue()


def proxy_params(proxy: Optional[Proxy], *more: str) -> bytes:
    out = OutputStream()
    out.write_proxy(proxy)
    for value in more:
        out.write_string(value)
    return out.getvalue()


def identity_params(text: str) -> bytes:
    out = OutputStream()
    out.write_identity(identity_from_string(text))
    return out.getvalue()


class SessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = make_registry(
            self,
            **{
                "IceGrid.Registry.PermissionsVerifier": "TG/NullPermissionsVerifier",
                "IceGrid.Registry.AdminPermissionsVerifier": "TG/NullPermissionsVerifier",
            },
        )
        self.client = Client(self, self.service)
        self.registry = Identity("Registry", "TG")

    def admin_session(self, client: Optional[Client] = None) -> Proxy:
        result = (client or self.client).invoke(
            self.registry, "createAdminSession", NORMAL, strings("u", "p")
        )
        proxy = result.read_proxy()
        assert proxy is not None
        return proxy

    def test_admin_session_identity_and_proxy(self) -> None:
        """As IceGrid's: `<instance>/<UUID>' on the client endpoints."""
        proxy = self.admin_session()
        self.assertEqual(proxy.identity.category, "TG")
        self.assertEqual(len(proxy.identity.name), 36)
        self.assertEqual(proxy.endpoints, (TcpEndpoint("127.0.0.1", 24071),))
        ids = self.client.invoke(proxy.identity, "ice_ids").read_string_seq()
        self.assertEqual(ids, ["::Glacier2::Session", "::Ice::Object", "::IceGrid::AdminSession"])
        admin = self.client.invoke(proxy.identity, "getAdmin", IDEMPOTENT).read_proxy()
        self.assertEqual(
            self.client.invoke(admin.identity, "ice_id").read_string(), "::IceGrid::Admin"
        )
        name = self.client.invoke(proxy.identity, "getReplicaName", IDEMPOTENT).read_string()
        self.assertEqual(name, "Master")
        template = self.client.invoke(proxy.identity, "getAdminCallbackTemplate", IDEMPOTENT)
        self.assertIsNone(template.read_proxy())

    def test_timeouts(self) -> None:
        self.assertEqual(
            self.client.invoke(self.registry, "getSessionTimeout", IDEMPOTENT).read_int(), 30
        )
        self.assertEqual(
            self.client.invoke(self.registry, "getACMTimeout", IDEMPOTENT).read_int(), 30
        )

    def test_destroy(self) -> None:
        proxy = self.admin_session()
        admin = self.client.invoke(proxy.identity, "getAdmin", IDEMPOTENT).read_proxy()
        self.client.invoke(proxy.identity, "destroy")
        self.assertIsInstance(
            self.client.invoke(proxy.identity, "keepAlive", IDEMPOTENT), ObjectNotExistError
        )
        self.assertIsInstance(
            self.client.invoke(admin.identity, "getAllNodeNames", IDEMPOTENT), ObjectNotExistError
        )

    def test_sessions_answer_only_their_own_connection(self) -> None:
        """
        As IceGrid 3.7.8: a session and its admin object used over another
        connection answer ObjectNotExistException, built-ins and destroy too,
        and stay as they were for the creating connection.
        """
        proxy = self.admin_session()
        admin = self.client.invoke(proxy.identity, "getAdmin", IDEMPOTENT).read_proxy()
        client = self.client.invoke(self.registry, "createSession", NORMAL, strings("u", "p"))
        session = client.read_proxy().identity
        other = Client(self, self.service)
        for identity, operation, mode in [
            (proxy.identity, "ice_ping", IDEMPOTENT),
            (proxy.identity, "getReplicaName", IDEMPOTENT),
            (proxy.identity, "destroy", NORMAL),
            (admin.identity, "getAllNodeNames", IDEMPOTENT),
            (session, "keepAlive", IDEMPOTENT),
            (session, "destroy", NORMAL),
        ]:
            self.assertEqual(
                other.invoke(identity, operation, mode),
                ObjectNotExistError(identity, "", operation),
            )
        names = self.client.invoke(admin.identity, "getAllNodeNames", IDEMPOTENT)
        self.assertEqual(names.read_string_seq(), [])
        self.assertIsInstance(self.client.invoke(session, "keepAlive", IDEMPOTENT), InputStream)
        self.assertIn(proxy.identity, self.service.ice_sessions.sessions)
        self.assertIn(session, self.service.ice_sessions.sessions)

    def test_connection_close_ends_the_session(self) -> None:
        proxy = self.admin_session()
        self.client.close()
        self.assertNotIn(proxy.identity, self.service.ice_sessions.sessions)
        self.assertIsNone(self.service.client_adapter.find(proxy.identity))

    def test_expiry_without_keepalive(self) -> None:
        """A session whose connection is unheard of for a timeout ends; keepAlive keeps it."""
        proxy = self.admin_session()
        clock = self.service.reactor
        for _ in range(4):
            clock.advance(10)
            self.client.invoke(proxy.identity, "keepAlive", IDEMPOTENT)
        self.assertIn(proxy.identity, self.service.ice_sessions.sessions)
        clock.advance(31)
        clock.advance(15)
        self.assertNotIn(proxy.identity, self.service.ice_sessions.sessions)

    def test_update_lock(self) -> None:
        first = self.admin_session()
        other = Client(self, self.service)
        result = other.invoke(self.registry, "createAdminSession", NORMAL, strings("v", "p"))
        second = result.read_proxy()
        serial = int(self.service.store.serial)
        self.assertEqual(self.client.invoke(first.identity, "startUpdate").read_int(), serial)
        self.assertEqual(other.invoke(second.identity, "startUpdate"), AccessDeniedException("u"))
        self.assertEqual(other.invoke(second.identity, "finishUpdate"), AccessDeniedException(""))
        self.client.invoke(first.identity, "finishUpdate")
        self.assertEqual(
            self.client.invoke(first.identity, "finishUpdate"), AccessDeniedException("")
        )
        self.client.invoke(first.identity, "startUpdate")
        self.client.close()  # the lock goes with the session
        self.assertEqual(other.invoke(second.identity, "startUpdate").read_int(), serial)

    def test_file_refusals(self) -> None:
        """Unknown servers, nodes, registries; no Ice.StdOut (more in tests.test_log_files)."""
        session = self.admin_session().identity
        out = OutputStream()
        out.write_string("nope")
        out.write_string("path")
        out.write_int(10)
        self.assertEqual(
            self.client.invoke(session, "openServerLog", NORMAL, out.getvalue()),
            ServerNotExistException("nope"),
        )
        out = OutputStream()
        out.write_string("nope")
        out.write_int(10)
        self.assertEqual(
            self.client.invoke(session, "openNodeStdOut", NORMAL, out.getvalue()),
            NodeNotExistException("nope"),
        )
        self.assertEqual(
            self.client.invoke(session, "openRegistryStdErr", NORMAL, out.getvalue()),
            RegistryNotExistException("nope"),
        )
        out = OutputStream()
        out.write_string("Master")
        out.write_int(10)
        self.assertEqual(
            self.client.invoke(session, "openRegistryStdOut", NORMAL, out.getvalue()),
            FileNotAvailableException("Ice.StdOut configuration property is not set"),
        )

    def test_client_session_without_allocations(self) -> None:
        """What IceGrid 3.7.8 answers with nothing allocatable."""
        result = self.client.invoke(self.registry, "createSession", NORMAL, strings("u", "p"))
        session = result.read_proxy().identity
        ids = self.client.invoke(session, "ice_ids").read_string_seq()
        self.assertEqual(ids, ["::Glacier2::Session", "::Ice::Object", "::IceGrid::Session"])
        self.assertEqual(
            self.client.invoke(session, "allocateObjectById", NORMAL, identity_params("nope")),
            ObjectNotRegisteredException(Identity("nope")),
        )
        self.assertEqual(
            self.client.invoke(session, "allocateObjectByType", NORMAL, strings("::Foo")),
            AllocationException("no allocatable objects with type `::Foo' registered"),
        )
        self.assertEqual(
            self.client.invoke(session, "releaseObject", NORMAL, identity_params("nope")),
            ObjectNotRegisteredException(Identity("nope")),
        )

    def test_client_session_uses_allocations(self) -> None:
        calls: list[Any] = []

        class Allocations:
            def allocate_by_id(self, key: Any, identity: Identity, timeout: int) -> Any:
                from twisted.internet.defer import succeed

                calls.append(("id", key, identity, timeout))
                return succeed(proxy_from_string("obj:tcp -h 127.0.0.1 -p 9"))

            def release_all(self, key: Any) -> None:
                calls.append(("all", key))

        self.service.allocations = Allocations()  # type: ignore[attr-defined]
        result = self.client.invoke(self.registry, "createSession", NORMAL, strings("u", "p"))
        session = result.read_proxy().identity
        proxy = self.client.invoke(
            session, "allocateObjectById", NORMAL, identity_params("obj")
        ).read_proxy()
        self.assertEqual(proxy.identity, Identity("obj"))
        self.client.close()
        self.assertEqual(calls, [("id", session, Identity("obj"), -1), ("all", session)])


class VerifierTests(SynchronousTestCase):
    """Refusals as IceGrid 3.7.8 words them."""

    def create(self, service: RegistryService, operation: str, *args: str) -> Any:
        return Client(self, service).invoke(
            Identity("Registry", "TG"), operation, NORMAL, strings(*args)
        )

    def test_none_configured(self) -> None:
        service = make_registry(self)
        self.assertEqual(
            self.create(service, "createAdminSession", "u", "p"),
            PermissionDeniedException(
                "no admin permissions verifier configured, use the property\n"
                "`IceGrid.Registry.AdminPermissionsVerifier' to configure\n"
                "a permissions verifier."
            ),
        )
        self.assertEqual(
            self.create(service, "createSession", "u", "p"),
            PermissionDeniedException(
                "no permissions verifier configured, use the property\n"
                "`IceGrid.Registry.PermissionsVerifier' to configure\n"
                "a permissions verifier."
            ),
        )
        self.assertEqual(
            self.create(service, "createAdminSessionFromSecureConnection"),
            PermissionDeniedException(
                "no ssl admin permissions verifier configured, use the property\n"
                "`IceGrid.Registry.AdminSSLPermissionsVerifier' to configure\n"
                "a permissions verifier."
            ),
        )

    def test_secure_over_tcp(self) -> None:
        service = make_registry(
            self, **{"IceGrid.Registry.SSLPermissionsVerifier": "TG/NullSSLPermissionsVerifier"}
        )
        self.assertEqual(
            self.create(service, "createSessionFromSecureConnection"),
            PermissionDeniedException("not ssl connection"),
        )

    def test_crypt_passwords(self) -> None:
        from passlib.hash import md5_crypt, sha512_crypt

        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w") as f:
            f.write(f"alice {sha512_crypt.hash('secret')}\nbob {md5_crypt.hash('pw')}\n")
        self.addCleanup(os.unlink, path)
        service = make_registry(self, **{"IceGrid.Registry.AdminCryptPasswords": path})
        self.assertIsInstance(
            self.create(service, "createAdminSession", "alice", "secret"), InputStream
        )
        self.assertIsInstance(self.create(service, "createAdminSession", "bob", "pw"), InputStream)
        self.assertEqual(
            self.create(service, "createAdminSession", "alice", "bad"),
            PermissionDeniedException(""),
        )
        self.assertEqual(
            self.create(service, "createAdminSession", "nobody", "x"), PermissionDeniedException("")
        )

    def test_unreachable_verifier(self) -> None:
        """IceGrid: "internal server error" (the memory reactor never connects: time out)."""
        service = make_registry(
            self,
            **{"IceGrid.Registry.AdminPermissionsVerifier": "V:tcp -h 127.0.0.1 -p 9 -t 1000"},
        )
        client = Client(self, service)
        request = encode_request(
            Request(
                1,
                Identity("Registry", "TG"),
                "",
                "createAdminSession",
                0,
                {},
                params=strings("u", "p"),
            )
        )
        client.protocol.dataReceived(request)
        service.reactor.advance(11)
        reply = decode_reply(client.transport.value()[HEADER_SIZE:])
        self.assertEqual(reply_error(reply), PermissionDeniedException("internal server error"))


class AdminTests(SynchronousTestCase):
    """IceGrid::Admin: objects, adapters, registries, nodes, servers."""

    def setUp(self) -> None:
        self.service = make_registry(
            self, **{"IceGrid.Registry.AdminPermissionsVerifier": "TG/NullPermissionsVerifier"}
        )
        self.client = Client(self, self.service)
        session = self.client.invoke(
            Identity("Registry", "TG"), "createAdminSession", NORMAL, strings("u", "p")
        ).read_proxy()
        self.admin = (
            self.client.invoke(session.identity, "getAdmin", IDEMPOTENT).read_proxy().identity
        )

    def call(self, operation: str, params: bytes = b"", mode: OperationMode = NORMAL) -> Any:
        return self.client.invoke(self.admin, operation, mode, params)

    def read(self, operation: str, params: bytes = b"") -> Any:
        return self.call(operation, params, IDEMPOTENT)

    def test_objects(self) -> None:
        foo = proxy_from_string("foo:tcp -h 127.0.0.1 -p 9")
        self.assertIsInstance(
            self.call("addObjectWithType", proxy_params(foo, "::Foo")), InputStream
        )
        self.assertEqual(
            self.call("addObjectWithType", proxy_params(foo, "::Foo")),
            ObjectExistsException(Identity("foo")),
        )
        self.assertEqual(
            self.call("addObjectWithType", proxy_params(None, "::Foo")),
            DeploymentException("proxy is null"),
        )
        locator = proxy_from_string("TG/Locator:tcp -p 9")
        self.assertEqual(
            self.call("addObjectWithType", proxy_params(locator, "::X")),
            DeploymentException(
                "adding object `TG/Locator' is not allowed:\n"
                "objects with identity category `TG' are managed by IceGrid"
            ),
        )
        info = self.read("getObjectInfo", identity_params("foo"))
        self.assertEqual((info.read_proxy(), info.read_string()), (foo, "::Foo"))
        self.assertEqual(
            self.read("getObjectInfo", identity_params("nope")),
            ObjectNotRegisteredException(Identity("nope")),
        )
        infos = self.read("getObjectInfosByType", strings("::Foo"))
        self.assertEqual(infos.read_size(), 1)
        everything = self.read("getAllObjectInfos", strings(""))
        self.assertGreater(everything.read_size(), 3)
        matching = self.read("getAllObjectInfos", strings("f*"))
        self.assertEqual(matching.read_size(), 1)
        self.assertEqual(
            self.call("updateObject", proxy_params(proxy_from_string("nope:tcp -p 9"))),
            ObjectNotRegisteredException(Identity("nope")),
        )
        moved = proxy_from_string("foo:tcp -h 127.0.0.1 -p 10")
        self.assertIsInstance(self.call("updateObject", proxy_params(moved)), InputStream)
        self.assertEqual(self.service.state.find_object(Identity("foo")).proxy, moved)
        self.assertEqual(
            self.call("removeObject", identity_params("TG/Locator")),
            DeploymentException(
                "removing object `TG/Locator' is not allowed:\n"
                "objects with identity category `TG' are managed by IceGrid"
            ),
        )
        self.assertIsInstance(self.call("removeObject", identity_params("foo")), InputStream)
        self.assertEqual(
            self.call("removeObject", identity_params("foo")),
            ObjectNotRegisteredException(Identity("foo")),
        )

    def test_adapters(self) -> None:
        proxy = Proxy(Identity("dummy"), endpoints=(TcpEndpoint("127.0.0.1", 20001),))
        self.successResultOf(self.service.database.set_adapter_direct_proxy("A", "G", proxy))
        self.assertEqual(self.read("getAllAdapterIds").read_string_seq(), ["A", "G"])
        info = self.read("getAdapterInfo", strings("A"))
        self.assertEqual(info.read_size(), 1)
        self.assertEqual(
            (info.read_string(), info.read_proxy(), info.read_string()), ("A", proxy, "G")
        )
        group = self.read("getAdapterInfo", strings("G"))
        self.assertEqual(group.read_size(), 1)
        self.assertEqual(group.read_string(), "A")
        self.assertEqual(
            self.read("getAdapterInfo", strings("nope")), AdapterNotExistException("nope")
        )
        self.assertEqual(
            self.call("removeAdapter", strings("nope")), AdapterNotExistException("nope")
        )
        self.assertIsInstance(self.call("removeAdapter", strings("A")), InputStream)
        self.assertEqual(self.read("getAllAdapterIds").read_string_seq(), [])

    def test_registries(self) -> None:
        self.assertEqual(self.read("getAllRegistryNames").read_string_seq(), ["Master"])
        info = self.read("getRegistryInfo", strings("Master"))
        self.assertEqual(info.read_string(), "Master")
        self.assertTrue(info.read_string())
        self.assertTrue(self.read("pingRegistry", strings("Master")).read_bool())
        self.assertEqual(
            self.read("pingRegistry", strings("nope")), RegistryNotExistException("nope")
        )
        self.assertEqual(
            self.read("getRegistryInfo", strings("nope")), RegistryNotExistException("nope")
        )

    def test_a_slave_that_is_down_is_unknown(self) -> None:
        """As IceGrid 3.7.8: not listed, not found, until it is up again."""
        down = ReplicaEndpoints(client=(TcpEndpoint("127.0.0.1", 24081),))
        self.service.state.apply([Mutation(REPLICA, "Replica1", down.to_json())])
        self.assertIn("Replica1", self.service.directory.known())
        self.assertEqual(self.read("getAllRegistryNames").read_string_seq(), ["Master"])
        for operation in ("pingRegistry", "getRegistryInfo"):
            self.assertEqual(
                self.read(operation, strings("Replica1")), RegistryNotExistException("Replica1")
            )
        self.service.directory.set_active(["Master", "Replica1"])
        self.assertEqual(
            self.read("getAllRegistryNames").read_string_seq(), ["Master", "Replica1"]
        )
        self.assertTrue(self.read("pingRegistry", strings("Replica1")).read_bool())

    def test_nodes_and_servers_unknown(self) -> None:
        self.assertEqual(self.read("getAllNodeNames").read_string_seq(), [])
        self.assertEqual(self.read("pingNode", strings("nope")), NodeNotExistException("nope"))
        self.assertEqual(self.read("getNodeInfo", strings("nope")), NodeNotExistException("nope"))
        self.assertEqual(self.read("getAllServerIds").read_string_seq(), [])
        for operation in ("getServerState", "getServerPid", "isServerEnabled"):
            self.assertEqual(self.read(operation, strings("nope")), ServerNotExistException("nope"))
        for operation in ("startServer", "stopServer"):
            self.assertEqual(self.call(operation, strings("nope")), ServerNotExistException("nope"))
        self.assertEqual(
            self.call("sendSignal", strings("nope", "SIGTERM")), ServerNotExistException("nope")
        )
        self.assertEqual(
            self.read("getServerAdminCategory").read_string(), "TG-RegistryServerAdminRouter"
        )

    def test_server_on_a_node_without_session(self) -> None:
        """IceGrid 3.7.8: the node `couldn't be reached: the node is not active'."""
        xml = (
            "<icegrid><application name='A'><node name='node9'>"
            "<server id='S9' exe='/bin/sleep' activation='manual'>"
            "<adapter name='X' endpoints='tcp -h 127.0.0.1'/></server>"
            "</node></application></icegrid>"
        )
        self.successResultOf(self.service.database.add_application(xml))
        down = NodeUnreachableException("node9", "the node is not active")
        self.assertEqual(self.read("getAllServerIds").read_string_seq(), ["S9"])
        self.assertEqual(self.read("getAllNodeNames").read_string_seq(), ["node9"])
        self.assertFalse(self.read("pingNode", strings("node9")).read_bool())
        self.assertEqual(self.read("getNodeInfo", strings("node9")), down)
        self.assertEqual(self.read("getServerState", strings("S9")), down)
        self.assertEqual(self.call("startServer", strings("S9")), down)
        self.assertEqual(self.call("stopServer", strings("S9")), down)
        self.assertEqual(
            self.call("removeAdapter", strings("S9.X")),
            DeploymentException(
                "removing adapter `S9.X' is not allowed:\n"
                "the adapter was added with the application descriptor `A'"
            ),
        )
        self.assertEqual(self.read("getAllApplicationNames").read_string_seq(), ["A"])
        self.assertIsInstance(self.call("removeApplication", strings("A")), InputStream)

    def test_unknown_applications_and_servers(self) -> None:
        self.assertEqual(self.read("getAllApplicationNames").read_string_seq(), [])
        self.assertEqual(
            self.read("getApplicationInfo", strings("nope")), ApplicationNotExistException("nope")
        )
        self.assertEqual(
            self.call("removeApplication", strings("nope")), ApplicationNotExistException("nope")
        )
        self.assertIsInstance(self.read("getDefaultApplicationDescriptor"), DeploymentException)
        self.assertEqual(self.read("getServerAdmin", strings("x")), ServerNotExistException("x"))

    def test_read_only_master(self) -> None:
        """A write at a replica that refuses writes: IceGrid's DeploymentException."""
        self.service.role.write_refusal = lambda: "read-only"  # type: ignore[method-assign]
        foo = proxy_from_string("foo:tcp -h 127.0.0.1 -p 9")
        for operation, params in (
            ("addObjectWithType", proxy_params(foo, "::Foo")),
            ("addObject", proxy_params(foo)),
            ("updateObject", proxy_params(foo)),
            ("removeObject", identity_params("foo")),
            ("removeAdapter", strings("A")),
            ("removeApplication", strings("App")),
        ):
            self.assertEqual(
                self.call(operation, params), DeploymentException(READ_ONLY), operation
            )
        self.assertEqual(self.read("getAllRegistryNames").read_string_seq(), ["Master"])


class SlaveTests(SynchronousTestCase):
    def test_client_sessions_are_the_masters(self) -> None:
        service = make_registry(
            self,
            **{
                "IceGrid.Registry.ReplicaName": "Replica1",
                "Ice.Default.Locator": "TG/Locator:tcp -h 127.0.0.1 -p 24099",
                "IceGrid.Registry.PermissionsVerifier": "TG/NullPermissionsVerifier",
                "IceGrid.Registry.AdminPermissionsVerifier": "TG/NullPermissionsVerifier",
            },
        )
        service.client_factory.accepting = True  # as once synced with its master
        client = Client(self, service)
        registry = Identity("Registry-Replica1", "TG")
        self.assertEqual(
            client.invoke(registry, "createSession", NORMAL, strings("u", "p")),
            PermissionDeniedException(
                "client session creation is only allowed with the master registry."
            ),
        )
        session = client.invoke(
            registry, "createAdminSession", NORMAL, strings("u", "p")
        ).read_proxy()
        name = client.invoke(session.identity, "getReplicaName", IDEMPOTENT).read_string()
        self.assertEqual(name, "Replica1")
        admin = client.invoke(session.identity, "getAdmin", IDEMPOTENT).read_proxy()
        foo = proxy_from_string("foo:tcp -h 127.0.0.1 -p 9")
        self.assertEqual(
            client.invoke(admin.identity, "addObjectWithType", NORMAL, proxy_params(foo, "::Foo")),
            DeploymentException(READ_ONLY),
        )


class _FakeAddress:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


class _FakeTransport:
    def getPeer(self) -> _FakeAddress:
        return _FakeAddress("127.0.0.1", 50000)

    def getHost(self) -> _FakeAddress:
        return _FakeAddress("127.0.0.1", 4062)

    def getHandle(self) -> None:
        return None


class _SecureConnection:
    """What the session factory asks of an ssl connection: its client certificate."""

    is_open = True
    monitor = None
    last_activity = 0.0

    def __init__(self, certificate: Any) -> None:
        self.certificate = certificate
        self.transport = _FakeTransport()
        self.closers: list[Any] = []

    def is_secure(self) -> bool:
        return True

    def peer_certificate(self) -> Any:
        return self.certificate

    def on_close(self, callback: Any) -> None:
        self.closers.append(callback)

    def forget_close(self, callback: Any) -> None:
        self.closers.remove(callback)


class SecureSessionTests(SynchronousTestCase):
    def test_admin_session_from_a_client_certificate(self) -> None:
        from OpenSSL import crypto

        from gridreg.certs import make_demo_certs

        certs = self.mktemp()
        make_demo_certs(certs, admins=["alice"], instance="TG")
        with open(os.path.join(certs, "admin-alice.pem"), "rb") as f:
            certificate = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
        service = make_registry(
            self,
            **{"IceGrid.Registry.AdminSSLPermissionsVerifier": "TG/NullSSLPermissionsVerifier"},
        )
        request = Request(
            1, Identity("Registry", "TG"), "", "createAdminSessionFromSecureConnection", 0
        )
        connection = _SecureConnection(certificate)
        body = self.successResultOf(
            service.client_adapter.dispatch(request, None, connection)  # type: ignore[arg-type]
        )
        self.assertEqual(body[0], 0, body)
        [session] = service.ice_sessions.sessions.values()
        self.assertIn("CN=", session.user)
        self.assertEqual(len(connection.closers), 1)
        connection.closers[0]()
        self.assertEqual(service.ice_sessions.sessions, {})

    def test_empty_user_dn(self) -> None:
        service = make_registry(
            self, **{"IceGrid.Registry.SSLPermissionsVerifier": "TG/NullSSLPermissionsVerifier"}
        )
        request = Request(1, Identity("Registry", "TG"), "", "createSessionFromSecureConnection", 0)
        body = service.client_adapter.dispatch(request, None, _SecureConnection(None))
        self.assertIn(b"empty user DN", bytes(body))  # type: ignore[arg-type]
