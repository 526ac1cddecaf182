"""
Many node sessions on one registry master: what they cost it.

gridreg: one C{gridregistry} master (C{IceGrid.Registry.NodeSessionTimeout}
= C{--session-timeout}) and C{--nodes} simulated nodes in this process,
each its own mutual-TLS connection to the master's internal endpoint with
its own node certificate (C{node-node<i>.pem}, L{gridreg.certs.make_demo_certs}).
Each does what C{gridnode} does (L{gridreg.protocol.node_commands}):
C{Hello} (role C{node}), C{RegisterNode}, a full C{NodeLiveState}, answers
the replica's C{DeployServers} (the blob over the chunked channel,
L{TransferResponder}) and reports its servers C{inactive}, then sends
C{NodeKeepAlive} every session timeout / 2 (as gridnode and icegridnode;
each node at its own phase).

IceGrid (same run, one after the other, never at once): one
C{icegridregistry} master with the same timeout and C{--icegrid-nodes} real
C{icegridnode} processes (IceGrid's node protocol is internal Slice that
3.7 does not ship). An IceGrid node keeps its session alive every timeout
/ 2 (observed with C{Ice.Trace.Protocol=1}); its keepalives are counted as
nodes x window / period.

Both deploy the same application first: C{--servers-per-node} manual
servers on every node (never started), so registration carries a
deployment. Measured, per system:

  - registration: from the first connection to the last node registered
    (gridreg: each node's connect to its first C{DeployServers}; IceGrid:
    to C{icegridadmin node list} listing them all);
  - the registry's RSS (C{VmRSS}) before the nodes, once registered, and
    after the window; C{VmHWM};
  - the registry's CPU time (C{/proc/PID/stat}) over an idle window before
    the nodes and over the measured window (C{--window} s, after one
    keepalive period of settling), per keepalive, raw and less the idle
    rate;
  - gridreg: keepalive round trips p50/p99/max (sent in the window), lost
    sessions, this process's own CPU (if it nears a core, the round trips
    measure this process); IceGrid: the node processes' CPU;
  - other programs' load on the machine during the window.

    python -m bench.node_sessions [--nodes 500] [--icegrid-nodes N (default: --nodes)]
        [--session-timeout 8] [--window 30] [--servers-per-node 1]
        [--registries icegrid,gridreg] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore
from twisted.internet.endpoints import connectProtocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols import amp

from bench._grid import INSTANCE, MASTER, remove_tree, track
from bench._harness import (
    LOOPBACK,
    common_arguments,
    cpu_seconds,
    fmt,
    header,
    machine,
    machine_busy_seconds,
    memory_kib,
    out,
    ratio,
    registries,
    run,
    table,
    wait_for_quiet,
    write_json,
)
from bench._node_grid import ICEGRIDADMIN, ICEGRIDNODE, NodeBenchGrid
from gridreg.admin.session import open_admin_session
from gridreg.certs import make_demo_certs
from gridreg.config.properties import Properties
from gridreg.ice.types import TcpEndpoint
from gridreg.protocol.chunking import TransferReceiver, TransferResponder
from gridreg.protocol.commands import PROTOCOL_VERSION, Hello
from gridreg.protocol.errors import NodeError, NotFoundError
from gridreg.protocol.node_commands import (
    ActivateServer,
    AdapterRegistered,
    DeployServers,
    EnableServer,
    NodeKeepAlive,
    NodeLiveState,
    ProcessRegistered,
    RegisterNode,
    ReplicasChanged,
    ShutdownNode,
    SignalServer,
    StopServer,
)
from gridreg.registry.security import InternalSecurity
from gridreg.tls import NODE
from tests._processes import LineProcess, write_config

#: connections opened at once while registering (TLS handshakes cost the registry)
CONNECT_AT_ONCE = 32
REQUEST_TIMEOUT = 30.0


def node_names(count: int) -> list[str]:
    return [f"node{i}" for i in range(count)]


def application(nodes: list[str], servers_per_node: int) -> str:
    """One application placing C{servers_per_node} manual servers on every node."""
    body = []
    for node in nodes:
        servers = "".join(
            f'<server id="{node}-s{j}" exe="/bin/true" activation="manual">'
            f'<adapter name="A" id="{node}-s{j}-A" endpoints="tcp -h {LOOPBACK}"/></server>'
            for j in range(servers_per_node)
        )
        body.append(f'<node name="{node}">{servers}</node>')
    return f'<icegrid><application name="Sessions">{"".join(body)}</application></icegrid>'


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def rss_mib(pid: int) -> tuple[float, float]:
    found = memory_kib(pid)
    return found.get("VmRSS", 0) / 1024, found.get("VmHWM", 0) / 1024


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_averages() -> tuple[float, float, float]:
    cpus = os.cpu_count() or 1
    one, five, fifteen = os.getloadavg()
    return one / cpus, five / cpus, fifteen / cpus


# -- gridreg: simulated nodes ----------------------------------------------------------


class SimulatedNode(TransferResponder, amp.AMP):
    """The node side of one node session (as L{gridreg.node.protocol}), no servers run."""

    def __init__(self, bench: GridregNodes, name: str) -> None:
        super().__init__()
        self.bench = bench
        self.name = name
        self.transfers = TransferReceiver(64 * 1024**2, max_transfers=2)
        self.deployed: Deferred[float] = Deferred()
        self.servers: list[str] = []
        self.serial = -1

    @DeployServers.responder
    def deploy_servers(self, transfer: str, serial: int) -> dict[str, Any]:
        entries = json.loads(self.transfers.take(transfer).decode("utf-8"))
        applied = serial > self.serial
        if applied:
            self.serial = serial
            self.servers = [entry["descriptor"]["id"] for entry in entries]
        self.bench.deployments += 1
        if not self.deployed.called:
            self.deployed.callback(time.monotonic())
        return {"applied": applied}

    @ActivateServer.responder
    def activate_server(self, server: str) -> dict[str, Any]:
        raise NodeError(f"{server}: a simulated node runs no servers")

    @StopServer.responder
    def stop_server(self, server: str) -> dict[str, Any]:
        return {}

    @EnableServer.responder
    def enable_server(self, server: str, enabled: bool) -> dict[str, Any]:
        return {}

    @SignalServer.responder
    def signal_server(self, server: str, signal: str) -> dict[str, Any]:
        return {}

    @AdapterRegistered.responder
    def adapter_registered(self, adapter: str, replica_group: str, proxy: str) -> dict[str, Any]:
        return {}

    @ProcessRegistered.responder
    def process_registered(self, server: str, proxy: str) -> dict[str, Any]:
        return {}

    @ReplicasChanged.responder
    def replicas_changed(self, replicas: str) -> dict[str, Any]:
        return {}

    @ShutdownNode.responder
    def shutdown_node(self) -> dict[str, Any]:
        return {}

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.transfers.clear()
        self.bench.lost += 1


class GridregNodes:
    """The simulated nodes and their keepalive figures."""

    def __init__(self, reactor: Any, certs: Path, names: list[str], internal_port: int) -> None:
        self.reactor = reactor
        self.names = names
        self.port = internal_port
        self.tls = make_demo_certs(str(certs), nodes=names, instance=INSTANCE)
        self.protocols: dict[str, SimulatedNode] = {}
        self.loops: list[LoopingCall] = []
        self.registration: list[float] = []
        self.deployments = 0
        self.lost = 0
        self.window: tuple[float, float] | None = None
        self.rtts: list[float] = []
        self.sent_in_window = 0
        self.failed = 0
        self.not_found = 0
        self.keepalives = 0
        self.period = 0.0

    def info(self) -> str:
        uname = platform.uname()
        return json.dumps(
            {
                "hostname": uname.node,
                "os": uname.system,
                "release": uname.release,
                "version": uname.version,
                "machine": uname.machine,
                "nproc": os.cpu_count() or 1,
                "data": "",
            }
        )

    async def register(self, name: str) -> None:
        begin = time.monotonic()
        security = InternalSecurity(self.tls[NODE, name])
        endpoint = security.client_endpoint(self.reactor, TcpEndpoint(LOOPBACK, self.port), MASTER)
        protocol = SimulatedNode(self, name)
        await connectProtocol(endpoint, protocol).addTimeout(REQUEST_TIMEOUT, self.reactor)
        await protocol.callRemote(
            Hello, version=PROTOCOL_VERSION, role="node", name=name
        ).addTimeout(REQUEST_TIMEOUT, self.reactor)
        answer = await protocol.callRemote(
            RegisterNode, name=name, info=self.info(), epoch=""
        ).addTimeout(REQUEST_TIMEOUT, self.reactor)
        await protocol.callRemote(NodeLiveState, servers="{}", adapters="{}", full=True).addTimeout(
            REQUEST_TIMEOUT, self.reactor
        )
        await protocol.deployed.addTimeout(REQUEST_TIMEOUT, self.reactor)
        if protocol.servers:
            state = {
                s: {"state": "inactive", "pid": None, "enabled": True} for s in protocol.servers
            }
            await protocol.callRemote(
                NodeLiveState, servers=json.dumps(state), adapters="{}", full=False
            ).addTimeout(REQUEST_TIMEOUT, self.reactor)
        self.registration.append(time.monotonic() - begin)
        self.protocols[name] = protocol
        self.period = float(answer["session_timeout"]) / 2

    async def register_all(self) -> float:
        """Register every node, C{CONNECT_AT_ONCE} at a time; return the seconds taken."""
        slots = DeferredSemaphore(CONNECT_AT_ONCE)
        begin = time.monotonic()
        results = await DeferredList(
            [slots.run(lambda n=n: Deferred.fromCoroutine(self.register(n))) for n in self.names],
            consumeErrors=True,
        )
        failures = [f for ok, f in results if not ok]
        if failures:
            raise RuntimeError(
                f"{len(failures)} of {len(self.names)} nodes could not register; first: "
                f"{failures[0].getErrorMessage()}"
            )
        return time.monotonic() - begin

    def start_keepalives(self) -> None:
        for protocol in self.protocols.values():
            loop = LoopingCall(self._keep_alive, protocol)
            loop.clock = self.reactor
            self.loops.append(loop)
            self.reactor.callLater(random.uniform(0, self.period), self._start, loop)

    def _start(self, loop: LoopingCall) -> None:
        if not loop.running and self.loops:
            loop.start(self.period, now=True)

    def _keep_alive(self, protocol: SimulatedNode) -> None:
        if protocol.transport is None:
            return
        sent = time.monotonic()
        in_window = self.window is not None and self.window[0] <= sent < self.window[1]
        if in_window:
            self.sent_in_window += 1
        one, five, fifteen = load_averages()
        d = protocol.callRemote(NodeKeepAlive, load1=one, load5=five, load15=fifteen)

        def answered(_: object) -> None:
            self.keepalives += 1
            if in_window:
                self.rtts.append(time.monotonic() - sent)

        def failed(failure: Any) -> None:
            self.failed += 1
            if failure.check(NotFoundError):
                self.not_found += 1

        d.addTimeout(self.period * 4, self.reactor).addCallbacks(answered, failed)

    async def stop(self) -> None:
        loops, self.loops = self.loops, []
        for loop in loops:
            if loop.running:
                loop.stop()
        for protocol in self.protocols.values():
            if protocol.transport is not None:
                protocol.transport.abortConnection()


async def deploy_gridreg(reactor: Any, grid: NodeBenchGrid, xml: str) -> None:
    properties = Properties()
    for key, value in {
        "Ice.Default.Locator": grid.locator(MASTER),
        "IceSSL.DefaultDir": str(grid.certs),
        "IceSSL.CAs": "ca.pem",
        "IceSSL.CertFile": "admin-admin.pem",
        "IceSSL.KeyFile": "admin-admin.key",
    }.items():
        properties.set(key, value)
    session = await open_admin_session(reactor, properties, None, 60.0)
    try:
        await session.upload_and_add_application(xml, False)
    finally:
        await session.close()


async def measure_gridreg(reactor: Any, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    names = node_names(args.nodes)
    grid = NodeBenchGrid(
        reactor,
        "gridreg",
        root,
        (MASTER,),
        {"IceGrid.Registry.NodeSessionTimeout": str(args.session_timeout)},
    )
    begin = time.monotonic()
    nodes = GridregNodes(reactor, grid.certs, names, grid.ports[MASTER]["internal"])
    certs_seconds = time.monotonic() - begin
    result: dict[str, Any] = {"nodes": args.nodes, "certificates_s": certs_seconds}
    try:
        await grid.start(MASTER)
        pid = grid.pid(MASTER)
        if args.servers_per_node > 0:
            await deploy_gridreg(reactor, grid, application(names, args.servers_per_node))
        result.update(await idle_window(reactor, args, pid))
        result["rss_before_mib"] = rss_mib(pid)[0]
        result["registration_s"] = await nodes.register_all()
        result["registration_p50_s"] = percentile(nodes.registration, 0.5)
        result["registration_p99_s"] = percentile(nodes.registration, 0.99)
        result["rss_registered_mib"] = rss_mib(pid)[0]
        result["period_s"] = nodes.period
        nodes.start_keepalives()
        await deferLater(reactor, nodes.period + 1)  # every node has sent one
        if args.quiet_wait > 0:
            await wait_for_quiet(reactor, args.quiet_below, min(args.quiet_wait, 30))
        start = time.monotonic()
        nodes.window = (start, start + args.window)
        before = (cpu_seconds(pid), own_cpu(), machine_busy_seconds(), nodes.keepalives)
        await deferLater(reactor, args.window)
        after = (cpu_seconds(pid), own_cpu(), machine_busy_seconds(), nodes.keepalives)
        wall = time.monotonic() - start
        await deferLater(reactor, 2)  # the window's last answers
        registry_cpu = after[0] - before[0]
        bench_cpu = after[1] - before[1]
        count = nodes.sent_in_window
        result.update(
            window_s=wall,
            keepalives=count,
            keepalives_answered=len(nodes.rtts),
            keepalives_failed=nodes.failed,
            sessions_not_found=nodes.not_found,
            connections_lost=nodes.lost,
            registry_cpu_s=registry_cpu,
            registry_cores=registry_cpu / wall,
            cpu_us_per_keepalive=registry_cpu / count * 1e6 if count else None,
            net_cpu_us_per_keepalive=(
                (registry_cpu - result["idle_cores"] * wall) / count * 1e6 if count else None
            ),
            rtt_p50_ms=_ms(percentile(nodes.rtts, 0.5)),
            rtt_p99_ms=_ms(percentile(nodes.rtts, 0.99)),
            rtt_max_ms=_ms(max(nodes.rtts) if nodes.rtts else None),
            client_cores=bench_cpu / wall,
            other_cores=max(0.0, (after[2] - before[2] - registry_cpu - bench_cpu) / wall),
            rss_after_mib=rss_mib(pid)[0],
            hwm_mib=rss_mib(pid)[1],
            deployments=nodes.deployments,
        )
    finally:
        await nodes.stop()
        await grid.stop_all()
    return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


async def idle_window(reactor: Any, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    """The registry's CPU use with no node, over C{--idle} seconds."""
    start, cpu = time.monotonic(), cpu_seconds(pid)
    await deferLater(reactor, args.idle)
    return {"idle_cores": (cpu_seconds(pid) - cpu) / (time.monotonic() - start)}


# -- IceGrid: real icegridnode processes ----------------------------------------------


async def icegridadmin(root: Path, locator: str, *commands: str) -> tuple[str, int]:
    config = root / "icegridadmin.cfg"
    write_config(config, {"Ice.Default.Locator": locator})
    argv = [f"--Ice.Config={config}", "-u", "x", "-p", "x"]
    for command in commands:
        argv += ["-e", command]
    output, err, code = await getProcessOutputAndValue(
        ICEGRIDADMIN, argv, env=dict(os.environ), path=str(root)
    )
    return (output + err).decode(), code


async def measure_icegrid(reactor: Any, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    count = args.icegrid_nodes if args.icegrid_nodes is not None else args.nodes
    names = node_names(count)
    grid = NodeBenchGrid(
        reactor,
        "icegrid",
        root,
        (MASTER,),
        {"IceGrid.Registry.NodeSessionTimeout": str(args.session_timeout)},
    )
    locator = grid.locator(MASTER)
    processes: list[LineProcess] = []
    result: dict[str, Any] = {"nodes": count}
    try:
        await grid.start(MASTER)
        pid = grid.pid(MASTER)
        if args.servers_per_node > 0:
            path = root / "sessions.xml"
            path.write_text(application(names, args.servers_per_node))
            text, code = await icegridadmin(root, locator, f"application add {path}")
            if code != 0:
                raise RuntimeError(f"icegridadmin application add: {text}")
        result.update(await idle_window(reactor, args, pid))
        result["rss_before_mib"] = rss_mib(pid)[0]
        begin = time.monotonic()
        for name in names:
            node_dir = root / "nodes" / name
            (node_dir / "data").mkdir(parents=True, exist_ok=True)
            config = node_dir / "node.cfg"
            write_config(
                config,
                {
                    "Ice.Default.Locator": locator,
                    "IceGrid.Node.Name": name,
                    "IceGrid.Node.Endpoints": f"tcp -h {LOOPBACK}",
                    "IceGrid.Node.Data": str((node_dir / "data").resolve()),
                },
            )
            process = LineProcess.spawn(
                reactor, name, [ICEGRIDNODE, f"--Ice.Config={config}"], dict(os.environ), node_dir
            )
            processes.append(track(reactor, process))
        deadline = time.monotonic() + max(60.0, count * 0.5)
        listed = 0
        while time.monotonic() < deadline:
            text, code = await icegridadmin(root, locator, "node list")
            listed = len([line for line in text.split() if line.startswith("node")])
            if code == 0 and listed >= count:
                break
            await deferLater(reactor, 0.25)
        else:
            raise RuntimeError(f"only {listed} of {count} IceGrid nodes registered")
        result["registration_s"] = time.monotonic() - begin
        result["rss_registered_mib"] = rss_mib(pid)[0]
        period = args.session_timeout / 2
        result["period_s"] = period
        await deferLater(reactor, period + 1)
        if args.quiet_wait > 0:
            await wait_for_quiet(reactor, args.quiet_below, min(args.quiet_wait, 30))
        pids = [p.pid for p in processes if p.pid is not None and p.ended is None]
        start = time.monotonic()
        before = (cpu_seconds(pid), sum(_cpu(p) for p in pids), machine_busy_seconds())
        await deferLater(reactor, args.window)
        after = (cpu_seconds(pid), sum(_cpu(p) for p in pids), machine_busy_seconds())
        wall = time.monotonic() - start
        registry_cpu = after[0] - before[0]
        nodes_cpu = after[1] - before[1]
        keepalives = count * wall / period
        result.update(
            window_s=wall,
            keepalives=round(keepalives),
            registry_cpu_s=registry_cpu,
            registry_cores=registry_cpu / wall,
            cpu_us_per_keepalive=registry_cpu / keepalives * 1e6,
            net_cpu_us_per_keepalive=(registry_cpu - result["idle_cores"] * wall)
            / keepalives
            * 1e6,
            client_cores=nodes_cpu / wall,
            other_cores=max(0.0, (after[2] - before[2] - registry_cpu - nodes_cpu) / wall),
            rss_after_mib=rss_mib(pid)[0],
            hwm_mib=rss_mib(pid)[1],
            nodes_alive=sum(1 for p in processes if p.ended is None),
        )
    finally:
        await DeferredList(
            [p.terminate() for p in processes if p.ended is None], consumeErrors=True
        )
        await grid.stop_all()
    return result


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


# -- report ------------------------------------------------------------------------------

ROWS = (
    ("nodes", "nodes", ".0f"),
    ("keepalive period s", "period_s", ".1f"),
    ("registration, all nodes s", "registration_s", ".2f"),  # IceGrid: + spawning them
    ("  per node p50 / p99 ms", None, ""),
    ("registry RSS before MiB", "rss_before_mib", ".1f"),
    ("registry RSS registered MiB", "rss_registered_mib", ".1f"),
    ("registry RSS after window MiB", "rss_after_mib", ".1f"),
    ("  per node KiB", None, ""),
    ("registry peak RSS MiB", "hwm_mib", ".1f"),
    ("keepalives in window", "keepalives", ".0f"),
    ("registry cores, idle", "idle_cores", ".4f"),
    ("registry cores, window", "registry_cores", ".3f"),
    ("registry µs CPU/keepalive", "cpu_us_per_keepalive", ".1f"),
    ("  less the idle rate", "net_cpu_us_per_keepalive", ".1f"),
    ("keepalive RTT p50 ms", "rtt_p50_ms", ".2f"),
    ("keepalive RTT p99 ms", "rtt_p99_ms", ".2f"),
    ("keepalive RTT max ms", "rtt_max_ms", ".2f"),
    ("keepalives failed / sessions lost", None, ""),
    ("node side cores (bench / icegridnodes)", "client_cores", ".3f"),
    ("other programs, cores", "other_cores", ".2f"),
)


#: rows whose ratio means something (registration includes IceGrid's process spawns)
COMPARABLE = (
    "registry_cores",
    "cpu_us_per_keepalive",
    "net_cpu_us_per_keepalive",
    "rss_after_mib",
    "hwm_mib",
)


def cell(result: dict[str, Any] | None, label: str, key: str | None, spec: str) -> str:
    if result is None:
        return "-"
    if key is not None:
        value = result.get(key)
        return fmt(value if isinstance(value, (int, float)) else None, spec)
    if label.startswith("  per node p50"):
        p50, p99 = result.get("registration_p50_s"), result.get("registration_p99_s")
        return "-" if p50 is None else f"{p50 * 1000:.0f} / {p99 * 1000:.0f}"
    if label.startswith("  per node KiB"):
        grown = result["rss_after_mib"] - result["rss_before_mib"]
        return f"{grown * 1024 / result['nodes']:.1f}"
    if label.startswith("keepalives failed"):
        if "keepalives_failed" not in result:
            return "-"
        return f"{result['keepalives_failed']} / {result['connections_lost']}"
    return "-"


def report(results: dict[str, dict[str, Any]]) -> None:
    kinds = [k for k in ("icegrid", "gridreg") if k in results]
    headers = ["metric", *kinds]
    if len(kinds) == 2:
        headers.append("gridreg/icegrid")
    rows = []
    for label, key, spec in ROWS:
        line = [label] + [cell(results[k], label, key, spec) for k in kinds]
        if len(kinds) == 2:
            comparable = key in COMPARABLE
            value = (
                ratio(results["gridreg"].get(key), results["icegrid"].get(key))
                if comparable
                else None
            )
            line.append(fmt(value, ".2f", "x") if comparable else "")
        rows.append(line)
    out(table(headers, rows))


async def main(reactor: Any, args: argparse.Namespace) -> None:
    kinds = registries(args.registries)
    header("bench.node_sessions")
    root = Path(tempfile.mkdtemp(prefix="bench-node-sessions-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        for kind in kinds:
            out(f"{kind}: measuring ...")
            measure = measure_icegrid if kind == "icegrid" else measure_gridreg
            results[kind] = await measure(reactor, args, root / kind)
            if args.verbose:
                out(json.dumps(results[kind], indent=2, sort_keys=True))
        out()
        out(
            f"NodeSessionTimeout {args.session_timeout} s, {args.servers_per_node} server(s) "
            f"per node, {args.window:g} s window:"
        )
        report(results)
        write_json(args.json, {"machine": machine(), "args": vars(args), "results": results})
    finally:
        remove_tree(root, args.keep)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500, help="simulated gridreg nodes")
    parser.add_argument(
        "--icegrid-nodes",
        type=int,
        default=None,
        help="real icegridnode processes (default: --nodes; about 2.2 MiB private memory each)",
    )
    parser.add_argument("--session-timeout", type=int, default=8, help="NodeSessionTimeout, s")
    parser.add_argument("--window", type=float, default=30.0, help="measured window, s")
    parser.add_argument("--idle", type=float, default=5.0, help="idle window before the nodes, s")
    parser.add_argument("--servers-per-node", type=int, default=1)
    common_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
