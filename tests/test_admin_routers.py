"""
IceGrid's admin routers on a memory network: a master and a slave, a fake
node answering L{AdminRequest} itself, and Ice clients whose requests go
into a replica's client endpoint. What is expected is what IceGrid 3.7.8
answered (docs/icegrid-node-facts.md, "Admin routers");
tests/test_admin_router_processes.py runs the real programs.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.admin_facets import AdminObject, UnknownMetricsView, forwarded_request
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import ServerNotExistException
from gridreg.ice.messages import (
    HEADER_SIZE,
    Reply,
    ReplyStatus,
    Request,
    decode_reply,
    encode_request,
    not_exist_body,
    reply_body,
    success_body,
    unknown_body,
    user_exception_body,
)
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.types import (
    ENCODING_1_0,
    ENCODING_1_1,
    Identity,
    OperationMode,
    Proxy,
    TcpEndpoint,
)
from gridreg.node.admin import NodeAdmin
from gridreg.protocol.chunking import BigBytes
from gridreg.protocol.errors import NodeError, NotFoundError
from gridreg.protocol.node_commands import AdminRequest
from gridreg.registry.service import RegistryService
from tests._fake_node import FakeNode, connect
from tests.test_fencing import PORTS
from tests.test_registry_nodes import APP, NodeGrid

NORMAL, IDEMPOTENT = OperationMode.NORMAL, OperationMode.IDEMPOTENT
ADMIN_VERIFIER = {
    "IceGrid.Registry.AdminPermissionsVerifier": "DemoIceGrid/NullPermissionsVerifier"
}
SERVER_ROUTER = "DemoIceGrid-RegistryServerAdminRouter"
NODE_ROUTER = "DemoIceGrid-RegistryNodeAdminRouter"
REPLICA_ROUTER = "DemoIceGrid-RegistryReplicaAdminRouter"


def strings(*values: str) -> bytes:
    out = OutputStream()
    for value in values:
        out.write_string(value)
    return out.getvalue()


def request(
    identity: Identity,
    operation: str,
    facet: str = "",
    params: bytes = b"",
    mode: OperationMode = NORMAL,
    context: Optional[dict[str, str]] = None,
    encoding: Any = ENCODING_1_1,
) -> Request:
    return Request(1, identity, facet, operation, int(mode), context or {}, encoding, params)


# -- the pieces -------------------------------------------------------------------------


class PropertiesAdminTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.admin = AdminObject.with_properties(
            {"IceGrid.Node.Name": "node1", "IceGrid.Node.Data": "/d", "Other": "x"}
        )

    def call(self, operation: str, params: bytes, facet: str = "Properties") -> bytes:
        result = self.admin.dispatch(request(Identity("admin"), operation, facet, params))
        assert isinstance(result, bytes)
        return result

    def payload(self, body: bytes) -> InputStream:
        self.assertEqual(body[0], ReplyStatus.SUCCESS)
        reply = decode_reply(b"\x01\x00\x00\x00" + body)
        assert reply.payload is not None
        return InputStream(reply.payload, ENCODING_1_1)

    def test_get_property_and_prefix(self) -> None:
        self.assertEqual(
            self.payload(self.call("getProperty", strings("Other"))).read_string(), "x"
        )
        self.assertEqual(
            self.payload(self.call("getProperty", strings("BuildId"))).read_string(), ""
        )
        self.assertEqual(
            self.payload(
                self.call("getPropertiesForPrefix", strings("IceGrid."))
            ).read_string_dict(),
            {"IceGrid.Node.Name": "node1", "IceGrid.Node.Data": "/d"},
        )

    def test_set_properties_changes_what_is_read_and_empty_removes(self) -> None:
        out = OutputStream()
        out.write_string_dict({"Other": "", "New": "1"})
        self.assertEqual(
            self.call("setProperties", out.getvalue()), success_body(ENCODING_1_1, b"")
        )
        everything = self.payload(
            self.call("getPropertiesForPrefix", strings(""))
        ).read_string_dict()
        self.assertEqual(
            everything, {"IceGrid.Node.Name": "node1", "IceGrid.Node.Data": "/d", "New": "1"}
        )

    def test_metrics_without_views(self) -> None:
        """IceGrid 3.7.8's registry and node: no view, every view unknown."""
        names = self.payload(self.call("getMetricsViewNames", b"", facet="Metrics"))
        self.assertEqual((names.read_string_seq(), names.read_string_seq()), ([], []))
        self.assertEqual(
            self.call("getMetricsView", strings("View"), facet="Metrics"),
            user_exception_body(ENCODING_1_1, UnknownMetricsView()),
        )

    def test_a_facet_it_lacks_and_an_operation_it_lacks(self) -> None:
        self.assertEqual(
            self.call("getLog", b"", facet="Logger"),
            not_exist_body(ReplyStatus.FACET_NOT_EXIST, Identity("admin"), "Logger", "getLog"),
        )
        self.assertEqual(self.call("nope", b"")[0], ReplyStatus.OPERATION_NOT_EXIST)
        ids = self.payload(self.call("ice_ids", b"")).read_string_seq()
        self.assertEqual(ids, ["::Ice::Object", "::Ice::PropertiesAdmin"])


class _Echo(Servant):
    type_id = "::Test::Echo"

    @operation("echo")
    def echo(self, request: Request, params: InputStream) -> bytes:
        return b"servant"


class _Router:
    def __init__(self) -> None:
        self.routed: list[tuple[Request, Any]] = []
        self.answer: Any = b"\x00routed"

    def route(self, request: Request, connection: Any) -> Any:
        self.routed.append((request, connection))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class CategoryDispatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.adapter = ObjectAdapter("Client")
        self.router = _Router()
        self.adapter.add_category("Routed", self.router)
        self.adapter.add(Identity("own", "Routed"), _Echo())

    def test_every_request_on_the_category_goes_to_the_router_facets_included(self) -> None:
        sent = request(Identity("x", "Routed"), "anything", facet="Properties")
        connection = object()
        self.assertEqual(self.adapter.dispatch(sent, None, connection), b"\x00routed")
        self.assertEqual(self.router.routed, [(sent, connection)])

    def test_a_servant_of_its_own_identity_wins(self) -> None:
        body = self.adapter.dispatch(request(Identity("own", "Routed"), "echo"))
        self.assertEqual(body, success_body(ENCODING_1_1, b"servant"))
        self.assertEqual(self.router.routed, [])

    def test_other_categories_are_not_routed(self) -> None:
        body = self.adapter.dispatch(request(Identity("x", "Other"), "anything"))
        self.assertEqual(body[0], ReplyStatus.OBJECT_NOT_EXIST)
        self.adapter.remove_category("Routed")
        body = self.adapter.dispatch(request(Identity("x", "Routed"), "anything"))
        self.assertEqual(body[0], ReplyStatus.OBJECT_NOT_EXIST)

    def test_a_router_failure_is_answered_as_a_servants(self) -> None:
        self.router.answer = ServerNotExistException("x")
        body = self.adapter.dispatch(request(Identity("x", "Routed"), "anything"))
        self.assertEqual(body, user_exception_body(ENCODING_1_1, ServerNotExistException("x")))
        self.router.answer = fail(RuntimeError("boom"))
        failed = self.adapter.dispatch(request(Identity("x", "Routed"), "anything"))
        self.assertIsInstance(failed, Deferred)
        self.assertEqual(self.successResultOf(failed)[0], ReplyStatus.UNKNOWN_EXCEPTION)
        self.flushLoggedErrors(RuntimeError)


class WireTests(SynchronousTestCase):
    def test_big_bytes_cross_amp_in_parts(self) -> None:
        value = bytes(range(256)) * 1000  # 256,000 bytes: five AMP values
        box = AdminRequest.makeArguments(
            {
                "server": "S",
                "facet": "F",
                "operation": "op",
                "mode": 2,
                "context": "{}",
                "encoding": "1.1",
                "params": value,
            },
            None,
        )
        self.assertTrue(all(len(v) < 65536 for v in box.values()))
        self.assertEqual(AdminRequest.parseArguments(box, None)["params"], value)
        with self.assertRaises(ValueError):
            BigBytes(max_size=10).toBox(b"v", amp.AmpBox(), {"v": b"x" * 11}, None)

    def test_reply_bodies_come_back_as_they_were(self) -> None:
        bodies = [
            success_body(ENCODING_1_1, b"\x01\x02"),
            success_body(ENCODING_1_0, b""),
            user_exception_body(ENCODING_1_1, ServerNotExistException("S")),
            not_exist_body(ReplyStatus.FACET_NOT_EXIST, Identity("a", "b"), "F", "op"),
            unknown_body(ReplyStatus.UNKNOWN_LOCAL_EXCEPTION, "why"),
        ]
        for body in bodies:
            self.assertEqual(reply_body(decode_reply(b"\x07\x00\x00\x00" + body)), body)


# -- the node's end ---------------------------------------------------------------------


class _Servers:
    def __init__(self) -> None:
        self.proxies: dict[str, Optional[Proxy]] = {}

    def admin_proxy(self, server_id: str) -> Proxy:
        if server_id not in self.proxies:
            raise NotFoundError(f"server `{server_id}' is not deployed on node `n'")
        proxy = self.proxies[server_id]
        if proxy is None:
            raise NodeError(f"server `{server_id}' has no admin object: it is not running")
        return proxy


class NodeAdminTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.servers = _Servers()
        self.invoked: list[tuple[Any, ...]] = []
        self.reply: Deferred[Reply] = succeed(
            Reply(0, ReplyStatus.USER_EXCEPTION, ENCODING_1_1, b"\x01user")
        )
        self.admin = NodeAdmin(
            object(), {"IceGrid.Node.Name": "n"}, self.servers, invoke=self.invoke
        )

    def invoke(self, reactor: Any, endpoints: Any, proxy: Proxy, *args: Any, **kw: Any) -> Any:
        self.invoked.append((endpoints, proxy, args, kw))
        return self.reply

    def test_the_nodes_own_properties(self) -> None:
        body = self.successResultOf(
            self.admin.request(
                "", "Properties", "getProperty", 0, {}, "1.1", strings("IceGrid.Node.Name")
            )
        )
        self.assertEqual(body, success_body(ENCODING_1_1, strings("n")))
        self.assertEqual(self.invoked, [])

    def test_a_server_request_goes_to_its_admin_object_unchanged(self) -> None:
        process = Proxy(
            Identity("admin", "UUID"),
            facet="Process",
            endpoints=(TcpEndpoint("localhost", 4444),),
        )
        self.servers.proxies["S"] = process
        body = self.successResultOf(
            self.admin.request("S", "Metrics", "getMetricsView", 2, {"k": "v"}, "1.0", b"\x03p")
        )
        self.assertEqual(body, b"\x01" + b"\x0b\x00\x00\x00\x01\x01" + b"\x01user")
        [(endpoints, proxy, args, kw)] = self.invoked
        self.assertEqual(endpoints, (TcpEndpoint("localhost", 4444),))
        self.assertEqual((proxy.identity, proxy.facet), (Identity("admin", "UUID"), "Metrics"))
        self.assertEqual(args[:3], ("getMetricsView", 2, b"\x03p"))
        self.assertEqual(kw, {"encoding": ENCODING_1_0, "context": {"k": "v"}})

    def test_unknown_stopped_and_unreachable_servers(self) -> None:
        self.failureResultOf(
            self.admin.request("nope", "Properties", "getProperty", 0, {}, "1.1", b""),
            NotFoundError,
        )
        self.servers.proxies["S"] = None
        self.failureResultOf(
            self.admin.request("S", "Properties", "getProperty", 0, {}, "1.1", b""), NodeError
        )
        self.servers.proxies["S"] = Proxy(
            Identity("admin", "U"), endpoints=(TcpEndpoint("localhost", 1),)
        )
        self.reply = fail(ConnectionRefusedError())
        failure = self.failureResultOf(
            self.admin.request("S", "Properties", "getProperty", 0, {}, "1.1", b""), NodeError
        )
        self.assertIn("the admin object of server `S'", failure.getErrorMessage())


# -- the routers, master and slave ------------------------------------------------------


class RouterNode(FakeNode):
    """A fake node answering AdminRequest with C{replies[server]} (bytes or a failure)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.admin_requests: list[dict[str, Any]] = []
        self.replies: dict[str, Any] = {}

    @AdminRequest.responder
    def admin_request(self, server: str, **fields: Any) -> Any:
        self.admin_requests.append({"server": server, **fields})
        answer = self.replies.get(server, b"\x00\x06\x00\x00\x00\x01\x01")
        if isinstance(answer, Exception):
            return fail(answer)
        return {"reply": answer}


class IceClient:
    """One Ice connection to a replica's client endpoint; replies read once the network ran."""

    def __init__(self, testcase: Any, service: RegistryService) -> None:
        self.testcase = testcase
        self.protocol = service.client_factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.transport.clear()

    def send(self, sent: Request) -> bytes:
        """The reply body (status byte onward)."""
        self.protocol.dataReceived(encode_request(sent))
        self.testcase.grid.run_until(lambda: len(self.transport.value()) > HEADER_SIZE)
        data = self.transport.value()
        self.transport.clear()
        return data[HEADER_SIZE + 4 :]

    def admin_session(self, registry: str = "Registry") -> Identity:
        body = self.send(
            request(
                Identity(registry, "DemoIceGrid"), "createAdminSession", params=strings("u", "p")
            )
        )
        reply = decode_reply(b"\x01\x00\x00\x00" + body)
        assert reply.payload is not None, reply
        proxy = InputStream(reply.payload, ENCODING_1_1).read_proxy()
        assert proxy is not None
        return proxy.identity


class RouterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = NodeGrid(self)
        self.master = self.grid.start("Master", **ADMIN_VERIFIER)
        self.grid.run_until(lambda: self.master.role.opened)
        self.grid.wait(self.master.database.add_application(APP))
        self.node = RouterNode("node1")
        connect(self.grid.network, PORTS["Master"][2], self.node)
        self.grid.wait(self.node.register())
        self.client = IceClient(self, self.master)
        self.session = self.client.admin_session()

    def test_a_server_request_reaches_its_node_unchanged_and_its_reply_comes_back(self) -> None:
        reply = user_exception_body(ENCODING_1_1, ServerNotExistException("inner"))
        self.node.replies["S1"] = reply
        sent = request(
            Identity("S1", SERVER_ROUTER),
            "getMetricsView",
            facet="Metrics",
            params=b"\x04view",
            mode=IDEMPOTENT,
            context={"c": "1"},
        )
        self.assertEqual(self.client.send(sent), reply)
        self.assertEqual(
            self.node.admin_requests,
            [
                {
                    "server": "S1",
                    "facet": "Metrics",
                    "operation": "getMetricsView",
                    "mode": 2,
                    "context": json.dumps({"c": "1"}),
                    "encoding": "1.1",
                    "params": b"\x04view",
                }
            ],
        )

    def test_what_cannot_be_routed_is_object_not_exist_naming_the_router(self) -> None:
        """IceGrid 3.7.8: the same ObjectNotExistException for every such case."""
        self.node.replies["S1"] = not_exist_body(
            ReplyStatus.OPERATION_NOT_EXIST, Identity("admin", "UUID"), "Properties", "nope"
        )
        self.node.replies["M1"] = NodeError("server `M1' has no admin object: it is not running")
        # the server refused the operation mode
        self.node.replies["G1"] = unknown_body(
            ReplyStatus.UNKNOWN_LOCAL_EXCEPTION, "::Ice::MarshalException: unexpected mode"
        )
        cases = (("S1", "nope"), ("M1", "getProperty"), ("G1", "getProperty"), ("Unknown", "x"))
        for server, name in cases:
            sent = request(Identity(server, SERVER_ROUTER), name, facet="Properties")
            self.assertEqual(
                self.client.send(sent),
                not_exist_body(
                    ReplyStatus.OBJECT_NOT_EXIST,
                    Identity(server, SERVER_ROUTER),
                    "Properties",
                    name,
                ),
            )
        # S3's node has no session: nothing is sent anywhere
        sent = request(Identity("S3", SERVER_ROUTER), "getProperty", facet="Properties")
        self.assertEqual(self.client.send(sent)[0], ReplyStatus.OBJECT_NOT_EXIST)
        self.assertEqual([r["server"] for r in self.node.admin_requests], ["S1", "M1", "G1"])

    def test_only_on_a_connection_holding_an_admin_session(self) -> None:
        other = IceClient(self, self.master)
        sent = request(Identity("S1", SERVER_ROUTER), "getProperty", facet="Properties")
        self.assertEqual(other.send(sent)[0], ReplyStatus.OBJECT_NOT_EXIST)
        self.assertEqual(self.client.send(sent)[0], ReplyStatus.SUCCESS)
        self.client.send(request(self.session, "destroy"))
        self.assertEqual(self.client.send(sent)[0], ReplyStatus.OBJECT_NOT_EXIST)
        self.assertEqual(len(self.node.admin_requests), 1)

    def test_a_node_request_is_for_the_node_itself(self) -> None:
        sent = request(
            Identity("node1", NODE_ROUTER), "getProperty", "Properties", strings("BuildId")
        )
        self.assertEqual(self.client.send(sent), b"\x00\x06\x00\x00\x00\x01\x01")
        self.assertEqual(self.node.admin_requests[0]["server"], "")
        sent = request(
            Identity("node2", NODE_ROUTER), "getProperty", "Properties", strings("BuildId")
        )
        self.assertEqual(self.client.send(sent)[0], ReplyStatus.OBJECT_NOT_EXIST)

    def properties_of(self, client: IceClient, replica: str, prefix: str) -> dict[str, str]:
        sent = request(
            Identity(replica, REPLICA_ROUTER),
            "getPropertiesForPrefix",
            "Properties",
            strings(prefix),
        )
        body = client.send(sent)
        reply = decode_reply(b"\x01\x00\x00\x00" + body)
        self.assertEqual(reply.status, ReplyStatus.SUCCESS, reply)
        assert reply.payload is not None
        return InputStream(reply.payload, ENCODING_1_1).read_string_dict()

    def test_every_replicas_properties_from_every_replica(self) -> None:
        slave = self.grid.start("Replica1", **ADMIN_VERIFIER)
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        at_slave = IceClient(self, slave)
        at_slave.admin_session("Registry-Replica1")
        key = "IceGrid.Registry.ReplicaName"
        for client in (self.client, at_slave):
            self.assertEqual(self.properties_of(client, "Master", key), {key: "Master"})
            self.assertEqual(self.properties_of(client, "Replica1", key), {key: "Replica1"})
        # a facet the registry's admin object lacks, and an unknown replica
        sent = request(Identity("Master", REPLICA_ROUTER), "getLog", "Logger")
        self.assertEqual(
            at_slave.send(sent),
            not_exist_body(
                ReplyStatus.OBJECT_NOT_EXIST, Identity("Master", REPLICA_ROUTER), "Logger", "getLog"
            ),
        )
        # a user exception relayed by the slave comes back as it came
        sent = request(
            Identity("Master", REPLICA_ROUTER), "getMetricsView", "Metrics", strings("V")
        )
        self.assertEqual(
            at_slave.send(sent), user_exception_body(ENCODING_1_1, UnknownMetricsView())
        )
        sent = request(Identity("Nope", REPLICA_ROUTER), "getProperty", "Properties", strings("x"))
        self.assertEqual(self.client.send(sent)[0], ReplyStatus.OBJECT_NOT_EXIST)

    def test_set_properties_on_a_replica_is_accepted(self) -> None:
        """As IceGrid 3.7.8's registry: accepted, and read back."""
        out = OutputStream()
        out.write_string_dict({"Custom.X": "1"})
        sent = request(
            Identity("Master", REPLICA_ROUTER), "setProperties", "Properties", out.getvalue()
        )
        self.assertEqual(self.client.send(sent), success_body(ENCODING_1_1, b""))
        self.assertEqual(self.properties_of(self.client, "Master", "Custom."), {"Custom.X": "1"})


class ForwardedRequestTests(SynchronousTestCase):
    def test_fields_as_relayed(self) -> None:
        sent = forwarded_request("F", "op", 2, {"a": "b"}, "1.0", b"p")
        self.assertEqual(
            (sent.facet, sent.operation, sent.mode, sent.context, sent.encoding, sent.params),
            ("F", "op", 2, {"a": "b"}, ENCODING_1_0, b"p"),
        )


class Glacier2RouterTests(SynchronousTestCase):
    """
    IceGrid 3.7.8 (checked): a Glacier2 admin session's router proxies are
    on the admin session manager's endpoints, and answer every caller there.
    """

    def test_routed_admin_sessions_get_the_routers_on_their_managers_endpoints(self) -> None:
        from tests.test_glacier2_managers import ASM, Router, make_registry
        from tests._helpers import MemoryNetwork

        network = MemoryNetwork()
        service = make_registry(
            self, network, **{"IceGrid.Registry.AdminSessionManager.Endpoints": ASM}
        )
        router = Router(self, network, service.glacier2_factories["admin_session_manager"])
        session = router.create("AdminSessionManager", "admin")
        admin = router.invoke(session.identity, "getAdmin", IDEMPOTENT).read_proxy()
        replica = router.invoke(
            admin.identity, "getRegistryAdmin", IDEMPOTENT, strings("Master")
        ).read_proxy()
        self.assertEqual(replica.identity, Identity("Master", "TG-RegistryReplicaAdminRouter"))
        self.assertEqual(replica.endpoints, (TcpEndpoint("127.0.0.1", 24076),))
        # another connection of the manager adapter, with no session of its own
        other = Router(self, network, service.glacier2_factories["admin_session_manager"])
        params = strings("IceGrid.InstanceName")
        other.protocol.dataReceived(
            encode_request(request(replica.identity, "getProperty", "Properties", params))
        )
        reply = decode_reply(other.transport.value()[HEADER_SIZE:])
        self.assertEqual(reply.status, ReplyStatus.SUCCESS)
        assert reply.payload is not None
        self.assertEqual(InputStream(reply.payload, ENCODING_1_1).read_string(), "TG")
