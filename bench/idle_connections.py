# -*- test-case-name: tests.test_bench_idle_connections -*-
"""
Idle and half-open Ice connections: IceGrid and gridreg side by side.

For each registry: start it (with a short client ACM timeout), register
C{HelloAdapter} with a real Ice server, measure a fresh Ice client's locate
latency (C{findAdapterById}, one in flight) and the registry's RSS; then open
N connections to the client endpoint from this process, half of which send
a partial Ice header after the registry's ValidateConnection and then stop,
and measure again while they are open. Last, wait up to twice the ACM
timeout and count the connections the registry has closed, by kind.

    python -m bench.idle_connections [--connections 10000] [--acm-timeout 10]
                                     [--registries icegrid,gridreg] [--json FILE]

Loopback only. The soft file-descriptor limit is raised to the hard one,
for this process and the registries it starts; N is capped to fit it.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import attrs
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from bench._harness import (
    LOOPBACK,
    common_arguments,
    fmt,
    header,
    machine,
    memory_kib,
    out,
    ratio,
    registries,
    registry_pid,
    remove_workdir,
    run,
    start_registry,
    table,
    write_json,
)
from gridreg.ice.messages import CLOSE_CONNECTION, VALIDATE_CONNECTION
from tests._processes import start_ice_client, start_ice_server

#: a header cut short: magic and protocol version, nothing more
PARTIAL_HEADER = b"IceP\x01\x00"
BATCH = 250


@attrs.define
class Counts:
    """What happened to the connections of one kind."""

    opened: int = 0
    validated: int = 0
    close_messages: int = 0
    lost: int = 0


class IdleConnection(Protocol):
    """Connects, waits for ValidateConnection, maybe sends half a header, then nothing."""

    def __init__(self, counts: Counts, partial: bool) -> None:
        self.counts = counts
        self.partial = partial
        self.validated = False

    def connectionMade(self) -> None:
        self.counts.opened += 1

    def dataReceived(self, data: bytes) -> None:
        if not self.validated and data.startswith(VALIDATE_CONNECTION):
            self.validated = True
            self.counts.validated += 1
            if self.partial:
                self.transport.write(PARTIAL_HEADER)
        if CLOSE_CONNECTION[:9] in data:  # any compression byte
            self.counts.close_messages += 1

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.counts.lost += 1


class IdleFactory(Factory):
    noisy = False

    def __init__(self, counts: Counts, partial: bool) -> None:
        self.counts = counts
        self.partial = partial

    def buildProtocol(self, addr: Any) -> IdleConnection:
        return IdleConnection(self.counts, self.partial)


def _ended(counts: Counts) -> int:
    """Connections told to go (CloseConnection) or closed, whichever counts more."""
    return max(counts.close_messages, counts.lost)


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft descriptor limit toward C{wanted}; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY and hard < wanted else wanted
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def open_connections(
    reactor: Any, port: int, count: int, idle: Counts, partial: Counts
) -> list[Protocol]:
    """Open C{count} connections in batches; fire once each was validated or refused."""
    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=30)
    factories = (IdleFactory(idle, False), IdleFactory(partial, True))
    protocols: list[Protocol] = []
    for start in range(0, count, BATCH):
        batch = [
            endpoint.connect(factories[i % 2]) for i in range(start, min(start + BATCH, count))
        ]
        protocols.extend(await gatherResults(batch))
        done = await _until(
            reactor, lambda: idle.validated + partial.validated >= len(protocols), 30
        )
        if not done:
            out(f"  not all validated: idle {idle}, partial {partial}")
    return protocols


async def _until(reactor: Any, condition: Any, timeout: float) -> bool:
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            return False
        await deferLater(reactor, 0.05, lambda: None)
    return True


async def locate_latency(reactor: Any, locator: str, duration: float) -> dict[str, Any]:
    """A fresh Ice client's findAdapterById latency, one call in flight."""
    client = start_ice_client(reactor, locator)
    try:
        started = time.monotonic()
        first = await client.call("getRegistry", timeout=60)
        first_ms = (time.monotonic() - started) * 1000
        if not first.get("ok"):
            raise RuntimeError(f"fresh client could not locate: {first}")
        command = {"adapter": "HelloAdapter", "in_flight": 1, "duration": duration, "warmup": 0.5}
        result = await client.call("bench", command, timeout=duration + 60)
        if not result.get("ok"):
            raise RuntimeError(f"bench client failed: {result}")
        values = result
        return {
            "first_call_ms": first_ms,
            "p50_ms": values.get("p50_ms"),
            "p99_ms": values.get("p99_ms"),
            "rate": values.get("rate"),
            "errors": values.get("errors"),
        }
    finally:
        await client.stop()


async def measure(reactor: Any, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    workdir = tempfile.mkdtemp(prefix=f"bench-idle-{kind}-")
    properties = {"IceGrid.Registry.Client.ACM.Timeout": str(args.acm_timeout)}
    registry = await start_registry(reactor, kind, workdir, properties)
    result: dict[str, Any] = {"registry": kind}
    try:
        server = await start_ice_server(reactor, registry.locator, ("HelloAdapter",), name=kind)
        try:
            pid = registry_pid(registry)
            result["rss_before_kib"] = memory_kib(pid)["VmRSS"]
            result["before"] = await locate_latency(reactor, registry.locator, args.duration)
            idle, partial = Counts(), Counts()
            started = time.monotonic()
            await open_connections(reactor, registry.client_port, args.connections, idle, partial)
            result["open_seconds"] = time.monotonic() - started
            result["rss_open_kib"] = memory_kib(pid)["VmRSS"]
            result["during"] = await locate_latency(reactor, registry.locator, args.duration)
            result["rss_during_kib"] = memory_kib(pid)["VmRSS"]
            total = idle.opened + partial.opened
            await _until(
                reactor,
                lambda: _ended(idle) + _ended(partial) >= total,
                2 * args.acm_timeout + 5,
            )
            result["closed_after_seconds"] = time.monotonic() - started
            result["idle"] = attrs.asdict(idle)
            result["partial"] = attrs.asdict(partial)
            result["rss_end_kib"] = memory_kib(pid)["VmRSS"]
        finally:
            await server.stop()
    finally:
        await registry.stop()
        remove_workdir(workdir, args.keep)
    return result


def report(results: list[dict[str, Any]], connections: int) -> None:
    rows = []
    for r in results:
        opened = r["idle"]["opened"] + r["partial"]["opened"]
        per_connection = (r["rss_open_kib"] - r["rss_before_kib"]) * 1024 / max(opened, 1)
        rows.append(
            [
                r["registry"],
                str(opened),
                fmt(r["open_seconds"], ".1f", " s"),
                fmt(r["before"]["p50_ms"], ".2f") + " / " + fmt(r["during"]["p50_ms"], ".2f"),
                fmt(r["before"]["p99_ms"], ".2f") + " / " + fmt(r["during"]["p99_ms"], ".2f"),
                fmt(r["during"]["first_call_ms"], ".0f", " ms"),
                f"{r['rss_before_kib'] / 1024:.1f} / {r['rss_during_kib'] / 1024:.1f} MiB",
                f"{per_connection:.0f} B",
                f"{r['idle']['close_messages']}+{r['partial']['close_messages']}",
                f"{r['idle']['lost']}+{r['partial']['lost']}",
                f"{r['closed_after_seconds']:.0f} s",
            ]
        )
    out(
        table(
            [
                "registry",
                "conns",
                "open",
                "p50 ms before/during",
                "p99 ms before/during",
                "fresh 1st call",
                "RSS before/during",
                "RSS/conn",
                "CloseConnection idle+partial",
                "TCP closed idle+partial",
                "after",
            ],
            rows,
        )
    )
    by_kind = {r["registry"]: r for r in results}
    if "icegrid" in by_kind and "gridreg" in by_kind:
        ours, theirs = by_kind["gridreg"], by_kind["icegrid"]
        out(
            "gridreg/IceGrid: p50 during "
            + fmt(ratio(ours["during"]["p50_ms"], theirs["during"]["p50_ms"]), ".2f", "x")
            + ", p99 during "
            + fmt(ratio(ours["during"]["p99_ms"], theirs["during"]["p99_ms"]), ".2f", "x")
            + ", RSS during "
            + fmt(ratio(ours["rss_during_kib"], theirs["rss_during_kib"]), ".2f", "x")
        )


async def main(reactor: Any, args: argparse.Namespace) -> None:
    header("idle_connections")
    limit = raise_fd_limit(args.connections + 1000)
    if args.connections + 500 > limit:
        args.connections = max(limit - 500, 0)
        out(f"file-descriptor limit {limit}: using {args.connections} connections")
    results = []
    for kind in registries(args.registries):
        out(f"{kind}: {args.connections} connections, ACM timeout {args.acm_timeout} s ...")
        results.append(await measure(reactor, kind, args))
    report(results, args.connections)
    write_json(
        args.json,
        {"machine": machine(), "connections": args.connections, "results": results},
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--acm-timeout", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of locates")
    common_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
