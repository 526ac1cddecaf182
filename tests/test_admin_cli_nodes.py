# -*- test-case-name: tests.test_admin_cli_nodes -*-
"""
C{gridadmin server ...}, C{gridadmin node ...} and command-line variables.

The server and node commands run through a real L{AdminSession} over AMP
in memory, against L{FakeReplica}: a responder written from the spec in
L{gridreg.protocol.node_commands} (the registry's own is built elsewhere).
"""

from __future__ import annotations

import fnmatch
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from gridreg.admin import cli
from gridreg.admin.session import AdminSession
from gridreg.admin.variables import VariableError, parse_assignments, set_variables
from gridreg.protocol.commands import AdminDescribe, AdminList
from gridreg.protocol.errors import NodeError, NodeUnreachableError, NotFoundError
from gridreg.protocol.node_commands import AdminNodeControl, AdminServerControl
from gridreg.registry.descriptors import parse_application
from tests.test_admin_cli import FakeSession, Run

LOCATOR = "DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061"
REPO = Path(__file__).resolve().parent.parent


def servers() -> dict[str, dict[str, Any]]:
    return {
        "HelloServer-1": {
            "server": "HelloServer-1",
            "application": "DemoApp",
            "node": "node1",
            "state": "active",
            "pid": 1234,
            "enabled": True,
            "activation": "on-demand",
        },
        "HelloServer-2": {
            "server": "HelloServer-2",
            "application": "DemoApp",
            "node": "node2",
            "state": "inactive",
            "pid": None,
            "enabled": False,
            "activation": "on-demand",
        },
        "Broken": {
            "server": "Broken",
            "application": "DemoApp",
            "node": "node1",
            "state": "inactive",
            "pid": None,
            "enabled": True,
            "activation": "manual",
        },
    }


NODES = {
    "node1": {
        "node": "node1",
        "alive": True,
        "hostname": "alpha",
        "os": "Linux",
        "load1": 0.1,
        "load5": 0.25,
        "load15": 1.0,
        "servers": ["Broken", "HelloServer-1"],
    },
    "node2": {
        "node": "node2",
        "alive": False,
        "hostname": "beta",
        "os": "Linux",
        "load1": None,
        "load5": None,
        "load15": None,
        "servers": ["HelloServer-2"],
    },
}


class FakeReplica(amp.CommandLocator):
    """
    A replica's admin side for servers and nodes, per the spec: reads from
    its tables, control relayed to "nodes" (node2 has no session).
    """

    def __init__(self) -> None:
        self.servers = servers()
        self.calls: list[tuple[str, ...]] = []
        self.shut_down: list[str] = []

    def _server(self, server: str) -> dict[str, Any]:
        if server not in self.servers:
            raise NotFoundError(f"server `{server}' is not deployed")
        return self.servers[server]

    @AdminList.responder
    def list(self, what: str, pattern: str, cursor: str, limit: int) -> dict[str, Any]:
        table = {"server": self.servers, "node": NODES}[what]
        items = [v for k, v in sorted(table.items()) if not pattern or fnmatch.fnmatch(k, pattern)]
        return {"items": json.dumps(items), "cursor": ""}

    @AdminDescribe.responder
    def describe(self, what: str, key: str, offset: int) -> dict[str, Any]:
        if what == "server":
            data = {
                **self._server(key),
                "exe": "/usr/bin/python3",
                "options": ["-m", "gridreg.demo.sample_server", "--name", "a b"],
                "envs": ["PYTHONUNBUFFERED=1"],
                "pwd": "",
                "adapters": [
                    {
                        "name": "Hello",
                        "id": f"{key}.Hello",
                        "endpoints": "tcp -h 127.0.0.1",
                        "replica_group_id": "HelloGroup",
                        "priority": 0,
                        "server_lifetime": True,
                        "objects": [],
                    }
                ],
                "properties": [["Hello.Endpoints", "tcp -h 127.0.0.1"], ["Greeting", "hi"]],
            }
        elif key in NODES:
            data = {**NODES[key], "release": "6.1", "machine": "x86_64", "nproc": 4}
        else:
            raise NotFoundError(f"node `{key}' is not known")
        text = json.dumps(data)
        return {"data": text[offset : offset + 100], "more": offset + 100 < len(text)}

    @AdminServerControl.responder
    def server_control(self, server: str, action: str, argument: str) -> dict[str, Any]:
        self.calls.append((server, action, argument))
        state = self._server(server)
        if state["node"] == "node2":
            raise NodeUnreachableError("node `node2' is unreachable: it has no session with Master")
        if action == "start":
            if not state["enabled"]:
                raise NodeError(f"cannot start server `{server}': it is disabled")
            if server == "Broken":
                raise NodeError(f"server `{server}' exited with status 1 before it was active")
            state.update(state="active", pid=4321)
        elif action == "stop":
            state.update(state="inactive", pid=None)
        elif action in ("enable", "disable"):
            state["enabled"] = action == "enable"
        return {
            "result": json.dumps(
                {k: state[k] for k in ("server", "node", "state", "pid", "enabled")}
            )
        }

    @AdminNodeControl.responder
    def node_control(self, node: str, action: str) -> dict[str, Any]:
        if node not in NODES:
            raise NotFoundError(f"node `{node}' is not known")
        info = NODES[node]
        if action == "ping":
            return {"result": json.dumps({"node": node, "alive": info["alive"]})}
        if not info["alive"]:
            raise NodeUnreachableError(f"node `{node}' is unreachable")
        if action == "load":
            loads = {k: info[k] for k in ("load1", "load5", "load15")}
            return {"result": json.dumps({"node": node, **loads})}
        self.shut_down.append(node)
        return {"result": json.dumps({"node": node})}


class Grid:
    """C{gridadmin} runs against a L{FakeReplica} over an in-memory AMP connection."""

    def __init__(self, testcase: SynchronousTestCase) -> None:
        self.testcase = testcase
        self.replica = FakeReplica()
        self.opened: list[Optional[str]] = []

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        clock = Clock()
        client, _, pump = connectedServerAndClient(
            lambda: amp.AMP(locator=self.replica), amp.AMP, clock=clock
        )

        async def open_session(
            reactor: Any,
            properties: Any,
            replica: Optional[str],
            timeout: float,
            warn: Callable[[str], None],
        ) -> AdminSession:
            self.opened.append(replica)
            return AdminSession(client, clock, timeout, replica or "Master", "DemoIceGrid", True)

        def runner(work: Callable[[Any], Deferred[int]]) -> int:
            d = work(None)
            pump.flush()
            return self.testcase.successResultOf(d)  # type: ignore[no-any-return]

        status = cli.main(
            ["--locator", LOCATOR, *argv],
            stdout=out,
            stderr=err,
            environ={},
            runner=runner,
            open_session=open_session,
        )
        return status, out.getvalue(), err.getvalue()


class ServerCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)

    def test_list_is_a_table_and_json_is_the_registry_items(self) -> None:
        status, out, _ = self.grid.run("server", "list")
        lines = out.splitlines()
        self.assertEqual(status, 0)
        self.assertEqual(
            lines[0].split(),
            ["SERVER", "APPLICATION", "NODE", "STATE", "PID", "ENABLED", "ACTIVATION"],
        )
        self.assertEqual(
            lines[2].split(),
            ["HelloServer-1", "DemoApp", "node1", "active", "1234", "yes", "on-demand"],
        )
        self.assertEqual(
            lines[3].split(),
            ["HelloServer-2", "DemoApp", "node2", "inactive", "-", "no", "on-demand"],
        )
        status, out, _ = self.grid.run("--json", "server", "list", "Hello*")
        self.assertEqual(json.loads(out), [servers()["HelloServer-1"], servers()["HelloServer-2"]])

    def test_describe(self) -> None:
        status, out, _ = self.grid.run("server", "describe", "HelloServer-1")
        self.assertEqual(status, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0], "server `HelloServer-1'")
        self.assertIn("exe:         /usr/bin/python3", lines)
        self.assertIn("options:     -m gridreg.demo.sample_server --name 'a b'", lines)
        self.assertIn("envs:", lines)
        self.assertIn("  PYTHONUNBUFFERED=1", lines)
        adapters = lines.index("adapters:")
        self.assertEqual(lines[adapters + 1].split(), ["NAME", "ID", "REPLICA-GROUP", "ENDPOINTS"])
        self.assertEqual(
            lines[adapters + 2].split(),
            ["Hello", "HelloServer-1.Hello", "HelloGroup", "tcp", "-h", "127.0.0.1"],
        )
        self.assertEqual(
            lines[lines.index("properties:") + 1 :],
            ["  Hello.Endpoints = tcp -h 127.0.0.1", "  Greeting = hi"],
        )
        status, out, _ = self.grid.run("--json", "server", "describe", "HelloServer-1")
        self.assertEqual(json.loads(out)["exe"], "/usr/bin/python3")

    def test_state_as_icegridadmin_prints_it(self) -> None:
        self.assertEqual(
            self.grid.run("server", "state", "HelloServer-1"),
            (0, "active (pid = 1234, enabled)\n", ""),
        )
        self.grid.replica.servers["HelloServer-1"].update(state="inactive", pid=None, enabled=False)
        self.assertEqual(
            self.grid.run("server", "state", "HelloServer-1"), (0, "inactive (disabled)\n", "")
        )
        self.assertEqual(self.grid.replica.calls[0], ("HelloServer-1", "state", ""))

    def test_pid(self) -> None:
        self.assertEqual(self.grid.run("server", "pid", "HelloServer-1"), (0, "1234\n", ""))
        self.assertEqual(
            self.grid.run("server", "pid", "Broken"),
            (cli.EXIT_REFUSED, "", "gridadmin: server `Broken' is not running\n"),
        )
        status, out, _ = self.grid.run("--json", "server", "pid", "Broken")
        self.assertEqual((status, json.loads(out)["pid"]), (cli.EXIT_REFUSED, None))

    def test_start_stop_enable_disable(self) -> None:
        grid = self.grid
        self.assertEqual(
            grid.run("server", "stop", "HelloServer-1"),
            (0, "server `HelloServer-1' stopped: inactive (enabled)\n", ""),
        )
        self.assertEqual(
            grid.run("server", "disable", "HelloServer-1"),
            (0, "server `HelloServer-1' disabled: inactive (disabled)\n", ""),
        )
        status, _, err = grid.run("server", "start", "HelloServer-1")
        self.assertEqual(
            (status, err), (1, "gridadmin: cannot start server `HelloServer-1': it is disabled\n")
        )
        grid.run("server", "enable", "HelloServer-1")
        self.assertEqual(
            grid.run("server", "start", "HelloServer-1"),
            (0, "server `HelloServer-1' started: active (pid = 4321, enabled)\n", ""),
        )
        status, out, _ = grid.run("--json", "server", "stop", "HelloServer-1")
        self.assertEqual(
            json.loads(out),
            {
                "server": "HelloServer-1",
                "node": "node1",
                "state": "inactive",
                "pid": None,
                "enabled": True,
            },
        )

    def test_a_server_that_fails_to_start(self) -> None:
        """The node's reason, on one line; exit 1."""
        status, out, err = self.grid.run("server", "start", "Broken")
        self.assertEqual((status, out), (cli.EXIT_REFUSED, ""))
        self.assertEqual(
            err, "gridadmin: server `Broken' exited with status 1 before it was active\n"
        )

    def test_signal_names_are_checked_before_connecting(self) -> None:
        status, out, _ = self.grid.run("server", "signal", "HelloServer-1", "usr1")
        self.assertEqual(status, 0)
        self.assertEqual(out, "server `HelloServer-1' sent SIGUSR1: active (pid = 1234, enabled)\n")
        self.grid.run("server", "signal", "HelloServer-1", "15")
        self.assertEqual(
            self.grid.replica.calls,
            [("HelloServer-1", "signal", "SIGUSR1"), ("HelloServer-1", "signal", "15")],
        )
        status, out, err = self.grid.run("server", "signal", "HelloServer-1", "BOGUS")
        self.assertEqual((status, out), (cli.EXIT_USAGE, ""))
        self.assertEqual(err, "gridadmin: server signal: unknown signal `BOGUS'\n")
        self.assertEqual(len(self.grid.opened), 2)

    def test_unknown_server(self) -> None:
        self.assertEqual(
            self.grid.run("server", "start", "Nope"),
            (cli.EXIT_REFUSED, "", "gridadmin: server `Nope' is not deployed\n"),
        )

    def test_unreachable_node_has_its_own_status(self) -> None:
        status, out, err = self.grid.run("server", "state", "HelloServer-2")
        self.assertEqual((status, out), (cli.EXIT_NODE_UNREACHABLE, ""))
        self.assertEqual(
            err, "gridadmin: node `node2' is unreachable: it has no session with Master\n"
        )

    def test_through_a_slave(self) -> None:
        """Control goes to any replica: --replica is passed on and nothing refuses it."""
        status, out, _ = self.grid.run("--replica", "Replica1", "server", "stop", "HelloServer-1")
        self.assertEqual((status, self.grid.opened), (0, ["Replica1"]))
        self.assertIn("stopped", out)


class NodeCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.grid = Grid(self)

    def test_list(self) -> None:
        status, out, _ = self.grid.run("node", "list")
        lines = out.splitlines()
        self.assertEqual(
            [line.split() for line in lines],
            [
                ["NODE", "ALIVE", "HOSTNAME", "OS", "LOAD1", "LOAD5", "LOAD15", "SERVERS"],
                ["node1", "yes", "alpha", "Linux", "0.10", "0.25", "1.00", "2"],
                ["node2", "no", "beta", "Linux", "-", "-", "-", "1"],
            ],
        )
        status, out, _ = self.grid.run("--json", "node", "list")
        self.assertEqual(json.loads(out), [NODES["node1"], NODES["node2"]])

    def test_describe(self) -> None:
        status, out, _ = self.grid.run("node", "describe", "node1")
        lines = out.splitlines()
        self.assertEqual(lines[0], "node `node1'")
        self.assertIn("hostname: alpha", lines)
        self.assertIn("nproc:    4", lines)
        self.assertEqual(lines[-3:], ["servers:", "  Broken", "  HelloServer-1"])
        status, _, err = self.grid.run("node", "describe", "nope")
        self.assertEqual((status, err), (cli.EXIT_REFUSED, "gridadmin: node `nope' is not known\n"))

    def test_ping(self) -> None:
        self.assertEqual(self.grid.run("node", "ping", "node1"), (0, "node `node1' is up\n", ""))
        self.assertEqual(
            self.grid.run("node", "ping", "node2"), (cli.EXIT_REFUSED, "node `node2' is down\n", "")
        )
        status, out, _ = self.grid.run("--json", "node", "ping", "node2")
        self.assertEqual(json.loads(out), {"node": "node2", "alive": False})

    def test_load(self) -> None:
        self.assertEqual(
            self.grid.run("node", "load", "node1"),
            (0, "load average (1/5/15): 0.10 / 0.25 / 1.00\n", ""),
        )
        self.assertEqual(
            self.grid.run("node", "load", "node2"),
            (cli.EXIT_NODE_UNREACHABLE, "", "gridadmin: node `node2' is unreachable\n"),
        )

    def test_shutdown(self) -> None:
        self.assertEqual(
            self.grid.run("node", "shutdown", "node1"), (0, "node `node1' shut down\n", "")
        )
        self.assertEqual(self.grid.replica.shut_down, ["node1"])

    def test_help_documents_the_node_status(self) -> None:
        result = Run(self, ["--help"])
        self.assertIn("6  the server's node is unreachable", result.out)


APP = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- the demo -->
<icegrid>
  <application name="A">
    <description>kept &amp; intact</description>
    <variable name="greeting" value="from-file"/>
    <variable name="other" value="o"></variable>
    <node name="n1">
      <server id="S" exe="/bin/true">
        <property name="Greeting" value="${greeting}"/>
        <property name="Who" value="${who}"/>
      </server>
    </node>
  </application>
</icegrid>
"""


class VariableTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        Path(path).write_text(text, encoding="utf-8")
        return path

    def test_command_line_values_override_the_descriptors(self) -> None:
        """As icegridadmin: the registry sees the command line's value (greeting)."""
        path = self.write(APP)
        result = Run(
            self,
            ["--locator", LOCATOR, "application", "add", path, "greeting=hi there", "who=me"],
        )
        self.assertEqual(result.status, 0, result.err)
        ((_, xml, update),) = result.session.calls
        self.assertFalse(update)
        server = parse_application(xml).nodes[0].servers[0]
        self.assertEqual(dict(server.properties), {"Greeting": "hi there", "Who": "me"})

    def test_only_the_variables_change(self) -> None:
        edited = set_variables(APP, [("greeting", "hi"), ("who", 'a<"b">&c')])
        self.assertEqual(
            edited,
            APP.replace('    <variable name="greeting" value="from-file"/>\n', "").replace(
                '  <application name="A">\n',
                '  <application name="A">\n'
                '    <variable name="greeting" value="hi"/>\n'
                '    <variable name="who" value=\'a&lt;"b"&gt;&amp;c\'/>\n',
            ),
        )
        self.assertEqual(set_variables(APP, []), APP)

    def test_update_and_a_self_closed_application(self) -> None:
        path = self.write('<icegrid>\n  <application name="A"/>\n</icegrid>\n')
        result = Run(self, ["--locator", LOCATOR, "application", "update", path, "x=1", "x=2"])
        ((_, xml, update),) = result.session.calls
        self.assertTrue(update)
        self.assertEqual(
            xml,
            '<icegrid>\n  <application name="A">\n    <variable name="x" value="2"/>\n'
            "  </application>\n</icegrid>\n",
        )
        self.assertEqual(parse_application(xml).name, "A")

    def test_the_demo_application_takes_variables(self) -> None:
        xml = set_variables((REPO / "etc" / "demo-app.xml").read_text(), [("python", "/opt/py")])
        servers = parse_application(xml).nodes[0].servers
        self.assertEqual([s.exe for s in servers], ["/opt/py", "/opt/py"])

    def test_bad_assignments_are_usage_errors(self) -> None:
        path = self.write(APP)
        for word in ("novalue", "=value", " =x"):
            session = FakeSession()
            result = Run(
                self, ["--locator", LOCATOR, "application", "add", path, word], session=session
            )
            self.assertEqual(result.status, cli.EXIT_USAGE, word)
            self.assertIn(f"bad variable assignment `{word}'", result.err)
            self.assertEqual(result.opened, [])
        self.assertEqual(parse_assignments(["a==b", "b="]), [("a", "=b"), ("b", "")])

    def test_files_the_variables_cannot_go_into(self) -> None:
        laughs = (
            '<?xml version="1.0"?>\n<!DOCTYPE icegrid [<!ENTITY a "aaaa">]>\n'
            '<icegrid><application name="&a;"/></icegrid>'
        )
        for text, reason in (
            ("<icegrid><application name='A'>", "not well-formed XML"),
            ("<icegrid><node name='n'/></icegrid>", "no <application>"),
            (laughs, "refused XML"),
        ):
            with self.assertRaises(VariableError) as caught:
                set_variables(text, [("x", "1")])
            self.assertIn(reason, str(caught.exception))
            result = Run(
                self, ["--locator", LOCATOR, "application", "add", self.write(text), "x=1"]
            )
            self.assertEqual((result.status, result.opened), (cli.EXIT_USAGE, []))
            self.assertIn("cannot set variables in", result.err)
