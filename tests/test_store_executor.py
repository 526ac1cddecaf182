# -*- test-case-name: tests.test_store_executor -*-
"""
The store's executor: SQLite's work runs on one worker thread, in the
order it was submitted, and its results come back on the reactor thread.
"""

from __future__ import annotations

import threading

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gridreg.store.executor import ImmediateExecutor, ManualExecutor, ThreadExecutor
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
