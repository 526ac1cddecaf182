"""
What gridreg's own Python costs per cached request on one connection, with
no sockets, no reactor and no other process: C{IceServerProtocol.dataReceived}
answering repeats from the reply cache, as it does for locates.

The registry's CPU per locate (C{bench.locate}) is mostly system calls and
Twisted's per-event dispatch; this isolates the part gridreg's framing and
reply cache add, so a change to it can be judged on a shared machine, where
C{bench.locate}'s figures move by more than such a change.
"""

from __future__ import annotations

import argparse
import timeit

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import Request, encode_request
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.server import IceServerFactory
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode

_LOCATOR = Identity("Locator", "DemoIceGrid")


class _Locator(Servant):
    """A stand-in answering C{findAdapterById} with a fixed, cacheable body."""

    type_id = "::Ice::Locator"

    @operation("findAdapterById", idempotent=True, cacheable=True)
    def find(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_string("HelloAdapter -t -e 1.1:tcp -h 127.0.0.1 -p 10000 -t 60000")
        return out.getvalue()


def _request(request_id: int) -> bytes:
    out = OutputStream(ENCODING_1_1)
    out.write_string("HelloAdapter")
    return encode_request(
        Request(
            request_id,
            _LOCATOR,
            "",
            "findAdapterById",
            OperationMode.NONMUTATING,
            {},
            ENCODING_1_1,
            out.getvalue(),
        )
    )


def per_request_ns(per_read: int, reads: int, repeat: int) -> float:
    """Best of C{repeat}: nanoseconds per cached request, C{per_read} to a read."""
    adapter = ObjectAdapter("Bench")
    adapter.add(_LOCATOR, _Locator())
    protocol = IceServerFactory(adapter).buildProtocol(IPv4Address("TCP", "127.0.0.1", 0))
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    chunk = b"".join(_request(i + 1) for i in range(per_read))
    protocol.dataReceived(chunk)  # fills the cache

    def read() -> None:
        transport.clear()
        protocol.dataReceived(chunk)

    best = min(timeit.repeat(read, number=reads, repeat=repeat))
    return best / reads / per_read * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--reads", type=int, default=3000, help="reads per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings; the best is kept")
    args = parser.parse_args()
    for per_read in (1, 2, 16, 64):
        ns = per_request_ns(per_read, args.reads * max(1, 16 // per_read), args.repeat)
        print(f"{per_read:3} cached requests per read: {ns:6.0f} ns per request")


if __name__ == "__main__":
    main()
