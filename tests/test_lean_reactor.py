"""
L{gridreg.lean_reactor}: a proper Twisted reactor (Twisted's own reactor
test suites for timed calls, calls from threads and system events pass on
it, it serves Ice requests over real TCP, and a TCP connection it reads
inline ends as Twisted's would), installed by the registry's plugin unless
C{GridReg.LeanReactor=0} or a reactor is already installed.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Callable

from twisted.internet import reactor as installed_reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.test import test_core, test_threads, test_time
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.internet.test.reactormixins import ReactorBuilder
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import (
    HEADER_SIZE,
    VALIDATE_CONNECTION,
    Request,
    decode_reply,
    encode_request,
    parse_header,
)
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.server import IceServerFactory
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode
from gridreg.lean_reactor import LeanEPollReactor, use_lean_reactor
from gridreg.registry.tap import Options

_LEAN = ["gridreg.lean_reactor.LeanEPollReactor"]


class _Lean:
    """Run a Twisted ReactorBuilder suite on the lean reactor only."""

    _reactors = _LEAN


_LOCATOR = Identity("Locator", "Test")


class _Locator(Servant):
    type_id = "::Ice::Locator"
    #: what the answer starts with (a test changes it, as a registry change would)
    prefix = "found"

    @operation("findAdapterById", idempotent=True, cacheable=True)
    def find(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_string(f"{self.prefix} {params.read_string()}")
        return out.getvalue()


def _request(request_id: int, adapter_id: str) -> bytes:
    out = OutputStream(ENCODING_1_1)
    out.write_string(adapter_id)
    return encode_request(
        Request(
            request_id,
            _LOCATOR,
            "",
            "findAdapterById",
            OperationMode.NONMUTATING,
            {},
            ENCODING_1_1,
            out.getvalue(),
        )
    )


class _Collect(Protocol):
    """Send some requests at once; stop the reactor once every reply is in."""

    def __init__(self, requests: bytes, replies: int) -> None:
        self.requests = requests
        self.wanted = replies
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(self.requests)

    def messages(self) -> list[bytes]:
        found, pos = [], 0
        while len(self.received) - pos >= HEADER_SIZE:
            size = parse_header(self.received[pos : pos + HEADER_SIZE]).size
            if len(self.received) - pos < size:
                break
            found.append(self.received[pos : pos + size])
            pos += size
        return found

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.messages()) == self.wanted + 1:  # ValidateConnection first
            self.factory.reactor.stop()


class LeanIceServerTestsBuilder(_Lean, ReactorBuilder):
    def test_requests_answered_over_tcp(self) -> None:
        """
        Requests written in one segment over a real TCP connection are each
        answered, in order, the first from the servant and the repeat from
        the reply cache.
        """
        reactor = self.buildReactor()
        adapter = ObjectAdapter("Test")
        adapter.add(_LOCATOR, _Locator())
        port = reactor.listenTCP(0, IceServerFactory(adapter), interface="127.0.0.1")
        client = _Collect(_request(1, "A") + _request(2, "A") + _request(3, "B"), 3)
        factory = ClientFactory.forProtocol(lambda: client)
        factory.reactor = reactor
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        self.runReactor(reactor, timeout=10)
        first, *replies = client.messages()
        self.assertEqual(first, VALIDATE_CONNECTION)
        decoded = [decode_reply(m[HEADER_SIZE:]) for m in replies]
        self.assertEqual([r.request_id for r in decoded], [1, 2, 3])
        self.assertEqual(
            [InputStream(r.payload).read_string() for r in decoded],
            ["found A", "found A", "found B"],
        )


class _OneInFlight(_Collect):
    """Send each write once every earlier request is answered: one in flight."""

    def __init__(self, writes: list[bytes], replies: int) -> None:
        super().__init__(writes[0], replies)
        self.queue = writes[1:]
        self.sent = 1
        #: write number (1 first) -> what to call just before sending it
        self.before_write: dict[int, Callable[[], None]] = {}

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.queue and len(self.messages()) - 1 >= self.sent:
            self.sent += 1
            self.before_write.get(self.sent, lambda: None)()
            self.transport.write(self.queue.pop(0))


class _Ends(Protocol):
    """The server side: note how the connection ended; raise on data if asked to."""

    def __init__(self, raise_on_data: bool) -> None:
        self.raise_on_data = raise_on_data
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.raise_on_data:
            raise ZeroDivisionError("the protocol's bug")

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.factory.reactor.stop()


class _SendThenClose(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"some bytes")
        self.transport.loseConnection()


class LeanTcpEndTestsBuilder(_Lean, ReactorBuilder):
    def _serve(self, raise_on_data: bool) -> _Ends:
        reactor = self.buildReactor()
        server = _Ends(raise_on_data)
        factory = Factory.forProtocol(lambda: server)
        factory.reactor = reactor
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        reactor.connectTCP(
            "127.0.0.1", port.getHost().port, ClientFactory.forProtocol(_SendThenClose)
        )
        self.runReactor(reactor, timeout=10)
        return server

    def test_peer_close_is_connection_done(self) -> None:
        """A peer that sends and closes: the server's connection ends cleanly."""
        server = self._serve(raise_on_data=False)
        assert server.reason is not None
        self.assertTrue(server.reason.check(ConnectionDone))

    def test_protocol_error_logged_and_connection_closed(self) -> None:
        """
        An exception from C{dataReceived} is logged and closes that
        connection with it as the reason, as Twisted's reactor does.
        """
        server = self._serve(raise_on_data=True)
        assert server.reason is not None
        self.assertTrue(server.reason.check(ZeroDivisionError))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class LeanOneInFlightTestsBuilder(_Lean, ReactorBuilder):
    def answered(self, adapter: ObjectAdapter, client: _OneInFlight) -> list[tuple[int, str]]:
        """Run C{client} against C{adapter} over TCP on a new reactor: each reply's id and text."""
        reactor = self.buildReactor()
        port = reactor.listenTCP(0, IceServerFactory(adapter), interface="127.0.0.1")
        factory = ClientFactory.forProtocol(lambda: client)
        factory.reactor = reactor
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        self.runReactor(reactor, timeout=10)
        _first, *replies = client.messages()
        decoded = [decode_reply(m[HEADER_SIZE:]) for m in replies]
        return [(r.request_id, InputStream(r.payload).read_string()) for r in decoded]

    def test_one_request_in_flight(self) -> None:
        """
        Requests sent one at a time over TCP, each after the last reply (each
        read one request, repeats answered from the cache straight to the
        socket), are each answered once, in order, with their own ids.
        """
        adapter = ObjectAdapter("Test")
        adapter.add(_LOCATOR, _Locator())
        writes = [_request(i, "A") for i in range(1, 6)] + [_request(0, "A") + _request(6, "B")]
        answered = self.answered(adapter, _OneInFlight(writes, 6))
        self.assertEqual([i for i, _ in answered], [1, 2, 3, 4, 5, 6])
        self.assertEqual([text for _, text in answered], ["found A"] * 5 + ["found B"])

    def test_one_in_flight_repeat_after_a_change(self) -> None:
        """
        Over TCP, one request in flight, the same locate repeated: once the
        adapter is invalidated (a registry change) between two of them, the
        next repeat gets the new answer, not the connection's last reply.
        """
        adapter = ObjectAdapter("Test")
        locator = _Locator()
        adapter.add(_LOCATOR, locator)
        client = _OneInFlight([_request(i, "A") for i in range(1, 7)], 6)

        def change() -> None:
            locator.prefix = "moved"
            adapter.invalidate()

        client.before_write = {4: change}
        answered = self.answered(adapter, client)
        self.assertEqual([i for i, _ in answered], [1, 2, 3, 4, 5, 6])
        self.assertEqual([text for _, text in answered], ["found A"] * 3 + ["moved A"] * 3)


class _Reader:
    """A readable socket's reader that records its reads in a shared list."""

    def __init__(self, sock: socket.socket, order: list[str]) -> None:
        self.sock = sock
        self.order = order

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "reader"

    def doRead(self) -> None:
        self.order.append("read " + self.sock.recv(16).decode())

    def connectionLost(self, reason: Failure) -> None:
        pass


class LeanThreadCallsFirstTestsBuilder(_Lean, ReactorBuilder):
    def test_thread_calls_run_before_the_poll_s_events(self) -> None:
        """
        A call a thread queued while the reactor polled (as a store's commit
        queues its result) runs as soon as the poll returns, before the
        event that woke it (the next message): its callbacks come first,
        not one event later. A call queued meanwhile waits for the loop.
        """
        reactor = self.buildReactor()
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        order: list[str] = []
        reader = _Reader(ours, order)
        reactor.addReader(reader)
        self.addCleanup(reactor.removeReader, reader)

        def commit() -> None:
            order.append("commit")
            reactor.threadCallQueue.append((order.append, ("later",), {}))

        reactor.threadCallQueue.append((commit, (), {}))
        theirs.sendall(b"push")
        reactor.doPoll(1.0)
        self.assertEqual(order, ["commit", "read push"])
        self.assertEqual(len(reactor.threadCallQueue), 1)

    def test_a_thread_call_that_raises_is_logged_and_the_next_runs(self) -> None:
        """As Twisted's handler does: logged as critical, and the calls after it run."""
        reactor = self.buildReactor()
        order: list[str] = []
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def broken() -> None:
            raise ZeroDivisionError("in a thread's call")

        reactor.threadCallQueue.append((broken, (), {}))
        reactor.threadCallQueue.append((order.append, ("next",), {}))
        reactor.doPoll(0)
        self.assertEqual(order, ["next"])
        self.assertEqual(reactor.threadCallQueue, [])
        [event] = [e for e in events if "log_failure" in e]
        self.assertEqual(event["log_format"], "while calling from thread")
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class LeanTurnEndTestsBuilder(_Lean, ReactorBuilder):
    """
    C{call_at_turn_end}: what a turn's handlers leave for its end (a
    session's answers, sent together) runs once the turn's events are
    handled, before the reactor polls again or runs a timed call.
    """

    def test_runs_after_every_event_of_the_poll(self) -> None:
        """Two reads in one poll each leave a call: both run after both reads, in order."""
        reactor = self.buildReactor()
        order: list[str] = []
        for name in ("a", "b"):
            ours, theirs = socket.socketpair()
            self.addCleanup(ours.close)
            self.addCleanup(theirs.close)
            reader = _Reader(ours, order)
            read = reader.doRead

            def doRead(read: Callable[[], None] = read, name: str = name) -> None:
                read()
                reactor.call_at_turn_end(lambda: order.append("end " + name))

            reader.doRead = doRead  # type: ignore[method-assign]
            reactor.addReader(reader)
            self.addCleanup(reactor.removeReader, reader)
            theirs.sendall(name.encode())

        def stop_once_read() -> None:
            if len(order) < 4:
                reactor.callLater(0.01, stop_once_read)
            else:
                reactor.stop()

        reactor.callWhenRunning(stop_once_read)
        self.runReactor(reactor)
        self.assertEqual(sorted(order[:2]), ["read a", "read b"])
        self.assertEqual(order[2:], ["end " + order[0][-1], "end " + order[1][-1]])

    def test_before_the_next_timed_call_and_what_it_queues_too(self) -> None:
        """
        A call left by a timed call runs before the next turn's timed calls,
        and so does one it leaves itself.
        """
        reactor = self.buildReactor()
        order: list[str] = []

        def first() -> None:
            order.append("timed")
            reactor.callLater(0, lambda: (order.append("next turn"), reactor.stop()))
            self.assertTrue(reactor.call_at_turn_end(end))

        def end() -> None:
            order.append("end")
            reactor.call_at_turn_end(lambda: order.append("end of end"))

        reactor.callWhenRunning(first)
        self.runReactor(reactor)
        self.assertEqual(order, ["timed", "end", "end of end", "next turn"])

    def test_an_error_is_logged_and_the_next_call_runs(self) -> None:
        reactor = self.buildReactor()
        order: list[str] = []

        def first() -> None:
            reactor.call_at_turn_end(lambda: 1 // 0)
            reactor.call_at_turn_end(lambda: (order.append("next"), reactor.stop()))

        reactor.callWhenRunning(first)
        self.runReactor(reactor)
        self.assertEqual(order, ["next"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_declined_when_the_loop_is_not_running(self) -> None:
        """Not running: nothing is queued, and the caller is told to do the work itself."""
        reactor = self.buildReactor()
        called: list[bool] = []
        self.assertFalse(reactor.call_at_turn_end(lambda: called.append(True)))
        reactor.callWhenRunning(reactor.stop)
        self.runReactor(reactor)
        self.assertEqual(called, [])


class LeanTimeTestsBuilder(_Lean, test_time.TimeTestsBuilder):
    pass


class LeanThreadTestsBuilder(_Lean, test_threads.ThreadTestsBuilder):
    pass


class LeanSystemEventTestsBuilder(_Lean, test_core.SystemEventTestsBuilder):
    pass


for _builder in (
    LeanIceServerTestsBuilder,
    LeanOneInFlightTestsBuilder,
    LeanTcpEndTestsBuilder,
    LeanThreadCallsFirstTestsBuilder,
    LeanTurnEndTestsBuilder,
    LeanTimeTestsBuilder,
    LeanThreadTestsBuilder,
    LeanSystemEventTestsBuilder,
):
    globals().update(_builder.makeTestCaseClasses())
del _builder


class UseLeanReactorTests(SynchronousTestCase):
    def test_installed_reactor_left_alone(self) -> None:
        """
        Once a reactor is installed (trial's here, or one chosen with
        C{--reactor}), nothing is installed over it, and the answer says
        whether it is the lean one.
        """
        self.assertIn("twisted.internet.reactor", sys.modules)
        self.assertFalse(use_lean_reactor(True))
        self.assertIs(sys.modules["twisted.internet.reactor"], installed_reactor)

    def test_plugin_options_keep_the_reactor(self) -> None:
        """Parsing the registry plugin's options in a running process changes no reactor."""
        options = Options()
        options.parseOptions(["--replica-name", "Master"])
        self.assertTrue(options.registry_config.lean_reactor)
        self.assertIs(sys.modules["twisted.internet.reactor"], installed_reactor)
        self.assertNotIsInstance(installed_reactor, LeanEPollReactor)
