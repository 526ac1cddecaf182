# -*- test-case-name: tests.test_client_registration -*-
"""
The state machine of an adapter registration
(L{gridreg.client.registration.AdapterRegistration}).

States::

    Stopped --start--> Registering
    Registering --attempt_succeeded--> Registered
    Registering --attempt_superseded--> Registering   (register again)
    Registering --attempt_failed--> Waiting           (back-off)
    Registering --attempt_refused--> Refused          (final until a new connection)
    Registering --attempt_abandoned--> Idle           (cancelled from outside)
    Registering --locator_reconnected--> Registering  (again once this attempt ends)
    Waiting --retry_due--> Registering
    Waiting, Registered, Refused, Idle --locator_reconnected--> Registering
    any --stop--> Stopped                             (unregister)

One attempt fetches the LocatorRegistry from the locator and sets the
adapter's direct proxy there; the machine only decides when attempts run,
and the service gives it the attempt and the unregistration as callables.
A new locator connection may lead to a new registry (a restart with an
empty database, a failover), so every state that is not already about to
use that connection registers again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from automat import TypeMachineBuilder
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["RegistrationCore", "RegistrationInputs", "build_registration"]


class RegistrationInputs(Protocol):
    """What happens to an adapter registration."""

    def start(self) -> None:
        """The service started."""

    def stop(self, done: Deferred[None]) -> None:
        """The service stops: fire C{done} once unregistered (or that failed)."""

    def locator_reconnected(self) -> None:
        """The locator client has a new connection, not the one the latest attempt used."""

    def attempt_succeeded(self) -> None:
        """The registry took the adapter's endpoints."""

    def attempt_superseded(self) -> None:
        """The registry took them, but a new locator connection came meanwhile."""

    def attempt_failed(self, reason: Failure) -> None:
        """No registry answered, or the connection broke: worth retrying."""

    def attempt_refused(self, reason: Failure) -> None:
        """The registry refused the adapter: retrying would not change that."""

    def attempt_abandoned(self) -> None:
        """The attempt was cancelled by something other than this machine."""

    def retry_due(self) -> None:
        """The back-off after a failed attempt is over."""


@dataclass
class RegistrationCore:
    """
    What every state shares: the collaborators, and what
    C{when_registered} reads.

    @ivar attempt: one registration attempt.
    @ivar unregister: unregisters the adapter if it was ever registered.
    @ivar drop_connection: abandons the registry connection after a failure.
    @ivar via_known: whether the attempt under way has learnt the registry
        from a locator connection (a new connection after that may name
        another registry).
    @ivar refusals: the exceptions that mean the registry refused.
    """

    clock: IReactorTime
    retry_policy: Callable[[int], float]
    attempt: Callable[[], Deferred[None]]
    unregister: Callable[[], Deferred[None]]
    drop_connection: Callable[[], None]
    via_known: Callable[[], bool]
    refusals: tuple[type[BaseException], ...]
    log: Logger
    adapter_id: str
    endpoints: str
    registered: bool = False
    refused: Optional[Failure] = None
    failures: int = 0
    waiters: list[Deferred[None]] = field(default_factory=list)

    def fire(self, result: Optional[Failure]) -> None:
        """Answer every C{when_registered} caller waiting so far."""
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            d.callback(None) if result is None else d.errback(result)

    def finish_stop(self, done: Deferred[None]) -> None:
        self.registered = False
        self.refused = None
        self.failures = 0
        self.fire(Failure(CancelledError("the adapter registration stopped")))
        self.unregister().chainDeferred(done)


@dataclass
class _Attempt:
    """The data of C{Registering}: the attempt under way."""

    inputs: RegistrationInputs
    core: RegistrationCore
    again: bool = False
    cancelled: bool = False
    deferred: Optional[Deferred[None]] = None

    def begin(self) -> None:
        self.again = False
        self.deferred = d = self.core.attempt()
        d.addCallbacks(self._succeeded, self._failed)
        d.addErrback(lambda f: self.core.log.failure("Adapter registration machine failed", f))

    def cancel(self) -> None:
        self.cancelled = True
        if self.deferred is not None:
            self.deferred.cancel()

    def _succeeded(self, _: object) -> None:
        if self.cancelled:
            return
        if self.again:
            self.inputs.attempt_superseded()
        else:
            self.inputs.attempt_succeeded()

    def _failed(self, reason: Failure) -> None:
        if self.cancelled:
            return
        if reason.check(CancelledError):
            self.inputs.attempt_abandoned()
        elif reason.check(*self.core.refusals):
            self.inputs.attempt_refused(reason)
        else:
            self.inputs.attempt_failed(reason)


def _attempting(inputs: RegistrationInputs, core: RegistrationCore) -> _Attempt:
    attempt = _Attempt(inputs, core)
    attempt.begin()
    return attempt


def _backing_off(
    inputs: RegistrationInputs, core: RegistrationCore, reason: Failure
) -> IDelayedCall:
    core.failures += 1
    delay = core.retry_policy(core.failures)
    core.log.info(
        "Registering adapter {adapter_id} failed ({reason!r}); retry {attempt} in {delay:.3f}s",
        adapter_id=core.adapter_id,
        reason=reason.value,
        attempt=core.failures,
        delay=delay,
    )
    core.drop_connection()
    return core.clock.callLater(delay, inputs.retry_due)


def _build() -> Callable[[RegistrationCore], RegistrationInputs]:
    builder = TypeMachineBuilder(RegistrationInputs, RegistrationCore)
    Stopped = builder.state("Stopped")
    Idle = builder.state("Idle")
    Registering = builder.state("Registering", _attempting)
    Waiting = builder.state("Waiting", _backing_off)
    Registered = builder.state("Registered")
    Refused = builder.state("Refused")

    Stopped.upon(RegistrationInputs.start).to(Registering).returns(None)
    Stopped.upon(RegistrationInputs.locator_reconnected).loop().returns(None)
    Idle.upon(RegistrationInputs.locator_reconnected).to(Registering).returns(None)
    Waiting.upon(RegistrationInputs.retry_due).to(Registering).returns(None)
    Registering.upon(RegistrationInputs.attempt_failed).to(Waiting).returns(None)

    @Registering.upon(RegistrationInputs.locator_reconnected).loop()
    def reconnected(i: RegistrationInputs, c: RegistrationCore, attempt: _Attempt) -> None:
        if c.via_known():
            attempt.again = True

    @Registering.upon(RegistrationInputs.attempt_superseded).loop()
    def again(i: RegistrationInputs, c: RegistrationCore, attempt: _Attempt) -> None:
        attempt.begin()

    @Registering.upon(RegistrationInputs.attempt_succeeded).to(Registered)
    def registered(i: RegistrationInputs, c: RegistrationCore, attempt: _Attempt) -> None:
        c.registered = True
        c.failures = 0
        c.log.info(
            "Adapter {adapter_id} registered with {endpoints}",
            adapter_id=c.adapter_id,
            endpoints=c.endpoints,
        )
        c.fire(None)

    @Registering.upon(RegistrationInputs.attempt_refused).to(Refused)
    def refused(
        i: RegistrationInputs, c: RegistrationCore, attempt: _Attempt, reason: Failure
    ) -> None:
        c.refused = reason
        c.failures = 0
        c.log.error(
            "The registry refused adapter {adapter_id}: {reason!r}",
            adapter_id=c.adapter_id,
            reason=reason.value,
        )
        c.fire(reason)

    @Registering.upon(RegistrationInputs.attempt_abandoned).to(Idle)
    def abandoned(i: RegistrationInputs, c: RegistrationCore, attempt: _Attempt) -> None:
        c.failures = 0

    @Waiting.upon(RegistrationInputs.locator_reconnected).to(Registering)
    def cut_short(i: RegistrationInputs, c: RegistrationCore, retry: IDelayedCall) -> None:
        if retry.active():
            retry.cancel()

    @Registered.upon(RegistrationInputs.locator_reconnected).to(Registering)
    def register_again(i: RegistrationInputs, c: RegistrationCore) -> None:
        c.registered = False

    @Refused.upon(RegistrationInputs.locator_reconnected).to(Registering)
    def retry_refused(i: RegistrationInputs, c: RegistrationCore) -> None:
        c.refused = None

    @Registering.upon(RegistrationInputs.stop).to(Stopped)
    def stop_attempt(
        i: RegistrationInputs, c: RegistrationCore, attempt: _Attempt, done: Deferred[None]
    ) -> None:
        attempt.cancel()
        c.finish_stop(done)

    @Waiting.upon(RegistrationInputs.stop).to(Stopped)
    def stop_waiting(
        i: RegistrationInputs, c: RegistrationCore, retry: IDelayedCall, done: Deferred[None]
    ) -> None:
        if retry.active():
            retry.cancel()
        c.finish_stop(done)

    @Idle.upon(RegistrationInputs.stop).to(Stopped)
    @Registered.upon(RegistrationInputs.stop).to(Stopped)
    @Refused.upon(RegistrationInputs.stop).to(Stopped)
    def stop(i: RegistrationInputs, c: RegistrationCore, done: Deferred[None]) -> None:
        c.finish_stop(done)

    @Stopped.upon(RegistrationInputs.stop).loop()
    def already_stopped(i: RegistrationInputs, c: RegistrationCore, done: Deferred[None]) -> None:
        done.callback(None)

    return builder.build()


#: builds the machine of one registration around its core
build_registration = _build()
