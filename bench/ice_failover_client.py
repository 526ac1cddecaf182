"""
A real Ice 3.7 client that keeps calling C{findAdapterById} on its default
locator, for the failover benchmark (run it under C{/usr/bin/python3}).

The locator proxy comes from C{Ice.Default.Locator} (give every replica,
master first) with whatever C{--property} settings the scenario wants, e.g.
C{Ice.Default.Locator.EndpointSelection=Ordered},
C{Ice.Default.LocatorCacheTimeout=0}, C{Ice.ACM.Client.Timeout=2},
C{Ice.Default.InvocationTimeout=1000}.

Calls are synchronous, one at a time, started every C{--interval} seconds
(or at once when the previous one took longer), on a background thread. It
writes C{{"event": "started"}} after the first successful call, and after
C{--duration} seconds from then one line with every call as C{[start, end,
error]} (C{time.monotonic()}; error C{null} for success; a call still
hanging at the end has end C{null}), then exits at once without waiting
for a hung call.
"""

import argparse
import json
import os
import sys
import threading
import time

import Ice


def error_name(exc):
    ice_id = getattr(exc, "ice_id", None)
    if callable(ice_id):
        return ice_id().lstrip(":").replace("::", ".")
    return type(exc).__name__


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locator", required=True, help="Ice.Default.Locator")
    parser.add_argument("--adapter", default="HelloAdapter")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.002)
    parser.add_argument("--property", action="append", default=[], help="extra Ice property K=V")
    args = parser.parse_args(argv)
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    init.properties.setProperty("Ice.Default.Locator", args.locator)
    for pair in args.property:
        key, _, value = pair.partition("=")
        init.properties.setProperty(key, value)
    communicator = Ice.initialize(init)
    locator = communicator.getDefaultLocator()
    calls = []
    current = [None]
    lock = threading.Lock()
    started = threading.Event()
    deadline = [None]

    def loop():
        while deadline[0] is None or time.monotonic() < deadline[0]:
            start = time.monotonic()
            with lock:
                current[0] = start
            error = None
            try:
                locator.findAdapterById(args.adapter)
            except Exception as exc:  # noqa: BLE001 - every failure is a result
                error = error_name(exc)
            end = time.monotonic()
            with lock:
                current[0] = None
                calls.append((start, end, error))
            if error is None and not started.is_set():
                started.set()
            pause = start + args.interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    threading.Thread(target=loop, daemon=True).start()
    if not started.wait(30.0):
        sys.stdout.write(
            json.dumps(
                {"event": "error", "message": "no successful call in 30 s", "calls": calls[-20:]}
            )
            + "\n"
        )
        sys.stdout.flush()
        os._exit(1)
    begin = time.monotonic()
    deadline[0] = begin + args.duration
    sys.stdout.write(json.dumps({"event": "started", "at": begin}) + "\n")
    sys.stdout.flush()
    time.sleep(args.duration)
    with lock:
        records = [list(c) for c in calls]
        if current[0] is not None:
            records.append([current[0], None, "in-progress"])
    sys.stdout.write(
        json.dumps({"event": "result", "end": time.monotonic(), "calls": records}) + "\n"
    )
    sys.stdout.flush()
    # a call may still hang on a stopped registry: do not wait for it
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
