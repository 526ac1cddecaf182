# -*- test-case-name: tests.test_client_hedging -*-
"""
When to send a locator request a second time, to another replica.

A replica that is hung (stopped, deadlocked, swapping) keeps its TCP
connections open, so only a deadline notices it; a deadline long enough
for a busy replica (the request timeout, 0.5 s by default) is far too long
for a client that usually gets its answer in a millisecond. Hedging bridges
the two: a request still unanswered after a few times that replica's
recent round trip is also sent to the next replica, and the first answer
wins.

The extra load is bounded three ways:

  - at most one hedge per request;
  - a L{HedgeBudget}: over any stretch of time at most C{ratio} (10%) of the
    requests, plus a small burst, are hedged; a client whose replica is
    merely slow for a while hedges a tenth of its requests, not all;
  - a replica whose request was overtaken by a hedge is I{suspect}: until
    it answers again, new requests skip it and go straight to the next
    replica, so a hung replica costs one hedge, not one per request.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

__all__ = ["HedgeBudget", "HedgePolicy", "LatencyWindow"]


class LatencyWindow:
    """The last few round trips of one connection, for a percentile."""

    def __init__(self, size: int = 32) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, seconds: float) -> None:
        self._samples.append(max(0.0, seconds))

    def percentile(self, fraction: float) -> Optional[float]:
        """The C{fraction} quantile (nearest rank), or C{None} without samples."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        rank = min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.999999) - 1))
        return ordered[rank]


class HedgeBudget:
    """
    A token bucket: every request earns C{ratio} of a hedge, up to
    C{burst}; a hedge spends one. So hedges never exceed C{ratio} times the
    requests plus C{burst}. It starts full, so the very first stall can be
    hedged.
    """

    def __init__(self, ratio: float = 0.1, burst: float = 2.0) -> None:
        self.ratio = ratio
        self.burst = burst
        self.tokens = burst
        self.requests = 0
        self.hedges = 0

    def request(self) -> None:
        """Count a request (before it may be hedged)."""
        self.requests += 1
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def spend(self) -> bool:
        """Take one hedge if the budget has it."""
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        self.hedges += 1
        return True


class HedgePolicy:
    """
    The hedge delay for a connection: C{multiplier} times the
    C{percentile} of its recent round trips, at least C{floor} seconds
    (so scheduling noise on an idle loopback does not trigger hedges) and at
    most C{cap} (so a hung replica is bypassed quickly even after a slow
    spell). A connection without samples yet waits C{cap}.

    The floor is 1 ms, below the 1.5-3 ms a SIGKILLed registry's kernel
    takes to close its connections (it frees the process's memory first):
    so a request sent to a master that was just killed is answered by the
    next replica after about 1 ms whichever registry it is, instead of
    after the dying master's EOF. In C{bench.failover} (loopback, a shared
    machine) it hedged 0.1-0.4% of the requests (with a 3 ms floor 0-0.3%).
    """

    def __init__(
        self,
        multiplier: float = 3.0,
        percentile: float = 0.9,
        floor: float = 0.001,
        cap: float = 0.05,
    ) -> None:
        if not 0 < floor <= cap:
            raise ValueError("a hedge policy needs 0 < floor <= cap")
        self.multiplier = multiplier
        self.percentile = percentile
        self.floor = floor
        self.cap = cap

    def delay(self, window: LatencyWindow) -> float:
        recent = window.percentile(self.percentile)
        if recent is None:
            return self.cap
        return min(self.cap, max(self.floor, self.multiplier * recent))
