"""
IceGrid's Ice admin surface: IceGrid and gridreg side by side, in one run.

Each system runs a master and one slave on loopback (IceGrid:
C{icegridregistry} x 2; gridreg: C{twist gridregistry} x 2, replicas over
mutual TLS, as the other benchmarks start them), both with
C{IceGrid.Registry.AdminPermissionsVerifier} and C{PermissionsVerifier} =
C{DemoIceGrid/NullPermissionsVerifier}, and the same application (deployed
with the real C{icegridadmin}): one server on a node C{node1} that never
registers, whose adapter holds the allocatable object C{bench/res}. The
workload is driven by real Ice 3.7 Python clients
(C{bench/_admin_surface_driver.py}, under C{/usr/bin/python3}), on direct
proxies to the replicas' client endpoints:

  1. admin sessions: C{Registry.createAdminSession} + C{getAdmin} +
     C{AdminSession.destroy}, one at a time, on one connection and each on
     a fresh connection;
  2. writes: C{Admin.addObjectWithType} then C{removeObject} on the
     master, one at a time (round trips, master and slave CPU per write);
     then the replication lag: while a second client process keeps two
     C{Query.findObjectById} requests in flight on the slave (AMI, each
     reply sends the next), one add on the master; the lag is from the
     add's start to the first reply that has the object;
  3. allocation: two client sessions on the master; the one not holding
     C{bench/res} waits in C{allocateObjectById} (timeout -1), the holder
     releases it; the grant is from just before C{releaseObject} to the
     waiter's reply; roles swap every cycle.

Registry CPU is read around each command from C{/proc/PID/task/*/schedstat}
(nanoseconds per thread; C{/proc/PID/stat}, in 10 ms ticks, if a thread
ended meanwhile); the client's from C{time.process_time} in the driver.
C{--runs} rounds alternate the systems; every figure printed is the median
over the rounds::

    python -m bench.admin_surface [--runs 5] [--quick] [--sessions 200] [--writes 200]
        [--lag-writes 100] [--cycles 200] [--registries icegrid,gridreg] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.utils import getProcessOutputAndValue

from bench._grid import INSTANCE, MASTER, TARGET_ENDPOINTS, TYPE_ID, remove_tree, track
from bench._harness import (
    LOOPBACK,
    common_arguments,
    cpu_seconds,
    header,
    machine,
    machine_busy_seconds,
    out,
    quietest,
    registries,
    run,
    wait_for_quiet,
    write_json,
)
from bench._node_grid import ICEGRIDADMIN, SLAVE, NodeBenchGrid
from bench.replication import percentile, side_by_side
from tests._processes import ICE_PYTHON, LineProcess, ice_env, write_config

DRIVER = Path(__file__).resolve().parent / "_admin_surface_driver.py"
NULL_VERIFIER = f"{INSTANCE}/NullPermissionsVerifier"
VERIFIERS = {
    "IceGrid.Registry.AdminPermissionsVerifier": NULL_VERIFIER,
    "IceGrid.Registry.PermissionsVerifier": NULL_VERIFIER,
}
ALLOCATABLE = "bench/res"
APPLICATION = "AdminSurfaceBench"
#: the waiter's request is sent, then given this long to be queued at the registry
SETTLE_SECONDS = 0.003
POLL_IN_FLIGHT = 2


def application_xml() -> str:
    """One server on a node that never registers; its adapter holds the allocatable object."""
    return f"""<icegrid>
  <application name="{APPLICATION}">
    <node name="node1">
      <server id="alloc" exe="/bin/true" activation="manual">
        <adapter name="Alloc" id="AllocAdapter" endpoints="tcp -h {LOOPBACK}">
          <allocatable identity="{ALLOCATABLE}" type="{TYPE_ID}"/>
        </adapter>
      </server>
    </node>
  </application>
</icegrid>
"""


def task_cpu(pid: int) -> dict[int, int]:
    """
    CPU nanoseconds of each thread of C{pid} (C{/proc/PID/task/TID/schedstat},
    its first field): exact, where C{/proc/PID/stat} counts 10 ms ticks.
    """
    found = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                found[int(task)] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # the thread just ended
            continue
    return found


class CpuSample:
    """A process's CPU time at one moment: per thread (exact) and in ticks (all threads)."""

    def __init__(self, pid: int) -> None:
        self.threads = task_cpu(pid)
        self.ticks = cpu_seconds(pid)

    def until(self, later: CpuSample) -> float:
        """
        CPU seconds used between the two samples: from the threads when all of
        them lived through the window, else from the ticks (an ended thread's
        time is lost from the per-thread figures).
        """
        if set(self.threads) <= set(later.threads):
            return sum(ns - self.threads.get(tid, 0) for tid, ns in later.threads.items()) / 1e9
        return later.ticks - self.ticks


class Driver:
    """One C{_admin_surface_driver.py} process (see its docstring)."""

    def __init__(self, process: LineProcess) -> None:
        self.process = process

    @classmethod
    async def start(cls, reactor: Any, name: str) -> Driver:
        args = [ICE_PYTHON, str(DRIVER)]
        process = track(reactor, LineProcess.spawn(reactor, name, args, ice_env(), DRIVER.parent))
        try:
            await process.next_event("ready", timeout=30)
        except BaseException:
            await process.terminate()
            raise
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def send(self, *command: Any) -> None:
        self.process.write_line(list(command))

    async def result(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        found = await self.process.next_event(lambda e: e.get("command") == name, timeout)
        if not found["ok"]:
            raise RuntimeError(f"{self.process.name}: {name} failed: {found}")
        return found

    async def call(self, *command: Any, timeout: float = 120.0) -> dict[str, Any]:
        self.send(*command)
        return await self.result(command[0], timeout)

    async def stop(self) -> None:
        await self.process.stop_gracefully()


class System:
    """A master and a slave of one kind, the application deployed, two drivers."""

    def __init__(self, reactor: Any, kind: str, root: Path) -> None:
        self.reactor = reactor
        self.kind = kind
        self.root = root
        self.grid = NodeBenchGrid(reactor, kind, root / "registries", (MASTER, SLAVE), VERIFIERS)
        self.client: Driver | None = None
        self.observer: Driver | None = None
        self.sentinels = 0

    def proxy(self, name: str, replica: str = MASTER) -> str:
        return f"{INSTANCE}/{name}:tcp -h {LOOPBACK} -p {self.grid.client_port(replica)}"

    def pids(self) -> dict[str, int]:
        return {name: self.grid.pid(name) for name in (MASTER, SLAVE)}

    async def start(self) -> None:
        await self.grid.start(MASTER)
        await self.grid.start(SLAVE)
        await self.icegridadmin(application_xml())
        self.client = await Driver.start(self.reactor, f"{self.kind} client")
        self.observer = await Driver.start(self.reactor, f"{self.kind} observer")
        await self.client.call("open_admin", self.proxy("Registry"))
        await self.lag_once("sentinel/up", timeout=60.0)  # the slave is registered and caught up
        allocated = await self.client.call("alloc_open", self.proxy("Registry"), ALLOCATABLE)
        out(f"  {self.kind}: up; session A holds {ALLOCATABLE}: {allocated['proxy']}")

    async def icegridadmin(self, xml: str) -> None:
        """Deploy C{xml} with the real icegridadmin (both registries speak its protocol)."""
        path = self.root / "application.xml"
        path.write_text(xml)
        config = self.root / "icegridadmin.cfg"
        write_config(config, {"Ice.Default.Locator": self.grid.locator(MASTER)})
        args = [f"--Ice.Config={config}", "-u", "x", "-p", "x", "-e", f"application add {path}"]
        stdout, stderr, code = await getProcessOutputAndValue(
            ICEGRIDADMIN, args, env=dict(os.environ), path=str(self.root), reactor=self.reactor
        )
        if code != 0:
            raise RuntimeError(
                f"{self.kind}: icegridadmin application add failed: {stdout!r} {stderr!r}"
            )

    async def stop(self) -> None:
        for driver in (self.client, self.observer):
            if driver is not None:
                await driver.stop()
        await self.grid.stop_all()

    # -- measurements --------------------------------------------------------------

    async def measured(
        self, driver: Driver, pids: Sequence[int], *command: Any
    ) -> tuple[dict[str, Any], list[float]]:
        """Run C{command}; the CPU seconds each of C{pids} used meanwhile."""
        before = [CpuSample(p) for p in pids]
        result = await driver.call(*command)
        return result, [a.until(CpuSample(p)) for a, p in zip(before, pids)]

    def all_pids(self) -> list[int]:
        """The registries' and the drivers' processes, and this one."""
        drivers = [d.pid for d in (self.client, self.observer) if d is not None]
        return [*self.pids().values(), *drivers, os.getpid()]

    async def sessions(self, count: int, fresh: bool) -> dict[str, Any]:
        assert self.client is not None
        master = self.pids()[MASTER]
        result, (cpu,) = await self.measured(
            self.client, [master], "sessions", self.proxy("Registry"), count, fresh
        )
        total = result["total"]
        return {
            "p50_s": percentile(total, 0.5),
            "p99_s": percentile(total, 0.99),
            "create_p50_s": percentile(result["create"], 0.5),
            "get_admin_p50_s": percentile(result["get_admin"], 0.5),
            "destroy_p50_s": percentile(result["destroy"], 0.5),
            "registry_cpu_s": cpu / count,
            "client_cpu_s": result["client_cpu_s"] / count,
        }

    async def writes(self, count: int, tag: str) -> dict[str, Any]:
        assert self.client is not None
        pids = self.pids()
        both = [pids[MASTER], pids[SLAVE]]
        found: dict[str, Any] = {}
        cpu = [0.0, 0.0]
        client = 0.0
        for op in ("add", "remove"):
            result, used = await self.measured(
                self.client, both, "writes", f"{tag}/obj", count, TARGET_ENDPOINTS, TYPE_ID, op
            )
            found[f"{op}_p50_s"] = percentile(result["seconds"], 0.5)
            found[f"{op}_p99_s"] = percentile(result["seconds"], 0.99)
            cpu = [c + u for c, u in zip(cpu, used)]
            client += result["client_cpu_s"]
        found["master_cpu_s"] = cpu[0] / (2 * count)
        found["slave_cpu_s"] = cpu[1] / (2 * count)
        found["client_cpu_s"] = client / (2 * count)
        return found

    async def lag_once(self, identity: str, timeout: float = 10.0) -> dict[str, Any]:
        assert self.client is not None and self.observer is not None
        self.observer.send("poll", self.proxy("Query", SLAVE), identity, timeout, POLL_IN_FLIGHT)
        await self.observer.process.next_event("polling", timeout=30)
        added = await self.client.call("add", identity, TARGET_ENDPOINTS, TYPE_ID)
        poll = await self.observer.result("poll", timeout + 30)
        if not poll["found"]:
            raise RuntimeError(f"{self.kind}: {identity} never appeared on the slave: {poll}")
        await self.client.call("remove", identity)
        last_miss = poll["last_miss_sent"]
        return {
            "ack_s": added["ack"] - added["start"],
            "lag_s": poll["found_end"] - added["start"],
            # the object was not there when this request was sent (a lower bound of the lag)
            "miss_s": None if last_miss is None else last_miss - added["start"],
            "visible_at_ack": last_miss is None or last_miss < added["ack"],
            # how long the slave took to answer the poll that found it
            "found_reply_s": poll["found_end"] - poll["found_sent"],
            "polls": poll["polls"],
        }

    async def lag(self, count: int, tag: str) -> dict[str, Any]:
        samples = [await self.lag_once(f"{tag}/lag{i}") for i in range(count)]
        lags = [s["lag_s"] for s in samples]
        misses = [s["miss_s"] for s in samples if s["miss_s"] is not None]
        return {
            "miss_p50_s": percentile(misses, 0.5),
            "lag_p50_s": percentile(lags, 0.5),
            "lag_p99_s": percentile(lags, 0.99),
            "lag_max_s": max(lags),
            "found_reply_p50_s": percentile([s["found_reply_s"] for s in samples], 0.5),
            "found_reply_p99_s": percentile([s["found_reply_s"] for s in samples], 0.99),
            "ack_p50_s": percentile([s["ack_s"] for s in samples], 0.5),
            "visible_at_ack": sum(1 for s in samples if s["visible_at_ack"]),
            "writes": count,
            "polls_mean": statistics.fmean(s["polls"] for s in samples),
        }

    async def allocation(self, count: int) -> dict[str, Any]:
        assert self.client is not None
        master = self.pids()[MASTER]
        result, (cpu,) = await self.measured(
            self.client, [master], "alloc_cycles", count, SETTLE_SECONDS
        )
        return {
            "grant_p50_s": percentile(result["grant"], 0.5),
            "grant_p99_s": percentile(result["grant"], 0.99),
            "release_p50_s": percentile(result["release"], 0.5),
            "registry_cpu_s": cpu / count,
            "client_cpu_s": result["client_cpu_s"] / count,
        }


async def one_round(system: System, args: argparse.Namespace, number: int) -> dict[str, Any]:
    """
    Every measurement once; C{"round"} says how many cores other programs
    kept busy meanwhile (the whole machine's busy time, from C{/proc/stat},
    less that of the registries, the drivers and this process).
    """
    tag = f"r{number}"
    pids = system.all_pids()
    wall0, machine0 = time.monotonic(), machine_busy_seconds()
    before = [CpuSample(p) for p in pids]
    result = {
        "sessions_one": await system.sessions(args.sessions, fresh=False),
        "sessions_fresh": await system.sessions(args.sessions, fresh=True),
        "writes": await system.writes(args.writes, tag),
        "lag": await system.lag(args.lag_writes, tag),
        "allocation": await system.allocation(args.cycles),
    }
    ours = sum(a.until(CpuSample(p)) for a, p in zip(before, pids))
    wall, busy = time.monotonic() - wall0, machine_busy_seconds() - machine0
    result["round"] = {
        "seconds": wall,
        "other_cores": max(0.0, busy - ours) / wall if wall > 0 else 0.0,
    }
    return result


def medians(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    summary: dict[str, dict[str, float | None]] = {}
    for part in rounds[0]:
        summary[part] = {}
        for key in rounds[0][part]:
            values = [r[part][key] for r in rounds if r[part][key] is not None]
            summary[part][key] = statistics.median(values) if values else None
    return summary


MS = 1000.0
US = 1e6
#: (label, part, key, scale, format)
ROWS: tuple[tuple[str, str, str, float, str], ...] = (
    ("admin session, one connection: p50 ms", "sessions_one", "p50_s", MS, ".3f"),
    ("  p99 ms", "sessions_one", "p99_s", MS, ".3f"),
    ("  createAdminSession p50 ms", "sessions_one", "create_p50_s", MS, ".3f"),
    ("  getAdmin p50 ms", "sessions_one", "get_admin_p50_s", MS, ".3f"),
    ("  destroy p50 ms", "sessions_one", "destroy_p50_s", MS, ".3f"),
    ("  registry µs CPU/session", "sessions_one", "registry_cpu_s", US, ".0f"),
    ("  client µs CPU/session", "sessions_one", "client_cpu_s", US, ".0f"),
    ("admin session, fresh connection: p50 ms", "sessions_fresh", "p50_s", MS, ".3f"),
    ("  p99 ms", "sessions_fresh", "p99_s", MS, ".3f"),
    ("  createAdminSession p50 ms (w/ connect)", "sessions_fresh", "create_p50_s", MS, ".3f"),
    ("  registry µs CPU/session", "sessions_fresh", "registry_cpu_s", US, ".0f"),
    ("  client µs CPU/session", "sessions_fresh", "client_cpu_s", US, ".0f"),
    ("addObjectWithType p50 ms", "writes", "add_p50_s", MS, ".3f"),
    ("  p99 ms", "writes", "add_p99_s", MS, ".3f"),
    ("removeObject p50 ms", "writes", "remove_p50_s", MS, ".3f"),
    ("  p99 ms", "writes", "remove_p99_s", MS, ".3f"),
    ("  master µs CPU/write", "writes", "master_cpu_s", US, ".0f"),
    ("  slave µs CPU/write", "writes", "slave_cpu_s", US, ".0f"),
    ("  client µs CPU/write", "writes", "client_cpu_s", US, ".0f"),
    ("add -> visible on slave p50 ms", "lag", "lag_p50_s", MS, ".3f"),
    ("  p99 ms", "lag", "lag_p99_s", MS, ".3f"),
    ("  max ms", "lag", "lag_max_s", MS, ".3f"),
    ("  last poll that missed it, sent p50 ms", "lag", "miss_p50_s", MS, ".3f"),
    ("  slave's reply to the poll that found it p50 ms", "lag", "found_reply_p50_s", MS, ".3f"),
    ("    p99 ms", "lag", "found_reply_p99_s", MS, ".3f"),
    ("  add acknowledged p50 ms (slave polled)", "lag", "ack_p50_s", MS, ".3f"),
    ("release -> grant to waiter p50 ms", "allocation", "grant_p50_s", MS, ".3f"),
    ("  p99 ms", "allocation", "grant_p99_s", MS, ".3f"),
    ("  releaseObject round trip p50 ms", "allocation", "release_p50_s", MS, ".3f"),
    ("  registry µs CPU/cycle", "allocation", "registry_cpu_s", US, ".0f"),
    ("  client µs CPU/cycle", "allocation", "client_cpu_s", US, ".0f"),
)


def report(kinds: list[str], summaries: dict[str, dict[str, Any]]) -> str:
    rows = []
    for label, part, key, scale, spec in ROWS:
        values: dict[str, Any] = {}
        for kind in kinds:
            value = summaries[kind][part][key]
            values[kind] = None if value is None else value * scale
        rows.append((label, values, spec))
        if key == "lag_max_s":
            rows.append(
                (
                    "  visible on slave at ack (median)",
                    {
                        k: f"{summaries[k]['lag']['visible_at_ack']:.0f}"
                        f"/{summaries[k]['lag']['writes']:.0f}"
                        for k in kinds
                    },
                    "",
                )
            )
    return side_by_side(kinds, rows)


def other_load(result: dict[str, Any]) -> float:
    """How many cores other programs kept busy during a round."""
    return float(result["round"]["other_cores"])


async def main(reactor: Any, args: argparse.Namespace) -> None:
    kinds = registries(args.registries)
    header("bench.admin_surface")
    root = Path(tempfile.mkdtemp(prefix="bench-admin-surface-"))
    reactor.addSystemEventTrigger("after", "shutdown", remove_tree, root, args.keep)
    systems: dict[str, System] = {}
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    try:
        for kind in kinds:
            (root / kind).mkdir()
            systems[kind] = System(reactor, kind, root / kind)
            await systems[kind].start()
        for kind in kinds:  # warm-up, not measured
            await one_round(systems[kind], warmup_args(args), -1)
        for number in range(args.runs):
            for kind in kinds if number % 2 == 0 else list(reversed(kinds)):

                async def attempt(system: System = systems[kind]) -> dict[str, Any]:
                    if args.quiet_wait > 0:
                        await wait_for_quiet(reactor, args.quiet_below, min(args.quiet_wait, 10))
                    return await one_round(system, args, number)

                result = await quietest(attempt, other_load, args.quiet_below, args.attempts)
                rounds[kind].append(result)
                out(
                    f"  round {number + 1} {kind}: {result['round']['seconds']:.1f} s, other "
                    f"programs kept {other_load(result):.2f} cores busy"
                )
    finally:
        for system in systems.values():
            try:
                await system.stop()
            except Exception as e:  # keep stopping the others
                out(f"stopping {system.kind}: {e}")
        remove_tree(root, args.keep)
    summaries = {kind: medians(rounds[kind]) for kind in kinds}
    out()
    out(
        f"Ice admin surface, master + 1 slave, real Ice 3.7 Python client; medians of "
        f"{args.runs} rounds ({args.sessions} sessions, {args.writes} adds + removes, "
        f"{args.lag_writes} lag writes, {args.cycles} allocation cycles per round)"
    )
    out(report(kinds, summaries))
    out(
        f"(lag: add's start on the master to the first Query.findObjectById reply on the slave "
        f"that has the object, {POLL_IN_FLIGHT} requests kept in flight; grant: just before "
        f"releaseObject to the waiting allocateObjectById's reply, which was sent "
        f"{SETTLE_SECONDS * 1000:.0f} ms earlier)"
    )
    write_json(
        args.json,
        {
            "benchmark": "admin_surface",
            "machine": machine(),
            "arguments": vars(args),
            "summary": summaries,
            "rounds": rounds,
        },
    )


def warmup_args(args: argparse.Namespace) -> argparse.Namespace:
    """The counts of the unmeasured warm-up round: at most 20 of each."""

    def small(count: int) -> int:
        return max(2, min(count, 20))

    return argparse.Namespace(
        sessions=small(args.sessions),
        writes=small(args.writes),
        lag_writes=small(args.lag_writes),
        cycles=small(args.cycles),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds per system (medians shown)")
    parser.add_argument("--sessions", type=int, default=200, help="admin sessions per round")
    parser.add_argument("--writes", type=int, default=200, help="adds (and removes) per round")
    parser.add_argument("--lag-writes", type=int, default=100, help="lag samples per round")
    parser.add_argument("--cycles", type=int, default=200, help="allocation cycles per round")
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts, one round, no waiting (a smoke run)"
    )
    common_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.sessions, args.writes, args.lag_writes, args.cycles = 1, 5, 5, 3, 5
        args.quiet_wait, args.attempts = 0.0, 1
    return args


if __name__ == "__main__":
    run(main, parse_args())
