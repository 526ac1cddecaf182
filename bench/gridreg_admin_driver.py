"""
gridreg's admin writer for the replication benchmark, in a process of its
own, as C{bench/ice_admin_driver.py} is IceGrid's: driven over stdin with
one JSON command per line, one JSON result per line, the same commands
(C{add}, C{add_many}) and answers.

In its own process the writer's CPU per write can be read from C{/proc}
beside IceGrid's writer's, and it shares its interpreter with nothing else
the benchmark does. Run it with the benchmark's own Python and the
repository on C{PYTHONPATH}; C{--property K=V} gives the admin session its
settings (C{Ice.Default.Locator}, the internal TLS files or
C{GridReg.Internal.Insecure}). Times are C{time.monotonic()}, comparable
across the machine's processes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.stdio import StandardIO
from twisted.python.failure import Failure

from bench._add_many_plan import add_many_plan


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


class Driver:
    def __init__(self, session: Any) -> None:
        self.session = session

    async def cmd_add(self, identity: str, endpoints: str, type_id: str) -> dict[str, Any]:
        start = time.monotonic()
        await self.session.add_object(f"{identity}:{endpoints}", type_id)
        return {"start": start, "ack": time.monotonic()}

    def cmd_add_many(self, options: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """
        C{count} adds with up to C{in_flight} outstanding: each answer sends
        the next add, as the Ice driver's callback releases its slot.
        """
        names, type_id, in_flight = add_many_plan(options)
        count = len(names)
        proxies = iter(names)
        errors: dict[str, int] = {}
        done: Deferred[dict[str, Any]] = Deferred()
        outstanding = [0]
        begin = time.monotonic()

        def next_one() -> None:
            proxy = next(proxies, None)
            if proxy is None:
                if not outstanding[0] and not done.called:
                    seconds = time.monotonic() - begin
                    done.callback(
                        {"seconds": seconds, "errors": sum(errors.values()), "error_types": errors}
                    )
                return
            outstanding[0] += 1
            d = ensureDeferred(self.session.add_object(proxy, type_id))
            d.addBoth(answered)

        def answered(result: Any) -> None:
            outstanding[0] -= 1
            if isinstance(result, Failure):
                name = type(result.value).__name__
                errors[name] = errors.get(name, 0) + 1
            next_one()

        for _ in range(min(in_flight, count) or 1):
            next_one()
        return done


class Commands(Protocol):
    def __init__(self, driver: Driver, finished: Deferred[None]) -> None:
        self.driver = driver
        self.finished = finished
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.run(line)

    def run(self, line: bytes) -> None:
        words: Any = None
        try:
            words = json.loads(line)
            handler = getattr(self.driver, "cmd_" + words[0])
            d = ensureDeferred(handler(*words[1:])) if words[0] == "add" else handler(*words[1:])
        except Exception as exc:  # every failure becomes a JSON line
            self.failed(words, Failure(exc))
            return
        d.addCallbacks(
            lambda result: emit(dict(result, ok=True, command=words[0])),
            lambda failure: self.failed(words, failure),
        )

    def failed(self, words: Any, failure: Failure) -> None:
        emit(
            {
                "ok": False,
                "command": words[0] if words else "?",
                "error": type(failure.value).__name__,
                "message": str(failure.value),
            }
        )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.finished.called:
            self.finished.callback(None)


async def main(reactor: Any, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--property", action="append", default=[], help="property K=V")
    args = parser.parse_args(argv)
    from gridreg.admin.session import open_admin_session
    from gridreg.config.properties import Properties

    properties = Properties()
    for pair in args.property:
        key, _, value = pair.partition("=")
        properties.set(key, value)
    session = await open_admin_session(reactor, properties, None, 30.0, warn=lambda _: None)
    finished: Deferred[None] = Deferred()
    StandardIO(Commands(Driver(session), finished), reactor=reactor)
    emit({"event": "ready"})
    await finished
    await session.close()


if __name__ == "__main__":
    from twisted.internet.task import react

    react(lambda reactor: ensureDeferred(main(reactor, sys.argv[1:])))
