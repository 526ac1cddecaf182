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

from tests._processes import (
    RunningRegistry,
    ice_missing,
    run_ice_client,
    start_gridregistry,
    start_ssl_gridregistry,
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
        ssl = await start_ssl_gridregistry(reactor, self.mktemp())
        registry = ssl.registry
        self.addCleanup(registry.stop)
        [query] = await run_ice_client(
            reactor, ssl.locator, [["findObjectById", "DemoIceGrid/Query"]], ssl.client_properties
        )
        self.assertTrue(query["ok"], query)
        self.assertTrue(tls_libraries_mapped(registry))
