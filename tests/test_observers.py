"""
IceGrid admin-session observers on a memory network: an admin client
registers its observers by identity on its session's connection, as the
IceGrid GUI does, and the registry calls them back over it (their initial
state, then each change, one call at a time); master and slave alike. The
registry's requests are decoded here as a real Ice client's adapter would.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.testing import StringTransport
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.classes import SeqOf, StructOf, ValueReader
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import (
    HEADER_SIZE,
    Request,
    decode_reply,
    decode_request,
    encode_request,
    reply_error,
    reply_message,
    success_body,
    unknown_body,
    ReplyStatus,
)
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode, Proxy
from gridreg.registry import _descriptor_slice_types as S
from gridreg.registry._descriptor_update_types import ApplicationUpdateInfo
from gridreg.registry.observers import (
    KINDS,
    OBSERVER_TIMEOUT,
    SERVER_STATES,
    ObserverHub,
    ObserverLink,
)
from gridreg.registry.service import RegistryService
from tests._fake_node import direct
from tests.test_registry_nodes import APP, NodeGrid

VERIFIER = {"IceGrid.Registry.AdminPermissionsVerifier": "DemoIceGrid/NullPermissionsVerifier"}
NORMAL = OperationMode.NORMAL


class ObserverClient:
    """
    An admin client on one connection to a replica's client endpoint whose
    five observers live on that connection; it answers the registry's
    calls at once unless told to C{hold} them.
    """

    def __init__(self, testcase: SynchronousTestCase, service: RegistryService) -> None:
        self.testcase = testcase
        self.protocol = service.client_factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.transport.clear()
        self.next_id = 1
        self.replies: dict[int, Any] = {}
        #: every observer call received: (kind, operation, params stream)
        self.calls: list[tuple[str, str, InputStream]] = []
        self.held: list[Request] = []
        self.hold = False
        self.category = "obs"
        self.failing: set[str] = set()

    def invoke(
        self, identity: Identity, operation: str, params: bytes = b"", mode: OperationMode = NORMAL
    ) -> Any:
        request_id, self.next_id = self.next_id, self.next_id + 1
        self.protocol.dataReceived(
            encode_request(
                Request(request_id, identity, "", operation, int(mode), {}, params=params)
            )
        )
        self.pump()
        reply = self.replies.pop(request_id)
        error = reply_error(reply)
        if error is not None:
            raise error
        return InputStream(reply.payload, reply.encoding)

    def pump(self) -> None:
        """Read what the registry wrote: replies to us, and calls to our observers."""
        while True:
            data = self.transport.value()
            self.transport.clear()
            if not data:
                return
            while data:
                size = int.from_bytes(data[10:14], "little")
                kind, body, data = data[8], data[HEADER_SIZE:size], data[size:]
                if kind == 2:
                    reply = decode_reply(body)
                    self.replies[reply.request_id] = reply
                elif kind == 0:
                    request = decode_request(body)
                    if self.hold:
                        self.held.append(request)
                    else:
                        self.answer(request)

    def answer(self, request: Request) -> None:
        kind = request.identity.name
        self.calls.append((kind, request.operation, InputStream(request.params, ENCODING_1_1)))
        if kind in self.failing:
            body = unknown_body(ReplyStatus.UNKNOWN_LOCAL_EXCEPTION, "::Ice::ObjectNotExist")
        else:
            body = success_body(ENCODING_1_1, b"")
        self.protocol.dataReceived(reply_message(request.request_id, body))

    def release(self) -> None:
        """Answer the held calls, and those they unblock."""
        self.hold = False
        held, self.held = self.held, []
        for request in held:
            self.answer(request)
        self.pump()

    def open_session(self, kinds: tuple[str, ...] = KINDS, registry: str = "Registry") -> Identity:
        out = OutputStream()
        out.write_string("admin")
        out.write_string("")
        registry_identity = Identity(registry, "DemoIceGrid")
        session = self.invoke(registry_identity, "createAdminSession", out.getvalue()).read_proxy()
        params = OutputStream()
        for kind in KINDS:
            params.write_identity(Identity(kind if kind in kinds else "", self.category))
        self.invoke(
            session.identity, "setObserversByIdentity", params.getvalue(), OperationMode.IDEMPOTENT
        )
        self.pump()
        self.session = session.identity
        return session.identity

    def of(self, kind: str) -> list[tuple[str, InputStream]]:
        return [(op, stream) for k, op, stream in self.calls if k == kind]

    def operations(self, kind: str) -> list[str]:
        return [op for op, _ in self.of(kind)]

    def last(self, kind: str, operation: str) -> InputStream:
        found = [s for op, s in self.of(kind) if op == operation]
        self.testcase.assertTrue(found, f"no {operation} for the {kind} observer")
        return found[-1]


def read_node_dynamic_info(inp: InputStream) -> dict[str, Any]:
    name = inp.read_string()
    inp.read_string()  # os
    hostname = inp.read_string()
    inp.read_string(), inp.read_string(), inp.read_string()
    inp.read_int()
    inp.read_string()
    servers = {}
    for _ in range(inp.read_size()):
        server_id = inp.read_string()
        state = SERVER_STATES[inp.read_enum(6)]
        servers[server_id] = (state, inp.read_int(), inp.read_bool())
    adapters = {}
    for _ in range(inp.read_size()):
        adapter_id = inp.read_string()
        adapters[adapter_id] = inp.read_proxy()
    return {"name": name, "hostname": hostname, "servers": servers, "adapters": adapters}


def read_application_infos(inp: InputStream) -> list[Any]:
    reader = ValueReader(inp)
    infos = reader.read(SeqOf(StructOf(S.ApplicationInfo)))
    reader.read_pending()
    return list(infos)


def read_application_info(inp: InputStream) -> Any:
    reader = ValueReader(inp)
    info = reader.read(StructOf(S.ApplicationInfo))
    reader.read_pending()
    return info


class ObserverTestCase(SynchronousTestCase):
    #: more properties for the master
    properties: dict[str, str] = {}

    def setUp(self) -> None:
        self.grid = NodeGrid(self)
        self.master = self.grid.start("Master", **VERIFIER, **self.properties)
        self.grid.run_until(lambda: self.master.role.opened)
        self.grid.wait(self.master.database.add_application(APP))

    def client(self, service: Optional[RegistryService] = None) -> ObserverClient:
        client = ObserverClient(self, service or self.master)
        self.addCleanup(client.protocol.connectionLost, None)
        return client

    def settle(self, client: ObserverClient) -> None:
        self.grid.network.flush()
        client.pump()


class InitialStateTests(ObserverTestCase):
    def test_each_observer_gets_its_initial_state(self) -> None:
        self.grid.wait(self.master.database.add_object(direct(7100), "::Demo::Added"))
        node = self.grid.node("Master", "node1")
        self.grid.wait(node.live(servers={"S1": {"state": "active", "pid": 42, "enabled": True}}))
        self.grid.wait(node.adapter_up("A1", 7001))
        client = self.client()
        client.open_session()
        self.assertEqual(
            [op for _, op, _ in client.calls],
            ["registryInit", "nodeInit", "applicationInit", "adapterInit", "objectInit"],
        )

        registries = client.last("registry", "registryInit")
        self.assertEqual(registries.read_size(), 1)
        self.assertEqual(registries.read_string(), "Master")

        nodes = client.last("node", "nodeInit")
        self.assertEqual(nodes.read_size(), 1)
        info = read_node_dynamic_info(nodes)
        self.assertEqual(info["name"], "node1")
        self.assertEqual(info["servers"], {"S1": ("active", 42, True)})
        self.assertEqual(info["adapters"]["A1"].endpoints, direct(7001).endpoints)

        apps = client.last("application", "applicationInit")
        self.assertEqual(apps.read_int(), self.master.store.serial)
        [app] = read_application_infos(apps)
        self.assertEqual(app.descriptor.name, "App")
        self.assertEqual(sorted(app.descriptor.nodes), ["node1", "node2", "node3"])

        adapters = client.last("adapter", "adapterInit")
        self.assertEqual(adapters.read_size(), 0)  # deployed adapters are the node observer's

        objects = client.last("object", "objectInit")
        found = {}
        for _ in range(objects.read_size()):
            proxy = objects.read_proxy()
            found[proxy.identity] = objects.read_string()
        self.assertEqual(found[Identity("dummy")], "::Demo::Added")
        self.assertEqual(found[Identity("Query", "DemoIceGrid")], "::IceGrid::Query")
        self.assertNotIn(Identity("obj1"), found, "an application's objects are not listed")

    def test_null_identities_get_nothing(self) -> None:
        client = self.client()
        client.open_session(kinds=("node",))
        self.assertEqual([(k, op) for k, op, _ in client.calls], [("node", "nodeInit")])


class ChangeTests(ObserverTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.observer = self.client()
        self.observer.open_session()
        self.observer.calls.clear()

    def test_objects_added_updated_and_removed(self) -> None:
        db = self.master.database
        self.grid.wait(db.add_object(direct(7100), "::Demo::Hello"))
        self.grid.wait(db.update_object(direct(7101)))
        self.grid.wait(db.remove_object(Identity("dummy")))
        self.settle(self.observer)
        self.assertEqual(
            self.observer.operations("object"), ["objectAdded", "objectUpdated", "objectRemoved"]
        )
        added = self.observer.of("object")[0][1]
        self.assertEqual(added.read_proxy().endpoints, direct(7100).endpoints)
        self.assertEqual(added.read_string(), "::Demo::Hello")
        updated = self.observer.of("object")[1][1]
        self.assertEqual(updated.read_proxy().endpoints, direct(7101).endpoints)
        self.assertEqual(self.observer.of("object")[2][1].read_identity(), Identity("dummy"))

    def test_dynamic_adapters_added_updated_and_removed(self) -> None:
        db = self.master.database
        self.grid.wait(db.set_adapter_direct_proxy("Dyn", "", direct(7200)))
        self.grid.wait(db.set_adapter_direct_proxy("Dyn", "", direct(7201)))
        self.grid.wait(db.remove_adapter("Dyn"))
        self.settle(self.observer)
        self.assertEqual(
            self.observer.operations("adapter"),
            ["adapterAdded", "adapterUpdated", "adapterRemoved"],
        )
        added = self.observer.of("adapter")[0][1]
        self.assertEqual(added.read_string(), "Dyn")
        self.assertEqual(added.read_proxy().endpoints, direct(7200).endpoints)
        self.assertEqual(added.read_string(), "")
        self.assertEqual(self.observer.of("adapter")[2][1].read_string(), "Dyn")

    def test_applications_added_updated_and_removed(self) -> None:
        db = self.master.database
        other = (
            '<icegrid><application name="Other"><node name="node9">'
            '<server id="O1" exe="/bin/s1" activation="manual"/>'
            "</node></application></icegrid>"
        )
        self.grid.wait(db.add_application(other))
        self.grid.wait(db.add_application(other.replace("/bin/s1", "/bin/s1b"), True))
        self.grid.wait(db.remove_application("Other"))
        self.settle(self.observer)
        self.assertEqual(
            self.observer.operations("application"),
            ["applicationAdded", "applicationUpdated", "applicationRemoved"],
        )
        first = self.observer.of("application")[0][1]
        serial = first.read_int()
        added = read_application_info(first)
        self.assertEqual((added.descriptor.name, added.revision), ("Other", 1))
        updated_params = self.observer.of("application")[1][1]
        self.assertGreater(updated_params.read_int(), serial)
        reader = ValueReader(updated_params)
        updated = reader.read(StructOf(ApplicationUpdateInfo))
        reader.read_pending()
        # the diff names the node whose server changed, with the new server
        self.assertEqual(updated.revision, 2)
        self.assertEqual(updated.descriptor.name, "Other")
        [node] = updated.descriptor.nodes
        self.assertEqual(node.name, "node9")
        [server] = node.servers
        self.assertEqual((server.id, server.exe), ("O1", "/bin/s1b"))
        removed = self.observer.of("application")[-1][1]
        self.assertGreater(removed.read_int(), serial)
        self.assertEqual(removed.read_string(), "Other")

    def test_nodes_up_down_servers_and_adapters(self) -> None:
        node = self.grid.node("Master", "node1")
        self.grid.wait(node.live(servers={"S1": {"state": "activating", "pid": 0}}))
        self.grid.wait(node.live(servers={"S1": {"state": "active", "pid": 9, "enabled": True}}))
        self.grid.wait(node.adapter_up("A1", 7001))
        self.grid.wait(node.live(adapters={"A1": {"proxy": ""}}))
        node.transport.loseConnection()
        self.settle(self.observer)
        self.assertEqual(
            self.observer.operations("node"),
            [
                "nodeUp",
                "updateServer",
                "updateServer",
                "updateAdapter",
                "updateAdapter",
                "nodeDown",
            ],
        )
        calls = self.observer.of("node")
        self.assertEqual(read_node_dynamic_info(calls[0][1])["name"], "node1")
        update = calls[2][1]
        self.assertEqual(update.read_string(), "node1")
        self.assertEqual(update.read_string(), "S1")
        self.assertEqual(SERVER_STATES[update.read_enum(6)], "active")
        self.assertEqual(update.read_int(), 9)
        adapter_up, adapter_down = calls[3][1], calls[4][1]
        self.assertEqual((adapter_up.read_string(), adapter_up.read_string()), ("node1", "A1"))
        self.assertEqual(adapter_up.read_proxy().endpoints, direct(7001).endpoints)
        self.assertEqual((adapter_down.read_string(), adapter_down.read_string()), ("node1", "A1"))
        self.assertIsNone(adapter_down.read_proxy())
        self.assertEqual(calls[5][1].read_string(), "node1")

    def test_replicas_up_and_down(self) -> None:
        slave = self.grid.start("Replica1", **VERIFIER)
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        self.settle(self.observer)
        self.assertIn("registryUp", self.observer.operations("registry"))
        up = self.observer.last("registry", "registryUp")
        self.assertEqual(up.read_string(), "Replica1")
        self.grid.wait(slave.stopService())
        self.grid.run_until(lambda: self.grid.live(self.master))
        self.settle(self.observer)
        self.assertEqual(self.observer.last("registry", "registryDown").read_string(), "Replica1")

    def test_the_registrys_own_objects_follow_the_replicas(self) -> None:
        """As IceGrid: Registry-<name> added, Locator and Query updated each time."""
        slave = self.grid.start("Replica1", **VERIFIER)
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        self.settle(self.observer)
        changes = []
        for operation, stream in self.observer.of("object"):
            if operation == "objectRemoved":
                changes.append((operation, stream.read_identity().name))
            else:
                changes.append((operation, stream.read_proxy().identity.name))
        self.assertIn(("objectAdded", "Registry-Replica1"), changes)
        self.assertIn(("objectUpdated", "Locator"), changes)
        self.observer.calls.clear()
        self.grid.wait(slave.stopService())
        self.grid.run_until(lambda: self.grid.live(self.master))
        self.settle(self.observer)
        updated = [s.read_proxy() for op, s in self.observer.of("object") if op == "objectUpdated"]
        locator = [p for p in updated if p.identity.name == "Locator"]
        self.assertEqual(len(locator[-1].endpoints), 1, "the Locator lists the master only again")
        calls = self.observer.of("object")
        removed = {s.read_identity().name for op, s in calls if op == "objectRemoved"}
        # what IceGrid 3.7.8's object observer got when its slave went down
        self.assertEqual(removed, {"Registry-Replica1", "InternalRegistry-Replica1"})

    def test_calls_go_one_at_a_time_in_order(self) -> None:
        """The next call waits for the answer to the previous one."""
        self.observer.hold = True
        db = self.master.database
        for port in (7100, 7101, 7102):
            self.grid.wait(
                db.add_object(Proxy(Identity(f"o{port}"), endpoints=direct(port).endpoints), "::T")
            )
        self.settle(self.observer)
        self.assertEqual(len(self.observer.held), 1)
        self.observer.release()
        names = [s.read_proxy().identity.name for _, s in self.observer.of("object")]
        self.assertEqual(names, ["o7100", "o7101", "o7102"])

    def test_a_reload_sends_the_replicated_state_again(self) -> None:
        """After a reload (a slave's resync) the state observers get their init again."""
        self.master.state.load({})
        self.settle(self.observer)
        self.assertEqual(
            [(k, op) for k, op, _ in self.observer.calls],
            [
                ("application", "applicationInit"),
                ("adapter", "adapterInit"),
                ("object", "objectInit"),
            ],
        )
        apps = self.observer.last("application", "applicationInit")
        apps.read_int()
        self.assertEqual(read_application_infos(apps), [])


class FailureTests(ObserverTestCase):
    def test_a_failing_observer_is_dropped_and_the_others_go_on(self) -> None:
        client = self.client()
        client.open_session()
        client.failing.add("object")
        db = self.master.database
        self.grid.wait(db.add_object(direct(7100), "::T"))
        self.grid.wait(db.remove_object(Identity("dummy")))
        self.grid.node("Master", "node1")
        self.settle(client)
        self.assertEqual(client.operations("object"), ["objectInit", "objectAdded"])
        self.assertEqual(client.operations("node"), ["nodeInit", "nodeUp"])
        # the session itself lives on
        client.invoke(client.session, "keepAlive", mode=OperationMode.IDEMPOTENT)

    def test_an_observer_that_does_not_answer_times_out_and_is_dropped(self) -> None:
        client = self.client()
        client.hold = True
        client.open_session(kinds=("object",))
        self.assertEqual(len(client.held), 1)
        self.grid.network.advance(OBSERVER_TIMEOUT + 1)
        client.held.clear()
        client.hold = False
        self.grid.wait(self.master.database.add_object(direct(7100), "::T"))
        self.settle(client)
        self.assertEqual(client.calls, [])

    def test_a_closed_session_connection_ends_the_observers(self) -> None:
        client = self.client()
        client.open_session()
        client.protocol.connectionLost(None)
        self.grid.wait(self.master.database.add_object(direct(7100), "::T"))
        hub = self.master.ice_sessions.observer_hub
        self.assertEqual(hub.subscriptions, {})


class _TopicTraceTestCase(ObserverTestCase):
    def dropped(self) -> list[str]:
        """The Topic traces of an object observer subscribed, failing, its session destroyed."""
        events: list[dict[str, Any]] = []
        logger = Logger(observer=events.append)
        self.patch(ObserverLink, "log", logger)
        self.patch(ObserverHub, "log", logger)
        client = self.client()
        client.open_session(kinds=("object",))
        client.failing.add("object")
        self.grid.wait(self.master.database.add_object(direct(7100), "::T"))
        self.settle(client)
        self.assertEqual(client.operations("object"), ["objectInit", "objectAdded"])
        client.invoke(client.session, "destroy")
        return [formatEvent(event) for event in events]


class TopicTraceOffTests(_TopicTraceTestCase):
    def test_a_dropped_observer_is_silent(self) -> None:
        """As IceGrid 3.7.8 with Trace.Topic=0 (its default): nothing is logged."""
        self.assertEqual(self.dropped(), [])


class TopicTraceTests(_TopicTraceTestCase):
    properties = {"IceGrid.Registry.Trace.Topic": "1"}

    def test_subscriptions_and_the_drop(self) -> None:
        """IceGrid's level-1 lines, and between them gridreg's own about the drop."""
        subscribed, dropped, unsubscribed = self.dropped()
        self.assertEqual(
            subscribed, "[Topic] ObjectObserver-1.1: subscribeAndGetPublisher: obs/object"
        )
        self.assertTrue(
            dropped.startswith(
                "[Topic] ObjectObserver-1.1: dropping `obs/object' of `admin': objectAdded failed"
            ),
            dropped,
        )
        self.assertEqual(unsubscribed, "[Topic] ObjectObserver-1.1: unsubscribe: obs/object")


class TopicTraceEndpointsTests(_TopicTraceTestCase):
    properties = {"IceGrid.Registry.Trace.Topic": "2"}

    def test_level_2_adds_endpoints(self) -> None:
        """As IceGrid: endpoints and QoS on subscribing, endpoints on unsubscribing."""
        lines = self.dropped()
        self.assertEqual(
            lines[0],
            '[Topic] ObjectObserver-1.1: subscribeAndGetPublisher: obs/object endpoints: "" QoS: ',
        )
        self.assertEqual(
            lines[-1], '[Topic] ObjectObserver-1.1: unsubscribe: obs/object endpoints: ""'
        )


class SlaveTests(ObserverTestCase):
    def test_a_slave_publishes_replicated_changes_and_its_nodes(self) -> None:
        slave = self.grid.start("Replica1", **VERIFIER)
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        client = self.client(slave)
        client.open_session(registry="Registry-Replica1")
        registries = client.last("registry", "registryInit")
        names = []
        for _ in range(registries.read_size()):
            names.append(registries.read_string())
            registries.read_string()  # hostname
        self.assertEqual(sorted(names), ["Master", "Replica1"])
        client.calls.clear()
        self.grid.wait(self.master.database.add_object(direct(7100), "::T"))
        self.grid.run_until(lambda: slave.state.find_object(Identity("dummy")) is not None)
        self.grid.node("Replica1", "node2")
        self.settle(client)
        self.assertEqual(client.operations("object"), ["objectAdded"])
        self.assertEqual(client.operations("node"), ["nodeUp"])


class ListeningTests(ObserverTestCase):
    def test_without_observers_the_state_has_no_mutation_listener(self) -> None:
        """Writes cost nothing more once the last observing session has ended."""
        client = self.client()
        client.open_session()
        self.assertEqual(len(self.master.state._mutation_listeners), 1)
        client.invoke(client.session, "destroy")
        self.assertEqual(self.master.state._mutation_listeners, [])
        self.assertEqual(self.master.nodes.listeners, [])
        again = self.client()
        again.open_session()
        again.calls.clear()
        self.grid.wait(self.master.database.add_object(direct(7100), "::T"))
        self.settle(again)
        self.assertEqual(again.operations("object"), ["objectAdded"])
