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

Settings alternate between the registries, so both see the same machine.

    python -m bench.locate [--duration 5] [--settings 1x1,16x1,64x1,16x2,64x2]
                           [--rounds 1] [--json results.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

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
    table,
    write_json,
)
from bench._profile import start_recording, summary

DEFAULT_SETTINGS = "1x1,16x1,64x1,16x2,64x2"

#: The goals, from docs/performance.md.
GOALS = (
    "registry CPU per locate <= 0.5x IceGrid's at 16 and 64 in flight; "
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


def median_round(rounds: list[LoadResult], quiet_below: float) -> LoadResult:
    """
    The round with the median throughput (the first of two middles) among
    the rounds that other programs did not disturb, if there are any.
    """
    quiet = [r for r in rounds if r.other_cores < quiet_below] or rounds
    ordered = sorted(quiet, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


async def measure(
    reactor: Any, deployment: Deployment, setting: tuple[int, int], args: argparse.Namespace
) -> LoadResult:
    in_flight, processes = setting
    options = {"operation": "findAdapterById", "adapter": "HelloAdapter", "in_flight": in_flight}
    profile = None
    if args.profile and deployment.kind == "gridreg":
        output = Path(args.profile).resolve() / f"gridreg-locate-{in_flight}x{processes}.txt"
        output.parent.mkdir(parents=True, exist_ok=True)

        def profile(start_at: float, duration: float) -> Deferred[Path]:
            return start_recording(reactor, deployment.pid, start_at, duration, output)

    def attempt() -> Deferred[LoadResult]:
        return Deferred.fromCoroutine(
            run_clients(
                reactor,
                deployment.pid,
                deployment.clients[:processes],
                options,
                args.warmup,
                args.duration,
                quiet_option(args),
                profile,
            )
        )

    result = await quietest(attempt, lambda r: r.other_cores, args.quiet_below, args.attempts)
    out(
        f"  {deployment.kind:8} {label(setting):>7}: {result.rate:9.0f} req/s, "
        f"p50 {fmt(result.p50_ms)} ms, p99 {fmt(result.p99_ms)} ms, "
        f"{fmt(result.cpu_us_per_request, '.1f')} us CPU/locate, "
        f"registry {result.registry.utilisation:.2f} cores, clients "
        + ", ".join(f"{c.utilisation:.2f}" for c in result.clients)
        + f", other {result.other_cores:.2f}"
        + (f", {result.errors} ERRORS" if result.errors else "")
    )
    return result


def report(
    kinds: list[str],
    settings: list[tuple[int, int]],
    results: dict[str, dict[str, LoadResult]],
    memory: dict[str, dict[str, int]],
) -> None:
    out()
    if kinds == ["icegrid", "gridreg"]:
        rows = []
        for setting in settings:
            ice, ours = results["icegrid"][label(setting)], results["gridreg"][label(setting)]
            rows.append(
                [
                    label(setting),
                    kilo(ice.rate),
                    kilo(ours.rate),
                    fmt(ratio(ours.rate, ice.rate), ".2f", "x"),
                    f"{fmt(ice.p50_ms)} / {fmt(ice.p99_ms)}",
                    f"{fmt(ours.p50_ms)} / {fmt(ours.p99_ms)}",
                    fmt(ice.cpu_us_per_request, ".1f"),
                    fmt(ours.cpu_us_per_request, ".1f"),
                    fmt(ratio(ours.cpu_us_per_request, ice.cpu_us_per_request), ".2f", "x"),
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
        ]
        out(table(headers, rows))
    else:
        for kind in kinds:
            by_setting = [results[kind][label(s)] for s in settings]
            rows = [
                [
                    label(s),
                    kilo(r.rate),
                    f"{fmt(r.p50_ms)} / {fmt(r.p99_ms)}",
                    fmt(r.cpu_us_per_request, ".1f"),
                ]
                for s, r in zip(settings, by_setting)
            ]
            out(f"{kind}:")
            out(table(["in flight x procs", "req/s", "p50/p99 ms", "us CPU/locate"], rows))
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
    for kind in kinds:
        mem = memory[kind]
        out(
            f"{kind} peak RSS (VmHWM): {mem.get('VmHWM', 0) / 1024:.1f} MiB, "
            f"RSS at end {mem.get('VmRSS', 0) / 1024:.1f} MiB"
        )
    out(f"goals: {GOALS}")
    if kinds == ["icegrid", "gridreg"]:
        for line in goal_verdicts(settings, results):
            out(line)


def goal_verdicts(
    settings: list[tuple[int, int]], results: dict[str, dict[str, LoadResult]]
) -> list[str]:
    """One line per setting: each goal of docs/performance.md, met or missed."""
    lines = []
    for setting in settings:
        ice, ours = results["icegrid"][label(setting)], results["gridreg"][label(setting)]
        checks = []
        rate_goal = 1.3 if setting[1] > 1 else 1.0
        rate = ratio(ours.rate, ice.rate)
        checks.append(f"req/s {fmt(rate, '.2f', 'x')} (>= {rate_goal}x)")
        checks[-1] += " met" if rate is not None and rate >= rate_goal else " MISSED"
        if setting[0] >= 16:
            cpu = ratio(ours.cpu_us_per_request, ice.cpu_us_per_request)
            met = cpu is not None and cpu <= 0.5
            checks.append(f"CPU {fmt(cpu, '.2f', 'x')} (<= 0.5x) " + ("met" if met else "MISSED"))
        met = ours.p99_ms is not None and ice.p99_ms is not None and ours.p99_ms <= ice.p99_ms
        checks.append(
            f"p99 {fmt(ours.p99_ms)} vs {fmt(ice.p99_ms)} ms " + ("met" if met else "MISSED")
        )
        lines.append(f"  {label(setting):>7}: " + "; ".join(checks))
    return lines


async def main(reactor: Any, args: argparse.Namespace) -> None:
    header("locate")
    kinds = registries(args.registries)
    settings = parse_settings(args.settings)
    processes = max(p for _, p in settings)
    deployments: dict[str, Deployment] = {}
    rounds: dict[str, dict[str, list[LoadResult]]] = {k: {} for k in kinds}
    memory: dict[str, dict[str, int]] = {}
    try:
        for kind in kinds:
            deployments[kind] = await deploy(reactor, kind, processes)
            out(
                f"{kind}: registry pid {deployments[kind].pid}, locator "
                f"{deployments[kind].registry.locator}"
            )
        for number in range(args.rounds):
            out(
                f"round {number + 1} of {args.rounds} "
                f"(warm-up {args.warmup} s, measured {args.duration} s)"
            )
            for setting in settings:
                for kind in kinds:
                    result = await measure(reactor, deployments[kind], setting, args)
                    rounds[kind].setdefault(label(setting), []).append(result)
        for kind in kinds:
            memory[kind] = memory_kib(deployments[kind].pid)
    finally:
        for deployment in deployments.values():
            await deployment.stop()
            remove_workdir(deployment.workdir, args.keep)
    results = {
        k: {s: median_round(r, args.quiet_below) for s, r in by.items()} for k, by in rounds.items()
    }
    report(kinds, settings, results, memory)
    if args.profile:
        for setting in settings:
            path = Path(args.profile).resolve() / f"gridreg-locate-{setting[0]}x{setting[1]}.txt"
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
    common_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
