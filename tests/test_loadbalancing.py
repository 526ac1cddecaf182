# -*- test-case-name: tests.test_loadbalancing -*-
"""
Tests for L{gridreg.registry.loadbalancing}.
"""

from __future__ import annotations

import random
from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry.descriptors import LoadBalancing
from gridreg.registry.loadbalancing import (
    Load,
    LoadSamples,
    RoundRobinState,
    order_replicas,
)

MEMBERS = ("a", "b", "c", "d")


class OrderReplicasTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rng = random.Random(42)
        self.state = RoundRobinState()

    def order(
        self,
        policy: LoadBalancing,
        members: tuple[str, ...] = MEMBERS,
        group_id: str = "G",
        **kwargs: object,
    ) -> list[str]:
        return order_replicas(
            policy, members, rng=self.rng, state=self.state, group_id=group_id, **kwargs
        )  # type: ignore[arg-type]

    def test_random_is_a_seeded_permutation(self) -> None:
        """Random replies list every member, in an order the injected rng decides."""
        policy = LoadBalancing("random")
        first = self.order(policy)
        self.assertEqual(sorted(first), list(MEMBERS))
        self.rng = random.Random(42)
        self.assertEqual(self.order(policy), first)

    def test_random_spreads_first_member(self) -> None:
        firsts = Counter(self.order(LoadBalancing("random"))[0] for _ in range(400))
        self.assertEqual(set(firsts), set(MEMBERS))
        self.assertTrue(all(count > 50 for count in firsts.values()), firsts)

    def test_round_robin_rotates_per_call(self) -> None:
        policy = LoadBalancing("round-robin")
        self.assertEqual(
            [self.order(policy) for _ in range(5)],
            [
                ["a", "b", "c", "d"],
                ["b", "c", "d", "a"],
                ["c", "d", "a", "b"],
                ["d", "a", "b", "c"],
                ["a", "b", "c", "d"],
            ],
        )

    def test_round_robin_counts_per_group(self) -> None:
        policy = LoadBalancing("round-robin")
        self.order(policy, group_id="G")
        self.assertEqual(self.order(policy, group_id="H"), list(MEMBERS))
        self.assertEqual(self.order(policy, group_id="G"), ["b", "c", "d", "a"])

    def test_round_robin_survives_membership_change(self) -> None:
        policy = LoadBalancing("round-robin")
        for _ in range(5):
            self.order(policy)
        self.assertEqual(self.order(policy, members=("a", "b")), ["b", "a"])
        self.assertEqual(self.order(policy, members=()), [])

    def test_round_robin_forget(self) -> None:
        policy = LoadBalancing("round-robin")
        self.order(policy)
        self.state.forget("G")
        self.assertEqual(self.order(policy), list(MEMBERS))

    def test_round_robin_with_n_replicas(self) -> None:
        policy = LoadBalancing("round-robin", n_replicas=2)
        self.assertEqual(
            [self.order(policy) for _ in range(3)], [["a", "b"], ["b", "c"], ["c", "d"]]
        )

    def test_ordered_by_priority(self) -> None:
        priorities = {"a": 5, "b": 1, "c": 5, "d": -3}
        self.assertEqual(
            self.order(LoadBalancing("ordered"), priority=priorities.__getitem__),
            ["d", "b", "a", "c"],  # a before c: ties keep their order
        )

    def test_ordered_without_priorities_keeps_order(self) -> None:
        self.assertEqual(self.order(LoadBalancing("ordered")), list(MEMBERS))

    def test_adaptive_lightest_first(self) -> None:
        loads: dict[str, Load] = {"a": 0.9, "b": 0.1, "c": None, "d": 0.5}
        self.assertEqual(
            self.order(LoadBalancing("adaptive"), load=loads.__getitem__), ["b", "d", "a", "c"]
        )  # unknown load last

    def test_adaptive_uses_the_load_sample(self) -> None:
        loads = {"a": LoadSamples(0.1, 0.9, 0.5), "b": LoadSamples(0.9, 0.1, 0.4)}
        for sample, expected in [("1", ["a", "b"]), ("5", ["b", "a"]), ("15", ["b", "a"])]:
            policy = LoadBalancing("adaptive", load_sample=sample)
            self.assertEqual(
                self.order(policy, members=("a", "b"), load=loads.__getitem__), expected
            )

    def test_adaptive_ties_are_spread(self) -> None:
        firsts = Counter(
            self.order(LoadBalancing("adaptive"), load=lambda m: 0.5)[0] for _ in range(200)
        )
        self.assertEqual(set(firsts), set(MEMBERS))

    def test_adaptive_without_loads_is_random(self) -> None:
        policy = LoadBalancing("adaptive")
        first = self.order(policy)
        self.rng = random.Random(42)
        self.assertEqual(first, self.order(LoadBalancing("random")))
        self.assertEqual(sorted(first), list(MEMBERS))

    def test_n_replicas_cut(self) -> None:
        for kind in ("random", "ordered", "adaptive"):
            self.assertEqual(len(self.order(LoadBalancing(kind, n_replicas=3))), 3)
        self.assertEqual(self.order(LoadBalancing("ordered", n_replicas=9)), list(MEMBERS))
        self.assertEqual(self.order(LoadBalancing("ordered", n_replicas=1)), ["a"])

    def test_input_untouched(self) -> None:
        members = ["a", "b", "c"]
        self.order(LoadBalancing("random"), members=members)  # type: ignore[arg-type]
        self.assertEqual(members, ["a", "b", "c"])

    def test_unknown_type(self) -> None:
        self.assertRaises(ValueError, self.order, LoadBalancing("fastest"))
