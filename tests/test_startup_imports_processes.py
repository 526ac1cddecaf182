"""
What a real C{python -m twisted gridregistry} process loads: without TLS
configured, none of the TLS libraries (L{gridreg.tls_gate}), and it still
serves real Ice clients; with certificates, the TLS libraries, and it serves
real Ice clients over C{ssl}.

What a process has loaded is read from outside, in C{/proc/PID/maps}:
pyOpenSSL runs on C{cryptography}'s compiled bindings, so a process that
imported either has them mapped.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from gridreg.certs import make_demo_certs
from tests._processes import (
    RunningRegistry,
    free_port,
    ice_missing,
    run_ice_client,
    start_gridregistry,
)


def tls_libraries_mapped(registry: RunningRegistry) -> bool:
    """Whether the registry process has C{cryptography}'s compiled bindings mapped."""
    pid = registry.process.pid
    assert pid is not None
    return "/cryptography/" in Path(f"/proc/{pid}/maps").read_text()


class StartupImportsTests(TestCase):
    skip = ice_missing()
    timeout = 60

    async def test_plain_registry_loads_no_tls(self) -> None:
        registry = await start_gridregistry(reactor, self.mktemp())
        self.addCleanup(registry.stop)
        [query] = await run_ice_client(
            reactor, registry.locator, [["findObjectById", "DemoIceGrid/Query"]]
        )
        self.assertTrue(query["ok"], query)
        self.assertFalse(tls_libraries_mapped(registry))

    async def test_registry_with_certificates_serves_tls(self) -> None:
        workdir = Path(self.mktemp()).resolve()
        certs = workdir / "certs"
        make_demo_certs(str(certs), replicas=["Master"], admins=["client"], instance="DemoIceGrid")
        port = free_port()
        tls = {"IceSSL.DefaultDir": str(certs), "IceSSL.CAs": "ca.pem"}
        registry = await start_gridregistry(
            reactor,
            workdir,
            {
                "IceGrid.Registry.Client.Endpoints": f"ssl -h 127.0.0.1 -p {port}",
                "IceSSL.CertFile": "registry-Master.pem",
                "IceSSL.KeyFile": "registry-Master.key",
                **tls,
            },
        )
        self.addCleanup(registry.stop)
        [query] = await run_ice_client(
            reactor,
            f"DemoIceGrid/Locator:ssl -h 127.0.0.1 -p {port}",
            [["findObjectById", "DemoIceGrid/Query"]],
            {
                "Ice.Plugin.IceSSL": "IceSSL:createIceSSL",
                "IceSSL.CertFile": "admin-client.pem",
                "IceSSL.KeyFile": "admin-client.key",
                **tls,
            },
        )
        self.assertTrue(query["ok"], query)
        self.assertTrue(tls_libraries_mapped(registry))
