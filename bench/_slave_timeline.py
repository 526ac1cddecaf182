"""
The lean launcher (C{python -m gridreg.registry}) with a timeline: run as
C{python -m bench._slave_timeline ARGS} by L{bench.slave_startup}'s
C{--timeline}, it starts the replica exactly as the launcher's program
does (L{gridreg.registry.program}) and writes, as JSON lines to the file
C{BENCH_TIMELINE} names, when each step of a fresh slave's start-up ended:
milliseconds since C{BENCH_T0} (the benchmark's C{time.monotonic()} just
before it spawned this process: the clock is the machine's, so the times
compare), the process's CPU time (every thread) and the main thread's.

The steps are marked by wrapping the launcher's and the slave's own
functions from outside (nothing in gridreg knows of this file); the
garbage collector's passes are timed through C{gc.callbacks}, by
generation. The benchmark adds the first answer a client got (its probe).
With C{BENCH_MODULES} set, the names of the modules the slave holds once
its state answers from the snapshot are written to that file, one a line
(what a fresh slave imported before it was ready).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any, Callable

T0 = float(os.environ["BENCH_T0"])
_out = open(os.environ["BENCH_TIMELINE"], "a", buffering=1)
_gc_ms = [0.0, 0.0, 0.0]
_gc_count = [0, 0, 0]
_gc_started = [0.0]


def mark(step: str, **more: Any) -> None:
    now = time.monotonic()
    _out.write(
        json.dumps(
            {
                "step": step,
                "ms": round((now - T0) * 1000.0, 2),
                "cpu_ms": round(time.process_time() * 1000.0, 2),
                "main_cpu_ms": round(time.thread_time() * 1000.0, 2),
                "gc_ms": [round(g, 2) for g in _gc_ms],
                "gc_count": list(_gc_count),
                **more,
            }
        )
        + "\n"
    )


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        generation = info["generation"]
        _gc_ms[generation] += (time.perf_counter() - _gc_started[0]) * 1000.0
        _gc_count[generation] += 1


def after(owner: Any, name: str, step: str, each: bool = False) -> None:
    """Mark C{step} when C{owner.name} returns (or its Deferred fires): the first time only."""
    original = getattr(owner, name)
    done: list[bool] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if done and not each:
            return result
        done.append(True)
        if hasattr(result, "addBoth"):

            def fired(value: Any) -> Any:
                mark(step)
                return value

            result.addBoth(fired)
        else:
            mark(step)
        return result

    setattr(owner, name, wrapper)


def before(owner: Any, name: str, step: str) -> None:
    """Mark C{step} when C{owner.name} is first called."""
    original: Callable[..., Any] = getattr(owner, name)
    done: list[bool] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(True)
            mark(step)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def instrument(launch: Any) -> None:
    """
    Wrap the launcher's steps; the slave's, once the service is made: its
    modules must be imported where the launcher imports them (after the
    options, which keep the TLS libraries out).
    """
    from gridreg.registry import tap

    after(launch.Options, "parseOptions", "options parsed")
    make_service = tap.makeService

    def made(*args: Any, **kwargs: Any) -> Any:
        service = make_service(*args, **kwargs)
        mark("service made")
        instrument_slave()
        return service

    tap.makeService = made


def instrument_slave() -> None:
    """Wrap the slave's steps (a method already bound by now is not seen)."""
    from gridreg.registry import slave, snapshot_stream, state

    before(slave.MasterEndpoint, "connect", "reactor running, connecting to the master")
    after(slave.SlaveProtocol, "connectionMade", "connected to the master")
    before(slave.SlaveReplication, "begin_snapshot", "registered, snapshot begins")
    fed = [0, 0]
    feed = snapshot_stream.SnapshotLoad.feed

    def counted_feed(self: Any, data: bytes) -> Any:
        fed[0] += 1
        fed[1] += len(data)
        if fed[0] == 1:
            mark("first snapshot chunk received", bytes=len(data))

        def decoded(result: Any) -> Any:
            mark("chunk decoded", chunks=fed[0], bytes=fed[1])
            return result

        return feed(self, data).addBoth(decoded)

    snapshot_stream.SnapshotLoad.feed = counted_feed  # type: ignore[method-assign]
    before(slave.SlaveReplication, "install_snapshot", "snapshot ended (install asked)")
    after(snapshot_stream.SnapshotLoad, "records", "snapshot decoded and checked")
    loads = state.RegistryState.load
    names = iter(("state loaded from the store (empty)",))

    def load(self: Any, records: Any) -> None:
        loads(self, records)
        step = next(names, None)
        if step is not None:
            mark(step)
            return
        mark("state loaded from the snapshot: it answers", modules=len(sys.modules))
        listing = os.environ.get("BENCH_MODULES")
        if listing and not os.path.exists(listing):
            with open(listing, "w") as out:
                out.write("".join(f"{name}\n" for name in sorted(sys.modules)))

    state.RegistryState.load = load  # type: ignore[method-assign]
    after(snapshot_stream.SnapshotLoad, "commit", "snapshot committed to the store")


def main() -> None:
    mark("interpreter up (site included)")
    gc.callbacks.append(_gc_timer)
    import gridreg.registry

    if hasattr(gridreg.registry, "import_launcher"):
        launch = gridreg.registry.import_launcher()
    else:  # a gridreg from before the program kept the collector off its imports
        from gridreg.registry import launch
    mark("launcher imported", modules=len(sys.modules))
    instrument(launch)
    launch.main()


if __name__ == "__main__":
    main()
