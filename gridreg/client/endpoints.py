# -*- test-case-name: tests.test_client_failover -*-
"""
From Ice endpoints to Twisted client endpoints.

A locator client dials the endpoints of an C{Ice.Default.Locator} proxy, and
an adapter registration the endpoints of the LocatorRegistry proxy the
locator hands out; both turn Ice endpoints into
L{IStreamClientEndpoint}s with L{gridreg.endpoints.client_endpoint}
(re-exported here), so everything above works on Twisted endpoints and
tests can substitute memory ones.

L{ValidatedEndpoint} exists because a hung Ice server (stopped with
SIGSTOP, deadlocked, swapping) still completes TCP handshakes: the kernel
accepts on its behalf. Only the server's C{ValidateConnection} message
proves that the process is alive, so a connection counts as made only once
that message has arrived, within a deadline.
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from gridreg.endpoints import client_endpoint
from gridreg.ice.messages import HEADER_SIZE, MAGIC, MessageType

__all__ = ["client_endpoint", "ValidatedEndpoint"]


@implementer(IStreamClientEndpoint)
class ValidatedEndpoint:
    """
    Wraps an endpoint so that C{connect} fires only once the Ice server has
    sent C{ValidateConnection}, and fails with
    L{twisted.internet.error.TimeoutError} if that takes longer than
    C{timeout} seconds from the call, connecting included.

    The factory's protocol is built only after validation. A connection
    that dies or times out before then is therefore invisible to the
    caller, apart from the failed Deferred: this is what lets a
    L{twisted.application.internet.ClientService} treat a hung server like
    a refused connection, and retry elsewhere.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, clock: IReactorTime, timeout: float):
        self.endpoint = endpoint
        self.clock = clock
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<ValidatedEndpoint {self.endpoint!r} within {self.timeout}s>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return _Attempt(self, protocolFactory).result


class _Attempt:
    """One connection attempt through a L{ValidatedEndpoint}."""

    def __init__(self, owner: ValidatedEndpoint, factory: IProtocolFactory) -> None:
        self.owner = owner
        self.factory = factory
        self.gate: Optional[_ValidationGate] = None
        self.result: Deferred[IProtocol] = Deferred(self._cancel)
        self.timer: Optional[IDelayedCall] = owner.clock.callLater(owner.timeout, self._timed_out)
        gates = Factory.forProtocol(lambda: _ValidationGate(self))
        gates.noisy = False  # one factory per attempt: no Starting/Stopping log lines
        self.connecting: Deferred[Any] = owner.endpoint.connect(gates)
        self.connecting.addErrback(self._connect_failed)

    @property
    def done(self) -> bool:
        return self.result.called

    def _stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _give_up(self) -> None:
        """Abandon the TCP connection or the attempt to make one."""
        if self.gate is not None:
            if self.gate.transport is not None:
                self.gate.transport.abortConnection()
        elif not self.connecting.called:
            self.connecting.cancel()

    def _cancel(self, _: Deferred[IProtocol]) -> None:
        self._stop_timer()
        self.result.errback(Failure(CancelledError()))
        self._give_up()

    def _timed_out(self) -> None:
        self.timer = None
        if self.done:
            return
        reason = error.TimeoutError(
            string=f"no ValidateConnection within {self.owner.timeout}s from "
            f"{self.owner.endpoint!r}"
        )
        self.result.errback(Failure(reason))
        self._give_up()

    def _connect_failed(self, failure: Failure) -> None:
        if not self.done:
            self._stop_timer()
            self.result.errback(failure)

    def connected(self, gate: _ValidationGate) -> None:
        self.gate = gate
        if self.done:  # we gave up while the TCP handshake was completing
            gate.transport.abortConnection()

    def validated(self, gate: _ValidationGate, data: bytes) -> None:
        self._stop_timer()
        protocol = self.factory.buildProtocol(gate.transport.getPeer())
        if protocol is None:
            gate.transport.abortConnection()
            self.result.errback(Failure(error.ConnectError(string="the factory refused")))
            return
        gate.inner = protocol
        protocol.makeConnection(gate.transport)
        protocol.dataReceived(data)
        self.result.callback(protocol)

    def lost(self, reason: Failure) -> None:
        if not self.done:
            self._stop_timer()
            self.result.errback(reason)


class _ValidationGate(Protocol):
    """
    Holds a new connection until the server's first message, a
    C{ValidateConnection}, has arrived; then hands the connection, and every
    byte after, to the real protocol.
    """

    def __init__(self, attempt: _Attempt) -> None:
        self.attempt = attempt
        self.inner: Optional[IProtocol] = None
        self._buffer = b""

    def connectionMade(self) -> None:
        self.attempt.connected(self)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        if self.attempt.done:
            return
        self._buffer += data
        if len(self._buffer) < HEADER_SIZE:
            return
        head = self._buffer[:HEADER_SIZE]
        if head[:4] != MAGIC or head[8] != MessageType.VALIDATE_CONNECTION:
            self.transport.abortConnection()
            self.attempt.lost(
                Failure(error.ConnectError(string=f"not an Ice server: got {head.hex()}"))
            )
            return
        data, self._buffer = self._buffer, b""
        self.attempt.validated(self, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)
        else:
            self.attempt.lost(reason)
