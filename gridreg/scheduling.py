# -*- test-case-name: tests.test_scheduling -*-
"""
The registry's CPU scheduling policy (C{GridReg.Scheduler}).

On a host where the registry shares cores with busy clients, a request
wakes the registry's one reactor thread, which then preempts the client
that sent it; the client pays a context switch per reply, and a client
with many requests in flight got fewer replies per second from gridreg
than from IceGrid although gridreg spent less CPU (C{python -m
bench.locate --schedulers normal,batch}, bench/README.rst). Linux's
C{SCHED_BATCH} tells the kernel the registry is not interactive: a woken
registry waits for the running task's slice instead of preempting it, and
answers the requests that gathered meanwhile in one go. It keeps its share
of the CPU (the policy changes wake-up preemption, not weight), and on a
core that is idle it runs at once, so only a host with every core busy
sees a reply wait (at most the running task's slice, a few milliseconds):
replication lag, failover and node sessions were measured unchanged. So it
is the default (C{batch}); C{normal} leaves the process the policy it was
started with (the kernel's C{SCHED_OTHER} unless its parent chose another).

It is set once, on the main thread before any other thread starts, so the
store's worker thread and the reactor's thread pool inherit it.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from twisted.logger import Logger

log = Logger("gridreg.scheduling")

#: GridReg.Scheduler's values, the default first
POLICIES = ("batch", "normal")

SetScheduler = Callable[[int, int, object], None]


def use_scheduler(policy: str, set_scheduler: Optional[SetScheduler] = None) -> bool:
    """
    Put this process (its calling thread, and the threads it starts later)
    under C{policy}; True when the kernel took it. A kernel or platform that
    refuses it is logged and changes nothing else.
    """
    if policy == "normal":
        return True
    if policy != "batch":
        raise ValueError(f"unknown scheduling policy {policy!r}")
    batch = getattr(os, "SCHED_BATCH", None)
    setter = set_scheduler or getattr(os, "sched_setscheduler", None)
    if batch is None or setter is None:
        # not a fault on a platform without it, and batch is the default: no warning
        log.info("GridReg.Scheduler=batch: this platform has no SCHED_BATCH; ignored")
        return False
    try:
        setter(0, batch, os.sched_param(0))
    except OSError as e:
        log.warn("GridReg.Scheduler=batch refused by the kernel ({error}); ignored", error=e)
        return False
    log.info("Scheduling policy: SCHED_BATCH (GridReg.Scheduler=batch)")
    return True
