"""
Resolving among many well-known objects: IceGrid and gridreg side by side.

Both registries get the same N objects (default 100,000), C{bench/obj<i>}
with a direct TCP proxy and type C{::Demo::Hello}:

  - IceGrid through its admin interface (one admin session, asynchronous
    C{addObjectWithType} calls); if that would take longer than
    C{--max-add-seconds}, the run falls back to 10,000 objects for both
    registries and says so;
  - gridreg by building its SQLite store in this process
    (L{gridreg.store.sqlite.SQLiteStore.commit}, 1,000 objects per change).

With C{--applications N}, both also hold N copies of C{etc/demo-app.xml}
(renamed apart): IceGrid's through C{icegridadmin application add}, gridreg's
written to its store as application records.

The gridreg modules are byte-compiled first (L{bench._harness.run}), as an
installed package is: with C{PYTHONDONTWRITEBYTECODE} set, every start-up
would otherwise compile them again.

Then each registry is restarted C{--restarts} times on its database and
measured: start-up time (from spawning the process to the first answered
C{findObjectById} of the last object, probed every 5 ms from this process),
memory (C{VmRSS}/C{VmHWM}), and, after the last start, C{findObjectById}
latency for random identities from a real Ice client (1 in flight) and the
registry CPU per lookup with 16 in flight.

    python -m bench.wellknown_scale [--objects 100000] [--restarts 3] [--applications 0]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionClosed, ConnectionLost
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from bench._harness import (
    LOOPBACK,
    LoadResult,
    common_arguments,
    fmt,
    header,
    machine,
    memory_kib,
    out,
    quiet_option,
    quietest,
    ratio,
    registries,
    registry_pid,
    registry_ports,
    run,
    run_clients,
    start_clients,
    start_registry,
    table,
    write_json,
)
from bench._profile import start_recording, summary
from gridreg.ice.client import IceClientProtocol
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import ReplyStatus
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode, Proxy, TcpEndpoint
from gridreg.registry.application_metadata import created
from gridreg.registry.applications import APPLICATION
from gridreg.registry.descriptors import application_to_json, parse_application
from gridreg.registry.state import ObjectInfo, object_mutation
from gridreg.store.records import Mutation
from gridreg.store.sqlite import SQLiteStore
from tests._processes import IceClient, RunningRegistry

CATEGORY = "bench"
PREFIX = "obj"
TYPE_ID = "::Demo::Hello"
TARGET_PORT = 10000
BATCH = 1000
ADD_CHUNK = 10_000
FALLBACK_OBJECTS = 10_000


REPO = Path(__file__).resolve().parent.parent
DEMO_APP = REPO / "etc" / "demo-app.xml"


def identity(index: int) -> Identity:
    return Identity(f"{PREFIX}{index}", CATEGORY)


def application_xml(index: int) -> str:
    """The demo application renamed so that many deploy side by side."""
    return (
        DEMO_APP.read_text()
        .replace('name="DemoApp"', f'name="App{index}"')
        .replace("HelloGroup", f"Group{index}")
        .replace("HelloServer", f"Server{index}")
        .replace('identity="hello"', f'identity="hello{index}"')
    )


async def build_gridreg_store(data_dir: Path, count: int, applications: int = 0) -> float:
    """
    Write C{count} objects into a new gridreg store, C{BATCH} per change,
    and C{applications} application records; return the seconds it took.
    """
    begin = time.perf_counter()
    store = SQLiteStore(str(data_dir))
    await store.open()
    endpoints = (TcpEndpoint(LOOPBACK, TARGET_PORT),)
    try:
        meta = created("bench", int(time.time() * 1000)).to_json()
        for index in range(applications):
            app = parse_application(application_xml(index))
            record = {**application_to_json(app), "meta": meta}
            await store.commit([Mutation(APPLICATION, app.name, record)])
        for first in range(0, count, BATCH):
            mutations = [
                object_mutation(
                    identity(i), ObjectInfo(Proxy(identity(i), endpoints=endpoints), TYPE_ID)
                )
                for i in range(first, min(count, first + BATCH))
            ]
            await store.commit(mutations)
    finally:
        await store.close()
    return time.perf_counter() - begin


async def add_icegrid_applications(registry: RunningRegistry, workdir: str, count: int) -> float:
    """Deploy C{count} applications with one C{icegridadmin} run; return the seconds."""
    files = []
    for index in range(count):
        path = Path(workdir) / f"app{index}.xml"
        path.write_text(application_xml(index))
        files.append(path)
    commands = "; ".join(f"application add '{path}'" for path in files)
    begin = time.perf_counter()
    icegridadmin = shutil.which("icegridadmin")
    if icegridadmin is None:
        raise RuntimeError("icegridadmin is not on PATH")
    _, errors, code = await getProcessOutputAndValue(
        icegridadmin,
        [f"--Ice.Default.Locator={registry.locator}", "-u", "bench", "-p", "bench", "-e", commands],
        env=None,
    )
    seconds = time.perf_counter() - begin
    if code != 0:
        raise RuntimeError(f"icegridadmin could not add applications: {errors.decode()[-500:]}")
    listed, errors, code = await getProcessOutputAndValue(
        icegridadmin,
        [f"--Ice.Default.Locator={registry.locator}", "-u", "bench", "-p", "bench"]
        + ["-e", "application list"],
        env=None,
    )
    if code != 0 or len(listed.split()) != count:
        raise RuntimeError(f"IceGrid lists {len(listed.split())} applications, not {count}")
    return seconds


async def add_icegrid_objects(
    reactor: Any,
    workdir: str,
    properties: dict[str, str],
    count: int,
    limit: float,
    applications: int = 0,
) -> tuple[int, float]:
    """
    Add objects through IceGrid's admin interface, C{ADD_CHUNK} per
    command (and C{applications} applications). If the first chunk shows
    that C{count} would take longer than C{limit} seconds, stop at
    C{FALLBACK_OBJECTS}. Return how many were added and the seconds it took.
    """
    registry = await start_registry(reactor, "icegrid", workdir, properties)
    added, seconds = 0, 0.0
    try:
        if applications:
            seconds += await add_icegrid_applications(registry, workdir, applications)
            out(f"  icegrid: {applications} applications added in {seconds:.2f} s")
        [client] = await start_clients(reactor, registry.locator, 1)
        try:
            while added < count:
                chunk = min(ADD_CHUNK, count - added)
                result = await client.call(
                    "admin-addObjects",
                    {
                        "category": CATEGORY,
                        "prefix": PREFIX,
                        "start": added,
                        "count": chunk,
                        "endpoints": f"tcp -h {LOOPBACK} -p {TARGET_PORT}",
                        "type": TYPE_ID,
                        "in_flight": 32,
                    },
                    timeout=limit + 60,
                )
                if not result.get("ok") or result["errors"]:
                    raise RuntimeError(f"IceGrid admin could not add objects: {result}")
                added += chunk
                seconds += result["seconds"]
                out(f"  icegrid: {added} objects added through the admin in {seconds:.1f} s")
                if seconds / added * count > limit and added >= FALLBACK_OBJECTS:
                    out(
                        f"  icegrid: {count} would take about {seconds / added * count:.0f} s "
                        f"(> {limit:.0f} s): stopping at {added}"
                    )
                    break
        finally:
            await client.stop()
    finally:
        await registry.stop()
    return added, seconds


async def first_locate(reactor: Any, port: int, target: Identity, timeout: float) -> float:
    """
    Probe every 5 ms until a C{findObjectById(target)} on port C{port} is
    answered with a proxy; return the C{time.perf_counter()} of the answer.
    """
    deadline = time.perf_counter() + timeout
    params = OutputStream(ENCODING_1_1)
    params.write_identity(target)
    while time.perf_counter() < deadline:
        try:
            endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=1)
            protocol = await connectProtocol(endpoint, IceClientProtocol(reactor))
            try:
                await protocol.when_validated()
                reply = await protocol.invoke(
                    Identity("Locator", "DemoIceGrid"),
                    "findObjectById",
                    OperationMode.NONMUTATING,
                    params.getvalue(),
                    timeout=5,
                )
            finally:
                await protocol.close()
            if reply.status == ReplyStatus.SUCCESS:
                assert reply.payload is not None and reply.encoding is not None
                if InputStream(reply.payload, reply.encoding).read_proxy() is not None:
                    return time.perf_counter()
        except (ConnectError, ConnectionClosed, ConnectionLost):
            pass
        await deferLater(reactor, 0.005)
    raise RuntimeError(f"no answered locate on port {port} within {timeout} s")


async def lookups(
    reactor: Any,
    kind: str,
    pid: int,
    client: IceClient,
    count: int,
    in_flight: int,
    args: argparse.Namespace,
) -> LoadResult:
    """One window of findObjectById calls for random objects, profiled if asked."""
    profile = None
    if args.profile and kind == "gridreg":
        output = Path(args.profile).resolve() / f"gridreg-findObjectById-{count}-{in_flight}x1.txt"
        output.parent.mkdir(parents=True, exist_ok=True)

        def profile(start_at: float, duration: float) -> Deferred[Path]:
            return start_recording(reactor, pid, start_at, duration, output)

    options = {
        "operation": "findObjectById",
        "objects": {"category": CATEGORY, "prefix": PREFIX, "count": count},
        "seed": None,  # a fresh sequence per window: no replay of cached lookups
        "in_flight": in_flight,
    }
    return await run_clients(
        reactor, pid, [client], options, 1.0, args.duration, quiet_option(args), profile
    )


async def measure_lookups(
    reactor: Any, kind: str, registry: RunningRegistry, count: int, args: argparse.Namespace
) -> list[LoadResult]:
    """Lookup latency with 1 call in flight, and CPU per lookup with 16."""
    [client] = await start_clients(reactor, registry.locator, 1)
    pid = registry_pid(registry)
    results = []
    try:
        for in_flight in (1, 16):
            result = await quietest(
                partial(lookups, reactor, kind, pid, client, count, in_flight, args),
                lambda r: r.other_cores,
                args.quiet_below,
                args.attempts,
            )
            out(
                f"  {kind}: findObjectById, {in_flight} in flight: {result.rate:.0f} req/s, "
                f"p50 {fmt(result.p50_ms, '.3f')} ms, p99 {fmt(result.p99_ms, '.3f')} ms, "
                f"max {fmt(result.max_ms, '.1f')} ms, "
                f"{fmt(result.cpu_us_per_request, '.1f')} us CPU/lookup, "
                f"other {result.other_cores:.2f} cores"
            )
            results.append(result)
    finally:
        await client.stop()
    return results


async def measure_restarts(
    reactor: Any,
    kind: str,
    workdir: str,
    properties: dict[str, str],
    count: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Start the registry on its database C{args.restarts} times; measure the last one fully."""
    port = int(properties["IceGrid.Registry.Client.Endpoints"].split("-p")[1])
    startups: list[float] = []
    memory_started: dict[str, int] = {}
    memory_end: dict[str, int] = {}
    latency: LoadResult | None = None
    load: LoadResult | None = None
    for number in range(args.restarts):
        begin = time.perf_counter()
        starting = start_registry(reactor, kind, workdir, properties)
        probing = Deferred.fromCoroutine(first_locate(reactor, port, identity(count - 1), 120))
        answered = await probing
        registry = await starting
        startups.append(answered - begin)
        try:
            memory_started = memory_kib(registry_pid(registry))
            out(
                f"  {kind}: start {number + 1}: first locate answered after "
                f"{startups[-1] * 1000:.0f} ms, RSS {memory_started['VmRSS'] / 1024:.1f} MiB"
            )
            if number == args.restarts - 1:
                latency, load = await measure_lookups(reactor, kind, registry, count, args)
                memory_end = memory_kib(registry_pid(registry))
        finally:
            await registry.stop()
    assert latency is not None and load is not None
    if latency.errors or load.errors:
        raise RuntimeError(f"{kind}: lookups failed ({latency.errors + load.errors} errors)")
    return {
        "objects": count,
        "startup_s": startups,
        "startup_median_s": statistics.median(startups),
        "rss_after_start_kib": memory_started.get("VmRSS"),
        "rss_end_kib": memory_end.get("VmRSS"),
        "peak_rss_kib": memory_end.get("VmHWM"),
        "latency": latency.as_json(),
        "load16": load.as_json(),
        "database_bytes": directory_size(Path(workdir) / "db"),
    }


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def report(kinds: list[str], results: dict[str, dict[str, Any]], fallback: bool) -> None:
    out()
    if fallback:
        out(
            f"NOTE: IceGrid's admin was too slow for {results.get('requested')} objects; "
            f"both registries hold {FALLBACK_OBJECTS}."
        )
    rows = []
    for kind in kinds:
        r = results[kind]
        rows.append(
            [
                kind,
                str(r["objects"]),
                f"{r['setup_s']:.1f}",
                f"{r['startup_median_s'] * 1000:.0f}",
                f"{r['rss_after_start_kib'] / 1024:.1f}",
                f"{r['peak_rss_kib'] / 1024:.1f}",
                f"{r['database_bytes'] / 1e6:.1f}",
                f"{fmt(r['latency']['p50_ms'], '.3f')} / {fmt(r['latency']['p99_ms'], '.3f')}",
                f"{r['latency']['rate']:.0f}",
                f"{r['load16']['rate']:.0f}",
                fmt(r["load16"]["cpu_us_per_request"], ".1f"),
            ]
        )
    headers = [
        "registry",
        "objects",
        "fill s",
        "start-up ms",
        "RSS MiB",
        "peak RSS MiB",
        "db MB",
        "p50/p99 ms (1 in flight)",
        "req/s (1)",
        "req/s (16)",
        "us CPU/lookup (16)",
    ]
    out(table(headers, rows))
    for kind in (k for k in kinds if k != "icegrid" and "icegrid" in kinds):
        ice, ours = results["icegrid"], results[kind]
        out(
            f"{kind} / icegrid: start-up "
            + fmt(ratio(ours["startup_median_s"], ice["startup_median_s"]), ".2f", "x")
            + ", peak RSS "
            + fmt(ratio(ours["peak_rss_kib"], ice["peak_rss_kib"]), ".2f", "x")
            + ", p99 "
            + fmt(ratio(ours["latency"]["p99_ms"], ice["latency"]["p99_ms"]), ".2f", "x")
            + ", CPU/lookup "
            + fmt(
                ratio(ours["load16"]["cpu_us_per_request"], ice["load16"]["cpu_us_per_request"]),
                ".2f",
                "x",
            )
        )
    out("fill s: IceGrid through its admin interface; gridreg by writing its store directly.")


async def main(reactor: Any, args: argparse.Namespace) -> None:
    header("wellknown_scale")
    kinds = registries(args.registries)
    count = args.objects
    results: dict[str, Any] = {"requested": count}
    fallback = False
    workdirs = {k: tempfile.mkdtemp(prefix=f"bench-wk-{k}-") for k in kinds}
    try:
        if "icegrid" in kinds:
            properties = dict(registry_ports(), **{"IceGrid.Registry.LMDB.MapSize": "1024"})
            added, seconds = await add_icegrid_objects(
                reactor,
                workdirs["icegrid"],
                properties,
                count,
                args.max_add_seconds,
                args.applications,
            )
            if added < count:
                fallback, count = True, added
            results["icegrid"] = await measure_restarts(
                reactor, "icegrid", workdirs["icegrid"], properties, count, args
            )
            results["icegrid"]["setup_s"] = seconds
        for kind in (k for k in kinds if k != "icegrid"):  # gridreg, by each launcher
            properties = registry_ports()
            data_dir = Path(workdirs[kind]) / "db"
            seconds = await build_gridreg_store(data_dir, count, args.applications)
            out(
                f"  {kind}: {count} objects and {args.applications} applications "
                f"written to its store in {seconds:.1f} s"
            )
            results[kind] = await measure_restarts(
                reactor, kind, workdirs[kind], properties, count, args
            )
            results[kind]["setup_s"] = seconds
    finally:
        if not args.keep:
            for path in workdirs.values():
                shutil.rmtree(path, ignore_errors=True)
    report(kinds, results, fallback)
    if args.profile:
        for profiled in sorted(Path(args.profile).resolve().glob("gridreg-findObjectById-*.txt")):
            out()
            out(summary(profiled, args.profile_top))
    write_json(
        args.json,
        {
            "benchmark": "wellknown_scale",
            "machine": machine(),
            "fallback": fallback,
            "applications": args.applications,
            **results,
        },
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--objects", type=int, default=100_000, help="well-known objects")
    parser.add_argument("--restarts", type=int, default=3, help="start-ups measured per registry")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per lookup window")
    parser.add_argument(
        "--applications", type=int, default=0, help="applications deployed in both registries"
    )
    parser.add_argument(
        "--max-add-seconds",
        type=float,
        default=180.0,
        help="fall back to 10,000 objects if IceGrid's admin would need longer",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="sample gridreg with py-spy during its lookup windows; raw profiles in DIR",
    )
    parser.add_argument("--profile-top", type=int, default=15, help="frames to list per profile")
    common_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
