"""
The chunked channel that carries snapshots, large changes and uploaded
descriptors across AMP's 65,535-byte values.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from gridreg.protocol.chunking import (
    CHUNK_SIZE,
    BeginTransfer,
    TransferChunk,
    TransferReceiver,
    TransferResponder,
    send_blob,
    send_stream,
)
from gridreg.protocol.errors import TransferError


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ReceiverTests(SynchronousTestCase):
    def test_a_blob_arrives_whole(self) -> None:
        receiver = TransferReceiver(max_bytes=100)
        data = b"0123456789" * 5
        receiver.begin("t", len(data), digest(data))
        for seq, start in enumerate(range(0, len(data), 7)):
            receiver.chunk("t", seq, data[start : start + 7])
        self.assertEqual(receiver.take("t"), data)
        self.assertEqual(receiver.reserved, 0)
        with self.assertRaises(TransferError):
            receiver.take("t")

    def test_an_empty_blob(self) -> None:
        receiver = TransferReceiver(max_bytes=10)
        receiver.begin("t", 0, digest(b""))
        self.assertEqual(receiver.take("t"), b"")

    def test_hash_mismatch_is_refused(self) -> None:
        receiver = TransferReceiver(max_bytes=100)
        receiver.begin("t", 3, digest(b"abc"))
        receiver.chunk("t", 0, b"abd")
        with self.assertRaises(TransferError) as caught:
            receiver.take("t")
        self.assertIn("SHA-256", str(caught.exception))

    def test_incomplete_blob_is_refused(self) -> None:
        receiver = TransferReceiver(max_bytes=100)
        receiver.begin("t", 4, digest(b"abcd"))
        receiver.chunk("t", 0, b"abc")
        with self.assertRaises(TransferError) as caught:
            receiver.take("t")
        self.assertIn("3 of 4 bytes", str(caught.exception))

    def test_more_than_announced_abandons_the_transfer(self) -> None:
        receiver = TransferReceiver(max_bytes=100)
        receiver.begin("t", 2, digest(b"ab"))
        with self.assertRaises(TransferError):
            receiver.chunk("t", 0, b"abc")
        self.assertEqual(receiver.reserved, 0)
        with self.assertRaises(TransferError):
            receiver.take("t")

    def test_out_of_order_abandons_the_transfer(self) -> None:
        receiver = TransferReceiver(max_bytes=100)
        receiver.begin("t", 4, digest(b"abcd"))
        receiver.chunk("t", 0, b"ab")
        with self.assertRaises(TransferError) as caught:
            receiver.chunk("t", 0, b"cd")
        self.assertIn("expected 1", str(caught.exception))
        with self.assertRaises(TransferError):
            receiver.chunk("t", 1, b"cd")

    def test_bounds_on_bytes_and_transfers(self) -> None:
        receiver = TransferReceiver(max_bytes=10, max_transfers=2)
        receiver.begin("a", 6, "")
        with self.assertRaises(TransferError) as caught:
            receiver.begin("b", 5, "")
        self.assertIn("exceeds the 10 bytes", str(caught.exception))
        receiver.begin("b", 4, "")
        with self.assertRaises(TransferError) as caught:
            receiver.begin("c", 0, "")
        self.assertIn("at most 2", str(caught.exception))
        receiver.discard("a")
        receiver.begin("c", 6, "")
        self.assertEqual(receiver.reserved, 10)
        receiver.clear()
        self.assertEqual(receiver.reserved, 0)

    def test_a_reused_id_is_refused_and_forgotten(self) -> None:
        receiver = TransferReceiver(max_bytes=10)
        receiver.begin("a", 6, "")
        with self.assertRaises(TransferError):
            receiver.begin("a", 1, "")
        self.assertEqual(receiver.reserved, 0)

    def test_negative_size_is_refused(self) -> None:
        with self.assertRaises(TransferError):
            TransferReceiver(max_bytes=10).begin("a", -1, "")


class _Receiving(TransferResponder, amp.AMP):
    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.transfers = TransferReceiver(max_bytes)


class SendBlobTests(SynchronousTestCase):
    def connect(self, max_bytes: int = 10**7) -> tuple[amp.AMP, _Receiving, Any]:
        clock = Clock()
        client, server, pump = connectedServerAndClient(
            lambda: _Receiving(max_bytes), amp.AMP, clock=clock
        )
        return client, server, pump

    def test_large_blob_crosses_amp(self) -> None:
        """A blob many times AMP's value limit arrives intact."""
        client, server, pump = self.connect()
        data = bytes(range(256)) * 1000  # 256,000 bytes: five chunks
        d = send_blob(client.callRemote, "t", data)
        pump.flush()
        self.successResultOf(d)
        self.assertEqual(server.transfers.take("t"), data)

    def test_window_bounds_chunks_in_flight(self) -> None:
        calls: list[tuple[type[amp.Command], dict[str, Any]]] = []
        answers: list[Deferred[dict[str, Any]]] = []

        def call(command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
            calls.append((command, kwargs))
            if command is BeginTransfer:
                return succeed({})
            answers.append(Deferred())
            return answers[-1]

        data = b"x" * (CHUNK_SIZE * 5)
        d = send_blob(call, "t", data, window=2)
        self.assertEqual([c for c, _ in calls], [BeginTransfer, TransferChunk, TransferChunk])
        self.assertEqual(calls[0][1]["size"], len(data))
        self.assertEqual(calls[0][1]["sha256"], digest(data))
        answers[0].callback({})
        self.assertEqual(len(calls), 4, "one acknowledgement lets one more chunk go")
        while not d.called:
            in_flight = [a for a in answers if not a.called]
            self.assertLessEqual(len(in_flight), 2)
            in_flight[0].callback({})
        self.successResultOf(d)
        self.assertEqual([kw["seq"] for _, kw in calls[1:]], [0, 1, 2, 3, 4])

    def test_refused_begin_fails_the_send(self) -> None:
        client, _, pump = self.connect(max_bytes=10)
        d = send_blob(client.callRemote, "t", b"x" * 11)
        pump.flush()
        self.assertIn("exceeds", self.failureResultOf(d, TransferError).getErrorMessage())

    def test_failed_chunk_fails_the_send_once(self) -> None:
        def call(command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
            if command is TransferChunk:
                return fail(TransferError(f"chunk {kwargs['seq']} refused"))
            return succeed({})

        d = send_blob(call, "t", b"x" * (CHUNK_SIZE * 3))
        self.assertEqual(
            self.failureResultOf(d, TransferError).getErrorMessage(), "chunk 0 refused"
        )

    def test_empty_blob_sends_no_chunk(self) -> None:
        client, server, pump = self.connect()
        d = send_blob(client.callRemote, "t", b"")
        pump.flush()
        self.successResultOf(d)
        self.assertEqual(server.transfers.take("t"), b"")


class StreamTests(SynchronousTestCase):
    """Streams: chunks go to a consumer as they arrive, acknowledged once it took them."""

    def connect(self) -> tuple[amp.AMP, _Receiving, Any]:
        return connectedServerAndClient(lambda: _Receiving(10), amp.AMP, clock=Clock())

    def producer(self, pieces: list[bytes]) -> Any:
        queue = list(pieces)
        asked: list[int] = []

        def produce() -> Deferred[Any]:
            asked.append(1)
            return succeed(queue.pop(0) if queue else None)

        produce.asked = asked  # type: ignore[attr-defined]
        return produce

    def test_a_stream_larger_than_the_receivers_bound_crosses_amp(self) -> None:
        """Nothing is held by the channel: the consumer gets each chunk, in order."""
        client, server, pump = self.connect()
        taken: list[bytes] = []
        server.transfers.begin_stream("s", lambda data: succeed(taken.append(data)))
        pieces = [bytes([i]) * 25_000 for i in range(9)]  # joined into chunks of CHUNK_SIZE
        d = send_stream(client.callRemote, "s", self.producer(pieces))
        pump.flush()
        size, sha256 = self.successResultOf(d)
        whole = b"".join(pieces)
        self.assertEqual((size, sha256), (len(whole), digest(whole)))
        self.assertEqual(b"".join(taken), whole)
        self.assertTrue(all(len(t) <= CHUNK_SIZE for t in taken))
        server.transfers.end_stream("s", size, sha256)

    def test_the_consumer_paces_the_sender(self) -> None:
        """Unacknowledged chunks stay within the window; the producer is asked only for room."""
        client, server, pump = self.connect()
        pending: list[Deferred[None]] = []

        def consume(data: bytes) -> Deferred[None]:
            pending.append(Deferred())
            return pending[-1]

        server.transfers.begin_stream("s", consume)
        produce = self.producer([b"x" * CHUNK_SIZE] * 20)
        d = send_stream(client.callRemote, "s", produce, window=3)
        pump.flush()
        self.assertEqual(len(pending), 3)
        self.assertLessEqual(len(produce.asked), 4)
        while not d.called:
            waiting = [p for p in pending if not p.called]
            self.assertLessEqual(len(waiting), 3)
            waiting[0].callback(None)
            pump.flush()
        self.assertEqual(self.successResultOf(d)[0], 20 * CHUNK_SIZE)

    def test_an_idle_receiver_gets_the_first_piece_before_the_rest_is_made(self) -> None:
        """
        While nothing is unacknowledged, what is ready goes at once (the
        receiver starts on it while the rest is made); later pieces are
        joined, no chunk smaller than everything sent before it, so a
        stream still travels in few chunks.
        """
        client, server, pump = self.connect()
        taken: list[bytes] = []
        server.transfers.begin_stream("s", lambda data: succeed(taken.append(data)))
        making: list[Deferred[Any]] = []

        def produce() -> Deferred[Any]:
            making.append(Deferred())
            return making[-1]

        d = send_stream(client.callRemote, "s", produce)
        pieces = [bytes([i]) * 1000 for i in range(40)]
        making[-1].callback(pieces[0])
        pump.flush()
        self.assertEqual(taken, [pieces[0]])  # sent, taken and acknowledged
        for piece in pieces[1:]:
            making[-1].callback(piece)
        making[-1].callback(None)
        pump.flush()
        size, sha256 = self.successResultOf(d)
        whole = b"".join(pieces)
        self.assertEqual((size, sha256), (len(whole), digest(whole)))
        self.assertEqual(b"".join(taken), whole)
        for index in range(1, len(taken) - 1):  # the last one is what was left
            self.assertGreaterEqual(len(taken[index]), len(b"".join(taken[:index])))
        self.assertLess(len(taken), 8)

    def test_a_stream_not_as_sent_is_refused_at_its_end(self) -> None:
        receiver = TransferReceiver(max_bytes=10)
        receiver.begin_stream("s", lambda data: succeed(None))
        receiver.chunk("s", 0, b"abc")
        with self.assertRaises(TransferError) as caught:
            receiver.end_stream("s", 3, digest(b"abd"))
        self.assertIn("SHA-256", str(caught.exception))
        receiver.begin_stream("t", lambda data: succeed(None))
        receiver.chunk("t", 0, b"abc")
        with self.assertRaises(TransferError) as caught:
            receiver.end_stream("t", 4, digest(b"abcd"))
        self.assertIn("incomplete", str(caught.exception))

    def test_a_stream_chunk_out_of_order_abandons_it(self) -> None:
        receiver = TransferReceiver(max_bytes=10)
        receiver.begin_stream("s", lambda data: succeed(None))
        with self.assertRaises(TransferError):
            receiver.chunk("s", 1, b"abc")
        with self.assertRaises(TransferError):
            receiver.end_stream("s", 0, digest(b""))

    def test_a_failed_consumer_fails_the_send(self) -> None:
        client, server, pump = self.connect()
        server.transfers.begin_stream("s", lambda data: fail(TransferError("disk full")))
        d = send_stream(client.callRemote, "s", self.producer([b"x" * 10]))
        pump.flush()
        self.assertIn("disk full", self.failureResultOf(d, TransferError).getErrorMessage())
