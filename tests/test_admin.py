# -*- test-case-name: tests.test_admin -*-
"""
The registry's admin responders, over AMP, against real registries in
memory; and admin sessions opened the way gridadmin opens them, through the
locator, on a memory network.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from gridreg.admin.session import (
    AdminConfigError,
    AdminSession,
    AdminUnreachableError,
    open_admin_session,
)
from gridreg.certs import make_demo_certs
from gridreg.config.properties import Properties
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.protocol.commands import (
    CHUNK_SIZE,
    PROTOCOL_VERSION,
    AdminAdapterRemove,
    AdminApplicationAdd,
    AdminDescribe,
    AdminList,
    AdminObjectAdd,
    AdminObjectRemove,
    AdminPing,
    Hello,
)
from gridreg.protocol.errors import (
    ApplicationError,
    NotFoundError,
    NotMasterError,
    RegistryUserError,
    TransferError,
)
from gridreg.protocol.chunking import BeginTransfer, TransferChunk
from gridreg.registry.admin import MAX_UPLOAD_BYTES, PAGE_BUDGET, AdminResponder
from gridreg.registry.config import RegistryConfig
from gridreg.registry.internal import InternalProtocol
from gridreg.registry.security import InternalSecurity
from gridreg.registry.service import RegistryService
from gridreg.store.memory import MemoryStore
from gridreg.tls import ADMIN, REGISTRY, TLSConfig, server_tls_options
from tests._helpers import MemoryNetwork

HOST = "127.0.0.1"
MASTER_PORTS = (4061, 4062, 4063)

DEMO_APP = os.path.join(os.path.dirname(__file__), os.pardir, "etc", "demo-app.xml")
TINY_APP = '<icegrid><application name="Tiny"></application></icegrid>'


def registry_properties(name: str, ports: tuple[int, int, int]) -> Properties:
    client, server, internal = ports
    properties = Properties()
    for key, value in {
        "IceGrid.InstanceName": "DemoIceGrid",
        "IceGrid.Registry.ReplicaName": name,
        "IceGrid.Registry.Client.Endpoints": f"tcp -h {HOST} -p {client}",
        "IceGrid.Registry.Server.Endpoints": f"tcp -h {HOST} -p {server}",
        "IceGrid.Registry.Internal.Endpoints": f"tcp -h {HOST} -p {internal}",
        "IceGrid.Registry.DynamicRegistration": "1",
        "Ice.Default.Locator": f"DemoIceGrid/Locator:tcp -h {HOST} -p {MASTER_PORTS[0]}",
    }.items():
        properties.set(key, value)
    return properties


def start_registry(
    testcase: SynchronousTestCase,
    network: MemoryNetwork,
    name: str,
    ports: tuple[int, int, int],
    tls: Optional[TLSConfig] = None,
) -> RegistryService:
    config = RegistryConfig.from_properties(registry_properties(name, ports))
    registry = RegistryService(
        network.reactor, config, MemoryStore(), security=InternalSecurity(tls)
    )
    registry.privilegedStartService()
    registry.startService()
    testcase.successResultOf(registry.when_ready())
    internal: Factory = registry.internal_factory
    if tls is not None:
        internal = TLSMemoryBIOFactory(
            server_tls_options(tls), False, internal, clock=network.reactor
        )
    for port, factory in zip(ports, (registry.client_factory, registry.server_factory, internal)):
        network.listen(HOST, port, factory)
    testcase.addCleanup(registry.stopService)
    return registry


def register(registry: RegistryService, adapter: str, group: str, port: int) -> None:
    proxy = Proxy(Identity("dummy"), endpoints=(TcpEndpoint(HOST, port),))
    d = registry.database.set_adapter_direct_proxy(adapter, group, proxy)
    assert d.called


class AdminConnection:
    """An admin session's AMP client, joined to a replica's admin responder in memory."""

    def __init__(
        self, testcase: SynchronousTestCase, registry: RegistryService, role: str = "admin"
    ) -> None:
        self.testcase = testcase

        def server() -> InternalProtocol:
            protocol = InternalProtocol(registry, None, None)
            protocol.admin_locator = AdminResponder(registry, protocol)
            return protocol

        self.clock = Clock()
        client: amp.AMP
        client, self.server, self.pump = connectedServerAndClient(server, amp.AMP, clock=self.clock)
        self.client = client
        self.session = AdminSession(client, self.clock, 5.0, "Master", "DemoIceGrid", True)
        self.result(Hello, version=PROTOCOL_VERSION, role=role, name="alice")

    def call(self, command: type[amp.Command], **arguments: Any) -> Deferred[Any]:
        """Send a command; the returned Deferred has its outcome, errors included."""
        captured: Deferred[Any] = Deferred()
        self.client.callRemote(command, **arguments).chainDeferred(captured)
        self.pump.flush()
        return captured

    def result(self, command: type[amp.Command], **arguments: Any) -> Any:
        return self.testcase.successResultOf(self.call(command, **arguments))

    def refused(self, error: type[Exception], command: type[amp.Command], **arguments: Any) -> str:
        failure = self.testcase.failureResultOf(self.call(command, **arguments), error)
        return failure.getErrorMessage()

    def run(self, coroutine: Any) -> Deferred[Any]:
        """Run an L{AdminSession} coroutine to its end."""
        d = Deferred.fromCoroutine(coroutine)
        self.pump.flush()
        return d


class ResponderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork()
        self.registry = start_registry(self, self.network, "Master", MASTER_PORTS)
        self.admin = AdminConnection(self, self.registry)

    def add_objects(self, count: int, prefix: str = "object") -> None:
        for i in range(count):
            proxy = proxy_from_string(f"{prefix}-{i:05d} -t:tcp -h {HOST} -p {10000 + i}")
            self.successResultOf(self.registry.database.add_object(proxy, "::Demo::Hello"))

    # -- sessions -----------------------------------------------------------

    def test_admin_commands_need_an_admin_hello(self) -> None:
        """A connection that said hello as a node cannot use the admin commands."""
        node = AdminConnection(self, self.registry, role="node")
        self.failureResultOf(node.call(AdminPing, name="Master"), amp.UnhandledCommand)

    def test_responders_found_once_per_name_and_role(self) -> None:
        """
        A command's responder is found once per session and role and kept:
        every later box of that name gets the same one, which still checks
        its arguments; what a role may not send is not kept, so the role a
        later hello gives decides again.
        """
        protocol = self.admin.server
        ping = AdminPing.commandName
        first = protocol.locateResponder(ping)
        self.assertIs(protocol.locateResponder(ping), first)
        self.assertEqual(self.admin.result(AdminPing, name="Master"), {"alive": True})
        self.assertEqual(self.admin.result(AdminPing, name="Master"), {"alive": True})
        node = AdminConnection(self, self.registry, role="node")
        self.assertIsNone(node.server.locateResponder(ping))
        self.assertIsNone(node.server.locateResponder(ping))
        node.result(Hello, version=PROTOCOL_VERSION, role="admin", name="alice")
        self.assertEqual(node.result(AdminPing, name="Master"), {"alive": True})
        node.result(Hello, version=PROTOCOL_VERSION, role="node", name="alice")
        self.failureResultOf(node.call(AdminPing, name="Master"), amp.UnhandledCommand)

    def test_kept_responder_still_refuses_bad_arguments(self) -> None:
        """A kept responder refuses a box whose arguments do not decode, as the first did."""
        protocol = self.admin.server
        self.admin.result(AdminPing, name="Master")
        responder = protocol.locateResponder(AdminPing.commandName)
        with self.assertRaises(amp.RemoteAmpError) as caught:
            responder(amp.AmpBox({b"_ask": b"9", b"_command": AdminPing.commandName}))
        self.assertEqual(caught.exception.errorCode, b"BAD_ARGUMENTS")

    def test_unknown_names_are_not_kept(self) -> None:
        """Names without a responder (a fuzzer's, say) leave nothing behind."""
        protocol = self.admin.server
        kept = len(protocol._responders)
        for i in range(100):
            self.assertIsNone(protocol.locateResponder(b"NoSuchCommand%d" % i))
        self.assertIsNone(protocol.locateResponder(b"\xff"))
        self.assertEqual(len(protocol._responders), kept)

    # -- listing ------------------------------------------------------------

    def test_list_pages_through_everything_within_the_byte_budget(self) -> None:
        """
        3000 objects come in pages that each stay under the byte budget,
        sorted, each object exactly once, the registry's own included.
        """
        self.add_objects(3000)
        seen: list[str] = []
        cursor, pages = "", 0
        while True:
            page = self.admin.result(
                AdminList, what="object", pattern="", cursor=cursor, limit=1000
            )
            self.assertLessEqual(len(page["items"].encode("utf-8")), PAGE_BUDGET)
            items = json.loads(page["items"])
            self.assertTrue(items)
            seen.extend(item["identity"] for item in items)
            pages += 1
            cursor = page["cursor"]
            if not cursor:
                break
            self.assertEqual(cursor, items[-1]["identity"])
        expected = sorted(
            [f"object-{i:05d}" for i in range(3000)]
            + [
                "DemoIceGrid/Locator",
                "DemoIceGrid/LocatorRegistry",
                "DemoIceGrid/Query",
                "DemoIceGrid/Registry",
                "DemoIceGrid/InternalRegistry-Master",
            ]
        )
        self.assertEqual(seen, expected)
        self.assertGreater(pages, 3)  # the budget, not the limit, cut the pages

    def test_list_limit(self) -> None:
        self.add_objects(25)
        page = self.admin.result(AdminList, what="object", pattern="object-*", cursor="", limit=10)
        items = json.loads(page["items"])
        self.assertEqual([i["identity"] for i in items], [f"object-{i:05d}" for i in range(10)])
        self.assertEqual(page["cursor"], "object-00009")
        self.assertEqual(items[0]["type"], "::Demo::Hello")
        self.assertEqual(
            items[0]["proxy"], f"object-00000 -t -e 1.1:tcp -h {HOST} -p 10000 -t 60000"
        )

    def test_session_list_gathers_pages_matching_a_glob(self) -> None:
        self.add_objects(3000)
        self.add_objects(5, prefix="other")
        items = self.successResultOf(self.admin.run(self.admin.session.list("object", "object-*")))
        self.assertEqual(len(items), 3000)
        items = self.successResultOf(self.admin.run(self.admin.session.list("object", "oth*")))
        self.assertEqual([i["identity"] for i in items], [f"other-{i:05d}" for i in range(5)])

    def test_unexpected_errors_keep_the_connection(self) -> None:
        """A bug answers as a refusal, logged, instead of dropping the session."""
        self.patch(self.registry, "replica_info", lambda: 1 / 0)
        message = self.admin.refused(RegistryUserError, AdminPing, name="Master")
        self.assertIn("ZeroDivisionError", message)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(
            self.admin.result(AdminDescribe, what="object", key="DemoIceGrid/Query", offset=0)[
                "more"
            ],
            False,
        )

    def test_list_unknown_kind(self) -> None:
        message = self.admin.refused(
            RegistryUserError, AdminList, what="patch", pattern="", cursor="", limit=10
        )
        self.assertIn("patch", message)

    def test_adapters_and_replica_groups(self) -> None:
        register(self.registry, "Solo", "", 20001)
        register(self.registry, "Rep1", "Group", 20002)
        register(self.registry, "Rep2", "Group", 20003)
        items = self.successResultOf(self.admin.run(self.admin.session.list("adapter")))
        self.assertEqual(
            [(i["id"], i["kind"], i["replica_group"]) for i in items],
            [
                ("Group", "replica-group", ""),
                ("Rep1", "adapter", "Group"),
                ("Rep2", "adapter", "Group"),
                ("Solo", "adapter", ""),
            ],
        )
        self.assertEqual(items[3]["endpoints"], f"tcp -h {HOST} -p 20001 -t 60000")
        group = self.successResultOf(
            self.admin.run(self.admin.session.describe("adapter", "Group"))
        )
        self.assertEqual([m["id"] for m in group["members"]], ["Rep1", "Rep2"])
        self.assertIn("-p 20003", group["endpoints"])

    def test_registry_list_describe_ping(self) -> None:
        items = self.successResultOf(self.admin.run(self.admin.session.list("registry")))
        self.assertEqual(
            [(i["name"], i["role"], i["alive"]) for i in items], [("Master", "master", True)]
        )
        described = self.successResultOf(
            self.admin.run(self.admin.session.describe("registry", "Master"))
        )
        self.assertEqual(described["internal"], f"tcp -h {HOST} -p 4063 -t 60000")
        self.assertEqual(self.admin.result(AdminPing, name="Master"), {"alive": True})
        self.admin.refused(NotFoundError, AdminPing, name="Nobody")

    # -- objects --------------------------------------------------------------

    def test_object_add_describe_remove(self) -> None:
        before = self.registry.store.serial
        answer = self.admin.result(AdminObjectAdd, proxy="hello@HelloAdapter", type="::Demo::Hello")
        self.assertEqual(answer["serial"], before + 1)
        self.assertEqual(self.registry.state.find_object(Identity("hello")).type, "::Demo::Hello")
        described = self.successResultOf(
            self.admin.run(self.admin.session.describe("object", "hello"))
        )
        self.assertEqual(
            described,
            {
                "identity": "hello",
                "proxy": "hello -t -e 1.1 @ HelloAdapter",
                "type": "::Demo::Hello",
            },
        )
        answer = self.admin.result(AdminObjectRemove, identity="hello")
        self.assertEqual(answer["serial"], before + 2)
        self.assertIsNone(self.registry.state.find_object(Identity("hello")))

    def test_object_errors(self) -> None:
        self.admin.result(AdminObjectAdd, proxy="hello@HelloAdapter", type="")
        message = self.admin.refused(
            RegistryUserError, AdminObjectAdd, proxy="hello:tcp -p 1", type=""
        )
        self.assertEqual(message, "object `hello' already exists")
        message = self.admin.refused(RegistryUserError, AdminObjectAdd, proxy="bad -x:tcp", type="")
        self.assertIn("`bad -x:tcp'", message)
        message = self.admin.refused(NotFoundError, AdminObjectRemove, identity="cat/missing")
        self.assertEqual(message, "object `cat/missing' is not registered")
        self.admin.refused(RegistryUserError, AdminObjectRemove, identity="a/b/c")
        message = self.admin.refused(
            RegistryUserError, AdminObjectRemove, identity="DemoIceGrid/Locator"
        )
        self.assertIn("registry's own", message)
        self.admin.refused(NotFoundError, AdminDescribe, what="object", key="missing", offset=0)
        self.admin.refused(
            RegistryUserError, AdminObjectAdd, proxy="DemoIceGrid/Query:tcp -p 1", type=""
        )

    # -- adapters -------------------------------------------------------------

    def test_adapter_remove(self) -> None:
        register(self.registry, "Solo", "", 20001)
        self.admin.result(AdminAdapterRemove, adapter_id="Solo")
        self.assertNotIn("Solo", self.registry.state.adapters)
        message = self.admin.refused(NotFoundError, AdminAdapterRemove, adapter_id="Solo")
        self.assertEqual(message, "adapter `Solo' not found")

    def test_removing_a_replica_group_ungroups_its_members(self) -> None:
        register(self.registry, "Rep1", "Group", 20002)
        register(self.registry, "Rep2", "Group", 20003)
        self.admin.result(AdminAdapterRemove, adapter_id="Group")
        state = self.registry.state
        self.assertNotIn("Group", state.replica_groups)
        self.assertEqual([state.adapters[a].replica_group_id for a in ("Rep1", "Rep2")], ["", ""])

    def test_adapter_of_an_application_is_not_removed(self) -> None:
        """Adapters an application deploys go away with the application, not one by one."""
        with open(DEMO_APP, encoding="utf-8") as f:
            xml = f.read()
        self.successResultOf(
            self.admin.run(self.admin.session.upload_and_add_application(xml, False))
        )
        for adapter_id in ("HelloServer-1.Hello", "HelloGroup"):
            message = self.admin.refused(
                RegistryUserError, AdminAdapterRemove, adapter_id=adapter_id
            )
            self.assertIn("application `DemoApp'", message)

    # -- slaves -----------------------------------------------------------------

    def test_writes_refused_on_a_slave_reads_work(self) -> None:
        register(self.registry, "Solo", "", 20001)
        expected = "this replica `Replica1' is a read-only slave; writes go to the master"
        self.patch(self.registry.role, "write_refusal", lambda: expected)
        for command, arguments in (
            (AdminObjectAdd, {"proxy": "x@A", "type": ""}),
            (AdminObjectAdd, {"proxy": "x@", "type": ""}),  # the refusal before the parse
            (AdminObjectRemove, {"identity": "x"}),
            (AdminAdapterRemove, {"adapter_id": "Solo"}),
            (BeginTransfer, {"transfer": "t", "size": 10, "sha256": ""}),
            (AdminApplicationAdd, {"transfer": "t", "update": False}),
        ):
            self.assertEqual(self.admin.refused(NotMasterError, command, **arguments), expected)
        self.assertIn("Solo", self.registry.state.adapters)
        self.assertEqual(
            len(self.successResultOf(self.admin.run(self.admin.session.list("adapter")))), 1
        )

    # -- uploads and applications -------------------------------------------------

    def test_upload_chunks_must_come_in_order(self) -> None:
        message = self.admin.refused(TransferError, TransferChunk, transfer="t", seq=0, data=b"x")
        self.assertIn("unknown transfer", message)
        data = b"<icegrid><application name='A'/></icegrid>"
        digest = hashlib.sha256(data).hexdigest()
        self.admin.result(BeginTransfer, transfer="t", size=len(data), sha256=digest)
        self.admin.result(TransferChunk, transfer="t", seq=0, data=data[:9])
        message = self.admin.refused(TransferError, TransferChunk, transfer="t", seq=2, data=b"x")
        self.assertIn("expected 1", message)
        # the transfer was abandoned: deploying it now fails, and so does continuing it
        self.admin.refused(TransferError, AdminApplicationAdd, transfer="t", update=False)
        self.admin.refused(TransferError, TransferChunk, transfer="t", seq=1, data=data[9:])
        self.assertEqual(self.registry.state.applications, {})

    def test_an_upload_must_match_its_size_and_hash(self) -> None:
        data = b"<icegrid><application name='A'/></icegrid>"
        self.admin.result(BeginTransfer, transfer="t", size=len(data), sha256="0" * 64)
        self.admin.result(TransferChunk, transfer="t", seq=0, data=data)
        message = self.admin.refused(TransferError, AdminApplicationAdd, transfer="t", update=False)
        self.assertIn("SHA-256", message)
        digest = hashlib.sha256(data).hexdigest()
        self.admin.result(BeginTransfer, transfer="u", size=len(data) + 1, sha256=digest)
        self.admin.result(TransferChunk, transfer="u", seq=0, data=data)
        message = self.admin.refused(TransferError, AdminApplicationAdd, transfer="u", update=False)
        self.assertIn("incomplete", message)
        self.assertEqual(self.registry.state.applications, {})

    def test_uploads_are_bounded(self) -> None:
        message = self.admin.refused(
            TransferError, BeginTransfer, transfer="big", size=MAX_UPLOAD_BYTES + 1, sha256=""
        )
        self.assertIn(f"exceeds the {MAX_UPLOAD_BYTES} bytes", message)
        self.admin.result(BeginTransfer, transfer="most", size=MAX_UPLOAD_BYTES - 10, sha256="")
        self.admin.refused(TransferError, BeginTransfer, transfer="more", size=11, sha256="")
        # an abandoned upload frees its space for the next one
        self.admin.refused(TransferError, TransferChunk, transfer="most", seq=3, data=b"x")
        self.admin.result(BeginTransfer, transfer="next", size=MAX_UPLOAD_BYTES, sha256="")

    def test_application_add_describe_remove(self) -> None:
        padding = "<!-- " + "x" * (2 * CHUNK_SIZE + 100) + " -->"
        xml = f'<icegrid>{padding}<application name="Big"></application></icegrid>'
        session = self.admin.session
        name, serial = self.successResultOf(
            self.admin.run(session.upload_and_add_application(xml, False))
        )
        self.assertEqual((name, serial), ("Big", self.registry.store.serial))
        self.assertIn("Big", self.registry.state.applications)
        described = self.successResultOf(self.admin.run(session.describe("application", "Big")))
        self.assertEqual((described["name"], described["xml"]), ("Big", xml))
        # the metadata: the admin's hello name (its certificate's, under TLS) as the user
        self.assertEqual(
            (described["revision"], described["create_user"], described["update_user"]),
            (1, "alice", "alice"),
        )
        self.successResultOf(self.admin.run(session.upload_and_add_application(xml, True)))
        listed = self.successResultOf(self.admin.run(session.list("application")))
        self.assertEqual([a["name"] for a in listed], ["Big"])
        self.assertEqual((listed[0]["uuid"], listed[0]["revision"]), (described["uuid"], 2))
        self.successResultOf(self.admin.run(session.remove_application("Big")))
        self.assertNotIn("Big", self.registry.state.applications)
        self.failureResultOf(self.admin.run(session.remove_application("Big")), NotFoundError)
        self.failureResultOf(self.admin.run(session.describe("application", "Big")), NotFoundError)

    def test_invalid_descriptor(self) -> None:
        d = self.admin.run(self.admin.session.upload_and_add_application("<icegrid><oops", False))
        self.failureResultOf(d, ApplicationError)
        d = self.admin.run(self.admin.session.upload_and_add_application(TINY_APP, True))
        self.failureResultOf(d, NotFoundError)
        self.successResultOf(
            self.admin.run(self.admin.session.upload_and_add_application(TINY_APP, False))
        )
        d = self.admin.run(self.admin.session.upload_and_add_application(TINY_APP, False))
        self.assertIn("already exists", self.failureResultOf(d, ApplicationError).getErrorMessage())
        self.admin.result(
            BeginTransfer, transfer="u", size=2, sha256=hashlib.sha256(b"\xff\xfe").hexdigest()
        )
        self.admin.result(TransferChunk, transfer="u", seq=0, data=b"\xff\xfe")
        message = self.admin.refused(
            ApplicationError, AdminApplicationAdd, transfer="u", update=False
        )
        self.assertIn("UTF-8", message)


class SessionTests(SynchronousTestCase):
    """L{open_admin_session}: discovery through the locator, then an admin session."""

    def setUp(self) -> None:
        self.network = MemoryNetwork()
        self.master = start_registry(self, self.network, "Master", MASTER_PORTS)
        self.slave = start_registry(self, self.network, "Replica1", (5061, 5062, 5063))
        self.network.run_until(lambda: "Replica1" in self.master.master.live_slaves())
        self.warnings: list[str] = []

    def properties(self, **extra: str) -> Properties:
        properties = Properties()
        properties.set(
            "Ice.Default.Locator",
            f"DemoIceGrid/Locator:tcp -h {HOST} -p 4061:tcp -h {HOST} -p 5061",
        )
        properties.set("GridReg.Internal.Insecure", "1")
        for key, value in extra.items():
            properties.set(key, value)
        return properties

    def open(
        self, replica: Optional[str] = None, properties: Optional[Properties] = None
    ) -> Deferred[AdminSession]:
        d = Deferred.fromCoroutine(
            open_admin_session(
                self.network.reactor,
                properties or self.properties(),
                replica,
                3.0,
                warn=self.warnings.append,
            )
        )
        self.network.run_until(d)
        return d

    def finish(self, coroutine: Any) -> Deferred[Any]:
        d = Deferred.fromCoroutine(coroutine)
        self.network.run_until(d)
        return d

    def test_master_session(self) -> None:
        session = self.successResultOf(self.open())
        self.assertEqual(
            (session.replica, session.instance, session.is_master), ("Master", "DemoIceGrid", True)
        )
        self.assertIn("plain TCP", self.warnings[0])
        self.successResultOf(self.finish(session.add_object("hello@HelloAdapter", "::Demo::Hello")))
        self.network.run_until(lambda: Identity("hello") in self.slave.state.objects)
        replicas = self.successResultOf(self.finish(session.list("registry")))
        self.assertEqual(
            [(r["name"], r["alive"]) for r in replicas], [("Master", True), ("Replica1", True)]
        )
        closed = session.close()
        self.network.run_until(closed)
        self.assertTrue(session.protocol.gone)

    def test_slave_session_is_read_only(self) -> None:
        added = self.master.database.add_object(
            proxy_from_string("hello@HelloAdapter"), "::Demo::Hello"
        )
        self.network.run_until(added)
        self.network.run_until(lambda: Identity("hello") in self.slave.state.objects)
        session = self.successResultOf(self.open(replica="Replica1"))
        self.assertEqual((session.replica, session.is_master), ("Replica1", False))
        found = self.successResultOf(self.finish(session.describe("object", "hello")))
        self.assertEqual(found["type"], "::Demo::Hello")
        failure = self.failureResultOf(self.finish(session.remove_object("hello")), NotMasterError)
        self.assertIn("read-only", failure.getErrorMessage())

    def test_master_down_suggests_replica(self) -> None:
        for port in MASTER_PORTS:
            self.network.kill(HOST, port)
        failure = self.failureResultOf(self.open(), AdminUnreachableError)
        self.assertIn("--replica", failure.getErrorMessage())

    def test_unknown_replica(self) -> None:
        self.failureResultOf(self.open(replica="Nobody"), NotFoundError)

    def test_hung_registry_times_out(self) -> None:
        for port in MASTER_PORTS:
            self.network.hang(HOST, port)
        self.failureResultOf(self.open(), AdminUnreachableError)

    def test_tls_or_explicit_insecurity_required(self) -> None:
        properties = Properties()
        properties.set("Ice.Default.Locator", f"DemoIceGrid/Locator:tcp -h {HOST} -p 4061")
        failure = self.failureResultOf(self.open(properties=properties), AdminConfigError)
        self.assertIn("IceSSL.CertFile", failure.getErrorMessage())


class TLSSessionTests(SynchronousTestCase):
    """Admin sessions over mutual TLS, with gridreg's demo certificates."""

    def setUp(self) -> None:
        self.certs = make_demo_certs(
            self.mktemp(), ["Master", "Replica1"], admins=["Alice Admin"], instance="DemoIceGrid"
        )
        self.network = MemoryNetwork()

    def start(self, certificate: str = "Master") -> None:
        self.master = start_registry(
            self, self.network, "Master", MASTER_PORTS, tls=self.certs[REGISTRY, certificate]
        )

    def open(self, config: TLSConfig) -> Deferred[AdminSession]:
        properties = Properties()
        properties.set("Ice.Default.Locator", f"DemoIceGrid/Locator:tcp -h {HOST} -p 4061")
        properties.set("IceSSL.CAs", config.ca_file)
        properties.set("IceSSL.CertFile", config.cert_file)
        properties.set("IceSSL.KeyFile", config.key_file)
        d = Deferred.fromCoroutine(open_admin_session(self.network.reactor, properties, None, 3.0))
        self.network.run_until(d)
        return d

    def test_admin_certificate(self) -> None:
        """The admin's name comes from its certificate, which the registry checks."""
        self.start()
        session = self.successResultOf(self.open(self.certs[ADMIN, "Alice Admin"]))
        self.assertTrue(session.is_master)
        [connection] = [
            link.server for link in self.network.links if link.address == (HOST, MASTER_PORTS[2])
        ]
        self.assertEqual(connection.wrappedProtocol.peer_name, "Alice Admin")
        d = Deferred.fromCoroutine(session.list("registry"))
        self.network.run_until(d)
        self.assertEqual([r["name"] for r in self.successResultOf(d)], ["Master"])

    def test_registry_must_prove_its_name(self) -> None:
        """A server whose certificate names another replica is not talked to."""
        self.start(certificate="Replica1")
        failure = self.failureResultOf(
            self.open(self.certs[ADMIN, "Alice Admin"]), AdminUnreachableError
        )
        self.assertIn("127.0.0.1:4063", failure.getErrorMessage())

    def test_not_an_admin_certificate(self) -> None:
        self.start()
        failure = self.failureResultOf(self.open(self.certs[REGISTRY, "Master"]), AdminConfigError)
        self.assertIn("not of an admin", failure.getErrorMessage())
