"""
Tests for L{gridreg.registry.object_table}: the well-known objects held as
their stored texts read as the decoded objects, by identity and by type,
through changes, whatever spelling a stored key has.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.registry.object_table import (
    ObjectInfo,
    ObjectTable,
    StoredObject,
    identity_from_key,
    object_key,
    odd_keys,
    split_value,
)
from gridreg.registry.state import OBJECT, RegistryState, object_mutation
from gridreg.store.records import EncodedValues, Mutation


def proxy(name: str, port: int = 10000, category: str = "c") -> Proxy:
    return Proxy(Identity(name, category), endpoints=(TcpEndpoint("127.0.0.1", port),))


def record(name: str, type_id: str = "::T", category: str = "c") -> tuple[str, str]:
    """An object's store key and JSON text, as the store writes them."""
    identity = Identity(name, category)
    m = object_mutation(identity, ObjectInfo(proxy(name, category=category), type_id))
    assert m.value is not None
    return m.key, json.dumps(m.value, separators=(",", ":"))


def loaded(*records: tuple[str, str]) -> ObjectTable:
    table = ObjectTable()
    table.load(EncodedValues(dict(records)))
    return table


class ObjectKeyTests(SynchronousTestCase):
    def test_keys_are_what_the_json_encoder_writes(self) -> None:
        """The fast spelling is exactly the stored one, escapes included."""
        for category, name in [
            ("c", "o"),
            ("", "o"),
            ("caf\u00e9", "\u2028x\x7f"),
            ('q"uote', "back\\slash"),
            ("tab\there", "nl\n"),
            ('", "', '"]'),
        ]:
            key = object_key(Identity(name, category))
            self.assertEqual(key, json.dumps([category, name], ensure_ascii=False))
            self.assertEqual(identity_from_key(key), Identity(name, category))

    def test_odd_keys_are_those_not_spelt_plainly(self) -> None:
        """
        Among many keys (looked at many at once), exactly those whose
        spelling is not the plain one are odd, in order, whatever their
        neighbours: a key holding a newline between two plain-looking
        halves included.
        """
        plain = [object_key(Identity(f"o{i}", "c")) for i in range(10_000)]
        self.assertEqual(odd_keys(plain), [])
        self.assertEqual(odd_keys(iter(plain[:3])), [])
        odd = [
            '["c","o"]',  # the JSON encoder's spelling without the space
            object_key(Identity("nl\n", "c")),
            '["a", "b"]\n["c", "d"]',
            '["a", "b"]\n',
            "",
        ]
        keys = plain[:5000] + odd[:2] + plain[5000:9000] + odd[2:] + plain[9000:]
        self.assertEqual(odd_keys(keys), odd)
        self.assertEqual(odd_keys(odd[2:3]), odd[2:3])

    def test_values_split_as_decoded(self) -> None:
        _, text = record("o", '::A"B')
        self.assertEqual(split_value(text), (json.loads(text)["proxy"], '::A"B'))
        self.assertRaises(ValueError, split_value, "[1]")


class ObjectTableTests(SynchronousTestCase):
    def test_stored_texts_read_as_objects(self) -> None:
        table = loaded(record("a"), record("b", "::U"))
        self.assertEqual(len(table), 2)
        self.assertIn(Identity("a", "c"), table)
        self.assertNotIn(Identity("a", "other"), table)
        self.assertNotIn("a", table)
        found = table[Identity("b", "c")]
        self.assertIsInstance(found, StoredObject)
        self.assertEqual(found, ObjectInfo(proxy("b"), "::U"))
        self.assertIs(table.get(Identity("b", "c")), found)  # decoded once
        self.assertIsNone(table.get(Identity("nobody")))
        self.assertRaises(KeyError, lambda: table[Identity("nobody")])
        self.assertEqual(sorted(table), [Identity("a", "c"), Identity("b", "c")])
        self.assertEqual(
            sorted((i, o.proxy) for i, o in table.items()),
            [(Identity("a", "c"), proxy("a")), (Identity("b", "c"), proxy("b"))],
        )
        self.assertEqual(sorted(o.type for o in table.values()), ["::T", "::U"])

    def test_only_what_is_used_is_decoded(self) -> None:
        key_a, text_a = record("a")
        table = loaded((key_a, text_a), record("b"))
        table.get(Identity("b", "c"))
        self.assertIs(table._entries[key_a], text_a)

    def test_by_type_from_texts_then_through_changes(self) -> None:
        table = loaded(record("a"), record("b", "::U"), record("c"))
        self.assertEqual([o.proxy for o in table.of_type("::T")], [proxy("a"), proxy("c")])
        key, text = record("a", "::U")
        table.put(key, json.loads(text))
        table.remove(record("c")[0])
        self.assertEqual(table.of_type("::T"), [])
        self.assertEqual([o.proxy for o in table.of_type("::U")], [proxy("b"), proxy("a")])
        self.assertEqual(table.of_type("::nothing"), [])

    def test_changes_before_the_index_is_built(self) -> None:
        table = loaded(record("a"), record("b"))
        table.remove(record("a")[0])
        key, text = record("n")
        table.put(key, json.loads(text))
        self.assertEqual([o.proxy for o in table.of_type("::T")], [proxy("b"), proxy("n")])

    def test_a_key_spelt_otherwise_is_found_and_replaced(self) -> None:
        """A key the store holds in another JSON spelling answers for its identity."""
        key, text = record("caf\u00e9")
        ascii_key = json.dumps(["c", "caf\u00e9"])  # escaped, no space after the comma
        table = loaded((ascii_key.replace(", ", ","), text))
        self.assertEqual(table[Identity("caf\u00e9", "c")], ObjectInfo(proxy("caf\u00e9"), "::T"))
        table.put(ascii_key, {"proxy": split_value(record("x")[1])[0], "type": "::V"})
        self.assertEqual(len(table), 1)
        self.assertEqual(table[Identity("caf\u00e9", "c")].type, "::V")

    def test_decoded_values_load_too(self) -> None:
        """A memory store's (or a reload's) decoded records load the same."""
        key, text = record("a")
        table = ObjectTable()
        table.load({key: json.loads(text)})
        self.assertEqual(table[Identity("a", "c")], ObjectInfo(proxy("a"), "::T"))


class StateLoadTests(SynchronousTestCase):
    def test_a_load_from_texts_answers_locates_and_takes_changes(self) -> None:
        state = RegistryState()
        state.load({OBJECT: EncodedValues(dict([record("a"), record("b")]))})
        self.assertEqual(state.find_object(Identity("a", "c")), ObjectInfo(proxy("a"), "::T"))
        changes: list[object] = []
        state.on_mutations(changes.append)
        state.apply([Mutation(OBJECT, record("a")[0], None)])
        self.assertIsNone(state.find_object(Identity("a", "c")))
        self.assertEqual(changes, [[(Mutation(OBJECT, record("a")[0], None), True)]])
        self.assertEqual(state.objects_of_type("::T"), [proxy("b")])
