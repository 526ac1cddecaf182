# -*- test-case-name: tests.test_interop_icegrid -*-
"""
Child processes that talk line-oriented JSON, on the real reactor.

The building blocks of L{tests._processes}: a L{ProcessProtocol} that turns
a child's stdout into events a test can wait for, and a TCP readiness probe.
Nothing here blocks; every wait is a L{Deferred} with a timeout.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ProcessProtocol, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

LOOPBACK = "127.0.0.1"

#: A reactor providing IReactorProcess, IReactorTime and IReactorTCP.
ProcessReactor = Any
Event = dict[str, Any]
Predicate = Callable[[Event], bool] | str | None

_STDERR_LIMIT = 256 * 1024
_LINE_LIMIT = 20_000
#: what starts each record of a JSON text sequence (twisted.logger.jsonFileLogObserver)
_RECORD_SEPARATOR = "\x1e"


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux: 32768)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: ports handed out in this process, never twice
_given: set[int] = set()


def free_port() -> int:
    """
    A TCP port on the loopback interface that was free a moment ago, chosen
    below the ephemeral range: a registry restarted on its port must not find
    it taken by some test's outgoing connection in between (the kernel picks
    their source ports from the ephemeral range), which a port the kernel
    chose (bind to 0) may well be. Random, so parallel test runs rarely meet.
    """
    high = _ephemeral_low()
    low = max(1024, high - 12000)
    for _ in range(1000):
        port = random.randrange(low, high)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((LOOPBACK, port))  # free for UDP too (discovery endpoints)
            except OSError:
                continue
        _given.add(port)
        return port
    raise OSError(f"no free port between {low} and {high}")


class ProcessError(Exception):
    """
    A helper process did not do what the test needed; the message carries
    its stderr and last output so the failure explains itself.
    """


@attrs.define(eq=False)
class _Waiter:
    predicate: Callable[[Event], bool]
    deferred: Deferred[Event]
    timer: IDelayedCall | None = None


def _as_predicate(predicate: Predicate) -> Callable[[Event], bool]:
    if predicate is None:
        return lambda event: True
    if isinstance(predicate, str):
        name = predicate
        return lambda event: event.get("event") == name
    return predicate


class LineProcess(ProcessProtocol):
    """
    A child process whose stdout is read as lines, JSON objects among them
    being events a test can wait for with L{next_event}.

    Events are queued until taken, so a test never misses one that arrived
    before it asked.
    """

    log = Logger()

    def __init__(self, name: str, clock: IReactorTime, kill_timeout: float = 5.0) -> None:
        self.name = name
        self.clock = clock
        self.pid: int | None = None
        self.kill_timeout = kill_timeout
        self.lines: list[str] = []
        self.events: list[Event] = []
        self.stderr = bytearray()
        self.ended: Failure | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self._pending: list[Event] = []
        self._waiters: list[_Waiter] = []
        self._end_waiters: list[Deferred[LineProcess]] = []
        self._buffer = b""
        self._kill_timer: IDelayedCall | None = None

    @classmethod
    def spawn(
        cls,
        reactor: ProcessReactor,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        path: str | os.PathLike[str],
        kill_timeout: float = 5.0,
    ) -> LineProcess:
        """
        Start C{args} (C{args[0]} is the executable) with exactly C{env}
        and working directory C{path}.
        """
        proto = cls(name, reactor, kill_timeout)
        reactor.spawnProcess(proto, args[0], list(args), env=dict(env), path=os.fspath(path))
        return proto

    def connectionMade(self) -> None:
        self.pid = getattr(self.transport, "pid", None)

    def describe(self) -> str:
        """
        A multi-line account of the process for failure messages.
        """
        status = "running"
        if self.ended is not None:
            status = f"exit code {self.exit_code}, signal {self.exit_signal}"
        stderr = bytes(self.stderr[-4000:]).decode("utf-8", "replace")
        stdout = "\n".join(self.lines[-20:])
        return (
            f"process {self.name} (pid {self.pid}, {status})\n"
            f"--- last stdout lines ---\n{stdout}\n--- stderr tail ---\n{stderr}"
        )

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self._line_received(raw.decode("utf-8", "replace").rstrip("\r"))

    def _line_received(self, line: str) -> None:
        for kept in (self.lines, self.events, self._pending):
            if len(kept) >= _LINE_LIMIT:
                del kept[: _LINE_LIMIT // 2]
        self.lines.append(line)
        self.log.debug("{process} stdout: {line}", process=self.name, line=line)
        try:
            # twist writes JSON text sequences: each record starts with RS (RFC 7464)
            event = json.loads(line.removeprefix(_RECORD_SEPARATOR))
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        self.events.append(event)
        for waiter in self._waiters:
            if waiter.predicate(event):
                self._finish_waiter(waiter)
                waiter.deferred.callback(event)
                return
        self._pending.append(event)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        del self.stderr[:-_STDERR_LIMIT]

    def processEnded(self, reason: Failure) -> None:
        if self._buffer:
            self._line_received(self._buffer.decode("utf-8", "replace"))
            self._buffer = b""
        self.ended = reason
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.exit_signal = getattr(reason.value, "signal", None)
        if self._kill_timer is not None and self._kill_timer.active():
            self._kill_timer.cancel()
        self._kill_timer = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            waiter.deferred.errback(
                ProcessError(f"ended while a test waited for an event:\n{self.describe()}")
            )
        end_waiters, self._end_waiters = self._end_waiters, []
        for deferred in end_waiters:
            deferred.callback(self)

    def _finish_waiter(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()

    def next_event(self, predicate: Predicate = None, timeout: float = 30.0) -> Deferred[Event]:
        """
        The first not yet taken event matching C{predicate}: a callable, an
        C{"event"} name, or C{None} for any event.

        @raise ProcessError: (asynchronously) on timeout or if the process
            ends first.
        """
        match = _as_predicate(predicate)
        for event in self._pending:
            if match(event):
                self._pending.remove(event)
                return succeed(event)
        if self.ended is not None:
            return fail(ProcessError(f"has ended; no such event:\n{self.describe()}"))

        def cancel(deferred: Deferred[Event]) -> None:
            if waiter in self._waiters:
                self._finish_waiter(waiter)

        waiter = _Waiter(match, Deferred(cancel))

        def expire() -> None:
            waiter.timer = None
            self._finish_waiter(waiter)
            waiter.deferred.errback(
                ProcessError(f"no matching event within {timeout} s:\n{self.describe()}")
            )

        waiter.timer = self.clock.callLater(timeout, expire)
        self._waiters.append(waiter)
        return waiter.deferred

    def write_line(self, line: str | Mapping[str, Any] | Sequence[Any]) -> None:
        """
        Send one line to the child's stdin; non-strings are sent as JSON.
        """
        text = line if isinstance(line, str) else json.dumps(line)
        assert self.transport is not None
        self.transport.write(text.encode("utf-8") + b"\n")

    def close_stdin(self) -> None:
        if self.ended is None and self.transport is not None:
            self.transport.closeStdin()

    def when_ended(self) -> Deferred[LineProcess]:
        """
        A new L{Deferred} that fires with this protocol once the process has
        exited and its pipes are closed.
        """
        if self.ended is not None:
            return succeed(self)
        deferred: Deferred[LineProcess] = Deferred()
        self._end_waiters.append(deferred)
        return deferred

    def kill(self, name: str = "KILL") -> Deferred[LineProcess]:
        """
        Send the signal C{name} (C{"TERM"}, C{"KILL"}, ...) and wait for the
        exit (so do not wait after C{"STOP"}: use L{signal} for that).
        """
        self.signal(name)
        return self.when_ended()

    def signal(self, name: str) -> None:
        """
        Send the signal C{name} (without C{SIG}) unless the process is gone.
        """
        if self.ended is None and self.transport is not None:
            try:
                self.transport.signalProcess(int(getattr(signal, "SIG" + name)))
            except ProcessExitedAlready:
                pass

    def terminate(self) -> Deferred[LineProcess]:
        """
        SIGTERM, then SIGKILL after C{kill_timeout}; fires on exit.
        """
        if self.ended is not None:
            return succeed(self)
        self.signal("CONT")
        self.signal("TERM")
        if self._kill_timer is None:
            self._kill_timer = self.clock.callLater(self.kill_timeout, self.signal, "KILL")
        return self.when_ended()

    def stop_gracefully(self, timeout: float = 10.0) -> Deferred[LineProcess]:
        """
        Close stdin (our scripts stop when it closes); L{terminate} if the
        process is still running C{timeout} seconds later.
        """
        if self.ended is not None:
            return succeed(self)
        self.close_stdin()
        timer = self.clock.callLater(timeout, self.terminate)

        def ended(proto: LineProcess) -> LineProcess:
            if timer.active():
                timer.cancel()
            return proto

        return self.when_ended().addCallback(ended)


class _Probe(Protocol):
    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


def wait_for_port(
    reactor: ProcessReactor,
    host: str,
    port: int,
    timeout: float = 20.0,
    process: LineProcess | None = None,
) -> Deferred[None]:
    """
    Fire once a TCP connection to C{host}:C{port} succeeds, retrying every
    50 ms; fail with the last connection error (and C{process}'s stderr)
    after C{timeout} seconds, or as soon as C{process} exits.
    """

    async def attempt() -> None:
        deadline = reactor.seconds() + timeout
        last_error: object = None
        while True:
            if process is not None and process.ended is not None:
                raise ProcessError(f"exited before {host}:{port} opened:\n{process.describe()}")
            try:
                probe = await connectProtocol(
                    TCP4ClientEndpoint(reactor, host, port, timeout=2), _Probe()
                )
                await probe.lost
                return
            except ConnectError as error:
                last_error = error
            if reactor.seconds() >= deadline:
                detail = process.describe() if process is not None else ""
                raise ProcessError(
                    f"{host}:{port} not accepting after {timeout} s; "
                    f"last error: {last_error}\n{detail}"
                )
            await deferLater(reactor, 0.05)

    return Deferred.fromCoroutine(attempt())
