# -*- test-case-name: tests.test_lean_reactor -*-
"""
An epoll reactor that hands each ready descriptor straight to its
C{doRead}/C{doWrite} (C{GridReg.LeanReactor}, on by default).

Twisted's L{EPollReactor} calls every ready descriptor through
C{twisted.python.log.callWithLogger}, which copies a log context dict so
that legacy C{twisted.python.log} messages carry the connection's
C{logPrefix()} as their "system". That costs about 1.3 us of Python per
event here; a locate answered from the reply cache is one event, and the
whole registry's share of it (system calls included) is 10-14 us when each
wake-up brings one request (C{bench.locate}, 64 x 1). gridreg logs with
C{twisted.logger}, whose events name their own namespace, so nothing it
writes needs that context.

With one request in flight each wake-up brings one request, so what the
loop does per wake-up is paid once per locate, and after a wake-up from
the other CPU each Python step costs about three times what it costs hot
(the registry's user time per locate, client on the other CPU against the
same one). So the main loop runs Twisted's C{runUntilCurrent} only when it
has something to do (a call from a thread, a new or due timed call, a stop
to finish) and otherwise takes the poll's timeout from the first pending
call itself; the calls from threads queued by the time a poll returns
run right after it, before its events (a store's commit, durable before
the message that woke the reactor, has its callbacks run first, not after
the next event); work that must wait for the turn's end, but no longer
(an admin session's answers of the turn, sent together), goes in
L{call_at_turn_end}, not in a C{callLater(0)} and its pass through the
timer heap; a descriptor that is only readable gets C{_doReadOrWrite}'s
read path inline, and a TCP connection whose class keeps Twisted's
C{doRead} gets that too (C{recv}, then its protocol's C{dataReceived}).
Any other event goes through C{_doReadOrWrite}. The poller, the timed
calls, and the disconnection of a descriptor whose read raises or returns
a reason are Twisted's. An exception that escapes the dispatch reaches the
main loop's handler, which logs it, as Twisted's does; the events left in
that poll are reported again by the next one (epoll is level-triggered).

The plugins install it from C{postOptions}, as L{gridreg.tls_gate} keeps
TLS out: C{twist} and C{twistd} import the reactor only after the
plugin's options are parsed. A reactor already installed (a test process,
C{--reactor}) is left alone.
"""

from __future__ import annotations

import errno
import sys
from typing import Callable, Optional

from twisted.internet import epollreactor, main, tcp
from twisted.internet.base import _log, _topHandler
from twisted.internet.posixbase import _NO_FILEDESC
from twisted.logger import LogLevel
from twisted.python import log

_EPOLLIN = epollreactor.EPOLLIN
_EWOULDBLOCK = tcp.EWOULDBLOCK
#: classes of descriptor -> whether they read as Twisted's TCP connections
#: do (C{tcp.Connection.doRead} and C{_dataReceived}, not overridden), so
#: that the poll loop can do that read inline
_TCP_READ: dict[type, bool] = {}


def _reads_as_tcp(kind: type) -> bool:
    inline = _TCP_READ.get(kind)
    if inline is None:
        inline = _TCP_READ[kind] = (
            getattr(kind, "doRead", None) is tcp.Connection.doRead
            and getattr(kind, "_dataReceived", None) is tcp.Connection._dataReceived
        )
    return inline


#: epoll_wait's longest timeout in seconds, as L{ReactorBase.timeout} caps it
_LONGEST = 2147483

__all__ = ["LeanEPollReactor", "install", "use_lean_reactor"]


class LeanEPollReactor(epollreactor.EPollReactor):
    """L{EPollReactor} without the per-event log context and idle timer work."""

    def __init__(self) -> None:
        #: what runs at the end of this turn (L{call_at_turn_end}), in order
        self._turn_ends: list[Callable[[], object]] = []
        super().__init__()

    def call_at_turn_end(self, f: Callable[[], object]) -> bool:
        """
        On the reactor thread: call C{f} once this turn's events (or its
        timed calls and calls from threads) are handled, before the reactor
        polls again, in the order given; an exception it raises is logged.
        Returns False, and does nothing, when the reactor's loop is not
        running: the caller then does the work itself.
        """
        if not self._started:
            return False
        self._turn_ends.append(f)
        return True

    def _end_turn(self) -> None:
        """Run what L{call_at_turn_end} queued, and what those calls queue."""
        while self._turn_ends:
            calls = self._turn_ends
            self._turn_ends = []
            for f in calls:
                try:
                    f()
                except BaseException:
                    log.err(None, "Error in a call at the end of a reactor turn")

    def mainLoop(self) -> None:
        while self._started:
            # one handler for as many iterations as run without an
            # exception: Twisted enters it once per iteration
            with _topHandler:
                while self._started:
                    if self._turn_ends:  # an exception ended the last turn early
                        self._end_turn()
                    if self.threadCallQueue or self._newTimedCalls or self._justStopped:
                        self.runUntilCurrent()
                        if self._turn_ends:
                            self._end_turn()
                        timeout = self.timeout()
                    else:
                        pending = self._pendingTimedCalls
                        if not pending:
                            timeout = None
                        else:
                            timeout = pending[0].time - self.seconds()
                            if timeout <= 0:
                                self.runUntilCurrent()
                                timeout = self.timeout()
                            elif timeout > _LONGEST:
                                timeout = _LONGEST
                    self.doIteration(timeout if self.running else 0)
        # queued before the loop stopped: a turn's last answers still leave
        self._end_turn()
        _log.info("Main loop terminated.")

    def doPoll(self, timeout: Optional[float]) -> None:
        if timeout is None:
            timeout = -1  # wait until something happens
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        if self.threadCallQueue:
            self._run_thread_calls()
        selectables = self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:  # removed by an earlier event of this poll
                continue
            if event != _EPOLLIN:
                self._doReadOrWrite(selectable, fd, event)
                continue
            # _doReadOrWrite's path for a read event, inline, and for a TCP
            # connection its doRead's (tcp.Connection.doRead and _dataReceived)
            why: Optional[BaseException]
            try:
                if selectable.fileno() == -1:
                    why = _NO_FILEDESC
                elif _TCP_READ.get(type(selectable)) or _reads_as_tcp(type(selectable)):
                    try:
                        data = selectable.socket.recv(selectable.bufferSize)
                    except OSError as se:
                        why = None if se.args[0] == _EWOULDBLOCK else main.CONNECTION_LOST
                    else:
                        if data:
                            selectable.protocol.dataReceived(data)
                            why = None
                        else:
                            why = main.CONNECTION_DONE
                else:
                    why = selectable.doRead()
            except BaseException:
                why = sys.exc_info()[1]
                log.err()
            if why:
                self._disconnectSelectable(selectable, why, True)
        if self._turn_ends:
            self._end_turn()

    def _run_thread_calls(self) -> None:
        """
        The calls from threads queued when the poll returned, before its
        events: a store's commit, durable before the message that woke the
        reactor came (a slave's next push, a master's acknowledgement), has
        its callbacks run first, as it happened first. Calls queued meanwhile
        run at the loop's next turn (L{runUntilCurrent}), before it polls.
        """
        calls = self.threadCallQueue
        total = len(calls)
        for f, a, kw in calls[:total]:
            # what Twisted's handler does, without its context manager's two
            # calls per call (one per replicated write on every replica)
            try:
                f(*a, **kw)
            except BaseException:
                _log.failure("while calling from thread", level=LogLevel.critical)
        del calls[:total]

    doIteration = doPoll


def install() -> LeanEPollReactor:
    """Install a L{LeanEPollReactor} as C{twisted.internet.reactor}."""
    from twisted.internet.main import installReactor

    reactor = LeanEPollReactor()
    installReactor(reactor)
    return reactor


def use_lean_reactor(enabled: bool) -> bool:
    """
    Install the lean reactor if C{enabled} and no reactor is installed yet;
    whether it is now the process's reactor.
    """
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        return isinstance(reactor, LeanEPollReactor)
    if not enabled:
        return False
    install()
    return True
