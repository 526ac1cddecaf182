"""
Tests for L{gridreg.registry.state}: the indexes locate requests and Query
calls are answered from, as committed changes and loads leave them.
"""

from __future__ import annotations

import base64
import json
import gc
import random

from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.encoding import OutputStream
from gridreg.ice.types import ENCODING_1_1, Identity, Proxy, TcpEndpoint
from gridreg.registry.applications import APPLICATION
from gridreg.registry.descriptors import application_to_json, parse_application
from gridreg.registry.state import (
    ADAPTER,
    OBJECT,
    REPLICA,
    AdapterInfo,
    ObjectInfo,
    RegistryState,
    StoredObject,
    adapter_mutation,
    decode_proxy_field,
    encode_proxy_field,
    object_key,
    object_mutation,
)
from gridreg.store.records import EncodedValues, Mutation, encode_value

APP_XML = """<icegrid>
  <application name="App">
    <replica-group id="Ordered">
      <load-balancing type="ordered"/>
      <object identity="ordered-object" type="::Demo::Ordered"/>
    </replica-group>
    <replica-group id="Rotated">
      <load-balancing type="round-robin"/>
    </replica-group>
    <node name="node1">
      <server id="S1" exe="x">
        <adapter name="A" id="S1.A" endpoints="tcp" replica-group="Ordered" priority="2"/>
        <adapter name="B" id="S1.B" endpoints="tcp" replica-group="Rotated"/>
        <adapter name="C" id="S1.C" endpoints="tcp"/>
        <adapter name="D" id="S1.D" endpoints="tcp" replica-group="Ordered" priority="0"/>
      </server>
      <server id="S2" exe="x">
        <adapter name="A" id="S2.A" endpoints="tcp" replica-group="Ordered" priority="1"/>
        <adapter name="B" id="S2.B" endpoints="tcp" replica-group="Rotated"/>
      </server>
    </node>
  </application>
</icegrid>
"""


def direct(port: int, name: str = "dummy") -> Proxy:
    return Proxy(Identity(name), endpoints=(TcpEndpoint("127.0.0.1", port),))


def adapter(adapter_id: str, port: int, group: str = "") -> Mutation:
    return adapter_mutation(adapter_id, AdapterInfo(adapter_id, direct(port), group))


def obj(name: str, port: int, type_id: str = "::Demo::Hello", category: str = "") -> Mutation:
    return object_mutation(Identity(name, category), ObjectInfo(direct(port, name), type_id))


def application() -> Mutation:
    return Mutation(APPLICATION, "App", application_to_json(parse_application(APP_XML)))


def ports(state: RegistryState, adapter_id: str) -> tuple[list[int], bool] | None:
    found = state.locate_adapter(adapter_id)
    if found is None:
        return None
    endpoints, stable = found
    return [e.port for e in endpoints], stable


class AdapterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = RegistryState(random.Random(1))

    def test_register_and_unregister(self) -> None:
        """A registered adapter resolves to its endpoints, cacheably; a removed one not at all."""
        self.state.apply([adapter("A", 1000)])
        self.assertEqual(ports(self.state, "A"), ([1000], True))
        self.assertFalse(self.state.is_replica_group("A"))
        self.state.apply([adapter_mutation("A", None)])
        self.assertIsNone(ports(self.state, "A"))
        self.assertEqual(self.state.adapters, {})

    def test_reregister_replaces_endpoints(self) -> None:
        self.state.apply([adapter("A", 1000)])
        self.state.apply([adapter("A", 2000)])
        self.assertEqual(ports(self.state, "A"), ([2000], True))

    def test_dynamic_replica_group(self) -> None:
        """Members of a dynamic group resolve together, in registration order."""
        self.state.apply([adapter("A2", 2000, "G"), adapter("A1", 1000, "G")])
        self.assertTrue(self.state.is_replica_group("G"))
        self.assertEqual(ports(self.state, "G"), ([2000, 1000], True))
        self.assertEqual(
            [m.adapter_id for m in self.state.replica_group_members("G")], ["A2", "A1"]
        )

    def test_reregister_in_group_does_not_duplicate(self) -> None:
        self.state.apply([adapter("A1", 1000, "G"), adapter("A2", 2000, "G")])
        self.state.apply([adapter("A1", 1001, "G")])
        self.assertEqual(ports(self.state, "G"), ([2000, 1001], True))

    def test_leaving_group(self) -> None:
        """An unregistered member leaves its group; the last one takes the group along."""
        self.state.apply([adapter("A1", 1000, "G"), adapter("A2", 2000, "G")])
        self.state.apply([adapter_mutation("A1", None)])
        self.assertEqual(ports(self.state, "G"), ([2000], True))
        self.state.apply([adapter_mutation("A2", None)])
        self.assertFalse(self.state.is_replica_group("G"))
        self.assertIsNone(ports(self.state, "G"))
        self.assertEqual(self.state.replica_groups, {})

    def test_moving_to_another_group(self) -> None:
        self.state.apply([adapter("A1", 1000, "G"), adapter("A2", 2000, "G")])
        self.state.apply([adapter("A1", 1000, "H")])
        self.assertEqual(ports(self.state, "G"), ([2000], True))
        self.assertEqual(ports(self.state, "H"), ([1000], True))
        self.state.apply([adapter("A1", 1000)])
        self.assertIsNone(ports(self.state, "H"))
        self.assertEqual(ports(self.state, "A1"), ([1000], True))

    def test_leaving_the_only_group_membership_is_clean(self) -> None:
        """A member that re-registers without a group is no longer listed in it."""
        self.state.apply([adapter("A1", 1000, "G")])
        self.state.apply([adapter("A1", 1000)])
        self.assertEqual(self.state.replica_groups, {})
        self.assertFalse(self.state.is_replica_group("G"))


class ObjectTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = RegistryState(random.Random(1))

    def test_find_object(self) -> None:
        self.state.apply([obj("hello", 1000)])
        found = self.state.find_object(Identity("hello"))
        assert found is not None
        self.assertEqual((found.proxy, found.type), (direct(1000, "hello"), "::Demo::Hello"))
        self.assertIsNone(self.state.find_object(Identity("other")))

    def test_categories_are_distinct(self) -> None:
        self.state.apply([obj("hello", 1000, category="a"), obj("hello", 2000, category="b")])
        found = self.state.find_object(Identity("hello", "b"))
        assert found is not None
        self.assertEqual(found.proxy.endpoints[0].port, 2000)
        self.assertIsNone(self.state.find_object(Identity("hello")))

    def test_removed_object_leaves_type_index(self) -> None:
        """After removal, findObjectByType and findAllObjectsByType no longer return it."""
        self.state.apply([obj("one", 1000), obj("two", 2000)])
        self.state.apply([object_mutation(Identity("one"), None)])
        self.assertIsNone(self.state.find_object(Identity("one")))
        self.assertEqual(self.state.objects_of_type("::Demo::Hello"), [direct(2000, "two")])
        self.assertEqual(self.state.random_object_of_type("::Demo::Hello"), direct(2000, "two"))
        self.state.apply([object_mutation(Identity("two"), None)])
        self.assertEqual(self.state.objects_of_type("::Demo::Hello"), [])
        self.assertIsNone(self.state.random_object_of_type("::Demo::Hello"))

    def test_retyped_object_moves_in_type_index(self) -> None:
        self.state.apply([obj("one", 1000, "::A"), obj("two", 2000, "::A")])
        self.state.apply([obj("one", 1001, "::B")])
        self.assertEqual(self.state.objects_of_type("::A"), [direct(2000, "two")])
        self.assertEqual(self.state.objects_of_type("::B"), [direct(1001, "one")])
        self.state.apply([obj("two", 2000, "::B")])
        self.assertEqual(self.state.objects_of_type("::A"), [])
        self.assertEqual(len(self.state.objects_of_type("::B")), 2)

    def test_random_object_of_type_picks_among_all(self) -> None:
        self.state.apply([obj(f"o{n}", 1000 + n) for n in range(3)])
        self.state.apply([obj("other", 2000, "::Other")])
        picked = {self.state.random_object_of_type("::Demo::Hello") for _ in range(60)}
        self.assertEqual(picked, {direct(1000 + n, f"o{n}") for n in range(3)})

    def test_seeded_choices_are_reproducible(self) -> None:
        """Random choices come from the injected generator, so a seed reproduces them."""
        mutations = [obj(f"o{n}", 1000 + n) for n in range(10)]
        picks = []
        for _ in range(2):
            state = RegistryState(random.Random(5))
            state.apply(mutations)
            picks.append([state.random_object_of_type("::Demo::Hello") for _ in range(20)])
        self.assertEqual(picks[0], picks[1])

    def test_default_generator(self) -> None:
        state = RegistryState()
        state.apply([obj("o", 1000)])
        self.assertEqual(state.random_object_of_type("::Demo::Hello"), direct(1000, "o"))

    def test_builtin_objects(self) -> None:
        """The registry's own objects win over stored ones and count in the type index."""
        builtin = ObjectInfo(direct(4061, "Locator"), "::Ice::Locator")
        self.state.apply([obj("Locator", 9999, "::Ice::Locator")])
        self.state.set_builtin_objects({Identity("Locator"): builtin})
        self.assertEqual(self.state.find_object(Identity("Locator")), builtin)
        self.assertEqual(
            self.state.objects_of_type("::Ice::Locator"),
            [direct(4061, "Locator"), direct(9999, "Locator")],
        )
        self.assertEqual(self.state.objects_of_type("::Demo::Hello"), [])


class ChangeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = RegistryState(random.Random(1))
        self.changes: list[int] = []
        self.rediscoveries: list[int] = []
        self.state.on_change(lambda: self.changes.append(1))
        self.state.on_replicas_changed(lambda: self.rediscoveries.append(1))

    def test_every_change_is_announced_once(self) -> None:
        self.state.apply([adapter("A", 1000), obj("o", 1000)])
        self.assertEqual(len(self.changes), 1)
        self.state.set_builtin_objects({})
        self.assertEqual(len(self.changes), 2)
        self.state.load({})
        self.assertEqual(len(self.changes), 3)

    def test_all_listeners_are_told(self) -> None:
        other: list[int] = []
        self.state.on_change(lambda: other.append(1))
        self.state.apply([adapter("A", 1000)])
        self.assertEqual((len(self.changes), len(other)), (1, 1))

    def test_replica_records_trigger_rediscovery(self) -> None:
        """A changed replica record rediscovers; other changes do not."""
        self.state.apply([adapter("A", 1000), obj("o", 1000)])
        self.assertEqual(self.rediscoveries, [])
        self.state.apply([Mutation(REPLICA, "Replica1", {"endpoints": "tcp -p 4071"})])
        self.assertEqual(self.rediscoveries, [1])
        self.assertEqual(self.state.replicas, {"Replica1": {"endpoints": "tcp -p 4071"}})
        self.state.apply([Mutation(REPLICA, "Replica1", None)])
        self.assertEqual(self.rediscoveries, [1, 1])
        self.assertEqual(self.state.replicas, {})

    def test_load_rediscovers(self) -> None:
        self.state.load({REPLICA: {"Replica1": {"endpoints": "x"}}})
        self.assertEqual(self.rediscoveries, [1])
        self.assertEqual(self.state.replicas, {"Replica1": {"endpoints": "x"}})

    def test_load_replaces_everything(self) -> None:
        """A load (start-up or snapshot) leaves nothing of the previous state behind."""
        self.state.apply(
            [adapter("A", 1000, "G"), obj("o", 1000), application()]
            + [Mutation(REPLICA, "R", {"x": 1})]
        )
        self.state.load(
            {
                ADAPTER: {"B": adapter("B", 2000, "H").value},
                OBJECT: {object_key(Identity("p")): obj("p", 2000, "::P").value},
            }
        )
        self.assertEqual(ports(self.state, "B"), ([2000], True))
        self.assertEqual(ports(self.state, "H"), ([2000], True))
        for gone in ("A", "G", "Ordered", "S1.A"):
            self.assertIsNone(ports(self.state, gone))
        self.assertFalse(self.state.is_replica_group("G"))
        self.assertFalse(self.state.is_replica_group("Ordered"))
        self.assertIsNone(self.state.find_object(Identity("o")))
        self.assertEqual(self.state.objects_of_type("::Demo::Hello"), [])
        self.assertEqual(self.state.objects_of_type("::P"), [direct(2000, "p")])
        self.assertEqual(self.state.replicas, {})
        self.assertEqual(self.state.applications, {})

    def test_load_then_remove(self) -> None:
        """Objects loaded from the store can be removed from every index."""
        self.state.load({OBJECT: {object_key(Identity("o")): obj("o", 1000).value}})
        self.assertEqual(self.state.objects_of_type("::Demo::Hello"), [direct(1000, "o")])
        self.state.apply([object_mutation(Identity("o"), None)])
        self.assertEqual(self.state.objects_of_type("::Demo::Hello"), [])
        self.assertIsNone(self.state.find_object(Identity("o")))


class CollectorTests(SynchronousTestCase):
    """
    A loaded table of stored texts stays out of the garbage collector's
    passes: a million texts walked by a pass held the master's reactor 20 ms
    when the first fresh slave synced (the first lookup had made the table's
    dict tracked, after the load's C{gc.freeze}, so it sat in the youngest
    generation; a full pass would walk it again, every time).
    """

    def test_loaded_objects_are_not_walked_by_collections(self) -> None:
        state = RegistryState(random.Random(1))
        mutations = [obj(f"o{i}", 1000 + i) for i in range(100)]
        texts = {m.key: encode_value(m) for m in mutations}
        state.load({OBJECT: EncodedValues(texts)})
        # a lookup decodes one object, a put adds one: the records they hold are tracked
        self.assertEqual(
            state.find_object(Identity("o7")), ObjectInfo(direct(1007, "o7"), "::Demo::Hello")
        )
        state.apply([obj("new", 2000)])
        self.assertEqual(
            state.find_object(Identity("o99")), ObjectInfo(direct(1099, "o99"), "::Demo::Hello")
        )
        self.assertFalse(any(o is texts for o in gc.get_objects()))
        self.assertEqual(len(state.objects), 101)

    def test_the_index_by_type_is_not_walked_by_collections(self) -> None:
        """
        The first query by type decodes every record; later full passes
        walked all of them again.
        """
        state = RegistryState(random.Random(1))
        mutations = [obj(f"o{i}", 1000 + i) for i in range(100)]
        state.load({OBJECT: EncodedValues({m.key: encode_value(m) for m in mutations})})
        self.assertEqual(len(state.objects_of_type("::Demo::Hello")), 100)
        decoded = list(state.objects.values())
        tracked = {id(o) for o in gc.get_objects()}
        self.assertEqual([o for o in decoded if id(o) in tracked], [])
        state.apply([obj("new", 2000)])
        self.assertEqual(len(state.objects_of_type("::Demo::Hello")), 101)


class ApplicationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.state = RegistryState(random.Random(1))
        self.state.apply([application()])

    def test_deployed_indexes(self) -> None:
        self.assertEqual(list(self.state.applications), ["App"])
        self.assertEqual(self.state.application_of_adapter("S1.A"), "App")
        self.assertIsNone(self.state.application_of_adapter("nobody"))
        self.assertEqual(self.state.deployed_group_of("S1.A"), "Ordered")
        self.assertEqual(self.state.deployed_group_of("S1.C"), "")
        self.assertIsNone(self.state.deployed_group_of("nobody"))

    def test_deployed_group_without_members(self) -> None:
        """A deployed group is a replica group before any member registers, resolving nothing."""
        self.assertTrue(self.state.is_replica_group("Ordered"))
        self.assertIsNone(ports(self.state, "Ordered"))

    def test_ordered_group_by_priority(self) -> None:
        self.state.apply([adapter("S1.A", 1000, "Ordered"), adapter("S2.A", 2000, "Ordered")])
        self.assertEqual(ports(self.state, "Ordered"), ([2000, 1000], True))

    def test_undeployed_member_ranks_as_priority_zero(self) -> None:
        """A member the application does not deploy has IceGrid's default priority, 0."""
        self.state.apply(
            [
                adapter("S1.A", 1000, "Ordered"),
                adapter("S2.A", 2000, "Ordered"),
                adapter("S1.D", 3000, "Ordered"),
                adapter("T.extra", 4000, "Ordered"),
            ]
        )
        self.assertEqual(ports(self.state, "Ordered"), ([3000, 4000, 2000, 1000], True))

    def test_deployed_members_in_stable_order(self) -> None:
        """Registration order does not matter for a deployed group: members sort by id."""
        self.state.apply([adapter("S2.B", 2000, "Rotated"), adapter("S1.B", 1000, "Rotated")])
        members = self.state.replica_group_members("Rotated")
        self.assertEqual([m.adapter_id for m in members], ["S1.B", "S2.B"])

    def test_round_robin_group_rotates_and_is_not_cached(self) -> None:
        self.state.apply([adapter("S1.B", 1000, "Rotated"), adapter("S2.B", 2000, "Rotated")])
        first = ports(self.state, "Rotated")
        second = ports(self.state, "Rotated")
        self.assertEqual({tuple(first[0]), tuple(second[0])}, {(1000, 2000), (2000, 1000)})
        self.assertFalse(first[1])

    def test_single_member_is_cacheable(self) -> None:
        self.state.apply([adapter("S1.B", 1000, "Rotated")])
        self.assertEqual(ports(self.state, "Rotated"), ([1000], True))

    def test_deployed_objects(self) -> None:
        found = self.state.find_object(Identity("ordered-object"))
        assert found is not None
        self.assertEqual(found.type, "::Demo::Ordered")
        self.assertEqual(found.proxy.adapter_id, "Ordered")
        self.assertEqual(self.state.objects_of_type("::Demo::Ordered"), [found.proxy])
        self.assertEqual(self.state.objects_of_type("::Demo::Hello"), [])

    def test_removed_application(self) -> None:
        self.state.apply([Mutation(APPLICATION, "App", None)])
        self.assertFalse(self.state.is_replica_group("Ordered"))
        self.assertIsNone(self.state.find_object(Identity("ordered-object")))
        self.assertEqual(self.state.applications, {})


class StoredFormTests(SynchronousTestCase):
    def test_proxy_field_round_trip(self) -> None:
        proxy = Proxy(Identity("o", "c"), facet="f", adapter_id="A")
        self.assertEqual(decode_proxy_field(encode_proxy_field(proxy)), proxy)

    def test_proxy_field_is_the_marshaled_proxy(self) -> None:
        """The stored form is the exact 1.1 marshaling, so replies can reuse it as is."""
        proxy = direct(1000)
        out = OutputStream(ENCODING_1_1)
        out.write_proxy(proxy)
        field = encode_proxy_field(proxy)
        self.assertEqual(base64.b64decode(field), out.getvalue())
        stored = StoredObject(field, "::T")
        self.assertEqual(stored.wire, out.getvalue())
        self.assertEqual(stored.wire, out.getvalue())
        self.assertEqual(stored.proxy, proxy)
        self.assertEqual(stored, ObjectInfo(proxy, "::T"))
        self.assertNotEqual(stored, ObjectInfo(proxy, "::U"))
        self.assertNotEqual(stored, "something else")
        self.assertIn("'::T'", repr(stored))

    def test_stored_object_defers_to_other_types(self) -> None:
        """Comparing with another type asks that type (Python's protocol), e.g. mock.ANY."""

        class Anything:
            def __eq__(self, other: object) -> bool:
                return True

        stored = StoredObject(encode_proxy_field(direct(1000)), "::T")
        self.assertTrue(stored == Anything())

    def test_null_proxy_refused(self) -> None:
        out = OutputStream(ENCODING_1_1)
        out.write_proxy(None)
        with self.assertRaises(ValueError):
            decode_proxy_field(base64.b64encode(out.getvalue()).decode("ascii"))

    def test_object_keys_are_unambiguous(self) -> None:
        self.assertNotEqual(object_key(Identity("b/c", "a")), object_key(Identity("c", "a/b")))

    def test_object_keys_are_stable(self) -> None:
        """Keys are stored and replicated: the format existing databases hold must not change."""
        self.assertEqual(object_key(Identity("caf\u00e9", "c")), '["c", "caf\u00e9"]')

    def test_delete_mutations(self) -> None:
        self.assertEqual(adapter_mutation("A", None), Mutation(ADAPTER, "A", None))
        self.assertEqual(
            object_mutation(Identity("o"), None), Mutation(OBJECT, object_key(Identity("o")), None)
        )


class ObjectMutationTextTests(SynchronousTestCase):
    """
    An object's put carries its value's JSON, which the store saves and the
    slaves get as it is: it must be exactly what L{encode_value} writes.
    """

    def test_the_text_is_what_encode_value_writes(self) -> None:
        proxy = Proxy(
            Identity('na"me\\é', "cat/égorie"), endpoints=(TcpEndpoint("127.0.0.1", 10000),)
        )
        for type_id in ("", "::Demo::Hello", 'q"uote\\back', "été\u2028\x01"):
            m = object_mutation(proxy.identity, ObjectInfo(proxy, type_id))
            self.assertIsNotNone(m.text)
            plain = Mutation(m.kind, m.key, m.value)
            self.assertEqual(m.text, encode_value(plain))
            self.assertEqual(json.loads(m.text), m.value)

    def test_a_delete_has_no_text(self) -> None:
        m = object_mutation(Identity("gone", ""), None)
        self.assertEqual((m.value, m.text), (None, None))
