# -*- test-case-name: tests.test_ice_vectors -*-
"""
Check the codec against every message captured between real Ice 3.7
processes (C{tests/data/ice-vectors}).

For each message the expected values are built from the vector's JSON
C{summary} (independently of the decoder), then the message is decoded and
compared with them, and finally re-encoded from the decoded values and
compared byte for byte with the capture.  One test method per vector file,
so a failure names the vector.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    KNOWN_EXCEPTIONS,
    UserException,
    decode_user_exception,
)
from gridreg.ice.messages import (
    CLOSE_CONNECTION,
    HEADER_SIZE,
    VALIDATE_CONNECTION,
    MessageType,
    Reply,
    ReplyStatus,
    Request,
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
from gridreg.ice.types import (
    ENCODING_1_0,
    Identity,
    OpaqueEndpoint,
    OperationMode,
    Proxy,
    ProxyMode,
    SslEndpoint,
    TcpEndpoint,
    UdpEndpoint,
    Version,
    WsEndpoint,
    WssEndpoint,
)

VECTOR_DIR = os.path.join(os.path.dirname(__file__), "data", "ice-vectors")
MAX_SIZE = 1 << 20

# Operations whose single result is a proxy, to decode raw results (vector 50).
PROXY_RESULT_OPERATIONS = frozenset(
    {
        "findAdapterById",
        "findObjectById",
        "getRegistry",
        "getLocalRegistry",
        "getLocalQuery",
        "findObjectByType",
        "getLocator",
    }
)


def _snake_upper(camel: str) -> str:
    """C{"ObjectNotExist"} -> C{"OBJECT_NOT_EXIST"}."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


def _version(text: str) -> Version:
    major, minor = text.split(".")
    return Version(int(major), int(minor))


def _identity(value: dict[str, str]) -> Identity:
    return Identity(value["name"], value["category"])


def _facet(value: list[str]) -> str:
    assert len(value) <= 1, value
    return value[0] if value else ""


def _endpoint(value: dict[str, Any], stream_encoding: Version) -> Any:
    encoding = _version(value["encoding"])
    kind = value["type"]
    if isinstance(kind, int):
        return OpaqueEndpoint(kind, encoding, bytes.fromhex(value["opaque"]))
    # Modelled endpoints are encapsulated with the enclosing stream's encoding.
    assert encoding == stream_encoding, (value, stream_encoding)
    if kind == "UDP":
        if "protocol" in value:
            assert stream_encoding == ENCODING_1_0
            assert value["protocol"] == value["enc"] == "1.0"
        return UdpEndpoint(value["host"], value["port"], value["compress"])
    cls = {"TCP": TcpEndpoint, "SSL": SslEndpoint, "WS": WsEndpoint, "WSS": WssEndpoint}[kind]
    args = [value["host"], value["port"], value["timeout"], value["compress"]]
    if "resource" in value:
        args.append(value["resource"])
    return cls(*args)


def _proxy(value: dict[str, Any] | None, stream_encoding: Version) -> Proxy | None:
    if value is None:
        return None
    return Proxy(
        identity=_identity(value["identity"]),
        facet=_facet(value["facet"]),
        mode=ProxyMode[value["mode"].upper().replace(" ", "_")],
        secure=value["secure"],
        protocol=_version(value.get("protocol", "1.0")),
        encoding=_version(value.get("encoding", "1.0")),
        endpoints=tuple(_endpoint(e, stream_encoding) for e in value.get("endpoints", ())),
        adapter_id=value.get("adapterId", ""),
    )


def _is_proxy_json(value: Any) -> bool:
    return isinstance(value, dict) and "identity" in value


def _typed_value(value: Any, encoding: Version) -> tuple[str, Any]:
    """
    Turn one JSON parameter/result into (kind, expected Python value).
    C{null} only ever stands for a null proxy in these vectors.
    """
    if value is None or _is_proxy_json(value):
        return "proxy", _proxy(value, encoding)
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, str):
        return "string", value
    if isinstance(value, dict):
        return "identity", _identity(value)
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value) and value:
            return "strings", value
        return "proxies", [_proxy(v, encoding) for v in value]
    raise AssertionError(f"unexpected value {value!r}")


_WRITERS: dict[str, Callable[[OutputStream, Any], None]] = {
    "proxy": OutputStream.write_proxy,
    "bool": OutputStream.write_bool,
    "string": OutputStream.write_string,
    "identity": OutputStream.write_identity,
    "strings": OutputStream.write_string_seq,
    "proxies": OutputStream.write_proxy_seq,
}

_READERS: dict[str, Callable[[InputStream], Any]] = {
    "proxy": InputStream.read_proxy,
    "bool": InputStream.read_bool,
    "string": InputStream.read_string,
    "identity": InputStream.read_identity,
    "strings": InputStream.read_string_seq,
    "proxies": InputStream.read_proxy_seq,
}


def _exception_members(fields: list[dict[str, Any]]) -> list[Any]:
    """
    The data members of a marshaled exception, in order, from the
    C{exception.<member>[.<part>]} entries of a vector's C{fields}.
    """
    members: dict[str, Any] = {}
    for field in fields:
        parts = field["field"].split(".")
        if parts[0] != "exception" or parts[1] in ("size", "encoding", "slice", "usesClasses"):
            continue
        if len(parts) == 2:
            members[parts[1]] = field["value"]
        else:
            members.setdefault(parts[1], {})[parts[2]] = field["value"]
    return [
        _identity(v) if isinstance(v, dict) and set(v) == {"name", "category"} else v
        for v in members.values()
    ]


class VectorChecker:
    """Checks the messages of one vector file against the codec."""

    def __init__(self, test: SynchronousTestCase, vector: dict[str, Any]) -> None:
        self.test = test
        self.vector = vector
        self.last_operation: str | None = None

    def check(self) -> None:
        self.test.assertTrue(self.vector["messages"])
        for message in self.vector["messages"]:
            self.check_message(message)

    def check_message(self, message: dict[str, Any]) -> None:
        t = self.test
        data = bytes.fromhex(message["hex"])
        summary = message["summary"]
        t.assertEqual(len(data), message["length"])
        header = parse_header(data, MAX_SIZE)
        t.assertEqual(header.size, len(data))
        kind = _snake_upper(summary["messageType"])
        t.assertEqual(header.message_type, MessageType[kind])
        whole = data
        if header.compression == 2:
            whole = decompress_message(data, MAX_SIZE)
            t.assertEqual(whole.hex(), summary["decompressedHex"])
        body = whole[HEADER_SIZE:]
        if kind == "VALIDATE_CONNECTION":
            t.assertEqual(data, VALIDATE_CONNECTION)
        elif kind == "CLOSE_CONNECTION":
            t.assertEqual(data, CLOSE_CONNECTION)
        elif kind == "REQUEST":
            request = decode_request(body)
            self.check_request(request, summary, summary["requestId"])
            t.assertEqual(encode_request(request, header.compression), data)
            self.last_operation = request.operation
        elif kind == "BATCH_REQUEST":
            requests = decode_batch_request(body)
            t.assertEqual(len(requests), len(summary["requests"]))
            for request, expected in zip(requests, summary["requests"]):
                self.check_request(request, expected, 0)
            t.assertEqual(encode_batch_request(requests, header.compression), data)
        elif kind == "REPLY":
            reply = decode_reply(body)
            rebuilt_body = self.check_reply(reply, summary, message["fields"])
            t.assertEqual(reply_message(reply.request_id, rebuilt_body, header.compression), data)
        else:
            raise AssertionError(kind)

    def check_values(
        self, payload: bytes, encoding: Version, values: list[tuple[str, Any]]
    ) -> None:
        """
        Decode C{payload} as the typed C{values} and compare; encode the
        expected values and compare with C{payload}.
        """
        t = self.test
        inp = InputStream(payload, encoding)
        decoded = [(kind, _READERS[kind](inp)) for kind, _ in values]
        t.assertTrue(inp.at_end(), f"{inp.remaining} bytes left in {payload.hex()}")
        t.assertEqual(decoded, values)
        out = OutputStream(encoding)
        for kind, value in values:
            _WRITERS[kind](out, value)
        t.assertEqual(out.getvalue().hex(), payload.hex())

    def check_request(self, request: Request, summary: dict[str, Any], request_id: int) -> None:
        t = self.test
        encoding = _version(summary["encoding"])
        t.assertEqual(request.request_id, request_id)
        t.assertEqual(request.identity, _identity(summary["identity"]))
        t.assertEqual(request.facet, _facet(summary["facet"]))
        t.assertEqual(request.operation, summary["operation"])
        t.assertEqual(request.mode, OperationMode[summary["mode"].upper()])
        t.assertEqual(request.context, summary["context"])
        t.assertEqual(request.encoding, encoding)
        params = summary["params"]
        if isinstance(params, str):
            t.assertEqual(request.params.hex(), params)
        else:
            self.check_values(
                request.params, encoding, [_typed_value(v, encoding) for v in params.values()]
            )

    def check_reply(
        self, reply: Reply, summary: dict[str, Any], fields: list[dict[str, Any]]
    ) -> bytes:
        """Check a decoded reply; return its body rebuilt from the values."""
        t = self.test
        status = ReplyStatus[_snake_upper(summary["replyStatus"])]
        t.assertEqual(reply.request_id, summary["requestId"])
        t.assertEqual(reply.status, status)
        if status == ReplyStatus.SUCCESS:
            t.assertIsNone(reply_error(reply))
            encoding = _version(summary["encoding"])
            t.assertEqual(reply.encoding, encoding)
            assert reply.payload is not None
            result = summary["result"]
            if isinstance(result, str):
                t.assertEqual(reply.payload.hex(), result)
                if self.last_operation in PROXY_RESULT_OPERATIONS:
                    inp = InputStream(reply.payload, encoding)
                    proxy = inp.read_proxy()
                    t.assertTrue(inp.at_end())
                    t.assertIsInstance(proxy, Proxy)
                    self.check_values(reply.payload, encoding, [("proxy", proxy)])
            else:
                self.check_values(
                    reply.payload, encoding, [_typed_value(v, encoding) for v in result.values()]
                )
            return success_body(encoding, reply.payload)
        if status == ReplyStatus.USER_EXCEPTION:
            encoding = _version(summary["encoding"])
            t.assertEqual(reply.encoding, encoding)
            type_id = summary["exception"][0]
            expected = KNOWN_EXCEPTIONS[type_id](*_exception_members(fields))
            assert reply.payload is not None
            exc = decode_user_exception(reply.payload, encoding)
            t.assertIsInstance(exc, UserException)
            t.assertEqual(exc.type_id, type_id)
            t.assertEqual(exc, expected)
            t.assertEqual(reply_error(reply), expected)
            return user_exception_body(encoding, exc)
        if status <= ReplyStatus.OPERATION_NOT_EXIST:
            identity = _identity(summary["identity"])
            facet = _facet(summary["facet"])
            t.assertEqual(
                (reply.identity, reply.facet, reply.operation),
                (identity, facet, summary["operation"]),
            )
            error = reply_error(reply)
            t.assertEqual(type(error).__name__, _snake_to_error(status))
            t.assertEqual(
                (error.identity, error.facet, error.operation),  # type: ignore[union-attr]
                (identity, facet, summary["operation"]),
            )
            return not_exist_body(status, identity, facet, summary["operation"])
        t.assertEqual(reply.text, summary["message"])
        error = reply_error(reply)
        t.assertEqual(type(error).__name__, _snake_to_error(status))
        t.assertEqual(error.text, summary["message"])  # type: ignore[union-attr]
        return unknown_body(status, summary["message"])


def _snake_to_error(status: ReplyStatus) -> str:
    """The client error class name for a failure status."""
    return {
        ReplyStatus.OBJECT_NOT_EXIST: "ObjectNotExistError",
        ReplyStatus.FACET_NOT_EXIST: "FacetNotExistError",
        ReplyStatus.OPERATION_NOT_EXIST: "OperationNotExistError",
        ReplyStatus.UNKNOWN_LOCAL_EXCEPTION: "UnknownLocalError",
        ReplyStatus.UNKNOWN_USER_EXCEPTION: "UnknownUserError",
        ReplyStatus.UNKNOWN_EXCEPTION: "UnknownError",
    }[status]


def _vector_files() -> list[str]:
    return sorted(
        name for name in os.listdir(VECTOR_DIR) if name.endswith(".json") and name != "index.json"
    )


class CapturedVectorTests(SynchronousTestCase):
    """One test per captured vector file (methods are added below)."""

    def test_all_vectors_present(self) -> None:
        """
        The index lists exactly the vector files, so none is silently
        skipped by the generated tests.
        """
        with open(os.path.join(VECTOR_DIR, "index.json")) as f:
            index = json.load(f)
        self.assertEqual(sorted(entry["file"] for entry in index), _vector_files())
        self.assertEqual(len(_vector_files()), 50)


def _make_test(filename: str) -> Callable[[CapturedVectorTests], None]:
    def test(self: CapturedVectorTests) -> None:
        with open(os.path.join(VECTOR_DIR, filename)) as f:
            vector = json.load(f)
        VectorChecker(self, vector).check()

    test.__doc__ = f"Decode, check and re-encode every message of {filename}."
    return test


for _filename in _vector_files():
    _name = "test_" + re.sub(r"\W", "_", _filename[: -len(".json")])
    setattr(CapturedVectorTests, _name, _make_test(_filename))
del _filename, _name
