# -*- test-case-name: tests.test_demo -*-
"""
The demo grid's files: what C{python3 -m gridreg.demo} writes before it
starts anything, and the sample server's configuration. The processes
themselves are in L{tests.test_demo_processes}.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import PropertyError, load_file
from gridreg.demo import sample_server
from gridreg.demo.grid import NODES, PACKAGE_ROOT, REPLICAS, DemoGrid, sample_application
from gridreg.registry.descriptors import parse_application


def free_port_block(size: int = 23) -> int:
    """A base port with C{size} free ports after it (checked, not reserved)."""
    for base in range(20000, 60000, 97):
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports")


class DemoFilesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).resolve()
        self.grid = DemoGrid(None, self.root, 4061)
        self.grid.write_files()

    def test_a_master_a_slave_and_two_nodes(self) -> None:
        self.assertEqual((REPLICAS, NODES), (("Master", "Replica1"), ("node1", "node2")))
        locator = "DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061:tcp -h 127.0.0.1 -p 4071"
        for node in NODES:
            properties = load_file(self.root / f"{node}.cfg")
            self.assertEqual(properties["IceGrid.Node.Name"], node)
            self.assertEqual(properties["Ice.Default.Locator"], locator)
            self.assertEqual(properties["IceGrid.Node.Data"], str(self.root / "nodes" / node))
            certs = Path(properties["IceSSL.DefaultDir"])
            for key in ("IceSSL.CAs", "IceSSL.CertFile", "IceSSL.KeyFile"):
                self.assertTrue((certs / properties[key]).is_file(), key)
            self.assertEqual(properties["IceSSL.CertFile"], f"node-{node}.pem")
        master = load_file(self.root / "Master.cfg")
        self.assertEqual(master["IceGrid.Registry.Client.Endpoints"], "tcp -h 127.0.0.1 -p 4061")
        self.assertEqual(load_file(self.root / "client.cfg")["Ice.Default.Locator"], locator)

    def test_the_application_runs_the_packaged_server_with_this_python(self) -> None:
        app = parse_application(self.grid.application_file.read_text())
        self.assertEqual(app.replica_groups[0].id, "HelloGroup")
        self.assertEqual(
            (app.replica_groups[0].policy.type, app.replica_groups[0].policy.n_replicas),
            ("round-robin", 1),
        )
        placed = {node.name: [s.id for s in node.servers] for node in app.nodes}
        self.assertEqual(placed, {"node1": ["HelloServer-1"], "node2": ["HelloServer-2"]})
        for node in app.nodes:
            (server,) = node.servers
            self.assertEqual(server.exe, sys.executable)
            self.assertEqual(server.options, ("-m", "gridreg.demo.sample_server"))
            self.assertEqual(server.activation, "on-demand")
            self.assertIn(f"PYTHONPATH={PACKAGE_ROOT}", server.envs)
            self.assertEqual(dict(server.properties)["Demo.ServerId"], server.id)
            (adapter,) = server.adapters
            self.assertEqual((adapter.name, adapter.replica_group_id), ("Hello", "HelloGroup"))
        self.assertTrue((PACKAGE_ROOT / "gridreg" / "demo" / "sample_server.py").is_file())

    def test_the_shipped_descriptor_is_kept_apart_from_the_written_one(self) -> None:
        """The package's copy names no interpreter; the demo sets it with variables."""
        self.assertIn('<variable name="python" value="python3"/>', sample_application())


class SampleServerTests(SynchronousTestCase):
    def test_properties_from_the_node(self) -> None:
        config = self.mktemp()
        Path(config).write_text(
            "Hello.Endpoints=tcp -h 127.0.0.1\nHello.AdapterId=HelloServer-1.Hello\n"
            "Ice.Admin.ServerId=HelloServer-1\nDemo.Identity=hello\n"
        )
        properties = sample_server.read_properties(
            [f"--Ice.Config={config}", "--Demo.Identity=other"]
        )
        self.assertEqual(properties["Hello.AdapterId"], "HelloServer-1.Hello")
        self.assertEqual(properties["Demo.Identity"], "other")
        self.assertEqual(sample_server.server_name(properties), "HelloServer-1")
        properties.set("Demo.ServerId", "Named")
        self.assertEqual(sample_server.server_name(properties), "Named")
        with self.assertRaises(PropertyError):
            sample_server.read_properties(["positional"])
