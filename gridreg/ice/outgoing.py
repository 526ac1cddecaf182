# -*- test-case-name: tests.test_ice_client,tests.test_ice_server -*-
"""
Twoway requests sent over one Ice connection and their replies, matched by
request id: what an outgoing connection does, and what an accepted one does
when the registry calls back an object living on the client's side of it
(Ice bidirectional connections, as IceGrid calls the admin GUI's observers).
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream
from gridreg.ice.messages import Reply, Request, decode_reply, encode_request, reply_error
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode, Version


def reply_stream(reply: Reply) -> InputStream:
    """The result payload of C{reply}; raise the user exception or request failure it carries."""
    error = reply_error(reply)
    if error is not None:
        raise error
    assert reply.payload is not None and reply.encoding is not None
    return InputStream(reply.payload, reply.encoding)


class OutgoingRequests:
    """
    The requests in flight on one connection: numbered from 1, each with an
    optional timeout on the injected clock, all failed at once when the
    connection is lost.
    """

    def __init__(self, clock: IReactorTime, send: Callable[[bytes], None]) -> None:
        self.clock = clock
        self._send = send
        self._next_id = 1
        self._pending: dict[int, Deferred[Reply]] = {}
        self.lost: Optional[Failure] = None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

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
        """Send a twoway request; fire with its L{Reply}, or fail with the loss or a timeout."""
        if self.lost is not None:
            return fail(self.lost)
        request_id = self._next_id
        self._next_id = request_id + 1 if request_id < 0x7FFFFFFF else 1
        message = encode_request(
            Request(
                request_id, identity, facet, operation, int(mode), context or {}, encoding, params
            )
        )
        d: Deferred[Reply] = Deferred(lambda _: self._pending.pop(request_id, None))
        self._pending[request_id] = d
        self._send(message)
        if timeout is not None:
            d.addTimeout(timeout, self.clock)
        return d

    def call(
        self,
        identity: Identity,
        operation: str,
        mode: OperationMode,
        params: bytes = b"",
        **kwargs: object,
    ) -> Deferred[InputStream]:
        """L{invoke}, firing with the result stream or failing with what the reply carries."""
        return self.invoke(identity, operation, mode, params, **kwargs).addCallback(reply_stream)  # type: ignore[arg-type]

    def replied(self, body: bytes) -> None:
        """A Reply message's body arrived; a reply nobody waits for (timed out) is dropped."""
        reply = decode_reply(body)
        d = self._pending.pop(reply.request_id, None)
        if d is not None:
            d.callback(reply)

    def fail_all(self, reason: Optional[Failure] = None) -> None:
        """The connection is gone: every request in flight, and every later one, fails."""
        if self.lost is None:
            self.lost = reason or Failure(ConnectionLost("the connection was lost"))
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(self.lost)
