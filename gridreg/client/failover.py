# -*- test-case-name: tests.test_client_failover -*-
"""
An endpoint over an ordered list of endpoints, for failing over between
registry replicas.

A L{twisted.application.internet.ClientService} keeps one connection alive
through one endpoint and retries it with back-off. Giving it a
L{FailoverEndpoint} makes each retry dial the next replica when the previous
one failed, so the retry loop walks the replica list (wrapping around)
without knowing there is a list.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from zope.interface import implementer

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["FailoverEndpoint", "locator_retry_policy"]


@implementer(IStreamClientEndpoint)
class FailoverEndpoint:
    """
    Dials the current entry of an ordered endpoint list; a failed attempt
    makes the next entry current, so the next attempt goes elsewhere.

    A cancelled attempt does not advance: cancelling means the owner gave
    up (e.g. it is stopping), not that the entry is bad.
    """

    log = Logger()

    def __init__(self, endpoints: Sequence[IStreamClientEndpoint]) -> None:
        """
        @param endpoints: the entries, in order of preference (the first is
            tried first).
        @raise ValueError: if C{endpoints} is empty.
        """
        if not endpoints:
            raise ValueError("FailoverEndpoint needs at least one endpoint")
        self.endpoints: tuple[IStreamClientEndpoint, ...] = tuple(endpoints)
        self._index = 0

    def __repr__(self) -> str:
        return f"<FailoverEndpoint {self._index + 1}/{len(self.endpoints)}: {self.current!r}>"

    @property
    def current_index(self) -> int:
        """The index of the entry the next L{connect} dials."""
        return self._index

    @property
    def current(self) -> IStreamClientEndpoint:
        """The entry the next L{connect} dials."""
        return self.endpoints[self._index]

    def advance(self) -> None:
        """
        Make the next entry current (wrapping around), e.g. because the
        connection made through the current one stopped answering.
        """
        self._index = (self._index + 1) % len(self.endpoints)

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Dial the current entry. If that fails, the next entry becomes current
        (unless the owner has already moved on) and the failure is passed on.
        """
        index = self._index
        endpoint = self.endpoints[index]

        def failed(failure: Failure) -> Failure:
            if not failure.check(CancelledError, ConnectingCancelledError):
                if self._index == index:
                    self.advance()
                self.log.info(
                    "Connecting to {endpoint} failed ({reason}); next attempt: {next}",
                    endpoint=repr(endpoint),
                    reason=failure.getErrorMessage(),
                    next=repr(self.current),
                )
            return failure

        return endpoint.connect(protocolFactory).addErrback(failed)


def locator_retry_policy(
    initial_delay: float = 0.05,
    factor: float = 1.5,
    max_delay: float = 2.0,
    max_jitter: float = 0.1,
    random: Callable[[], float] = random.random,
    replicas: int = 2,
) -> Callable[[int], float]:
    """
    The reconnection back-off: exponential, capped at C{max_delay}, plus up
    to C{max_jitter} seconds of jitter so that clients cut off together do
    not reconnect in lockstep. The jitter is bounded because Twisted's
    default (up to a whole second) alone would break sub-second failover.

    With more than one of C{replicas} the first attempt after a loss goes
    to the next replica at once. With one there is no next replica: dialling
    the one that just dropped us again at once only costs work when it is
    least welcome (a slave's client to its dead master did it in the very
    millisecond the master's clients fail over to that slave), so even the
    first attempt waits the back-off.
    """
    backoff = backoffPolicy(
        initialDelay=initial_delay,
        maxDelay=max_delay,
        factor=factor,
        jitter=lambda: max_jitter * random(),
    )

    def policy(attempt: int) -> float:
        # The first attempt after a loss goes to the next replica at once:
        # the one that failed is behind us, so there is nothing to wait for.
        if attempt <= 1 and replicas > 1:
            return 0.0
        return backoff(max(0, attempt - 1))

    return policy
