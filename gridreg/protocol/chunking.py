# -*- test-case-name: tests.test_chunking -*-
"""
Blobs larger than an AMP value, sent in chunks over an internal connection.

AMP limits a value to 65,535 bytes, and the registry's blobs grow with the
grid: a snapshot for a fresh slave, a change carrying a large application
descriptor, a descriptor uploaded by C{gridadmin}. All of them travel the
same way:

  1. L{BeginTransfer} announces a transfer's id, size and SHA-256;
  2. L{TransferChunk} carries its bytes in order, at most L{CHUNK_SIZE}
     at a time, with a few chunks unacknowledged at once (the window is
     the sender's back-pressure);
  3. the command that uses the blob names the transfer (C{InstallSnapshot},
     C{PushChanges}, C{AdminApplicationAdd}); its responder takes the bytes
     from the connection's L{TransferReceiver}, which checks that they are
     complete and match the announced hash.

A receiver bounds what a peer may make it hold: the bytes of every transfer
announced and not yet taken, and the number of such transfers.

A stream (a snapshot for a fresh slave) is not held at all: its size is
not known when it starts, so its chunks go, in order, to a consumer the
receiving side registered (L{TransferReceiver.begin_stream}); a chunk is
acknowledged once the consumer has taken it, which bounds what is queued
there, and the size and SHA-256 arrive with the command that ends it
(L{send_stream}, L{TransferReceiver.end_stream}).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from typing import Any, Optional

import attrs

from twisted.internet.defer import Deferred
from twisted.protocols import amp

from gridreg.protocol.errors import NotAuthorizedError, NotMasterError, TransferError

#: the most bytes in one chunk, well below AMP's 65,535 per value
CHUNK_SIZE = 60_000
#: chunks a sender keeps unacknowledged at once
WINDOW = 16

_ERRORS = {
    TransferError: b"TRANSFER_ERROR",
    NotMasterError: b"NOT_MASTER",
    NotAuthorizedError: b"NOT_AUTHORIZED",
}


class BeginTransfer(amp.Command):
    """A blob of C{size} bytes whose SHA-256 is C{sha256} follows as C{transfer}."""

    arguments = [
        (b"transfer", amp.Unicode()),
        (b"size", amp.Integer()),
        (b"sha256", amp.Unicode()),
    ]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


class TransferChunk(amp.Command):
    """Chunk C{seq} (from 0, in order) of C{transfer}."""

    arguments = [(b"transfer", amp.Unicode()), (b"seq", amp.Integer()), (b"data", amp.String())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _ERRORS


class BigBytes(amp.Argument):
    """
    Bytes of up to C{max_size}, spread over as many AMP values as they need
    (C{name} holds the count, C{name.0}, C{name.1}, ... the parts): for a
    value that is small as a rule but has no bound of its own, such as the
    reply to an Ice request a router forwards. Blobs use transfers instead.
    """

    def __init__(self, max_size: int = 4 * 1024**2) -> None:
        super().__init__()
        self.max_size = max_size

    def toBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        value = bytes(self.retrieve(objects, name.decode("ascii"), proto))
        if len(value) > self.max_size:
            raise ValueError(f"{len(value)} bytes is more than {self.max_size}")
        parts = [value[i : i + CHUNK_SIZE] for i in range(0, len(value), CHUNK_SIZE)] or [b""]
        strings[name] = str(len(parts)).encode("ascii")
        for i, part in enumerate(parts):
            strings[name + b"." + str(i).encode("ascii")] = part

    def fromBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        count = int(self.retrieve(strings, name, proto))
        if not 0 < count <= self.max_size // CHUNK_SIZE + 1:
            raise ValueError(f"{count} parts")
        parts = [
            self.retrieve(strings, name + b"." + str(i).encode("ascii"), proto)
            for i in range(count)
        ]
        objects[name.decode("ascii")] = b"".join(parts)


#: takes a stream's next chunk; the chunk is acknowledged when this fires
Consumer = Callable[[bytes], "Deferred[None]"]


@attrs.define
class _Stream:
    consume: Consumer
    sha256: Any = attrs.Factory(hashlib.sha256)
    received: int = 0
    chunks: int = 0


@attrs.define
class _Incoming:
    size: int
    sha256: str
    chunks: list[bytes] = attrs.Factory(list)
    received: int = 0


class TransferReceiver:
    """
    The transfers one connection has announced and not yet used.

    @ivar max_bytes: the most bytes all pending transfers may announce together.
    @ivar max_transfers: the most transfers pending at once.
    """

    def __init__(self, max_bytes: int, max_transfers: int = 16) -> None:
        self.max_bytes = max_bytes
        self.max_transfers = max_transfers
        self._pending: dict[str, _Incoming] = {}
        self._streams: dict[str, _Stream] = {}
        self._reserved = 0

    @property
    def reserved(self) -> int:
        """The bytes announced by the transfers in progress."""
        return self._reserved

    def begin(self, transfer: str, size: int, sha256: str) -> None:
        """
        @raise TransferError: the id is in use, the size is negative, or the
            transfer would exceed this receiver's bounds.
        """
        if transfer in self._pending:
            self.discard(transfer)
            raise TransferError(f"transfer `{transfer}' was already begun")
        if size < 0:
            raise TransferError(f"transfer `{transfer}': invalid size {size}")
        if len(self._pending) >= self.max_transfers:
            raise TransferError(
                f"too many transfers in progress (at most {self.max_transfers} at once)"
            )
        if self._reserved + size > self.max_bytes:
            raise TransferError(
                f"transfer `{transfer}' of {size} bytes exceeds the {self.max_bytes} bytes "
                f"this connection may have in transit ({self._reserved} in use)"
            )
        self._pending[transfer] = _Incoming(size, sha256)
        self._reserved += size

    def begin_stream(self, transfer: str, consume: Consumer) -> None:
        """
        Chunks of C{transfer} go to C{consume}, in order, as they arrive.

        @raise TransferError: the id is in use, or too many transfers are open.
        """
        if transfer in self._pending or transfer in self._streams:
            raise TransferError(f"transfer `{transfer}' was already begun")
        if len(self._pending) + len(self._streams) >= self.max_transfers:
            raise TransferError(
                f"too many transfers in progress (at most {self.max_transfers} at once)"
            )
        self._streams[transfer] = _Stream(consume)

    def end_stream(self, transfer: str, size: int, sha256: str) -> None:
        """
        Forget stream C{transfer}, checking that its consumer was handed
        exactly C{size} bytes matching C{sha256}.

        @raise TransferError: unknown, or not what the sender sent.
        """
        stream = self._streams.pop(transfer, None)
        if stream is None:
            raise TransferError(f"unknown transfer `{transfer}'")
        if stream.received != size:
            raise TransferError(
                f"transfer `{transfer}' is incomplete: {stream.received} of {size} bytes"
            )
        if stream.sha256.hexdigest() != sha256:
            raise TransferError(f"transfer `{transfer}' does not match its SHA-256")

    def chunk(self, transfer: str, seq: int, data: bytes) -> Optional[Deferred[None]]:
        """
        Take a chunk; for a stream, fires once its consumer has taken it.

        @raise TransferError: unknown transfer, a chunk out of order, or
            more bytes than announced; the transfer is then abandoned.
        """
        stream = self._streams.get(transfer)
        if stream is not None:
            if seq != stream.chunks:
                del self._streams[transfer]
                raise TransferError(
                    f"chunk {seq} of transfer `{transfer}' is out of order: "
                    f"expected {stream.chunks}"
                )
            stream.chunks += 1
            stream.received += len(data)
            stream.sha256.update(data)
            return stream.consume(data)
        incoming = self._pending.get(transfer)
        if incoming is None:
            raise TransferError(f"unknown transfer `{transfer}'")
        if seq != len(incoming.chunks):
            self.discard(transfer)
            raise TransferError(
                f"chunk {seq} of transfer `{transfer}' is out of order: "
                f"expected {len(incoming.chunks)}"
            )
        if incoming.received + len(data) > incoming.size:
            self.discard(transfer)
            raise TransferError(f"transfer `{transfer}' is larger than the announced size")
        incoming.chunks.append(data)
        incoming.received += len(data)
        return None

    def take(self, transfer: str) -> bytes:
        """
        The complete blob of C{transfer}, which is then forgotten.

        @raise TransferError: unknown, incomplete, or not matching its hash.
        """
        incoming = self.discard(transfer)
        if incoming is None:
            raise TransferError(f"unknown transfer `{transfer}'")
        data = b"".join(incoming.chunks)
        if len(data) != incoming.size:
            raise TransferError(
                f"transfer `{transfer}' is incomplete: {len(data)} of {incoming.size} bytes"
            )
        if hashlib.sha256(data).hexdigest() != incoming.sha256:
            raise TransferError(f"transfer `{transfer}' does not match its SHA-256")
        return data

    def discard(self, transfer: str) -> Optional[_Incoming]:
        """Forget C{transfer}; returns what had arrived of it, if anything."""
        incoming = self._pending.pop(transfer, None)
        if incoming is not None:
            self._reserved -= incoming.size
        return incoming

    def clear(self) -> None:
        """Forget every transfer (the connection is gone)."""
        self._pending.clear()
        self._streams.clear()
        self._reserved = 0


class TransferResponder(amp.CommandLocator):
    """
    The responders of the transfer commands, mixed into an AMP protocol
    that sets C{self.transfers}; C{check_transfer_allowed} may refuse.
    """

    transfers: TransferReceiver

    def check_transfer_allowed(self) -> None:
        """Raise a declared error if this peer may not send blobs now."""

    @BeginTransfer.responder
    def _begin_transfer(self, transfer: str, size: int, sha256: str) -> dict[str, Any]:
        self.check_transfer_allowed()
        self.transfers.begin(transfer, size, sha256)
        return {}

    @TransferChunk.responder
    def _transfer_chunk(
        self, transfer: str, seq: int, data: bytes
    ) -> "dict[str, Any] | Deferred[dict[str, Any]]":
        taken = self.transfers.chunk(transfer, seq, data)
        if taken is None:
            return {}
        return taken.addCallback(lambda _: {})


Call = Callable[..., "Deferred[dict[str, Any]]"]

_ids = itertools.count(1)


def new_transfer_id(prefix: str) -> str:
    """An id unique within this process, which is all a connection needs."""
    return f"{prefix}-{next(_ids)}"


def send_blob(call: Call, transfer: str, data: bytes, window: int = WINDOW) -> Deferred[None]:
    """
    Send C{data} as C{transfer} with C{call(command, **arguments)} (a
    bounded C{callRemote}); fires once every chunk is acknowledged, fails
    with the first failure.
    """
    chunks = [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]
    done: Deferred[None] = Deferred()
    progress = {"next": 0, "outstanding": 0}

    def send_more(_: object = None) -> None:
        while progress["outstanding"] < window and progress["next"] < len(chunks):
            seq = progress["next"]
            progress["next"] += 1
            progress["outstanding"] += 1
            call(TransferChunk, transfer=transfer, seq=seq, data=chunks[seq]).addCallbacks(
                acked, failed
            )
        if progress["outstanding"] == 0 and not done.called:
            done.callback(None)

    def acked(_: object) -> None:
        progress["outstanding"] -= 1
        if not done.called:
            send_more()

    def failed(failure: Any) -> None:
        progress["outstanding"] -= 1
        if not done.called:
            done.errback(failure)

    begin = call(
        BeginTransfer, transfer=transfer, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    begin.addCallbacks(send_more, done.errback)
    return done


#: the next piece of a stream, or None at its end
Produce = Callable[[], "Deferred[Optional[bytes]]"]


def send_stream(
    call: Call, transfer: str, produce: Produce, window: int = WINDOW
) -> Deferred[tuple[int, str]]:
    """
    Send what C{produce} makes, one piece at a time, as stream C{transfer}
    (the receiver must have begun it): C{produce} is asked for more only
    while fewer than C{window} chunks are unacknowledged, so neither side
    holds more than that. Pieces are cut or joined into chunks of
    L{CHUNK_SIZE}; but while nothing is unacknowledged (the receiver has
    nothing to work on) what is ready goes at once, once it is as large
    as everything sent before it: the receiver starts on the first piece
    while the rest is made (a fresh slave decoded a 10,000-object
    snapshot only once the master had made all of it), and a stream still
    travels in few chunks, their size doubling up to L{CHUNK_SIZE}. Fires
    with the size and SHA-256 of everything sent, for the command that
    ends the stream; fails with the first failure.
    """
    done: Deferred[tuple[int, str]] = Deferred()
    digest = hashlib.sha256()
    buffer = bytearray()
    state = {"seq": 0, "outstanding": 0, "producing": False, "ended": False, "size": 0}
    pumping = [False]

    def pump(_: object = None) -> None:
        if pumping[0]:  # a synchronous producer or acknowledgement: the loop below goes on
            return
        pumping[0] = True
        try:
            fill()
        finally:
            pumping[0] = False

    def fill() -> None:
        while not done.called and state["outstanding"] < window:
            if (
                len(buffer) >= CHUNK_SIZE
                or (state["ended"] and buffer)
                or (buffer and state["outstanding"] == 0 and len(buffer) >= state["size"])
            ):
                piece = bytes(buffer[:CHUNK_SIZE])
                del buffer[:CHUNK_SIZE]
                send(piece)
            elif state["ended"]:
                if state["outstanding"] == 0:
                    done.callback((state["size"], digest.hexdigest()))
                return
            elif state["producing"]:
                return
            else:
                state["producing"] = True
                produce().addCallbacks(produced, fail)

    def produced(piece: Optional[bytes]) -> None:
        state["producing"] = False
        if piece is None:
            state["ended"] = True
        else:
            buffer.extend(piece)
        pump()

    def send(piece: bytes) -> None:
        seq = state["seq"]
        state["seq"] += 1
        state["outstanding"] += 1
        state["size"] += len(piece)
        digest.update(piece)
        call(TransferChunk, transfer=transfer, seq=seq, data=piece).addCallbacks(acked, fail)

    def acked(_: object) -> None:
        state["outstanding"] -= 1
        pump()

    def fail(failure: Any) -> None:
        if not done.called:
            done.errback(failure)

    pump()
    return done
