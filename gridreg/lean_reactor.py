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

Everything else is Twisted's: the same poller, the same
C{_doReadOrWrite} (which already catches what C{doRead}/C{doWrite} raise
and disconnects that descriptor), the same timed calls. An exception that
escapes C{_doReadOrWrite} itself reaches the main loop's own handler,
which logs it; the events left in that poll are reported again by the next
one (epoll is level-triggered).

The plugins install it from C{postOptions}, as L{gridreg.tls_gate} keeps
TLS out: C{twist} and C{twistd} import the reactor only after the
plugin's options are parsed. A reactor already installed (a test process,
C{--reactor}) is left alone.
"""

from __future__ import annotations

import errno
import sys
from typing import Optional

from twisted.internet import epollreactor

__all__ = ["LeanEPollReactor", "install", "use_lean_reactor"]


class LeanEPollReactor(epollreactor.EPollReactor):
    """L{EPollReactor} without the per-event log context."""

    def doPoll(self, timeout: Optional[float]) -> None:
        if timeout is None:
            timeout = -1  # wait until something happens
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:  # removed by an earlier event of this poll
                dispatch(selectable, fd, event)

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
