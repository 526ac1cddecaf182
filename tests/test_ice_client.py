# -*- test-case-name: tests.test_ice_client -*-
"""
The client side of an Ice connection: replies framed from any segmentation,
in linear time and bounded memory, and oversize replies refused.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.client import IceClientProtocol
from gridreg.ice.encoding import OutputStream
from gridreg.ice.messages import VALIDATE_CONNECTION, ProtocolError, reply_message, success_body
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode


def string_reply(request_id: int, text: str) -> bytes:
    out = OutputStream(ENCODING_1_1)
    out.write_string(text)
    return reply_message(request_id, success_body(ENCODING_1_1, out.getvalue()))


class ClientFramingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.protocol = IceClientProtocol(Clock(), max_message_size=1 << 20)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(VALIDATE_CONNECTION)

    def call(self):  # type: ignore[no-untyped-def]
        return self.protocol.call(Identity("x"), "op", OperationMode.NORMAL)

    def test_large_reply_byte_by_byte(self) -> None:
        """A 200 KB reply fed one byte at a time arrives whole; only it is ever buffered."""
        d = self.call()
        data = string_reply(1, "r" * 200_000)
        largest = 0
        for i in range(len(data)):
            self.protocol.dataReceived(data[i : i + 1])
            largest = max(largest, len(self.protocol._buffer))
        self.assertLess(largest, len(data))
        self.assertEqual(self.successResultOf(d).read_string(), "r" * 200_000)
        self.assertEqual(len(self.protocol._buffer), 0)

    def test_replies_across_segments(self) -> None:
        first, second = self.call(), self.call()
        data = string_reply(2, "b") + string_reply(1, "a")
        self.protocol.dataReceived(data[:5])
        self.protocol.dataReceived(data[5:30])
        self.protocol.dataReceived(data[30:])
        self.assertEqual(self.successResultOf(first).read_string(), "a")
        self.assertEqual(self.successResultOf(second).read_string(), "b")

    def test_oversize_reply_refused_from_its_header(self) -> None:
        d = self.call()
        header = string_reply(1, "x")[:10] + (2 << 20).to_bytes(4, "little")
        self.protocol.dataReceived(header[:13])
        self.assertFalse(self.transport.disconnecting)
        self.protocol.dataReceived(header[13:])
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(None)  # type: ignore[arg-type]
        self.failureResultOf(d, ProtocolError)
