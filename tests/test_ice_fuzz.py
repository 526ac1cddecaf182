# -*- test-case-name: tests.test_ice_fuzz -*-
"""
Property tests for the Ice codec: whatever bytes arrive, the decoders fail
only with L{MarshalError} or L{ProtocolError} (never with an internal
error that would kill a connection handler), and values built from the
data model survive an encode/decode round trip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gridreg.ice.encoding import InputStream, MarshalError, OutputStream
from gridreg.ice.exceptions import (
    AdapterNotFoundException,
    DeploymentException,
    ObjectNotRegisteredException,
    UserException,
    decode_user_exception,
    encode_user_exception,
)
from gridreg.ice.messages import (
    HEADER_SIZE,
    ProtocolError,
    Request,
    decode_batch_request,
    decode_reply,
    decode_request,
    decompress_message,
    encode_batch_request,
    encode_request,
    parse_header,
)
from tests import fuzz_targets
from tests._lineprocess import LineProcess
from tests._processes import REPO_ROOT
from gridreg.ice.types import (
    ENCODING_1_0,
    ENCODING_1_1,
    Identity,
    OpaqueEndpoint,
    Proxy,
    ProxyMode,
    SslEndpoint,
    TcpEndpoint,
    UdpEndpoint,
    Version,
    WsEndpoint,
    WssEndpoint,
)

# Derandomized so that a run is reproducible, as unit tests here must be.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EXPECTED = (MarshalError, ProtocolError)
ENCODINGS = st.sampled_from([ENCODING_1_0, ENCODING_1_1])

VECTOR_DIR = os.path.join(os.path.dirname(__file__), "data", "ice-vectors")


def _captured_bodies() -> list[tuple[int, bytes]]:
    """(message type, body) of every captured uncompressed message with a body."""
    bodies = []
    for name in sorted(os.listdir(VECTOR_DIR)):
        if not name[0].isdigit():
            continue
        with open(os.path.join(VECTOR_DIR, name)) as f:
            for message in json.load(f)["messages"]:
                data = bytes.fromhex(message["hex"])
                if data[8] <= 2 and data[9] != 2:
                    bodies.append((data[8], data[HEADER_SIZE:]))
    return bodies


CAPTURED = _captured_bodies()
BODY_DECODERS: dict[int, Callable[[bytes], Any]] = {
    0: decode_request,
    1: decode_batch_request,
    2: decode_reply,
}

int32 = st.integers(-(2**31), 2**31 - 1)
texts = st.text(max_size=12)
versions = st.builds(Version, st.integers(0, 255), st.integers(0, 255))
identities = st.builds(Identity, texts, texts)

modelled_endpoints = st.one_of(
    st.builds(TcpEndpoint, texts, int32, int32, st.booleans()),
    st.builds(SslEndpoint, texts, int32, int32, st.booleans()),
    st.builds(UdpEndpoint, texts, int32, st.booleans()),
    st.builds(WsEndpoint, texts, int32, int32, st.booleans(), texts),
    st.builds(WssEndpoint, texts, int32, int32, st.booleans(), texts),
)
opaque_endpoints = st.builds(
    OpaqueEndpoint,
    st.integers(-(2**15), 2**15 - 1).filter(lambda t: not 1 <= t <= 5),
    versions,
    st.binary(max_size=20),
)


@st.composite
def proxies(draw: st.DrawFn) -> Proxy:
    endpoints = tuple(draw(st.lists(st.one_of(modelled_endpoints, opaque_endpoints), max_size=4)))
    return Proxy(
        identity=Identity(draw(texts.filter(bool)), draw(texts)),
        facet=draw(texts),
        mode=draw(st.sampled_from(ProxyMode)),
        secure=draw(st.booleans()),
        protocol=draw(versions),
        encoding=draw(versions),
        endpoints=endpoints,
        adapter_id="" if endpoints else draw(texts),
    )


EXCEPTIONS = [
    AdapterNotFoundException(),
    ObjectNotRegisteredException(Identity("nosuch", "cat")),
    DeploymentException("reason"),
]

requests = st.builds(
    Request,
    request_id=int32,
    identity=identities,
    facet=texts,
    operation=texts,
    mode=st.integers(0, 2),
    context=st.dictionaries(texts, texts, max_size=3),
    encoding=versions,
    params=st.binary(max_size=300),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[int, bytes]:
    """A captured body with a few bytes changed, inserted or removed."""
    mtype, body = draw(st.sampled_from(CAPTURED))
    return mtype, draw(mutations(body))


@st.composite
def mutations(draw: st.DrawFn, valid: bytes) -> bytes:
    """C{valid} with a few bytes changed, inserted or removed."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=5))
        elif action == "delete" and data:
            del data[at]
        elif action == "truncate":
            del data[at:]
    return bytes(data)


class GarbageTests(SynchronousTestCase):
    """Decoders given garbage fail only with the codec's own errors."""

    def _only_expected(self, decoder: Callable[..., Any], *args: Any) -> None:
        try:
            decoder(*args)
        except EXPECTED:
            pass

    @FUZZ
    @given(st.binary(max_size=200))
    def test_random_request_reply_batch(self, data: bytes) -> None:
        for decoder in BODY_DECODERS.values():
            self._only_expected(decoder, data)

    @FUZZ
    @given(mutated())
    def test_mutated_captures(self, sample: tuple[int, bytes]) -> None:
        mtype, body = sample
        self._only_expected(BODY_DECODERS[mtype], body)
        for decoder in BODY_DECODERS.values():
            self._only_expected(decoder, body)

    @FUZZ
    @given(st.binary(max_size=200), ENCODINGS)
    def test_random_proxy(self, data: bytes, encoding: Version) -> None:
        self._only_expected(InputStream(data, encoding).read_proxy)

    @FUZZ
    @given(st.data(), proxies(), ENCODINGS)
    def test_mutated_proxy(self, data: st.DataObject, proxy: Proxy, encoding: Version) -> None:
        out = OutputStream(encoding)
        out.write_proxy(proxy)
        self._only_expected(InputStream(data.draw(mutations(out.getvalue())), encoding).read_proxy)

    @FUZZ
    @given(st.data(), st.sampled_from(EXCEPTIONS), ENCODINGS)
    def test_mutated_user_exception(
        self, data: st.DataObject, exc: UserException, encoding: Version
    ) -> None:
        payload = data.draw(mutations(encode_user_exception(exc, encoding)))
        self._only_expected(decode_user_exception, payload, encoding)

    @FUZZ
    @given(st.binary(max_size=200), ENCODINGS)
    def test_random_user_exception(self, data: bytes, encoding: Version) -> None:
        self._only_expected(decode_user_exception, data, encoding)

    @FUZZ
    @given(st.binary(min_size=HEADER_SIZE, max_size=200))
    def test_random_framing(self, data: bytes) -> None:
        # Make every other example look like a compressed message.
        if data[0] & 1:
            data = b"IceP\x01\x00\x01\x00\x00\x02" + data[10:]
        self._only_expected(parse_header, data, 1000)
        self._only_expected(decompress_message, data, 1000)


class RoundTripTests(SynchronousTestCase):
    """Values from the data model decode to themselves."""

    @FUZZ
    @given(st.lists(st.one_of(st.none(), proxies()), max_size=3), ENCODINGS)
    def test_proxies(self, values: list[Proxy | None], encoding: Version) -> None:
        out = OutputStream(encoding)
        out.write_proxy_seq(values)
        inp = InputStream(out.getvalue(), encoding)
        decoded = inp.read_proxy_seq()
        self.assertTrue(inp.at_end())
        if encoding == ENCODING_1_0:
            values = [
                p and attrs.evolve(p, protocol=ENCODING_1_0, encoding=ENCODING_1_0) for p in values
            ]
        self.assertEqual(decoded, values)

    @FUZZ
    @given(requests, st.sampled_from([0, 1, 2]))
    def test_requests(self, request: Request, compression: int) -> None:
        message = encode_request(request, compression)
        header = parse_header(message, len(message))
        self.assertEqual(header.size, len(message))
        whole = decompress_message(message, 1 << 20)
        self.assertEqual(decode_request(whole[HEADER_SIZE:]), request)

    @FUZZ
    @given(st.lists(requests.map(lambda r: attrs.evolve(r, request_id=0)), max_size=3))
    def test_batches(self, batch: list[Request]) -> None:
        message = encode_batch_request(batch)
        self.assertEqual(decode_batch_request(message[HEADER_SIZE:]), batch)


class FuzzTargetTests(SynchronousTestCase):
    """
    The coverage-guided fuzzer's targets (C{tests/fuzz_targets.py}) on their
    seeds and on every input that once broke them: the Ice server, the
    internal AMP protocol and the XML descriptor parser answer bad input with
    a clear error and a closed connection, never an unhandled exception.
    """

    def run_target(self, name: str, inputs: list[bytes]) -> None:
        target = fuzz_targets.TARGETS[name][0]
        for data in inputs:
            target(data)

    def test_seeds(self) -> None:
        for name, (_, seeds) in fuzz_targets.TARGETS.items():
            self.run_target(name, seeds())

    def test_regressions(self) -> None:
        found = {name: fuzz_targets.regressions(name) for name in fuzz_targets.TARGETS}
        self.assertGreaterEqual(len(found["amp"]), 5)
        self.assertGreaterEqual(len(found["ice"]), 1)
        for name, kept in found.items():
            self.run_target(name, [data for _, data in kept])

    def test_regression_closes_with_a_reason(self) -> None:
        """A request with operation mode 4 closes its connection with a logged reason."""
        [(_, data)] = [r for r in fuzz_targets.regressions("ice") if r[0].endswith("mode-4")]
        with self.assertRaises(MarshalError):
            decode_request(data[1 + HEADER_SIZE :])

    def test_bad_amp_arguments_answered(self) -> None:
        """A command whose integer argument does not parse gets BAD_ARGUMENTS and a close."""
        [(_, data)] = [
            r for r in fuzz_targets.regressions("amp") if r[0].endswith("integer-argument")
        ]
        protocol = fuzz_targets.registry().internal_factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(fuzz_targets.HELLO_ADMIN + data[1:])
        self.assertIn(b"BAD_ARGUMENTS", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_object_add_with_bad_arguments_answered(self) -> None:
        """
        The admin's object add, read from the raw box, answers a proxy that
        is not UTF-8, or a missing type, as AMP's own responder does.
        """
        for arguments in (
            {b"proxy": b"\xff", b"type": b""},
            {b"proxy": b"hello:tcp -p 1"},
        ):
            protocol = fuzz_targets.registry().internal_factory.buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            box = amp.AmpBox({b"_ask": b"1", b"_command": b"AdminObjectAdd", **arguments})
            protocol.dataReceived(fuzz_targets.HELLO_ADMIN + box.serialize())
            self.assertIn(b"BAD_ARGUMENTS", transport.value(), arguments)
            self.assertTrue(transport.disconnecting)


class CoverageGuidedFuzzTests(TestCase):
    """A short run of C{bench/fuzz.py} (atheris) on every target, as CI does."""

    skip = None if importlib.util.find_spec("atheris") else "atheris is not installed"
    timeout = 120

    async def test_short_fuzz_run(self) -> None:
        workdir = os.path.abspath(self.mktemp())
        args = [sys.executable, "-m", "bench.fuzz", "--seconds=1", f"--workdir={workdir}"]
        process = LineProcess.spawn(reactor, "fuzz", args, dict(os.environ), REPO_ROOT)
        await process.when_ended()
        summaries = {e["target"]: e for e in process.events if "target" in e}
        self.assertEqual(sorted(summaries), ["amp", "ice", "xml"], process.describe())
        for summary in summaries.values():
            self.assertTrue(summary["ok"], summary)
            self.assertGreater(summary["runs"], 10, summary)
        self.assertEqual(process.exit_code, 0, process.describe())
