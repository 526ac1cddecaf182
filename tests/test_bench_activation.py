"""
The node benchmarks' own logic, without processes: the descriptors they
deploy parse as gridreg parses them, the server's timestamps are read back
from its output file, and a simulated node answers C{DeployServers} as the
node protocol says.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from twisted.trial import unittest

from bench import node_sessions
from bench._node_grid import ADAPTER, NODE, SERVER, descriptor, last_server_times
from gridreg.registry.descriptor_xml import parse_application_xml
from gridreg.registry.descriptors import server_to_json


class DescriptorTests(unittest.TestCase):
    def test_activation_descriptor(self) -> None:
        """One on-demand server on node1, adapter HelloAdapter, run by the Ice Python."""
        app = parse_application_xml(descriptor())
        (node,) = app.nodes
        self.assertEqual(node.name, NODE)
        (server,) = node.servers
        self.assertEqual(server.id, SERVER)
        self.assertEqual(server.activation, "on-demand")
        self.assertEqual([a.id for a in server.adapters], [ADAPTER])
        self.assertTrue(server.options[0].endswith("bench/hello_node_server.py"))
        self.assertEqual(server.user, "root" if os.geteuid() == 0 else "")

    def test_sessions_application(self) -> None:
        """servers_per_node manual servers on every node."""
        app = parse_application_xml(node_sessions.application(["node0", "node1"], 2))
        found = {n.name: [s.id for s in n.servers] for n in app.nodes}
        self.assertEqual(
            found, {"node0": ["node0-s0", "node0-s1"], "node1": ["node1-s0", "node1-s1"]}
        )
        self.assertEqual({s.activation for n in app.nodes for s in n.servers}, {"manual"})


class ServerTimesTests(unittest.TestCase):
    def test_last_complete_start(self) -> None:
        """The last start with all three timestamps; a start still under way is skipped."""
        path = Path(tempfile.mkdtemp()) / "hello.out"
        self.addCleanup(lambda: path.unlink(missing_ok=True))
        path.write_text(
            "started 1.0\nregistering 1.2\nactivated 1.3\n"
            "started 5.0\nregistering 5.25\nactivated 5.5\n"
            "started 9.0\n"
        )
        times = last_server_times(path)
        assert times is not None
        self.assertEqual((times.started, times.registering, times.activated), (5.0, 5.25, 5.5))

    def test_missing_file(self) -> None:
        self.assertIsNone(last_server_times(Path(tempfile.mkdtemp()) / "none.out"))


class SimulatedNodeTests(unittest.TestCase):
    def test_deploy_servers(self) -> None:
        """A deployment taken from the chunked channel; an older serial is not applied."""

        class Bench:
            deployments = 0
            lost = 0

        node = node_sessions.SimulatedNode(Bench(), "node0")  # type: ignore[arg-type]
        server = parse_application_xml(node_sessions.application(["node0"], 1)).nodes[0].servers[0]
        blob = json.dumps([{"application": "Sessions", "descriptor": server_to_json(server)}])
        data = blob.encode("utf-8")

        def send(transfer: str) -> None:
            node.transfers.begin(transfer, len(data), hashlib.sha256(data).hexdigest())
            node.transfers.chunk(transfer, 0, data)

        send("t1")
        self.assertEqual(node.deploy_servers("t1", 3), {"applied": True})
        self.assertEqual(node.servers, ["node0-s0"])
        self.assertTrue(node.deployed.called)
        send("t2")
        self.assertEqual(node.deploy_servers("t2", 2), {"applied": False})
        self.assertEqual(node.bench.deployments, 2)
