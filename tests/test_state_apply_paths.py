"""
Tests for L{gridreg.registry.state}'s short paths of a change (a change
applied without a L{Staged} when nobody observes mutations, an object's put
in one call, listeners that follow only the applications told only when
they may have changed): over random sequences of changes, they leave exactly
the state, the notifications and the errors the general path leaves.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.registry.applications import APPLICATION
from gridreg.registry.descriptors import DescriptorError, application_to_json, parse_application
from gridreg.registry.object_table import ObjectTable
from gridreg.registry.state import (
    ADAPTER,
    META,
    OBJECT,
    REPLICA,
    AdapterInfo,
    ObjectInfo,
    RegistryState,
    adapter_mutation,
    encode_proxy_field,
)
from gridreg.store.records import Mutation

_APP_XML = """<icegrid>
  <application name="{name}">
    <replica-group id="{name}.Group">
      <object identity="{name}-object" type="::Demo::Grouped"/>
    </replica-group>
    <node name="node1">
      <server id="{name}.S" exe="x">
        <adapter name="A" id="{name}.S.A" endpoints="tcp" replica-group="{name}.Group"/>
      </server>
    </node>
  </application>
</icegrid>
"""

#: an application's record, as replicated (parsed once: it is the slow part)
_APPS = {
    name: application_to_json(parse_application(_APP_XML.format(name=name)))
    for name in ("App", "Other")
}

_TYPES = ["::Demo::Hello", "::Demo::Other", "::Demo::Grouped"]


def _proxy(name: str, port: int) -> Proxy:
    return Proxy(Identity(name, "cat"), endpoints=(TcpEndpoint("127.0.0.1", port),))


class _GeneralTable(ObjectTable):
    """The object table's put as it was: the key canonicalised, then the old record removed."""

    def put(self, key: str, value: Mapping[str, str]) -> None:
        key = self._canonical(key)
        self._remove_canonical(key)
        type_id = value["type"]
        type_id = self._types.setdefault(type_id, type_id)
        self._entries[key] = _stored(value["proxy"], type_id)
        if self._by_type is not None:
            self._by_type.setdefault(type_id, {})[key] = None


def _stored(field: str, type_id: str) -> Any:
    from gridreg.registry.object_table import StoredObject

    return StoredObject(field, type_id)


class _GeneralState(RegistryState):
    """
    The state as it applied a change before the short paths: staged then
    announced, every listener told of every change.
    """

    def __init__(self) -> None:
        super().__init__()
        self.objects = _GeneralTable()

    def apply(self, mutations: Any) -> None:
        self.announce(self.stage(mutations))

    def _changed(self) -> None:
        for listener, _ in self._listeners:
            listener()


# -- changes --------------------------------------------------------------------


def _weighted(*choices: tuple[int, Any]) -> Any:
    """One of C{choices}, C{(weight, strategy)} each: C{one_of} merges a strategy repeated."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(pool.__getitem__)


_object_keys = st.sampled_from(
    [
        '["cat", "a"]',
        '["cat", "b"]',
        '["", "c"]',
        '["cat","a"]',  # spelt otherwise than object_key spells it: the same record
        '["cat", "q\\"uote"]',
    ]
)

_object_puts = st.builds(
    lambda port, type_id: {"proxy": encode_proxy_field(_proxy("x", port)), "type": type_id},
    st.integers(1, 3),
    st.sampled_from(_TYPES),
)

_object_values = _weighted(
    (1, st.none()),
    (4, _object_puts),
    (1, st.just({"proxy": encode_proxy_field(_proxy("x", 9))})),  # no type: refused
)

_objects = st.builds(lambda key, value: Mutation(OBJECT, key, value), _object_keys, _object_values)


def _adapter(adapter_id: str, group: Optional[str], port: int) -> Mutation:
    if group is None:
        return adapter_mutation(adapter_id, None)
    return adapter_mutation(adapter_id, AdapterInfo(adapter_id, _proxy(adapter_id, port), group))


_adapters = st.one_of(
    st.builds(
        _adapter,
        st.sampled_from(["A1", "A2", "App.S.A"]),
        st.one_of(st.none(), st.sampled_from(["", "G1", "App.Group"])),
        st.integers(1, 3),
    ),
    st.just(Mutation(ADAPTER, "A3", {"replica_group": ""})),  # no proxy: refused
)

_applications = st.one_of(
    st.builds(lambda name: Mutation(APPLICATION, name, _APPS[name]), st.sampled_from(list(_APPS))),
    st.builds(lambda name: Mutation(APPLICATION, name, None), st.sampled_from(list(_APPS))),
    st.just(Mutation(APPLICATION, "App", {"name": "App", "xml": "<nonsense"})),  # refused
)

_replicas = st.builds(
    lambda name, value: Mutation(REPLICA, name, value),
    st.sampled_from(["Master", "Replica1"]),
    st.one_of(st.none(), st.just({"client": "tcp -p 4061"})),
)

_meta = st.builds(
    lambda key, value: Mutation(META, key, value),
    st.sampled_from(["epochs", "other"]),
    st.one_of(st.none(), st.builds(lambda n: {"n": n}, st.integers(0, 3))),
)

#: most writes are well-known objects' (the ones put again move to the end of the listing)
_mutations = _weighted(
    (8, _objects), (1, _adapters), (1, _applications), (1, _replicas), (1, _meta)
)

_operations = _weighted(
    (12, st.tuples(st.just("apply"), st.lists(_mutations, max_size=3))),
    (1, st.tuples(st.just("of_type"), st.sampled_from(_TYPES))),
    (
        1,
        st.tuples(
            st.just("node"),
            st.sampled_from(["node1", "node2"]),
            st.dictionaries(
                st.sampled_from(["L1", "App.S.A"]),
                st.builds(lambda: AdapterInfo("L", _proxy("L", 7), "App.Group")),
                max_size=2,
            ),
        ),
    ),
    (1, st.tuples(st.just("builtin"), st.integers(0, 2))),
    (1, st.tuples(st.just("load"), st.sampled_from([(), ("App",), ("App", "Other")]))),
)


# -- what an observer sees -------------------------------------------------------------


class _Observed:
    """
    What a state's observers see: every change told (the reply caches), the
    deploys a follower of the applications makes (the node sessions'
    comparison), the replica set rediscovered, and, if asked, each change's
    mutations with whether their keys existed (the admin observers).
    """

    def __init__(self, state: RegistryState, deployed_only: bool, mutations: bool) -> None:
        self.state = state
        self.told = 0
        self.deploys: list[list[str]] = []
        self.rediscovered = 0
        self.mutations: list[Any] = []
        self._applications: list[Any] = []
        state.on_change(self._told)
        state.on_change(self._follow_applications, deployed_only=deployed_only)
        state.on_replicas_changed(self._rediscover)
        if mutations:
            state.on_mutations(self.mutations.append)

    def _told(self) -> None:
        self.told += 1

    def _follow_applications(self) -> None:
        """As L{NodeSessions._state_changed}: acts only if the applications are others."""
        applications = list(self.state.deployed.derived.values())
        if len(applications) == len(self._applications) and all(
            a is b for a, b in zip(applications, self._applications)
        ):
            return
        self._applications = applications
        self.deploys.append(sorted(self.state.deployed.derived))

    def _rediscover(self) -> None:
        self.rediscovered += 1


def _contents(state: RegistryState) -> Any:
    """Everything a lookup, a query or an admin listing reads, in its order."""
    return (
        list(state.adapters.items()),
        [(group, list(members)) for group, members in state.replica_groups.items()],
        state.objects.items(),
        _by_type(state.objects),
        list(state.replicas.items()),
        list(state.meta.items()),
        list(state.deployed.derived),
        dict(state.deployed.objects),
        dict(state.deployed.adapters),
        dict(state.builtin_objects),
        list(state.live_adapters.items()),
        {group: state.replica_group_members(group) for group in ("G1", "App.Group")},
    )


def _by_type(objects: ObjectTable) -> Optional[dict[str, Any]]:
    """
    The objects of each type, once a query by type has indexed them (None
    before: asking would index them, and a put is done otherwise then).
    """
    if objects._by_type is None:
        return None
    return {type_id: objects.of_type(type_id) for type_id in _TYPES}


def _run(observed: _Observed, operation: tuple[Any, ...]) -> Optional[str]:
    """Do C{operation} to the observed state; the error it was refused with, if any."""
    state = observed.state
    kind = operation[0]
    try:
        if kind == "apply":
            state.apply(operation[1])
        elif kind == "of_type":
            state.objects_of_type(operation[1])
        elif kind == "node":
            state.set_node_adapters(operation[1], operation[2])
        elif kind == "builtin":
            proxies = {
                Identity(f"b{i}", "IceGrid"): ObjectInfo(_proxy(f"b{i}", 1))
                for i in range(operation[1])
            }
            state.set_builtin_objects(proxies)
        else:
            state.load(
                {
                    APPLICATION: {name: _APPS[name] for name in operation[1]},
                    OBJECT: {
                        '["cat", "loaded"]': {
                            "proxy": encode_proxy_field(_proxy("l", 1)),
                            "type": _TYPES[0],
                        }
                    },
                }
            )
    except (KeyError, DescriptorError) as refused:
        return type(refused).__name__
    return None


class ShortPathTests(SynchronousTestCase):
    """The short paths against the general one, step by step."""

    @settings(derandomize=True, max_examples=500, database=None, deadline=None)
    @given(st.lists(_operations, max_size=16), st.booleans())
    def test_the_same_state_notifications_and_errors(
        self, operations: list[tuple[Any, ...]], observe_mutations: bool
    ) -> None:
        general = _Observed(_GeneralState(), deployed_only=False, mutations=observe_mutations)
        short = _Observed(RegistryState(), deployed_only=True, mutations=observe_mutations)
        for operation in operations:
            self.assertEqual(_run(short, operation), _run(general, operation))
            self.assertEqual(_contents(short.state), _contents(general.state))
            self.assertEqual(short.told, general.told)
            self.assertEqual(short.deploys, general.deploys)
            self.assertEqual(short.rediscovered, general.rediscovered)
            self.assertEqual(short.mutations, general.mutations)

    def test_a_follower_of_the_applications_is_told_of_theirs_only(self) -> None:
        """Told after an application's change and a load, in its turn; not after an object's."""
        state = RegistryState()
        told: list[str] = []
        state.on_change(lambda: told.append("every"))
        state.on_change(lambda: told.append("applications"), deployed_only=True)
        state.on_change(lambda: told.append("last"))
        object_put = Mutation(
            OBJECT, '["", "o"]', {"proxy": encode_proxy_field(_proxy("o", 1)), "type": ""}
        )
        state.apply([object_put])
        self.assertEqual(told, ["every", "last"])
        del told[:]
        state.apply([Mutation(APPLICATION, "App", _APPS["App"])])
        self.assertEqual(told, ["every", "applications", "last"])
        del told[:]
        state.load({})
        self.assertEqual(told, ["every", "applications", "last"])

    def test_a_refused_application_is_followed_at_the_next_change(self) -> None:
        """
        An application's change refused half-way is told to its followers
        with the next change, of any kind, as when every listener was told
        of every change.
        """
        state = RegistryState()
        told: list[int] = []
        state.on_change(lambda: told.append(len(state.deployed.derived)), deployed_only=True)
        good = Mutation(APPLICATION, "App", _APPS["App"])
        bad = Mutation(APPLICATION, "Other", {"name": "Other", "xml": "<nonsense"})
        with self.assertRaises(DescriptorError):
            state.apply([good, bad])  # the first is in the indexes, nobody was told
        self.assertEqual(told, [])
        state.set_node_adapters("node1", {"L": AdapterInfo("L", _proxy("L", 1))})
        self.assertEqual(told, [1])
