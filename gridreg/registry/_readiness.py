# -*- test-case-name: tests.test_readiness -*-
"""
Whether a replica has started: C{Starting}, then C{Ready} or C{Failed} for
good. Every C{when_ready} caller gets a fresh Deferred, fired when the
start-up ends (at once if it has).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from automat import TypeMachineBuilder

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

__all__ = ["Readiness", "RegistryStartError", "build_readiness"]


class RegistryStartError(Exception):
    """The replica could not start; the message says why."""


class Readiness(Protocol):
    def started(self) -> None:
        """Start-up is over: the replica answers requests."""

    def failed(self, reason: Failure) -> None:
        """Start-up failed: the replica will not answer."""

    def when_ready(self) -> Deferred[None]:
        """A fresh Deferred, fired once started, failed with L{RegistryStartError}."""

    def failure(self) -> Failure | None:
        """Why start-up failed, once it has."""


@dataclass
class _Waiters:
    waiting: list[Deferred[None]] = field(default_factory=list)

    def fire(self, reason: Failure | None) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            if reason is None:
                d.callback(None)
            else:
                d.errback(RegistryStartError(reason.getErrorMessage()))


def _build() -> Callable[[_Waiters], Readiness]:
    builder = TypeMachineBuilder(Readiness, _Waiters)
    Starting = builder.state("Starting")
    Ready = builder.state("Ready")
    Failed = builder.state("Failed", lambda inputs, core, reason: reason)

    @Starting.upon(Readiness.started).to(Ready)
    def started(inputs: Readiness, core: _Waiters) -> None:
        core.fire(None)

    @Starting.upon(Readiness.failed).to(Failed)
    def failed(inputs: Readiness, core: _Waiters, reason: Failure) -> None:
        core.fire(reason)

    @Starting.upon(Readiness.when_ready).loop()
    def wait(inputs: Readiness, core: _Waiters) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        core.waiting.append(d)
        return d

    @Ready.upon(Readiness.when_ready).loop()
    def ready(inputs: Readiness, core: _Waiters) -> Deferred[None]:
        return succeed(None)

    @Failed.upon(Readiness.when_ready).loop()
    def refuse(inputs: Readiness, core: _Waiters, reason: Failure) -> Deferred[None]:
        return fail(RegistryStartError(reason.getErrorMessage()))

    Starting.upon(Readiness.failure).loop().returns(None)
    Ready.upon(Readiness.failure).loop().returns(None)

    @Failed.upon(Readiness.failure).loop()
    def why(inputs: Readiness, core: _Waiters, reason: Failure) -> Failure | None:
        return reason

    return builder.build()


_factory = _build()


def build_readiness() -> Readiness:
    return _factory(_Waiters())
