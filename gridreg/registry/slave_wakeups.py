# -*- test-case-name: tests.test_slave_wakeups -*-
"""
A slave that lost its master wakes for its clients at once for a while.

A registry runs under C{SCHED_BATCH} by default (L{gridreg.scheduling}): a
woken registry waits for the running task's slice instead of preempting
it, which costs nothing while a core is idle. The master's death is the
moment no core is: the clients failing over, the dying master, the slave
itself and whatever else shares the host all wake in the same millisecond,
and a client's retry on the slave waited for a CPU (C{bench.failover}: the
slave answered it 0.6-2.4 ms after it was sent, IceGrid's slave, under the
normal policy, 0.2-0.7 ms). So at the loss the slave's reactor thread takes
the normal policy back for L{WINDOW} seconds, then returns to batch; a
slave that did not run under batch is left as it is.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from twisted.logger import Logger

__all__ = ["WINDOW", "LossWakeups"]

#: seconds the slave stays under the normal policy after losing its master: the
#: clients' failover (their retries, new connections) is over well within it
WINDOW = 2.0

#: the policies, where the platform has them
_BATCH: Optional[int] = getattr(os, "SCHED_BATCH", None)
_NORMAL: Optional[int] = getattr(os, "SCHED_OTHER", None)


class LossWakeups:
    """Switches the calling thread (the reactor's) from batch to normal and back."""

    log = Logger()

    def __init__(
        self,
        clock: Any,
        get_policy: Optional[Callable[[int], int]] = None,
        set_policy: Optional[Callable[[int, int, Any], None]] = None,
        window: float = WINDOW,
    ) -> None:
        self.clock = clock
        self.window = window
        self._get = get_policy or getattr(os, "sched_getscheduler", None)
        self._set = set_policy or getattr(os, "sched_setscheduler", None)
        self._restore: Optional[Any] = None

    @property
    def interactive(self) -> bool:
        """Whether the thread is under the normal policy for a loss now."""
        return self._restore is not None

    def master_lost(self) -> None:
        """Take the normal policy for the window (or extend it), if batch was in force."""
        if self._restore is not None:
            self._restore.reset(self.window)
            return
        if self._get is None or self._set is None or _BATCH is None or _NORMAL is None:
            return
        try:
            if self._get(0) != _BATCH:
                return
            self._set(0, _NORMAL, os.sched_param(0))
        except OSError as e:
            self.log.debug("No change of scheduling policy at the master's loss: {e}", e=e)
            return
        self._restore = self.clock.callLater(self.window, self._back_to_batch)

    def _back_to_batch(self) -> None:
        self._restore = None
        assert self._set is not None and _BATCH is not None  # as when the window opened
        try:
            self._set(0, _BATCH, os.sched_param(0))
        except OSError as e:  # the kernel took it before: not expected to refuse now
            self.log.warn("Could not return to SCHED_BATCH after the master's loss: {e}", e=e)

    def stop(self) -> None:
        """Back to batch at once if the window is open (the service stops)."""
        restore = self._restore
        if restore is not None and restore.active():
            restore.cancel()
            self._back_to_batch()
