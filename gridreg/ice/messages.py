# -*- test-case-name: tests.test_ice_messages -*-
"""
Ice protocol 1.0 message framing: headers, requests, replies, compression.

A whole message is the 14-byte header followed by a body
(C{docs/ice-protocol.md} sections 2, 4 and 5).  Functions named C{decode_*}
take the body, i.e. the message without its header.

Errors: L{parse_header} and L{decompress_message} raise L{ProtocolError}
for framing that cannot be trusted (the connection should be dropped);
the C{decode_*} functions raise only L{MarshalError} for malformed bodies
(the message was framed correctly, so a server may answer or close as it
sees fit).

Decoding a request and building a reply run once per locate call, so both
are written as flat C{struct} code rather than through L{InputStream}.
"""

from __future__ import annotations

import bz2
import enum
import struct
from collections.abc import Iterable

import attrs

from gridreg.ice.encoding import InputStream, MarshalError, OutputStream, encaps, version_of
from gridreg.ice.exceptions import (
    FacetNotExistError,
    ObjectNotExistError,
    OperationNotExistError,
    UnknownError,
    UnknownLocalError,
    UnknownUserError,
    UserException,
    decode_user_exception,
    encode_user_exception,
)
from gridreg.ice.types import ENCODING_1_0, ENCODING_1_1, Identity, Version

__all__ = [
    "CLOSE_CONNECTION",
    "DECOMPRESSED_SIZE_CAP",
    "HEADER_SIZE",
    "MessageBuffer",
    "MAGIC",
    "VALIDATE_CONNECTION",
    "Header",
    "MessageType",
    "ProtocolError",
    "Reply",
    "ReplyStatus",
    "Request",
    "compress_message",
    "decode_batch_request",
    "decode_reply",
    "decode_request",
    "decompress_message",
    "encode_batch_request",
    "encode_request",
    "not_exist_body",
    "parse_header",
    "reply_error",
    "reply_message",
    "success_body",
    "unknown_body",
    "user_exception_body",
]


class ProtocolError(Exception):
    """A message that cannot be framed: the connection cannot continue."""


class MessageType(enum.IntEnum):
    REQUEST = 0
    BATCH_REQUEST = 1
    REPLY = 2
    VALIDATE_CONNECTION = 3
    CLOSE_CONNECTION = 4


class ReplyStatus(enum.IntEnum):
    SUCCESS = 0
    USER_EXCEPTION = 1
    OBJECT_NOT_EXIST = 2
    FACET_NOT_EXIST = 3
    OPERATION_NOT_EXIST = 4
    UNKNOWN_LOCAL_EXCEPTION = 5
    UNKNOWN_USER_EXCEPTION = 6
    UNKNOWN_EXCEPTION = 7


HEADER_SIZE = 14
MAGIC = b"IceP"

# Magic, protocol 1.0 and the header encoding, which is always 1.0.
_PREAMBLE = MAGIC + b"\x01\x00\x01\x00"
_HEADER = struct.Struct("<4sBBBBBBi")
_TYPE_COMPRESSION_SIZE = struct.Struct("<BBi")
_INT = struct.Struct("<i")
_unpack_int = _INT.unpack_from
_unpack_encaps = struct.Struct("<iBB").unpack_from

VALIDATE_CONNECTION: bytes = _PREAMBLE + _TYPE_COMPRESSION_SIZE.pack(3, 0, HEADER_SIZE)
"""Sent by a server first on every connection, and as a heartbeat."""

CLOSE_CONNECTION: bytes = _PREAMBLE + _TYPE_COMPRESSION_SIZE.pack(4, 1, HEADER_SIZE)
"""Graceful close, with compression byte 1 as Ice 3.7 sends it."""


def _header(message_type: int, compression: int, size: int) -> bytes:
    return _PREAMBLE + _TYPE_COMPRESSION_SIZE.pack(message_type, compression, size)


@attrs.frozen
class Header:
    """
    The parts of a message header that vary.

    @ivar compression: 0 uncompressed, 1 uncompressed and a compressed
        reply is acceptable, 2 compressed.  Ice only tests for 2, so other
        values are accepted as uncompressed.
    @ivar size: the size of the whole message, header included.
    """

    message_type: int
    compression: int
    size: int


def parse_header(data: bytes, max_size: int | None = None) -> Header:
    """
    Parse and check the header in C{data[0:14]}.

    @param max_size: the largest whole message accepted, or C{None}.
    @raise ProtocolError: bad magic, unsupported protocol or encoding major
        version, unknown message type, or a size below 14 or above
        C{max_size}.
    """
    magic, pmajor, _, emajor, _, mtype, compression, size = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if pmajor != 1:
        raise ProtocolError(f"unsupported protocol major version {pmajor}")
    if emajor != 1:
        raise ProtocolError(f"unsupported protocol encoding major version {emajor}")
    if mtype > 4:
        raise ProtocolError(f"unknown message type {mtype}")
    if size < HEADER_SIZE:
        raise ProtocolError(f"message size {size} smaller than the header")
    if max_size is not None and size > max_size:
        raise ProtocolError(f"message size {size} exceeds the limit {max_size}")
    return Header(mtype, compression, size)


#: The largest uncompressed size accepted for a compressed message when
#: C{Ice.MessageSizeMax} sets no limit (0 or negative, as Ice reads it): an
#: uncompressed message costs its sender every byte, a bzip2 bomb does not.
DECOMPRESSED_SIZE_CAP = 64 * 1024 * 1024


def decompress_message(message: bytes, max_size: int | None) -> bytes:
    """
    Return the uncompressed equivalent of a whole message: the same header
    with compression 0 and the real size, then the bunzip2-ed body.  A
    message whose compression byte is not 2 is returned unchanged.

    The declared uncompressed size is checked against C{max_size} (or
    L{DECOMPRESSED_SIZE_CAP} when C{max_size} is C{None}, i.e. no limit)
    before decompressing, and decompression is bounded by it, so a bzip2
    bomb cannot make us produce more than that many bytes.

    @raise ProtocolError: size out of range, corrupt stream, or a stream
        whose length differs from the declared size.
    """
    if len(message) < HEADER_SIZE or message[9] != 2:
        return message
    if len(message) < HEADER_SIZE + 4:
        raise ProtocolError("compressed message without an uncompressed size")
    (total,) = _unpack_int(message, HEADER_SIZE)
    if total < HEADER_SIZE:
        raise ProtocolError(f"uncompressed size {total} smaller than the header")
    if max_size is None and total > DECOMPRESSED_SIZE_CAP:
        raise ProtocolError(
            f"uncompressed size {total} exceeds gridreg's cap of {DECOMPRESSED_SIZE_CAP} "
            "bytes for compressed messages (Ice.MessageSizeMax sets no limit)"
        )
    if max_size is not None and total > max_size:
        raise ProtocolError(
            f"uncompressed size {total} exceeds Ice.MessageSizeMax ({max_size} bytes)"
        )
    body_size = total - HEADER_SIZE
    decompressor = bz2.BZ2Decompressor()
    try:
        body = decompressor.decompress(message[HEADER_SIZE + 4 :], body_size)
        # At the declared size but not at the end: either the stream holds
        # more than declared or it is cut short.
        if (
            len(body) == body_size
            and not decompressor.eof
            and (decompressor.decompress(b"", 1) or not decompressor.eof)
        ):
            raise ProtocolError("compressed body does not match its declared size")
    except (OSError, EOFError, ValueError) as e:
        raise ProtocolError(f"corrupt compressed body: {e}") from e
    if len(body) != body_size or decompressor.unused_data:
        raise ProtocolError("compressed body does not match its declared size")
    return _header(message[8], 0, total) + body


class MessageBuffer:
    """
    The bytes of a connection's incomplete message, kept between
    C{dataReceived} calls.

    Bytes are appended to a C{bytearray} and joined into one C{bytes} only
    once a whole message (or header) can be framed, so a message that
    arrives one byte at a time costs linear time, not quadratic, and the
    buffer never holds more than one message plus one segment.
    """

    __slots__ = ("_pending", "_needed")

    def __init__(self) -> None:
        self._pending = bytearray()
        self._needed = HEADER_SIZE

    def __len__(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes) -> bytes | None:
        """
        Add C{data}; return everything buffered when there is enough to frame
        (the buffer is then empty until L{keep}), or C{None} to wait for more.
        """
        pending = self._pending
        if not pending:
            return data
        pending += data
        if len(pending) < self._needed:
            return None
        data = bytes(pending)
        pending.clear()
        return data

    def keep(self, data: bytes, pos: int, needed: int) -> None:
        """
        Keep C{data[pos:]}, an incomplete message, until C{needed} bytes of it
        have arrived (its size, or L{HEADER_SIZE} while the header is short).
        """
        self._pending[:] = memoryview(data)[pos:]
        self._needed = needed

    def clear(self) -> None:
        self._pending = bytearray()
        self._needed = HEADER_SIZE


def compress_message(message: bytes) -> bytes:
    """
    Return the compressed (status 2) form of an uncompressed whole message.
    Ice itself compresses only messages of 100 bytes or more; that choice is
    left to the caller.
    """
    compressed = bz2.compress(message[HEADER_SIZE:], 1)
    size = HEADER_SIZE + 4 + len(compressed)
    return _header(message[8], 2, size) + _INT.pack(len(message)) + compressed


@attrs.frozen
class Request:
    """
    A decoded request.

    @ivar request_id: 0 for oneway and batched requests.
    @ivar facet: C{""} for the default facet.
    @ivar mode: the operation mode byte (see L{OperationMode}), kept as
        sent so the dispatcher can judge it.
    @ivar params: the payload inside the parameter encapsulation, encoded
        with C{encoding}.
    """

    request_id: int
    identity: Identity
    facet: str
    operation: str
    mode: int
    context: dict[str, str] = attrs.field(factory=dict, hash=False)
    encoding: Version = ENCODING_1_1
    params: bytes = b""


_IDENTITY_CACHE: dict[bytes, Identity] = {}
_IDENTITY_CACHE_LIMIT = 4096


def _string(body: bytes, pos: int, end: int) -> tuple[str, int]:
    """Read a string at C{pos}; return it and the next offset."""
    size = body[pos]
    pos += 1
    if size == 255:
        (size,) = _unpack_int(body, pos)
        pos += 4
        if size < 0:
            raise MarshalError(f"negative string size {size}")
    stop = pos + size
    if stop > end:
        raise MarshalError("string exceeds the message")
    return body[pos:stop].decode("utf-8"), stop


def _identity(body: bytes, pos: int, end: int) -> tuple[Identity, int]:
    """
    Read an identity.  Requests keep addressing the same few objects, so
    identities are cached by their wire bytes, which skips both the UTF-8
    decoding and the object construction.
    """
    name_size = body[pos]
    if name_size < 255:
        category_at = pos + 1 + name_size
        category_size = body[category_at]
        stop = category_at + 1 + category_size
        if category_size < 255 and stop <= end:
            key = body[pos:stop]
            identity = _IDENTITY_CACHE.get(key)
            if identity is None:
                identity = Identity(
                    body[pos + 1 : category_at].decode("utf-8"),
                    body[category_at + 1 : stop].decode("utf-8"),
                )
                if len(_IDENTITY_CACHE) >= _IDENTITY_CACHE_LIMIT:
                    _IDENTITY_CACHE.clear()
                _IDENTITY_CACHE[key] = identity
            return identity, stop
    name, pos = _string(body, pos, end)
    category, pos = _string(body, pos, end)
    return Identity(name, category), pos


def _request_at(body: bytes, pos: int, end: int, request_id: int) -> tuple[Request, int]:
    """Decode the request fields after the request id."""
    identity, pos = _identity(body, pos, end)
    facet_count = body[pos]
    pos += 1
    if facet_count == 0:
        facet = ""
    elif facet_count == 1:
        facet, pos = _string(body, pos, end)
    else:
        raise MarshalError(f"facet sequence with {facet_count} elements")
    operation, pos = _string(body, pos, end)
    mode = body[pos]
    if mode > 2:  # Normal, Nonmutating, Idempotent: Ice refuses other values too
        raise MarshalError(f"bad operation mode {mode}")
    context_count = body[pos + 1]
    pos += 2
    context: dict[str, str] = {}
    if context_count:
        if context_count == 255:
            (context_count,) = _unpack_int(body, pos)
            pos += 4
        if context_count < 0 or context_count * 2 > end - pos:
            raise MarshalError(f"bad context size {context_count}")
        for _ in range(context_count):
            key, pos = _string(body, pos, end)
            context[key], pos = _string(body, pos, end)
    size, major, minor = _unpack_encaps(body, pos)
    stop = pos + size
    if size < 6 or stop > end:
        raise MarshalError(f"bad parameter encapsulation size {size}")
    encoding = ENCODING_1_1 if major == 1 and minor == 1 else version_of(major, minor)
    params = body[pos + 6 : stop]
    return Request(request_id, identity, facet, operation, mode, context, encoding, params), stop


def decode_request(body: bytes) -> Request:
    """
    Decode the body of a Request message (everything after the header).

    @raise MarshalError: malformed or truncated body, or trailing bytes.
    """
    end = len(body)
    try:
        (request_id,) = _unpack_int(body, 0)
        request, pos = _request_at(body, 4, end, request_id)
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise MarshalError(f"malformed request: {e}") from e
    if pos != end:
        raise MarshalError(f"{end - pos} trailing bytes after the request")
    return request


def decode_batch_request(body: bytes) -> list[Request]:
    """
    Decode the body of a BatchRequest message into its requests, each with
    request id 0.

    @raise MarshalError: malformed or truncated body, or trailing bytes.
    """
    end = len(body)
    try:
        (count,) = _unpack_int(body, 0)
        # A request needs at least 12 bytes (empty identity name excepted).
        if count < 0 or count * 12 > end - 4:
            raise MarshalError(f"bad batch request count {count}")
        pos = 4
        requests = []
        for _ in range(count):
            request, pos = _request_at(body, pos, end, 0)
            requests.append(request)
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise MarshalError(f"malformed batch request: {e}") from e
    if pos != end:
        raise MarshalError(f"{end - pos} trailing bytes after the batch")
    return requests


def _request_fields(request: Request) -> bytes:
    out = OutputStream(ENCODING_1_0)
    out.write_identity(request.identity)
    out.write_facet(request.facet)
    out.write_string(request.operation)
    out.write_byte(request.mode)
    out.write_string_dict(request.context)
    out.write_encaps(request.encoding, request.params)
    return out.getvalue()


def _frame(message_type: int, body: bytes, compression: int) -> bytes:
    if compression == 2:
        return compress_message(_header(message_type, 0, HEADER_SIZE + len(body)) + body)
    return _header(message_type, compression, HEADER_SIZE + len(body)) + body


def encode_request(request: Request, compression: int = 0) -> bytes:
    """
    Encode a whole Request message.

    @param compression: the header's compression byte; 2 compresses the body.
    """
    body = _INT.pack(request.request_id) + _request_fields(request)
    return _frame(MessageType.REQUEST, body, compression)


def encode_batch_request(requests: Iterable[Request], compression: int = 0) -> bytes:
    """Encode a whole BatchRequest message; request ids are not sent."""
    parts = [_request_fields(request) for request in requests]
    body = _INT.pack(len(parts)) + b"".join(parts)
    return _frame(MessageType.BATCH_REQUEST, body, compression)


def success_body(encoding: Version, payload: bytes) -> bytes:
    """A Success reply body: status 0 and the results encapsulation."""
    return b"\x00" + encaps(encoding, payload)


def user_exception_body(encoding: Version, exc: UserException) -> bytes:
    """A UserException reply body: status 1 and the exception encapsulation."""
    return b"\x01" + encaps(encoding, encode_user_exception(exc, encoding))


def not_exist_body(status: ReplyStatus, identity: Identity, facet: str, operation: str) -> bytes:
    """
    An ObjectNotExist / FacetNotExist / OperationNotExist reply body: status
    byte, then identity, facet and operation, not encapsulated.
    """
    if status not in (2, 3, 4):
        raise ValueError(f"not a not-exist status: {status}")
    out = OutputStream(ENCODING_1_0)
    out.write_byte(status)
    out.write_identity(identity)
    out.write_facet(facet)
    out.write_string(operation)
    return out.getvalue()


def unknown_body(status: ReplyStatus, text: str) -> bytes:
    """An Unknown(Local|User)Exception reply body: status byte and text."""
    if status not in (5, 6, 7):
        raise ValueError(f"not an unknown-exception status: {status}")
    out = OutputStream(ENCODING_1_0)
    out.write_byte(status)
    out.write_string(text)
    return out.getvalue()


_REPLY_PREFIXES = (_PREAMBLE + b"\x02\x00", _PREAMBLE + b"\x02\x01")
_reply_pack = struct.Struct("<10sii").pack
#: for a hot path that frames replies inline, with no call per reply:
#: C{pack_reply_prefix(REPLY_PREFIXES[c], len(body) + 18, request_id) + body}
#: is C{reply_message(request_id, body, c)}
REPLY_PREFIXES = _REPLY_PREFIXES
pack_reply_prefix = _reply_pack


def reply_message(request_id: int, body: bytes, compression: int = 0) -> bytes:
    """
    Frame a reply: header, request id, then C{body} (status byte onward,
    see the C{*_body} helpers).

    @param compression: the header's compression byte, 0 or 1 (answer a
        request marked 1 with 1, as icegridregistry does).
    """
    return _reply_pack(_REPLY_PREFIXES[compression], len(body) + 18, request_id) + body


@attrs.frozen
class Reply:
    """
    A decoded reply.  Which of the optional fields are set depends on
    C{status}: C{encoding} and C{payload} (the bytes inside the
    encapsulation) for 0 and 1; C{identity}, C{facet} and C{operation}
    for 2 to 4; C{text} for 5 to 7.
    """

    request_id: int
    status: ReplyStatus
    encoding: Version | None = None
    payload: bytes | None = None
    identity: Identity | None = None
    facet: str | None = None
    operation: str | None = None
    text: str | None = None


def decode_reply(body: bytes) -> Reply:
    """
    Decode the body of a Reply message (everything after the header).

    @raise MarshalError: malformed or truncated body, unknown status, or
        trailing bytes.
    """
    inp = InputStream(body, ENCODING_1_0)
    request_id = inp.read_int()
    status = inp.read_byte()
    if status <= 1:
        encoding, payload = inp.read_encaps()
        reply = Reply(request_id, ReplyStatus(status), encoding, payload)
    elif status <= 4:
        identity = inp.read_identity()
        facet = inp.read_facet()
        operation = inp.read_string()
        reply = Reply(
            request_id, ReplyStatus(status), identity=identity, facet=facet, operation=operation
        )
    elif status <= 7:
        reply = Reply(request_id, ReplyStatus(status), text=inp.read_string())
    else:
        raise MarshalError(f"unknown reply status {status}")
    if not inp.at_end():
        raise MarshalError(f"{inp.remaining} trailing bytes after the reply")
    return reply


def reply_body(reply: Reply) -> bytes:
    """
    The body of C{reply} again (status byte onward), as it came: what a
    router sends back to its caller for a request it forwarded.
    """
    status = reply.status
    if status <= 1:
        assert reply.encoding is not None and reply.payload is not None
        return bytes([status]) + encaps(reply.encoding, reply.payload)
    if status <= 4:
        assert reply.identity is not None and reply.facet is not None
        assert reply.operation is not None
        return not_exist_body(status, reply.identity, reply.facet, reply.operation)
    assert reply.text is not None
    return unknown_body(status, reply.text)


_NOT_EXIST_ERRORS = {
    2: ObjectNotExistError,
    3: FacetNotExistError,
    4: OperationNotExistError,
}
_UNKNOWN_ERRORS = {
    5: UnknownLocalError,
    6: UnknownUserError,
    7: UnknownError,
}


def reply_error(reply: Reply) -> Exception | None:
    """
    Return the exception a non-success reply stands for, or C{None} for a
    success: the decoded L{UserException} for status 1, otherwise one of
    the L{RequestFailedError} subclasses.

    @raise MarshalError: the user exception in a status 1 reply is malformed.
    """
    status = reply.status
    if status == ReplyStatus.SUCCESS:
        return None
    if status == ReplyStatus.USER_EXCEPTION:
        assert reply.payload is not None and reply.encoding is not None
        return decode_user_exception(reply.payload, reply.encoding)
    if status <= 4:
        assert reply.identity is not None and reply.facet is not None
        assert reply.operation is not None
        return _NOT_EXIST_ERRORS[status](reply.identity, reply.facet, reply.operation)
    assert reply.text is not None
    return _UNKNOWN_ERRORS[status](reply.text)
