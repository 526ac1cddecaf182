"""
L{gridreg.tls_gate}: which configurations keep the TLS libraries out, and
what a fresh interpreter that parsed such a configuration with the
C{gridregistry} or C{gridnode} options then imports with the reactor.

The gate is process-wide, and this test process has loaded pyOpenSSL
already (trial's reactor did), so the fresh interpreters are child
processes.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from typing import Any

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gridreg import tls_gate
from gridreg.certs import make_demo_certs
from tests._processes import REPO_ROOT

PLAIN = {
    "IceGrid.InstanceName": "DemoIceGrid",
    "IceGrid.Registry.Client.Endpoints": "tcp -h 127.0.0.1 -p 4061",
}


class TlsNeededTests(SynchronousTestCase):
    def test_plain_configuration(self) -> None:
        self.assertFalse(tls_gate.tls_needed(PLAIN))
        # a directory alone names no certificate
        self.assertFalse(tls_gate.tls_needed({**PLAIN, "IceSSL.DefaultDir": "/etc/grid"}))

    def test_each_certificate_property(self) -> None:
        for key in ("IceSSL.CAs", "IceSSL.CertFile", "IceSSL.KeyFile"):
            self.assertTrue(tls_gate.tls_needed({**PLAIN, key: "x.pem"}), key)

    def test_glacier2_session_managers(self) -> None:
        """Their SSLSessionManager reads the routers' client certificates with pyOpenSSL."""
        for key in (
            "IceGrid.Registry.SessionManager.Endpoints",
            "IceGrid.Registry.AdminSessionManager.Endpoints",
        ):
            self.assertTrue(tls_gate.tls_needed({**PLAIN, key: "tcp -h 127.0.0.1"}), key)

    def test_too_late_once_loaded(self) -> None:
        """In a process that has pyOpenSSL (this one), the gate stays open."""
        self.assertIn("OpenSSL", sys.modules)
        self.assertFalse(tls_gate.keep_tls_out(PLAIN))
        self.assertFalse(tls_gate.is_closed())


#: run in a fresh interpreter: parse the plugin's options, import what
#: twist would, and report what got loaded
CHILD = textwrap.dedent(
    """
    import json, sys
    from gridreg.{plugin}.tap import Options
    options = Options()
    options.parseOptions(sys.argv[1:])
    from twisted.internet import reactor, tcp
    from twisted.internet.interfaces import ITLSTransport
    import gridreg.{plugin}.service
    try:
        import OpenSSL
        refusal = None
    except ImportError as e:
        refusal = str(e)
    print(json.dumps({{
        "loaded": sorted(
            name for name in sys.modules
            if name.partition(".")[0] in ("OpenSSL", "cryptography", "service_identity")
            or name == "twisted.protocols.tls"
        ),
        "start_tls": ITLSTransport.implementedBy(tcp.Server),
        "refusal": refusal,
    }}))
    """
)


class FreshInterpreterTests(TestCase):
    timeout = 60

    async def child(self, plugin: str, *args: str) -> dict[str, Any]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-c", CHILD.format(plugin=plugin), *args],
            env=env,
            path=str(REPO_ROOT),
            reactor=reactor,
        )
        self.assertEqual(code, 0, err.decode())
        result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
        return result

    def registry_args(self, *properties: str) -> list[str]:
        args = ["--property", f"IceGrid.Registry.Data={os.path.abspath(self.mktemp())}"]
        for key, value in PLAIN.items():
            args += ["--property", f"{key}={value}"]
        for prop in properties:
            args += ["--property", prop]
        return args

    async def test_plain_registry(self) -> None:
        result = await self.child("registry", *self.registry_args())
        self.assertEqual(result["loaded"], [])
        self.assertFalse(result["start_tls"])
        self.assertIn("configured without TLS", result["refusal"])

    async def test_registry_with_certificates(self) -> None:
        certs = os.path.abspath(self.mktemp())
        make_demo_certs(certs, replicas=["Master"], instance="DemoIceGrid")
        result = await self.child(
            "registry",
            *self.registry_args(
                f"IceSSL.DefaultDir={certs}",
                "IceSSL.CAs=ca.pem",
                "IceSSL.CertFile=registry-Master.pem",
                "IceSSL.KeyFile=registry-Master.key",
                "IceGrid.Registry.Internal.Endpoints=tcp -h 127.0.0.1 -p 4063",
            ),
        )
        self.assertIn("OpenSSL", result["loaded"])
        self.assertIn("twisted.protocols.tls", result["loaded"])
        self.assertTrue(result["start_tls"])
        self.assertIsNone(result["refusal"])

    async def test_insecure_node(self) -> None:
        result = await self.child(
            "node",
            "--node-name", "node1",
            "--property", f"IceGrid.Node.Data={os.path.abspath(self.mktemp())}",
            "--property", "Ice.Default.Locator=DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061",
            "--property", "GridReg.Internal.Insecure=1",
        )
        self.assertEqual(result["loaded"], [])
        self.assertIn("configured without TLS", result["refusal"])

    async def test_node_with_certificates(self) -> None:
        certs = os.path.abspath(self.mktemp())
        make_demo_certs(certs, nodes=["node1"], instance="DemoIceGrid")
        result = await self.child(
            "node",
            "--node-name", "node1",
            "--property", f"IceGrid.Node.Data={os.path.abspath(self.mktemp())}",
            "--property", "Ice.Default.Locator=DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061",
            "--property", f"IceSSL.DefaultDir={certs}",
            "--property", "IceSSL.CAs=ca.pem",
            "--property", "IceSSL.CertFile=node-node1.pem",
            "--property", "IceSSL.KeyFile=node-node1.key",
        )
        self.assertIn("OpenSSL", result["loaded"])
        self.assertIsNone(result["refusal"])
