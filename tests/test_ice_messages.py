# -*- test-case-name: tests.test_ice_messages -*-
"""
Tests for L{gridreg.ice.messages} and L{gridreg.ice.exceptions}: header
checks, compression limits, request and reply framing, user exception
marshaling and the mapping of replies to client errors.
"""

from __future__ import annotations

import bz2
import struct
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.encoding import MarshalError, OutputStream
from gridreg.ice.exceptions import (
    KNOWN_EXCEPTIONS,
    AccessDeniedException,
    AllocationException,
    BadSignalException,
    CannotCreateSessionException,
    FileNotAvailableException,
    Glacier2PermissionDeniedException,
    NodeNotExistException,
    NodeUnreachableException,
    ObserverAlreadyRegisteredException,
    RegistryNotExistException,
    RegistryUnreachableException,
    ServerStartException,
    ServerStopException,
    ServerUnreachableException,
    AdapterNotExistException,
    AdapterNotFoundException,
    ApplicationNotExistException,
    DeploymentException,
    FacetNotExistError,
    ObjectExistsException,
    ObjectNotExistError,
    ObjectNotRegisteredException,
    OperationNotExistError,
    PermissionDeniedException,
    RequestFailedError,
    ServerNotExistException,
    UnknownError,
    UnknownLocalError,
    UnknownUserError,
    UnknownUserException,
    UserException,
    decode_user_exception,
    encode_user_exception,
)
from gridreg.ice.messages import (
    CLOSE_CONNECTION,
    DECOMPRESSED_SIZE_CAP,
    HEADER_SIZE,
    MAGIC,
    VALIDATE_CONNECTION,
    Header,
    MessageBuffer,
    MessageType,
    ProtocolError,
    Reply,
    ReplyStatus,
    Request,
    compress_message,
    decode_batch_request,
    decode_reply,
    decode_request,
    decompress_message,
    encode_batch_request,
    encode_request,
    not_exist_body,
    parse_header,
    reply_error,
    reply_message,
    success_body,
    unknown_body,
    user_exception_body,
)
from gridreg.ice.types import ENCODING_1_0, ENCODING_1_1, Identity, Version

LOCATOR = Identity("Locator", "DemoIceGrid")


def header(mtype: int = 0, compression: int = 0, size: int = 14, **bad: Any) -> bytes:
    fields: dict[str, Any] = {"magic": MAGIC, "pmajor": 1, "emajor": 1}
    fields.update(bad)
    return struct.pack(
        "<4sBBBBBBi",
        fields["magic"],
        fields["pmajor"],
        0,
        fields["emajor"],
        0,
        mtype,
        compression,
        size,
    )


def a_request(**changes: Any) -> Request:
    request = Request(6, LOCATOR, "", "findAdapterById", 1, {}, ENCODING_1_1, b"\x0cHelloAdapter")
    return attrs.evolve(request, **changes)


# Vector 07's request, whole message.
FIND_ADAPTER_HEX = (
    "496365500100010000004c000000 06000000 074c6f6361746f72 0b44656d6f49636547726964"
    "00 0f66696e64416461707465724279496401 00 130000000101 0c48656c6c6f41646170746572"
)


class HexTestCase(SynchronousTestCase):
    def assertHex(self, data: bytes, expected: str, msg: object = None) -> None:
        """Compare C{data} with hex text in which spaces only separate fields."""
        self.assertEqual(data.hex(), expected.replace(" ", ""), msg)


class HeaderTests(HexTestCase):
    def test_constants(self) -> None:
        """ValidateConnection and CloseConnection as real Ice sends them."""
        self.assertHex(VALIDATE_CONNECTION, "4963655001000100 0300 0e000000")
        self.assertHex(CLOSE_CONNECTION, "4963655001000100 0401 0e000000")
        self.assertEqual(HEADER_SIZE, 14)

    def test_parse(self) -> None:
        self.assertEqual(parse_header(VALIDATE_CONNECTION), Header(3, 0, 14))
        self.assertEqual(
            parse_header(bytes.fromhex(FIND_ADAPTER_HEX), 1000), Header(MessageType.REQUEST, 0, 76)
        )

    def test_any_compression_value_accepted(self) -> None:
        """Ice only tests for 2, so the header does not reject other values."""
        self.assertEqual(parse_header(header(compression=7)).compression, 7)

    def test_rejections(self) -> None:
        for data in [
            header(magic=b"IceQ"),
            header(pmajor=2),
            header(emajor=0),
            header(mtype=5),
            header(size=13),
            header(size=-1),
        ]:
            self.assertRaises(ProtocolError, parse_header, data)

    def test_max_size(self) -> None:
        self.assertEqual(parse_header(header(size=100), 100).size, 100)
        self.assertRaises(ProtocolError, parse_header, header(size=101), 100)


class CompressionTests(HexTestCase):
    def test_round_trip(self) -> None:
        message = encode_request(a_request(params=b"\x85" + b"x" * 133))
        compressed = compress_message(message)
        self.assertEqual(parse_header(compressed).compression, 2)
        self.assertEqual(decompress_message(compressed, 1000), message)
        self.assertEqual(encode_request(a_request(params=b"\x85" + b"x" * 133), 2), compressed)

    def test_uncompressed_returned_unchanged(self) -> None:
        message = encode_request(a_request(), compression=1)
        self.assertEqual(message[9], 1)
        self.assertIs(decompress_message(message, 1000), message)

    def _compressed(self, body: bytes, declared: int) -> bytes:
        stream = bz2.compress(body)
        return header(0, 2, 18 + len(stream)) + struct.pack("<i", declared) + stream

    def test_declared_size_over_limit(self) -> None:
        """A bomb declaring its real size is refused before decompressing."""
        bomb = self._compressed(b"\0" * 10_000_000, 10_000_014)
        self.assertLess(len(bomb), 100)
        self.assertRaises(ProtocolError, decompress_message, bomb, 1 << 20)

    def test_stream_longer_than_declared(self) -> None:
        """A bomb lying about its size is cut off at the declared size."""
        bomb = self._compressed(b"\0" * 10_000_000, 114)
        self.assertRaises(ProtocolError, decompress_message, bomb, 1 << 20)

    def test_stream_shorter_than_declared(self) -> None:
        self.assertRaises(ProtocolError, decompress_message, self._compressed(b"ab", 17), 100)

    def test_truncated_or_corrupt_stream(self) -> None:
        good = self._compressed(b"abcdef" * 10, 74)
        self.assertEqual(decompress_message(good, 100)[14:], b"abcdef" * 10)
        self.assertRaises(ProtocolError, decompress_message, good[:-5], 100)
        corrupt = good[:30] + bytes(b ^ 0x55 for b in good[30:])
        self.assertRaises(ProtocolError, decompress_message, corrupt, 100)
        self.assertRaises(ProtocolError, decompress_message, good + b"junk", 100)
        self.assertRaises(ProtocolError, decompress_message, good[:16], 100)
        self.assertRaises(ProtocolError, decompress_message, self._compressed(b"", 5), 100)

    def test_no_limit_still_caps_decompression(self) -> None:
        """
        With Ice.MessageSizeMax at 0 (no limit, as Ice reads it) a compressed
        message decompresses up to gridreg's cap; a bomb past it is refused
        with the reason, not a TypeError.
        """
        good = self._compressed(b"abcdef" * 10, 74)
        self.assertEqual(decompress_message(good, None)[14:], b"abcdef" * 10)
        bomb = self._compressed(b"\0" * 1000, DECOMPRESSED_SIZE_CAP + 1)
        error = self.assertRaises(ProtocolError, decompress_message, bomb, None)
        self.assertIn("cap", str(error))


class MessageBufferTests(SynchronousTestCase):
    def test_waits_for_what_is_needed(self) -> None:
        """Bytes are held until the needed count arrives, then handed over at once."""
        buffer = MessageBuffer()
        self.assertEqual(buffer.feed(b"Ice"), b"Ice")  # nothing held: framed at once
        buffer.keep(b"Ice", 0, HEADER_SIZE)
        for byte in b"P\x01\x00\x01\x00\x00\x00\x14\x00\x00":
            self.assertIsNone(buffer.feed(bytes([byte])))
        self.assertEqual(buffer.feed(b"\x00"), b"IceP\x01\x00\x01\x00\x00\x00\x14\x00\x00\x00")
        self.assertEqual(len(buffer), 0)

    def test_keeps_only_the_tail(self) -> None:
        buffer = MessageBuffer()
        buffer.keep(b"xxxxabc", 4, 100)
        self.assertEqual(len(buffer), 3)
        self.assertIsNone(buffer.feed(b"d"))
        buffer.clear()
        self.assertEqual(buffer.feed(b"e"), b"e")


class RequestTests(HexTestCase):
    def test_encode_matches_capture(self) -> None:
        self.assertHex(encode_request(a_request()), FIND_ADAPTER_HEX)

    def test_decode(self) -> None:
        body = bytes.fromhex(FIND_ADAPTER_HEX)[14:]
        self.assertEqual(decode_request(body), a_request())

    def test_round_trip_with_facet_context_and_big_sizes(self) -> None:
        request = a_request(
            request_id=0,
            identity=Identity("n" * 300, "c" * 255),
            facet="fac",
            context={"k": "v", "é": "x" * 400},
            encoding=ENCODING_1_0,
            params=b"\x01" * 70000,
        )
        message = encode_request(request, compression=1)
        self.assertEqual(parse_header(message), Header(0, 1, len(message)))
        self.assertEqual(decode_request(message[14:]), request)

    def test_identity_cache_returns_equal_values(self) -> None:
        """Decoding the same identity twice gives equal identities."""
        body = bytes.fromhex(FIND_ADAPTER_HEX)[14:]
        self.assertEqual(decode_request(body).identity, decode_request(body).identity)
        other = encode_request(a_request(identity=Identity("Query", "DemoIceGrid")))[14:]
        self.assertEqual(decode_request(other).identity, Identity("Query", "DemoIceGrid"))

    def test_malformed(self) -> None:
        body = bytes.fromhex(FIND_ADAPTER_HEX)[14:]
        for cut in range(len(body)):
            self.assertRaises(MarshalError, decode_request, body[:cut])
        self.assertRaises(MarshalError, decode_request, body + b"\x00")
        bad_facet = encode_request(a_request(facet="f"))[14:].replace(b"\x01\x01f", b"\x02\x01f")
        self.assertRaises(MarshalError, decode_request, bad_facet)
        bad_utf8 = body.replace(b"Locator", b"Locat\xc3(")
        self.assertRaises(MarshalError, decode_request, bad_utf8)
        negative_context = body.replace(b"\x01\x00\x13", b"\x01\xff\xff\xff\xff\xff\x13")
        self.assertRaises(MarshalError, decode_request, negative_context)

    def test_batch(self) -> None:
        requests = [a_request(request_id=0), a_request(request_id=0, operation="ice_ping")]
        message = encode_batch_request(requests)
        self.assertEqual(parse_header(message).message_type, MessageType.BATCH_REQUEST)
        self.assertEqual(message[14:18], b"\x02\x00\x00\x00")
        self.assertEqual(decode_batch_request(message[14:]), requests)
        self.assertRaises(MarshalError, decode_batch_request, message[14:-1])
        self.assertRaises(MarshalError, decode_batch_request, message[14:] + b"\x00")
        self.assertRaises(MarshalError, decode_batch_request, b"\xff\xff\xff\xff")
        self.assertRaises(MarshalError, decode_batch_request, b"\x00\x00\x00\x10")
        self.assertEqual(decode_batch_request(b"\x00\x00\x00\x00"), [])


class ReplyTests(HexTestCase):
    def test_success(self) -> None:
        """ice_isA -> true, as in vector 02."""
        message = reply_message(1, success_body(ENCODING_1_1, b"\x01"))
        self.assertHex(message, "496365500100010002001a000000 01000000 00 070000000101 01")
        self.assertEqual(
            decode_reply(message[14:]), Reply(1, ReplyStatus.SUCCESS, ENCODING_1_1, b"\x01")
        )
        self.assertIsNone(reply_error(decode_reply(message[14:])))

    def test_compression_byte(self) -> None:
        """A reply to a request marked 1 can be marked 1 too."""
        message = reply_message(3, success_body(ENCODING_1_1, b""), 1)
        self.assertEqual(parse_header(message), Header(2, 1, len(message)))

    def test_user_exception_1_1_and_1_0(self) -> None:
        """Vectors 09 and 37: AdapterNotFoundException in both encodings."""
        type_id = b"::Ice::AdapterNotFoundException".hex()
        body11 = user_exception_body(ENCODING_1_1, AdapterNotFoundException())
        self.assertHex(body11, "01 270000000101 20 1f" + type_id)
        body10 = user_exception_body(ENCODING_1_0, AdapterNotFoundException())
        self.assertHex(body10, "01 2b0000000100 00 1f" + type_id + "04000000")
        for body in (body11, body10):
            reply = decode_reply(reply_message(8, body)[14:])
            self.assertEqual(reply.status, ReplyStatus.USER_EXCEPTION)
            self.assertEqual(reply_error(reply), AdapterNotFoundException())

    def test_not_exist(self) -> None:
        """Vector 23: identity, facet and operation, not encapsulated."""
        identity = Identity("NoSuchObject", "cat")
        body = not_exist_body(ReplyStatus.OBJECT_NOT_EXIST, identity, "fac", "ice_ping")
        message = reply_message(22, body)
        self.assertHex(
            message[14:],
            "16000000 02 0c4e6f537563684f626a656374 03636174 0103666163086963655f70696e67",
        )
        for status, error in [
            (ReplyStatus.OBJECT_NOT_EXIST, ObjectNotExistError),
            (ReplyStatus.FACET_NOT_EXIST, FacetNotExistError),
            (ReplyStatus.OPERATION_NOT_EXIST, OperationNotExistError),
        ]:
            reply = decode_reply(reply_message(22, not_exist_body(status, identity, "", "op"))[14:])
            self.assertEqual(reply, Reply(22, status, identity=identity, facet="", operation="op"))
            failure = reply_error(reply)
            self.assertEqual(failure, error(identity, "", "op"))
            self.assertIsInstance(failure, RequestFailedError)
            assert isinstance(failure, error)
            self.assertEqual(
                (failure.identity, failure.facet, failure.operation), (identity, "", "op")
            )
        self.assertRaises(ValueError, not_exist_body, ReplyStatus.SUCCESS, identity, "", "x")

    def test_unknown(self) -> None:
        for status, error in [
            (ReplyStatus.UNKNOWN_LOCAL_EXCEPTION, UnknownLocalError),
            (ReplyStatus.UNKNOWN_USER_EXCEPTION, UnknownUserError),
            (ReplyStatus.UNKNOWN_EXCEPTION, UnknownError),
        ]:
            body = unknown_body(status, "boom")
            self.assertEqual(body, bytes([status]) + b"\x04boom")
            reply = decode_reply(reply_message(5, body)[14:])
            self.assertEqual(reply, Reply(5, status, text="boom"))
            failure = reply_error(reply)
            self.assertEqual(failure, error("boom"))
            self.assertIsInstance(failure, RequestFailedError)
            self.assertEqual(failure.text, "boom")  # type: ignore[union-attr]
        self.assertRaises(ValueError, unknown_body, ReplyStatus.FACET_NOT_EXIST, "x")

    def test_malformed(self) -> None:
        body = reply_message(1, success_body(ENCODING_1_1, b"\x01"))[14:]
        for cut in range(len(body)):
            self.assertRaises(MarshalError, decode_reply, body[:cut])
        self.assertRaises(MarshalError, decode_reply, body + b"\x00")
        self.assertRaises(MarshalError, decode_reply, b"\x01\x00\x00\x00\x08")

    def test_reply_message_header(self) -> None:
        message = reply_message(0x01020304, b"\x00" + b"\x06\x00\x00\x00\x01\x01")
        self.assertEqual(parse_header(message), Header(MessageType.REPLY, 0, 25))
        self.assertEqual(message[14:18], b"\x04\x03\x02\x01")


class UserExceptionTests(HexTestCase):
    EXAMPLES: list[UserException] = [
        cls() for cls in KNOWN_EXCEPTIONS.values() if cls.__init__ is UserException.__init__
    ] + [
        ObjectNotRegisteredException(Identity("nosuch")),
        ObjectExistsException(Identity("a", "b")),
        AdapterNotExistException("ad"),
        ApplicationNotExistException("app"),
        DeploymentException("bad"),
        PermissionDeniedException("no"),
        ServerNotExistException("srv"),
        NodeNotExistException("node"),
        RegistryNotExistException("reg"),
        BadSignalException("SIGFOO"),
        AccessDeniedException("alice"),
        AllocationException("none"),
        FileNotAvailableException("no file"),
        Glacier2PermissionDeniedException("denied"),
        CannotCreateSessionException("internal server error"),
        ObserverAlreadyRegisteredException(Identity("obs", "cat")),
        ServerStartException("srv", "why"),
        ServerStopException("srv", "why"),
        NodeUnreachableException("node", "down"),
        ServerUnreachableException("srv", "down"),
        RegistryUnreachableException("reg", "down"),
    ]

    def test_two_members_in_slice_order(self) -> None:
        """IceGrid's (id or name, reason) exceptions: the first member first."""
        payload = encode_user_exception(NodeUnreachableException("n", "r"), ENCODING_1_1)
        type_id = b"::IceGrid::NodeUnreachableException"
        self.assertEqual(payload, b"\x20" + bytes([len(type_id)]) + type_id + b"\x01n\x01r")
        self.assertEqual(NodeUnreachableException("n", "r").reason, "r")

    def test_every_known_exception_round_trips(self) -> None:
        self.assertEqual(len(self.EXAMPLES), len(KNOWN_EXCEPTIONS))
        for exc in self.EXAMPLES:
            for encoding in (ENCODING_1_0, ENCODING_1_1):
                decoded = decode_user_exception(encode_user_exception(exc, encoding), encoding)
                self.assertEqual(decoded, exc)
                self.assertIs(type(decoded), type(exc))

    def test_members(self) -> None:
        """Vector 40: an Identity member follows the slice header."""
        payload = encode_user_exception(
            ObjectNotRegisteredException(Identity("nosuch")), ENCODING_1_1
        )
        self.assertHex(
            payload,
            "20 27" + b"::IceGrid::ObjectNotRegisteredException".hex() + "066e6f7375636800",
        )
        self.assertEqual(ObjectNotRegisteredException(Identity("x")).id, Identity("x"))
        self.assertEqual(PermissionDeniedException("r").reason, "r")
        self.assertEqual(ApplicationNotExistException("n").name, "n")

    def test_equality(self) -> None:
        self.assertEqual(DeploymentException("a"), DeploymentException("a"))
        self.assertNotEqual(DeploymentException("a"), DeploymentException("b"))
        self.assertNotEqual(DeploymentException("a"), PermissionDeniedException("a"))
        self.assertEqual(hash(DeploymentException("a")), hash(DeploymentException("a")))

    def test_unknown_compact(self) -> None:
        """An unknown compact exception cannot be skipped: keep its type id."""
        out = OutputStream(ENCODING_1_1)
        out.write_byte(0x20)
        out.write_string("::Demo::Error")
        out.write_int(42)
        decoded = decode_user_exception(out.getvalue(), ENCODING_1_1)
        self.assertEqual(decoded, UnknownUserException("::Demo::Error"))
        self.assertEqual(decoded.type_id, "::Demo::Error")
        self.assertRaises(MarshalError, encode_user_exception, decoded, ENCODING_1_1)

    def test_sliced_unknown_derived_known_base(self) -> None:
        """Sliced format: unknown derived slices are skipped to a known base."""
        out = OutputStream(ENCODING_1_1)
        out.write_byte(0x10)
        out.write_string("::Demo::Derived")
        out.write_int(4 + 3)
        out.write_bytes(b"abc")
        out.write_byte(0x10 | 0x20)
        out.write_string(DeploymentException.type_id)
        out.write_int(4 + 4)
        out.write_string("why")
        decoded = decode_user_exception(out.getvalue(), ENCODING_1_1)
        self.assertEqual(decoded, DeploymentException("why"))

    def test_sliced_all_unknown(self) -> None:
        out = OutputStream(ENCODING_1_1)
        for flags, type_id in [(0x10, "::Demo::Derived"), (0x30, "::Demo::Base")]:
            out.write_byte(flags)
            out.write_string(type_id)
            out.write_int(5)
            out.write_byte(0)
        decoded = decode_user_exception(out.getvalue(), ENCODING_1_1)
        self.assertEqual(decoded, UnknownUserException("::Demo::Derived"))

    def test_optional_members_skipped(self) -> None:
        out = OutputStream(ENCODING_1_1)
        out.write_byte(0x20 | 0x04)
        out.write_string(AdapterNotExistException.type_id)
        out.write_string("ad")
        out.write_bytes(b"\x08\x01\xff")  # tag 1, F1, then the end marker
        self.assertEqual(
            decode_user_exception(out.getvalue(), ENCODING_1_1), AdapterNotExistException("ad")
        )

    def test_1_0_unknown_derived_known_base(self) -> None:
        out = OutputStream(ENCODING_1_0)
        out.write_bool(False)
        out.write_string("::Demo::Derived")
        out.write_int(4 + 2)
        out.write_bytes(b"zz")
        out.write_string(AdapterNotFoundException.type_id)
        out.write_int(4)
        data = out.getvalue()
        self.assertEqual(decode_user_exception(data, ENCODING_1_0), AdapterNotFoundException())
        # Without the base slice, the exception stays unknown.
        unknown = data[: -(len(AdapterNotFoundException.type_id) + 5)]
        self.assertEqual(
            decode_user_exception(unknown, ENCODING_1_0), UnknownUserException("::Demo::Derived")
        )

    def test_malformed(self) -> None:
        payload = encode_user_exception(ObjectExistsException(Identity("a", "b")), ENCODING_1_0)
        for cut in range(len(payload)):
            self.assertRaises(MarshalError, decode_user_exception, payload[:cut], ENCODING_1_0)
        payload = encode_user_exception(ServerNotExistException("srv"), ENCODING_1_1)
        for cut in range(len(payload)):
            self.assertRaises(MarshalError, decode_user_exception, payload[:cut], ENCODING_1_1)
        self.assertRaises(MarshalError, decode_user_exception, b"\x20\x00", Version(2, 0))
        self.assertRaises(
            MarshalError, encode_user_exception, AdapterNotFoundException(), Version(1, 2)
        )
        # Slice sizes below 4 are invalid in both encodings.
        self.assertRaises(
            MarshalError, decode_user_exception, b"\x10\x01x\x03\x00\x00\x00", ENCODING_1_1
        )
        self.assertRaises(
            MarshalError, decode_user_exception, b"\x00\x01x\x03\x00\x00\x00", ENCODING_1_0
        )

    def test_reply_error_propagates_marshal_errors(self) -> None:
        reply = Reply(1, ReplyStatus.USER_EXCEPTION, ENCODING_1_1, b"\x20")
        self.assertRaises(MarshalError, reply_error, reply)
