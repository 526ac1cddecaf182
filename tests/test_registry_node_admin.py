"""
gridadmin's server and node commands at a slave: listings and descriptions
from the nodes' live state, control relayed to the node over its session
with that replica (nothing is written, so the master is not needed).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.protocols import amp

from gridreg.protocol.commands import PROTOCOL_VERSION, AdminDescribe, AdminList, Hello
from gridreg.protocol.errors import NodeError, NodeUnreachableError, NotFoundError
from gridreg.protocol.node_commands import AdminNodeControl, AdminServerControl
from tests._fake_node import connect
from tests.test_fencing import PORTS
from tests.test_registry_nodes import NodeTestCase


class AdminClient(amp.AMP):
    pass


class SlaveAdminTests(NodeTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.slave = self.with_slave()
        self.node = self.grid.node("Replica1", "node1")
        self.grid.wait(self.node.keepalive(0.25, 0.5, 0.75))
        self.admin = connect(self.grid.network, PORTS["Replica1"][2], AdminClient())  # type: ignore[arg-type]
        self.grid.wait(
            self.admin.callRemote(Hello, version=PROTOCOL_VERSION, role="admin", name="operator")
        )

    def ask(self, command: type[amp.Command], **kwargs: Any) -> Any:
        return self.grid.wait(self.admin.callRemote(command, **kwargs))

    def refused(self, command: type[amp.Command], error: type[Exception], **kwargs: Any) -> str:
        captured: Deferred[Any] = Deferred()
        self.admin.callRemote(command, **kwargs).chainDeferred(captured)
        self.grid.run_until(lambda: captured.called)
        return self.failureResultOf(captured, error).getErrorMessage()

    def control(self, server: str, action: str, argument: str = "") -> dict[str, Any]:
        answer = self.ask(AdminServerControl, server=server, action=action, argument=argument)
        return json.loads(answer["result"])

    def test_list_servers_with_their_live_state(self) -> None:
        self.control("S1", "start")
        answer = self.ask(AdminList, what="server", pattern="", cursor="", limit=0)
        items = {i["server"]: i for i in json.loads(answer["items"])}
        self.assertEqual(sorted(items), ["G1", "G2", "M1", "S1", "S2", "S3"])
        self.assertEqual(
            items["S1"],
            {
                "server": "S1",
                "application": "App",
                "node": "node1",
                "state": "active",
                "pid": 7000,
                "enabled": True,
                "activation": "on-demand",
            },
        )
        self.assertEqual(items["S2"]["state"], "unknown")  # node2 has no session here

    def test_describe_a_server_and_a_node(self) -> None:
        server = json.loads(self.ask(AdminDescribe, what="server", key="S1", offset=0)["data"])
        self.assertEqual(server["descriptor"]["exe"], "/bin/s1")
        self.assertEqual([a["id"] for a in server["descriptor"]["adapters"]], ["A1"])
        node = json.loads(self.ask(AdminDescribe, what="node", key="node1", offset=0)["data"])
        self.assertEqual(node["hostname"], "node1.example")
        self.assertEqual((node["load1"], node["load5"], node["load15"]), (0.25, 0.5, 0.75))
        self.assertEqual(node["servers"], ["G1", "M1", "S1"])
        self.assertTrue(node["alive"])
        listed = json.loads(
            self.ask(AdminList, what="node", pattern="", cursor="", limit=0)["items"]
        )
        self.assertEqual(
            {n["node"]: n["alive"] for n in listed}, {"node1": True, "node2": False, "node3": False}
        )

    def test_control_is_relayed_to_the_node(self) -> None:
        serial = self.master.store.serial
        started = self.control("M1", "start")  # a manual server starts too
        self.assertEqual((started["state"], started["node"]), ("active", "node1"))
        self.assertEqual(self.node.activations, ["M1"])
        self.assertEqual(self.control("M1", "disable")["enabled"], False)
        self.assertEqual(self.control("M1", "stop")["state"], "inactive")
        self.control("M1", "signal", "SIGUSR1")
        self.assertEqual(self.control("M1", "pid")["pid"], None)
        self.assertIn(("signal", {"server": "M1", "signal": "SIGUSR1"}), self.node.calls)
        self.assertIn(("enable", {"server": "M1", "enabled": False}), self.node.calls)
        self.assertEqual(self.master.store.serial, serial, "nothing written")

    def test_control_failures(self) -> None:
        self.assertIn(
            "Nobody",
            self.refused(
                AdminServerControl, NotFoundError, server="Nobody", action="start", argument=""
            ),
        )
        self.assertIn(
            "node2",
            self.refused(
                AdminServerControl, NodeUnreachableError, server="S2", action="start", argument=""
            ),
        )
        self.node.failing["S1"] = "cannot execute `/bin/s1'"
        self.assertIn(
            "cannot execute",
            self.refused(AdminServerControl, NodeError, server="S1", action="start", argument=""),
        )

    def test_node_control(self) -> None:
        ping = json.loads(self.ask(AdminNodeControl, node="node2", action="ping")["result"])
        self.assertEqual(ping, {"node": "node2", "alive": False})
        load = json.loads(self.ask(AdminNodeControl, node="node1", action="load")["result"])
        self.assertEqual(load, {"node": "node1", "load1": 0.25, "load5": 0.5, "load15": 0.75})
        self.ask(AdminNodeControl, node="node1", action="shutdown")
        self.assertIn(("shutdown", {}), self.node.calls)
        self.refused(AdminNodeControl, NodeUnreachableError, node="node2", action="shutdown")
        self.refused(AdminNodeControl, NotFoundError, node="nobody", action="ping")
