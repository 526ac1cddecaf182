"""
One write's stages in the profiles C{bench.write_breakdown --cprofile DIR}
keeps (DIR/KIND/master-THREAD.prof, slave-THREAD.prof): per stage, its
calls and its total (cumulative) profiled time per write, the master's and
a slave's reactor and store threads, kinds side by side.

    python -m bench.profile_stages DIR --writes N [--kinds gridreg-base,gridreg]

The profiler slows every call (about 1 us each here), so the times are
only for comparing kinds with each other; the calls are exact.
"""

from __future__ import annotations

import argparse
import pstats
from pathlib import Path

#: (thread file, stage, file suffix, function): the stage is that function's total
#: (calls and cumulative time per write); no suffix: every Python call of the thread
STAGES = [
    ("master-MainThread", "wake-ups (epoll returns)", "gridreg/lean_reactor.py", "doPoll"),
    ("master-MainThread", "Python calls, all", "", ""),
    ("master-MainThread", "messages in (admin call, acks)", "registry/internal.py", "dataReceived"),
    ("master-MainThread", "admin servant, to the commit", "registry/admin.py", "_object_add_box"),
    ("master-MainThread", "  proxy parse", "registry/admin.py", "_proxy"),
    ("master-MainThread", "  change built (checks, record)", "registry/database.py", "build"),
    (
        "master-MainThread",
        "  staged, serial, commit started",
        "registry/database.py",
        "write_locked",
    ),
    ("master-MainThread", "    pushes readied (all slaves)", "registry/master.py", "prepare"),
    ("master-MainThread", "    handed to the store thread", "store/executor.py", "submit"),
    ("master-MainThread", "commit's result on the reactor", "registry/database.py", "durable"),
    ("master-MainThread", "  replicate (pushes accounted)", "registry/master.py", "replicate"),
    ("master-MainThread", "acks handled", "registry/master.py", "_answered"),
    ("master-MainThread", "reply to the admin", "protocol/prompt.py", "_end_of_turn"),
    ("master-gridreg-store", "Python calls, all", "", ""),
    ("master-gridreg-store", "commit job", "store/_serial.py", "_persist_checked"),
    ("master-gridreg-store", "  SQLite transaction", "store/sqlite.py", "_persist_all"),
    ("master-gridreg-store", "  pushes sent", "registry/master.py", "send_from_thread"),
    (
        "master-gridreg-store",
        "  result to the reactor (waker)",
        "twisted/internet/base.py",
        "callFromThread",
    ),
    ("slave-MainThread", "wake-ups (epoll returns)", "gridreg/lean_reactor.py", "doPoll"),
    ("slave-MainThread", "Python calls, all", "", ""),
    ("slave-MainThread", "push handled", "registry/slave.py", "_push_changes_box"),
    ("slave-MainThread", "  changes decoded", "store/records.py", "change_from_dict"),
    ("slave-MainThread", "  state took them", "registry/state.py", "apply"),
    ("slave-MainThread", "  store commit handed over", "store/_serial.py", "apply_many"),
    ("slave-MainThread", "commit's result on the reactor", "store/_serial.py", "durable"),
    ("slave-gridreg-store", "Python calls, all", "", ""),
    ("slave-gridreg-store", "commit job", "store/_serial.py", "_persist_checked"),
    ("slave-gridreg-store", "  SQLite transaction", "store/sqlite.py", "_persist_all"),
    ("slave-gridreg-store", "  ack sent", "protocol/prompt.py", "send_from_thread"),
    (
        "slave-gridreg-store",
        "  result to the reactor (waker)",
        "twisted/internet/base.py",
        "callFromThread",
    ),
]


def stage(stats: dict, suffix: str, name: str, writes: int) -> tuple[float, float]:
    """(calls, profiled us) per write of every function C{name} in a file ending C{suffix}."""
    calls = total = 0.0
    for (where, _line, function), (_cc, nc, _tt, ct, _callers) in stats.items():
        if not suffix:
            calls += nc
            continue
        if function == name and where.endswith(suffix):
            calls += nc
            total += ct
    return calls / writes, total / writes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("directory")
    parser.add_argument("--writes", type=int, required=True)
    parser.add_argument("--kinds", default="gridreg-base,gridreg")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    loaded = {}
    for kind in kinds:
        for path in (Path(args.directory) / kind).glob("*.prof"):
            loaded[kind, path.stem] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    header = "".join(f"  {kind:>22}" for kind in kinds)
    print(f"{'thread / stage':<50}{header}")
    last = None
    for thread, label, suffix, name in STAGES:
        if thread != last:
            print(thread)
            last = thread
        cells = []
        for kind in kinds:
            stats = loaded.get((kind, thread))
            if stats is None:
                cells.append(f"  {'-':>22}")
                continue
            calls, us = stage(stats, suffix, name, args.writes)
            if not suffix or name == "doPoll":  # a count; doPoll's time is mostly waiting
                cells.append(f"  {calls:8.2f} {'':13}")
            else:
                cells.append(f"  {calls:8.2f} / {us:7.1f} us")
        print(f"  {label:<48}{''.join(cells)}")


if __name__ == "__main__":
    main()
