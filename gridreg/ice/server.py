# -*- test-case-name: tests.test_ice_server -*-
"""
The server side of an Ice protocol connection.

Frames incoming bytes by the 14-byte header, validates every message, hands
requests to an L{ObjectAdapter} and writes the replies. All replies produced
by one C{dataReceived} are joined into one write. A malformed, truncated or
oversize message closes only its own connection, with a logged reason. With
an L{AcmMonitor}, idle and stalled connections are closed as Ice's ACM does.

A read that is one request answered from the adapter's reply cache takes a
short path, and a connection keeps that answer: a client with one request
in flight that repeats it (a locate polled in a loop) is answered from the
memo with its new request id, until the adapter's cache is invalidated.

Connections are bidirectional: L{IceServerProtocol.call} sends a request to
an object on the client's side of the connection (one the client serves
there with C{Connection.setAdapter}) and the reply comes back on it.

With a read pause (C{IceServerFactory(read_pause=...)}), a connection whose
read carried a few pipelined requests stops reading for that long once they
are answered, so the requests that arrive meanwhile share the next wake-up:
a client that keeps many locates in flight otherwise wakes the registry once
per request (each wake-up costs more than the locate), while one with a
single request in flight never sends two at once and is never paused.
"""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.direct_send import idle_socket, send_direct
from gridreg.ice.acm import AcmConfig, AcmMonitor
from gridreg.ice.encoding import MarshalError
from gridreg.ice.messages import (
    CLOSE_CONNECTION,
    HEADER_SIZE,
    MAGIC,
    REPLY_PREFIXES,
    VALIDATE_CONNECTION,
    MessageBuffer,
    MessageType,
    ProtocolError,
    decode_batch_request,
    decode_request,
    decompress_message,
    pack_reply_prefix,
    reply_message,
)
from gridreg.ice.servant import ObjectAdapter
from gridreg.ice.types import Identity, OperationMode

if TYPE_CHECKING:
    from gridreg.ice.encoding import InputStream
    from gridreg.ice.outgoing import OutgoingRequests

_HEADER = struct.Struct("<4sBBBBBBi")
_REQUEST_ID = struct.Struct("<i")
_unpack_request_id = _REQUEST_ID.unpack_from
_unpack_size = struct.Struct("<i").unpack_from
#: a request's header up to its compression byte, with the versions Ice sends
_PLAIN_REQUEST = MAGIC + bytes((1, 0, 1, 0, int(MessageType.REQUEST)))
_REQUEST = int(MessageType.REQUEST)
#: a request's header and request id, the least a request can be
_REQUEST_MIN = HEADER_SIZE + 4
#: a oneway request's request id
_ONEWAY = bytes(4)

#: Ice.MessageSizeMax's default: 1 MiB
DEFAULT_MESSAGE_SIZE_MAX = 1024 * 1024

#: a read that answered this many requests or more already shares its
#: wake-up widely enough: the connection is not paused after it (a raw
#: pipelining client would only wait)
PAUSE_BELOW = 16


def set_no_delay(transport: object) -> None:
    """
    Send small messages at once: without TCP_NODELAY, Nagle's algorithm holds
    a reply back until the peer's delayed ACK, up to 40 ms on Linux.
    """
    set_tcp_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_tcp_no_delay is not None:
        try:
            set_tcp_no_delay(True)
        except OSError:
            pass  # not a TCP socket after all (a UNIX socket, or already closed)


class IceServerProtocol(Protocol):
    """One accepted Ice connection."""

    log = Logger()

    def __init__(
        self,
        adapter: ObjectAdapter,
        max_message_size: Optional[int],
        monitor: Optional[AcmMonitor] = None,
        read_pause: float = 0.0,
    ) -> None:
        """
        @param read_pause: seconds to stop reading after answering a read of
            2 to L{PAUSE_BELOW} - 1 requests; 0 never pauses (it needs a
            C{monitor}, whose clock it uses).
        """
        self.adapter = adapter
        self.max_message_size = max_message_size
        #: the largest read the one-request fast path takes
        self._fast_max = max_message_size if max_message_size is not None else sys.maxsize
        self.monitor = monitor
        self._buffer = MessageBuffer()
        #: whether C{_buffer} holds the start of a message (checked per read,
        #: so that a read that frames on its own does not go through it)
        self._partial = False
        #: the adapter's reply cache lookup, bound once (C{reply_lookup})
        self._cached_reply = adapter.reply_lookup()
        #: the memo of the last read the one-request path answered from the
        #: cache (L{_remember}): its size, header and bytes after the request
        #: id, the reply's header and body, and the adapter's replies_epoch
        #: then, which any change to the state the cache reflects moves on
        self._memoize = adapter.replies_memoizable()
        self._memo_size = -1
        self._memo_head = self._memo_key = self._memo_reply_head = self._memo_body = b""
        self._memo_epoch = -1
        self._closed = False
        #: for the ACM monitor: last whole message in or out, last progress
        #: on an incomplete one, dispatches not answered yet
        self.last_activity = 0.0
        self.partial_since: Optional[float] = None
        self.dispatching = 0
        self._close_callbacks: list[Callable[[], None]] = []
        self._lost = False
        #: requests this side sent over the connection, made on first use
        self._outgoing: Optional["OutgoingRequests"] = None
        self._read_pause = read_pause if monitor is not None else 0.0
        self._resume: Optional[IDelayedCall] = None

    @property
    def is_open(self) -> bool:
        return not self._closed

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call C{callback} once the connection is lost (at once if it already is)."""
        if self._lost:
            callback()
        else:
            self._close_callbacks.append(callback)

    def forget_close(self, callback: Callable[[], None]) -> None:
        if callback in self._close_callbacks:
            self._close_callbacks.remove(callback)

    def call(
        self,
        identity: Identity,
        operation: str,
        mode: OperationMode,
        params: bytes = b"",
        *,
        timeout: Optional[float] = None,
    ) -> "Deferred[InputStream]":
        """
        Call C{operation} on the object C{identity} the client serves on this
        connection; fires with the result stream, or fails with the reply's
        exception, a timeout, or the connection's loss.
        """
        if self._outgoing is None:
            from gridreg.ice.outgoing import OutgoingRequests

            clock = self.monitor.clock if self.monitor is not None else _reactor()
            self._outgoing = OutgoingRequests(clock, self._send_request)
        if self._closed and self._outgoing.lost is None:
            self._outgoing.fail_all()
        return self._outgoing.call(identity, operation, mode, params, timeout=timeout)

    def _send_request(self, message: bytes) -> None:
        self._write(message)
        self._touch()

    def peer_certificate(self) -> Any:
        """The client's TLS certificate (a pyOpenSSL X509), or None on plain tcp."""
        get = getattr(self.transport, "getPeerCertificate", None)
        try:
            return get() if get is not None else None
        except Exception:
            return None

    def is_secure(self) -> bool:
        """Whether this connection is TLS (an Ice C{ssl} endpoint)."""
        return getattr(self.transport, "getPeerCertificate", None) is not None

    def connectionMade(self) -> None:
        set_no_delay(self.transport)
        self.transport.write(VALIDATE_CONNECTION)
        if self.monitor is not None:
            self.last_activity = self.monitor.clock.seconds()
            self.monitor.add(self)

    def close(self) -> None:
        """Close gracefully, as an Ice server does when its adapter stops."""
        if not self._closed:
            self._closed = True
            self.transport.write(CLOSE_CONNECTION)
            self.transport.loseConnection()

    # -- ACM (see gridreg.ice.acm) ---------------------------------------------

    def send_heartbeat(self) -> None:
        """Send a ValidateConnection message, as an Ice ACM heartbeat."""
        if not self._closed:
            self.transport.write(VALIDATE_CONNECTION)
            self._touch()

    def close_idle(self) -> None:
        """Close gracefully because the connection has been idle too long."""
        if not self._closed:
            # routine, and silent in Ice without Ice.Trace.Network; a burst of
            # thousands at info would hold the reactor up writing log lines
            self.log.debug(
                "Closing idle Ice connection from {peer}", peer=str(self.transport.getPeer())
            )
            self.close()

    def abort(self, reason: str) -> None:
        """Drop the connection at once, without CloseConnection."""
        if not self._closed:
            self.log.info(
                "Dropping Ice connection from {peer}: {reason}",
                peer=str(self.transport.getPeer()),
                reason=reason,
            )
            self._closed = True
            self._buffer.clear()
            self._partial = False
            self.transport.abortConnection()

    def _touch(self) -> None:
        if self.monitor is not None:
            self.last_activity = self.monitor.clock.seconds()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._buffer.clear()
        self._partial = False
        if self.monitor is not None:
            self.monitor.remove(self)
        self._lost = True
        if self._outgoing is not None:
            self._outgoing.fail_all(reason)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                self.log.failure("A connection-close callback failed")

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        if self._partial:
            framed = self._buffer.feed(data)
            if framed is None:
                if self.monitor is not None:
                    self.partial_since = self.monitor.clock.seconds()
                return
            self._partial = False
            data = framed
        elif (
            # The hottest path: a read that is the same request as the last
            # one the path below answered (its header and every byte after
            # the request id), the cache unchanged since: the reply is the
            # memo's with this request id. A client with one request in
            # flight that repeats a locate sends exactly that.
            len(data) == self._memo_size
            and data.startswith(self._memo_head)
            and data.endswith(self._memo_key)
            and self._memo_epoch == self.adapter.replies_epoch
        ):
            monitor = self.monitor
            if monitor is not None:
                self.last_activity = monitor.clock.seconds()
                self.partial_since = None
            request_id = data[HEADER_SIZE:_REQUEST_MIN]
            if request_id != _ONEWAY:
                self._write(self._memo_reply_head + request_id + self._memo_body)
            return
        elif (
            # The hot path: a read that is exactly one plain request (as Ice
            # sends them: protocol and encoding 1.0, not compressed) answered
            # from the reply cache. With one request in flight every locate
            # is such a read, and this is about a third of the Python the
            # general loop below runs for it; anything else goes there.
            _REQUEST_MIN <= len(data) <= self._fast_max
            and data.startswith(_PLAIN_REQUEST)
            and data[9] != 2
            and _unpack_size(data, 10)[0] == len(data)
        ):
            key = data[_REQUEST_MIN:]
            body = self._cached_reply(key)
            if body is not None:
                monitor = self.monitor
                if monitor is not None:
                    self.last_activity = monitor.clock.seconds()
                    self.partial_since = None
                reply_head = pack_reply_prefix(
                    REPLY_PREFIXES[1 if data[9] else 0], len(body) + _REQUEST_MIN, 0
                )[:HEADER_SIZE]
                if self._memoize:
                    self._remember(data, key, reply_head, body)
                request_id = data[HEADER_SIZE:_REQUEST_MIN]
                if request_id != _ONEWAY:
                    self._write(reply_head + request_id + body)
                return
        replies: list[bytes] = []
        self._frame(data, replies)
        if replies:
            self._write(replies[0] if len(replies) == 1 else b"".join(replies))
            if self._read_pause and 2 <= len(replies) < PAUSE_BELOW and not self._closed:
                self._pause_reading()

    def _remember(self, data: bytes, key: bytes, reply_head: bytes, body: bytes) -> None:
        """Keep the one-request path's answer to C{data} for a repeat of it."""
        self._memo_size = len(data)
        self._memo_head = data[:HEADER_SIZE]
        self._memo_key = key
        self._memo_reply_head = reply_head
        self._memo_body = body
        self._memo_epoch = self.adapter.replies_epoch

    def _write(self, data: bytes) -> None:
        """
        Write C{data}: on a plain TCP transport with nothing queued, straight
        to the socket (no writability round trip through the reactor).
        """
        transport = self.transport
        if idle_socket(transport) is not None:
            send_direct(transport, data)
        else:
            transport.write(data)

    def _frame(self, data: bytes, replies: list[bytes]) -> None:
        """Frame and answer every whole message in C{data}; keep the rest."""
        pos = 0
        end = len(data)
        needed = HEADER_SIZE
        # bound once per read, not once per message: a read carries dozens of
        # locate requests when clients keep many in flight
        max_size = self.max_message_size
        cached_reply = self._cached_reply
        unpack_header = _HEADER.unpack_from
        try:
            while end - pos >= HEADER_SIZE:
                magic, pmajor, _pminor, emajor, _eminor, mtype, compression, size = unpack_header(
                    data, pos
                )
                if magic != MAGIC or pmajor != 1 or emajor != 1:
                    raise ProtocolError(f"bad message header {data[pos : pos + HEADER_SIZE].hex()}")
                if size < HEADER_SIZE:
                    raise ProtocolError(f"message size {size} is smaller than its header")
                if max_size is not None and size > max_size:
                    raise ProtocolError(
                        f"message of {size} bytes exceeds Ice.MessageSizeMax ({max_size} bytes)"
                    )
                if end - pos < size:
                    needed = size
                    break
                if mtype == _REQUEST and compression != 2 and size >= _REQUEST_MIN:
                    # The hot path, a plain request: slice the cache key
                    # straight out of the read; a reply from the cache
                    # (locates, pings) is framed here, with no copy of the
                    # message and no call per request, any other is
                    # dispatched from the same slices.
                    key = data[pos + _REQUEST_MIN : pos + size]
                    (request_id,) = _unpack_request_id(data, pos + HEADER_SIZE)
                    body = cached_reply(key)
                    if body is None:
                        request = decode_request(data[pos + HEADER_SIZE : pos + size])
                        pos += size
                        self._answer(
                            request_id,
                            compression,
                            self.adapter.dispatch(request, key, self),
                            replies,
                        )
                        if self._closed:
                            break
                        continue
                    pos += size
                    if request_id:
                        replies.append(
                            pack_reply_prefix(
                                REPLY_PREFIXES[1 if compression else 0],
                                len(body) + _REQUEST_MIN,
                                request_id,
                            )
                            + body
                        )
                    continue
                message = data[pos : pos + size]
                pos += size
                if compression == 2:
                    message = decompress_message(message, self.max_message_size)
                self._message(mtype, compression, message, replies)
                if self._closed:
                    break
        except (ProtocolError, MarshalError) as exc:
            self._protocol_error(str(exc), replies)
            return
        monitor = self.monitor
        if monitor is not None:
            now = monitor.clock.seconds()
            if pos:
                self.last_activity = now
            self.partial_since = now if pos < end else None
        if pos < end and not self._closed:
            self._buffer.keep(data, pos, needed)
            self._partial = True

    def _pause_reading(self) -> None:
        assert self.monitor is not None
        self.transport.pauseProducing()
        self._resume = self.monitor.clock.callLater(self._read_pause, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        if not self._closed:
            self.transport.resumeProducing()

    def _message(self, mtype: int, compression: int, message: bytes, replies: list[bytes]) -> None:
        if mtype == MessageType.REQUEST:
            if len(message) < HEADER_SIZE + 4:
                raise ProtocolError("request message without a request id")
            (request_id,) = _REQUEST_ID.unpack_from(message, HEADER_SIZE)
            key = message[HEADER_SIZE + 4 :]
            adapter = self.adapter
            body = adapter.cached_reply(key)
            if body is None:
                body = adapter.dispatch(decode_request(message[HEADER_SIZE:]), key, self)
            self._answer(request_id, compression, body, replies)
        elif mtype == MessageType.BATCH_REQUEST:
            for request in decode_batch_request(message[HEADER_SIZE:]):
                body = self.adapter.dispatch(request, None, self)
                if isinstance(body, Deferred):
                    body.addErrback(self._late_failure)
        elif mtype == MessageType.VALIDATE_CONNECTION:
            pass  # an ACM heartbeat: never answered
        elif mtype == MessageType.CLOSE_CONNECTION:
            self._closed = True
            if replies:
                self.transport.write(b"".join(replies))
                del replies[:]
            self.transport.loseConnection()
        elif mtype == MessageType.REPLY:
            if self._outgoing is None:
                raise ProtocolError("unexpected reply message from a client")
            self._outgoing.replied(message[HEADER_SIZE:])
        else:
            raise ProtocolError(f"unknown message type {mtype}")

    def _answer(self, request_id: int, compression: int, body: Any, replies: list[bytes]) -> None:
        """Reply with C{body} (bytes now, or a Deferred of them); nothing for a oneway."""
        if type(body) is bytes:  # the common case; isinstance on Deferred is slow
            if request_id:
                replies.append(reply_message(request_id, body, 1 if compression else 0))
            return
        assert isinstance(body, Deferred)
        self.dispatching += 1
        body.addBoth(self._dispatched)
        if request_id == 0:
            body.addErrback(self._late_failure)
            return
        body.addCallback(self._late_reply, request_id, compression).addErrback(self._late_failure)

    def _dispatched(self, result: object) -> object:
        self.dispatching -= 1
        return result

    def _late_reply(self, body: bytes, request_id: int, compression: int) -> None:
        if self._closed:
            return
        self._write(reply_message(request_id, body, 1 if compression else 0))
        self._touch()

    def _late_failure(self, failure: Failure) -> None:
        self.log.failure("Failed to send a deferred reply", failure)

    def _protocol_error(self, reason: str, replies: list[bytes]) -> None:
        peer: IAddress = self.transport.getPeer()
        self.log.warn("Closing Ice connection from {peer}: {reason}", peer=str(peer), reason=reason)
        if replies:
            self.transport.write(b"".join(replies))
            del replies[:]
        self._closed = True
        self._buffer.clear()
        self._partial = False
        self.transport.loseConnection()


def _reactor() -> IReactorTime:
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


class IceServerFactory(Factory):
    """
    Builds L{IceServerProtocol}s for one adapter and remembers them, so that
    stopping the endpoint can close every connection gracefully.
    """

    noisy = False

    def __init__(
        self,
        adapter: ObjectAdapter,
        max_message_size: Optional[int] = DEFAULT_MESSAGE_SIZE_MAX,
        *,
        clock: Optional[IReactorTime] = None,
        acm: Optional[AcmConfig] = None,
        read_pause: float = 0.0,
    ) -> None:
        """
        @param clock: with it, connections are under ACM (C{acm}, or Ice's
            defaults as icegridregistry applies them) and stalled messages
            time out; without it, connections are never closed for idleness.
        @param read_pause: see L{IceServerProtocol} (needs C{clock}).
        """
        self.adapter = adapter
        self.max_message_size = max_message_size
        self.read_pause = read_pause
        self.monitor = AcmMonitor(acm or AcmConfig(), clock) if clock is not None else None
        self.connections: set[IceServerProtocol] = set()
        #: when false, connections are closed at once, as if nobody listened,
        #: so Ice clients move on to the next endpoint
        self.accepting = True

    def buildProtocol(self, addr: IAddress) -> Optional[IceServerProtocol]:
        if not self.accepting:
            return None
        protocol = _TrackedServerProtocol(
            self.adapter, self.max_message_size, self.monitor, self.read_pause
        )
        protocol.factory = self
        return protocol

    def close_all(self) -> None:
        """Send CloseConnection on every open connection and close it."""
        for protocol in list(self.connections):
            protocol.close()


class _TrackedServerProtocol(IceServerProtocol):
    factory: IceServerFactory

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.connections.discard(self)
        super().connectionLost(reason)
