# -*- test-case-name: tests.test_client_locator,tests.test_client_failover -*-
"""
The client side of an Ice protocol connection.

Waits for the server's ValidateConnection before sending, numbers requests
from 1, keeps many requests in flight and matches replies by id. Every
request can carry a timeout on the injected clock; a lost connection fails
every request still in flight, so callers can retry elsewhere.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionClosed, ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream, MarshalError
from gridreg.ice.messages import (
    CLOSE_CONNECTION,
    HEADER_SIZE,
    MessageBuffer,
    MessageType,
    ProtocolError,
    Reply,
    Request,
    decompress_message,
    encode_request,
    parse_header,
)
from gridreg.ice.outgoing import OutgoingRequests, reply_stream
from gridreg.ice.server import DEFAULT_MESSAGE_SIZE_MAX, set_no_delay
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode, Version


class ConnectionClosedByPeer(ConnectionClosed):
    """The server sent CloseConnection: requests in flight were not executed."""


class IceClientProtocol(Protocol):
    """One outgoing Ice connection."""

    log = Logger()

    def __init__(
        self, clock: IReactorTime, max_message_size: Optional[int] = DEFAULT_MESSAGE_SIZE_MAX
    ) -> None:
        self.clock = clock
        self.max_message_size = max_message_size
        self.validated = False
        self.connected = False
        self._requests = OutgoingRequests(clock, self._send)
        self._queued: list[bytes] = []
        self._validation_waiters: list[Deferred[IceClientProtocol]] = []
        self._close_waiters: list[Deferred[None]] = []
        self._buffer = MessageBuffer()
        self._lost: Optional[Failure] = None

    # -- life cycle --------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        set_no_delay(self.transport)

    def when_validated(self) -> Deferred[IceClientProtocol]:
        """A fresh Deferred fired once the server has validated the connection."""
        if self._lost is not None:
            return fail(self._lost)
        d: Deferred[IceClientProtocol] = Deferred()
        if self.validated:
            d.callback(self)
        else:
            self._validation_waiters.append(d)
        return d

    def close(self) -> Deferred[None]:
        """Close gracefully (CloseConnection, then the socket); fires when closed."""
        d: Deferred[None] = Deferred()
        if not self.connected:
            d.callback(None)
            return d
        self._close_waiters.append(d)
        if self.validated:
            self.transport.write(CLOSE_CONNECTION)
        self.transport.loseConnection()
        return d

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = False
        if self._lost is None:
            self._lost = reason
        self._requests.fail_all(self._lost)
        waiters, self._validation_waiters = self._validation_waiters, []
        for w in waiters:
            w.errback(self._lost)
        closers, self._close_waiters = self._close_waiters, []
        for c in closers:
            c.callback(None)

    # -- requests ------------------------------------------------------------

    def invoke(
        self,
        identity: Identity,
        operation: str,
        mode: OperationMode,
        params: bytes = b"",
        *,
        facet: str = "",
        encoding: Version = ENCODING_1_1,
        context: Optional[dict[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Deferred[Reply]:
        """
        Send a twoway request; the Deferred fires with the L{Reply}, or fails
        with the connection's loss or a timeout.
        """
        if self._lost is not None or not self.connected:
            return fail(self._lost or Failure(ConnectionLost("not connected")))
        return self._requests.invoke(
            identity,
            operation,
            mode,
            params,
            facet=facet,
            encoding=encoding,
            context=context,
            timeout=timeout,
        )

    def call(
        self,
        identity: Identity,
        operation: str,
        mode: OperationMode,
        params: bytes = b"",
        **kwargs: object,
    ) -> Deferred[InputStream]:
        """
        Like L{invoke}, but fire with an L{InputStream} over the result
        payload, or fail with the user exception or request failure the reply
        carries.
        """
        return self.invoke(identity, operation, mode, params, **kwargs).addCallback(reply_stream)  # type: ignore[arg-type]

    def invoke_oneway(
        self, identity: Identity, operation: str, mode: OperationMode, params: bytes = b""
    ) -> None:
        """Send a oneway request (request id 0); nothing comes back."""
        self._send(
            encode_request(Request(0, identity, "", operation, int(mode), {}, ENCODING_1_1, params))
        )

    @property
    def in_flight(self) -> int:
        return self._requests.in_flight

    def _send(self, message: bytes) -> None:
        if self.validated:
            self.transport.write(message)
        else:
            self._queued.append(message)

    # -- incoming ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        framed = self._buffer.feed(data)
        if framed is None:
            return
        data = framed
        pos, end = 0, len(data)
        needed = HEADER_SIZE
        try:
            while end - pos >= HEADER_SIZE:
                header = parse_header(data[pos : pos + HEADER_SIZE], self.max_message_size)
                if end - pos < header.size:
                    needed = header.size
                    break
                message = data[pos : pos + header.size]
                pos += header.size
                if header.compression == 2:
                    message = decompress_message(message, self.max_message_size)
                self._message(header.message_type, message)
                if not self.connected:
                    return
        except (ProtocolError, MarshalError) as exc:
            self.log.warn(
                "Closing Ice connection to {peer}: {reason}",
                peer=str(self.transport.getPeer()),
                reason=str(exc),
            )
            self._lost = Failure(ProtocolError(str(exc)))
            self.transport.loseConnection()
            return
        if pos < end:
            self._buffer.keep(data, pos, needed)

    def _message(self, mtype: int, message: bytes) -> None:
        if mtype == MessageType.REPLY:
            self._requests.replied(message[HEADER_SIZE:])
        elif mtype == MessageType.VALIDATE_CONNECTION:
            if not self.validated:
                self.validated = True
                queued, self._queued = self._queued, []
                if queued:
                    self.transport.write(b"".join(queued))
                waiters, self._validation_waiters = self._validation_waiters, []
                for w in waiters:
                    w.callback(self)
        elif mtype == MessageType.CLOSE_CONNECTION:
            self._lost = Failure(ConnectionClosedByPeer("the server closed the connection"))
            self.connected = False
            self._requests.fail_all(self._lost)
            self.transport.loseConnection()
        else:
            raise ProtocolError(f"unexpected message type {mtype} from a server")


class IceClientFactory(Factory):
    """Builds L{IceClientProtocol}s sharing one clock and size limit."""

    noisy = False

    def __init__(
        self, clock: IReactorTime, max_message_size: Optional[int] = DEFAULT_MESSAGE_SIZE_MAX
    ) -> None:
        self.clock = clock
        self.max_message_size = max_message_size

    def buildProtocol(self, addr: object) -> IceClientProtocol:
        protocol = IceClientProtocol(self.clock, self.max_message_size)
        protocol.factory = self
        return protocol
