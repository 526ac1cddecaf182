# -*- test-case-name: tests.test_store_executor -*-
"""
Where a store's blocking work runs.

SQLite's commits wait for an fsync, and its loads read the whole file: on
the reactor thread they stall every request.  A L{ThreadExecutor} runs
them on one worker thread, one job at a time in submission order (so the
store's serial order is the order jobs were submitted), and hands each
result back on the reactor thread.  L{ImmediateExecutor} runs a job at
once on the calling thread, for the memory store and for tests.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

T = TypeVar("T")


class Executor(Protocol):
    """Runs jobs in submission order; each result arrives as a Deferred."""

    def submit(self, job: Callable[..., T], *args: Any) -> Deferred[T]: ...

    def stop(self) -> Deferred[None]: ...


class ImmediateExecutor:
    """Runs each job now, on the caller's thread: its Deferred has fired on return."""

    def submit(self, job: Callable[..., T], *args: Any) -> Deferred[T]:
        try:
            result = job(*args)
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

    def __init__(self, reactor: Any, name: str = "gridreg-store") -> None:
        self._reactor = reactor
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

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
                deliver(d.errback, failure)
            else:
                deliver(d.callback, result)

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
            result = job(*args)
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
