"""
C{session} activation on the master, on a memory network with a fake
node: a session server runs only while a client session holds it, starts
at the first locate, stops when its holder lets go, and goes to the next
session only once stopped (L{gridreg.registry.session_servers}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.exceptions import AllocationTimeoutException
from gridreg.ice.types import Identity, Proxy
from gridreg.protocol.errors import NodeError
from gridreg.protocol.node_commands import StopServer
from gridreg.registry.session_servers import NOT_OWNED
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


class SlowStopNode(FakeNode):
    """A node whose stops complete (or fail) when the test says so."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.stopping: list[tuple[str, Deferred[None]]] = []

    @StopServer.responder
    def stop(self, server: str) -> Deferred[dict[str, Any]]:
        done: Deferred[None] = Deferred()
        self.stopping.append((server, done))
        return done.addCallback(lambda _: FakeNode.stop(self, server))


class SessionServerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = NodeGrid(self)
        self.master = self.grid.start("Master")
        self.grid.run_until(lambda: self.master.role.opened)
        self.grid.wait(self.master.database.add_application(APP))
        self.allocations = self.master.allocations
        assert self.allocations is not None

    def slow_node(self) -> SlowStopNode:
        node = connect(self.grid.network, PORTS["Master"][2], SlowStopNode("node1"))
        self.grid.wait(node.register())
        self.grid.network.flush()
        return node

    def locate(self, adapter_id: str) -> Any:
        locate = Locate(self.master, adapter_id)
        self.grid.run_until(lambda: locate.answered)
        return locate.ports()

    def allocate(self, session: str, identity: Identity = SESSOBJ, timeout: float = -1) -> Any:
        d = self.allocations.allocate_by_id(session, identity, timeout)
        self.grid.network.flush()
        return d

    def stops(self, node: FakeNode) -> list[str]:
        return [kw["server"] for command, kw in node.calls if command == "stop"]

    def test_not_owned_it_is_not_started_by_a_locate(self) -> None:
        """IceGrid 3.7.8: findAdapterById answers null, nothing is started."""
        node = self.grid.node("Master", "node1")
        self.assertIsNone(self.locate("SessAdapter"))
        self.assertEqual(node.activations, [])

    def test_allocation_does_not_start_it_the_first_locate_does(self) -> None:
        node = self.grid.node("Master", "node1")
        node.ports["Sess"] = 7301
        proxy = self.successResultOf(self.allocate("A"))
        self.assertEqual(proxy, Proxy(SESSOBJ, adapter_id="SessAdapter"))
        self.assertEqual(node.activations, [])
        # any client's locate starts it while a session owns it, as IceGrid's
        self.assertEqual(self.locate("SessAdapter"), [7301])
        self.assertEqual(node.activations, ["Sess"])

    def test_release_stops_it_before_the_next_session_gets_it(self) -> None:
        node = self.slow_node()
        self.successResultOf(self.allocate("A"))
        self.assertIsNotNone(self.locate("SessAdapter"))
        waiting = self.allocate("B")
        self.assertNoResult(waiting)

        self.allocations.release("A", SESSOBJ)
        self.grid.network.flush()
        self.assertEqual([server for server, _ in node.stopping], ["Sess"])
        self.assertNoResult(waiting)  # not while the server is still stopping
        self.assertIsNone(self.master.session_servers.owner("Sess"))

        node.stopping[0][1].callback(None)
        self.grid.network.flush()
        self.successResultOf(waiting)
        self.assertEqual(self.master.session_servers.owner("Sess"), "B")
        self.assertIsNotNone(self.locate("SessAdapter"))
        self.assertEqual(node.activations, ["Sess", "Sess"])

    def test_the_end_of_its_session_stops_it(self) -> None:
        node = self.grid.node("Master", "node1")
        self.successResultOf(self.allocate("A"))
        self.locate("SessAdapter")
        self.allocations.release_all("A")
        self.grid.network.flush()
        self.assertEqual(self.stops(node), ["Sess"])
        self.assertEqual(node.servers["Sess"]["state"], "inactive")

    def test_a_failed_stop_is_logged_and_frees_the_server(self) -> None:
        node = self.slow_node()
        self.successResultOf(self.allocate("A"))
        waiting = self.allocate("B")
        with capturedLogs() as events:
            self.allocations.release("A", SESSOBJ)
            self.grid.network.flush()
            node.stopping[0][1].errback(NodeError("server `Sess': no such process"))
            self.grid.network.flush()
        self.successResultOf(waiting)
        warned = [e for e in events if "could not stop session server" in e["log_format"]]
        self.assertEqual(len(warned), 1, events)
        self.assertIn("no such process", warned[0]["why"])

    def test_admin_start_needs_an_owner(self) -> None:
        """IceGrid 3.7.8: ServerStartException, "The server is not owned by a session."."""
        node = self.grid.node("Master", "node1")
        model = self.master.admin_model
        failure = self.failureResultOf(model.control_server("Sess", "start"), NodeError)
        self.assertEqual(failure.getErrorMessage(), NOT_OWNED)
        self.assertEqual(node.activations, [])
        self.successResultOf(self.allocate("A"))
        d = model.control_server("Sess", "start")
        self.grid.network.flush()
        self.successResultOf(d)
        self.assertEqual(node.activations, ["Sess"])

    def test_a_session_server_is_held_whole(self) -> None:
        """IceGrid 3.7.8: not allocatable="true", still one session holds all its objects."""
        self.grid.node("Master", "node1")
        self.successResultOf(self.allocate("A", Identity("left")))
        self.failureResultOf(self.allocate("B", Identity("right"), 0), AllocationTimeoutException)
        self.successResultOf(self.allocate("A", Identity("right")))
        self.assertEqual(self.master.session_servers.owner("Pair"), "A")

    def test_other_servers_objects_stop_nothing(self) -> None:
        node = self.grid.node("Master", "node1")
        self.successResultOf(self.allocate("A", Identity("plain")))
        self.assertIsNotNone(self.locate("PlainAdapter"))  # on-demand: as before
        self.allocations.release("A", Identity("plain"))
        self.grid.network.flush()
        self.assertEqual(self.stops(node), [])

    def test_a_slave_never_starts_it(self) -> None:
        """Only the master knows the owners; a slave answers null."""
        slave = self.grid.start("Replica1")
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))
        node = self.grid.node("Replica1", "node1")
        self.successResultOf(self.allocate("A"))
        locate = Locate(slave, "SessAdapter")
        self.grid.run_until(lambda: locate.answered)
        self.assertIsNone(locate.ports())
        self.assertEqual(node.activations, [])
