"""
Locate requests from real Ice clients: IceGrid and gridreg side by side.

For each registry: start it (dynamic registration on), register
C{HelloAdapter} with a real Ice server, then for each setting (N requests in
flight from each of P real Ice 3.7 client processes) run the clients'
C{bench} command: asynchronous C{findAdapterById} calls made directly on the
locator proxy, so every call reaches the registry (there is no locator cache
in the way). Each window has a warm-up, then a measured window over which
the registry's CPU time is read from C{/proc/PID/stat}. Peak RSS is
C{VmHWM} from C{/proc/PID/status} at the end.

What the client pays per reply is reported next to the registry's cost: the
clients' CPU per reply, their wake-ups per reply (voluntary context switches
of all their threads, from C{/proc/PID/task/*/status}: an Ice thread that
finds no reply waiting sleeps in C{epoll_wait}), the registry's wake-ups per
locate, and the loopback TCP segments per locate (C{/proc/net/snmp}
C{InSegs}, the whole machine's, so other programs' traffic counts too).
Client preemptions per reply (involuntary context switches) are what a
registry on the clients' machine costs them beyond its CPU: on a busy
machine each request wakes the registry on the core of the client that sent
it, and a woken registry preempts that client. C{--batch} runs the named
registries under C{SCHED_BATCH} (as C{chrt -a -b -p 0 PID}), whose woken
threads wait for the running task's slice instead.

The registry's CPU per locate is also split into user and system time
(C{/proc/PID/stat} utime and stime): with one request in flight most of it
is the kernel's (the wake-up, C{recv}, C{send}), which no registry code
removes. C{--syscalls} counts the registry's system calls per locate
(C{perf stat} on the C{raw_syscalls:sys_enter} tracepoint, all threads);
C{--floor} runs C{bench.wakeup_floor}'s bare Python epoll loop once per
round beside the registries, the least a server on its own CPU pays per
round trip; C{--pin other} keeps each registry on CPU 1 and its clients on
CPU 0 (C{--pin same}: all on CPU 0), so that every registry pays the same
kind of wake-up rather than whatever the scheduler chose in its window.

Settings alternate between the registries, so both see the same machine.

C{--schedulers normal,batch} runs gridreg once per C{GridReg.Scheduler}
value (the registry sets its own policy at start-up, as a user's would),
each compared with IceGrid.

    python -m bench.locate [--duration 5] [--settings 1x1,16x1,64x1,16x2,64x2]
                           [--rounds 1] [--schedulers normal,batch]
                           [--batch icegrid,gridreg] [--json results.json]
                           [--baseline TREE] [--syscalls] [--floor]
                           [--pin other|same]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from bench._harness import (
    Deployment,
    LoadResult,
    common_arguments,
    deploy,
    fmt,
    header,
    kilo,
    machine,
    memory_kib,
    out,
    quiet_option,
    quietest,
    ratio,
    registries,
    remove_workdir,
    run,
    run_clients,
    Variant,
    schedulers_argument,
    table,
    variants,
    write_json,
)
from bench._profile import start_recording, summary
from bench._system import CLOCK_TICKS

DEFAULT_SETTINGS = "1x1,16x1,64x1,16x2,64x2"
#: the label of C{--baseline}'s registry
BASELINE = "gridreg/baseline"

#: The goals, from docs/performance.md.
GOALS = (
    "registry CPU per locate <= 0.5x IceGrid's at every setting; "
    "req/s >= 1.0x IceGrid's everywhere and >= 1.3x with two client processes; "
    "p99 <= IceGrid's"
)


def parse_settings(text: str) -> list[tuple[int, int]]:
    """C{"16x2,64x1"} -> C{[(16, 2), (64, 1)]}: in flight per client x client processes."""
    settings = []
    for item in text.split(","):
        in_flight, _, processes = item.strip().partition("x")
        settings.append((int(in_flight), int(processes or 1)))
    return settings


def label(setting: tuple[int, int]) -> str:
    return f"{setting[0]} x {setting[1]}"


def threads(pid: int) -> list[int]:
    try:
        return [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def context_switches(pid: int) -> tuple[int, int]:
    """
    Voluntary and involuntary context switches of all of C{pid}'s threads:
    how often they slept, and how often something else was put in their place.
    """
    slept = preempted = 0
    for task in threads(pid):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        slept += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        preempted += int(line.split()[1])
        except OSError:
            pass  # the thread ended meanwhile
    return slept, preempted


def batch_scheduling(pid: int) -> None:
    """
    Put every thread of C{pid} under C{SCHED_BATCH}, as C{chrt -a -b -p 0 PID}
    does: woken by a request, it no longer preempts the task running on that
    core (on this machine, often the client that sent the request).
    """
    for task in threads(pid):
        os.sched_setscheduler(task, os.SCHED_BATCH, os.sched_param(0))


def pin(pid: int, cpu: int) -> None:
    """Keep every thread of C{pid} on C{cpu}, as C{taskset -a -p -c CPU PID} does."""
    for task in threads(pid):
        os.sched_setaffinity(task, {cpu})


#: C{--pin}: (the registry's CPU, its clients' CPU)
PINNING = {"other": (1, 0), "same": (0, 0)}


def profile_name(name: str, setting: tuple[int, int]) -> str:
    return f"{name.replace('/', '-')}-locate-{setting[0]}x{setting[1]}.txt"


def policy_name(pid: int) -> str:
    """The scheduling policy of C{pid}'s main thread, as chrt names it."""
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_BATCH: "SCHED_BATCH"}
    policy = os.sched_getscheduler(pid)
    return names.get(policy, str(policy))


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of C{pid}, all threads (C{/proc/PID/stat} utime, stime)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0, 0.0
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def perf_available() -> bool:
    """Whether C{perf stat} can count system-call entries here (root, or a lax paranoid level)."""
    import shutil

    return shutil.which("perf") is not None and (os.geteuid() == 0 or _paranoid_level() <= 1)


def _paranoid_level() -> int:
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 3


def parse_perf_count(text: str) -> int | None:
    """The count of C{perf stat -x,}'s one event line in C{text}, or None."""
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("raw_syscalls:sys_enter"):
            return int(fields[0]) if fields[0].isdigit() else None
    return None


async def count_syscalls(reactor: Any, pid: int, start_at: float, duration: float) -> int | None:
    """
    System calls all of C{pid}'s threads entered over the window (C{perf stat}
    on the C{raw_syscalls:sys_enter} tracepoint: counted in the kernel, a
    fraction of a microsecond per call, unlike strace's stop per call).
    """
    from twisted.internet.utils import getProcessOutputAndValue

    await deferLater(reactor, max(0.0, start_at - time.time()))
    _out, err, _code = await getProcessOutputAndValue(
        "perf",
        [
            "stat",
            "-x,",
            "-e",
            "raw_syscalls:sys_enter",
            "-p",
            str(pid),
            "--",
            "sleep",
            f"{duration:.3f}",
        ],
        env=dict(os.environ),
        reactor=reactor,
    )
    return parse_perf_count(err.decode(errors="replace"))


def tcp_segments() -> int:
    """TCP segments received by the whole machine (C{/proc/net/snmp} InSegs)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("InSegs")])


@attrs.frozen
class WireWindow:
    """Wake-ups and TCP segments over one measured window."""

    registry_switches: int
    client_switches: int
    client_preemptions: int
    segments: int
    #: the registry's user and system CPU seconds (both with clock-tick resolution)
    registry_user: float = 0.0
    registry_system: float = 0.0
    #: system calls the registry entered (C{--syscalls}), or None
    registry_syscalls: int | None = None


async def sample_wire(
    reactor: Any,
    registry: int,
    clients: list[int],
    start_at: float,
    duration: float,
    syscalls: bool = False,
) -> WireWindow:
    def sample() -> tuple[float, ...]:
        per_client = [context_switches(c) for c in clients]
        return (
            context_switches(registry)[0],
            sum(slept for slept, _ in per_client),
            sum(preempted for _, preempted in per_client),
            tcp_segments(),
            *user_system_seconds(registry),
        )

    counting = (
        Deferred.fromCoroutine(count_syscalls(reactor, registry, start_at, duration))
        if syscalls
        else None
    )
    await deferLater(reactor, max(0.0, start_at - time.time()))
    before = sample()
    await deferLater(reactor, max(0.0, start_at + duration - time.time()))
    after = sample()
    switches, client_switches, preemptions, segments, user, system = (
        b - a for a, b in zip(before, after)
    )
    return WireWindow(
        int(switches),
        int(client_switches),
        int(preemptions),
        int(segments),
        user,
        system,
        await counting if counting is not None else None,
    )


@attrs.frozen
class LocateResult(LoadResult):
    """A measured window with what the clients and the wire paid per reply."""

    wire: WireWindow = WireWindow(0, 0, 0, 0)

    @classmethod
    def of(cls, loaded: LoadResult, wire: WireWindow) -> LocateResult:
        return cls(**{f.name: getattr(loaded, f.name) for f in attrs.fields(LoadResult)}, wire=wire)

    def per_reply(self, value: float) -> float | None:
        return value / self.count if self.count else None

    @property
    def client_cpu_us_per_reply(self) -> float | None:
        return self.per_reply(sum(c.cpu for c in self.clients) * 1e6)

    @property
    def client_wakeups_per_reply(self) -> float | None:
        return self.per_reply(self.wire.client_switches)

    @property
    def client_preemptions_per_reply(self) -> float | None:
        return self.per_reply(self.wire.client_preemptions)

    @property
    def registry_wakeups_per_locate(self) -> float | None:
        return self.per_reply(self.wire.registry_switches)

    @property
    def segments_per_locate(self) -> float | None:
        return self.per_reply(self.wire.segments)

    @property
    def user_us_per_locate(self) -> float | None:
        return self.per_reply(self.wire.registry_user * 1e6)

    @property
    def system_us_per_locate(self) -> float | None:
        return self.per_reply(self.wire.registry_system * 1e6)

    @property
    def syscalls_per_locate(self) -> float | None:
        calls = self.wire.registry_syscalls
        return None if calls is None else self.per_reply(calls)

    def as_json(self) -> dict[str, Any]:
        return dict(
            super().as_json(),
            client_cpu_us_per_reply=self.client_cpu_us_per_reply,
            client_wakeups_per_reply=self.client_wakeups_per_reply,
            client_preemptions_per_reply=self.client_preemptions_per_reply,
            registry_wakeups_per_locate=self.registry_wakeups_per_locate,
            segments_per_locate=self.segments_per_locate,
            registry_user_us_per_locate=self.user_us_per_locate,
            registry_system_us_per_locate=self.system_us_per_locate,
            registry_syscalls_per_locate=self.syscalls_per_locate,
        )


def median_round(rounds: list[LocateResult], quiet_below: float) -> LocateResult:
    """
    The round with the median throughput (the first of two middles) among
    the rounds that other programs did not disturb, if there are any.
    """
    quiet = [r for r in rounds if r.other_cores < quiet_below] or rounds
    ordered = sorted(quiet, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


async def measure(
    reactor: Any,
    name: str,
    deployment: Deployment,
    setting: tuple[int, int],
    args: argparse.Namespace,
) -> LocateResult:
    in_flight, processes = setting
    options = {"operation": "findAdapterById", "adapter": "HelloAdapter", "in_flight": in_flight}
    clients = deployment.clients[:processes]
    client_pids = [c.process.pid or 0 for c in clients]
    output = None
    if args.profile and deployment.kind == "gridreg":
        output = Path(args.profile).resolve() / profile_name(name, setting)
        output.parent.mkdir(parents=True, exist_ok=True)

    async def attempt() -> LocateResult:
        wire: list[WireWindow] = []

        async def on_window(start_at: float, duration: float) -> None:
            sampled = sample_wire(
                reactor, deployment.pid, client_pids, start_at, duration, args.syscalls
            )
            if output is not None:
                recording = start_recording(reactor, deployment.pid, start_at, duration, output)
                wire.append(await sampled)
                await recording
            else:
                wire.append(await sampled)

        def window(start_at: float, duration: float) -> Deferred[None]:
            return Deferred.fromCoroutine(on_window(start_at, duration))

        loaded = await run_clients(
            reactor,
            deployment.pid,
            clients,
            options,
            args.warmup,
            args.duration,
            quiet_option(args),
            window,
        )
        return LocateResult.of(loaded, wire[0])

    result = await quietest(
        lambda: Deferred.fromCoroutine(attempt()),
        lambda r: r.other_cores,
        args.quiet_below,
        args.attempts,
    )
    out(
        f"  {name:13} {label(setting):>7}: {result.rate:9.0f} req/s, "
        f"p50 {fmt(result.p50_ms)} ms, p99 {fmt(result.p99_ms)} ms, "
        f"{fmt(result.cpu_us_per_request, '.1f')} us CPU/locate "
        f"(user {fmt(result.user_us_per_locate, '.1f')}, "
        f"system {fmt(result.system_us_per_locate, '.1f')}"
        + (
            f", {fmt(result.syscalls_per_locate)} syscalls"
            if result.syscalls_per_locate is not None
            else ""
        )
        + "), "
        f"registry {result.registry.utilisation:.2f} cores, clients "
        + ", ".join(f"{c.utilisation:.2f}" for c in result.clients)
        + f" ({fmt(result.client_cpu_us_per_reply, '.1f')} us CPU/reply, "
        f"{fmt(result.client_wakeups_per_reply)} wake-ups, "
        f"{fmt(result.client_preemptions_per_reply)} preempted/reply), "
        f"{fmt(result.segments_per_locate)} segments/locate"
        + f", other {result.other_cores:.2f}"
        + (f", {result.errors} ERRORS" if result.errors else "")
    )
    return result


def compared(kinds: list[str]) -> list[str]:
    """The gridreg registries of this run that are compared with IceGrid."""
    if "icegrid" not in kinds:
        return []
    return [k for k in kinds if k.startswith("gridreg")]


def comparison(
    settings: list[tuple[int, int]], ice: dict[str, LocateResult], ours: dict[str, LocateResult]
) -> str:
    rows = []
    for setting in settings:
        i, o = ice[label(setting)], ours[label(setting)]
        rows.append(
            [
                label(setting),
                kilo(i.rate),
                kilo(o.rate),
                fmt(ratio(o.rate, i.rate), ".2f", "x"),
                f"{fmt(i.p50_ms)} / {fmt(i.p99_ms)}",
                f"{fmt(o.p50_ms)} / {fmt(o.p99_ms)}",
                fmt(i.cpu_us_per_request, ".1f"),
                fmt(o.cpu_us_per_request, ".1f"),
                fmt(ratio(o.cpu_us_per_request, i.cpu_us_per_request), ".2f", "x"),
                fmt(i.client_cpu_us_per_reply, ".1f")
                + " / "
                + fmt(o.client_cpu_us_per_reply, ".1f"),
            ]
        )
    headers = [
        "in flight x procs",
        "icegrid req/s",
        "gridreg req/s",
        "ratio",
        "icegrid p50/p99 ms",
        "gridreg p50/p99 ms",
        "icegrid us CPU/locate",
        "gridreg us CPU/locate",
        "CPU ratio",
        "client us CPU/reply i / g",
    ]
    return table(headers, rows)


def report(
    kinds: list[str],
    settings: list[tuple[int, int]],
    results: dict[str, dict[str, LocateResult]],
    memory: dict[str, dict[str, int]],
    floors: list[tuple[float, float, float, float]] = [],
) -> None:
    out()
    ours = compared(kinds)
    for name in ours:
        out(f"{name} against icegrid:")
        out(comparison(settings, results["icegrid"], results[name]))
        out()
    if not ours:
        for kind in kinds:
            by_setting = [results[kind][label(s)] for s in settings]
            rows = [
                [
                    label(s),
                    kilo(r.rate),
                    f"{fmt(r.p50_ms)} / {fmt(r.p99_ms)}",
                    fmt(r.cpu_us_per_request, ".1f"),
                    fmt(r.client_cpu_us_per_reply, ".1f"),
                ]
                for s, r in zip(settings, by_setting)
            ]
            out(f"{kind}:")
            out(
                table(
                    [
                        "in flight x procs",
                        "req/s",
                        "p50/p99 ms",
                        "us CPU/locate",
                        "client us CPU/reply",
                    ],
                    rows,
                )
            )
        out()
    rows = [
        [label(s)]
        + [f"{results[k][label(s)].registry.utilisation:.2f}" for k in kinds]
        + [" + ".join(f"{c.utilisation:.2f}" for c in results[k][label(s)].clients) for k in kinds]
        + [f"{results[k][label(s)].other_cores:.2f}" for k in kinds]
        for s in settings
    ]
    out(
        table(
            ["in flight x procs"]
            + [f"{k} registry cores" for k in kinds]
            + [f"{k} client cores" for k in kinds]
            + [f"other load during {k}" for k in kinds],
            rows,
        )
    )
    out()
    out("what the clients pay per reply, and the wire per locate:")
    rows = [
        [label(s)]
        + [fmt(results[k][label(s)].client_cpu_us_per_reply, ".1f") for k in kinds]
        + [fmt(results[k][label(s)].client_wakeups_per_reply) for k in kinds]
        + [fmt(results[k][label(s)].client_preemptions_per_reply) for k in kinds]
        + [fmt(results[k][label(s)].registry_wakeups_per_locate) for k in kinds]
        + [fmt(results[k][label(s)].segments_per_locate) for k in kinds]
        for s in settings
    ]
    out(
        table(
            ["in flight x procs"]
            + [f"{k} client us CPU/reply" for k in kinds]
            + [f"{k} client wake-ups/reply" for k in kinds]
            + [f"{k} client preempted/reply" for k in kinds]
            + [f"{k} registry wake-ups/locate" for k in kinds]
            + [f"{k} TCP segments/locate" for k in kinds],
            rows,
        )
    )
    out()
    out("the registry's CPU per locate, user / system µs, and its system calls per locate:")
    rows = [
        [label(s)]
        + [
            fmt(results[k][label(s)].user_us_per_locate, ".1f")
            + " / "
            + fmt(results[k][label(s)].system_us_per_locate, ".1f")
            for k in kinds
        ]
        + [fmt(results[k][label(s)].syscalls_per_locate) for k in kinds]
        for s in settings
    ]
    out(
        table(
            ["in flight x procs"]
            + [f"{k} user / system us" for k in kinds]
            + [f"{k} syscalls/locate" for k in kinds],
            rows,
        )
    )
    if floors:
        cpu, user, system, rate = sorted(floors)[(len(floors) - 1) // 2]
        out(
            f"bare Python epoll loop (bench.wakeup_floor, client on the other CPU, median of "
            f"{len(floors)}): {cpu:.1f} us CPU per round trip (user {user:.1f}, system "
            f"{system:.1f}), 3 syscalls (epoll_wait, recv, send), {rate:.0f} round trips/s"
        )
    out()
    for kind in kinds:
        mem = memory[kind]
        out(
            f"{kind} peak RSS (VmHWM): {mem.get('VmHWM', 0) / 1024:.1f} MiB, "
            f"RSS at end {mem.get('VmRSS', 0) / 1024:.1f} MiB"
        )
    out(f"goals: {GOALS}")
    for name in ours:
        out(f"{name}:")
        for line in goal_verdicts(settings, results, name):
            out(line)


def goal_verdicts(
    settings: list[tuple[int, int]],
    results: dict[str, dict[str, LocateResult]],
    ours_name: str = "gridreg",
) -> list[str]:
    """One line per setting: each goal of docs/performance.md, met or missed."""
    lines = []
    for setting in settings:
        ice, ours = results["icegrid"][label(setting)], results[ours_name][label(setting)]
        checks = []
        rate_goal = 1.3 if setting[1] > 1 else 1.0
        rate = ratio(ours.rate, ice.rate)
        checks.append(f"req/s {fmt(rate, '.2f', 'x')} (>= {rate_goal}x)")
        checks[-1] += " met" if rate is not None and rate >= rate_goal else " MISSED"
        cpu = ratio(ours.cpu_us_per_request, ice.cpu_us_per_request)
        met = cpu is not None and cpu <= 0.5
        checks.append(f"CPU {fmt(cpu, '.2f', 'x')} (<= 0.5x) " + ("met" if met else "MISSED"))
        met = ours.p99_ms is not None and ice.p99_ms is not None and ours.p99_ms <= ice.p99_ms
        checks.append(
            f"p99 {fmt(ours.p99_ms)} vs {fmt(ice.p99_ms)} ms " + ("met" if met else "MISSED")
        )
        lines.append(f"  {label(setting):>7}: " + "; ".join(checks))
    return lines


def parse_variants(text: str) -> list[Variant]:
    """
    C{"lean:GridReg.LeanReactor=1,twisted:GridReg.LeanReactor=0"}: gridreg once
    per NAME (labelled C{gridreg/NAME}) with those properties (C{+} joins several).
    """
    chosen = []
    for item in text.split(","):
        name, _, assignments = item.strip().partition(":")
        properties = dict(a.split("=", 1) for a in assignments.split("+") if a)
        chosen.append(Variant(f"gridreg/{name}", "gridreg", properties))
    return chosen


async def deploy_from(
    reactor: Any, tree: str, kind: str, processes: int, properties: Any
) -> Deployment:
    """L{deploy}, with the registry's code from the checkout C{tree} (a before/after run)."""
    import compileall

    import tests._processes as spawning

    compileall.compile_dir(str(Path(tree) / "gridreg"), quiet=1)
    here = spawning.REPO_ROOT
    spawning.REPO_ROOT = Path(tree)  # read when the registry's command is built
    try:
        return await deploy(reactor, kind, processes, properties)
    finally:
        spawning.REPO_ROOT = here


async def floor(reactor: Any, args: argparse.Namespace) -> tuple[float, float, float, float]:
    """One run of C{bench.wakeup_floor}'s loop, client on the other CPU, in a thread."""
    from twisted.internet.threads import deferToThreadPool

    from bench import wakeup_floor

    wait = quiet_option(args)
    if wait is not None:
        from bench._system import wait_for_quiet

        await wait_for_quiet(reactor, *wait)
    measured = await deferToThreadPool(
        reactor, reactor.getThreadPool(), wakeup_floor.measure_split, 1, 0, args.floor_round_trips
    )
    out(
        f"  bare loop       1 x 1: {measured[3]:9.0f} round trips/s, {measured[0]:.1f} us "
        f"CPU/round trip (user {measured[1]:.1f}, system {measured[2]:.1f})"
    )
    return measured


async def main(reactor: Any, args: argparse.Namespace) -> None:
    if args.syscalls and not perf_available():
        raise SystemExit("--syscalls needs perf, and root or kernel.perf_event_paranoid <= 1")
    header("locate")
    chosen = variants(args.registries, args.schedulers)
    if args.variants:
        chosen = [v for v in chosen if v.kind != "gridreg"] + parse_variants(args.variants)
    if args.baseline:
        chosen.append(Variant(BASELINE, "gridreg"))
    kinds = [v.name for v in chosen]
    settings = parse_settings(args.settings)
    processes = max(p for _, p in settings)
    deployments: dict[str, Deployment] = {}
    rounds: dict[str, dict[str, list[LocateResult]]] = {k: {} for k in kinds}
    memory: dict[str, dict[str, int]] = {}
    floors: list[tuple[float, float, float, float]] = []
    try:
        batch = registries(args.batch) if args.batch else []
        for variant in chosen:
            if variant.name == BASELINE:
                deployment = await deploy_from(
                    reactor, args.baseline, variant.kind, processes, variant.properties
                )
            else:
                deployment = await deploy(reactor, variant.kind, processes, variant.properties)
            deployments[variant.name] = deployment
            if variant.kind in batch:
                batch_scheduling(deployment.pid)
            if args.pin:
                registry_cpu, client_cpu = PINNING[args.pin]
                pin(deployment.pid, registry_cpu)
                for client in deployment.clients:
                    pin(client.process.pid or 0, client_cpu)
            out(
                f"{variant.name}: registry pid {deployment.pid}, locator "
                f"{deployment.registry.locator}, scheduling policy "
                f"{policy_name(deployment.pid)}"
                + (" (set from outside, --batch)" if variant.kind in batch else "")
            )
        for number in range(args.rounds):
            out(
                f"round {number + 1} of {args.rounds} "
                f"(warm-up {args.warmup} s, measured {args.duration} s)"
            )
            for setting in settings:
                for name in kinds:
                    result = await measure(reactor, name, deployments[name], setting, args)
                    rounds[name].setdefault(label(setting), []).append(result)
            if args.floor:
                floors.append(await floor(reactor, args))
        for name in kinds:
            memory[name] = memory_kib(deployments[name].pid)
    finally:
        for deployment in deployments.values():
            await deployment.stop()
            remove_workdir(deployment.workdir, args.keep)
    results = {
        k: {s: median_round(r, args.quiet_below) for s, r in by.items()} for k, by in rounds.items()
    }
    report(kinds, settings, results, memory, floors)
    if args.profile:
        for name in kinds:
            for setting in settings:
                path = Path(args.profile).resolve() / profile_name(name, setting)
                if path.exists():
                    out()
                    out(summary(path, args.profile_top))
    write_json(
        args.json,
        {
            "benchmark": "locate",
            "machine": machine(),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "results": {
                kind: {
                    s: {"median": results[kind][s].as_json(), "all": [r.as_json() for r in rs]}
                    for s, rs in by.items()
                }
                for kind, by in rounds.items()
            },
            "memory_kib": memory,
            "floor_us_cpu_user_system_rate": floors,
        },
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per window")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per window")
    parser.add_argument(
        "--settings",
        default=DEFAULT_SETTINGS,
        help=f"IN_FLIGHTxPROCESSES, comma-separated (default {DEFAULT_SETTINGS})",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat; report the median round")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="sample gridreg with py-spy during its windows; raw profiles and a summary in DIR"
        " (the profiled windows' figures are a little worse)",
    )
    parser.add_argument("--profile-top", type=int, default=15, help="frames to list per profile")
    parser.add_argument(
        "--batch",
        metavar="REGISTRIES",
        default="",
        help="run these registries (comma-separated) under SCHED_BATCH, as chrt -b would",
    )
    schedulers_argument(parser)
    parser.add_argument(
        "--variants",
        metavar="NAME:KEY=VALUE[+KEY=VALUE],...",
        default="",
        help="run gridreg once per NAME with these properties, labelled gridreg/NAME,"
        " e.g. lean:GridReg.LeanReactor=1,twisted:GridReg.LeanReactor=0",
    )
    parser.add_argument(
        "--baseline",
        metavar="TREE",
        default=None,
        help="also run gridreg from this checkout (e.g. a `git worktree add --detach` of main),"
        " labelled gridreg/baseline, for a before/after comparison in one run",
    )
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="count the registry's system calls per locate (perf stat on the"
        " raw_syscalls:sys_enter tracepoint, which adds a little to every call)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="each round, also run bench.wakeup_floor's bare Python epoll loop (client on the"
        " other CPU) and report its CPU per round trip beside the registries'",
    )
    parser.add_argument(
        "--pin",
        choices=sorted(PINNING),
        default=None,
        help="pin each registry to CPU 1 and its clients to CPU 0 (other), or all to CPU 0"
        " (same), so every registry's locates pay the same wake-ups",
    )
    parser.add_argument("--floor-round-trips", type=int, default=20000, help=argparse.SUPPRESS)
    common_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
