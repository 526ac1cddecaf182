"""
Tests for L{gridreg.registry.pushed_changes}: a push's changes decoded with
each put's text as the master wrote it, and the general decoding otherwise.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.registry.pushed_changes import decode_changes
from gridreg.registry.state import ObjectInfo, object_mutation
from gridreg.store.records import (
    KINDS,
    Change,
    Mutation,
    change_from_dict,
    change_to_json,
    encode_value,
)


def _master_push(changes: list[Change]) -> str:
    """A push's payload as the master writes it."""
    return "[" + ",".join(change_to_json(c) for c in changes) + "]"


def _general(payload: str) -> list[Change]:
    return [change_from_dict(c) for c in json.loads(payload)]


def _object(name: str, type_id: str = "::Demo::Hello") -> Mutation:
    proxy = Proxy(Identity(name, "cat"), endpoints=(TcpEndpoint("127.0.0.1", 10000),))
    return object_mutation(proxy.identity, ObjectInfo(proxy, type_id))


class MasterFormTests(SynchronousTestCase):
    """A push in the master's form: the same changes, each put with the master's text."""

    def _check(self, changes: list[Change]) -> list[Change]:
        payload = _master_push(changes)
        decoded = decode_changes(payload)
        self.assertEqual(decoded, _general(payload))
        self.assertEqual(decoded, changes)
        # each change keeps its own text: what the master wrote, logged as it is
        self.assertEqual([c.text for c in decoded], [change_to_json(c) for c in changes])
        return decoded

    def test_one_put(self) -> None:
        put = _object("hello")
        [change] = self._check([Change(7, [put])])
        self.assertEqual(change.mutations[0].text, put.text)

    def test_many_changes_and_mutations(self) -> None:
        changes = [
            Change(10, [_object("a"), Mutation("object", "cat/b", None)]),
            Change(11, [Mutation("adapter", "Ad", {"proxy": "x", "group": ["a", 1, 2.5, True]})]),
            Change(12, [Mutation("meta", "epochs", {"e": {"nested": [None, {"k": "v"}]}})]),
        ]
        decoded = self._check(changes)
        for change in decoded:
            for m in change.mutations:
                if m.value is None:
                    self.assertIsNone(m.text)
                else:
                    self.assertEqual(m.text, encode_value(Mutation(m.kind, m.key, m.value)))

    def test_escapes_inside_a_value(self) -> None:
        put = _object("x", 'q"uote\\back \u00e9t\u00e9 \u2028\x01')
        [change] = self._check([Change(1, [put])])
        self.assertEqual(change.mutations[0].text, put.text)

    def test_escaped_keys(self) -> None:
        """An object's key is a JSON list (quotes and backslashes escaped); others may be too."""
        for key in ['["cat", "na\\"me"]', "\u00e9t\u00e9", "tab\there"]:
            [change] = self._check([Change(2, [Mutation("adapter", key, {"a": 1})])])
            self.assertEqual(change.mutations[0].key, key)
            self.assertEqual(change.mutations[0].text, '{"a":1}')

    def test_a_change_without_mutations(self) -> None:
        self._check([Change(3, []), Change(4, [_object("after")])])

    def test_empty(self) -> None:
        self.assertEqual(decode_changes("[]"), [])

    def test_the_texts_are_the_pushs_own(self) -> None:
        """A value spelled otherwise than this replica would spell it keeps its spelling."""
        payload = '[{"serial":5,"mutations":[{"kind":"object","key":"k","value":{"n":1.0E2}}]}]'
        [change] = decode_changes(payload)
        self.assertEqual(change.mutations[0].value, {"n": 100.0})
        self.assertEqual(change.mutations[0].text, '{"n":1.0E2}')
        self.assertEqual(change.text, payload[1:-1])


class OtherFormTests(SynchronousTestCase):
    """Anything else is decoded the general way: the same changes, no texts."""

    def _check_general(self, payload: str) -> None:
        decoded = decode_changes(payload)
        self.assertEqual(decoded, _general(payload))
        for change in decoded:
            self.assertIsNone(change.text)
            for m in change.mutations:
                self.assertIsNone(m.text)

    def test_spaces(self) -> None:
        self._check_general(
            '[{"serial": 1, "mutations": [{"kind": "object", "key": "k", "value": {"a": 1}}]}]'
        )

    def test_an_escaped_kind(self) -> None:
        self._check_general(
            '[{"serial":1,"mutations":[{"kind":"\\u006fbject","key":"k","value":{"a":1}}]}]'
        )

    def test_fields_in_another_order(self) -> None:
        self._check_general(
            '[{"mutations":[{"key":"k","kind":"object","value":{"a":1}}],"serial":1}]'
        )

    def test_not_strict_json(self) -> None:
        """NaN: decoded as before, without a text, so the store refuses it as before."""
        payload = '[{"serial":1,"mutations":[{"kind":"object","key":"k","value":{"a":NaN}}]}]'
        [change] = decode_changes(payload)
        self.assertIsNone(change.mutations[0].text)
        self.assertRaises(ValueError, encode_value, change.mutations[0])

    def test_refused_as_before(self) -> None:
        """What the general way refuses, this refuses with the same error."""
        for payload in [
            '[{"serial":1,"mutations":[{"kind":"nothing","key":"k","value":{"a":1}}]}]',
            '[{"serial":1,"mutations":[{"kind":"object","key":"k","value":[1]}]}]',
            '[{"serial":1,"mutations":[{"kind":"object","key":"k","value":{"a":1}}]}',
            '[{"serial":1,"mutations":[{"kind":"object","key":"k","value":{"a":1}}]}]x',
            '[{"serial":1,"mutations":[{"kind":"object","key":"k"}]}]',
        ]:
            with self.assertRaises(ValueError) as general:
                _general(payload)
            with self.assertRaises(ValueError) as walked:
                decode_changes(payload)
            self.assertEqual(str(walked.exception), str(general.exception), payload)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)

_random_mutations = st.builds(
    Mutation,
    st.sampled_from(sorted(KINDS)),
    st.text(max_size=12),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=6), _json_values, max_size=3)),
)


@st.composite
def _random_pushes(draw: Any) -> list[Change]:
    """Consecutive changes of random mutations (none, one or several each)."""
    first = draw(st.integers(0, 10**6))
    batches = draw(st.lists(st.lists(_random_mutations, max_size=3), max_size=4))
    return [Change(first + i, mutations) for i, mutations in enumerate(batches)]


class WalkAgainstGeneralTests(SynchronousTestCase):
    """Over random pushes: the walk decodes what the general way decodes, and refuses alike."""

    @settings(derandomize=True, max_examples=400, database=None, deadline=None)
    @given(_random_pushes())
    def test_the_masters_form(self, changes: list[Change]) -> None:
        payload = _master_push(changes)
        decoded = decode_changes(payload)
        self.assertEqual(decoded, changes)
        self.assertEqual([c.text for c in decoded], [change_to_json(c) for c in changes])
        for change in decoded:
            for m in change.mutations:
                self.assertEqual(m.text, None if m.value is None else encode_value(m))

    @settings(derandomize=True, max_examples=600, database=None, deadline=None)
    @given(_random_pushes(), st.data())
    def test_a_damaged_push(self, changes: list[Change], data: Any) -> None:
        """
        A character dropped, added or replaced anywhere: the general way's
        changes, or its error.
        """
        payload = _master_push(changes)
        # mostly where the walk looks: at the brackets, braces, commas and colons
        marks = [i for i, c in enumerate(payload) if c in "[]{},:"]
        at = data.draw(st.one_of(st.sampled_from(marks), st.integers(0, len(payload))))
        how = data.draw(st.sampled_from(["drop", "add", "replace"]))
        put = "" if how == "drop" else data.draw(st.sampled_from(list('[]{},:"\\ 0a')))
        damaged = payload[:at] + put + payload[at + (how != "add") :]
        try:
            expected = _general(damaged)
        except ValueError as general:
            with self.assertRaises(ValueError) as walked:
                decode_changes(damaged)
            self.assertEqual(str(walked.exception), str(general))
            return
        self.assertEqual(decode_changes(damaged), expected)
