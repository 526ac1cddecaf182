# -*- test-case-name: tests.test_chunking_defaults -*-
"""
The chunked channel's fixed sizes (L{gridreg.protocol.chunking}): chunks of
exactly 60,000 bytes, 16 chunks in flight, 16 transfers pending per
connection unless told otherwise.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from gridreg.protocol.chunking import (
    CHUNK_SIZE,
    BeginTransfer,
    TransferReceiver,
    new_transfer_id,
    send_blob,
)
from gridreg.protocol.errors import TransferError


class DefaultsTests(SynchronousTestCase):
    def test_chunks_are_sixty_thousand_bytes(self) -> None:
        self.assertEqual(CHUNK_SIZE, 60_000)
        sizes: list[int] = []

        def call(command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
            if command is not BeginTransfer:
                sizes.append(len(kwargs["data"]))
            return succeed({})

        self.successResultOf(send_blob(call, "t", b"x" * 120_001))
        self.assertEqual(sizes, [60_000, 60_000, 1])

    def test_sixteen_chunks_in_flight_by_default(self) -> None:
        pending: list[Deferred[dict[str, Any]]] = []

        def call(command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
            if command is BeginTransfer:
                return succeed({})
            pending.append(Deferred())
            return pending[-1]

        d = send_blob(call, "t", b"x" * (CHUNK_SIZE * 20))
        self.assertEqual(len(pending), 16)
        pending[0].callback({})
        self.assertEqual(len(pending), 17)
        while not d.called:
            next(p for p in pending if not p.called).callback({})
        self.assertEqual(len(pending), 20)

    def test_sixteen_transfers_pending_by_default(self) -> None:
        receiver = TransferReceiver(max_bytes=100)
        digest = hashlib.sha256(b"").hexdigest()
        for i in range(16):
            receiver.begin(f"t{i}", 0, digest)
        with self.assertRaises(TransferError) as caught:
            receiver.begin("t16", 0, digest)
        self.assertIn("at most 16 at once", str(caught.exception))

    def test_transfer_ids_are_unique(self) -> None:
        ids = {new_transfer_id("snapshot") for _ in range(100)}
        self.assertEqual(len(ids), 100)
        self.assertTrue(all(i.startswith("snapshot-") for i in ids))
