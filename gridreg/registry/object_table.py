# -*- test-case-name: tests.test_object_table,tests.test_registry_state -*-
"""
The registry's well-known objects, held as the store keeps them.

A registry with many objects used to decode every record at start-up (JSON,
then an identity, an object and two index entries each) although a locate
needs only the one it asks for. This table keeps each record's stored key
and JSON text, as the store read them in one pass, and decodes a record the
first time it is used: a lookup turns the identity into its store key
(L{object_key}), and the index by type is built by the first query by type.
"""

from __future__ import annotations

import base64
import gc
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Callable, Optional, Union

import attrs

from gridreg.ice.encoding import InputStream
from gridreg.ice.types import ENCODING_1_1, Identity, Proxy

#: a key exactly as L{object_key} writes it for identities needing no escapes
_PLAIN_KEY = re.compile(r'\["[^"\\\x00-\x1f]*", "[^"\\\x00-\x1f]*"\]')
#: many plain keys, each but the last followed by a newline (L{odd_keys})
_PLAIN_KEYS = re.compile(rf"(?:{_PLAIN_KEY.pattern}\n)*{_PLAIN_KEY.pattern}")
_KEYS_AT_ONCE = 4096
_PROXY = '{"proxy":"'
_TYPE = '","type":"'


@attrs.frozen
class ObjectInfo:
    """A well-known object: its proxy and Slice type id."""

    proxy: Proxy
    type: str = ""


class StoredObject:
    """
    A well-known object as stored: its proxy is decoded the first time it
    is used, so a registry keeps only the stored text of those nobody asks for.
    """

    __slots__ = ("_field", "_proxy", "type")

    def __init__(self, field: str, type: str) -> None:
        self._field: str | bytes = field
        self._proxy: Optional[Proxy] = None
        self.type = type

    @property
    def wire(self) -> bytes:
        """The proxy as encoding 1.1 marshals it: a findObjectById result as is."""
        if isinstance(self._field, str):
            self._field = base64.b64decode(self._field)
        return self._field

    @property
    def proxy(self) -> Proxy:
        if self._proxy is None:
            self._proxy = decode_wire(self.wire)
        return self._proxy

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (StoredObject, ObjectInfo)):
            return (self.proxy, self.type) == (other.proxy, other.type)
        return NotImplemented

    def __repr__(self) -> str:
        return f"StoredObject({self._field!r}, {self.type!r})"


def decode_wire(data: bytes) -> Proxy:
    proxy = InputStream(data, ENCODING_1_1).read_proxy()
    if proxy is None:
        raise ValueError("a stored proxy is null")
    return proxy


def object_key(identity: Identity) -> str:
    """The store key of a well-known object: unambiguous for any identity."""
    key = f'["{identity.category}", "{identity.name}"]'
    if _PLAIN_KEY.fullmatch(key):  # what the encoder would write, without it
        return key
    return json.dumps([identity.category, identity.name], ensure_ascii=False)


def identity_from_key(key: str, categories: Optional[dict[str, str]] = None) -> Identity:
    """
    The identity of an L{object_key}: most keys hold no escapes, and are
    split without the JSON decoder.

    @param categories: one string per category, shared by the identities
        made from many keys (most objects share a few categories).
    """
    if key.startswith('["') and key.endswith('"]') and "\\" not in key:
        # no backslash, so no quote inside either string: the middle one separates them
        category, separator, name = key[2:-2].partition('", "')
        if separator and '"' not in name:
            if categories is not None:
                category = categories.setdefault(category, category)
            return Identity(name, category)
    category, name = json.loads(key)
    return Identity(name, category)


def split_value(text: str) -> tuple[str, str]:
    """
    The proxy field and type of an object record's JSON text: the form the
    store writes (C{{"proxy":"...","type":"..."}}) is split without the
    decoder; anything else is decoded.

    @raise ValueError: if it is not an object record.
    """
    if text.startswith(_PROXY) and text.endswith('"}') and "\\" not in text:
        proxy, separator, type_id = text[len(_PROXY) : -2].partition(_TYPE)
        if separator and '"' not in proxy and '"' not in type_id:
            return proxy, type_id
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"an object record is not a JSON object: {text[:80]!r}")
    return value["proxy"], value["type"]


def odd_keys(keys: Iterable[str]) -> list[str]:
    """
    The keys not spelt as L{object_key} spells keys without escapes: the
    few a load must look at (a worker thread can find them beforehand, see
    L{gridreg.store.records.EncodedValues.odd_keys}).
    """
    keys = keys if isinstance(keys, (list, tuple)) else list(keys)
    plain = _PLAIN_KEY.fullmatch
    odd: list[str] = []
    for start in range(0, len(keys), _KEYS_AT_ONCE):
        part = keys[start : start + _KEYS_AT_ONCE]
        text = "\n".join(part)
        # one match over many keys is a third of a match per key (a fresh slave
        # looks at each key of its snapshot); a key holding a newline is odd,
        # and would be counted as two
        if text.count("\n") == len(part) - 1 and _PLAIN_KEYS.fullmatch(text):
            continue
        odd.extend(key for key in part if not plain(key))
    return odd


#: a record as held: its stored JSON text, until it is first used
_Entry = Union[str, StoredObject]


class ObjectTable(Mapping[Identity, StoredObject]):
    """
    Well-known objects by identity, over their records by store key.

    It reads as a mapping of identities to L{StoredObject}s; the registry
    state changes it with L{put} and L{remove} (store keys and record
    values, as mutations carry them) and replaces it all with L{load}.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        #: type id -> the keys of its objects, in the order they were put; None until used
        self._by_type: Optional[dict[str, dict[str, None]]] = None
        #: one string per type id, shared by the objects of the type
        self._types: dict[str, str] = {}

    # -- reading ------------------------------------------------------------------

    def _decoded(self, key: str, entry: _Entry) -> StoredObject:
        if isinstance(entry, str):
            field, type_id = split_value(entry)
            entry = self._entries[key] = StoredObject(
                field, self._types.setdefault(type_id, type_id)
            )
        return entry

    def __getitem__(self, identity: Identity) -> StoredObject:
        key = object_key(identity)
        return self._decoded(key, self._entries[key])

    def get(  # type: ignore[override]
        self, identity: Identity, default: Optional[StoredObject] = None
    ) -> Optional[StoredObject]:
        key = object_key(identity)
        entry = self._entries.get(key)
        if entry is None:
            return default
        return self._decoded(key, entry)

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, Identity) and object_key(identity) in self._entries

    def __iter__(self) -> Iterator[Identity]:
        categories: dict[str, str] = {}
        return (identity_from_key(key, categories) for key in list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def values(self) -> list[StoredObject]:  # type: ignore[override]
        """Every object (each decoded now), without going through its identity."""
        return [self._decoded(key, entry) for key, entry in list(self._entries.items())]

    def items(self) -> list[tuple[Identity, StoredObject]]:  # type: ignore[override]
        categories: dict[str, str] = {}
        return [
            (identity_from_key(key, categories), self._decoded(key, entry))
            for key, entry in list(self._entries.items())
        ]

    def has_key(self, key: str) -> bool:
        """Whether a record is held under store key C{key} (spelt as L{object_key} does)."""
        return self._canonical(key) in self._entries

    def of_type(self, type_id: str) -> list[StoredObject]:
        """The objects of C{type_id}, in the order they were put."""
        if self._by_type is None:
            self._index_types()
            assert self._by_type is not None
        keys = self._by_type.get(type_id)
        if not keys:
            return []
        entries = self._entries
        return [self._decoded(key, entries[key]) for key in keys]

    def _index_types(self) -> None:
        """
        The index by type, from every record (the first query by type pays
        it), kept out of the collector's passes as the load is (L{_frozen}).
        """
        by_type: dict[str, dict[str, None]] = {}

        def index() -> None:
            for key, entry in list(self._entries.items()):
                stored = self._decoded(key, entry)
                typed = by_type.get(stored.type)
                if typed is None:
                    typed = by_type[stored.type] = {}
                typed[key] = None

        _frozen(index)
        self._by_type = by_type

    # -- changing -----------------------------------------------------------------

    @staticmethod
    def _canonical(key: str) -> str:
        """C{key} as L{object_key} spells it (a record may have been stored spelt otherwise)."""
        if _PLAIN_KEY.fullmatch(key):
            return key
        return object_key(identity_from_key(key))

    def put(self, key: str, value: Mapping[str, str]) -> None:
        """
        Put an object record (its value as a mutation carries it). Every
        replicated add comes here: a plain key is taken as it is, and the old
        record, if any, is dropped here while nothing is indexed by type, as
        L{_canonical} and L{_remove_canonical} would (two calls of a slave's
        push).
        """
        if not _PLAIN_KEY.fullmatch(key):
            key = object_key(identity_from_key(key))
        if self._by_type is None:
            self._entries.pop(key, None)  # put again: it moves to the end, as a new one
        else:
            self._remove_canonical(key)
        type_id = value["type"]
        type_id = self._types.setdefault(type_id, type_id)
        self._entries[key] = StoredObject(value["proxy"], type_id)
        if self._by_type is not None:
            self._by_type.setdefault(type_id, {})[key] = None

    def remove(self, key: str) -> None:
        self._remove_canonical(self._canonical(key))

    def _remove_canonical(self, key: str) -> None:
        """L{remove} of a key spelt as L{object_key} does (L{put}'s, checked once)."""
        entry = self._entries.pop(key, None)
        if entry is None or self._by_type is None:
            return
        type_id = entry.type if isinstance(entry, StoredObject) else split_value(entry)[1]
        typed = self._by_type.get(type_id)
        if typed is not None:
            typed.pop(key, None)
            if not typed:
                del self._by_type[type_id]

    def clear(self) -> None:
        self._entries = {}
        self._by_type = None
        self._types = {}

    def load(self, records: Mapping[str, object]) -> None:
        """
        Replace every object with C{records}: stored JSON texts by key
        (L{gridreg.store.records.EncodedValues}, taken over as they are),
        or decoded values.
        """
        self.clear()
        texts = getattr(records, "texts", None)
        if texts is None:
            for key, value in records.items():
                self.put(key, value)  # type: ignore[arg-type]
            return
        entries: dict[str, _Entry] = texts
        odd = getattr(records, "odd_keys", None)
        if odd is None:
            odd = odd_keys(entries)
        for key in odd:
            canonical = object_key(identity_from_key(key))
            if canonical != key and key in entries:
                # the later of two spellings in key order wins, as applying them in order would
                text = entries.pop(key)
                if canonical not in entries or canonical < key:
                    entries[canonical] = text
        _track(entries)
        self._entries = entries


def _frozen(build: Callable[[], None]) -> None:
    """
    Run C{build}, which makes objects that live as long as the table (every
    record decoded, for the index by type), and keep them out of the
    collector's passes, as L{gridreg.registry.state.RegistryState.load}
    keeps the loaded records: each full pass walked a million decoded
    objects again (tens of milliseconds on whichever thread allocated).
    A full pass first, so no garbage of the running registry is frozen
    with them (the loaded state is frozen already: it walks the rest);
    none during the build, which only adds objects that live on.
    """
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        build()
    finally:
        if collecting:
            gc.enable()
    gc.freeze()


def _track(entries: dict[str, _Entry]) -> None:
    """
    Have the collector track C{entries} now, so that the registry state's
    C{gc.freeze} after the load takes it out of every collection. A dict of
    texts alone is not tracked; the first object decoded into it (the first
    lookup) used to make it tracked in the youngest generation, and the next
    collections each walked all its records (20 ms for a million, on whichever
    thread allocated: the master's reactor as its first fresh slave synced),
    a full collection every time after. Once tracked, CPython untracks a
    dict only in a full collection, which never looks at frozen objects.
    """
    if not gc.is_tracked(entries):
        any_value: dict[str, object] = entries  # type: ignore[assignment]
        any_value[""] = []  # a container; "" is no record's key (keys are JSON arrays)
        del any_value[""]
