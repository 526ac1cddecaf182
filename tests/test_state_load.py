"""Loading well-known objects from their store keys, escapes and all."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity, Proxy
from gridreg.registry.state import (
    ObjectInfo,
    RegistryState,
    identity_from_key,
    object_key,
    object_mutation,
)

AWKWARD = [
    Identity("obj1", "sync"),
    Identity('a"b', "c"),
    Identity("x", 'a", "b'),
    Identity("n\u00e9e\x00", ""),
    Identity("", ""),
    Identity("a, b", "\\"),
    Identity('", "', ""),
]


class ObjectKeyTests(SynchronousTestCase):
    def test_every_key_gives_back_its_identity(self) -> None:
        for identity in AWKWARD:
            self.assertEqual(identity_from_key(object_key(identity)), identity)

    def test_a_load_indexes_objects_by_identity_and_type(self) -> None:
        named = [i for i in AWKWARD if i.name]  # a proxy needs a name
        mutations = [
            object_mutation(i, ObjectInfo(Proxy(i), f"::T{n % 2}")) for n, i in enumerate(named)
        ]
        state = RegistryState()
        state.load({"object": {m.key: m.value for m in mutations}})
        self.assertEqual(set(state.objects), set(named))
        self.assertEqual(state.objects[named[1]].proxy, Proxy(named[1]))
        self.assertEqual(len(state.objects_of_type("::T0")), 3)
