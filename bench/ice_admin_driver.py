"""
A long-lived real Ice 3.7 client for the replication benchmarks, driven
over stdin with one JSON command per line; one JSON result per line.

Run it under C{/usr/bin/python3} (the interpreter with Debian's
C{python3-zeroc-ice}). It plays two roles, one per process:

  - the writer, with C{--locator} at the master: IceGrid admin writes
    through an admin session (C{add}, C{add_many});
  - the observer, with C{--locator} at one slave only: C{poll} asks that
    replica's locator for a well-known object until it is there.

Times are C{time.monotonic()} (Linux C{CLOCK_MONOTONIC}, shared by every
process on the machine), so the benchmark can compare a write's start in
one process with its visibility in another.

Commands (JSON arrays):

  - C{["add", IDENTITY, ENDPOINTS, TYPE]}: one C{addObjectWithType};
    answers C{start} and C{ack} times.
  - C{["add_many", {"category", "prefix", "start", "count", "endpoints",
    "type", "in_flight"}]}: C{count} asynchronous adds with up to
    C{in_flight} outstanding; answers C{seconds} and C{errors}.
  - C{["poll", IDENTITY, TIMEOUT, INTERVAL]}: first the line
    C{{"event": "polling"}}, then C{findObjectById} every C{INTERVAL}
    seconds (one at a time) until it answers or C{TIMEOUT} passes; answers
    C{found_start}/C{found_end} (the successful call), C{last_miss_start}
    (the last call that did not find it) and C{polls}.
"""

import argparse
import json
import sys
import threading
import time

import Ice
import IceGrid

from _add_many_plan import add_many_plan  # this script's directory

KEEPALIVE_SECONDS = 5.0


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def error_name(exc):
    ice_id = getattr(exc, "ice_id", None)
    if callable(ice_id):
        return ice_id().lstrip(":").replace("::", ".")
    return type(exc).__name__


class Driver:
    def __init__(self, communicator):
        self.communicator = communicator
        self.locator = communicator.getDefaultLocator()
        self.instance = self.locator.ice_getIdentity().category
        self.session = None
        self.admin = None
        self.closing = threading.Event()

    # -- admin -------------------------------------------------------------------

    def _admin(self):
        if self.admin is None:
            registry = IceGrid.RegistryPrx.checkedCast(
                self.communicator.stringToProxy(self.instance + "/Registry")
            )
            self.session = registry.createAdminSession("bench", "bench")
            self.admin = self.session.getAdmin()
            threading.Thread(target=self._keepalive, daemon=True).start()
        return self.admin

    def _keepalive(self):
        while not self.closing.wait(KEEPALIVE_SECONDS):
            try:
                self.session.keepAlive()
            except Exception:  # noqa: BLE001 - the next command reports a dead session
                return

    def cmd_add(self, identity, endpoints, type_id):
        admin = self._admin()
        proxy = self.communicator.stringToProxy(f"{identity}:{endpoints}")
        start = time.monotonic()
        admin.addObjectWithType(proxy, type_id)
        ack = time.monotonic()
        return {"start": start, "ack": ack}

    def cmd_add_many(self, options):
        admin = self._admin()
        names, type_id, in_flight = add_many_plan(options)
        proxies = [self.communicator.stringToProxy(name) for name in names]
        slots = threading.BoundedSemaphore(in_flight)
        lock = threading.Lock()
        errors = {}

        def done(future):
            error = future.exception()
            if error is not None:
                with lock:
                    name = error_name(error)
                    errors[name] = errors.get(name, 0) + 1
            slots.release()

        begin = time.monotonic()
        for proxy in proxies:
            slots.acquire()
            admin.addObjectWithTypeAsync(proxy, type_id).add_done_callback(done)
        for _ in range(in_flight):
            slots.acquire()
        seconds = time.monotonic() - begin
        return {"seconds": seconds, "errors": sum(errors.values()), "error_types": errors}

    # -- observing -----------------------------------------------------------------

    def cmd_poll(self, identity, timeout, interval):
        target = Ice.stringToIdentity(identity)
        timeout = float(timeout)
        interval = float(interval)
        emit({"event": "polling", "identity": identity})
        polls = 0
        last_miss_start = None
        began = time.monotonic()
        deadline = began + timeout
        while True:
            start = time.monotonic()
            polls += 1
            try:
                found = self.locator.findObjectById(target) is not None
            except Ice.ObjectNotFoundException:
                found = False
            end = time.monotonic()
            if found:
                return {
                    "found": True,
                    "found_start": start,
                    "found_end": end,
                    "last_miss_start": last_miss_start,
                    "polls": polls,
                    "began": began,
                }
            last_miss_start = start
            if end >= deadline:
                return {
                    "found": False,
                    "last_miss_start": last_miss_start,
                    "polls": polls,
                    "began": began,
                }
            pause = start + interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def run(self, words):
        handler = getattr(self, "cmd_" + words[0], None)
        if handler is None:
            raise ValueError(f"unknown command {words[0]!r}")
        return handler(*words[1:])


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locator", required=True, help="Ice.Default.Locator")
    parser.add_argument("--property", action="append", default=[], help="extra Ice property K=V")
    args = parser.parse_args(argv)
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    init.properties.setProperty("Ice.Default.Locator", args.locator)
    for pair in args.property:
        key, _, value = pair.partition("=")
        init.properties.setProperty(key, value)
    communicator = Ice.initialize(init)
    driver = Driver(communicator)
    emit({"event": "ready"})
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            words = None
            try:
                words = json.loads(line)
                result = dict(driver.run(words), ok=True, command=words[0])
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON line
                result = {
                    "ok": False,
                    "command": words[0] if words else line.strip(),
                    "error": error_name(exc),
                    "message": str(exc).strip(),
                }
            emit(result)
    finally:
        driver.closing.set()
        if driver.session is not None:
            try:
                driver.session.destroy()
            except Exception:  # noqa: BLE001 - the registry may be gone already
                pass
        communicator.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
