# -*- test-case-name: tests.test_prompt_write -*-
"""
Tests for L{gridreg.protocol.prompt}: AMP boxes that reach the socket in the
reactor turn they are sent, on real loopback TCP (the peer is a plain
non-blocking socket, read without waiting: on loopback a sent byte is in
the peer's receive queue as soon as C{send} returns).
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.protocols import amp
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from gridreg.protocol import prompt
from gridreg.protocol.boxes import new_box
from gridreg.protocol.prompt import (
    NOW,
    TURN,
    PromptWriter,
    ThreadAnswer,
    encoded_fields_after_ask,
    serialize,
)


class Prompt(PromptWriter, amp.AMP):
    def __init__(self, mode: str | None, made: Deferred[Prompt]) -> None:
        super().__init__()
        self.prompt = mode
        self.prompt_clock = reactor
        self._made = made

    def connectionMade(self) -> None:
        super().connectionMade()
        self._made.callback(self)


def box(n: int) -> amp.AmpBox:
    return amp.AmpBox({b"_ask": b"%d" % n, b"_command": b"Push", b"serial": b"%d" % n})


def pending(peer: socket.socket) -> bytes:
    """What the peer can read now, without waiting."""
    try:
        return peer.recv(1 << 20, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


async def received_as_long_as(peer: socket.socket, expected: bytes) -> bytes:
    """What the peer reads, as the reactor turns, until it has as many bytes as C{expected}."""
    received = b""
    while len(received) < len(expected):
        received += pending(peer)
        await deferLater(reactor, 0.001, lambda: None)
    return received


async def connected(
    case: TestCase, make: Callable[[Deferred[Prompt]], Prompt]
) -> tuple[Prompt, socket.socket]:
    """
    A protocol from C{make} on a real loopback TCP connection, and the raw
    non-blocking socket at the other end (what the peer reads is what went
    out on the wire).
    """
    made: Deferred[Prompt] = Deferred()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: make(made))
    )
    case.addCleanup(port.stopListening)
    peer = socket.socket()
    peer.setblocking(False)
    case.addCleanup(peer.close)
    try:
        peer.connect(("127.0.0.1", port.getHost().port))
    except BlockingIOError:
        pass  # completes once the reactor accepts
    protocol = await made
    case.addCleanup(protocol.transport.abortConnection)
    return protocol, peer


class PromptWriterTests(TestCase):
    async def connect(self, mode: str | None) -> tuple[Prompt, socket.socket]:
        return await connected(self, lambda made: Prompt(mode, made))

    async def test_now_sends_each_box_before_the_reactor_turns(self) -> None:
        """With NOW a box is on the wire when C{sendBox} returns, boxes in order."""
        protocol, peer = await self.connect(NOW)
        protocol.sendBox(box(1))
        self.assertEqual(pending(peer), box(1).serialize())
        protocol.sendBox(box(2))
        protocol.sendBox(box(3))
        self.assertEqual(pending(peer), box(2).serialize() + box(3).serialize())

    async def test_turn_sends_a_turns_boxes_together_at_its_end(self) -> None:
        """With TURN the boxes of one turn wait for its end, then leave together, in order."""
        protocol, peer = await self.connect(TURN)
        for n in range(5):
            protocol.sendBox(box(n))
        self.assertEqual(pending(peer), b"")
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(pending(peer), b"".join(box(n).serialize() for n in range(5)))

    async def test_turn_on_an_idle_socket_bypasses_the_reactor(self) -> None:
        """
        With TURN on plain TCP and nothing buffered, a turn's boxes go to the
        socket at its end without the transport registering for writable
        events (the admin's answer to each write).
        """
        protocol, peer = await self.connect(TURN)
        registered: list[Any] = []
        protocol.transport.startWriting = lambda: registered.append(True)  # type: ignore[method-assign]
        protocol.sendBox(box(1))
        protocol.sendBox(box(2))
        self.assertEqual(pending(peer), b"")
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(pending(peer), box(1).serialize() + box(2).serialize())
        self.assertEqual(registered, [])

    async def test_turn_buffers_what_the_socket_does_not_take(self) -> None:
        """
        A turn's boxes larger than the socket's buffers: what the direct
        send leaves is buffered and sent by the reactor as the peer reads,
        with no second send at the turn's end; every byte arrives, in order.
        """
        protocol, peer = await self.connect(TURN)
        protocol.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = [amp.AmpBox({b"_answer": b"%d" % n, b"data": bytes([n]) * 60_000}) for n in range(20)]
        for b in big:
            protocol.sendBox(b)
        await deferLater(reactor, 0, lambda: None)
        self.assertTrue(protocol.transport.dataBuffer or protocol.transport._tempDataBuffer)
        expected = b"".join(b.serialize() for b in big)
        self.assertEqual(await received_as_long_as(peer, expected), expected)

    async def test_turn_boxes_leave_before_a_close_in_the_same_turn(self) -> None:
        """
        A turn that answers and then closes the connection (a refused box):
        the answers held for the turn's end still reach the peer, before the
        end of stream.
        """
        protocol, peer = await self.connect(TURN)
        lost: Deferred[None] = Deferred()
        protocol.connectionLost = lambda reason: lost.callback(None)  # type: ignore[method-assign]
        protocol.sendBox(box(1))
        protocol.transport.loseConnection()
        protocol.sendBox(box(2))
        await lost
        self.assertEqual(pending(peer), box(1).serialize() + box(2).serialize())
        self.assertEqual(pending(peer), b"")  # end of stream

    async def test_without_prompt_twisted_writes_later(self) -> None:
        """The default (None) leaves the write to the reactor's next writable event."""
        protocol, peer = await self.connect(None)
        protocol.sendBox(box(1))
        self.assertEqual(pending(peer), b"")

    async def test_a_closing_connection_is_left_to_the_reactor(self) -> None:
        """
        A box written while the transport closes is not sent early: the
        reactor sends what is buffered, in order, then closes cleanly.
        """
        protocol, peer = await self.connect(NOW)
        protocol.sendBox(box(1))
        lost: Deferred[None] = Deferred()
        reasons: list[Any] = []
        protocol.connectionLost = lambda reason: (  # type: ignore[method-assign]
            reasons.append(reason),
            lost.callback(None),
        )
        protocol.transport.loseConnection()
        protocol.sendBox(box(2))
        self.assertEqual(pending(peer), box(1).serialize())
        await lost
        self.assertEqual(pending(peer), box(2).serialize())
        self.assertEqual(pending(peer), b"")  # end of stream: recv gives b""
        self.assertEqual(reasons[0].type.__name__, "ConnectionDone")

    async def test_now_on_an_idle_socket_bypasses_the_reactor(self) -> None:
        """
        With NOW on plain TCP and nothing buffered, a box goes to the socket
        without the transport ever registering for writable events.
        """
        protocol, peer = await self.connect(NOW)
        registered: list[Any] = []
        protocol.transport.startWriting = lambda: registered.append(True)  # type: ignore[method-assign]
        protocol.sendBox(box(1))
        self.assertEqual(pending(peer), box(1).serialize())
        self.assertEqual(registered, [])

    async def test_now_buffers_what_the_socket_does_not_take(self) -> None:
        """
        Boxes larger than the socket's buffers: what C{send} leaves is
        buffered and sent by the reactor as the peer reads; every byte
        arrives, in order.
        """
        protocol, peer = await self.connect(NOW)
        protocol.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = [
            amp.AmpBox({b"_command": b"Push", b"n": b"%d" % n, b"data": bytes([n]) * 60_000})
            for n in range(40)
        ]
        for b in big:
            protocol.sendBox(b)
        self.assertTrue(protocol.transport.dataBuffer or protocol.transport._tempDataBuffer)
        expected = b"".join(b.serialize() for b in big)
        self.assertEqual(await received_as_long_as(peer, expected), expected)

    async def test_now_over_tls_goes_through_tls(self) -> None:
        """
        Under TLS (whose wrapper passes attribute reads through to the TCP
        connection under it) a NOW box is still encrypted: the peer
        decrypts exactly the box.
        """
        from twisted.internet import ssl
        from twisted.protocols.tls import TLSMemoryBIOFactory
        from twisted.test import __file__ as twisted_tests

        pem = (FilePath(twisted_tests).sibling("server.pem")).getContent()
        certificate = ssl.PrivateCertificate.loadPEM(pem)
        made: Deferred[Prompt] = Deferred()
        server = TLSMemoryBIOFactory(
            certificate.options(), False, Factory.forProtocol(lambda: Prompt(NOW, made))
        )
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
        self.addCleanup(port.stopListening)
        received: list[amp.AmpBox] = []
        got: Deferred[None] = Deferred()

        class Peer(amp.AMP):
            def ampBoxReceived(self, box: amp.AmpBox) -> None:
                received.append(box)
                got.callback(None)

        client = TLSMemoryBIOFactory(
            ssl.CertificateOptions(verify=False), True, Factory.forProtocol(Peer)
        )
        peer = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(client)
        self.addCleanup(peer.transport.abortConnection)
        protocol = await made
        protocol.sendBox(box(1))
        await got
        self.assertEqual(received, [box(1)])


class TurnEnds:
    """
    A clock with the lean reactor's C{call_at_turn_end}, its calls run when
    the test says; C{callLater} is refused while the hook accepts.
    """

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.ends: list[Callable[[], object]] = []
        self.later: list[Any] = []

    def call_at_turn_end(self, f: Callable[[], object]) -> bool:
        if self.accept:
            self.ends.append(f)
        return self.accept

    def callLater(self, delay: float, f: Callable[[], object]) -> Any:
        assert not self.accept, "callLater while the turn-end hook accepts"
        call = reactor.callLater(delay, f)
        self.later.append(call)
        return call

    def end_turn(self) -> None:
        ends, self.ends = self.ends, []
        for f in ends:
            f()


class TurnEndHookTests(TestCase):
    """L{TURN} with a reactor's turn-end hook: no timer per turn."""

    async def connect(self, clock: TurnEnds) -> tuple[Prompt, socket.socket]:
        protocol, peer = await connected(self, lambda made: Prompt(TURN, made))
        protocol.prompt_clock = clock
        return protocol, peer

    async def test_a_turns_boxes_leave_together_at_the_hooks_call(self) -> None:
        clock = TurnEnds()
        protocol, peer = await self.connect(clock)
        for n in range(3):
            protocol.sendBox(box(n))
        self.assertEqual(len(clock.ends), 1)  # one call for the turn, not one per box
        self.assertEqual(pending(peer), b"")
        clock.end_turn()
        self.assertEqual(pending(peer), b"".join(box(n).serialize() for n in range(3)))
        protocol.sendBox(box(3))  # the next turn has a call of its own
        self.assertEqual(len(clock.ends), 1)
        clock.end_turn()
        self.assertEqual(pending(peer), box(3).serialize())

    async def test_a_lost_connection_s_call_sends_nothing(self) -> None:
        clock = TurnEnds()
        protocol, peer = await self.connect(clock)
        protocol.sendBox(box(1))
        lost: Deferred[None] = Deferred()
        lose = protocol.connectionLost

        def connectionLost(reason: Any) -> None:
            lose(reason)
            lost.callback(None)

        protocol.connectionLost = connectionLost  # type: ignore[method-assign]
        protocol.transport.abortConnection()
        await lost
        sent: list[Any] = []
        self.patch(prompt, "send_direct", lambda *a: sent.append(a))
        self.patch(prompt, "send_now", lambda *a: sent.append(a))
        clock.end_turn()  # neither sends nor raises
        self.assertEqual(sent, [])

    async def test_a_declining_hook_leaves_it_to_a_timed_call(self) -> None:
        """A reactor whose loop does not run (the hook says no): a C{callLater(0)}, as before."""
        clock = TurnEnds(accept=False)
        protocol, peer = await self.connect(clock)
        protocol.sendBox(box(1))
        protocol.sendBox(box(2))
        self.assertEqual(len(clock.later), 1)
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(pending(peer), box(1).serialize() + box(2).serialize())


class Answering(Prompt):
    """A NOW connection whose answers another thread may send."""

    def __init__(self, mode: str | None, made: Deferred[Prompt]) -> None:
        super().__init__(mode, made)
        self.send_lock = threading.Lock()


def from_a_thread(answer: ThreadAnswer) -> bool:
    """
    Call C{send_from_thread} on a real thread of its own, as the store's
    thread does; what it returned (whether it sent the answer).
    """
    went: list[bool] = []
    worker = threading.Thread(target=lambda: went.append(answer.send_from_thread()))
    worker.start()
    worker.join()
    return went[0]


class ThreadAnswerTests(TestCase):
    async def connect(self) -> tuple[Answering, socket.socket]:
        protocol, peer = await connected(self, lambda made: Answering(NOW, made))
        return protocol, peer  # type: ignore[return-value]

    def amp_answer(self) -> bytes:
        return amp.AmpBox({b"_answer": b"7", b"serial": b"12"}).serialize()

    async def test_an_armed_answer_leaves_from_the_thread_once(self) -> None:
        """
        Armed, on an idle connection: the thread's send puts AMP's exact
        answer on the wire; AMP's own send of it afterwards sends nothing.
        """
        protocol, peer = await self.connect()
        answer = ThreadAnswer(protocol, b"7", serial=b"12")
        answer.arm()
        self.assertTrue(from_a_thread(answer))  # it went: the store need not wake the reactor
        self.assertEqual(pending(peer), self.amp_answer())
        answer._sendTo(protocol)
        self.assertFalse(from_a_thread(answer))
        self.assertEqual(pending(peer), b"")

    async def test_an_answer_not_armed_is_left_to_the_reactor(self) -> None:
        protocol, peer = await self.connect()
        answer = ThreadAnswer(protocol, b"7", serial=b"12")
        self.assertFalse(from_a_thread(answer))  # the reactor must be woken to send it
        self.assertEqual(pending(peer), b"")
        answer._sendTo(protocol)
        self.assertEqual(pending(peer), self.amp_answer())

    async def test_the_reactor_first_means_the_thread_sends_nothing(self) -> None:
        protocol, peer = await self.connect()
        answer = ThreadAnswer(protocol, b"7", serial=b"12")
        answer.arm()
        answer._sendTo(protocol)
        from_a_thread(answer)
        self.assertEqual(pending(peer), self.amp_answer())

    async def test_a_connection_with_buffered_boxes_keeps_their_order(self) -> None:
        """
        Boxes the reactor buffered (the socket did not take them at once)
        go first: the thread leaves the answer to the reactor, which sends
        it behind them.
        """
        protocol, peer = await self.connect()
        protocol.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = amp.AmpBox({b"_command": b"Push", b"data": b"x" * 60_000})
        for _ in range(8):
            protocol.sendBox(big)
        self.assertTrue(protocol.transport.dataBuffer or protocol.transport._tempDataBuffer)
        answer = ThreadAnswer(protocol, b"7", serial=b"12")
        answer.arm()
        from_a_thread(answer)
        answer._sendTo(protocol)
        expected = big.serialize() * 8 + self.amp_answer()
        self.assertEqual(await received_as_long_as(peer, expected), expected)


class SerializeTests(TestCase):
    def test_the_same_bytes_as_amp(self) -> None:
        for b in (
            amp.AmpBox(),
            box(7),
            amp.AmpBox({b"z": b"", b"a" * 255: b"v" * 65535, b"_answer": b"1f"}),
        ):
            self.assertEqual(serialize(b), b.serialize())

    def test_the_admin_writes_boxes_are_amps(self) -> None:
        """
        The boxes of an admin write (the call, its answer, a push) built by
        L{new_box} and encoded by L{serialize} (their keys' fields kept from
        earlier boxes) are AMP's bytes for AMP's boxes of the same values.
        """
        fields = [
            {
                b"_ask": b"a1",
                b"_command": b"AdminObjectAdd",
                b"proxy": b"o:tcp -p 1",
                b"type": b"::T",
            },
            {b"_answer": b"a1", b"serial": b"12"},
            {
                b"_ask": b"9",
                b"_command": b"PushChanges",
                b"changes": b"[1]",
                b"database_id": b"d",
                b"transfer": b"",
            },
        ]
        for _ in range(2):
            for f in fields:
                made = new_box(f)
                self.assertIsInstance(made, amp.AmpBox)
                self.assertEqual(made, amp.AmpBox(f))
                self.assertEqual(serialize(made), amp.AmpBox(f).serialize())
                self.assertEqual(serialize(dict(f)), amp.AmpBox(f).serialize())

    def test_after_ask_is_the_rest_of_amps_bytes(self) -> None:
        """L{encoded_fields_after_ask} is what AMP writes after the box's C{_ask} field."""
        rest = {
            b"_command": b"PushChanges",
            b"changes": b"[1]",
            b"database_id": b"d",
            b"transfer": b"",
        }
        whole = amp.AmpBox({b"_ask": b"3f", **rest}).serialize()
        after_ask = encoded_fields_after_ask(rest)
        assert after_ask is not None
        self.assertEqual(whole, b"\x00\x04_ask\x00\x023f" + after_ask)
        self.assertIsNone(encoded_fields_after_ask({b"_answer": b"1", b"x": b""}))
        self.assertIsNone(encoded_fields_after_ask({b"_command": b"P", b"x": b"v" * 65536}))

    def test_a_known_key_with_a_refused_value_is_refused(self) -> None:
        serialize(amp.AmpBox({b"serial": b"1"}))
        with self.assertRaises(amp.TooLong):
            serialize(amp.AmpBox({b"serial": b"v" * 65536}))
        with self.assertRaises(TypeError):
            serialize(amp.AmpBox({b"serial": "1"}))

    def test_what_amp_refuses_is_refused(self) -> None:
        with self.assertRaises(amp.TooLong):
            serialize(amp.AmpBox({b"k": b"v" * 65536}))
        with self.assertRaises(amp.TooLong):
            serialize(amp.AmpBox({b"k" * 256: b"v"}))
        with self.assertRaises(TypeError):
            serialize(amp.AmpBox({b"k": "text"}))


class LockSendsTests(TestCase):
    """L{PromptWriter.lock_sends}: the socket's close waits for a thread's send."""

    async def test_the_socket_closes_under_the_send_lock(self) -> None:
        """
        Once another thread may send, the transport closes its socket only
        while it holds the send lock, however often C{lock_sends} was called:
        a thread that found the connection idle sends before the descriptor
        is closed, never after (when the kernel may have reused it).
        """
        protocol, peer = await connected(self, lambda made: Prompt(NOW, made))
        transport: Any = protocol.transport
        held_at_close: list[bool] = []
        close = transport._closeSocket

        def recording_close(orderly: bool) -> None:
            held_at_close.append(lock.locked())
            close(orderly)

        transport._closeSocket = recording_close
        lock = protocol.lock_sends()
        self.assertIs(protocol.lock_sends(), lock)
        self.assertIs(protocol.send_lock, lock)
        transport.loseConnection()
        while pending_or_eof(peer) != b"":
            await deferLater(reactor, 0.001, lambda: None)
        self.assertEqual(held_at_close, [True])

    async def test_a_thread_after_the_close_sends_nothing(self) -> None:
        """An armed answer the thread tries after the connection closed goes nowhere."""
        protocol, peer = await connected(self, lambda made: Answering(NOW, made))
        protocol.lock_sends()
        answer = ThreadAnswer(protocol, b"7", serial=b"12")
        answer.arm()
        protocol.transport.loseConnection()
        while pending_or_eof(peer) != b"":
            await deferLater(reactor, 0.001, lambda: None)
        from_a_thread(answer)
        self.assertEqual(pending_or_eof(peer), b"")


def pending_or_eof(peer: socket.socket) -> bytes | None:
    """What the peer can read now: its bytes, b"" at the end of the stream, None if nothing yet."""
    try:
        return peer.recv(1 << 20, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
