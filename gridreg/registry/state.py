# -*- test-case-name: tests.test_replication,tests.test_applications,tests.test_registry_vectors -*-
"""
The registry's in-memory indexes: what every locate request is answered from.

The state is rebuilt from the store at start-up and then changed only by
applying the mutations of committed changes, in serial order, so a master
and its slaves that applied the same changes hold the same state. Listeners
are told after each change, which is how reply caches are invalidated.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import random
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Optional

import attrs

from gridreg.ice.encoding import OutputStream
from gridreg.ice.types import ENCODING_1_1, Endpoint, Identity, Proxy
from gridreg.registry.applications import APPLICATION, DeployedIndex
from gridreg.registry.loadbalancing import Load, LoadSamples, RoundRobinState, order_replicas
from gridreg.registry.object_table import (
    ObjectInfo,
    ObjectTable,
    StoredObject,
    decode_wire,
    identity_from_key,
    object_key,
)
from gridreg.store.records import Mutation

if TYPE_CHECKING:  # the descriptor model is imported once an application is
    from gridreg.registry.descriptors import ApplicationDescriptor

__all__ = [
    "AdapterInfo",
    "ObjectInfo",
    "RegistryState",
    "Staged",
    "StoredObject",
    "adapter_mutation",
    "decode_proxy_field",
    "encode_proxy_field",
    "identity_from_key",
    "object_key",
    "object_mutation",
]

ADAPTER = "adapter"
OBJECT = "object"
REPLICA = "replica"
META = "meta"


@attrs.frozen
class AdapterInfo:
    """A registered adapter: its direct proxy and the replica group it joined."""

    adapter_id: str
    proxy: Proxy
    replica_group_id: str = ""


def encode_proxy_field(proxy: Proxy) -> str:
    """A proxy as stored: its exact 1.1 marshaling, base64, so nothing is lost."""
    out = OutputStream(ENCODING_1_1)
    out.write_proxy(proxy)
    # base64.b64encode's own call, without the wrapper's
    return _b64(out.getvalue(), newline=False).decode("ascii")


_b64 = binascii.b2a_base64


def decode_proxy_field(text: str) -> Proxy:
    return decode_wire(base64.b64decode(text))


def adapter_mutation(adapter_id: str, info: Optional[AdapterInfo]) -> Mutation:
    if info is None:
        return Mutation(ADAPTER, adapter_id, None)
    return Mutation(
        ADAPTER,
        adapter_id,
        {"proxy": encode_proxy_field(info.proxy), "replica_group": info.replica_group_id},
    )


#: a string as JSON, ASCII only, as C{json.dumps} writes it
_json_string = json.encoder.encode_basestring_ascii


def object_mutation(identity: Identity, info: Optional[ObjectInfo]) -> Mutation:
    """
    An object's put (or delete), its value's JSON written here as
    L{encode_value} would write it: the write path keeps the value as it
    is, without a copy through JSON (the admin's hot write).
    """
    if info is None:
        return Mutation(OBJECT, object_key(identity), None)
    proxy = encode_proxy_field(info.proxy)
    type_id = info.type
    value = {"proxy": proxy, "type": type_id}
    if type(type_id) is not str:
        return Mutation(OBJECT, object_key(identity), value)
    # base64 needs no JSON escape: the proxy's text goes between quotes as it is
    text = f'{{"proxy":"{proxy}","type":{_json_string(type_id)}}}'
    return Mutation(OBJECT, object_key(identity), value, text=text)


class RegistryState:
    """
    Adapters, replica groups and well-known objects, indexed for locating.

    Replica groups formed by dynamic registration list their members in
    registration order; the reply for a group is therefore stable and can
    be cached, and Ice clients pick among its endpoints themselves.
    """

    def __init__(self, rng: Optional[random.Random] = None) -> None:
        self.adapters: dict[str, AdapterInfo] = {}
        self.replica_groups: dict[str, list[str]] = {}
        #: the well-known objects added through the admin, decoded as they are used
        self.objects = ObjectTable()
        self.builtin_objects: dict[Identity, ObjectInfo] = {}
        #: every replica's published endpoints, by name, as replicated
        self.replicas: dict[str, dict] = {}
        #: the database's own facts (the replication epoch), as replicated
        self.meta: dict[str, dict] = {}
        self._discovery: Optional[Callable[[], None]] = None
        self.deployed = DeployedIndex()
        #: whether a load ran (a later one also collects what lived before it)
        self._loaded_once = False
        self._round_robin = RoundRobinState()
        #: each with whether it follows the deployed applications only (L{on_change})
        self._listeners: list[tuple[Callable[[], None], bool]] = []
        #: whether the deployed applications were touched since the listeners
        #: following them only were last told
        self._deployed_touched = False
        #: told each change's mutations (see L{on_mutations}); none by default
        self._mutation_listeners: list[Callable[[Optional[list[tuple[Mutation, bool]]]], None]] = []
        self._rng = rng or random.Random()
        #: what nodes report their servers registered: adapter id to info; node
        #: live state, not replicated nor stored, gone with the node's session
        self.live_adapters: dict[str, AdapterInfo] = {}
        self._live_by_node: dict[str, dict[str, AdapterInfo]] = {}
        self._live_groups: dict[str, list[str]] = {}
        #: a node's load averages, if it has a session with this replica
        self.node_load: Callable[[str], Optional[LoadSamples]] = lambda node: None

    # -- change ----------------------------------------------------------------

    def on_change(self, listener: Callable[[], None], deployed_only: bool = False) -> None:
        """
        Call C{listener} after every change to the state; with
        C{deployed_only}, only after those that may have changed the deployed
        applications (an application's mutation, a load), in its turn among
        the others: most changes are well-known objects', which a listener
        that follows the applications (the node sessions) would only find
        unchanged, several calls per replicated write.
        """
        self._listeners.append((listener, deployed_only))

    def on_mutations(
        self, listener: Callable[[Optional[list[tuple[Mutation, bool]]]], None]
    ) -> None:
        """
        After every change, call C{listener} with its mutations, each with
        whether its key existed before (None after a reload from the store):
        what IceGrid's admin observers are told. Without such listeners a
        change costs nothing more.
        """
        self._mutation_listeners.append(listener)

    def forget_mutations(
        self, listener: Callable[[Optional[list[tuple[Mutation, bool]]]], None]
    ) -> None:
        if listener in self._mutation_listeners:
            self._mutation_listeners.remove(listener)

    def _changed(self) -> None:
        for listener, deployed_only in self._listeners:
            if not deployed_only or self._deployed_touched:
                listener()
        # not before: a listener that raises leaves them to be told at the next change
        self._deployed_touched = False

    def _existed(self, mutation: Mutation) -> bool:
        if mutation.kind == ADAPTER:
            return mutation.key in self.adapters
        if mutation.kind == OBJECT:
            return self.objects.has_key(mutation.key)
        if mutation.kind == APPLICATION:
            return mutation.key in self.deployed.derived
        if mutation.kind == REPLICA:
            return mutation.key in self.replicas
        return mutation.key in self.meta

    def load(self, records: Mapping[str, Mapping[str, dict]]) -> None:
        """
        Replace everything with the records loaded from the store.  The
        well-known objects' stored texts, when the store hands them over as
        such (L{gridreg.store.records.EncodedValues}), are taken over as they
        are, and decoded one by one as they are used (L{ObjectTable}).
        """
        self.adapters.clear()
        self.replica_groups.clear()
        self.objects.clear()
        self.replicas.clear()
        self.meta.clear()
        apply = {
            META: self.meta.__setitem__,
            ADAPTER: self._apply_adapter,
            REPLICA: self.replicas.__setitem__,
        }
        # The collector's passes over a growing heap made up almost half of a
        # large load (every object made here lives on): none during it, and
        # one pass over the young generations before the well-known objects,
        # the bulk, are loaded: it frees the cycles the descriptors' parsing
        # leaves (the objects make none) without walking the loaded objects
        # (a full pass after them was a fifth of the load) or, on the first
        # load at start-up, the modules; a reload's pass is a full one, so the
        # cycles a running registry left are not frozen below.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for kind, put in apply.items():
                for key, value in records.get(kind, {}).items():
                    put(key, value)
            self._deployed_touched = True
            self.deployed.load(records.get(APPLICATION, {}))
            gc.collect(2 if self._loaded_once else 1)
            self._loaded_once = True
            self.objects.load(records.get(OBJECT, {}))
        finally:
            if collecting:
                gc.enable()
        # What was just loaded lives as long as the process: keep it out of
        # the collector's full passes, which would otherwise stall requests.
        gc.freeze()
        self._rediscover()
        self._changed()
        for mutation_listener in self._mutation_listeners:
            mutation_listener(None)

    def apply(self, mutations: Iterable[Mutation]) -> None:
        """
        Apply the mutations of one committed change and tell the listeners:
        L{stage} then L{announce}, and without mutation listeners (a slave's
        every push, unless an admin observes it) without the L{Staged} between
        them, which only those listeners read.
        """
        if self._mutation_listeners:
            self.announce(self.stage(mutations))
            return
        if self._apply_all(mutations):
            self._rediscover()
        self._changed()

    def stage(self, mutations: Iterable[Mutation]) -> "Staged":
        """
        Apply a change to the indexes without telling the listeners yet: the
        master's group commit validates the next write against it while this
        one is being committed.  L{announce} tells them, once it is durable.
        """
        applied: Optional[list[tuple[Mutation, bool]]] = None
        if self._mutation_listeners:
            mutations = list(mutations)
            applied = [(m, self._existed(m)) for m in mutations]
        return Staged(applied, self._apply_all(mutations))

    def announce(self, staged: "Staged") -> None:
        """Tell the listeners about a staged change (in the order they were staged)."""
        if staged.replicas_changed:
            self._rediscover()
        self._changed()
        if staged.applied is not None:
            for listener in self._mutation_listeners:
                listener(staged.applied)

    def _apply_all(self, mutations: Iterable[Mutation]) -> bool:
        """
        Apply mutations; say whether the replica set changed. A well-known
        object's, the bulk of the writes, is looked for first and put here.
        """
        replicas_changed = False
        for mutation in mutations:
            kind = mutation.kind
            if kind == OBJECT:
                if mutation.value is None:
                    self.objects.remove(mutation.key)
                else:
                    self.objects.put(mutation.key, mutation.value)
            elif kind == ADAPTER:
                self._apply_adapter(mutation.key, mutation.value)
            elif kind == APPLICATION:
                self._deployed_touched = True
                self.deployed.put(mutation.key, mutation.value)
            elif kind == META:
                if mutation.value is None:
                    self.meta.pop(mutation.key, None)
                else:
                    self.meta[mutation.key] = mutation.value
            elif kind == REPLICA:
                replicas_changed = True
                if mutation.value is None:
                    self.replicas.pop(mutation.key, None)
                else:
                    self.replicas[mutation.key] = mutation.value
        return replicas_changed

    def _apply_adapter(self, adapter_id: str, value: Optional[dict]) -> None:
        old = self.adapters.pop(adapter_id, None)
        if old is not None and old.replica_group_id:
            members = self.replica_groups.get(old.replica_group_id, [])
            if adapter_id in members:
                members.remove(adapter_id)
            if not members:
                self.replica_groups.pop(old.replica_group_id, None)
        if value is None:
            return
        info = AdapterInfo(adapter_id, decode_proxy_field(value["proxy"]), value["replica_group"])
        self.adapters[adapter_id] = info
        if info.replica_group_id:
            self.replica_groups.setdefault(info.replica_group_id, []).append(adapter_id)

    def set_builtin_objects(self, objects: Mapping[Identity, ObjectInfo]) -> None:
        """The registry's own well-known objects, derived from the replica set."""
        self.builtin_objects = dict(objects)
        self._changed()

    def on_replicas_changed(self, rediscover: Callable[[], None]) -> None:
        """Call C{rediscover} when replicated replica records change."""
        self._discovery = rediscover

    def _rediscover(self) -> None:
        if self._discovery is not None:
            self._discovery()

    # -- node live state -------------------------------------------------------

    def set_node_adapters(self, node: str, adapters: Mapping[str, AdapterInfo]) -> None:
        """
        Replace the adapters node C{node} reports as registered (empty: its
        session ended). Their C{replica_group_id} is the deployed one.
        """
        if not adapters and node not in self._live_by_node:
            return
        if adapters:
            self._live_by_node[node] = dict(adapters)
        else:
            self._live_by_node.pop(node, None)
        self.live_adapters = {}
        self._live_groups = {}
        for name in sorted(self._live_by_node):
            for adapter_id, info in sorted(self._live_by_node[name].items()):
                self.live_adapters[adapter_id] = info
                if info.replica_group_id:
                    self._live_groups.setdefault(info.replica_group_id, []).append(adapter_id)
        self._changed()

    def adapter_info(self, adapter_id: str) -> Optional[AdapterInfo]:
        """A registered adapter: replicated, or reported by its node."""
        return self.adapters.get(adapter_id) or self.live_adapters.get(adapter_id)

    # -- queries ---------------------------------------------------------------

    def find_object(self, identity: Identity) -> Optional[ObjectInfo | StoredObject]:
        info: Optional[ObjectInfo | StoredObject] = self.builtin_objects.get(identity)
        if info is None:
            info = self.objects.get(identity)
        if info is None:
            deployed = self.deployed.objects.get(identity)
            if deployed is not None:
                info = ObjectInfo(*deployed)
        return info

    def objects_of_type(self, type_id: str) -> list[Proxy]:
        found = [i.proxy for i in self.builtin_objects.values() if i.type == type_id]
        found.extend(info.proxy for info in self.objects.of_type(type_id))
        found.extend(proxy for proxy, t in self.deployed.objects.values() if t == type_id)
        return found

    def random_object_of_type(self, type_id: str) -> Optional[Proxy]:
        found = self.objects_of_type(type_id)
        return self._rng.choice(found) if found else None

    def least_loaded_object_of_type(self, type_id: str, sample: str) -> Optional[Proxy]:
        """
        An object of C{type_id} whose adapter's node is the least loaded
        (C{sample}: "1", "5" or "15" minutes); ties and unknown loads random.
        """
        found = self.objects_of_type(type_id)
        if not found:
            return None
        self._rng.shuffle(found)
        return min(found, key=lambda proxy: self._proxy_load(proxy, sample))

    def _proxy_load(self, proxy: Proxy, sample: str) -> float:
        adapter_id = proxy.adapter_id
        if adapter_id in self.deployed.replica_groups:
            members = [
                a for a, d in self.deployed.adapters.items() if d.replica_group_id == adapter_id
            ]
        else:
            members = [adapter_id]
        loads = [_load_value(self._member_load(a), sample) for a in members]
        return min(loads, default=float("inf"))

    def _member_load(self, adapter_id: str) -> Load:
        deployed = self.deployed.adapters.get(adapter_id)
        return self.node_load(deployed.node) if deployed is not None else None

    # -- applications --------------------------------------------------------------

    @property
    def applications(self) -> dict[str, ApplicationDescriptor]:
        return self.deployed.applications

    def application_of_adapter(self, adapter_id: str) -> Optional[str]:
        return self.deployed.application_of(adapter_id)

    def deployed_group_of(self, adapter_id: str) -> Optional[str]:
        """The replica group an application puts the adapter in ("" for none)."""
        deployed = self.deployed.adapters.get(adapter_id)
        return deployed.replica_group_id if deployed is not None else None

    # -- adapters and replica groups -----------------------------------------------

    def is_replica_group(self, adapter_id: str) -> bool:
        return adapter_id in self.replica_groups or adapter_id in self.deployed.replica_groups

    def replica_group_members(self, group_id: str) -> list[AdapterInfo]:
        """The registered members of a replica group, in a stable order."""
        members = [self.adapters[a] for a in self.replica_groups.get(group_id, ())]
        members.extend(
            self.live_adapters[a]
            for a in self._live_groups.get(group_id, ())
            if a not in self.adapters
        )
        if group_id in self.deployed.replica_groups:
            members.sort(key=lambda info: info.adapter_id)
        return members

    def locate_adapter(self, adapter_id: str) -> Optional[tuple[tuple[Endpoint, ...], bool]]:
        """
        What a locate request for C{adapter_id} answers: the adapter's own
        endpoints, or its replica group members' in the order of the group's
        load-balancing policy; and whether that answer is the same every time
        (so it may be cached). None if nothing is registered under that id.
        """
        info = self.adapter_info(adapter_id)
        if info is not None:
            return info.proxy.endpoints, True
        members = self.replica_group_members(adapter_id)
        if not members:
            return None
        group = self.deployed.replica_groups.get(adapter_id)
        stable = True
        if group is not None:
            stable = len(members) < 2 or group.policy.type == "ordered"
            members = order_replicas(
                group.policy,
                members,
                rng=self._rng,
                state=self._round_robin,
                group_id=adapter_id,
                priority=lambda m: self._priority(m.adapter_id),
                load=lambda m: self._member_load(m.adapter_id),
            )
        endpoints: list[Endpoint] = []
        for member in members:
            endpoints.extend(member.proxy.endpoints)
        return tuple(endpoints), stable

    def _priority(self, adapter_id: str) -> int:
        deployed = self.deployed.adapters.get(adapter_id)
        return deployed.priority if deployed is not None else 0


def _load_value(load: Load, sample: str) -> float:
    if isinstance(load, LoadSamples):
        return load.sample(sample)
    return float("inf") if load is None else float(load)


class Staged:
    """A change applied to the indexes whose listeners are still to be told."""

    __slots__ = ("applied", "replicas_changed")

    def __init__(
        self, applied: Optional[list[tuple[Mutation, bool]]], replicas_changed: bool
    ) -> None:
        #: each mutation with whether its key existed before (None: no mutation listeners)
        self.applied = applied
        self.replicas_changed = replicas_changed
