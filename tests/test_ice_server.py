# -*- test-case-name: tests.test_ice_server -*-
"""
The server side of an Ice connection: framing, validation, graceful close,
and bad input that closes only the offending connection.
"""

from __future__ import annotations

import bz2

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import AdapterNotFoundException, ObjectNotExistError
from gridreg.ice.messages import (
    CLOSE_CONNECTION,
    DECOMPRESSED_SIZE_CAP,
    VALIDATE_CONNECTION,
    ReplyStatus,
    Request,
    compress_message,
    decode_reply,
    decode_request,
    encode_batch_request,
    encode_request,
    not_exist_body,
    reply_message,
    success_body,
)
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.server import PAUSE_BELOW, IceServerFactory
from gridreg.ice.types import ENCODING_1_0, ENCODING_1_1, Identity, OperationMode

ECHO = Identity("echo", "test")


class EchoServant(Servant):
    type_id = "::Test::Echo"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.pending: list[Deferred[bytes]] = []

    @operation("echo", idempotent=True, cacheable=True)
    def echo(self, request: Request, params: InputStream) -> bytes:
        text = params.read_string()
        self.calls.append(text)
        out = OutputStream(request.encoding)
        out.write_string(text)
        return out.getvalue()

    @operation("fail", idempotent=True)
    def fail(self, request: Request, params: InputStream) -> bytes:
        raise AdapterNotFoundException()

    @operation("crash")
    def crash(self, request: Request, params: InputStream) -> bytes:
        raise RuntimeError("boom")

    @operation("later")
    def later(self, request: Request, params: InputStream) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.pending.append(d)
        return d


def string_params(text: str, encoding=ENCODING_1_1) -> bytes:  # type: ignore[no-untyped-def]
    out = OutputStream(encoding)
    out.write_string(text)
    return out.getvalue()


def request(
    request_id: int,
    operation_name: str,
    params: bytes = b"",
    mode: int = OperationMode.NONMUTATING,
    identity: Identity = ECHO,
    facet: str = "",
    encoding=ENCODING_1_1,  # type: ignore[no-untyped-def]
) -> bytes:
    return encode_request(
        Request(request_id, identity, facet, operation_name, mode, {}, encoding, params)
    )


def replies(data: bytes) -> list:  # type: ignore[type-arg]
    """Split the bytes a server wrote into decoded replies."""
    found = []
    while data:
        size = int.from_bytes(data[10:14], "little")
        found.append(decode_reply(data[14:size]))
        data = data[size:]
    return found


class ServerProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.servant = EchoServant()
        self.adapter = ObjectAdapter("Test")
        self.adapter.add(ECHO, self.servant)
        self.factory = IceServerFactory(self.adapter, max_message_size=4096)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def received(self, data: bytes) -> list:  # type: ignore[type-arg]
        self.transport.clear()
        self.protocol.dataReceived(data)
        return replies(self.transport.value())

    def test_validates_connection_first(self) -> None:
        """The server speaks first with ValidateConnection, as Ice clients wait for it."""
        self.assertEqual(self.transport.value(), VALIDATE_CONNECTION)

    def test_many_requests_in_one_chunk(self) -> None:
        """Pipelined requests are all answered, with their own ids, in one write."""
        data = b"".join(request(i, "echo", string_params(f"m{i}")) for i in range(1, 6))
        got = self.received(data)
        self.assertEqual([r.request_id for r in got], [1, 2, 3, 4, 5])
        self.assertEqual(
            [InputStream(r.payload, r.encoding).read_string() for r in got],
            ["m1", "m2", "m3", "m4", "m5"],
        )

    def test_byte_by_byte(self) -> None:
        """A request split into single bytes is answered once complete."""
        data = request(7, "echo", string_params("x"))
        for i in range(len(data) - 1):
            self.assertEqual(self.received(data[i : i + 1]), [])
        [reply] = self.received(data[-1:])
        self.assertEqual(reply.request_id, 7)

    def test_large_message_byte_by_byte_stays_linear(self) -> None:
        """
        A 200 KB request fed one byte at a time is answered, and the server
        never holds more than that one message (joining the bytes once, not
        on every segment, which would copy ~20 GB).
        """
        factory = IceServerFactory(self.adapter, max_message_size=1 << 20)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        data = request(3, "echo", string_params("y" * 200_000))
        largest = 0
        for i in range(len(data) - 1):
            protocol.dataReceived(data[i : i + 1])
            largest = max(largest, len(protocol._buffer))
        self.assertLess(largest, len(data))
        transport.clear()
        protocol.dataReceived(data[-1:])
        [reply] = replies(transport.value())
        self.assertEqual(InputStream(reply.payload, reply.encoding).read_string(), "y" * 200_000)
        self.assertEqual(len(protocol._buffer), 0)

    def test_partial_header_held_then_checked(self) -> None:
        """A partial header is held (13 bytes); once whole, an oversize one closes."""
        header = request(1, "echo", string_params("x"))[:10] + (10_000).to_bytes(4, "little")
        self.received(header[:13])
        self.assertEqual(len(self.protocol._buffer), 13)
        self.assertFalse(self.transport.disconnecting)
        self.received(header[13:])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.protocol._buffer), 0)

    def test_no_message_size_limit(self) -> None:
        """
        Ice.MessageSizeMax=0 (no limit): large and compressed requests are
        served; a compressed one declaring more than gridreg's cap is refused
        with a logged reason and the connection closed.
        """
        factory = IceServerFactory(self.adapter, max_message_size=None)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        transport.clear()
        protocol.dataReceived(request(1, "echo", string_params("z" * 5000)))
        protocol.dataReceived(compress_message(request(2, "echo", string_params("c" * 300))))
        self.assertEqual([r.request_id for r in replies(transport.value())], [1, 2])
        stream = bz2.compress(b"\0" * 1000)
        bomb = (
            b"IceP\x01\x00\x01\x00\x00\x02"
            + (18 + len(stream)).to_bytes(4, "little")
            + (DECOMPRESSED_SIZE_CAP + 1).to_bytes(4, "little")
            + stream
        )
        with capturedLogs() as events:
            protocol.dataReceived(bomb)
        self.assertTrue(transport.disconnecting)
        self.assertIn("cap", events[-1]["reason"])

    def test_encoding_1_0_answered_in_1_0(self) -> None:
        [reply] = self.received(
            request(1, "echo", string_params("x", ENCODING_1_0), encoding=ENCODING_1_0)
        )
        self.assertEqual(reply.encoding, ENCODING_1_0)

    def test_user_exception(self) -> None:
        [reply] = self.received(request(1, "fail"))
        self.assertEqual(reply.status, ReplyStatus.USER_EXCEPTION)

    def test_unexpected_error_is_unknown_exception_and_logged(self) -> None:
        [reply] = self.received(request(1, "crash", mode=OperationMode.NORMAL))
        self.assertEqual(reply.status, ReplyStatus.UNKNOWN_EXCEPTION)
        self.assertIn("boom", reply.text)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(self.transport.connected)

    def test_idempotent_operation_refuses_normal_mode(self) -> None:
        """As IceGrid does (vector 47): Normal mode on an idempotent operation."""
        [reply] = self.received(request(1, "echo", string_params("x"), mode=OperationMode.NORMAL))
        self.assertEqual(reply.status, ReplyStatus.UNKNOWN_LOCAL_EXCEPTION)
        self.assertIn("unexpected operation mode", reply.text)
        self.assertEqual(self.servant.calls, [])

    def test_not_exist_statuses(self) -> None:
        got = self.received(
            request(1, "echo", identity=Identity("nobody"))
            + request(2, "echo", facet="f")
            + request(3, "nothing")
        )
        self.assertEqual(
            [r.status for r in got],
            [
                ReplyStatus.OBJECT_NOT_EXIST,
                ReplyStatus.FACET_NOT_EXIST,
                ReplyStatus.OPERATION_NOT_EXIST,
            ],
        )

    def test_oneway_and_batch_are_dispatched_without_reply(self) -> None:
        batch = encode_batch_request(
            [Request(0, ECHO, "", "echo", 1, {}, ENCODING_1_1, string_params(t)) for t in "ab"]
        )
        self.assertEqual(self.received(request(0, "echo", string_params("o")) + batch), [])
        self.assertEqual(self.servant.calls, ["o", "a", "b"])

    def test_deferred_reply(self) -> None:
        """A reply that comes later is written when ready, with its request id."""
        self.assertEqual(self.received(request(9, "later", mode=OperationMode.NORMAL)), [])
        self.transport.clear()
        self.servant.pending[0].callback(b"")
        [reply] = replies(self.transport.value())
        self.assertEqual((reply.request_id, reply.status), (9, ReplyStatus.SUCCESS))

    def test_cached_reply_matches_fresh_reply(self) -> None:
        """The reply cache answers repeats with their own request ids, until invalidated."""
        first = self.received(request(1, "echo", string_params("c")))
        second = self.received(request(2, "echo", string_params("c")))
        self.assertEqual(self.servant.calls, ["c"])
        self.assertEqual(first[0].payload, second[0].payload)
        self.assertEqual(second[0].request_id, 2)
        self.adapter.invalidate()
        self.received(request(3, "echo", string_params("c")))
        self.assertEqual(self.servant.calls, ["c", "c"])

    def test_cached_reply_bytes_match_fresh_reply(self) -> None:
        """
        A repeat answered from the cache is framed byte for byte as the first
        answer was, apart from its request id: with the header's compression
        flag echoed, and none at all for a oneway repeat.
        """
        for flag in (0, 1):
            self.adapter.invalidate()
            first = request(1, "echo", string_params("f"))
            flagged = first[:9] + bytes([flag]) + first[10:]
            self.transport.clear()
            self.protocol.dataReceived(flagged)
            fresh = self.transport.value()
            repeat = flagged[:14] + (7).to_bytes(4, "little") + flagged[18:]
            oneway = flagged[:14] + (0).to_bytes(4, "little") + flagged[18:]
            self.transport.clear()
            self.protocol.dataReceived(oneway + repeat + oneway)
            cached = self.transport.value()
            self.assertEqual(self.servant.calls.count("f"), flag + 1)
            self.assertEqual(fresh[9], flag)
            self.assertEqual(cached, fresh[:14] + (7).to_bytes(4, "little") + fresh[18:])

    def test_cached_reply_alone_in_its_read(self) -> None:
        """
        A cached repeat that is a read on its own (one request in flight) is
        framed byte for byte as the same repeat among others in one read,
        for either compression flag; a oneway repeat alone gets nothing.
        """
        for flag in (0, 1):
            self.adapter.invalidate()
            first = request(1, "echo", string_params("a"))
            flagged = first[:9] + bytes([flag]) + first[10:]
            repeat = flagged[:14] + (9).to_bytes(4, "little") + flagged[18:]
            oneway = flagged[:14] + (0).to_bytes(4, "little") + flagged[18:]
            self.protocol.dataReceived(flagged)
            self.transport.clear()
            self.protocol.dataReceived(oneway + repeat)
            among_others = self.transport.value()
            self.transport.clear()
            self.protocol.dataReceived(repeat)
            alone = self.transport.value()
            self.protocol.dataReceived(oneway)
            self.assertEqual(self.transport.value(), alone)
            self.assertEqual(alone, among_others)
            self.assertEqual(alone[9], flag)
        self.assertEqual(self.servant.calls, ["a", "a"])

    def test_cached_request_after_a_partial_read(self) -> None:
        """A cached request whose first bytes came in an earlier read is answered once whole."""
        self.received(request(1, "echo", string_params("p")))
        data = request(2, "echo", string_params("p"))
        self.assertEqual(self.received(data[:20]), [])
        got = self.received(data[20:])
        self.assertEqual([r.request_id for r in got], [2])
        self.assertEqual(self.servant.calls, ["p"])

    def test_cached_request_in_short_reads(self) -> None:
        """
        A cached request arriving in reads shorter than its header (the
        first ending inside the header's fixed bytes) is answered once whole.
        """
        self.received(request(1, "echo", string_params("s")))
        data = request(2, "echo", string_params("s"))
        for cut in (9, 10, 13):
            self.assertEqual(self.received(data[:cut]), [])
            got = self.received(data[cut:])
            self.assertEqual([r.request_id for r in got], [2])
        self.assertEqual(self.servant.calls, ["s"])

    def test_cached_request_then_garbage_still_answered(self) -> None:
        """A cached request before a malformed message in one read is answered, then the close."""
        self.received(request(1, "echo", string_params("g")))
        got = self.received(request(2, "echo", string_params("g")) + b"HTTP/1.1 GET /\r\n\r\n")
        self.assertEqual([r.request_id for r in got], [2])
        self.assertTrue(self.transport.disconnecting)

    def test_repeat_alone_answered_from_the_last_reply(self) -> None:
        """
        A connection that repeats its last cached request, one per read (one
        request in flight), gets the same reply each time with the new
        request id, framed as the first, and the servant runs once.
        """
        self.received(request(1, "echo", string_params("r")))
        self.transport.clear()
        self.protocol.dataReceived(request(2, "echo", string_params("r")))
        second = self.transport.value()
        for request_id in (3, 4, 0x01020304, -5):
            self.transport.clear()
            self.protocol.dataReceived(request(request_id, "echo", string_params("r")))
            expected = second[:14] + request_id.to_bytes(4, "little", signed=True) + second[18:]
            self.assertEqual(self.transport.value(), expected)
        self.assertEqual(self.servant.calls, ["r"])

    def test_repeat_after_a_change_is_answered_afresh(self) -> None:
        """
        After the adapter's cached replies are invalidated (the registry's
        state changed), a repeat of the connection's last request is
        dispatched again and answered with the new reply, never the old one.
        """
        answers = iter(["before", "after"])

        class Changing(Servant):
            @operation("state", idempotent=True, cacheable=True)
            def state(self, request: Request, params: InputStream) -> bytes:
                out = OutputStream(request.encoding)
                out.write_string(next(answers))
                return out.getvalue()

        changing = Identity("changing", "test")
        self.adapter.add(changing, Changing())

        def state(request_id: int) -> str:
            [reply] = self.received(request(request_id, "state", identity=changing))
            self.assertEqual(reply.request_id, request_id)
            return InputStream(reply.payload, reply.encoding).read_string()

        self.assertEqual([state(1), state(2), state(3)], ["before"] * 3)
        self.adapter.invalidate()
        self.assertEqual([state(4), state(5), state(6)], ["after"] * 3)

    def test_repeat_after_an_object_is_removed(self) -> None:
        """Removing the object a repeat names: the repeat gets ObjectNotExist, not the old reply."""
        for request_id in (1, 2, 3):
            self.received(request(request_id, "echo", string_params("o")))
        self.adapter.remove(ECHO)
        [reply] = self.received(request(4, "echo", string_params("o")))
        self.assertEqual((reply.request_id, reply.status), (4, ReplyStatus.OBJECT_NOT_EXIST))

    def test_repeat_differing_in_any_other_byte_is_not_the_last_reply(self) -> None:
        """
        A read as long as the last cached request but different outside its
        request id (another argument, another compression flag, another
        size field) is not answered with the last reply.
        """
        self.received(request(1, "echo", string_params("a")))
        self.received(request(2, "echo", string_params("a")))
        [reply] = self.received(request(3, "echo", string_params("b")))
        self.assertEqual(InputStream(reply.payload, reply.encoding).read_string(), "b")
        self.received(request(4, "echo", string_params("a")))
        flagged = request(5, "echo", string_params("a"))
        flagged = flagged[:9] + b"\x01" + flagged[10:]
        self.transport.clear()
        self.protocol.dataReceived(flagged)
        self.assertEqual(self.transport.value()[9], 1)
        bad_size = request(6, "echo", string_params("a"))
        bad_size = bad_size[:10] + (len(bad_size) + 1).to_bytes(4, "little") + bad_size[14:]
        self.assertEqual(self.received(bad_size), [])
        self.assertEqual(self.servant.calls, ["a", "b"])

    def test_oneway_repeat_gets_no_reply(self) -> None:
        """A oneway repeat of the last cached request, alone in a read, is not answered."""
        for request_id in (1, 2):
            self.received(request(request_id, "echo", string_params("w")))
        self.assertEqual(self.received(request(0, "echo", string_params("w"))), [])
        self.assertEqual(self.received(request(3, "echo", string_params("w")))[0].request_id, 3)

    def test_repeat_counts_as_acm_activity(self) -> None:
        """Under ACM, a repeat answered from the last reply is activity, at the clock's time."""
        clock = Clock()
        factory = IceServerFactory(self.adapter, max_message_size=4096, clock=clock)
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        for request_id in (1, 2, 3):
            clock.advance(5)
            protocol.dataReceived(request(request_id, "echo", string_params("t")))
            self.assertEqual(protocol.last_activity, clock.seconds())
        self.assertEqual(self.servant.calls, ["t"])

    def test_repeat_after_a_partial_read_of_another(self) -> None:
        """A repeat whose bytes come in two reads is answered once whole, with its own id."""
        for request_id in (1, 2):
            self.received(request(request_id, "echo", string_params("q")))
        data = request(3, "echo", string_params("q"))
        self.assertEqual(self.received(data[:16]), [])
        self.assertEqual([r.request_id for r in self.received(data[16:])], [3])
        repeat = self.received(request(4, "echo", string_params("q")))
        self.assertEqual([r.request_id for r in repeat], [4])
        self.assertEqual(self.servant.calls, ["q"])

    def test_no_memo_for_an_adapter_that_answers_its_own_way(self) -> None:
        """An adapter whose cached_reply is its own is asked for every request."""
        asked: list[bytes] = []

        class Asking(ObjectAdapter):
            def cached_reply(self, key: bytes) -> bytes | None:
                asked.append(key)
                return super().cached_reply(key)

        asking = Asking("Asking")
        asking.add(ECHO, self.servant)
        protocol = IceServerFactory(asking).buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(request(1, "echo", string_params("n")))
        for request_id in (2, 3, 4):
            before = len(asked)
            protocol.dataReceived(request(request_id, "echo", string_params("n")))
            self.assertEqual(len(asked), before + 1)
        self.assertEqual(self.servant.calls, ["n"])

    def test_heartbeat_ignored(self) -> None:
        self.assertEqual(self.received(VALIDATE_CONNECTION), [])
        self.assertTrue(self.transport.connected)

    def test_close_connection_from_client(self) -> None:
        """CloseConnection: earlier replies are still written, then the socket closes."""
        self.received(request(1, "echo", string_params("x")) + CLOSE_CONNECTION)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(replies(self.transport.value())), 1)

    def test_server_close_all(self) -> None:
        self.factory.close_all()
        self.assertTrue(self.transport.value().endswith(CLOSE_CONNECTION))
        self.assertTrue(self.transport.disconnecting)

    def test_bad_magic_closes_connection_and_logs(self) -> None:
        self.received(b"HTTP/1.1 GET /\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)

    def test_oversize_message_closes(self) -> None:
        """A message over Ice.MessageSizeMax is refused from its header alone."""
        header = request(1, "echo", string_params("x"))[:10] + (10_000).to_bytes(4, "little")
        self.received(header)
        self.assertTrue(self.transport.disconnecting)

    def test_truncated_body_closes(self) -> None:
        data = request(1, "echo", string_params("hello"))
        broken = data[:10] + (20).to_bytes(4, "little") + data[14:20]
        self.received(broken)
        self.assertTrue(self.transport.disconnecting)

    def test_bad_input_does_not_disturb_other_connections(self) -> None:
        other = self.factory.buildProtocol(None)
        other_transport = StringTransport()
        other.makeConnection(other_transport)
        self.received(b"garbage" * 3)
        other_transport.clear()
        other.dataReceived(request(1, "echo", string_params("still here")))
        [reply] = replies(other_transport.value())
        self.assertEqual(InputStream(reply.payload, reply.encoding).read_string(), "still here")
        self.assertFalse(other_transport.disconnecting)

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(min_size=0, max_size=200))
    def test_garbage_after_valid_header(self, junk: bytes) -> None:
        """
        Whatever follows a well-formed header, the server answers or closes
        the connection, and never raises.
        """
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        size = 14 + len(junk)
        protocol.dataReceived(b"IceP\x01\x00\x01\x00\x00\x00" + size.to_bytes(4, "little") + junk)
        self.assertEqual(self.flushLoggedErrors(), [])


class _NoMemoAdapter(ObjectAdapter):
    """The same reply cache, asked through a method of its own: no connection memo."""

    def cached_reply(self, key: bytes) -> bytes | None:
        return super().cached_reply(key)


_STEP = st.one_of(
    st.tuples(
        st.just("request"),
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
        st.sampled_from(["a", "b", "bb"]),
        st.sampled_from([0, 1]),
        st.integers(min_value=0, max_value=40),
    ),
    st.tuples(st.just("invalidate")),
)


class MemoDifferentialTests(SynchronousTestCase):
    """A connection's memo of its last reply changes no byte it writes."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_STEP, max_size=30))
    @example([("request", 1, "a", 0, 0), ("request", 2, "a", 0, 0), ("request", 3, "a", 1, 0)])
    @example([("request", 1, "a", 0, 0), ("request", 2, "a", 0, 0), ("invalidate",)] * 2)
    def test_same_bytes_as_without_the_memo(self, steps: list) -> None:  # type: ignore[type-arg]
        """
        Any sequence of requests (repeats with any request id, oneways,
        either compression flag, some split over two reads) and cache
        invalidations: the bytes written are those of a connection whose
        adapter has no memo, and the servant's answers change at each
        invalidation as the state would.
        """
        sides = []
        for kind in (ObjectAdapter, _NoMemoAdapter):
            adapter = kind("Test")
            servant = _Versioned()
            adapter.add(ECHO, servant)
            protocol = IceServerFactory(adapter, max_message_size=4096).buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            sides.append((adapter, servant, protocol, transport))
        for step in steps:
            for adapter, servant, protocol, _transport in sides:
                if step[0] == "invalidate":
                    servant.version += 1
                    adapter.invalidate()
                    continue
                _, request_id, text, flag, cut = step
                data = request(request_id, "echo", string_params(text))
                data = data[:9] + bytes([flag]) + data[10:]
                if 0 < cut < len(data):
                    protocol.dataReceived(data[:cut])
                    protocol.dataReceived(data[cut:])
                else:
                    protocol.dataReceived(data)
        self.assertEqual(sides[0][3].value(), sides[1][3].value())


class _Versioned(Servant):
    """Echoes its argument with the version of the state it answered from."""

    def __init__(self) -> None:
        self.version = 0

    @operation("echo", idempotent=True, cacheable=True)
    def echo(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_string(f"{params.read_string()}@{self.version}")
        return out.getvalue()


class BidirectionalTests(SynchronousTestCase):
    """
    The registry calling an object the client serves on the connection it
    accepted (as IceGrid calls the GUI's observers): the request goes out on
    that connection and the reply comes back on it.
    """

    def setUp(self) -> None:

        self.clock = Clock()
        self.factory = IceServerFactory(ObjectAdapter("Test"), clock=self.clock)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.transport.clear()

    def sent_request(self) -> Request:

        data = self.transport.value()
        self.transport.clear()
        self.assertEqual(data[8], 0, "a request message")
        return decode_request(data[14:])

    def reply(self, request_id: int, body: bytes) -> None:

        self.protocol.dataReceived(reply_message(request_id, body))

    def test_call_and_reply(self) -> None:

        d = self.protocol.call(Identity("obs", "c"), "objectAdded", OperationMode.NORMAL, b"\x01")
        request = self.sent_request()
        self.assertEqual(
            (request.identity, request.operation, request.params),
            (Identity("obs", "c"), "objectAdded", b"\x01"),
        )
        self.assertNoResult(d)
        self.reply(request.request_id, success_body(ENCODING_1_1, string_params("done")))
        self.assertEqual(self.successResultOf(d).read_string(), "done")

    def test_replies_matched_by_id(self) -> None:

        first = self.protocol.call(ECHO, "a", OperationMode.NORMAL)
        first_id = self.sent_request().request_id
        second = self.protocol.call(ECHO, "b", OperationMode.NORMAL)
        second_id = self.sent_request().request_id
        self.reply(second_id, success_body(ENCODING_1_1, string_params("b")))
        self.assertNoResult(first)
        self.assertEqual(self.successResultOf(second).read_string(), "b")
        self.reply(first_id, success_body(ENCODING_1_1, string_params("a")))
        self.assertEqual(self.successResultOf(first).read_string(), "a")

    def test_failure_reply(self) -> None:

        d = self.protocol.call(ECHO, "x", OperationMode.NORMAL)
        request_id = self.sent_request().request_id
        self.reply(request_id, not_exist_body(ReplyStatus.OBJECT_NOT_EXIST, ECHO, "", "x"))
        self.failureResultOf(d, ObjectNotExistError)
        self.assertTrue(self.protocol.is_open)

    def test_timeout_then_late_reply_ignored(self) -> None:

        d = self.protocol.call(ECHO, "x", OperationMode.NORMAL, timeout=5)
        request_id = self.sent_request().request_id
        self.clock.advance(5)
        self.failureResultOf(d, TimeoutError)
        self.reply(request_id, success_body(ENCODING_1_1, b""))  # too late: dropped
        self.assertTrue(self.protocol.is_open)

    def test_connection_loss_fails_calls_in_flight_and_later(self) -> None:

        d = self.protocol.call(ECHO, "x", OperationMode.NORMAL)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, ConnectionDone)
        self.failureResultOf(self.protocol.call(ECHO, "y", OperationMode.NORMAL), ConnectionDone)

    def test_requests_still_served_while_a_call_waits(self) -> None:
        adapter = self.factory.adapter
        adapter.add(ECHO, EchoServant())
        pending = self.protocol.call(ECHO, "x", OperationMode.NORMAL)
        self.transport.clear()
        self.protocol.dataReceived(request(7, "echo", string_params("hi")))
        [answer] = replies(self.transport.value())
        self.assertEqual(answer.request_id, 7)
        self.assertNoResult(pending)

    def test_reply_without_a_call_is_a_protocol_error(self) -> None:

        self.protocol.dataReceived(reply_message(3, success_body(ENCODING_1_1, b"")))
        self.assertFalse(self.protocol.is_open)


class ReadPauseTests(SynchronousTestCase):
    """
    With a read pause, a connection that sent a few requests at once stops
    reading for that long once they are answered; one request at a time, or
    a read of many, never waits.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        adapter = ObjectAdapter("Test")
        adapter.add(ECHO, EchoServant())
        factory = IceServerFactory(adapter, clock=self.clock, read_pause=0.0001)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, count: int) -> list:  # type: ignore[type-arg]
        self.transport.clear()
        self.protocol.dataReceived(
            b"".join(request(i, "echo", string_params(f"m{i}")) for i in range(1, count + 1))
        )
        return replies(self.transport.value())

    def test_pipelined_requests_pause_reading(self) -> None:
        """Answered at once, then no reading until the pause is over."""
        self.assertEqual([r.request_id for r in self.send(3)], [1, 2, 3])
        self.assertEqual(self.transport.producerState, "paused")
        self.clock.advance(0.0001)
        self.assertEqual(self.transport.producerState, "producing")

    def test_one_request_never_pauses(self) -> None:
        self.assertEqual(len(self.send(1)), 1)
        self.assertEqual(self.transport.producerState, "producing")

    def test_many_requests_never_pause(self) -> None:
        self.assertEqual(len(self.send(PAUSE_BELOW)), PAUSE_BELOW)
        self.assertEqual(self.transport.producerState, "producing")

    def test_lost_connection_cancels_the_pause(self) -> None:
        self.send(2)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        # what is left is ACM's (seconds away), not the pause's
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.getTime() < 1], [])

    def test_without_pause(self) -> None:
        """The default: pipelined requests never stop the reading."""
        adapter = ObjectAdapter("Test")
        adapter.add(ECHO, EchoServant())
        protocol = IceServerFactory(adapter, clock=self.clock).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(request(1, "echo", string_params("a")) * 3)
        self.assertEqual(transport.producerState, "producing")
