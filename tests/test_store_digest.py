# -*- test-case-name: tests.test_store_digest -*-
"""
Tests for L{gridreg.store.digest}: equal records give equal digests, any
difference in a record gives a different one, whatever the store.
"""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from gridreg.store.digest import canonical_json, records_digest, state_digest
from gridreg.store.memory import MemoryStore
from gridreg.store.records import Mutation, StoreState, empty_records
from gridreg.store.sqlite import SQLiteStore

RECORDS = {
    "object": {'["","hello"]': {"proxy": "hello:tcp -p 1", "type": "::Demo::Hello"}},
    "adapter": {"A": {"proxy": "dummy:tcp -p 2", "replica_group": ""}},
    "application": {"App": {"name": "App", "xml": "<icegrid>\u00e9</icegrid>", "n": [1, 2.5]}},
}


class RecordsDigestTests(SynchronousTestCase):
    def test_sha256_hex(self) -> None:
        digest = records_digest(RECORDS)
        self.assertEqual(len(digest), 64)
        int(digest, 16)

    def test_no_records_is_the_digest_of_the_version_alone(self) -> None:
        """Pinned: a change of encoding must be deliberate (it changes every digest)."""
        expected = hashlib.sha256(b"gridreg-records-digest-v1\n").hexdigest()
        self.assertEqual(records_digest({}), expected)
        self.assertEqual(records_digest(empty_records()), expected, "empty kinds are absent")

    def test_insertion_order_and_json_spelling_do_not_matter(self) -> None:
        reordered = {
            kind: dict(reversed(list(RECORDS[kind].items()))) for kind in reversed(list(RECORDS))
        }
        reordered["application"] = {
            "App": {"n": [1, 2.5], "xml": "<icegrid>é</icegrid>", "name": "App"}
        }
        self.assertEqual(records_digest(reordered), records_digest(RECORDS))

    def test_any_difference_changes_the_digest(self) -> None:
        base = records_digest(RECORDS)
        variants = [
            {**RECORDS, "object": {}},
            {**RECORDS, "meta": {"x": {}}},
            {**RECORDS, "adapter": {"B": RECORDS["adapter"]["A"]}},
            {**RECORDS, "adapter": {"A": {"proxy": "dummy:tcp -p 3", "replica_group": ""}}},
            {**RECORDS, "application": {"App": {**RECORDS["application"]["App"], "n": [2, 1]}}},
            {"replica": RECORDS["adapter"], "object": RECORDS["object"], "application": {}},
        ]
        digests = {records_digest(v) for v in variants}
        self.assertNotIn(base, digests)
        self.assertEqual(len(digests), len(variants))

    def test_fields_cannot_run_into_each_other(self) -> None:
        """Moving characters between kind, key and value gives another digest."""
        self.assertNotEqual(
            records_digest({"object": {"ab": {"c": 1}}}),
            records_digest({"object": {"a": {"bc": 1}}}),
        )
        self.assertNotEqual(
            records_digest({"object": {"a": {}, "b": {}}}),
            records_digest({"object": {"a": {}}, "objectb": {}}),
        )

    def test_value_that_is_not_json_is_refused(self) -> None:
        self.assertRaises(ValueError, records_digest, {"object": {"k": {"x": float("nan")}}})
        self.assertRaises(TypeError, records_digest, {"object": {"k": {"x": object()}}})

    def test_canonical_json(self) -> None:
        self.assertEqual(canonical_json({"b": 1, "a": ["é", None]}), '{"a":["\\u00e9",null],"b":1}')

    def test_state_digest_ignores_serial_and_database_id(self) -> None:
        self.assertEqual(
            state_digest(StoreState("id-1", 5, RECORDS)),
            state_digest(StoreState("id-2", 9, RECORDS)),
        )


class StoreDigestTests(SynchronousTestCase):
    """What a replica computes: the digest of its store's snapshot."""

    def _digest_after(self, store: SQLiteStore | MemoryStore, batches: list[list[Mutation]]) -> str:
        self.successResultOf(store.open())
        self.addCleanup(store.close)
        for batch in batches:
            self.successResultOf(store.commit(batch))
        return state_digest(self.successResultOf(store.snapshot()))

    def test_same_records_same_digest_across_stores_and_histories(self) -> None:
        """
        An SQLite store and a memory store that reach the same records by
        different histories have one digest; a further delete changes it.
        """
        one = [
            [Mutation("object", "a", {"proxy": "a:tcp", "type": "T"})],
            [Mutation("adapter", "X", {"proxy": "dummy:tcp", "replica_group": ""})],
            [Mutation("object", "b", {"proxy": "b:tcp", "type": "T"})],
        ]
        other = [
            [Mutation("object", "b", {"type": "T", "proxy": "b:tcp"})],
            [Mutation("object", "gone", {"proxy": "g:tcp", "type": "T"})],
            [
                Mutation("adapter", "X", {"replica_group": "", "proxy": "dummy:tcp"}),
                Mutation("object", "a", {"proxy": "old", "type": "T"}),
            ],
            [
                Mutation("object", "gone", None),
                Mutation("object", "a", {"proxy": "a:tcp", "type": "T"}),
            ],
        ]
        sqlite = SQLiteStore(self.mktemp())
        memory = MemoryStore()
        self.assertEqual(self._digest_after(sqlite, one), self._digest_after(memory, other))
        before = state_digest(self.successResultOf(sqlite.snapshot()))
        self.successResultOf(sqlite.commit([Mutation("object", "a", None)]))
        self.assertNotEqual(state_digest(self.successResultOf(sqlite.snapshot())), before)
