"""
On-demand activation through a node: IceGrid and gridreg side by side, in
one run.

Each system runs a master, a slave and one node (IceGrid: C{icegridregistry}
x 2 and C{icegridnode}; gridreg: C{gridregistry} x 2 over mutual TLS and
C{twistd -n --pidfile= gridnode}), with the same descriptor: one on-demand
server C{hello}, the real Ice Python server C{bench/hello_node_server.py},
adapter C{HelloAdapter}. Then, C{--runs} times, for each system and for
each replica (a client whose C{Ice.Default.Locator} names only the master,
then only the slave):

  1. stop the server (C{icegridadmin server stop hello}; gridreg: the
     C{AdminServerControl} command C{gridadmin server stop hello} sends),
     so every run starts it again;
  2. a fresh Ice client process times its first C{ice_ping} on
     C{hello@HelloAdapter}, from just before the call to its return: the
     activation latency (locate, the registry asking the node, the node
     starting the server, the server registering its adapter, the answer,
     the connection to the server, the ping);
  3. the latency split at the server's own timestamps (its output file,
     C{IceGrid.Node.Output}/hello.out; one clock for all processes): the
     call to the server script's first line (locate, registry, node, fork
     and exec, the interpreter's start-up), that line to its adapter
     activated (importing Ice, the communicator, the adapter; of which
     C{registering} to C{activated} is the registration round trip, which
     is registry and node work too), and activated to the call's return;
  4. the server's start-up: exec to its script's first line (the median of
     spawns of the same interpreter and script by another process, measured
     once: the node's own fork and exec cannot be timed from outside) plus
     its first line to its adapter activated;
  5. a second fresh client's first C{ice_ping}, the server now active: what
     any first call costs the client (locate, connect) without activation.

The registry+node overhead of a run is its activation latency minus its
server start-up. The registry replicas' and the node's CPU time is sampled
around each activation. Prints per system and replica the medians, and
gridreg's ratio to IceGrid::

    python -m bench.activation [--runs 7] [--registries icegrid,gridreg] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._grid import MASTER, remove_tree
from bench._harness import (
    common_arguments,
    fmt,
    header,
    machine,
    out,
    ratio,
    registries,
    run,
    table,
    wait_for_quiet,
    write_json,
)
from bench._node_grid import ADAPTER, SLAVE, NodeGrid, exec_probe, run_first_ping

PROXY = f"hello@{ADAPTER}"
VIA = (MASTER, SLAVE)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ms(value: float | None) -> str:
    return fmt(None if value is None else value * 1000.0, ".1f")


async def one_run(reactor: Any, grid: NodeGrid, via: str, exec_seconds: float) -> dict[str, Any]:
    """Stop the server, then time a fresh client's activation through replica C{via}."""
    await grid.server_stop()
    locator = grid.grid.locator(via)
    before = grid.last_start()
    cpu0 = grid.cpu()
    cold = await run_first_ping(reactor, locator, PROXY)
    cpu1 = grid.cpu()
    if not cold.get("ok"):
        raise RuntimeError(f"{grid.kind} via {via}: activation failed: {cold}")
    times = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        times = grid.last_start()
        if times is not None and times != before:
            break
        await _sleep(reactor, 0.05)
    if times is None or times == before:
        raise RuntimeError(
            f"{grid.kind}: the server's output ({grid.server_output()}) shows no new start"
        )
    warm = await run_first_ping(reactor, locator, PROXY)
    startup = exec_seconds + (times.activated - times.started)
    return {
        "latency": cold["seconds"],
        "startup": startup,
        "script": times.activated - times.started,
        "registration": times.activated - times.registering,
        "overhead": cold["seconds"] - startup,
        # the latency, split at the server's own timestamps (one clock)
        "to_script": times.started - cold["t0"],
        "after_activated": cold["t1"] - times.activated,
        "warm": warm["seconds"] if warm.get("ok") else None,
        "client_cpu": cold["cpu"],
        "system_cpu": cpu1 - cpu0,
    }


async def _sleep(reactor: Any, seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds)


def summary(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    keys = (
        "latency",
        "startup",
        "script",
        "registration",
        "overhead",
        "to_script",
        "after_activated",
    )
    found = {key: median([r[key] for r in runs]) for key in keys}
    found["warm"] = median([r["warm"] for r in runs if r["warm"] is not None])
    found["client_cpu"] = median([r["client_cpu"] for r in runs])
    # CPU time is counted in 10 ms ticks: the mean over the runs, not the median
    found["system_cpu"] = statistics.fmean([r["system_cpu"] for r in runs]) if runs else None
    found["latency_min"] = min(r["latency"] for r in runs) if runs else None
    found["latency_max"] = max(r["latency"] for r in runs) if runs else None
    return found


ROWS = (
    ("activation latency p50 ms", "latency"),
    ("  min ms", "latency_min"),
    ("  max ms", "latency_max"),
    ("  call to server script's 1st line", "to_script"),
    ("  script's 1st line to activated", "script"),
    ("    of which adapter registration", "registration"),
    ("  activated to call returned", "after_activated"),
    ("server start-up (exec to activated) ms", "startup"),
    ("registry+node overhead ms", "overhead"),
    ("first ping, server already active ms", "warm"),
    ("registry+node CPU/activation ms (mean)", "system_cpu"),
    ("client process CPU s", "client_cpu"),
)


def report(kinds: list[str], results: dict[str, dict[str, dict[str, Any]]]) -> None:
    both = set(kinds) == {"icegrid", "gridreg"}
    for via in VIA:
        out()
        out(f"Through the {'master' if via == MASTER else 'slave'} (client locator: {via} only):")
        headers = ["metric", *kinds] + (["gridreg/icegrid"] if both else [])
        rows = []
        for label, key in ROWS:
            values = {k: results[k][via]["summary"][key] for k in kinds}
            line = [label]
            for kind in kinds:
                value = values[kind]
                line.append(fmt(value, ".2f") if key == "client_cpu" else ms(value))
            if both:
                line.append(fmt(ratio(values["gridreg"], values["icegrid"]), ".2f", "x"))
            rows.append(line)
        out(table(headers, rows))


async def main(reactor: Any, args: argparse.Namespace) -> None:
    kinds = registries(args.registries)
    header("bench.activation")
    root = Path(tempfile.mkdtemp(prefix="bench-activation-"))
    grids: dict[str, NodeGrid] = {}
    results: dict[str, dict[str, dict[str, Any]]] = {
        k: {v: {"runs": []} for v in VIA} for k in kinds
    }
    try:
        exec_samples = await exec_probe(reactor, max(15, 2 * args.runs))
        exec_seconds = statistics.median(exec_samples)
        out(
            f"exec of the server's interpreter to its script's first line: "
            f"p50 {exec_seconds * 1000:.1f} ms ({len(exec_samples)} spawns)"
        )
        for kind in kinds:
            grid = NodeGrid(reactor, kind, root / kind)
            grids[kind] = grid
            begin = time.monotonic()
            await grid.start()
            out(
                f"{kind}: master, slave and node up, application deployed in "
                f"{time.monotonic() - begin:.1f} s"
            )
        for kind in kinds:  # warm-up: the first activation through each replica is not measured
            for via in VIA:
                await one_run(reactor, grids[kind], via, exec_seconds)
        for number in range(args.runs):
            for kind in kinds if number % 2 == 0 else list(reversed(kinds)):
                for via in VIA:
                    if args.quiet_wait > 0:
                        await wait_for_quiet(reactor, args.quiet_below, min(args.quiet_wait, 10))
                    result = await one_run(reactor, grids[kind], via, exec_seconds)
                    results[kind][via]["runs"].append(result)
                    if args.verbose:
                        out(f"  run {number + 1} {kind} via {via}: {result}")
        for kind in kinds:
            for via in VIA:
                results[kind][via]["summary"] = summary(results[kind][via]["runs"])
        out()
        out(f"{args.runs} runs per system and replica, medians:")
        report(kinds, results)
        write_json(
            args.json,
            {
                "machine": machine(),
                "runs": args.runs,
                "exec_seconds": exec_samples,
                "results": results,
            },
        )
    finally:
        for grid in grids.values():
            try:
                await grid.stop()
            except Exception as e:  # keep stopping the others
                out(f"stopping {grid.kind}: {e}")
        remove_tree(root, args.keep)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="activations per system and replica")
    common_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(main, parse_args())
