"""
Locator failover when the master dies or hangs: IceGrid and gridreg side by
side, in one run.

Each scenario starts a fresh grid (a master and one slave), registers
C{HelloAdapter} with a real Ice server through the master and waits until
the slave knows it. A client then calls C{findAdapterById("HelloAdapter")}
on its locator every 2 ms (one call at a time), with the locator proxy
listing the master then the slave; after C{--kill-after} seconds the master
gets SIGKILL (it dies: its sockets are reset) or SIGSTOP (it hangs: the
kernel still accepts connections and keeps the old ones open). Reported:
the failover gap (from the last successful call before the outage to the
first successful call started after the signal), the longest gap between
successes anywhere in the run, and the calls that failed.

Clients:

  - C{ice}: a real Ice 3.7 client (C{bench/ice_failover_client.py}) with
    C{Ice.Default.Locator.EndpointSelection=Ordered} and
    C{Ice.Default.LocatorCacheTimeout=0}, otherwise default settings;
  - C{ice-acm}: the same plus C{Ice.ACM.Client.Timeout=2};
  - C{ice-acm-it}: C{ice-acm} plus C{Ice.Default.InvocationTimeout=1000};
  - C{ice-acm-ct}: C{ice-acm} plus C{Ice.Override.ConnectTimeout=500} (a
    retry may dial the hung master again: the kernel completes the TCP
    handshake, and without this the client waits up to the default 60 s
    endpoint timeout for the ValidateConnection that never comes);
  - C{gridreg.client}: L{gridreg.client.LocatorClient} in this process
    (C{request_timeout} 0.5 s, no cache, hedging as by default: a request
    unanswered after max(3 x p90 round trip, 1 ms), at most 50 ms, goes
    to the slave too);
  - C{gridreg.client-nohedge}: the same with C{hedging=False};
  - C{gridreg.client-buffered}: the same with hedging, but its requests
    wait in Twisted's buffer for the reactor's next writable event, as
    before the ninth session (a request on an idle plain TCP connection now
    goes to the socket at once): the client's change beside it, in one run.

A run in which the client never recovers ends after C{--duration-stop}
(SIGSTOP) or C{--duration-kill} (SIGKILL) seconds; its gap is then "at
least" the time since its last success.

With C{--huge-pages}, gridreg runs a second time as C{gridreg-2m}, with
C{GridReg.HugePages=1} (L{gridreg.huge_pages}), beside the default; with
C{--collapse}, as C{gridreg-collapse}, with C{GridReg.HugePages.Collapse=30}
(its dense memory moved onto huge pages once it runs,
L{gridreg.huge_page_collapse}).
C{--hedge-floor} sets C{gridreg.client}'s least hedge delay (ms; the
default is L{HedgePolicy}'s). C{--baseline DIR} runs gridreg a second time
from another checkout (as C{gridreg-base}: before and after a change in one
run); C{--normal-scheduler} as C{gridreg-normal}, with
C{GridReg.Scheduler=normal}; C{--late-close} as C{gridreg-late}, with
C{GridReg.EarlyClose=0} (no keeper, L{gridreg.early_close}).

To take a failover apart: with C{--slave-probe} the table also has the
slave's CPU and run-queue time (all its threads, C{schedstat}) from the
signal to the probe's reply; C{--trace DIR} records the benchmark's kill,
the master's, slave's and client's socket calls on one clock (C{perf
trace}, read with C{python -m bench.failover_trace}; with C{gridreg.client}
the client is the benchmark's reactor thread); C{--profile-slave
DIR} samples the slave with C{py-spy}. Tracing slows every process, so its
times are for the order of events, not for the gap. Untraced, each
C{gridreg.client} SIGKILL run prints the client's own steps (ms after the
signal, C{time.monotonic} in its connection): the master's connection
lost, the retry handed to the slave's connection, the slave's answer read.

    python -m bench.failover [--clients ice,ice-acm,ice-acm-it,ice-acm-ct,gridreg.client]
                             [--signals KILL,STOP] [--huge-pages] [--collapse]
                             [--hedge-floor MS] [--baseline DIR] [--normal-scheduler]
                             [--late-close]
                             [--slave-probe] [--trace DIR] [--profile-slave DIR]
                             [--kill-after 2] [--duration-stop 20] [--repeats 1]
                             [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import deferLater

from bench._grid import (
    BENCH_DIR,
    MASTER,
    Grid,
    internal_argument,
    open_writer,
    probe_adapter,
    remove_tree,
    track,
    wait_synced,
)
from bench._harness import (
    LOOPBACK,
    common_arguments,
    fmt,
    machine,
    out,
    ratio,
    registries,
    run,
    table,
    write_json,
)
from bench._pipeline_client import read_exactly
from bench.failover_trace import SlaveProfile, SyscallTrace
from bench.pipeline import captured_request
from gridreg.client import LocatorClient
from gridreg.client.hedging import HedgePolicy
from gridreg.client.locator import _LocatorConnection
from gridreg.ice.client import IceClientProtocol
from tests._processes import ICE_PYTHON, IceServer, LineProcess, ice_env, start_ice_server

CLIENTS = (
    "ice",
    "ice-acm",
    "ice-acm-it",
    "ice-acm-ct",
    "gridreg.client",
    "gridreg.client-nohedge",
    "gridreg.client-buffered",
)
SIGNALS = ("KILL", "STOP")
#: gridreg with GridReg.HugePages=1 (gridreg.huge_pages), with --huge-pages
HUGE_PAGES = "gridreg-2m"
#: gridreg with GridReg.HugePages.Collapse=30 (gridreg.huge_page_collapse), with --collapse
COLLAPSE = "gridreg-collapse"
#: gridreg from another checkout (--baseline DIR): the code before a change, in the same run
BASELINE = "gridreg-base"
#: gridreg with GridReg.Scheduler=normal (SCHED_OTHER, as IceGrid), with --normal-scheduler
NORMAL = "gridreg-normal"
#: gridreg without its keeper (--late-close): its connections close once its memory is freed
LATE = "gridreg-late"
#: the extra properties of gridreg's variants
VARIANTS = {
    BASELINE: {},
    NORMAL: {"GridReg.Scheduler": "normal"},
    LATE: {"GridReg.EarlyClose": "0"},
    HUGE_PAGES: {"GridReg.HugePages": "1"},
    COLLAPSE: {"GridReg.HugePages.Collapse": "30"},
}
ADAPTER = "HelloAdapter"
#: what the slave probe says if the slave closes its connection
_PROBE_CLOSED = "the slave closed the probe's connection"
SLAVE = "Replica1"
ICE_PROPERTIES = {
    "ice": {
        "Ice.Default.Locator.EndpointSelection": "Ordered",
        "Ice.Default.LocatorCacheTimeout": "0",
    },
    "ice-acm": {
        "Ice.Default.Locator.EndpointSelection": "Ordered",
        "Ice.Default.LocatorCacheTimeout": "0",
        "Ice.ACM.Client.Timeout": "2",
    },
    "ice-acm-it": {
        "Ice.Default.Locator.EndpointSelection": "Ordered",
        "Ice.Default.LocatorCacheTimeout": "0",
        "Ice.ACM.Client.Timeout": "2",
        "Ice.Default.InvocationTimeout": "1000",
    },
    "ice-acm-ct": {
        "Ice.Default.Locator.EndpointSelection": "Ordered",
        "Ice.Default.LocatorCacheTimeout": "0",
        "Ice.ACM.Client.Timeout": "2",
        "Ice.Override.ConnectTimeout": "500",
    },
}
#: a call still running at the end of a run is counted as failed if it started this long before
HANGING = 0.1
GOAL = (
    "killed master: gap at or below IceGrid's; hung master: gridreg.client answers within 100 ms "
    "(hedging)"
)

Call = tuple[float, float | None, str | None]


# -- clients -------------------------------------------------------------------------


class EofWatch:
    """
    A validated idle connection to the master's client endpoint, read on a
    thread of its own, so that the time the killed master's sockets close
    is known in this process's clock beside the client's gap.
    """

    def __init__(
        self, port: int, probe: tuple[int, bytes] | None = None, slave_pid: int | None = None
    ) -> None:
        #: with C{probe} (the slave's client port, a request): once the master's
        #: connection closes, a new connection to the slave sends the request
        self.probe = probe
        self.probed: dict[str, float] = {}
        #: the slave's (on CPU, waiting for a CPU) seconds, all its threads, at
        #: the signal and the probe's reply (not at the EOF: reading them takes a while)
        self.slave_pid = slave_pid
        self.slave_cpu: dict[str, tuple[float, float]] = {}
        self.sock = socket.create_connection((LOOPBACK, port), timeout=5)
        received = b""
        while len(received) < 14:  # Ice's ValidateConnection
            chunk = self.sock.recv(14 - len(received))
            if not chunk:
                raise RuntimeError("the master closed the connection before validating it")
            received += chunk
        self.sock.settimeout(None)
        self.closed_at: float | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            self.sock.recv(1)
        except OSError:
            pass  # reset: closed all the same
        self.closed_at = time.monotonic()
        if self.probe is not None:
            self._probe(*self.probe)
            self.sample_slave("replied")

    def sample_slave(self, moment: str) -> None:
        if self.slave_pid is not None:
            self.slave_cpu[moment] = sched_seconds(self.slave_pid)

    def _probe(self, port: int, request: bytes) -> None:
        """What a client failing over sees of the slave: connect, validation, one reply."""
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            self.probed["connected"] = time.monotonic()
            read_exactly(sock, 14, _PROBE_CLOSED)
            self.probed["validated"] = time.monotonic()
            sock.sendall(request)
            header = read_exactly(sock, 14, _PROBE_CLOSED)
            read_exactly(sock, int.from_bytes(header[10:14], "little") - 14, _PROBE_CLOSED)
            self.probed["replied"] = time.monotonic()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def sched_seconds(pid: int) -> tuple[float, float]:
    """A process's seconds on a CPU and waiting for one, all its threads (C{schedstat})."""
    run = wait = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except FileNotFoundError:
            continue  # a thread that just ended
        run += int(fields[0])
        wait += int(fields[1])
    return run / 1e9, wait / 1e9


def memory_mib(pid: int) -> dict[str, float]:
    """The process's anonymous memory and its part on huge pages, MiB."""
    found = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Anonymous", "AnonHugePages"):
                found[key] = int(line.split()[1]) / 1024
    return {
        "master_anon_mib": found.get("Anonymous", 0.0),
        "master_huge_mib": found.get("AnonHugePages", 0.0),
    }


async def run_ice_client(
    reactor: Any,
    grid: Grid,
    client: str,
    signal: str,
    args: argparse.Namespace,
    info: dict[str, Any] | None = None,
) -> tuple[list[Call], float, float]:
    """Run the real Ice client; signal the master mid-run. Returns calls, signal time, end."""
    duration = args.duration_stop if signal == "STOP" else args.duration_kill
    command = [
        ICE_PYTHON,
        str(BENCH_DIR / "ice_failover_client.py"),
        f"--locator={grid.locator(MASTER, SLAVE)}",
        f"--adapter={ADAPTER}",
        f"--duration={duration}",
        f"--interval={args.interval}",
    ] + [f"--property={k}={v}" for k, v in ICE_PROPERTIES[client].items()]
    process = track(
        reactor, LineProcess.spawn(reactor, f"{client} client", command, ice_env(), BENCH_DIR)
    )
    tracer: SyscallTrace | None = None
    profile: SlaveProfile | None = None
    label = (info or {}).get("kind", grid.kind)
    try:
        started = await process.next_event(lambda e: e.get("event") in ("started", "error"), 60)
        if started["event"] != "started":
            raise RuntimeError(f"the Ice client made no successful call: {started}")
        if args.trace is not None and process.pid is not None:
            pids = {"bench": os.getpid(), "master": grid.pid(MASTER), "slave": grid.pid(SLAVE)}
            tracer = SyscallTrace.start(
                args.trace, f"{label}-{client}-{signal}", {**pids, "client": process.pid}
            )
        if args.profile_slave is not None:
            profile = SlaveProfile.start(
                args.profile_slave, f"{label}-{client}-{signal}", grid.pid(SLAVE)
            )
        await deferLater(reactor, args.kill_after)
        if info is not None:
            info.update(memory_mib(grid.pid(MASTER)))
        if info is not None and "watch" in info:
            info["watch"].sample_slave("signal")
        signalled = time.monotonic()
        grid.signal(MASTER, signal)
        result = await process.next_event("result", duration + 30)
    finally:
        if profile is not None:
            profile.stop()
        if tracer is not None:
            tracer.stop(grid.running[SLAVE].process.lines[-30:])
        await process.terminate()
    calls = [(c[0], c[1], c[2]) for c in result["calls"]]
    return calls, signalled, float(result["end"])


async def run_locator_client(
    reactor: Any,
    grid: Grid,
    signal: str,
    args: argparse.Namespace,
    hedging: bool = True,
    info: dict[str, Any] | None = None,
    buffered: bool = False,
) -> tuple[list[Call], float, float]:
    """
    The same loop with gridreg's LocatorClient in this process; C{info}
    gets the hedge delay in force at the signal and the hedges sent. With
    C{buffered}, its requests go through Twisted's buffer.
    """
    duration = args.duration_stop if signal == "STOP" else args.duration_kill
    locator = LocatorClient(
        reactor,
        grid.locator(MASTER, SLAVE),
        cache_timeout=0,
        request_timeout=0.5,
        hedging=hedging,
        hedge_policy=(
            HedgePolicy(floor=args.hedge_floor / 1000) if args.hedge_floor is not None else None
        ),
    )
    steps: list[tuple[str, float, int]] = []
    locator._factory.connection = stepped(
        BufferedConnection if buffered else _LocatorConnection, steps
    )
    locator.startService()
    calls: list[Call] = []
    tracer: SyscallTrace | None = None
    profile: SlaveProfile | None = None
    signalled: float | None = None
    try:
        await locator.find_adapter_by_id(ADAPTER)
        if args.trace is not None:
            # the client is this process's reactor thread; its other threads are the bench's
            pids = {"bench": os.getpid(), "master": grid.pid(MASTER), "slave": grid.pid(SLAVE)}
            label = f"{(info or {}).get('kind', grid.kind)}-gridreg.client-{signal}"
            tracer = SyscallTrace.start(
                args.trace, label, pids, threads={threading.get_native_id(): "client"}
            )
        if args.profile_slave is not None:
            label = f"{(info or {}).get('kind', grid.kind)}-gridreg.client-{signal}"
            profile = SlaveProfile.start(args.profile_slave, label, grid.pid(SLAVE))
        begin = time.monotonic()
        sampled: bool | None = None
        deadline = begin + duration
        while time.monotonic() < deadline:
            if signalled is None and time.monotonic() >= begin + args.kill_after:
                live = locator.connection
                if info is not None and live is not None:
                    info["hedge_delay_ms"] = (
                        locator.hedge_policy.delay(live.latency) * 1000  # type: ignore[attr-defined]
                    )
                    info["round_trip_p90_ms"] = (
                        live.latency.percentile(0.9) or 0.0  # type: ignore[attr-defined]
                    ) * 1000
                signalled = time.monotonic()
                grid.signal(MASTER, signal)
            elif sampled is None and time.monotonic() >= begin + args.kill_after - 0.2:
                # read 0.2 s before the signal: reading smaps_rollup holds this
                # reactor (and the client) 0.1-2 ms, more for a larger master
                sampled = True
                if info is not None:
                    info.update(memory_mib(grid.pid(MASTER)))
            start = time.monotonic()
            error = None
            try:
                await locator.find_adapter_by_id(ADAPTER)
            except Exception as e:  # every failure is a result
                error = type(e).__name__
            calls.append((start, time.monotonic(), error))
            pause = start + args.interval - time.monotonic()
            await deferLater(reactor, max(0.0, pause))
        assert signalled is not None
    finally:
        if profile is not None:
            profile.stop()
        if tracer is not None:
            tracer.stop(grid.running[SLAVE].process.lines[-30:])
        if info is not None:
            info["hedges"] = locator.hedges
            if signalled is not None and signal == "KILL":  # a hung master's is lost by timeout
                info["client_steps_ms"] = client_steps(steps, signalled)
        await locator.stopService()
    return calls, signalled, time.monotonic()


class BufferedConnection(_LocatorConnection):
    """A locator connection whose requests wait for the reactor's writable event."""

    _send = IceClientProtocol._send


def stepped(base: type[_LocatorConnection], steps: list[tuple[str, float, int]]) -> type:
    """
    C{base} noting in C{steps} when it sends, receives and is lost (C{time.monotonic},
    its replica's index): how the client's side of a failover splits.
    """

    class Stepped(base):  # type: ignore[misc, valid-type]
        def _send(self, message: bytes) -> None:
            super()._send(message)
            steps.append(("sent", time.monotonic(), self.endpoint_index))

        def dataReceived(self, data: bytes) -> None:
            steps.append(("received", time.monotonic(), self.endpoint_index))
            super().dataReceived(data)

        def connectionLost(self, reason: Any = None) -> None:
            steps.append(("lost", time.monotonic(), self.endpoint_index))
            super().connectionLost(reason)

    return Stepped


#: gridreg.client's steps in a SIGKILL failover, in order
STEPS = ("lost", "retry sent", "answered")


def client_steps(steps: list[tuple[str, float, int]], signalled: float) -> dict[str, float]:
    """
    Ms after the signal: the client sees the master's connection lost, sends
    its first request to the slave after that, and reads the slave's answer.
    """
    found: dict[str, float] = {}
    after = [s for s in steps if s[1] >= signalled]
    lost = next((s for s in after if s[0] == "lost" and s[2] == 0), None)
    if lost is None:
        return found
    found["lost"] = (lost[1] - signalled) * 1000
    sent = next((s for s in after if s[0] == "sent" and s[2] != 0 and s[1] >= lost[1]), None)
    if sent is None:
        return found
    found["retry sent"] = (sent[1] - signalled) * 1000
    answer = next(
        (s for s in after if s[0] == "received" and s[2] == sent[2] and s[1] > sent[1]), None
    )
    if answer is not None:
        found["answered"] = (answer[1] - signalled) * 1000
    return found


# -- analysis ------------------------------------------------------------------------


def analyse(calls: list[Call], signalled: float, end: float) -> dict[str, Any]:
    """
    What the client saw around the signal. The client has recovered with
    the first successful call started after the signal. The failover gap is
    the longest time between two successive successful calls from the last
    success before the signal to that recovery: a call in flight at the
    signal may still succeed later (Ice retries it on the next replica),
    which does not shorten the outage it sat through. Without recovery the
    gap lasts at least until the end of the run.
    """
    successes = sorted((c[1], c[0]) for c in calls if c[2] is None and c[1] is not None)
    ends = [e for e, _ in successes]
    recovered = min((e for e, s in successes if s >= signalled), default=None)
    before = [e for e in ends if e <= signalled]
    window = ([before[-1]] if before else [signalled]) + [
        e for e in ends if signalled < e and (recovered is None or e <= recovered)
    ]
    if recovered is None:
        window.append(end)
    gap = max(b - a for a, b in zip(window, window[1:])) if len(window) > 1 else 0.0
    points = ends + [end]
    longest = max((b - a for a, b in zip(points, points[1:])), default=0.0)
    # the call in progress when the run ended counts only if it was hanging
    failed = [
        c
        for c in calls
        if c[2] is not None
        and (c[1] is None or c[1] >= signalled)
        and not (c[1] is None and end - c[0] < HANGING)
    ]
    error_types: dict[str, int] = {}
    for c in failed:
        error_types[c[2] or "?"] = error_types.get(c[2] or "?", 0) + 1
    durations = [c[1] - c[0] for c in calls if c[1] is not None]
    return {
        "calls": len(calls),
        "calls_before_signal": len(before),
        "gap_s": gap,
        "gap_is_lower_bound": recovered is None,
        "recovered_after_s": None if recovered is None else recovered - signalled,
        "longest_gap_anywhere_s": longest,
        "observed_s": end - signalled,
        "errors": len(failed),
        "error_types": error_types,
        "errors_before_signal": sum(
            1 for c in calls if c[2] is not None and c[1] is not None and c[1] < signalled
        ),
        "slowest_call_s": max(durations, default=None),
    }


# -- scenarios -----------------------------------------------------------------------


async def scenario(
    reactor: Any, kind: str, client: str, signal: str, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    grid = Grid(
        reactor,
        "gridreg" if kind in VARIANTS else kind,
        root / f"{kind}-{client}-{signal}",
        [MASTER, SLAVE],
        args.gridreg_internal,
    )
    if kind in VARIANTS:
        grid.extra = {name: dict(VARIANTS[kind]) for name in (MASTER, SLAVE)}
    server: IceServer | None = None
    watch: EofWatch | None = None
    info: dict[str, Any] = {"kind": kind}
    try:
        await start_replicas(grid, args.baseline if kind == BASELINE else None)
        writer = await open_writer(reactor, grid)
        try:
            await wait_synced(reactor, grid, writer, [SLAVE], "failover")
        finally:
            await writer.close()
        server = await start_ice_server(reactor, grid.locator(MASTER), (ADAPTER,), name=kind)
        track(reactor, server.process)
        await probe_adapter(reactor, grid.client_port(SLAVE), ADAPTER, timeout=30)
        if signal == "KILL":
            probe = None
            if args.slave_probe:
                probe = (grid.client_port(SLAVE), bytes.fromhex(captured_request()))
            watch = EofWatch(grid.client_port(MASTER), probe, grid.pid(SLAVE))
            info["watch"] = watch
        if client.startswith("gridreg.client"):
            calls, signalled, end = await run_locator_client(
                reactor,
                grid,
                signal,
                args,
                hedging=client != "gridreg.client-nohedge",
                info=info,
                buffered=client == "gridreg.client-buffered",
            )
        else:
            calls, signalled, end = await run_ice_client(reactor, grid, client, signal, args, info)
    finally:
        if watch is not None:
            watch.close()
        await grid.stop_all()
        if server is not None:
            await server.process.terminate()
        remove_tree(grid.root, args.keep)
    info.pop("watch", None)
    result = analyse(calls, signalled, end)
    result.update(info)
    if watch is not None and "signal" in watch.slave_cpu:
        base = watch.slave_cpu["signal"]
        result["slave_sched_ms"] = {
            moment: [round((v - b) * 1000, 2) for v, b in zip(values, base)]
            for moment, values in watch.slave_cpu.items()
            if moment != "signal"
        }
    if watch is not None and watch.closed_at is not None:
        result["master_eof_ms"] = (watch.closed_at - signalled) * 1000
        if "replied" in watch.probed:
            # from the master's EOF: what the slave costs a client that fails over
            result["slave_probe_ms"] = {
                k: (v - watch.closed_at) * 1000 for k, v in watch.probed.items()
            }
    gap = fmt(result["gap_s"] * 1000, ".0f")
    recovered = result["recovered_after_s"]
    out(
        f"  {kind:7} {client:22} SIG{signal:4}: gap {'>= ' if result['gap_is_lower_bound'] else ''}"
        f"{gap} ms, first success "
        + (
            f"{recovered * 1000:.0f} ms after the signal"
            if recovered is not None
            else f"never ({result['observed_s']:.1f} s observed)"
        )
        + f", {result['errors']} failed calls {result['error_types'] or ''}"
        + f", longest gap anywhere {result['longest_gap_anywhere_s'] * 1000:.0f} ms"
        + (
            f", master's EOF {result['master_eof_ms']:.1f} ms after the signal"
            if "master_eof_ms" in result
            else ""
        )
        + (
            ", then the slave connected/validated/answered after {connected:.1f}/"
            "{validated:.1f}/{replied:.1f} ms".format(**result["slave_probe_ms"])
            if "slave_probe_ms" in result
            else ""
        )
        + (
            f"; the slave's threads [on CPU, waiting for one] ms since the signal: "
            f"{result['slave_sched_ms']}"
            if "slave_sched_ms" in result
            else ""
        )
        + (
            f", master's anonymous memory {info['master_anon_mib']:.0f} MiB "
            f"({info['master_huge_mib']:.0f} on huge pages)"
            if "master_anon_mib" in info
            else ""
        )
        + (
            "; the client: master lost/retry sent/answered "
            + "/".join(f"{v:.2f}" for v in info["client_steps_ms"].values())
            + " ms after the signal"
            if info.get("client_steps_ms")
            else ""
        )
        + (
            f"; round trip p90 {info['round_trip_p90_ms']:.2f} ms, hedge delay "
            f"{info['hedge_delay_ms']:.1f} ms, {info['hedges']} hedges"
            if "hedge_delay_ms" in info
            else ""
        )
    )
    return result


async def start_replicas(grid: Grid, checkout: Path | None) -> None:
    """Start the master and the slave; gridreg from C{checkout} when given."""
    import tests._processes as processes

    own = processes.REPO_ROOT
    if checkout is not None:
        processes.REPO_ROOT = checkout.resolve()
    try:
        await grid.start(MASTER)
        await grid.start(SLAVE)
    finally:
        processes.REPO_ROOT = own


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median gap, plus the largest gap of all and every run."""
    ordered = sorted(runs, key=lambda r: r["gap_s"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["gap_max_s"] = ordered[-1]["gap_s"]
    median["gap_max_is_lower_bound"] = ordered[-1]["gap_is_lower_bound"]
    median["errors_max"] = max(r["errors"] for r in runs)
    eofs = [r["master_eof_ms"] for r in runs if "master_eof_ms" in r]
    if eofs:
        median["master_eof_ms_median"] = statistics.median(eofs)
    probes = [r["slave_probe_ms"]["replied"] for r in runs if "slave_probe_ms" in r]
    if probes:
        median["slave_probe_replied_ms_median"] = statistics.median(probes)
    hedges = [r["hedges"] for r in runs if "hedges" in r]
    if hedges:
        median["hedges_total"] = sum(hedges)
    steps = [r["client_steps_ms"] for r in runs if len(r.get("client_steps_ms", {})) == 3]
    if steps:
        median["client_steps_ms_median"] = {
            name: statistics.median(s[name] for s in steps) for name in STEPS
        }
        median["slave_answer_ms_median"] = statistics.median(
            s["answered"] - s["retry sent"] for s in steps
        )
    median["runs"] = runs
    return median


def describe(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    if result["gap_is_lower_bound"]:
        return f">= {result['gap_s']:.1f} s (stalled)"
    text = f"{result['gap_s'] * 1000:.0f} ms"
    if len(result["runs"]) > 1:
        worst = result["gap_max_s"]
        text += (
            f" (max >= {worst:.1f} s)"
            if result["gap_max_is_lower_bound"]
            else f" (max {worst * 1000:.0f})"
        )
    return text


def errors_cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    if not result["errors"]:
        return "0"
    kinds = ", ".join(f"{n} {name.rsplit('.', 1)[-1]}" for name, n in result["error_types"].items())
    return kinds


def report(
    kinds: list[str],
    clients: list[str],
    signals: list[str],
    results: dict[str, dict[str, dict[str, Any]]],
) -> None:
    out()
    out(
        "Failover gap: last successful findAdapterById before the outage -> first success "
        "after the master got the signal (client calls every 2 ms; locator = master, slave; "
        "median of "
        f"{len(next(iter(next(iter(results.values())).values()))['runs'])} runs)"
    )
    headers = ["client", "signal"]
    for kind in kinds:
        headers += [f"{kind} gap", f"{kind} failed calls"]
    compared = [k for k in kinds if k != "icegrid"] if "icegrid" in kinds else []
    headers += [f"gap {kind}/icegrid" for kind in compared]
    rows = []
    for client in clients:
        for signal in signals:
            key = f"{client} {signal}"
            row = [client, f"SIG{signal}"]
            for kind in kinds:
                r = results[kind].get(key)
                row += [describe(r), errors_cell(r)]
            for kind in compared:
                ice, ours = results["icegrid"].get(key), results[kind].get(key)
                cell = ""
                if ice is not None and ours is not None:
                    if not (ice["gap_is_lower_bound"] or ours["gap_is_lower_bound"]):
                        cell = fmt(ratio(ours["gap_s"], ice["gap_s"]), ".2f", "x")
                row.append(cell)
            rows.append(row)
    out(table(headers, rows))
    eof_rows = []
    for client in clients:
        for signal in signals:
            key = f"{client} {signal}"
            cells = [results[kind].get(key) or {} for kind in kinds]
            if any("master_eof_ms_median" in c or "hedges_total" in c for c in cells):
                eof_rows.append(
                    [f"{client} SIG{signal}"]
                    + [fmt(c.get("master_eof_ms_median"), ".1f") for c in cells]
                    + [fmt(c.get("slave_probe_replied_ms_median"), ".1f") for c in cells]
                    + [str(c.get("hedges_total", "-")) for c in cells]
                )
    if eof_rows:
        out("The master's EOF on an idle validated connection, ms after SIGKILL (median); with")
        out("--slave-probe, the slave's reply on a new connection made at that EOF, ms after it;")
        out("the hedges gridreg.client sent over all runs (about 500 calls a run):")
        out(
            table(
                ["client"]
                + [f"{k} EOF" for k in kinds]
                + [f"{k} slave" for k in kinds]
                + [f"{k} hedges" for k in kinds],
                eof_rows,
            )
        )
    step_rows = []
    for client in clients:
        for signal in signals:
            key = f"{client} {signal}"
            for kind in kinds:
                found = (results[kind].get(key) or {}).get("client_steps_ms_median")
                if found:
                    step_rows.append(
                        [f"{client} SIG{signal}", kind]
                        + [fmt(found[name], ".2f") for name in STEPS]
                        + [fmt(results[kind][key]["slave_answer_ms_median"], ".2f")]
                    )
    if step_rows:
        out("gridreg.client's steps, ms after the signal (medians of the runs): the master's")
        out("connection lost, the retry handed to the slave's, its answer read; and the slave's")
        out("answer from the retry (the median of each run's difference):")
        out(table(["client", "registry", *STEPS, "slave's answer"], step_rows))
    out(f"goal: {GOAL}")


async def main(reactor: Any, args: argparse.Namespace) -> None:
    kinds = registries(args.registries)
    if args.collapse:
        kinds.append(COLLAPSE)
    if args.huge_pages:
        kinds.append(HUGE_PAGES)
    if args.normal_scheduler:
        kinds.append(NORMAL)
    if args.late_close:
        kinds.append(LATE)
    if args.baseline is not None:
        kinds.insert(kinds.index("gridreg") if "gridreg" in kinds else len(kinds), BASELINE)
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    signals = [s.strip().upper() for s in args.signals.split(",") if s.strip()]
    for c in clients:
        if c not in CLIENTS:
            raise SystemExit(f"unknown client {c!r}; choose from {', '.join(CLIENTS)}")
    for s in signals:
        if s not in SIGNALS:
            raise SystemExit(f"unknown signal {s!r}; choose from {', '.join(SIGNALS)}")
    root = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    # an interrupted run skips the finally below; the reactor's shutdown does not
    reactor.addSystemEventTrigger("after", "shutdown", remove_tree, root, args.keep)
    results: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in kinds}
    try:
        for client in clients:
            for signal in signals:
                for kind in kinds:
                    runs = [
                        await scenario(reactor, kind, client, signal, root, args)
                        for _ in range(args.repeats)
                    ]
                    results[kind][f"{client} {signal}"] = combine(runs)
    finally:
        remove_tree(root, args.keep)
    report(kinds, clients, signals, results)
    write_json(
        args.json,
        {
            "benchmark": "failover",
            "machine": machine(),
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": results,
        },
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help=f"comma-separated, from {', '.join(CLIENTS)}"
    )
    parser.add_argument("--signals", default=",".join(SIGNALS), help="KILL and/or STOP")
    parser.add_argument(
        "--kill-after",
        type=float,
        default=2.0,
        help="seconds of calls before the master gets the signal",
    )
    parser.add_argument(
        "--duration-kill",
        type=float,
        default=6.0,
        help="seconds a SIGKILL run lasts (from the first call)",
    )
    parser.add_argument(
        "--duration-stop",
        type=float,
        default=20.0,
        help="seconds a SIGSTOP run lasts (from the first call)",
    )
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between calls")
    internal_argument(parser)
    parser.add_argument(
        "--huge-pages",
        action="store_true",
        help=f"also run gridreg with GridReg.HugePages=1 (as {HUGE_PAGES}): glibc's "
        "malloc on transparent huge pages (gridreg.huge_pages)",
    )
    parser.add_argument(
        "--collapse",
        action="store_true",
        help=f"also run gridreg with GridReg.HugePages.Collapse=30 (as {COLLAPSE}): its "
        "dense memory moved onto huge pages once it runs (gridreg.huge_page_collapse)",
    )
    parser.add_argument(
        "--slave-probe",
        action="store_true",
        help="at the master's EOF, time a new connection to the slave and one "
        "findAdapterById on it (it competes with the client's own)",
    )
    parser.add_argument(
        "--late-close",
        action="store_true",
        help=f"also run gridreg with GridReg.EarlyClose=0 (as {LATE}): no keeper, a killed "
        "master's connections close once its memory is freed",
    )
    parser.add_argument(
        "--normal-scheduler",
        action="store_true",
        help=f"also run gridreg with GridReg.Scheduler=normal (as {NORMAL}): SCHED_OTHER, "
        "as IceGrid, instead of SCHED_BATCH",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"also run gridreg from the checkout DIR (as {BASELINE}), e.g. `git archive "
        "BASE | tar -x -C DIR': before and after a change in one run",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        default=None,
        metavar="DIR",
        help="`perf trace' the benchmark, master, slave and client (gridreg.client: "
        "the benchmark's reactor thread) around the signal into DIR (one file per run; "
        "slows them all a little)",
    )
    parser.add_argument(
        "--profile-slave",
        type=Path,
        default=None,
        metavar="DIR",
        help="`py-spy record' the slave from the client's start to its end into DIR "
        "(raw stacks, one file per run)",
    )
    parser.add_argument(
        "--hedge-floor",
        type=float,
        default=None,
        help="gridreg.client's least hedge delay, ms (default: HedgePolicy's)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs per scenario; the table shows the median gap (and the max)",
    )
    common_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
