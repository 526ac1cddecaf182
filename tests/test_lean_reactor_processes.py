"""
A real C{twist gridregistry} runs on L{gridreg.lean_reactor} unless
C{GridReg.LeanReactor=0}, which keeps Twisted's own epoll reactor.
"""

from __future__ import annotations

import json
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests._processes import start_gridregistry


class RegistryReactorTests(TestCase):
    timeout = 60

    async def reactor_logged(self, config: dict[str, str]) -> str:
        """Start a registry with C{config}; the reactor its log names."""
        registry = await start_gridregistry(reactor, Path(self.mktemp()).resolve(), config)
        self.addCleanup(registry.stop)
        events = [json.loads(line.lstrip("\x1e")) for line in registry.process.lines]
        named = [e["reactor"] for e in events if e.get("log_format", "").startswith("Reactor: ")]
        self.assertEqual(len(named), 1, "\n".join(registry.process.lines))
        return named[0]

    async def test_lean_by_default(self) -> None:
        self.assertEqual(await self.reactor_logged({}), "gridreg.lean_reactor.LeanEPollReactor")

    async def test_property_keeps_twisted_reactor(self) -> None:
        self.assertEqual(
            await self.reactor_logged({"GridReg.LeanReactor": "0"}),
            "twisted.internet.epollreactor.EPollReactor",
        )
