"""
A fresh real Ice 3.7 client's first call, for C{bench/activation.py}.

Run with the system Python that has the Ice binding, one process per
measurement, so nothing is cached::

    /usr/bin/python3 bench/ice_first_ping.py ping \\
        --locator "DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061" --proxy hello@HelloAdapter
    /usr/bin/python3 bench/ice_first_ping.py exec-probe \\
        --server bench/hello_node_server.py --count 7

C{ping} creates a communicator whose only locator is C{--locator}, then
times C{ice_ping} on C{--proxy} from just before the call to its return
(the locator lookup, which may activate a server through a node, the
connection to the server and the ping itself). It prints one JSON line:
C{{"command": "ping", "ok": ..., "t0", "t1"}} (C{time.monotonic()}, the
machine's C{CLOCK_MONOTONIC}, so they compare with the server's own
timestamps), C{"seconds"}, C{"cpu"} (this process's CPU seconds, start-up
and Ice initialisation included) and, on failure, the Ice exception.

C{exec-probe} measures what a node pays to exec the server before its
script runs: it spawns C{/usr/bin/python3 SERVER --startup-probe} (which
prints C{started <t>} before importing Ice) C{--count} times and prints
C{{"command": "exec-probe", "seconds": [...]}}, from just before each
spawn to the script's first line.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop")
)
from _iceutil import emit, error_result, make_communicator  # noqa: E402


def ping(args):
    import Ice

    communicator = make_communicator(Ice, args.locator, {"Ice.Default.Timeout": "30000"})
    try:
        proxy = communicator.stringToProxy(args.proxy)
        t0 = time.monotonic()
        try:
            proxy.ice_ping()
        except Ice.Exception as exc:
            t1 = time.monotonic()
            result = error_result(exc, command="ping")
        else:
            t1 = time.monotonic()
            result = {"command": "ping", "ok": True}
        result.update(t0=t0, t1=t1, seconds=t1 - t0, cpu=time.process_time())
        emit(result)
    finally:
        communicator.destroy()
    return 0 if result["ok"] else 1


def exec_probe(args):
    seconds = []
    for _ in range(args.count):
        before = time.monotonic()
        out = subprocess.run(
            [sys.executable, args.server, "--startup-probe"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        started = float(out.split()[1])
        seconds.append(started - before)
    emit({"command": "exec-probe", "ok": True, "seconds": seconds})
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("ping")
    one.add_argument("--locator", required=True)
    one.add_argument("--proxy", required=True)
    probe = commands.add_parser("exec-probe")
    probe.add_argument("--server", required=True)
    probe.add_argument("--count", type=int, default=7)
    args = parser.parse_args(argv)
    return ping(args) if args.command == "ping" else exec_probe(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
