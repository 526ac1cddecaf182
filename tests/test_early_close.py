"""
A process with a keeper (L{gridreg.early_close}): the keeper shares its
memory and holds none of its files, the process's connections still close
when it is killed or exits, and the keeper goes with it.

Each test runs a small Python child that starts a keeper (never this test
process: a keeper would hold the test runner's memory until it exits), and
reads the keeper from C{/proc}.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted.logger import capturedLogs

from gridreg import early_close
from gridreg.early_close import EarlyClose, available, keeper_program
from tests._lineprocess import LOOPBACK, LineProcess

REPO = str(Path(__file__).resolve().parent.parent)

#: a child that listens, starts its keeper, says so, and answers one connection
#: with a byte; it exits when its stdin closes
CHILD = r"""
import json, socket, sys
from gridreg.early_close import start_keeper
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
keeper = start_keeper()
print(json.dumps({"event": "ready", "port": server.getsockname()[1], "keeper": keeper.pid}),
      flush=True)
connection, _ = server.accept()
connection.sendall(b"x")
sys.stdin.read()
"""


#: a child on one CPU that starts its keeper and at once, still running on that
#: CPU, reports how many descriptors its keeper holds
PINNED_CHILD = r"""
import json, os, socket
from gridreg.early_close import start_keeper
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
keeper = start_keeper()
print(json.dumps({"event": "started", "held": os.listdir(f"/proc/{keeper.pid}/fd")}), flush=True)
"""


class Watched(Protocol):
    """A connection that reports its first byte and its close."""

    def __init__(self) -> None:
        self.received: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if not self.received.called:
            self.received.callback(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


def same_memory(first: int, second: int) -> bool:
    """Whether two processes share one address space (kcmp(2), KCMP_VM; x86-64 Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(312, first, second, 1, 0, 0)  # SYS_kcmp, KCMP_VM
    if result < 0:
        raise OSError(ctypes.get_errno(), "kcmp")
    return bool(result == 0)


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def alive(pid: int) -> bool:
    """A process that exists and has not yet died (a zombie has left its memory)."""
    try:
        return status(pid).get("State", "").split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def named(test: TestCase, keeper: int) -> None:
    """
    Wait until the keeper has taken its name (10 s at most): it does so once
    it has closed its copies of the descriptors, a moment after the process
    that started it goes on.
    """
    for _ in range(200):
        if status(keeper)["Name"] == "gridreg-keeper":
            return
        await deferLater(reactor, 0.05)
    test.fail(f"keeper {keeper} never took its name: {status(keeper)}")


class KeeperProgramTests(SynchronousTestCase):
    def test_pipe_on_descriptor_zero_refused(self) -> None:
        """
        The keeper closes every descriptor below and above its pipe's: a
        pipe on descriptor 0 would leave nothing below, so it is refused.
        """
        self.assertRaises(ValueError, keeper_program, 0)

    def test_program_carries_its_name(self) -> None:
        """The name ps shows for the keeper is in its program, NUL-ended."""
        self.assertTrue(keeper_program(5).endswith(b"gridreg-keeper\x00"))


class RefusedTests(SynchronousTestCase):
    def test_refused_keeper_warns_and_registry_runs(self) -> None:
        """
        A kernel or policy that refuses the keeper (here, executable memory
        forbidden) leaves the service started without one, and says so.
        """

        def refused() -> early_close.Keeper:
            raise PermissionError(1, "mprotect(PROT_EXEC)")

        self.patch(early_close, "start_keeper", refused)
        service = EarlyClose()
        with capturedLogs() as events:
            service.startService()
        self.assertTrue(service.running)
        self.assertIsNone(service.keeper)
        [warning] = [e for e in events if e.get("log_namespace") == "gridreg.early_close"]
        self.assertEqual(warning["log_level"].name, "warn")
        self.assertIn("mprotect", str(warning["error"]))


class KeeperProcessTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        why_not = available()
        if why_not is not None:
            # the registry then runs without one (tests.test_early_close_processes)
            self.fail(f"this machine cannot have a keeper: {why_not}")

    async def start_child(self) -> tuple[LineProcess, int, int]:
        env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
        child = LineProcess.spawn(reactor, "keeper-child", [sys.executable, "-c", CHILD], env, ".")
        self.addCleanup(child.kill)
        ready = await child.next_event("ready")
        assert child.pid is not None
        return child, int(ready["port"]), int(ready["keeper"])

    async def gone(self, pid: int) -> None:
        """Wait until C{pid} has died (it must, within 10 s)."""
        for _ in range(200):
            if not alive(pid):
                return
            await deferLater(reactor, 0.05)
        self.fail(f"keeper {pid} still alive: {status(pid)}")

    async def connect(self, port: int) -> Watched:
        watched = await connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port), Watched())
        self.assertEqual(await watched.received, b"x")
        return watched

    async def test_keeper_shares_memory_not_files(self) -> None:
        """
        The keeper is the process's child, named gridreg-keeper, shares the
        process's address space (and not this one's) and has one descriptor
        open, its pipe: it holds none of the process's sockets, files or locks.
        """
        child, port, keeper = await self.start_child()
        pid = child.pid
        assert pid is not None
        await self.connect(port)
        await named(self, keeper)
        self.assertEqual(int(status(keeper)["PPid"]), pid)
        [fd] = os.listdir(f"/proc/{keeper}/fd")
        self.assertTrue(os.readlink(f"/proc/{keeper}/fd/{fd}").startswith("pipe:"))
        self.assertTrue(same_memory(keeper, pid))
        self.assertFalse(same_memory(keeper, os.getpid()))

    async def test_keeper_holds_nothing_once_started(self) -> None:
        """
        When C{start_keeper} returns, the keeper has closed its copies of the
        process's descriptors (a listening socket among them), even though it
        then waits under SCHED_IDLE on a CPU the process keeps busy: a killed
        registry's port is free for its restart at once.
        """
        env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")
        child = LineProcess.spawn(
            reactor, "keeper-child", [sys.executable, "-c", PINNED_CHILD], env, "."
        )
        self.addCleanup(child.kill)
        started = await child.next_event("started")
        self.assertEqual(len(started["held"]), 1, started)

    async def test_killed_process_closes_and_keeper_goes(self) -> None:
        """
        SIGKILL: the process's connection closes, and its keeper, which then
        frees the memory, is gone after it.
        """
        child, port, keeper = await self.start_child()
        watched = await self.connect(port)
        await child.kill("KILL")
        await watched.lost
        await self.gone(keeper)

    async def test_exit_ends_keeper(self) -> None:
        """A process that exits by itself takes its keeper with it."""
        child, port, keeper = await self.start_child()
        watched = await self.connect(port)
        child.close_stdin()
        await child.when_ended()
        self.assertEqual(child.exit_code, 0)
        await watched.lost
        await self.gone(keeper)
