"""
The generated server configuration file
(L{gridreg.node.server_config}) against what icegridnode 3.7 wrote for the
same descriptor (the fixture in the module docstring there, repeated here).
"""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from gridreg.node.server_config import (
    escape_property,
    node_variables,
    render_config,
    substitute_node_variables,
    write_config,
)
from gridreg.registry.descriptor_model import AdapterDescriptor, ObjectDescriptor, ServerDescriptor
from tests._node_fakes import node_config

#: what icegridnode 3.7 wrote (ports and the data directories replaced); the
#: NodeVars line is checked separately, it depends on the host
ICEGRIDNODE_FILE = """\
# Server configuration
Ice.Admin.ServerId=S1
Ice.Admin.Endpoints=tcp -h localhost
Ice.ProgramName=S1
# Object adapter A
A.Endpoints=tcp -h 127.0.0.1
A.AdapterId=S1.A
# Object adapter B
B.Endpoints=tcp -h 127.0.0.1
B.AdapterId=BId
B.ReplicaGroupId=RG
# Server descriptor properties
Identity=obj1
P1=v1
NodeVars=NODEVARS
P0=v0
Ice.StdErr=/d/out/S1.err
Ice.StdOut=/d/out/S1.out
Ice.Default.Locator=IceGrid/Locator:tcp -h 127.0.0.1 -p 4061
# Node properties override
Foo.Bar=baz
Ice.Trace.Network=1
"""

VARS = "${node} ${node.os} ${node.hostname} ${node.release} ${node.version} ${node.machine} ${node.datadir} ${node.data}"

SERVER = ServerDescriptor(
    id="S1",
    exe="/usr/bin/python3",
    activation="manual",
    properties=(("P1", "v1"), ("NodeVars", VARS), ("P0", "v0")),
    adapters=(
        AdapterDescriptor(
            name="A",
            id="S1.A",
            endpoints="tcp -h 127.0.0.1",
            server_lifetime=False,
            objects=(ObjectDescriptor("obj1", property="Identity"),),
        ),
        AdapterDescriptor(
            name="B",
            id="BId",
            endpoints="tcp -h 127.0.0.1",
            replica_group_id="RG",
            server_lifetime=False,
        ),
    ),
)


def _config() -> object:
    return node_config(
        "/d",
        output_dir="/d/out",
        properties_override=(("Ice.Trace.Network", "1"), ("Foo.Bar", "baz")),
    )


class ConfigFileTests(SynchronousTestCase):
    def test_as_icegridnode(self) -> None:
        config = _config()
        variables = node_variables(config)  # type: ignore[arg-type]
        server = substitute_node_variables(SERVER, variables, "/d")
        header, blank, *body = render_config(server, config, 0.0).split("\n")  # type: ignore[arg-type]
        self.assertRegex(header, r"^# Configuration file \(\d\d/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}\)$")
        self.assertEqual(blank, "")
        expected_vars = (
            " ".join(
                variables[k]
                for k in (
                    "node",
                    "node.os",
                    "node.hostname",
                    "node.release",
                    "node.version",
                    "node.machine",
                )
            )
            + " /d /d"
        )
        self.assertEqual(
            "\n".join(body),
            ICEGRIDNODE_FILE.replace("NODEVARS", escape_property(expected_vars)),
        )

    def test_node_variables(self) -> None:
        variables = node_variables(_config())  # type: ignore[arg-type]
        self.assertEqual(variables["node"], "node1")
        self.assertEqual(variables["node.data"], "/d")
        self.assertEqual(variables["node.datadir"], "/d")
        self.assertEqual(variables["node.os"], os.uname().sysname)
        self.assertEqual(variables["node.release"], os.uname().release)
        server = substitute_node_variables(
            ServerDescriptor(
                id="S", exe="${node.data}/bin", options=("${server.data}",), envs=("D=${node}",)
            ),
            variables,
            "/d",
        )
        self.assertEqual(
            (server.exe, server.options, server.envs),
            ("/d/bin", ("/d/servers/S/data",), ("D=node1",)),
        )

    def test_without_output_and_overrides(self) -> None:
        """No Ice.StdOut/StdErr without IceGrid.Node.Output, no override comment without overrides."""
        text = render_config(
            ServerDescriptor(id="S2", exe="x", properties=(("P", "1"), ("P", "2"))),
            node_config("/d"),
            0.0,
        )  # type: ignore[arg-type]
        self.assertEqual(
            text.split("\n", 2)[2],
            "# Server configuration\nIce.Admin.ServerId=S2\nIce.Admin.Endpoints=tcp -h localhost\n"
            "Ice.ProgramName=S2\n# Server descriptor properties\nP=1\nP=2\n"
            "Ice.Default.Locator=IceGrid/Locator:tcp -h 127.0.0.1 -p 4061\n",
        )

    def test_no_properties_heading_without_properties(self) -> None:
        """icegridnode writes `# Server descriptor properties' only above some (docs/icegrid-node-facts.md)."""
        text = render_config(ServerDescriptor(id="S3", exe="x"), node_config("/d"), 0.0)  # type: ignore[arg-type]
        self.assertNotIn("# Server descriptor properties", text)

    def test_allocatable_property_set_like_an_objects(self) -> None:
        from gridreg.registry.descriptor_model import AdapterDescriptor, ObjectDescriptor

        adapter = AdapterDescriptor(
            "A", "S4.A", allocatables=(ObjectDescriptor("cat/res", "::T", "A.Resource"),)
        )
        text = render_config(
            ServerDescriptor(id="S4", exe="x", adapters=(adapter,)), node_config("/d"), 0.0
        )  # type: ignore[arg-type]
        self.assertIn("# Server descriptor properties\nA.Resource=cat/res\n", text)

    def test_redirect_err_to_out(self) -> None:
        text = render_config(
            ServerDescriptor(id="S", exe="x"),
            node_config("/d", output_dir="/o", redirect_err_to_out=True),
            0.0,
        )  # type: ignore[arg-type]
        self.assertIn("Ice.StdErr=/o/S.out\nIce.StdOut=/o/S.out\n", text)

    def test_a_descriptors_own_stdout_wins_over_output(self) -> None:
        """icegridnode 3.7.8 wrote Ice.StdOut=<own> and only its Output's Ice.StdErr."""
        text = render_config(
            ServerDescriptor(id="S3", exe="x", properties=(("Ice.StdOut", "/l/own.out"),)),
            node_config("/d", output_dir="/o"),
            0.0,
        )  # type: ignore[arg-type]
        self.assertIn(
            "# Server descriptor properties\nIce.StdOut=/l/own.out\nIce.StdErr=/o/S3.err\n"
            "Ice.Default.Locator=",
            text,
        )

    def test_escaping(self) -> None:
        self.assertEqual(escape_property("a #1"), "a \\#1")
        self.assertEqual(escape_property("k=v", True), "k\\=v")
        self.assertEqual(escape_property(" x "), "\\ x\\ ")
        self.assertEqual(escape_property("a\\#"), "a\\\\\\#")
        self.assertEqual(escape_property("C:\\dir"), "C:\\dir")

    def test_written_where_icegridnode_writes_it(self) -> None:
        data = os.path.abspath(self.mktemp())
        path = write_config(ServerDescriptor(id="S", exe="x"), node_config(data), 0.0)  # type: ignore[arg-type]
        self.assertEqual(path, os.path.join(data, "servers", "S", "config", "config"))
        for sub in ("data", "dbs", "distrib"):
            self.assertTrue(os.path.isdir(os.path.join(data, "servers", "S", sub)))
        with open(path) as f:
            self.assertTrue(re.match(r"# Configuration file \(", f.read()))
