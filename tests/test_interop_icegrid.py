# -*- test-case-name: tests.test_interop_icegrid -*-
"""
The interop harness against ZeroC's real C{icegridregistry}.

These tests prove that the harness drives real Ice 3.7 processes, and they
record the reference behaviour gridreg must match: the same bodies run
against C{twist gridregistry} in C{tests.test_interop_gridreg}.
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests._interop_cases import LocatorInteropTests
from tests._processes import (
    LineProcess,
    ProcessError,
    RunningRegistry,
    free_port,
    ice_missing,
    start_icegridregistry,
    wait_for_port,
)


class IceGridReferenceTests(LocatorInteropTests, TestCase):
    """
    The shared interop cases against ZeroC IceGrid 3.7.
    """

    skip = ice_missing()

    def start_registry(self, dynamic: bool = True) -> Deferred[RunningRegistry]:
        return start_icegridregistry(reactor, self.mktemp(), dynamic=dynamic)

    async def test_admin_well_known_object(self) -> None:
        """
        A well-known object added through IceGrid's admin interface is found
        by identity (through the locator) and by type (through Query), and a
        client calls it by its bare identity. gridreg adds objects with its
        own admin tool, so only the lookups are shared behaviour.
        """
        registry = await self.registry()
        await self.server(registry, "HelloAdapter", name="A")
        added, by_id, by_type, resolved = await self.client(
            registry.locator,
            ["admin-addObject", "hello@HelloAdapter", "::Demo::Hello"],
            ["findObjectById", "hello"],
            ["query-findObjectByType", "::Demo::Hello"],
            ["resolve", "hello"],
        )
        self.assert_ok(added)
        self.assertEqual(self.assert_ok(by_id)["adapter_id"], "HelloAdapter")
        self.assertEqual(self.assert_ok(by_type)["result"], "hello -t -e 1.1 @ HelloAdapter")
        self.assertEqual(self.assert_ok(resolved)["result"], "A")


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class LineProcessTests(TestCase):
    """
    The process harness reports what went wrong instead of hanging.
    """

    timeout = 30

    def spawn(self, code: str, kill_timeout: float = 5.0) -> LineProcess:
        process = LineProcess.spawn(
            reactor, "probe", _python(code), {}, ".", kill_timeout=kill_timeout
        )
        self.addCleanup(process.terminate)
        return process

    async def test_events_wait_until_taken(self) -> None:
        """
        JSON lines become events in order; ones that arrive before a test
        asks are kept, and a test can take them out of order by name.
        """
        process = self.spawn(
            'print("plain"); print(\'{"event": "a"}\'); print(\'{"event": "b", "n": 2}\')'
        )
        await process.when_ended()
        self.assertEqual((await process.next_event("b"))["n"], 2)
        self.assertEqual((await process.next_event())["event"], "a")
        self.assertEqual(process.lines[0], "plain")
        self.assertEqual(process.exit_code, 0)

    async def test_json_text_sequence(self) -> None:
        """Records of a JSON text sequence, as C{twist} logs, are events too."""
        process = self.spawn('print("\\x1e" + \'{"log_format": "hello"}\')')
        await process.when_ended()
        self.assertEqual((await process.next_event())["log_format"], "hello")

    async def test_exit_fails_waiter_with_stderr(self) -> None:
        """
        A process that exits while a test waits fails the wait with its
        exit code and stderr.
        """
        process = self.spawn("import sys; sys.stderr.write('boom'); sys.exit(3)")
        with self.assertRaises(ProcessError) as caught:
            await process.next_event("ready")
        self.assertIn("boom", str(caught.exception))
        self.assertIn("exit code 3", str(caught.exception))

    async def test_terminate_escalates_to_kill(self) -> None:
        """
        L{LineProcess.terminate} kills a process that ignores SIGTERM.
        """
        process = self.spawn(
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            'print(\'{"event": "ready"}\', flush=True)\n'
            "time.sleep(60)\n",
            kill_timeout=0.2,
        )
        await process.next_event("ready")
        ended = await process.terminate()
        self.assertEqual(ended.exit_signal, 9)

    async def test_wait_for_port_reports_exit(self) -> None:
        """
        Waiting for a port that a failing process never opens ends as soon
        as the process exits, with its stderr.
        """
        process = self.spawn("import sys; sys.exit('cannot listen')")
        with self.assertRaises(ProcessError) as caught:
            await wait_for_port(reactor, "127.0.0.1", free_port(), 20, process)
        self.assertIn("cannot listen", str(caught.exception))


class NextEventTimeoutTests(SynchronousTestCase):
    """
    Waits are bounded by the protocol's clock.
    """

    def test_timeout(self) -> None:
        """
        With no matching event within the timeout the wait fails, naming
        the timeout; a later event no longer goes to it.
        """
        clock = Clock()
        process = LineProcess("quiet", clock)
        waiting = process.next_event("ready", timeout=5)
        clock.advance(5)
        self.assertIn("within 5 s", str(self.failureResultOf(waiting, ProcessError).value))
        process.outReceived(b'{"event": "ready"}\n')
        self.assertEqual(self.successResultOf(process.next_event("ready")), {"event": "ready"})
        self.assertEqual(clock.getDelayedCalls(), [])
