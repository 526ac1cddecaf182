"""
Where the replication lag's tail goes: C{bench.replication}'s lag part
(a master, one slave, a real Ice observer polling the slave every 0.5 ms)
for gridreg alone, with each write cut into its steps from timestamps the
registries note themselves (C{bench/_lag_trace_site}):

  - to_mcommit: the write's start (in the writer) to the master's commit start;
  - mcommit: the master's SQLite commit, its C{fdatasync} included;
  - commit_to_push: the commit's end to the push reaching the slave's reactor;
  - push: the slave handling it (decoded, in the state: visible);
  - applied_to_found: from then to the observer's first reply that has it,
    of which found_rtt is that poll's own round trip (the slave answering);
    the rest is the observer between polls.

The slowest 2% of writes are each put down to the step that exceeded its
median the most; the cyclic collector's runs in either registry that
overlap a write are listed with it.

    python -m bench.lag_tail [--lag-writes 1000] [--gridreg-property GridReg.Scheduler=normal]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import replication
from bench._grid import Grid

SITE = Path(__file__).resolve().parent / "_lag_trace_site"
STEPS = ("to_mcommit", "mcommit", "commit_to_push", "push", "applied_to_found")


def _dumping_stop_all(stop_all: Any) -> Any:
    async def stop(self: Grid) -> None:
        for registry in list(self.running.values()):
            if registry.process.pid:
                os.kill(registry.process.pid, signal.SIGUSR2)
        time.sleep(1.0)  # the registries write their notes
        await stop_all(self)

    return stop


def _intervals(events: list[list[str]], kind: str) -> list[tuple[float, float]]:
    return [(float(e[1]), float(e[2])) for e in events if e[0] == kind]


def _first(intervals: list[tuple[float, float]], a: float, b: float) -> Any:
    for interval in intervals:
        if a <= interval[0] <= b:
            return interval
    return None


def steps(
    samples: list[dict[str, Any]], events: dict[str, list[list[str]]]
) -> list[dict[str, Any]]:
    """Each write's steps (ms), from the samples and the registries' notes by pid."""
    slave = next(p for p, e in events.items() if any(x[0] == "push" for x in e))
    master = next(p for p, e in events.items() if p != slave and any(x[0] == "commit" for x in e))
    pushes = _intervals(events[slave], "push")
    commits = _intervals(events[master], "commit")
    collections = {
        "master": _intervals(events[master], "gc"),
        "slave": _intervals(events[slave], "gc"),
    }
    rows = []
    for s in samples:
        a, b = s["start"], s["found_end"]
        commit, push = _first(commits, a, b), _first(pushes, a, b)
        if commit is None or push is None:
            continue
        rows.append(
            {
                "lag": s["lag_s"] * 1e3,
                "to_mcommit": (commit[0] - a) * 1e3,
                "mcommit": (commit[1] - commit[0]) * 1e3,
                "commit_to_push": (push[0] - commit[1]) * 1e3,
                "push": (push[1] - push[0]) * 1e3,
                "applied_to_found": (b - push[1]) * 1e3,
                "found_rtt": (b - s["found_start"]) * 1e3,
                "gc": [
                    f"{who} {(g[1] - g[0]) * 1e3:.2f} ms"
                    for who, runs in collections.items()
                    for g in runs
                    if g[0] < b and g[1] > a
                ],
            }
        )
    return rows


def causes(rows: list[dict[str, Any]], share: float = 0.02) -> dict[str, int]:
    """The slowest C{share} of writes, each by the step furthest above its median."""
    median = {k: statistics.median(r[k] for r in rows) for k in (*STEPS, "found_rtt")}
    slowest = sorted(rows, key=lambda r: r["lag"])[-max(1, int(len(rows) * share)) :]
    counted: dict[str, int] = {}
    for r in slowest:
        excess = {k: r[k] - median[k] for k in STEPS}
        step = max(excess, key=lambda k: excess[k])
        if step == "applied_to_found":
            rtt = r["found_rtt"] - median["found_rtt"]
            step = (
                "found_rtt (the slave's answer)"
                if rtt > excess[step] / 2
                else "observer between polls"
            )
        counted[step] = counted.get(step, 0) + 1
    return counted


def report(directory: Path) -> None:
    results = json.loads((directory / "lag.json").read_text())
    samples = [s for r in results["rounds"]["lag"]["gridreg"] for s in r["samples"]]
    events = {
        Path(f).stem: [line.split() for line in open(f)] for f in glob.glob(f"{directory}/*.ev")
    }
    rows = steps(samples, events)
    keys = (*STEPS, "found_rtt")
    print("ms per write   lag " + " ".join(f"{k[:14]:>14}" for k in keys))
    for name, pick in (("median", statistics.median),):
        print(
            f"{name:12} {pick(r['lag'] for r in rows):5.2f} "
            + " ".join(f"{pick(r[k] for r in rows):14.2f}" for k in keys)
        )
    print("slowest 1%:")
    for r in sorted(rows, key=lambda r: r["lag"])[-max(1, len(rows) // 100) :]:
        print(f"{'':12} {r['lag']:5.2f} " + " ".join(f"{r[k]:14.2f}" for k in keys), *r["gc"])
    print("slowest 2%, by the step furthest above its median:", causes(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", default=None, help="keep the notes here")
    known, rest = parser.parse_known_args()
    directory = Path(known.directory or tempfile.mkdtemp(prefix="lag-tail-"))
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["GRIDREG_BENCH_LAGTRACE"] = str(directory)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p
    )
    Grid.stop_all = _dumping_stop_all(Grid.stop_all)  # type: ignore[method-assign]
    args = replication.parse_args(
        [
            "--parts",
            "lag",
            "--registries",
            "gridreg",
            "--lag-writes",
            "1000",
            "--rounds",
            "1",
            "--gridreg-internal",
            "tcp",
            *rest,
            "--json",
            str(directory / "lag.json"),
        ]
    )
    try:
        replication.run(replication.main, args)
    except SystemExit:
        pass
    report(directory)
    print(f"notes in {directory}")


if __name__ == "__main__":
    main()
