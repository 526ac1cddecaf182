# -*- test-case-name: tests.test_amp_boxes -*-
"""
AMP boxes that reach the socket without waiting for the next reactor turn.

Twisted's TCP transport sends what it is given on the next writable event:
a box written in one reactor turn leaves in the next, after another
C{epoll_wait} and another pass through the reactor's loop. A replicated
write is six messages (the admin's call, two pushes, two acknowledgements,
the answer), so that was a reactor turn per message, on every replica.

L{PromptWriter} sends sooner, in one of two ways:

    - C{NOW}: each box is handed to the socket as soon as it is written.
      For connections that send one box per event (a master's push to a
      slave, a slave's acknowledgement). On plain TCP with nothing queued
      before it, the box goes to the socket's C{send} without passing
      through the transport's buffer: that buffer's write costs two
      C{epoll_ctl} calls (registering the socket for writable events, then
      unregistering it), which were a third of a slave's system calls per
      write. What C{send} does not take is buffered as before.
    - C{TURN}: the boxes written in one reactor turn are sent together at
      its end (the lean reactor's C{call_at_turn_end}, else a
      C{callLater(0)}: both run before the reactor polls again). For
      connections that may answer many calls at once (the admin session,
      where a group commit answers every write it holds in one turn), so
      they still share one system call; over TLS, L{batch_tls_turns} makes
      them one TLS record too. On plain TCP the turn's boxes wait in the
      protocol, not the transport, and go to C{send} directly at the end of
      the turn when nothing is buffered there: the admin's answer to a
      write at one in flight, and the admin client's call, had the same two
      C{epoll_ctl} per box as the pushes had.

Only the system call moves (L{gridreg.direct_send}, which the Ice server's
replies use too).
"""

from __future__ import annotations

import struct
import threading
from contextlib import nullcontext
from typing import Any, Callable, Optional

from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.direct_send import PLAIN_TCP, idle_socket, send_direct, send_now

#: write each box to the socket at once
NOW = "now"
#: write the boxes of one reactor turn at its end
TURN = "turn"

#: C{_prompt_call} when the reactor's turn-end hook will send the turn's boxes
_AT_TURN_END = object()


_length = struct.Struct("!H").pack


#: the encoded length and bytes of the keys seen, which are few (AMP's own and
#: the commands' arguments); bounded in case a peer sends many. Used from the
#: store's thread too (L{ThreadAnswer}): a dict's get and set are atomic
_key_fields: dict[bytes, bytes] = {}
_KEY_FIELDS_KEPT = 256


def _amp_serialize(box: dict[bytes, bytes]) -> bytes:
    """AMP's own encoding, which raises on what AMP refuses."""
    return amp.AmpBox.serialize(box)  # type: ignore[arg-type,no-any-return]


def serialize(box: dict[bytes, bytes]) -> bytes:
    """
    C{box.serialize()}, the same bytes in one pass with fewer calls (three
    boxes a write on a master); a box AMP would refuse (a key or value not
    bytes, or too long) goes to AMP's own, which raises as it does.
    """
    data = _encoded(box)
    return _amp_serialize(box) if data is None else data


def _encoded(box: dict[bytes, bytes]) -> Optional[bytes]:
    """L{serialize}'s one pass; None for a box AMP would refuse."""
    parts: list[bytes] = []
    keys = _key_fields
    for key in sorted(box):
        value = box[key]
        head = keys.get(key)
        if head is None:
            if type(key) is not bytes or len(key) > amp.MAX_KEY_LENGTH:
                return None
            head = _length(len(key)) + key
            if len(keys) < _KEY_FIELDS_KEPT:
                keys[key] = head
        if type(value) is not bytes:
            return None
        size = len(value)
        if size > amp.MAX_VALUE_LENGTH:
            return None
        parts += (head, _length(size), value)
    parts.append(b"\x00\x00")
    return b"".join(parts)


_ASK = b"_ask"
_ASK_KEY = _length(len(_ASK)) + _ASK


def amp_field(data: bytes) -> bytes:
    """A key or value as AMP writes it: its two-byte length, then its bytes."""
    if len(data) > amp.MAX_VALUE_LENGTH:
        raise ValueError(f"{len(data)} bytes: longer than an AMP value")
    return _length(len(data)) + data


def encoded_fields_after_ask(box: dict[bytes, bytes]) -> Optional[bytes]:
    """
    What L{serialize} writes for a call's whole C{box} (C{_command}
    included) after its C{_ask} field (the tag, the only field that differs
    between the connections it goes to): a push encoded once for every
    slave (L{ThreadCall}'s C{after_ask}). None for a box whose keys do not
    all sort after C{_ask}, or that AMP would refuse: those are encoded whole.
    """
    for key in box:
        if type(key) is not bytes or key <= _ASK:
            return None
    return _encoded(box)


def batch_tls_turns(transport: Any, clock: Any) -> None:
    """
    Ask the write-through TLS transport of L{gridreg.endpoints} (internal
    sessions) to gather the writes of each reactor turn into one record,
    sent at its end; other transports are left as they are.
    """
    batch = getattr(transport, "batch_writes", None)
    if batch is not None:
        batch(clock)


class PromptWriter:
    """
    Mix-in for an C{amp.AMP} subclass, before it in the bases: set
    C{prompt} (L{NOW} or L{TURN}, None for Twisted's own pace) and, for
    L{TURN}, C{prompt_clock}. A protocol on which another thread may send
    (L{ThreadAnswer}, L{ThreadCall}) calls L{lock_sends}: its boxes are then
    sent under C{send_lock}.
    """

    prompt: Optional[str] = None
    prompt_clock: Any = None
    _prompt_call: Any = None
    #: a plain TCP connection's boxes of this turn (L{TURN}), not yet in its transport
    _turn_boxes: Optional[list[bytes]] = None
    #: held around every send when another thread may send too (L{ThreadAnswer})
    send_lock: Optional[threading.Lock] = None
    #: what a thread's send left unsent, to go before anything else
    _thread_tail: Optional[bytes] = None

    def lock_sends(self) -> threading.Lock:
        """
        Let another thread send on this connection (L{ThreadAnswer},
        L{ThreadCall}): every send holds C{send_lock} from now on, and on
        plain TCP so does the transport's close of its socket. Without the
        latter a thread that found the connection idle could send after the
        reactor closed the descriptor, to whatever connection the kernel
        had given that number since.
        """
        lock = self.send_lock
        if lock is None:
            lock = self.send_lock = threading.Lock()
        transport: Any = self.transport  # type: ignore[attr-defined]
        if type(transport) in PLAIN_TCP and not getattr(
            transport._closeSocket, "under_send_lock", False
        ):
            close = transport._closeSocket

            def close_under_lock(orderly: bool) -> None:
                with lock:
                    close(orderly)

            close_under_lock.under_send_lock = True  # type: ignore[attr-defined]
            transport._closeSocket = close_under_lock
        return lock

    def sendBox(self, box: amp.AmpBox) -> None:
        lock = self.send_lock
        if lock is None:
            self._send_box(box)
            return
        with lock:
            if self._thread_tail:  # what a thread's send left over goes first
                self._write_thread_tail()
            self._send_box(box)

    def thread_send(self, data: bytes) -> bool:
        """
        From another thread, C{send_lock} held: send C{data} now if this is
        an idle plain TCP connection (L{idle_socket}) with nothing of a
        thread's left over; whether it went. What the socket does not take
        goes first on the next send.
        """
        this: Any = self
        socket = idle_socket(this.transport)
        if socket is None or this._locked or self._thread_tail:
            return False
        try:
            sent = socket.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False  # the reactor meets the error on its own send, and closes
        if sent < len(data):
            self._thread_tail = data[sent:]
        return True

    def _write_thread_tail(self) -> None:
        """Under C{send_lock}: what a thread's send left over goes first."""
        tail, self._thread_tail = self._thread_tail, None
        transport: Any = self.transport  # type: ignore[attr-defined]
        if tail and transport is not None:
            transport.write(tail)

    def _send_box(self, box: amp.AmpBox) -> None:
        this: Any = self
        if this._locked or this.transport is None or this._startingTLSBuffer is not None:
            self._flush_turn()  # what this turn wrote before keeps its place
            super().sendBox(box)  # type: ignore[misc]  # AMP refuses, or holds it, as it does
            return
        data = serialize(box)
        if self.prompt == NOW:
            socket = idle_socket(this.transport)
            if socket is not None:
                send_direct(socket, data)
                return
        elif self.prompt == TURN and self.prompt_clock is not None:
            if self._turn_boxes is not None:
                self._turn_boxes.append(data)
                return
            if type(this.transport) in PLAIN_TCP:
                self._turn_boxes = [data]
                if self._prompt_call is None:
                    self._at_end_of_turn()
                return
        this.transport.write(data)
        if self.prompt == NOW:
            send_now(this.transport)
        elif self.prompt == TURN and self._prompt_call is None and self.prompt_clock is not None:
            self._at_end_of_turn()

    def _at_end_of_turn(self) -> None:
        """
        Have L{_end_of_turn} run at this turn's end: by the reactor's hook
        for it (L{gridreg.lean_reactor}), else by a C{callLater(0)}, whose
        timer's way through the heap was about thirty Python calls per answer.
        """
        clock = self.prompt_clock
        at_turn_end = getattr(clock, "call_at_turn_end", None)
        if at_turn_end is not None and at_turn_end(self._end_of_turn):
            self._prompt_call = _AT_TURN_END
        else:
            self._prompt_call = clock.callLater(0, self._end_of_turn)

    def _flush_turn(self) -> bool:
        """
        Hand the boxes this turn held back to the socket: directly if the
        transport is idle, else through its buffer, as any write. Whether
        they went directly (the transport had nothing buffered: what the
        socket did not take, if anything, is all its buffer holds, and the
        transport waits to write it).
        """
        boxes, self._turn_boxes = self._turn_boxes, None
        if not boxes:
            return False
        transport: Any = self.transport  # type: ignore[attr-defined]
        data = boxes[0] if len(boxes) == 1 else b"".join(boxes)
        socket = idle_socket(transport)
        if socket is not None:
            send_direct(socket, data)
            return True
        if transport is not None:
            transport.write(data)  # a closing connection still sends it before it closes
        return False

    def _end_of_turn(self) -> None:
        if self._prompt_call is None:  # lost since (L{connectionLost}): nothing to send
            return
        self._prompt_call = None
        if not self._flush_turn():  # sent directly, there is nothing for send_now to do
            send_now(self.transport)  # type: ignore[attr-defined]

    def connectionLost(self, reason: Any) -> None:
        call, self._prompt_call = self._prompt_call, None
        self._turn_boxes = None  # the socket is gone: nothing can carry them
        if call is not None and call is not _AT_TURN_END and call.active():
            call.cancel()
        super().connectionLost(reason)  # type: ignore[misc]


class ThreadAnswer(amp.AmpBox):
    """
    An answer that the thread which finished the work may send itself,
    without waiting for the reactor to hear of it: a slave's acknowledgement
    of a push, sent by the store's thread as soon as its commit is durable
    (the reactor's wake-up and its pass through the push's callbacks were
    on every replicated write's path).

    The responder builds it with the answer's values and C{ask}, the tag of
    the call, and gives L{send_from_thread} to the thread. The thread sends
    the answer only once the reactor has L{arm}ed it (whatever the reactor
    must do before the answer may go is done) and only on an idle plain
    TCP connection (L{idle_socket}), under the protocol's C{send_lock},
    which every reactor send also holds: bytes never interleave, and a box
    the reactor buffered goes first. Otherwise, and always when the
    reactor's answer comes first, AMP sends it as any answer. Either way it
    is sent once, the same bytes as AMP's.
    """

    def __init__(self, protocol: PromptWriter, ask: bytes, **values: bytes) -> None:
        super().__init__(**values)
        self[b"_answer"] = ask
        self._protocol = protocol
        self._armed = False
        #: taken: sent by the thread, or left to the reactor
        self._taken = False

    def arm(self) -> None:
        """The reactor is done with what had to come first: the thread may send."""
        lock = self._protocol.send_lock
        if lock is None:
            return
        with lock:
            self._armed = True

    def send_from_thread(self) -> bool:
        """
        From the worker thread: send the answer now if it is armed and the
        socket idle; whether this thread sent it.
        """
        protocol: Any = self._protocol
        lock = protocol.send_lock
        if lock is None:
            return False
        with lock:
            if not self._taken and self._armed and protocol.thread_send(serialize(self)):
                self._taken = True
                return True
            return False

    def _sendTo(self, proto: Any) -> None:
        """AMP's send of the answer: nothing if the thread sent it, else as any box."""
        lock = self._protocol.send_lock
        if lock is not None:
            with lock:
                sent_by_thread = self._taken
                self._taken = True
                if sent_by_thread:
                    self._protocol._write_thread_tail()
                    return
        proto.sendBox(self)


class AnswerTo:
    """
    In AMP's table of calls waiting for their answer, in place of a
    Deferred: hands the answer box, or the failure (an error answer, the
    connection's loss), to one function. AMP asks no more of what it keeps
    there (C{addErrback} of its C{unhandledError}, then C{callback} or
    C{errback}; only C{errback} when the connection is lost). A push's
    Deferred and its callback run were about six Python calls for every
    slave on every write.

    What the function raises goes where a Deferred's unhandled failure
    would: to AMP's C{unhandledError} (logged, the connection dropped), or
    logged if AMP gave none.
    """

    __slots__ = ("_receiver", "_args", "_unhandled")

    log = Logger()

    def __init__(self, receiver: Callable[..., object], args: tuple[Any, ...] = ()) -> None:
        self._receiver = receiver
        self._args = args
        self._unhandled: Optional[Callable[[Failure], object]] = None

    def addErrback(self, unhandled: Callable[[Failure], object]) -> "AnswerTo":
        self._unhandled = unhandled
        return self

    def callback(self, box: Any) -> None:
        self._deliver(box)

    def answered(self, box: Any, unhandled: Callable[[Failure], object]) -> None:
        """
        The answer box, from a protocol that hands it over itself (its
        C{ampBoxReceived}): AMP's C{addErrback} and C{callback} in one.
        """
        self._unhandled = unhandled
        self._deliver(box)

    def errback(self, failure: Any) -> None:
        self._deliver(failure if isinstance(failure, Failure) else Failure(failure))

    def _deliver(self, result: Any) -> None:
        try:
            self._receiver(result, *self._args)
        except Exception:  # as a Deferred keeps its callback's error: reported, never lost
            failure = Failure()
            if self._unhandled is not None:
                self._unhandled(failure)
            else:
                self.log.failure("A call's answer was not handled", failure)


class ThreadCall(amp.AmpBox):
    """
    A call that the thread which finishes some work may send itself as soon
    as that work is done: a master's push of a commit, sent by the store's
    thread once the commit is durable (the reactor's wake-up from the
    store's thread sat between every commit and its pushes, on every
    replicated write's path and its lag's).

    The reactor L{issue}s it before the work starts, as AMP issues any call
    (its tag, the answer's Deferred), but its bytes are held. Then: the
    worker thread may L{send_from_thread} it, only on an idle plain TCP
    connection (L{idle_socket}) under the protocol's C{send_lock}, which
    every reactor send also holds (bytes never interleave, a box the
    reactor buffered goes first); afterwards the reactor either
    L{release}s it (sent as any box unless the thread sent it: a busy,
    closing or TLS connection, or no thread at all) or, if the work failed,
    L{withdraw}s it (never sent, its answer forgotten). Either way it is
    sent at most once, the same bytes as AMP's.
    """

    def __init__(
        self,
        protocol: PromptWriter,
        after_ask: Optional[bytes] = None,
        fields: Optional[dict[bytes, bytes]] = None,
        **values: bytes,
    ) -> None:
        """
        @param after_ask: L{encoded_fields_after_ask} of this call's command and
            C{values}, if the caller has it (one push for many slaves): the
            bytes are then the tag's field and these, not encoded again.
        @param fields: the values with bytes keys, instead of C{values}
            (no pass over the keys to encode them).
        """
        if fields is None:
            super().__init__(**values)
        else:
            dict.__init__(self, fields)
        self._protocol = protocol
        self._after_ask = after_ask
        #: the box's bytes, once issued
        self._data: Optional[bytes] = None
        #: taken: sent by the thread, released, or withdrawn
        self._taken = False

    def issue(
        self, command: bytes, receiver: Optional[Callable[..., object]] = None, *args: Any
    ) -> Any:
        """
        On the reactor: give the call its tag and register its answer with
        AMP (C{_sendBoxCommand}, as C{callRemoteString}); nothing is sent.
        Returns AMP's Deferred of the answer box; or, given C{receiver},
        None: the answer box (or its failure, the connection's loss
        included) goes to C{receiver(result, *args)} (L{AnswerTo}), with no
        Deferred. The caller checks first that the connection can send
        (AMP's C{_failAllReason} unset).
        """
        protocol: Any = self._protocol
        if receiver is None:
            return protocol._sendBoxCommand(command, self)
        self[b"_command"] = command
        tag = protocol._nextTag()
        self[_ASK] = tag
        after_ask = self._after_ask  # L{_sendTo}'s bytes, without its call
        self._data = (
            serialize(self)
            if after_ask is None or type(tag) is not bytes
            else _ASK_KEY + _length(len(tag)) + tag + after_ask
        )
        protocol._outstandingRequests[tag] = AnswerTo(receiver, args)
        return None

    def _sendTo(self, proto: Any) -> None:
        """AMP's send at L{issue}: the bytes wait for the thread or L{release}."""
        after_ask = self._after_ask
        ask = self.get(_ASK)
        if after_ask is None or type(ask) is not bytes:
            self._data = serialize(self)
        else:
            self._data = _ASK_KEY + _length(len(ask)) + ask + after_ask

    def send_from_thread(self) -> bool:
        """From the worker thread: send the call now if the socket is idle; whether it went."""
        protocol: Any = self._protocol
        lock = protocol.send_lock
        if lock is None:
            return False
        with lock:
            data = self._data
            if self._taken or data is None or not protocol.thread_send(data):
                return False
            self._taken = True
            return True

    def release(self) -> None:
        """On the reactor, once the work is done: send the call unless the thread did."""
        protocol: Any = self._protocol
        lock = protocol.send_lock
        if lock is not None:
            with lock:
                taken, self._taken = self._taken, True
                if taken:
                    if protocol._thread_tail:  # what the thread's send left over
                        protocol._write_thread_tail()
                    return
        elif self._taken:
            return
        self._taken = True
        if self._data is not None and protocol._failAllReason is None:
            protocol.sendBox(self)  # its answer was registered at issue

    def withdraw(self) -> None:
        """On the reactor, the work failed: the call is never sent, its answer forgotten."""
        protocol: Any = self._protocol
        with protocol.send_lock or nullcontext():
            taken, self._taken = self._taken, True
        if taken:
            return
        requests = protocol._outstandingRequests
        if requests is not None:
            requests.pop(self.get(b"_ask"), None)
