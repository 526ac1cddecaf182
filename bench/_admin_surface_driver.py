"""
A real Ice 3.7 client for C{bench/admin_surface.py}, driven over stdin
with one JSON command per line (a JSON array); one JSON result per line.

Run it under C{/usr/bin/python3} (Debian's C{python3-zeroc-ice}). Every
proxy it uses is direct (C{<instance>/Registry:tcp -h ... -p ...}), so no
locator lookup is part of any figure. Times are C{time.monotonic()}
(C{CLOCK_MONOTONIC}, one clock for every process of the machine), so a
write's start in the writer process compares with its visibility in the
observer process. Every command answers C{client_cpu_s}: this process's CPU
time (all threads, C{time.process_time}) spent while it ran.

Commands:

  - C{["sessions", REGISTRY, COUNT, FRESH]}: COUNT times
    C{createAdminSession} + C{getAdmin} + C{destroy}, one at a time, on one
    connection, or (FRESH) each on a new connection, closed after
    C{destroy} (its close is not timed); answers per-call seconds lists
    C{create}, C{get_admin}, C{destroy}, C{total} (for FRESH, C{total}
    includes connecting).
  - C{["open_admin", REGISTRY]}: one admin session kept alive for the
    write commands.
  - C{["writes", PREFIX, COUNT, ENDPOINTS, TYPE, OP]}: OP C{"add"}: COUNT
    C{addObjectWithType} of C{PREFIX<i>}, one at a time; OP C{"remove"}:
    C{removeObject} of the same identities; answers C{seconds} (a list).
  - C{["add", IDENTITY, ENDPOINTS, TYPE]}: answers C{start} and C{ack}.
  - C{["remove", IDENTITY]}.
  - C{["poll", QUERY, IDENTITY, TIMEOUT, IN_FLIGHT]}: first the line
    C{{"event": "polling"}} once the first request is sent, then
    C{Query.findObjectById} kept IN_FLIGHT requests deep (AMI: each reply
    sends the next request at once) until one answers a proxy; answers
    C{found_sent} and C{found_end} (the first reply with the object: when
    its request was sent and when the reply arrived), C{last_miss_sent}
    (the latest-sent request answered without it) and C{polls}.
  - C{["alloc_open", REGISTRY, IDENTITY]}: two client sessions
    (C{createSession}), each on its own connection, allocation timeout -1
    (wait); session A allocates IDENTITY.
  - C{["alloc_cycles", COUNT, SETTLE]}: COUNT times: the session not
    holding the object calls C{allocateObjectById} (AMI); once that request
    is sent and SETTLE seconds more have passed (it is queued at the
    registry), the holder calls C{releaseObject}; the grant is the time
    from just before C{releaseObject} to the waiter's reply; roles swap.
    Answers C{grant}, C{release} (the release call's own round trip) and
    C{request_to_grant} lists.
"""

import argparse
import json
import sys
import threading
import time

import Ice
import IceGrid

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
        self.admin_session = None
        self.admin = None
        self.alloc_sessions = []
        self.alloc_identity = None
        self.holder = 0
        self.kept_alive = []
        self.closing = threading.Event()
        threading.Thread(target=self._keepalive, daemon=True).start()

    def _keepalive(self):
        while not self.closing.wait(KEEPALIVE_SECONDS):
            for session in list(self.kept_alive):
                try:
                    session.keepAlive()
                except Ice.Exception:  # the next command reports a dead session
                    pass

    def _registry(self, proxy):
        return IceGrid.RegistryPrx.uncheckedCast(self.communicator.stringToProxy(proxy))

    # -- admin sessions -------------------------------------------------------------

    def cmd_sessions(self, registry_proxy, count, fresh):
        base = self._registry(registry_proxy)
        create, get_admin, destroy, total = [], [], [], []
        for i in range(int(count)):
            registry = base.ice_connectionId(f"fresh{i}") if fresh else base
            t0 = time.monotonic()
            session = registry.createAdminSession("bench", "bench")
            t1 = time.monotonic()
            # every later call on the connection the session was created on
            session = session.ice_fixed(registry.ice_getCachedConnection())
            admin = session.getAdmin()
            t2 = time.monotonic()
            session.destroy()
            t3 = time.monotonic()
            if admin is None:
                raise RuntimeError("getAdmin answered a null proxy")
            create.append(t1 - t0)
            get_admin.append(t2 - t1)
            destroy.append(t3 - t2)
            total.append(t3 - t0)
            if fresh:
                registry.ice_getCachedConnection().close(Ice.ConnectionClose.GracefullyWithWait)
        return {"create": create, "get_admin": get_admin, "destroy": destroy, "total": total}

    # -- writes ---------------------------------------------------------------------

    def cmd_open_admin(self, registry_proxy):
        registry = self._registry(registry_proxy)
        self.admin_session = registry.createAdminSession("bench", "bench")
        self.admin_session = self.admin_session.ice_fixed(registry.ice_getCachedConnection())
        self.admin = self.admin_session.getAdmin()
        self.kept_alive.append(self.admin_session)
        return {}

    def cmd_writes(self, prefix, count, endpoints, type_id, op):
        seconds = []
        for i in range(int(count)):
            identity = f"{prefix}{i}"
            if op == "add":
                proxy = self.communicator.stringToProxy(f"{identity}:{endpoints}")
                t0 = time.monotonic()
                self.admin.addObjectWithType(proxy, type_id)
            else:
                target = Ice.stringToIdentity(identity)
                t0 = time.monotonic()
                self.admin.removeObject(target)
            seconds.append(time.monotonic() - t0)
        return {"seconds": seconds}

    def cmd_add(self, identity, endpoints, type_id):
        proxy = self.communicator.stringToProxy(f"{identity}:{endpoints}")
        start = time.monotonic()
        self.admin.addObjectWithType(proxy, type_id)
        return {"start": start, "ack": time.monotonic()}

    def cmd_remove(self, identity):
        self.admin.removeObject(Ice.stringToIdentity(identity))
        return {}

    # -- observing --------------------------------------------------------------------

    def cmd_poll(self, query_proxy, identity, timeout, in_flight):
        query = IceGrid.QueryPrx.uncheckedCast(self.communicator.stringToProxy(query_proxy))
        target = Ice.stringToIdentity(identity)
        lock = threading.Lock()
        done = threading.Event()
        state = {"polls": 0, "last_miss_sent": None, "found": None, "error": None}
        deadline = time.monotonic() + float(timeout)

        def send():
            sent = time.monotonic()
            future = query.findObjectByIdAsync(target)
            future.add_done_callback(lambda f: answered(f, sent))

        def answered(future, sent):
            end = time.monotonic()
            with lock:
                state["polls"] += 1
                error = future.exception()
                if error is not None:
                    state["error"] = error_name(error)
                    done.set()
                    return
                if future.result() is not None:
                    if state["found"] is None or sent < state["found"][0]:
                        state["found"] = (sent, end)
                    done.set()
                    return
                if state["last_miss_sent"] is None or sent > state["last_miss_sent"]:
                    state["last_miss_sent"] = sent
                if done.is_set():
                    return
                if end >= deadline:
                    done.set()
                    return
            send()

        for _ in range(max(1, int(in_flight))):
            send()
        emit({"event": "polling", "identity": identity})
        done.wait(float(timeout) + 5)
        with lock:
            if state["error"] is not None:
                raise RuntimeError(f"findObjectById failed: {state['error']}")
            found = state["found"]
            return {
                "found": found is not None,
                "found_sent": found[0] if found else None,
                "found_end": found[1] if found else None,
                "last_miss_sent": state["last_miss_sent"],
                "polls": state["polls"],
            }

    # -- allocation ---------------------------------------------------------------------

    def cmd_alloc_open(self, registry_proxy, identity):
        base = self._registry(registry_proxy)
        self.alloc_identity = Ice.stringToIdentity(identity)
        for name in ("A", "B"):
            registry = base.ice_connectionId(name)
            session = registry.createSession(f"bench{name}", "")
            session = session.ice_fixed(registry.ice_getCachedConnection())
            session.setAllocationTimeout(-1)
            self.alloc_sessions.append(session)
            self.kept_alive.append(session)
        proxy = self.alloc_sessions[0].allocateObjectById(self.alloc_identity)
        self.holder = 0
        return {"proxy": str(proxy)}

    def cmd_alloc_cycles(self, count, settle):
        grant, release, request_to_grant = [], [], []
        for _ in range(int(count)):
            holder = self.alloc_sessions[self.holder]
            waiter = self.alloc_sessions[1 - self.holder]
            sent = threading.Event()
            granted = {}
            requested = time.monotonic()
            future = waiter.allocateObjectByIdAsync(self.alloc_identity)
            future.add_sent_callback(lambda _future, _sync: sent.set())
            future.add_done_callback(lambda f: granted.setdefault("at", time.monotonic()))
            if not sent.wait(10):
                raise RuntimeError("the allocation request was never sent")
            time.sleep(float(settle))
            if future.done():
                raise RuntimeError(f"granted while another session held it: {future.result()}")
            t0 = time.monotonic()
            holder.releaseObject(self.alloc_identity)
            t1 = time.monotonic()
            proxy = future.result(10)
            if proxy is None:
                raise RuntimeError("allocateObjectById answered a null proxy")
            grant.append(granted["at"] - t0)
            release.append(t1 - t0)
            request_to_grant.append(granted["at"] - requested)
            self.holder = 1 - self.holder
        return {"grant": grant, "release": release, "request_to_grant": request_to_grant}

    def run(self, words):
        handler = getattr(self, "cmd_" + words[0], None)
        if handler is None:
            raise ValueError(f"unknown command {words[0]!r}")
        cpu0 = time.process_time()
        result = handler(*words[1:])
        result["client_cpu_s"] = time.process_time() - cpu0
        return result

    def close(self):
        self.closing.set()
        for session in self.kept_alive:
            try:
                session.destroy()
            except Ice.Exception:  # the registry may be gone already
                pass


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--property", action="append", default=[], help="extra Ice property K=V")
    args = parser.parse_args(argv)
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
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
        driver.close()
        communicator.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
