# -*- test-case-name: tests.test_store_durability -*-
"""
A real-process test that L{SQLiteStore} loses no acknowledged commit when its
process is killed without warning.
"""

from __future__ import annotations

import os
import signal
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

import gridreg
from gridreg.store.sqlite import SQLiteStore

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_store_writer.py")
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(gridreg.__file__)))


class WriterProtocol(ProcessProtocol):
    """
    Collects the writer's C{ACK} lines; fires L{enough} once C{wanted} have
    arrived and L{ended}, with the exit reason, when the process is gone and
    its pipes are drained.
    """

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.database_id: str | None = None
        self.acked: list[int] = []
        self.enough: Deferred[None] = Deferred()
        self.ended: Deferred[BaseException] = Deferred()
        self._buffer = b""
        self._stderr = b""

    def outReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()  # a partial line, if killed mid-write
        for line in lines:
            word, value = line.decode("ascii").split()
            if word == "READY":
                self.database_id = value
            else:
                self.acked.append(int(value))
        if len(self.acked) >= self.wanted and not self.enough.called:
            self.enough.callback(None)

    def errReceived(self, data: bytes) -> None:
        self._stderr += data

    def processEnded(self, reason: Failure) -> None:
        if not self.enough.called:
            self.enough.errback(
                RuntimeError(f"writer ended early ({reason.value}): {self._stderr!r}")
            )
        self.ended.callback(reason.value)


class KilledWriterTests(TestCase):
    timeout = 60

    async def test_acknowledged_commits_survive_sigkill(self) -> None:
        """
        Every commit whose Deferred fired before a SIGKILL is in the
        database afterwards, with its record, in the same lineage.
        """
        path = self.mktemp()
        writer = WriterProtocol(wanted=200)
        pythonpath = os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=pythonpath)
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            writer, sys.executable, [sys.executable, WRITER, path], env=env
        )
        await writer.enough
        transport.signalProcess("KILL")
        ended = await writer.ended
        if not isinstance(ended, ProcessTerminated):
            self.fail(f"writer was not killed: {ended}")
        self.assertEqual(ended.signal, signal.SIGKILL)

        acked = writer.acked
        self.assertEqual(acked, list(range(1, len(acked) + 1)))
        store = SQLiteStore(path)
        state = await store.open()
        self.addCleanup(store.close)
        self.assertEqual(state.database_id, writer.database_id)
        self.assertGreaterEqual(state.serial, acked[-1])
        objects = state.records["object"]
        for serial in acked:
            self.assertEqual(objects[f"obj-{serial}"], {"serial": serial})
