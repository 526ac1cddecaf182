"""
The user-space instructions gridreg runs per cached locate with one request
in flight, against a bare Python epoll loop's, counted by valgrind.

A locate at 1 x 1 (C{bench.locate}) is one wake-up: the registry's reactor
wakes from C{epoll_wait}, reads one request, answers it from the reply cache
and sleeps again. On a shared machine its CPU per locate moves by more than
a change to that path is worth, and this VM has no hardware counters; an
instruction count under valgrind is exact. This runs, in one process, a
C{LeanEPollReactor} serving an L{IceServerFactory} (under ACM, as the
registry's) on a real loopback TCP connection, driven one request at a time
by a blocking client socket, each iteration as the reactor's main loop runs
it (Twisted's own main loop's iteration with a tree older than the lean
main loop, for a before/after count), and then C{bench.wakeup_floor}'s
loop. The instructions per round trip (both sides, so compare the two)
are the difference between a run of C{N} and one of C{3N} round trips, which cancels start-up.

    python -m bench.locate_path [--round-trips 1000]
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import subprocess
import sys
from typing import Callable

from bench.framing import _LOCATOR, _Locator, _request

Step = Callable[[], None]


def gridreg_loop() -> tuple[socket.socket, bytes, Step]:
    """A connected client, its request, and one main-loop iteration of the reactor."""
    from gridreg.ice.server import IceServerFactory
    from gridreg.ice.servant import ObjectAdapter
    from gridreg.lean_reactor import LeanEPollReactor

    reactor = LeanEPollReactor()
    adapter = ObjectAdapter("Bench")
    adapter.add(_LOCATOR, _Locator())
    port = reactor.listenTCP(0, IceServerFactory(adapter, clock=reactor), interface="127.0.0.1")
    reactor.running = reactor._started = True
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while not select.select([client], [], [], 0)[0]:
        reactor.doIteration(0.01)  # the accept, then ValidateConnection
    client.recv(14)

    if "mainLoop" not in vars(LeanEPollReactor):  # an older tree: Twisted's main loop
        from twisted.internet.base import _topHandler

        def twisted_step() -> None:
            with _topHandler:
                reactor.runUntilCurrent()
                timeout = reactor.timeout()
                reactor.doIteration(reactor.running and timeout)

        return client, _request(1), twisted_step

    def step() -> None:
        # mainLoop's iteration, run once: the loop itself never returns
        if reactor.threadCallQueue or reactor._newTimedCalls or reactor._justStopped:
            reactor.runUntilCurrent()
            timeout = reactor.timeout()
        else:
            pending = reactor._pendingTimedCalls
            timeout = pending[0].time - reactor.seconds() if pending else None
            if timeout is not None and timeout <= 0:
                reactor.runUntilCurrent()
                timeout = reactor.timeout()
        reactor.doIteration(timeout)

    return client, _request(1), step


def floor_loop() -> tuple[socket.socket, bytes, Step]:
    """The same with C{bench.wakeup_floor}'s server loop."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server, _ = listener.accept()
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.setblocking(False)
    poller = select.epoll()
    poller.register(server.fileno(), select.EPOLLIN)
    message = b"x" * 60

    def step() -> None:
        for _fd, _event in poller.poll(-1):
            if server.recv(65536):
                server.send(message)

    return client, message, step


def run(round_trips: int, floor: bool) -> None:
    client, request, step = (floor_loop if floor else gridreg_loop)()
    send, recv = client.send, client.recv
    for _ in range(round_trips):
        send(request)
        step()
        recv(65536)


def instructions(round_trips: int, floor: bool) -> float:
    """User-space instructions per round trip, from two valgrind runs."""

    def total(n: int) -> int:
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
        command += ["--cachegrind-out-file=/dev/null", sys.executable, "-m", "bench.locate_path"]
        command += ["--run", str(n)] + (["--floor"] if floor else [])
        # a fixed hash seed: str hashes, and with them dict layouts and the
        # instructions per lookup, otherwise differ from one run to the next
        env = dict(os.environ, PYTHONHASHSEED="0")
        output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stderr
        [line] = [x for x in output.splitlines() if "I   refs:" in x or "I refs:" in x]
        return int(line.split(":")[1].replace(",", ""))

    return (total(3 * round_trips) - total(round_trips)) / (2 * round_trips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--run", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:
        return run(args.run, args.floor)
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind")
    floor = instructions(args.round_trips, True)
    gridreg = instructions(args.round_trips, False)
    print(f"bare epoll loop: {floor:7.0f} instructions per round trip (both sides)")
    print(f"gridreg:         {gridreg:7.0f} instructions per round trip (both sides)")
    print(f"gridreg's own:   {gridreg - floor:7.0f} more per cached locate")


if __name__ == "__main__":
    main()
