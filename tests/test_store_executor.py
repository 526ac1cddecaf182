# -*- test-case-name: tests.test_store_executor -*-
"""
The store's executor: SQLite's work runs on one worker thread, in the
order it was submitted, and its results come back on the reactor thread.
"""

from __future__ import annotations

import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gridreg.store.executor import ImmediateExecutor, ManualExecutor, Quiet, ThreadExecutor
from gridreg.store.records import Change, Mutation
from gridreg.store.sqlite import SQLiteStore


class ThreadExecutorTests(TestCase):
    def setUp(self) -> None:
        self.executor = ThreadExecutor(reactor, name="test-store")
        self.addCleanup(self.executor.stop)

    async def test_jobs_run_off_the_reactor_thread_and_answer_on_it(self) -> None:
        reactor_thread = threading.get_ident()
        answered_on: list[int] = []
        d = self.executor.submit(threading.get_ident)
        d.addCallback(lambda ran_on: answered_on.append(threading.get_ident()) or ran_on)
        ran_on = await d
        self.assertNotEqual(ran_on, reactor_thread)
        self.assertEqual(answered_on, [reactor_thread])

    async def test_jobs_run_and_answer_in_submission_order(self) -> None:
        ran: list[int] = []
        answered: list[int] = []
        jobs = []
        for i in range(50):
            d = self.executor.submit(lambda i=i: ran.append(i) or i)
            jobs.append(d.addCallback(lambda i: answered.append(i)))
        await gatherResults(jobs)
        self.assertEqual(ran, list(range(50)))
        self.assertEqual(answered, list(range(50)))

    async def test_a_failing_job_fails_its_deferred_only(self) -> None:
        def boom() -> None:
            raise ValueError("boom")

        failed = self.executor.submit(boom)
        after = self.executor.submit(lambda: "fine")
        with self.assertRaises(ValueError):
            await failed
        self.assertEqual(await after, "fine")

    async def test_stop_waits_for_queued_jobs_and_refuses_later_ones(self) -> None:
        ran: list[int] = []
        self.executor.submit(lambda: ran.append(1))
        await self.executor.stop()
        self.assertEqual(ran, [1])
        with self.assertRaises(RuntimeError):
            await self.executor.submit(lambda: None)


class SQLiteOnAThreadTests(TestCase):
    """The registry's store: every commit's fsync is on the worker thread."""

    async def test_commits_run_on_the_worker_and_are_durable(self) -> None:
        path = self.mktemp()
        store = SQLiteStore(path, executor=ThreadExecutor(reactor))
        committed_on: list[int] = []
        real = store._persist_all

        def persist_all(changes: list[Change]) -> None:
            committed_on.append(threading.get_ident())
            real(changes)

        store._persist_all = persist_all  # type: ignore[method-assign]
        await store.open()
        changes = await gatherResults(
            [store.commit([Mutation("object", f"k{i}", {"i": i})]) for i in range(5)]
        )
        self.assertEqual([c.serial for c in changes], [1, 2, 3, 4, 5])
        self.assertEqual(store.serial, 5)
        self.assertNotIn(threading.get_ident(), committed_on)
        await store.close()
        reopened = SQLiteStore(path, executor=ThreadExecutor(reactor))
        state = await reopened.open()
        self.addCleanup(reopened.close)
        self.assertEqual(state.serial, 5)
        self.assertEqual(sorted(state.records["object"]), [f"k{i}" for i in range(5)])


class SynchronousExecutorTests(SynchronousTestCase):
    def test_immediate_runs_at_once(self) -> None:
        self.assertEqual(self.successResultOf(ImmediateExecutor().submit(lambda: 3)), 3)

    def test_manual_runs_only_when_told(self) -> None:
        executor = ManualExecutor()
        d = executor.submit(lambda: 3)
        self.assertNoResult(d)
        executor.run_next()
        self.assertEqual(self.successResultOf(d), 3)


class _RecordingReactor:
    """
    The two ways a thread hands a result to Twisted's reactors: its queue of
    calls from threads, run on the reactor's next turn, and
    C{callFromThread}, which also wakes it (counted here).
    """

    def __init__(self) -> None:
        self.threadCallQueue: list[tuple] = []
        self.wake_ups = 0
        self.lock = threading.Lock()

    def callFromThread(self, f: object, *args: object) -> None:
        with self.lock:
            self.threadCallQueue.append((f, args, {}))
            self.wake_ups += 1

    def turn(self) -> None:
        """The reactor's turn: what the threads queued runs, in order."""
        calls, self.threadCallQueue[:] = list(self.threadCallQueue), []
        for f, args, kwargs in calls:
            f(*args, **kwargs)


class QuietResultTests(SynchronousTestCase):
    """
    A job's L{Quiet} result is queued for the reactor before the job's next
    step runs, and wakes the reactor only if that step says it must.
    """

    def setUp(self) -> None:
        self.reactor = _RecordingReactor()
        self.executor = ThreadExecutor(self.reactor, name="test-quiet")

    def finish(self) -> None:
        """Run every job submitted so far on the worker thread, and wait for it."""
        done = threading.Event()
        self.executor.submit(done.set)
        self.assertTrue(done.wait(10))
        self.executor.stop()
        self.executor._thread.join(10)  # type: ignore[union-attr]

    def test_a_quiet_result_whose_step_sent_its_message_does_not_wake(self) -> None:
        """
        The step returns True (its message left, its answer will wake the
        reactor): no wake-up, and the result fires on the reactor's next
        turn, or when the reactor asks for it.
        """
        queued_before_step: list[int] = []

        def step() -> bool:
            queued_before_step.append(len(self.reactor.threadCallQueue))
            return True

        d = self.executor.submit(lambda: Quiet("durable", step))
        self.finish()
        self.assertEqual(queued_before_step, [1])  # queued before the step ran
        # the stop's own result woke the reactor, nothing else did
        self.assertEqual(self.reactor.wake_ups, 2)
        self.assertNoResult(d)
        self.executor.deliver_ready()
        self.assertEqual(self.successResultOf(d), "durable")
        self.reactor.turn()  # the queued hand-over finds nothing left

    def test_a_quiet_result_whose_step_did_not_send_wakes(self) -> None:
        """The step returns False (the reactor has the message to send): woken as before."""
        d = self.executor.submit(lambda: Quiet("durable", lambda: False))
        done = threading.Event()
        self.executor.submit(done.set)
        self.assertTrue(done.wait(10))
        self.assertEqual(self.reactor.wake_ups, 2)  # the quiet job's, then the set's
        self.reactor.turn()
        self.assertEqual(self.successResultOf(d), "durable")
        self.executor.stop()
        self.executor._thread.join(10)  # type: ignore[union-attr]

    def test_results_keep_their_order(self) -> None:
        """A quiet result, then ordinary ones: the reactor fires them in submission order."""
        fired: list[str] = []
        self.executor.submit(lambda: Quiet("first", lambda: True)).addCallback(fired.append)
        self.executor.submit(lambda: "second").addCallback(fired.append)
        self.executor.submit(lambda: "third").addCallback(fired.append)
        self.finish()
        self.reactor.turn()
        self.assertEqual(fired, ["first", "second", "third"])

    def test_where_results_are_handed_over_at_once_the_step_runs_first(self) -> None:
        steps: list[str] = []
        d = ImmediateExecutor().submit(lambda: Quiet("now", lambda: steps.append("step")))
        self.assertEqual(steps, ["step"])
        self.assertEqual(self.successResultOf(d), "now")
        manual = ManualExecutor()
        d = manual.submit(lambda: Quiet("later", lambda: steps.append("manual step")))
        manual.run_all()
        self.assertEqual(steps, ["step", "manual step"])
        self.assertEqual(self.successResultOf(d), "later")


class QuietSlaveSerialTests(SynchronousTestCase):
    """
    A slave's batch, acknowledged from the store's thread, may reach the
    reactor only at its next event: its serial is visible at once.
    """

    def setUp(self) -> None:
        self.reactor = _RecordingReactor()
        self.executor = ThreadExecutor(self.reactor, name="test-serial")
        self.store = SQLiteStore(self.mktemp(), executor=self.executor)
        self.addCleanup(self.close)
        self.settle(self.store.open())

    def close(self) -> None:
        self.settle(self.store.close())
        self.executor._thread.join(10)  # type: ignore[union-attr]

    def settle(self, d: Any) -> Any:
        """Let the thread and the reactor's turns run until C{d} fires."""
        for _ in range(1000):
            done = threading.Event()
            self.executor.submit(done.set)
            self.assertTrue(done.wait(10))
            self.reactor.turn()
            self.executor.deliver_ready()
            if d.called:
                return d
        self.fail("never fired")

    def wait_for_thread(self) -> None:
        done = threading.Event()
        self.executor._queue.put((done.set, (), _Ignored()))  # runs after the jobs before it
        self.assertTrue(done.wait(10))

    def test_the_serial_moves_once_durable_before_the_reactor_hears(self) -> None:
        change = Change(1, (Mutation("object", "k", {"v": 1}),))
        applied = self.store.apply_many([change], copy=False, on_durable=lambda: True)
        self.wait_for_thread()
        self.assertEqual(self.store.serial, 1)  # durable: seen at once
        self.assertNoResult(applied)  # the reactor has not heard yet
        self.executor.deliver_ready()
        self.successResultOf(applied)
        self.assertEqual(self.store.serial, 1)

    def test_a_masters_commit_moves_the_serial_when_the_reactor_hears(self) -> None:
        committed = self.store.commit_many(
            [[Mutation("object", "k", {"v": 1})]], on_assigned=lambda changes: lambda: True
        )
        self.wait_for_thread()
        self.assertEqual(self.store.serial, 0)
        self.executor.deliver_ready()
        self.assertEqual([c.serial for c in self.successResultOf(committed)], [1])
        self.assertEqual(self.store.serial, 1)


class _Ignored:
    """Stands for a job's Deferred whose result nobody wants."""

    def callback(self, result: object) -> None:
        pass

    def errback(self, failure: object) -> None:
        pass
