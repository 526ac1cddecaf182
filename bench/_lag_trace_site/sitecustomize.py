"""
Per-write timestamps in a running gridreg registry, for C{bench.lag_tail}:
with this directory on C{PYTHONPATH} and C{GRIDREG_BENCH_LAGTRACE} naming a
directory, the registry notes (C{time.monotonic()}, the clock the bench's
writer and observer use) each push a slave handles (C{push}: received,
applied to the state), each SQLite commit (C{commit}: started, durable),
each acknowledgement its store's thread sends (C{ack}) and each run of the
cyclic collector (C{gc}: started, ended, generation), in memory, and writes
them to C{PID.ev} on C{SIGUSR2} or at exit. Without the variable it does
nothing.
"""

import os

_DIRECTORY = os.environ.get("GRIDREG_BENCH_LAGTRACE")

if _DIRECTORY:
    import atexit
    import builtins
    import gc
    import signal
    import sys
    import time

    _events: list = []
    _mono = time.monotonic
    _gc_started: list = []

    def _gc(phase: str, info: dict) -> None:
        if phase == "start":
            _gc_started.append(_mono())
        elif _gc_started:
            _events.append(("gc", _gc_started.pop(), _mono(), info["generation"]))

    gc.callbacks.append(_gc)

    def _dump(*args: object) -> None:
        with open(os.path.join(_DIRECTORY, f"{os.getpid()}.ev"), "w") as out:
            for event in list(_events):
                out.write(" ".join(str(x) for x in event) + "\n")

    atexit.register(_dump)
    signal.signal(signal.SIGUSR2, _dump)

    _patched: set = set()
    _busy: list = []

    def _patch() -> None:
        slave = sys.modules.get("gridreg.registry.slave")
        if "slave" not in _patched and hasattr(slave, "SlaveProtocol"):
            _patched.add("slave")
            box = slave.SlaveProtocol._push_changes_box

            def push(self, b):
                started = _mono()
                result = box(self, b)
                _events.append(("push", started, _mono()))
                return result

            slave.SlaveProtocol._push_changes_box = push
        sqlite = sys.modules.get("gridreg.store.sqlite")
        if "sqlite" not in _patched and hasattr(sqlite, "SQLiteStore"):
            _patched.add("sqlite")
            persist = sqlite.SQLiteStore._persist_all

            def commit(self, changes):
                started = _mono()
                persist(self, changes)
                _events.append(("commit", started, _mono(), changes[-1].serial))

            sqlite.SQLiteStore._persist_all = commit
        prompt = sys.modules.get("gridreg.protocol.prompt")
        if "prompt" not in _patched and hasattr(prompt, "ThreadAnswer"):
            _patched.add("prompt")
            send = prompt.ThreadAnswer.send_from_thread

            def ack(self):
                sent = send(self)
                _events.append(("ack", _mono(), bool(sent)))
                return sent

            prompt.ThreadAnswer.send_from_thread = ack

    _import = builtins.__import__

    def _importing(name, *args, **kwargs):
        module = _import(name, *args, **kwargs)
        if len(_patched) < 3 and not _busy:
            _busy.append(True)
            try:
                _patch()
            finally:
                _busy.pop()
            if len(_patched) == 3:
                builtins.__import__ = _import
        return module

    builtins.__import__ = _importing
