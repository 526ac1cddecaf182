"""
gridadmin against icegridadmin, whole processes, side by side in one run.

One IceGrid and one gridreg grid (a master and a slave each, on loopback),
then, C{--runs} times, in turn:

  1. C{registry list} as one command: C{gridadmin --config F registry list}
     (C{python -m gridreg.admin} under this interpreter) and
     C{icegridadmin --Ice.Config=F -u x -p x -e 'registry list'};
  2. a script of C{--commands} read commands (C{registry list}, C{object
     list}, C{adapter list}, C{application list}, C{server list} in turn)
     given to both as one C{-e}, so each runs them over one session;
  3. the interpreter alone (C{python -c pass}): the floor under gridadmin,
     and how much of it is C{site} (the C{.pth} files of site-packages:
     a sandbox may add some that import C{certifi}, 20-30 ms here), from
     C{python -X importtime -c pass}.

Each figure is the median over the runs: wall time from spawn to exit, the
client's CPU (its rusage once reaped) and the registries' CPU (master and
slave, from C{/proc}) over the same run::

    python -m bench.gridadmin_startup [--runs 9] [--commands 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from bench._grid import MASTER, Grid, remove_tree
from bench._harness import (
    REPO_ROOT,
    common_arguments,
    cpu_seconds,
    fmt,
    header,
    out,
    quiet_option,
    ratio,
    run,
    table,
    wait_for_quiet,
    write_json,
)
from tests._processes import write_config

SLAVE = "Replica1"
ICEGRIDADMIN = shutil.which("icegridadmin") or "/usr/bin/icegridadmin"
SCRIPT_COMMANDS = (
    "registry list",
    "object list",
    "adapter list",
    "application list",
    "server list",
)


class _Timed(ProcessProtocol):
    """Counts what the child prints and fires with its exit code once it is reaped."""

    def __init__(self) -> None:
        self.done: Deferred[int] = Deferred()
        self.output = bytearray()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.done.callback(getattr(reason.value, "exitCode", None) or 0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def timed(
    reactor: Any, argv: list[str], env: dict[str, str], pids: list[int]
) -> dict[str, Any]:
    """One process from spawn to reaped: wall, its CPU, the registries' CPU."""
    registry0 = sum(cpu_seconds(p) for p in pids)
    cpu0 = _children_cpu()
    proto = _Timed()
    start = time.monotonic()
    reactor.spawnProcess(proto, argv[0], argv, env=env, path=str(REPO_ROOT))
    code = await proto.done
    wall = time.monotonic() - start
    return {
        "wall": wall,
        "cpu": _children_cpu() - cpu0,
        "registry_cpu": sum(cpu_seconds(p) for p in pids) - registry0,
        "code": code,
        "output": bytes(proto.output).decode("utf-8", "replace"),
    }


def site_import(output: str) -> float:
    """Seconds C{-X importtime} says importing C{site} took (0 if it does not say)."""
    for line in output.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[2].strip() == "site":
            return int(parts[1]) / 1e6
    return 0.0


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def mean(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in runs)


async def main(reactor: Any, args: argparse.Namespace) -> None:
    header("gridadmin_startup")
    root = Path(tempfile.mkdtemp(prefix="bench-gridadmin-"))
    grids = {
        kind: Grid(reactor, kind, root / kind, (MASTER, SLAVE)) for kind in ("icegrid", "gridreg")
    }
    try:
        for grid in grids.values():
            await grid.start(MASTER)
            await grid.start(SLAVE)
        ice_config = root / "icegridadmin.cfg"
        write_config(ice_config, {"Ice.Default.Locator": grids["icegrid"].locator()})
        ours = grids["gridreg"]
        grid_config = root / "gridadmin.cfg"
        write_config(
            grid_config,
            {
                "Ice.Default.Locator": ours.locator(),
                "IceSSL.DefaultDir": str(ours.certs),
                "IceSSL.CAs": "ca.pem",
                "IceSSL.CertFile": "admin-admin.pem",
                "IceSSL.KeyFile": "admin-admin.key",
            },
        )
        script = "; ".join(SCRIPT_COMMANDS[i % len(SCRIPT_COMMANDS)] for i in range(args.commands))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO_ROOT)}
        gridadmin = [sys.executable, "-m", "gridreg.admin", "--config", str(grid_config)]
        icegridadmin = [ICEGRIDADMIN, f"--Ice.Config={ice_config}", "-u", "x", "-p", "x"]
        cases = {
            ("one", "icegrid"): (icegridadmin + ["-e", "registry list"], grids["icegrid"]),
            ("one", "gridreg"): (gridadmin + ["registry", "list"], ours),
            ("script", "icegrid"): (icegridadmin + ["-e", script], grids["icegrid"]),
            ("script", "gridreg"): (gridadmin + ["-e", script], ours),
            ("floor", "python"): ([sys.executable, "-c", "pass"], None),
            ("site", "python"): ([sys.executable, "-X", "importtime", "-c", "pass"], None),
        }
        for (what, kind), (argv, grid) in cases.items():  # warm-up, and a check
            result = await timed(reactor, argv, env, [])
            if result["code"] != 0:
                raise SystemExit(f"{what} {kind} failed ({result['code']}): {result['output']}")
        quiet = quiet_option(args)
        if quiet is not None:
            await wait_for_quiet(reactor, *quiet)
        results: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in cases}
        for _ in range(args.runs):
            for key, (argv, grid) in cases.items():
                pids = [grid.pid(MASTER), grid.pid(SLAVE)] if grid is not None else []
                results[key].append(await timed(reactor, argv, env, pids))
    finally:
        for grid in grids.values():
            await grid.stop_all()
        remove_tree(root, args.keep)

    def ms(value: float) -> str:
        return fmt(value * 1000.0, ".1f")

    rows = []
    report: dict[str, Any] = {"runs": args.runs, "commands": args.commands}
    for what, label in (("one", "registry list"), ("script", f"-e, {args.commands} commands")):
        theirs, mine = results[(what, "icegrid")], results[(what, "gridreg")]
        for key, name in (
            ("wall", "wall"),
            ("cpu", "client CPU"),
            ("registry_cpu", "registry CPU"),
        ):
            # the registries' CPU is counted in clock ticks: the mean of the runs, not the median
            pick = mean if key == "registry_cpu" else median
            a, b = pick(theirs, key), pick(mine, key)
            rows.append([f"{label}: {name} ms", ms(a), ms(b), fmt(ratio(b, a), ".2f", "x")])
            report[f"{what}_{key}"] = {"icegrid": a, "gridreg": b}
    floor = results[("floor", "python")]
    rows.append(["python -c pass: wall ms", "", ms(median(floor, "wall")), ""])
    report["python_floor_wall"] = median(floor, "wall")
    site = statistics.median(site_import(r["output"]) for r in results[("site", "python")])
    rows.append(["  of which site (importtime) ms", "", ms(site), ""])
    report["python_site_import"] = site
    own = median(results[("one", "gridreg")], "wall") - median(floor, "wall")
    rows.append(["registry list: wall - floor ms", "", ms(own), ""])
    report["one_wall_over_floor"] = own
    out(
        f"medians of {args.runs} runs each, in turn (registry CPU: the mean); "
        "client = the admin program's process, registry = master + slave"
    )
    out(table(["measure", "icegridadmin", "gridadmin", "gridadmin/icegridadmin"], rows))
    write_json(args.json, report)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs of each command (default 9)")
    parser.add_argument(
        "--commands", type=int, default=20, help="commands in the -e script (default 20)"
    )
    common_arguments(parser)
    return parser.parse_args()


if __name__ == "__main__":
    run(main, parse())
