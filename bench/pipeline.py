"""
One raw connection pipelining a captured locate request: IceGrid and gridreg
side by side.

For each registry: start it, register C{HelloAdapter} with a real Ice
server, then run C{bench/_pipeline_client.py} in its own process: one TCP
connection that keeps 64 copies of the captured C{findAdapterById} request
(C{tests/data/ice-vectors/07_findAdapterById_known.json}, request ids
patched) in flight for the measured window. Reports requests per second and
the registry's CPU time per request (C{/proc/PID/stat} over the window),
and the client's own CPU use, to show it is not the bottleneck.

    python -m bench.pipeline [--duration 5] [--in-flight 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from bench._harness import (
    REPO_ROOT,
    Deployment,
    ProcessWindow,
    common_arguments,
    deploy,
    fmt,
    header,
    kilo,
    machine,
    out,
    quiet_option,
    quietest,
    ratio,
    remove_workdir,
    run,
    sample_window,
    schedulers_argument,
    table,
    variants,
    wait_for_quiet,
    write_json,
)
from tests._processes import LineProcess

VECTOR = REPO_ROOT / "tests" / "data" / "ice-vectors" / "07_findAdapterById_known.json"
CLIENT = REPO_ROOT / "bench" / "_pipeline_client.py"


def median_round(rounds: list[PipelineResult], quiet_below: float) -> PipelineResult:
    """The median-throughput round among the undisturbed ones, if any."""
    quiet = [r for r in rounds if r.other_cores < quiet_below] or rounds
    return sorted(quiet, key=lambda r: r.rate)[(len(quiet) - 1) // 2]


def captured_request() -> str:
    """The captured request message (client to server), in hex."""
    vector = json.loads(VECTOR.read_text())
    [request] = [m for m in vector["messages"] if m["direction"] == "client->server"]
    return str(request["hex"])


@attrs.frozen
class PipelineResult:
    count: int
    errors: int
    rate: float
    client_cores: float
    registry: ProcessWindow
    machine: ProcessWindow

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.registry.cpu / self.count * 1e6 if self.count else None

    @property
    def other_cores(self) -> float:
        """Cores busy with neither the registry nor the client: the noise."""
        ours = self.registry.cpu + self.client_cores * self.machine.wall
        return max(0.0, (self.machine.cpu - ours) / self.machine.wall) if self.machine.wall else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "rate": self.rate,
            "other_cores": self.other_cores,
            "cpu_us_per_request": self.cpu_us_per_request,
            "registry_cores": self.registry.utilisation,
            "client_cores": self.client_cores,
            "machine_cores": self.machine.utilisation,
        }


async def measure(
    reactor: Any, name: str, deployment: Deployment, args: argparse.Namespace
) -> PipelineResult:
    quiet = quiet_option(args)
    if quiet is not None:
        await wait_for_quiet(reactor, *quiet)
    start_at = time.time() + args.warmup + 0.3
    command = [
        sys.executable,
        str(CLIENT),
        "--port",
        str(deployment.registry.client_port),
        "--hex",
        captured_request(),
        "--in-flight",
        str(args.in_flight),
        "--duration",
        str(args.duration),
        "--start-at",
        repr(start_at),
    ]
    client = LineProcess.spawn(reactor, "pipeline client", command, {}, REPO_ROOT)
    sampling = Deferred.fromCoroutine(
        sample_window(reactor, [deployment.pid], start_at, args.duration)
    )
    result = await client.next_event(lambda e: "count" in e, args.warmup + args.duration + 60)
    await client.when_ended()
    registry, whole = await sampling
    measured = PipelineResult(
        count=result["count"],
        errors=result["errors"],
        rate=result["rate"] or 0.0,
        client_cores=result["client_cores"] or 0.0,
        registry=registry,
        machine=whole,
    )
    out(
        f"  {name:13}: {measured.rate:9.0f} req/s, "
        f"{fmt(measured.cpu_us_per_request, '.1f')} us registry CPU/request, registry "
        f"{registry.utilisation:.2f} cores, client {measured.client_cores:.2f} cores, "
        f"other {measured.other_cores:.2f} cores"
        + (f", {measured.errors} ERROR REPLIES" if measured.errors else "")
    )
    return measured


async def main(reactor: Any, args: argparse.Namespace) -> None:
    header("pipeline")
    chosen = variants(args.registries, args.schedulers)
    kinds = [v.name for v in chosen]
    deployments: dict[str, Deployment] = {}
    rounds: dict[str, list[PipelineResult]] = {k: [] for k in kinds}
    try:
        for variant in chosen:
            deployments[variant.name] = await deploy(reactor, variant.kind, 0, variant.properties)
        for number in range(args.rounds):
            out(
                f"round {number + 1} of {args.rounds} ({args.in_flight} in flight, "
                f"warm-up {args.warmup} s, measured {args.duration} s)"
            )
            for kind in kinds:
                result = await quietest(
                    partial(measure, reactor, kind, deployments[kind], args),
                    lambda r: r.other_cores,
                    args.quiet_below,
                    args.attempts,
                )
                rounds[kind].append(result)
    finally:
        for deployment in deployments.values():
            await deployment.stop()
            remove_workdir(deployment.workdir, args.keep)
    median = {k: median_round(r, args.quiet_below) for k, r in rounds.items()}
    out()
    rows = [
        [
            kind,
            kilo(median[kind].rate),
            fmt(median[kind].cpu_us_per_request, ".1f"),
            f"{median[kind].client_cores:.2f}",
            f"{median[kind].registry.utilisation:.2f}",
        ]
        for kind in kinds
    ]
    out(table(["registry", "req/s", "us CPU/request", "client cores", "registry cores"], rows))
    for name in kinds if "icegrid" in kinds else []:
        if not name.startswith("gridreg"):
            continue
        out(
            f"{name} / icegrid: req/s "
            + fmt(ratio(median[name].rate, median["icegrid"].rate), ".2f", "x")
            + ", CPU per request "
            + fmt(
                ratio(median[name].cpu_us_per_request, median["icegrid"].cpu_us_per_request),
                ".2f",
                "x",
            )
            + " (goal: req/s >= 8x, issue 9)"
        )
    write_json(
        args.json,
        {
            "benchmark": "pipeline",
            "machine": machine(),
            "in_flight": args.in_flight,
            "duration_s": args.duration,
            "results": {
                k: {"median": median[k].as_json(), "all": [r.as_json() for r in rs]}
                for k, rs in rounds.items()
            },
        },
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per round")
    parser.add_argument("--in-flight", type=int, default=64, help="requests kept in flight")
    parser.add_argument("--rounds", type=int, default=3, help="repeat; report the median round")
    schedulers_argument(parser)
    common_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
