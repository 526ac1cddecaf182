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
The state has the listeners a slave's state has (L{real_listeners}): the
client adapter's reply cache and the node sessions. C{--calls} also counts
the Python calls per push, exactly (cProfile's count of one more run).

    python -m bench.slave_push_cpu [--pushes N] [--runs N] [--calls] [--baseline DIR]

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


def real_listeners(state: Any, clock: Any) -> None:
    """
    Give C{state} the listeners a running slave's has (L{RegistryService}):
    its client adapter's reply cache, then its node sessions (no node
    connected), each told of a change as they are there.
    """
    from types import SimpleNamespace

    from gridreg.ice.servant import ObjectAdapter
    from gridreg.registry.nodes import NodeSessions

    state.on_change(ObjectAdapter("Client").invalidate)
    NodeSessions(SimpleNamespace(state=state, reactor=clock))  # type: ignore[arg-type]


def one_run(pushes: int, profile: Any = None) -> float:
    """
    Microseconds of this thread's CPU per push, for C{pushes} pushes to a
    fresh slave; with C{profile} (a C{cProfile.Profile}), the pushes run
    under it.
    """
    from twisted.internet.defer import succeed
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from gridreg.registry.slave import SlaveProtocol, SlaveReplication
    from gridreg.registry.state import RegistryState
    from gridreg.registry.trace import TraceLevels
    from gridreg.store.memory import MemoryStore

    store = MemoryStore()
    store.open()
    clock = MemoryReactorClock()
    state = RegistryState()
    real_listeners(state, clock)
    slave = SlaveReplication(
        clock,
        "Replica1",
        store,
        state,
        lambda: succeed([]),
        lambda: {},
        lambda active: None,
        TraceLevels(),
    )
    protocol = SlaveProtocol(slave)
    transport = StringTransport()
    protocol.makeConnection(transport)
    boxes = push_boxes(store.database_id, pushes)
    received = protocol.dataReceived
    if profile is not None:
        profile.enable()
    start = time.thread_time()
    for box in boxes:
        received(box)
    spent = time.thread_time() - start
    if profile is not None:
        profile.disable()
    if store.serial != pushes or transport.value().count(b"_answer") != pushes:
        raise RuntimeError(f"applied {store.serial} of {pushes} pushes")
    return spent / pushes * 1e6


def calls_per_push(pushes: int) -> float:
    """
    The Python calls per push (functions and C functions, as cProfile
    counts them), the loop's own calls of C{dataReceived} included.
    """
    import cProfile
    import pstats

    profile = cProfile.Profile()
    one_run(pushes, profile)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    calls = sum(nc for (_, _, name), (_, nc, _, _, _) in stats.items() if "disable" not in name)
    return float(calls / pushes)


def measure(pushes: int, runs: int, calls: bool = False) -> dict[str, Any]:
    figures = [one_run(pushes) for _ in range(runs)]
    result = {"median": statistics.median(figures), "min": min(figures), "max": max(figures)}
    result["calls"] = calls_per_push(pushes) if calls else float("nan")
    return result


def in_checkout(directory: str, pushes: int, runs: int, calls: bool = False) -> dict[str, Any]:
    """L{measure} in a process that imports gridreg from C{directory}."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(directory))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, here, str(pushes), str(runs), str(int(calls))],
        env=env,
        cwd=os.path.abspath(directory),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    median, low, high, count = (float(x) for x in out.split())
    return {"median": median, "min": low, "max": high, "calls": count}


#: the child's program: this module (from this checkout) measuring the gridreg on its path
_CHILD = (
    "import sys, runpy\n"
    "bench = runpy.run_path(sys.argv[1] + '/bench/slave_push_cpu.py')\n"
    "r = bench['measure'](int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1')\n"
    "print(r['median'], r['min'], r['max'], r['calls'])\n"
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=5000, help="pushes per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (median)")
    parser.add_argument("--baseline", help="also measure gridreg from this checkout")
    parser.add_argument("--rounds", type=int, default=3, help="turns each checkout takes")
    parser.add_argument("--calls", action="store_true", help="also count Python calls per push")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = [("gridreg", here)] + ([("gridreg-base", args.baseline)] if args.baseline else [])
    for round_number in range(1, args.rounds + 1):
        for name, directory in checkouts:
            r = in_checkout(directory, args.pushes, args.runs, args.calls)
            calls = f", {r['calls']:.2f} Python calls per push" if args.calls else ""
            print(
                f"round {round_number}: {name}: {r['median']:.2f} us CPU per push "
                f"(runs {r['min']:.2f}-{r['max']:.2f}){calls}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
