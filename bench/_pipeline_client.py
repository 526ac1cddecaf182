"""
A raw Ice protocol client that pipelines one captured request on one TCP
connection; run as its own process by C{bench/pipeline.py}.

It is a plain blocking-socket loop, deliberately: it sends the captured
C{findAdapterById("HelloAdapter")} request bytes (request id patched, so
every request is distinct), keeps C{--in-flight} of them outstanding, and
sends as many new ones as replies came back in each read. Replies are only
framed and their status checked, never decoded, so the client costs far
less per request than any registry and is not what is being measured.

Prints one JSON line: C{count} (replies received in the measured window),
C{rate}, C{errors} (replies whose status is not Success), and the client's
own CPU time over the window.

    python bench/_pipeline_client.py --port PORT --hex REQUEST_HEX
        [--in-flight 64] [--duration 5] [--start-at EPOCH]
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import struct
import sys
import time

HEADER_SIZE = 14
VALIDATE_CONNECTION = 3
REPLY = 2

_size = struct.Struct("<i")
_request_id = struct.Struct("<i")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Requests:
    """Copies of one captured request, each with the next request id."""

    def __init__(self, template: bytes) -> None:
        self.template = template
        self.next_id = 1

    def make(self, count: int) -> bytes:
        size = len(self.template)
        batch = bytearray(self.template * count)
        pack_into = _request_id.pack_into
        request_id = self.next_id
        for offset in range(0, size * count, size):
            pack_into(batch, offset + 14, request_id)
            request_id = request_id + 1 if request_id < 0x7FFFFFFF else 1
        self.next_id = request_id
        return bytes(batch)


def read_exactly(sock: socket.socket, size: int, closed: str) -> bytes:
    """
    C{size} bytes from a blocking C{sock}.

    @raise ConnectionError: saying C{closed}, if the peer closes first.
    """
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(closed)
        data += chunk
    return data


def read_validation(sock: socket.socket) -> None:
    try:
        data = read_exactly(sock, HEADER_SIZE, "connection closed before ValidateConnection")
    except ConnectionError as e:
        raise SystemExit(str(e)) from None
    if data[:4] != b"IceP" or data[8] != VALIDATE_CONNECTION:
        raise SystemExit(f"expected ValidateConnection, got {data.hex()}")


def pipeline(
    sock: socket.socket, template: bytes, in_flight: int, start_at: float, duration: float
) -> dict[str, object]:
    requests = Requests(template)
    deadline = start_at + duration
    outstanding = in_flight
    sock.sendall(requests.make(in_flight))
    buffer = bytearray()
    counted = errors = 0
    window_cpu: list[float] = []
    window_wall: list[float] = []
    unpack_size = _size.unpack_from
    sending = True
    while outstanding:
        data = sock.recv(1 << 18)
        if not data:
            raise SystemExit("the registry closed the connection")
        buffer += data
        pos, end, replies, failed = 0, len(buffer), 0, 0
        while end - pos >= HEADER_SIZE:
            (size,) = unpack_size(buffer, pos + 10)
            if end - pos < size:
                break
            if buffer[pos + 8] == REPLY:
                replies += 1
                if buffer[pos + 18] != 0:
                    failed += 1
            pos += size
        del buffer[:pos]
        outstanding -= replies
        now = time.time()
        if not window_wall and now >= start_at:
            window_wall.append(now)
            window_cpu.append(cpu_seconds())
        if window_wall and now < deadline:
            counted += replies
            errors += failed
        if sending and now >= deadline:
            sending = False
            window_wall.append(now)
            window_cpu.append(cpu_seconds())
        if sending and replies:
            sock.sendall(requests.make(replies))
            outstanding += replies
    wall = window_wall[1] - window_wall[0] if len(window_wall) == 2 else 0.0
    cpu = window_cpu[1] - window_cpu[0] if len(window_cpu) == 2 else 0.0
    return {
        "count": counted,
        "errors": errors,
        "duration_s": wall,
        "rate": counted / wall if wall > 0 else None,
        "client_cpu_s": cpu,
        "client_cores": cpu / wall if wall > 0 else None,
        "in_flight": in_flight,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="pipeline one captured Ice request")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hex", required=True, help="the captured request message, in hex")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--start-at", type=float, default=None, help="wall-clock window start")
    args = parser.parse_args(argv)
    template = bytes.fromhex(args.hex)
    start_at = args.start_at if args.start_at is not None else time.time() + 1.0
    with socket.create_connection((args.host, args.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        read_validation(sock)
        result = pipeline(sock, template, args.in_flight, start_at, args.duration)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
