# -*- test-case-name: tests.test_loadbalancing -*-
"""
Replica-group load balancing: which members a locate reply lists, in what
order.

An Ice client connects to the first endpoints that work, so the order of a
replica group's members in the registry's reply is how load gets spread.
The policies are IceGrid's:

  - C{random}: a fresh shuffle per request;
  - C{round-robin}: the member list rotated by one more step per request,
    per group, so successive clients start at successive members;
  - C{ordered}: by adapter priority, lowest first (ties keep their order);
  - C{adaptive}: by the load of each member's node, lightest first, using
    the policy's 1, 5 or 15 minute average (ties are shuffled). Without any
    load information it degrades to random.

A policy's C{n_replicas}, if positive, then cuts the list to that many.
Everything random comes from an injected L{random.Random}, so tests and
replicas can seed it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import attrs


if TYPE_CHECKING:  # the descriptor model is imported once an application is
    from gridreg.registry.descriptors import LoadBalancing

T = TypeVar("T")


@attrs.frozen
class LoadSamples:
    """
    A node's load averages over 1, 5 and 15 minutes, as nodes report them
    (IceGrid reports load divided by the number of processors).
    """

    avg1: float
    avg5: float
    avg15: float

    def sample(self, minutes: str) -> float:
        """The average an adaptive policy's C{load_sample} names."""
        return {"1": self.avg1, "5": self.avg5, "15": self.avg15}[minutes]


#: What a load callback may answer for a member: one number, a node's
#: averages (the policy picks one), or L{None} when the load is unknown.
Load = float | LoadSamples | None


class RoundRobinState:
    """
    Per replica group, how far round-robin has rotated. Kept by the registry
    for its lifetime; it is not replicated (each replica rotates its own
    replies, which spreads load just as well).
    """

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    def advance(self, group_id: str) -> int:
        """The rotation for this request; the next request gets one more."""
        counter = self._counters.get(group_id, 0)
        self._counters[group_id] = counter + 1
        return counter

    def forget(self, group_id: str) -> None:
        """Drop a removed group's counter."""
        self._counters.pop(group_id, None)


def _load_value(load: Load, sample: str) -> float:
    if load is None:
        return float("inf")  # unknown load: after every member with a known one
    if isinstance(load, LoadSamples):
        return load.sample(sample)
    return float(load)


def order_replicas(
    policy: LoadBalancing,
    members: Sequence[T],
    *,
    rng: random.Random,
    state: RoundRobinState,
    group_id: str,
    priority: Callable[[T], int] | None = None,
    load: Callable[[T], Load] | None = None,
) -> list[T]:
    """
    The members a locate request for C{group_id} should list, in order.

    @param members: the group's live members, in a stable order (the
        order round-robin rotates and ordered keeps for ties).
    @param priority: a member's adapter priority (C{ordered}); without it
        all members rank equal.
    @param load: a member's node load (C{adaptive}); without it C{adaptive}
        behaves like C{random}.
    @raise ValueError: the policy type is not one IceGrid defines.
    """
    ordered = list(members)
    if policy.type == "adaptive" and load is not None:
        rng.shuffle(ordered)  # so that members with equal loads share the work
        ordered.sort(key=lambda member: _load_value(load(member), policy.load_sample))
    elif policy.type in ("random", "adaptive"):
        rng.shuffle(ordered)
    elif policy.type == "round-robin":
        if ordered:
            offset = state.advance(group_id) % len(ordered)
            ordered = ordered[offset:] + ordered[:offset]
    elif policy.type == "ordered":
        if priority is not None:
            ordered.sort(key=priority)
    else:
        raise ValueError(f"unknown load-balancing type {policy.type!r}")
    if policy.n_replicas > 0:
        del ordered[policy.n_replicas :]
    return ordered
