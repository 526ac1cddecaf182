"""
A slave's reactor-side CPU per push, in one process: a firm figure where
the registries' CPU per write moves by tens of microseconds from window to
window on a shared machine.

Pushes in the master's form (one change, one object put, each asking for
its answer) are fed to a L{SlaveProtocol} over a memory transport, its
replica's store in memory: what is timed (C{time.thread_time}) is the
reactor's work per push (the box read, the push's dispatch, its decoding,
the state's apply, the commit's Deferred, the answer's send) plus the memory
store's apply, not SQLite nor the store's thread. The median of C{--runs}.

    python -m bench.slave_push_cpu [--pushes N] [--runs N] [--baseline DIR]

With C{--baseline}, the same in a process importing gridreg from DIR, in
turn with this checkout's, each C{--rounds} times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any


def push_boxes(database_id: str, count: int) -> list[bytes]:
    """C{count} pushes of serials 1.., as the master sends them (one put each)."""
    from twisted.protocols import amp

    from gridreg.ice.stringify import proxy_from_string
    from gridreg.ice.types import Identity
    from gridreg.registry.state import ObjectInfo, object_mutation
    from gridreg.store.records import Change, change_to_json

    boxes = []
    for serial in range(1, count + 1):
        name = f"obj{serial}"
        put = object_mutation(
            Identity(name), ObjectInfo(proxy_from_string(f"{name} -t:tcp -p 10000"), "::Test")
        )
        changes = "[" + change_to_json(Change(serial, (put,))) + "]"
        box = amp.AmpBox(
            {
                b"_ask": b"%d" % serial,
                b"_command": b"PushChanges",
                b"database_id": database_id.encode(),
                b"changes": changes.encode(),
                b"transfer": b"",
            }
        )
        boxes.append(box.serialize())
    return boxes


def one_run(pushes: int) -> float:
    """Microseconds of this thread's CPU per push, for C{pushes} pushes to a fresh slave."""
    from twisted.internet.defer import succeed
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from gridreg.registry.slave import SlaveProtocol, SlaveReplication
    from gridreg.registry.state import RegistryState
    from gridreg.registry.trace import TraceLevels
    from gridreg.store.memory import MemoryStore

    store = MemoryStore()
    store.open()
    slave = SlaveReplication(
        MemoryReactorClock(),
        "Replica1",
        store,
        RegistryState(),
        lambda: succeed([]),
        lambda: {},
        lambda active: None,
        TraceLevels(),
    )
    protocol = SlaveProtocol(slave)
    transport = StringTransport()
    protocol.makeConnection(transport)
    boxes = push_boxes(store.database_id, pushes)
    start = time.thread_time()
    for box in boxes:
        protocol.dataReceived(box)
    spent = time.thread_time() - start
    if store.serial != pushes or transport.value().count(b"_answer") != pushes:
        raise RuntimeError(f"applied {store.serial} of {pushes} pushes")
    return spent / pushes * 1e6


def measure(pushes: int, runs: int) -> dict[str, Any]:
    figures = [one_run(pushes) for _ in range(runs)]
    return {"median": statistics.median(figures), "min": min(figures), "max": max(figures)}


def in_checkout(directory: str, pushes: int, runs: int) -> dict[str, Any]:
    """L{measure} in a process that imports gridreg from C{directory}."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(directory))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, here, str(pushes), str(runs)],
        env=env,
        cwd=os.path.abspath(directory),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    median, low, high = (float(x) for x in out.split())
    return {"median": median, "min": low, "max": high}


#: the child's program: this module (from this checkout) measuring the gridreg on its path
_CHILD = (
    "import sys, runpy\n"
    "bench = runpy.run_path(sys.argv[1] + '/bench/slave_push_cpu.py')\n"
    "r = bench['measure'](int(sys.argv[2]), int(sys.argv[3]))\n"
    "print(r['median'], r['min'], r['max'])\n"
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=5000, help="pushes per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (median)")
    parser.add_argument("--baseline", help="also measure gridreg from this checkout")
    parser.add_argument("--rounds", type=int, default=3, help="turns each checkout takes")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = [("gridreg", here)] + ([("gridreg-base", args.baseline)] if args.baseline else [])
    for round_number in range(1, args.rounds + 1):
        for name, directory in checkouts:
            r = in_checkout(directory, args.pushes, args.runs)
            print(
                f"round {round_number}: {name}: {r['median']:.2f} us CPU per push "
                f"(runs {r['min']:.2f}-{r['max']:.2f})"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
