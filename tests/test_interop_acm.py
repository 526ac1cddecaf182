# -*- test-case-name: tests.test_interop_acm -*-
"""
ACM against a real Ice 3.7 client: gridreg closes the idle locator
connection after a short configured ACM timeout, gracefully (the client sees
C{CloseConnectionException}), as icegridregistry does, and the client's next
locator call reconnects transparently.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests._processes import (
    ICE_PYTHON,
    INTEROP_DIR,
    LineProcess,
    ProcessError,
    RunningRegistry,
    ice_env,
    ice_missing,
    start_gridregistry,
    start_icegridregistry,
)

ACM_TIMEOUT = {"IceGrid.Registry.Client.ACM.Timeout": "1"}


async def idle_client(registry: RunningRegistry, wait: float = 10.0) -> dict[str, Any]:
    """Run C{ice_acm_client.py} against C{registry}; its one result line."""
    args = [ICE_PYTHON, str(INTEROP_DIR / "ice_acm_client.py"), f"--locator={registry.locator}"]
    args.append(f"--wait={wait}")
    process = LineProcess.spawn(reactor, "ice_acm_client", args, ice_env(), INTEROP_DIR)
    timer = reactor.callLater(wait + 20, process.terminate)
    await process.when_ended()
    if timer.active():
        timer.cancel()
    results = [e for e in process.events if "first_port" in e]
    if process.exit_code != 0 or not results:
        raise ProcessError(f"ice_acm_client gave no result:\n{process.describe()}")
    return results[0]


class IdleLocatorConnectionTests(TestCase):
    skip = ice_missing()
    timeout = 60

    def check(self, result: dict[str, Any]) -> None:
        self.assertEqual(result["close_reason"], "Ice.CloseConnectionException", result)
        self.assertIsNotNone(result["closed_after"], result)
        self.assertLess(result["closed_after"], 5.0, result)
        self.assertTrue(result["second_ok"], result)
        self.assertNotEqual(result["second_port"], result["first_port"], result)

    async def test_gridreg_closes_idle_client_connection(self) -> None:
        registry = await start_gridregistry(reactor, self.mktemp(), ACM_TIMEOUT)
        self.addCleanup(registry.stop)
        self.check(await idle_client(registry))

    async def test_icegridregistry_does_the_same(self) -> None:
        registry = await start_icegridregistry(reactor, self.mktemp(), extra_props=ACM_TIMEOUT)
        self.addCleanup(registry.stop)
        self.check(await idle_client(registry))
