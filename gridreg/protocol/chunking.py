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

    def chunk(self, transfer: str, seq: int, data: bytes) -> None:
        """
        @raise TransferError: unknown transfer, a chunk out of order, or
            more bytes than announced; the transfer is then abandoned.
        """
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
    def _transfer_chunk(self, transfer: str, seq: int, data: bytes) -> dict[str, Any]:
        self.transfers.chunk(transfer, seq, data)
        return {}


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
