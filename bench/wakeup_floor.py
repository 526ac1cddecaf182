"""
What any server pays per round trip on this machine, before it does any
work: a bare epoll loop answering one small message per wake-up, with its
client on the same CPU and on the other one.

A locate with one request in flight (C{bench.locate} 1 x 1) is such a round
trip: the registry wakes in C{epoll_wait}, reads the request, writes the
reply, and sleeps again. On loopback the writer's C{send} also runs the
peer's TCP receive and wakes the peer; when the peer sleeps on the other
CPU, that wake-up is an inter-processor interrupt, and in a virtual machine
without guest halt-polling (here C{guest_halt_poll_ns} is 0) it is a trip
through the hypervisor, paid by the sender. This script measures that
floor with a few lines of Python (no Twisted, no Ice), so a registry's CPU
per locate at 1 x 1 can be read against it.

    python -m bench.wakeup_floor [--round-trips 40000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import time

_MESSAGE = b"x" * 60  # about a findAdapterById request or reply


def serve(cpu: int) -> None:
    """Answer every read with one message; at EOF print CPU, user, system us per round trip."""
    os.sched_setaffinity(0, {cpu})
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    connection, _ = listener.accept()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.setblocking(False)
    poller = select.epoll()
    poller.register(connection.fileno(), select.EPOLLIN)
    start, answered = os.times(), 0
    while True:
        for _fd, _event in poller.poll(-1):
            if not connection.recv(65536):
                end = os.times()
                user, system = end.user - start.user, end.system - start.system
                per = 1e6 / max(answered, 1)
                print(
                    f"{(user + system) * per:.1f} {user * per:.1f} {system * per:.1f}", flush=True
                )
                return
            answered += 1
            connection.send(_MESSAGE)


def call(cpu: int, port: int, round_trips: int) -> None:
    """Send one message, wait for the answer, C{round_trips} times; print the rate."""
    os.sched_setaffinity(0, {cpu})
    client = socket.create_connection(("127.0.0.1", port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    began = time.perf_counter()
    for _ in range(round_trips):
        client.send(_MESSAGE)
        client.recv(65536)
    print(f"{round_trips / (time.perf_counter() - began):.0f}", flush=True)
    client.close()


def measure(server_cpu: int, client_cpu: int, round_trips: int) -> tuple[float, float]:
    """Server CPU us per round trip and round trips per second."""
    cpu, _user, _system, rate = measure_split(server_cpu, client_cpu, round_trips)
    return cpu, rate


def measure_split(
    server_cpu: int, client_cpu: int, round_trips: int
) -> tuple[float, float, float, float]:
    """Server CPU, user and system us per round trip, and round trips per second."""
    me = [sys.executable, "-m", "bench.wakeup_floor"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where bench is
    server = subprocess.Popen(
        [*me, "--serve", str(server_cpu)], stdout=subprocess.PIPE, text=True, cwd=root
    )
    assert server.stdout is not None
    port = server.stdout.readline().strip()
    rate = subprocess.run(
        [*me, "--call", str(client_cpu), port, str(round_trips)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        cwd=root,
    ).stdout.strip()
    cpu, user, system = (float(v) for v in server.stdout.readline().split())
    server.wait()
    return cpu, user, system, float(rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=40000)
    parser.add_argument("--repeats", type=int, default=3, help="report the median")
    parser.add_argument("--serve", type=int, metavar="CPU", help=argparse.SUPPRESS)
    parser.add_argument("--call", nargs=3, type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve)
    if args.call is not None:
        return call(*args.call)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two CPUs")
    for label, cpus in (("same CPU", (0, 0)), ("other CPU", (1, 0))):
        runs = sorted(measure_split(*cpus, args.round_trips) for _ in range(args.repeats))
        cpu, user, system, rate = runs[len(runs) // 2]
        print(
            f"client on the {label:9}: server {cpu:5.1f} us CPU per round trip "
            f"(user {user:.1f}, system {system:.1f}), "
            f"{rate:7.0f} round trips/s (median of {args.repeats})"
        )


if __name__ == "__main__":
    main()
