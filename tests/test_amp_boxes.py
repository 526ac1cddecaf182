# -*- test-case-name: tests.test_amp_boxes -*-
"""
L{FastBoxReader} reads what AMP's own reader reads: the same boxes, in the
same order, however the bytes are split, and refuses what AMP refuses.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from gridreg.protocol.boxes import FastBoxReader


class Recorder:
    """A box receiver that keeps what it is given."""

    def __init__(self) -> None:
        self.boxes: list[dict[bytes, bytes]] = []

    def startReceivingBoxes(self, sender: Any) -> None:
        pass

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        self.boxes.append(dict(box))

    def stopReceivingBoxes(self, reason: Any) -> None:
        pass


class FastReader(FastBoxReader, amp.BinaryBoxProtocol):
    pass


def reader(cls: type[amp.BinaryBoxProtocol]) -> tuple[amp.BinaryBoxProtocol, Recorder]:
    recorder = Recorder()
    protocol = cls(recorder)
    protocol.makeConnection(StringTransport())
    return protocol, recorder


BOXES = [
    {b"_ask": b"1", b"_command": b"PushChanges", b"changes": b"[]", b"transfer": b""},
    {b"_answer": b"1", b"serial": b"12"},
    {b"_command": b"Chunk", b"data": bytes(range(256)) * 2},
    {},
]
WIRE = b"".join(amp.AmpBox(box).serialize() for box in BOXES)


class FastBoxReaderTests(SynchronousTestCase):
    def read(self, cls: type[amp.BinaryBoxProtocol], pieces: list[bytes]) -> list[Any]:
        protocol, recorder = reader(cls)
        for piece in pieces:
            protocol.dataReceived(piece)
        return recorder.boxes

    def test_boxes_in_one_read(self) -> None:
        self.assertEqual(self.read(FastReader, [WIRE]), BOXES)

    def test_boxes_split_anywhere_read_as_amp_reads_them(self) -> None:
        for size in (1, 2, 3, 7, 100, 4096):
            pieces = [WIRE[i : i + size] for i in range(0, len(WIRE), size)]
            self.assertEqual(self.read(FastReader, pieces), BOXES, size)
            self.assertEqual(self.read(amp.BinaryBoxProtocol, pieces), BOXES, size)

    def test_each_box_is_an_amp_box_of_its_own(self) -> None:
        """Boxes made without AMP's constructor are still AMP's boxes, one per message."""
        protocol, _ = reader(FastReader)
        received: list[Any] = []
        protocol.boxReceiver.ampBoxReceived = received.append  # type: ignore[attr-defined]
        protocol.dataReceived(WIRE)
        self.assertEqual([type(b) for b in received], [amp.AmpBox] * len(BOXES))
        self.assertEqual(len({id(b) for b in received}), len(BOXES))
        self.assertEqual([dict(b) for b in received], BOXES)

    def test_a_partial_box_waits_for_the_rest(self) -> None:
        protocol, recorder = reader(FastReader)
        protocol.dataReceived(WIRE[:-1])
        self.assertEqual(recorder.boxes, BOXES[:-1])
        protocol.dataReceived(WIRE[-1:])
        self.assertEqual(recorder.boxes, BOXES)

    def test_a_value_of_the_largest_size(self) -> None:
        box = {b"_command": b"Chunk", b"data": bytes(range(256)) * 255 + b"x" * 255}
        wire = amp.AmpBox(box).serialize()
        pieces = [wire[i : i + 16384] for i in range(0, len(wire), 16384)]
        self.assertTrue(self.read(FastReader, pieces) == [box])

    def test_a_key_longer_than_amp_allows_closes_the_connection(self) -> None:
        protocol, recorder = reader(FastReader)
        protocol.dataReceived(b"\x01\x00" + b"k" * 256 + b"\x00\x01v\x00\x00")
        self.assertEqual(recorder.boxes, [])
        self.assertTrue(protocol.transport.disconnecting)

    def test_nothing_is_read_once_the_receiver_closed_the_connection(self) -> None:
        protocol, recorder = reader(FastReader)

        def close(box: amp.AmpBox) -> None:
            recorder.boxes.append(dict(box))
            protocol.transport = None

        recorder.ampBoxReceived = close  # type: ignore[method-assign]
        protocol.dataReceived(WIRE)
        self.assertEqual(recorder.boxes, BOXES[:1])
