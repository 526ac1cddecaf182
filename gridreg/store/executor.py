# -*- test-case-name: tests.test_store_executor -*-
"""
Where a store's blocking work runs.

SQLite's commits wait for an fsync, and its loads read the whole file: on
the reactor thread they stall every request.  A L{ThreadExecutor} runs
them on one worker thread, one job at a time in submission order (so the
store's serial order is the order jobs were submitted), and hands each
result back on the reactor thread.  L{ImmediateExecutor} runs a job at
once on the calling thread, for the memory store and for tests.

A job may return its result as L{Quiet}, with what the worker thread does
next (a master's pushes of a commit, a slave's acknowledgement): the
result is queued for the reactor first, without writing its waker, and
the reactor is woken only if that next step says it must be. Each slave's
acknowledgement (or the master's next push) wakes it anyway, and it hands
the result over on that turn, or sooner if asked (L{deliver_ready}). That
is one wake-up of the reactor, and a C{write} and a C{read} of its waker,
less per replicated write on every replica.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, Callable, Optional, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

T = TypeVar("T")


class Executor(Protocol):
    """Runs jobs in submission order; each result arrives as a Deferred."""

    def submit(self, job: Callable[..., T], *args: Any) -> Deferred[T]: ...

    def stop(self) -> Deferred[None]: ...


class Quiet:
    """
    A job's result, and what the worker thread does once it is queued for
    the reactor: C{then()}, which returns True when the reactor will wake
    soon anyway (its own message left, and its answer will come), so that
    it need not be woken for this result. C{then} must not raise. Where
    results are handed over at once, C{then} runs first (L{unquiet}).
    """

    __slots__ = ("result", "then")

    def __init__(self, result: Any, then: Callable[[], Any]) -> None:
        self.result = result
        self.then = then


def unquiet(result: Any) -> Any:
    """A job's result handed over at once: a L{Quiet}'s C{then} runs, its result returned."""
    if type(result) is not Quiet:
        return result
    result.then()
    return result.result


def _nothing() -> None:
    """Called from a thread only to wake the reactor."""


class ImmediateExecutor:
    """Runs each job now, on the caller's thread: its Deferred has fired on return."""

    def submit(self, job: Callable[..., T], *args: Any) -> Deferred[T]:
        try:
            result = unquiet(job(*args))
        except BaseException:
            return fail(Failure())
        return succeed(result)

    def stop(self) -> Deferred[None]:
        return succeed(None)


_STOP = object()


class ThreadExecutor:
    """
    One worker thread with a queue.  Results and failures are delivered with
    C{reactor.callFromThread}, so callbacks run on the reactor thread, in
    the order the jobs were submitted.  The thread starts with the first job.
    """

    log = Logger()

    def __init__(self, reactor: Any, name: str = "gridreg-store") -> None:
        self._reactor = reactor
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        #: results the thread has finished, in order, for the reactor to fire
        self._ready: deque[tuple[Callable[[Any], Any], Any]] = deque()

    def submit(self, job: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._stopped:
            return fail(RuntimeError(f"the {self._name} thread has stopped"))
        if self._thread is None:
            # a daemon: a reactor stopped without closing the store must not hang the exit
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        d: Deferred[T] = Deferred()
        self._queue.put((job, args, d))
        return d

    def _work(self) -> None:
        deliver = self._reactor.callFromThread
        ready = self._ready
        # Twisted's queue of calls from threads, which its reactors run on every
        # turn (the lean reactor's loop checks it too): without it, every result wakes
        calls = getattr(self._reactor, "threadCallQueue", None)
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job, args, d = item
            try:
                result = job(*args)
            except BaseException:
                failure = Failure()
                failure.cleanFailure()  # no frames kept alive across threads
                ready.append((d.errback, failure))
                deliver(self.deliver_ready)
                continue
            if type(result) is not Quiet:
                ready.append((d.callback, result))
                deliver(self.deliver_ready)
                continue
            if calls is None:
                result.then()
                ready.append((d.callback, result.result))
                deliver(self.deliver_ready)
                continue
            # queued before its next step: whatever that step sends, the turn
            # its answer wakes finds the result here
            ready.append((d.callback, result.result))
            calls.append((self.deliver_ready, (), {}))
            try:
                woken_anyway = result.then() is True
            except Exception:  # the job is done: the reactor must still hear of it
                self.log.failure(
                    "A store job's next step failed on the {name} thread", name=self._name
                )
                woken_anyway = False
            if not woken_anyway:
                deliver(_nothing)

    def deliver_ready(self) -> None:
        """
        On the reactor: fire the results the thread has finished, in order.
        Also called by whoever must see them before going on (a slave's next
        push, while the last one's result waits for the reactor's turn).
        """
        ready = self._ready
        while ready:
            fire, result = ready.popleft()
            fire(result)

    def stop(self) -> Deferred[None]:
        """Fire once every job submitted before has run; later ones fail."""
        if self._stopped:
            return succeed(None)
        if self._thread is None:
            self._stopped = True
            return succeed(None)
        d = self.submit(lambda: None)
        self._stopped = True
        self._queue.put(_STOP)
        return d


class ManualExecutor:
    """
    Runs jobs only when told (L{run_next}, L{run_all}): for tests that need
    a store whose work is still in progress.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def submit(self, job: Callable[..., T], *args: Any) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        self.pending.append((job, args, d))
        return d

    def run_next(self) -> None:
        job, args, d = self.pending.pop(0)
        try:
            result = unquiet(job(*args))
        except BaseException:
            d.errback(Failure())
        else:
            d.callback(result)

    def run_all(self) -> None:
        while self.pending:
            self.run_next()

    def stop(self) -> Deferred[None]:
        self.run_all()
        return succeed(None)
