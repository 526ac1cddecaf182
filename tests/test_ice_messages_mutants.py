"""
More tests for L{gridreg.ice.messages}, found by mutation testing: the
edges of every framing and decoding check (the largest or smallest value
accepted, the first refused), long and non-canonical sizes as Ice writes
them, and compression of every message type.
"""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice import messages
from gridreg.ice.encoding import MarshalError, OutputStream, encaps
from gridreg.ice.types import ENCODING_1_1, Identity, Version
from gridreg.ice.messages import (
    CLOSE_CONNECTION,
    HEADER_SIZE,
    MessageType,
    ProtocolError,
    Request,
    compress_message,
    decode_batch_request,
    decode_request,
    decompress_message,
    encode_batch_request,
    encode_request,
    reply_message,
    success_body,
)


def request(**fields: object) -> Request:
    values: dict = dict(
        request_id=7,
        identity=Identity("hello", "cat"),
        facet="",
        operation="ice_ping",
        mode=1,
        context={},
        encoding=ENCODING_1_1,
        params=b"",
    )
    values.update(fields)
    return Request(**values)


def body_of(message: bytes) -> bytes:
    return message[HEADER_SIZE:]


def raw_request(
    identity: bytes = b"\x05hello\x00",
    context: bytes = b"\x00",
    params_encaps: bytes = encaps(ENCODING_1_1, b""),
    trailing: bytes = b"",
) -> bytes:
    """A request body built field by field, so each can be malformed."""
    return (
        struct.pack("<i", 1)
        + identity
        + b"\x00"  # facet
        + b"\x08ice_ping"
        + b"\x01"  # mode
        + context
        + params_encaps
        + trailing
    )


def assert_marshal_error(testcase: SynchronousTestCase, body: bytes, fragment: str) -> None:
    with testcase.assertRaises(MarshalError) as raised:
        decode_request(body)
    testcase.assertIn(fragment, str(raised.exception))


class CompressionTests(SynchronousTestCase):
    def test_round_trip_keeps_the_message_type(self) -> None:
        """Compressing and decompressing a reply gives back the same reply, type included."""
        reply = reply_message(3, success_body(ENCODING_1_1, b"x" * 500))
        compressed = compress_message(reply)
        self.assertEqual(compressed[8], MessageType.REPLY)
        self.assertEqual(compressed[9], 2)
        self.assertEqual(decompress_message(compressed, 10000), reply)

    def test_empty_body(self) -> None:
        message = messages._header(MessageType.CLOSE_CONNECTION, 0, HEADER_SIZE)
        compressed = compress_message(CLOSE_CONNECTION)
        self.assertEqual(compressed[8], MessageType.CLOSE_CONNECTION)
        self.assertEqual(decompress_message(compressed, 1000), message)

    def test_limit_is_inclusive(self) -> None:
        """A message exactly as large as the limit is accepted, one byte more is not."""
        message = encode_request(request(params=b"p" * 300))
        compressed = compress_message(message)
        self.assertEqual(decompress_message(compressed, len(message)), message)
        self.assertRaises(ProtocolError, decompress_message, compressed, len(message) - 1)

    def test_missing_uncompressed_size(self) -> None:
        """A compressed message needs the 4-byte uncompressed size after its header."""
        header = messages._header(MessageType.REQUEST, 2, HEADER_SIZE)
        for extra in (b"", b"\x00", b"\x00\x00\x00"):
            with self.assertRaises(ProtocolError) as raised:
                decompress_message(header + extra, 1000)
            self.assertIn("without an uncompressed size", str(raised.exception))
        with self.assertRaises(ProtocolError) as raised:
            decompress_message(header + struct.pack("<i", HEADER_SIZE), 1000)
        self.assertNotIn("without an uncompressed size", str(raised.exception))

    def test_uncompressed_messages_unchanged(self) -> None:
        for compression in (0, 1):
            message = encode_request(request(), compression)
            self.assertIs(decompress_message(message, 1000), message)
        self.assertEqual(decompress_message(b"IceP", 1000), b"IceP")

    def test_compressed_request_and_batch(self) -> None:
        """Compression 2 frames a compressed body that decodes to the same requests."""
        one = request(params=b"a" * 200)
        message = decompress_message(encode_request(one, 2), 10000)
        self.assertEqual(message[8:10], bytes([MessageType.REQUEST, 0]))
        self.assertEqual(decode_request(body_of(message)), one)
        batch = [request(request_id=0, params=b"b" * 200)] * 2
        message = decompress_message(encode_batch_request(batch, 2), 10000)
        self.assertEqual(message[8:10], bytes([MessageType.BATCH_REQUEST, 0]))
        self.assertEqual(decode_batch_request(body_of(message)), batch)

    def test_batch_default_is_uncompressed(self) -> None:
        """By default a batch goes out as Ice sends it: compression byte 0."""
        message = encode_batch_request([request(request_id=0)])
        self.assertEqual(message[8:10], bytes([MessageType.BATCH_REQUEST, 0]))


class StringAndIdentityTests(SynchronousTestCase):
    def test_long_category_and_name(self) -> None:
        """Identities with parts of 255 bytes or more (written with C{FF} and a size) decode."""
        for identity in [
            Identity("n", "c" * 300),
            Identity("n" * 300, "c"),
            Identity("n" * 254, "c" * 254),
            Identity("n" * 255, "c" * 255),
            Identity("", "c" * 300),
        ]:
            decoded = decode_request(body_of(encode_request(request(identity=identity))))
            self.assertEqual(decoded.identity, identity)

    def test_long_operation(self) -> None:
        one = request(operation="o" * 1000)
        self.assertEqual(decode_request(body_of(encode_request(one))), one)

    def test_non_canonical_zero_size_string(self) -> None:
        """Ice accepts a size of 0 written as C{FF} and an int32; so do we."""
        body = raw_request(identity=b"\x05hello\xff\x00\x00\x00\x00")
        self.assertEqual(decode_request(body).identity, Identity("hello", ""))

    def test_negative_string_size(self) -> None:
        for size in (-1, -2):
            body = raw_request(identity=b"\x05hello\xff" + struct.pack("<i", size))
            assert_marshal_error(self, body, "negative string size")

    def test_string_beyond_the_body(self) -> None:
        body = raw_request()[:12] + b"\xc8abc"  # an operation name claiming 200 bytes
        assert_marshal_error(self, body, "string exceeds the message")

    def test_facet_sequence_of_two(self) -> None:
        """A facet is a sequence of at most one string; more is malformed, not a crash."""
        body = raw_request().replace(b"\x05hello\x00\x00", b"\x05hello\x00\x02\x01a\x01b", 1)
        assert_marshal_error(self, body, "facet sequence with 2 elements")

    def test_identity_cache_is_bounded(self) -> None:
        """Requests for ever new identities cannot grow the decoder's cache without bound."""
        self.addCleanup(messages._IDENTITY_CACHE.clear)
        for n in range(messages._IDENTITY_CACHE_LIMIT + 10):
            identity = Identity(f"object-{n}")
            decoded = decode_request(body_of(encode_request(request(identity=identity))))
            self.assertEqual(decoded.identity, identity)
            self.assertLessEqual(len(messages._IDENTITY_CACHE), messages._IDENTITY_CACHE_LIMIT)


class ContextTests(SynchronousTestCase):
    def test_large_contexts(self) -> None:
        """Contexts of 254, 255 and more entries (the count's two wire forms) decode."""
        for size in (254, 255, 300):
            context = {f"k{n}": "v" for n in range(size)}
            one = request(context=context)
            self.assertEqual(decode_request(body_of(encode_request(one))).context, context)

    def test_non_canonical_zero_context(self) -> None:
        body = raw_request(context=b"\xff\x00\x00\x00\x00")
        self.assertEqual(decode_request(body).context, {})

    def test_context_count_refused_before_reading(self) -> None:
        """A count the remaining bytes cannot hold is refused at once, by name."""
        for count in (5, 20, 1000, -1):
            body = raw_request(context=b"\xff" + struct.pack("<i", count))
            assert_marshal_error(self, body, f"bad context size {count}")
        body = raw_request(context=b"\x0a", params_encaps=b"")
        assert_marshal_error(self, body, "bad context size 10")


class ParameterTests(SynchronousTestCase):
    def test_encapsulation_smaller_than_its_header(self) -> None:
        for size in (0, 3, 5):
            body = raw_request(params_encaps=struct.pack("<iBB", size, 1, 1))
            assert_marshal_error(self, body, f"bad parameter encapsulation size {size}")
        empty = decode_request(raw_request(params_encaps=struct.pack("<iBB", 6, 1, 1)))
        self.assertEqual(empty.params, b"")

    def test_encoding_reported_as_sent(self) -> None:
        """The parameters' encoding is the one sent, so unsupported ones can be refused."""
        for version in (Version(1, 0), Version(1, 1), Version(1, 2), Version(2, 1), Version(0, 1)):
            body = raw_request(params_encaps=encaps(version, b"\x01"))
            decoded = decode_request(body)
            self.assertEqual((decoded.encoding, decoded.params), (version, b"\x01"))

    def test_trailing_bytes_counted(self) -> None:
        body = raw_request(trailing=b"\x00\x00")
        assert_marshal_error(self, body, "2 trailing bytes after the request")


class BatchTests(SynchronousTestCase):
    def smallest(self) -> bytes:
        """The smallest request a batch can hold: 12 bytes."""
        out = OutputStream()
        out.write_identity(Identity("", ""))
        out.write_facet("")
        out.write_string("")
        out.write_byte(0)
        out.write_string_dict({})
        out.write_encaps(ENCODING_1_1, b"")
        self.assertEqual(len(out.getvalue()), 12)
        return out.getvalue()

    def test_smallest_requests_fit(self) -> None:
        body = struct.pack("<i", 3) + self.smallest() * 3
        requests = decode_batch_request(body)
        self.assertEqual([r.identity for r in requests], [Identity("", "")] * 3)

    def test_count_refused_before_reading(self) -> None:
        for count, data in [(2, self.smallest()), (1, self.smallest()[:11]), (-1, b"")]:
            with self.assertRaises(MarshalError) as raised:
                decode_batch_request(struct.pack("<i", count) + data)
            self.assertIn(f"bad batch request count {count}", str(raised.exception))

    def test_truncated(self) -> None:
        """A batch cut short anywhere is malformed, including inside its count."""
        body = body_of(encode_batch_request([request(request_id=0)] * 2))
        for cut in (1, 3, len(body) - 5, len(body) - 1):
            with self.assertRaises(MarshalError) as raised:
                decode_batch_request(body[:cut])
            self.assertIn("malformed batch request", str(raised.exception))

    def test_trailing_bytes_counted(self) -> None:
        body = struct.pack("<i", 1) + self.smallest() + b"\x00\x00\x00"
        with self.assertRaises(MarshalError) as raised:
            decode_batch_request(body)
        self.assertIn("3 trailing bytes after the batch", str(raised.exception))


class RequestValueTests(SynchronousTestCase):
    def test_requests_are_hashable_values(self) -> None:
        """Equal requests are equal and hash alike, whatever their context."""
        a = request(context={"x": "1"})
        b = request(context={"x": "1"})
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertEqual(len({a, b}), 1)
