"""
C{session} activation on the master, on a memory network with a fake
node: a session server runs only while a client session holds it, starts
at the first locate, stops when its holder lets go, and goes to the next
session only once stopped (L{gridreg.registry.session_servers}).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, fail
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.exceptions import AllocationTimeoutException
from gridreg.ice.types import Identity, Proxy
from gridreg.protocol.errors import NodeError
from gridreg.protocol.node_commands import NOT_OWNED, ActivateServer, SetServerSession
from tests._fake_node import FakeNode, Locate, connect
from tests.test_fencing import PORTS
from tests.test_registry_nodes import NodeGrid

APP = """<icegrid><application name="Sess">
  <node name="node1">
    <server id="Sess" exe="/bin/s" activation="session" allocatable="true">
      <adapter name="A" id="SessAdapter" endpoints="tcp">
        <allocatable identity="sessobj" type="::Demo::Hello"/>
      </adapter>
    </server>
    <server id="Pair" exe="/bin/p" activation="session">
      <adapter name="A" id="PairAdapter" endpoints="tcp">
        <allocatable identity="left" type="::Demo::Pair"/>
        <allocatable identity="right" type="::Demo::Pair"/>
      </adapter>
    </server>
    <server id="Plain" exe="/bin/q" activation="on-demand">
      <adapter name="A" id="PlainAdapter" endpoints="tcp">
        <allocatable identity="plain" type="::Demo::Plain"/>
      </adapter>
    </server>
  </node>
</application></icegrid>"""

SESSOBJ = Identity("sessobj")


class SessionNode(FakeNode):
    """
    A fake node that keeps the owners the master tells it (C{owners}, may be
    shared by the node's sessions with several replicas), refuses to
    activate an unowned session server as gridnode does, and stops a
    released one; with C{hold}, those answers wait for the test
    (C{held}).
    """

    def __init__(self, name: str, owners: Optional[dict[str, str]] = None) -> None:
        super().__init__(name)
        self.owners: dict[str, str] = {} if owners is None else owners
        self.told: list[tuple[str, str]] = []
        self.refused: list[str] = []
        self.hold = False
        self.held: list[Deferred[None]] = []

    @SetServerSession.responder
    def set_session(self, server: str, session: str) -> Deferred[dict[str, Any]]:
        self.told.append((server, session))
        done: Deferred[None] = Deferred()
        if self.hold:
            self.held.append(done)
        else:
            done.callback(None)

        def apply(_: None) -> Any:
            if session:
                self.owners[server] = session
                return {}
            self.owners.pop(server, None)
            if self.servers.get(server, {}).get("state", "inactive") == "inactive":
                return {}
            return FakeNode.stop(self, server)

        return done.addCallback(apply)

    @ActivateServer.responder
    def activate(self, server: str) -> Deferred[dict[str, Any]]:
        activation = self.deployed_servers()[server]["descriptor"]["activation"]
        if activation == "session" and server not in self.owners:
            self.refused.append(server)
            return fail(NodeError(NOT_OWNED))
        return FakeNode.activate(self, server)


class SessionServerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = NodeGrid(self)
        self.master = self.grid.start("Master")
        self.grid.run_until(lambda: self.master.role.opened)
        self.grid.wait(self.master.database.add_application(APP))
        self.allocations = self.master.allocations
        assert self.allocations is not None

    def node(
        self, place: str = "Master", owners: Optional[dict[str, str]] = None, keep: bool = False
    ) -> SessionNode:
        """A node registered at C{place}; what it was told then is forgotten unless C{keep}."""
        node = connect(self.grid.network, PORTS[place][2], SessionNode("node1", owners))
        self.grid.wait(node.register())
        self.grid.network.flush()
        if not keep:
            node.told.clear()
        return node

    def locate(self, adapter_id: str, registry: Any = None) -> Any:
        locate = Locate(registry or self.master, adapter_id)
        self.grid.run_until(lambda: locate.answered)
        return locate.ports()

    def allocate(self, session: str, identity: Identity = SESSOBJ, timeout: float = -1) -> Any:
        d = self.allocations.allocate_by_id(session, identity, timeout)
        self.grid.network.flush()
        return d

    def outcome(self, d: Deferred[Any]) -> Any:
        """
        What C{d}, a call to a node, gives: watched before the node answers,
        since AMP logs (and swallows) a failure that is still unhandled then.
        """
        results: list[Any] = []
        d.addBoth(results.append)
        self.grid.network.flush()
        return results[0]

    def refusal(self, d: Deferred[Any]) -> str:
        failure = self.outcome(d)
        self.assertIsInstance(failure, Failure)
        failure.trap(NodeError)
        return str(failure.getErrorMessage())

    def test_not_owned_it_is_not_started_by_a_locate(self) -> None:
        """IceGrid 3.7.8: findAdapterById answers null, nothing is started."""
        node = self.node()
        self.assertIsNone(self.locate("SessAdapter"))
        self.assertEqual((node.refused, node.activations), (["Sess"], []))

    def test_allocation_does_not_start_it_the_first_locate_does(self) -> None:
        node = self.node()
        node.ports["Sess"] = 7301
        proxy = self.successResultOf(self.allocate("A"))
        self.assertEqual(proxy, Proxy(SESSOBJ, adapter_id="SessAdapter"))
        self.assertEqual(node.told, [("Sess", "A")])
        self.assertEqual(node.activations, [])
        # any client's locate starts it while a session owns it, as IceGrid's
        self.assertEqual(self.locate("SessAdapter"), [7301])
        self.assertEqual(node.activations, ["Sess"])

    def test_the_grant_waits_for_the_node_to_know_the_owner(self) -> None:
        node = self.node()
        node.hold = True
        granted = self.allocate("A")
        self.assertNoResult(granted)
        node.held.pop().callback(None)
        self.grid.network.flush()
        self.successResultOf(granted)

    def test_release_stops_it_before_the_next_session_gets_it(self) -> None:
        node = self.node()
        self.successResultOf(self.allocate("A"))
        self.assertIsNotNone(self.locate("SessAdapter"))
        waiting = self.allocate("B")
        self.assertNoResult(waiting)

        node.hold = True
        released = self.allocations.release("A", SESSOBJ)
        self.grid.network.flush()
        self.assertEqual(node.told[-1], ("Sess", ""))
        self.assertNoResult(released)  # releaseObject answers once it has stopped
        self.assertNoResult(waiting)  # and only then may the next session have it
        self.assertIsNone(self.master.session_servers.owner("Sess"))

        node.hold = False
        node.held.pop().callback(None)
        self.grid.network.flush()
        self.successResultOf(released)
        self.successResultOf(waiting)
        self.assertEqual(node.told[-1], ("Sess", "B"))
        self.assertEqual(node.servers["Sess"]["state"], "inactive")
        self.assertEqual(self.master.session_servers.owner("Sess"), "B")
        self.assertIsNotNone(self.locate("SessAdapter"))
        self.assertEqual(node.activations, ["Sess", "Sess"])

    def test_the_end_of_its_session_stops_it(self) -> None:
        node = self.node()
        self.successResultOf(self.allocate("A"))
        self.locate("SessAdapter")
        node.hold = True
        ended = self.allocations.release_all("A")
        self.grid.network.flush()
        self.assertNoResult(ended)  # destroy answers once it has stopped, as IceGrid's
        node.held.pop().callback(None)
        self.grid.network.flush()
        self.successResultOf(ended)
        self.assertEqual(node.told[-1], ("Sess", ""))
        self.assertEqual(node.servers["Sess"]["state"], "inactive")

    def test_a_failed_stop_is_logged_and_frees_the_server(self) -> None:
        node = self.node()
        self.successResultOf(self.allocate("A"))
        waiting = self.allocate("B")
        node.hold = True
        with capturedLogs() as events:
            self.allocations.release("A", SESSOBJ)
            self.grid.network.flush()
            node.hold = False
            node.held.pop().errback(NodeError("server `Sess': no such process"))
            self.grid.network.flush()
        self.successResultOf(waiting)
        warned = [e for e in events if "could not tell node" in e["log_format"]]
        self.assertEqual(len(warned), 1, events)
        self.assertIn("no such process", warned[0]["why"])

    def test_admin_start_needs_an_owner(self) -> None:
        """IceGrid 3.7.8: ServerStartException, "The server is not owned by a session."."""
        node = self.node()
        model = self.master.admin_model
        self.assertEqual(self.refusal(model.control_server("Sess", "start")), NOT_OWNED)
        self.assertEqual(node.activations, [])
        self.successResultOf(self.allocate("A"))
        self.assertEqual(self.outcome(model.control_server("Sess", "start")), {"pid": 7000})
        self.assertEqual(node.activations, ["Sess"])

    def test_a_session_server_is_held_whole(self) -> None:
        """IceGrid 3.7.8: not allocatable="true", still one session holds all its objects."""
        node = self.node()
        self.successResultOf(self.allocate("A", Identity("left")))
        self.failureResultOf(self.allocate("B", Identity("right"), 0), AllocationTimeoutException)
        self.successResultOf(self.allocate("A", Identity("right")))
        self.assertEqual(node.told, [("Pair", "A")])

    def test_other_servers_objects_tell_nothing(self) -> None:
        node = self.node()
        self.successResultOf(self.allocate("A", Identity("plain")))
        self.assertIsNotNone(self.locate("PlainAdapter"))  # on-demand: as before
        self.successResultOf(self.allocations.release("A", Identity("plain")))
        self.assertEqual(node.told, [])

    def test_a_node_that_registers_again_is_told_the_owners(self) -> None:
        self.node()
        self.successResultOf(self.allocate("A"))
        again = self.node(keep=True)  # a restarted node: it knows nothing
        self.assertEqual(sorted(again.told), [("Pair", ""), ("Sess", "A")])
        self.assertEqual(again.owners, {"Sess": "A"})

    def test_through_a_slave_the_node_decides(self) -> None:
        """IceGrid 3.7.8: a slave's locate starts an owned session server, not an unowned one."""
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        owners: dict[str, str] = {}
        self.node("Master", owners)
        at_slave = self.node("Replica1", owners)
        self.assertIsNone(self.locate("SessAdapter", slave))
        self.assertEqual(at_slave.refused, ["Sess"])
        self.assertEqual(self.refusal(slave.admin_model.control_server("Sess", "start")), NOT_OWNED)
        self.successResultOf(self.allocate("A"))
        self.assertIsNotNone(self.locate("SessAdapter", slave))
        self.assertEqual(at_slave.activations, ["Sess"])
        self.assertEqual(self.outcome(slave.admin_model.control_server("Sess", "stop")), {})
        started = self.outcome(slave.admin_model.control_server("Sess", "start"))
        self.assertEqual(started, {"pid": 7000})
        self.assertEqual(at_slave.activations, ["Sess", "Sess"])
