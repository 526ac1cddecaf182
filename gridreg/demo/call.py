# -*- test-case-name: tests.test_demo_processes -*-
"""
C{python3 -m gridreg.demo call}: resolve C{hello} through the demo's
locator, say hello, print which server answered.

Each call resolves again (no locator cache), so the round-robin replica
group sends successive calls to successive servers, and the first call to
an on-demand server waits while its node starts it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer, task

from gridreg.client.locator import LocatorClient
from gridreg.config.properties import load_file
from gridreg.endpoints import client_endpoint
from gridreg.ice.client import IceClientFactory
from gridreg.ice.stringify import endpoint_to_string, proxy_from_string
from gridreg.ice.types import OperationMode

#: an on-demand server's activation is part of the first locate request
LOCATE_TIMEOUT = 30.0


async def say_hello(reactor: Any, locator: LocatorClient, target: str) -> tuple[str, str]:
    """(the answer, the endpoint that gave it) for the proxy C{target}."""
    proxy = proxy_from_string(target)
    endpoints = await locator.resolve(proxy)
    if not endpoints:
        raise LookupError(f"`{target}' resolved to no endpoints")
    endpoint = endpoints[0]
    protocol = await client_endpoint(reactor, endpoint, timeout_cap=5.0).connect(
        IceClientFactory(reactor)
    )
    try:
        await protocol.when_validated()
        answer = await protocol.call(proxy.identity, "sayHello", OperationMode.NORMAL, timeout=10.0)
        return answer.read_string(), endpoint_to_string(endpoint)
    finally:
        await protocol.close()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m gridreg.demo call", description=__doc__.strip().splitlines()[0]
    )
    parser.add_argument("--dir", default="demo-grid", help="the demo grid's directory")
    parser.add_argument("--count", type=int, default=2, help="how many calls (default 2)")
    parser.add_argument("--identity", default="hello", help="the proxy to call (default hello)")
    options = parser.parse_args(list(argv))
    properties = load_file(f"{options.dir}/client.cfg")

    async def run(reactor: Any) -> None:
        locator = LocatorClient.from_properties(
            reactor, properties, cache_timeout=0, request_timeout=LOCATE_TIMEOUT
        )
        locator.startService()
        try:
            for _ in range(options.count):
                answer, endpoint = await say_hello(reactor, locator, options.identity)
                print(f"{answer} answered ({endpoint})")
        finally:
            await locator.stopService()

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0
