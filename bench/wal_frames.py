"""
WAL frames and store-thread CPU per commit in gridreg's own store
(L{gridreg.store.sqlite.SQLiteStore}, WAL, C{synchronous=FULL}), one
commit at a time, for the write patterns a registry sees:

  - lag, tput: the objects C{bench.replication} adds (C{lag/objN} after
    C{lagwarm/objN}; C{tput/f1-N} after C{tputwarm/objN});
  - ascending: zero-padded names, each at the right edge of the objects;
  - random: objects with UUID names (any identity an admin adds);
  - adapters: 50 adapters' endpoints updated in turn (servers activating);
  - in-place: 50 objects updated in turn;
  - application: one 3 kB application record updated.

Frames are the WAL's growth (the automatic checkpoint off while counted)
over the page size plus the frame header; CPU is the thread's user plus
system time (C{RUSAGE_THREAD}) with the checkpoint on, as a registry runs.
With C{--baseline DIR} the same runs for that checkout, in turn, each in a
process of its own (C{PYTHONPATH=DIR}).

    python -m bench.wal_frames [--commits 1000] [--objects 100000] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

PATTERNS = ("lag", "tput", "ascending", "random", "adapters", "in-place", "application")


def _mutations(pattern: str, count: int) -> tuple[list[list[Any]], list[list[Any]]]:
    """The warm-up commits and the measured ones of C{pattern}."""
    from gridreg.ice.stringify import proxy_from_string
    from gridreg.ice.types import Identity
    from gridreg.registry.state import AdapterInfo, ObjectInfo, adapter_mutation, object_mutation
    from gridreg.store.records import Mutation

    def obj(category: str, name: str) -> list[Any]:
        proxy = proxy_from_string(f"{category}/{name}:tcp -h 127.0.0.1 -p 10000")
        return [object_mutation(Identity(name, category), ObjectInfo(proxy, "::Demo::Hello"))]

    def adapter(i: int, port: int) -> list[Any]:
        proxy = proxy_from_string(f"dummy -t:tcp -h 127.0.0.1 -p {port}")
        return [adapter_mutation(f"Server{i}.Adapter", AdapterInfo(f"Server{i}.Adapter", proxy))]

    app = {"descriptor": "x" * 3000}
    makers: dict[str, tuple[Callable[[int], list[Any]], Callable[[int], list[Any]], int]] = {
        "lag": (lambda i: obj("lagwarm", f"obj{i}"), lambda i: obj("lag", f"obj{i}"), 20),
        "tput": (lambda i: obj("tputwarm", f"obj{i}"), lambda i: obj("tput", f"f1-{i}"), 100),
        "ascending": (lambda i: obj("asc", f"w{i:06d}"), lambda i: obj("asc", f"o{i:06d}"), 0),
        "random": (lambda i: obj("rnd", f"w{i}"), lambda i: obj("rnd", str(uuid.uuid4())), 0),
        "adapters": (lambda i: adapter(i, 9000), lambda i: adapter(i % 50, 10000 + i), 50),
        "in-place": (lambda i: obj("upd", f"o{i}"), lambda i: obj("upd", f"o{i % 50}"), 50),
        "application": (
            lambda i: [Mutation("application", "App", app)],
            lambda i: [Mutation("application", "App", dict(app, n=i))],
            1,
        ),
    }
    warm, measured, warm_count = makers[pattern]
    return [warm(i) for i in range(warm_count)], [measured(i) for i in range(count)]


def _call(d: Any) -> Any:
    """The result of a Deferred that has fired (the store runs on this thread)."""
    result: list[Any] = []
    d.addBoth(result.append)
    if hasattr(result[0], "raiseException"):
        result[0].raiseException()
    return result[0]


def measure(root: str, pattern: str, count: int, objects: int) -> dict[str, float]:
    """Frames and CPU per commit of C{pattern} in a new store under C{root}."""
    from gridreg.ice.stringify import proxy_from_string
    from gridreg.ice.types import Identity
    from gridreg.registry.state import ObjectInfo, object_mutation
    from gridreg.store.records import StoreState, empty_records
    from gridreg.store.sqlite import SQLiteStore

    out: dict[str, float] = {}
    warm, measured = _mutations(pattern, count)
    for counting in (True, False):
        shutil.rmtree(root, ignore_errors=True)
        store = SQLiteStore(root)
        _call(store.open())
        db = store._db
        assert db is not None
        if objects:
            records = empty_records()
            for i in range(objects):
                name = f"{i:08x}-{uuid.UUID(int=i * 2654435761 % 2**128)}"
                proxy = proxy_from_string(f"big/{name}:tcp -h 127.0.0.1 -p 10000")
                m = object_mutation(Identity(name, "big"), ObjectInfo(proxy, "::Demo::Hello"))
                records["object"][m.key] = m.value
            assert store.database_id is not None
            _call(store.replace_all(StoreState(store.database_id, 0, records)))
        for mutations in warm:
            _call(store.commit(mutations))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if counting:
            db.execute("PRAGMA wal_autocheckpoint=0")
        (page,) = db.execute("PRAGMA page_size").fetchone()
        wal = store.filename + "-wal"
        before_size = os.path.getsize(wal)
        before = resource.getrusage(resource.RUSAGE_THREAD)
        for mutations in measured:
            _call(store.commit(mutations))
        after = resource.getrusage(resource.RUSAGE_THREAD)
        if counting:
            out["frames"] = (os.path.getsize(wal) - before_size) / (page + 24) / count
        else:
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            out["cpu_us"] = cpu / count * 1e6
        _call(store.close())
    shutil.rmtree(root, ignore_errors=True)
    return out


def run_checkout(checkout: str, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """This module's C{--child} in a process with C{checkout} first on its path."""
    # the file as a script: its directory, not a checkout, first on the path
    env = dict(os.environ, PYTHONPATH=checkout)
    command = [sys.executable, os.path.abspath(__file__), "--child", "--commits", str(args.commits)]
    command += ["--objects", str(args.objects), "--patterns", args.patterns, "--dir", args.dir]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=1000, help="measured commits per pattern")
    parser.add_argument("--objects", type=int, default=0, help="objects in the store before")
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--rounds", type=int, default=1, help="runs per checkout, in turn")
    parser.add_argument("--baseline", help="also measure this checkout")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the stores go")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    patterns = args.patterns.split(",")
    if args.child:
        import gridreg

        if os.path.dirname(os.path.dirname(gridreg.__file__)) != os.environ.get("PYTHONPATH"):
            raise SystemExit(f"measuring {gridreg.__file__}, not the checkout asked for")
        root = tempfile.mkdtemp(prefix="wal-frames-", dir=args.dir)
        try:
            results = {
                p: [measure(os.path.join(root, p), p, args.commits, args.objects)] for p in patterns
            }
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(json.dumps(results))
        return
    checkouts = {"gridreg": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    if args.baseline:
        checkouts["gridreg-base"] = os.path.abspath(args.baseline)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in checkouts}
    for _ in range(args.rounds):
        for name, checkout in checkouts.items():
            for pattern, measured in run_checkout(checkout, args).items():
                runs[name].setdefault(pattern, []).extend(measured)
    print(
        f"{args.commits} commits per pattern, {args.objects} objects before, "
        f"median of {args.rounds} round(s): WAL frames / store-thread us CPU per commit"
    )
    print(f"{'pattern':12s}" + "".join(f" | {name:>20s}" for name in checkouts))
    for pattern in patterns:
        cells = []
        for name in checkouts:
            values = runs[name][pattern]
            frames = statistics.median(v["frames"] for v in values)
            cpu = statistics.median(v["cpu_us"] for v in values)
            cells.append(f"{frames:6.2f} / {cpu:6.1f} us")
        print(f"{pattern:12s}" + "".join(f" | {cell:>20s}" for cell in cells))


if __name__ == "__main__":
    main()
