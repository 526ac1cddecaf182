# -*- test-case-name: tests.test_store -*-
"""
The values a registry store holds and ships: mutations, committed changes
and whole-database states.

A L{Change} is the update record of design.md "Replication": the master
commits one, gets a serial for it and ships it to slaves as JSON, so its
encoding here is a wire format and must stay stable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional

import attrs

#: Every kind of record a store keeps; a mutation of any other kind is a bug.
KINDS: frozenset[str] = frozenset({"adapter", "object", "application", "replica", "meta"})

#: A JSON object, as stored for one record.
Value = dict[str, Any]

#: C{records[kind][key] = value}.
Records = dict[str, dict[str, Value]]

#: the kinds whose records a store may hand over undecoded (L{EncodedValues}):
#: the bulk of a large registry, which it decodes one by one as they are used
ENCODED_KINDS: frozenset[str] = frozenset({"object"})


class EncodedValues(Mapping[str, Value]):
    """
    One kind's records as the store holds them, each value its JSON text
    (checked to be a JSON object), decoded only when read through this
    mapping. The registry state takes L{texts} over as it is: decoding
    every record at start-up was most of a large registry's load.
    """

    __slots__ = ("texts", "odd_keys")

    def __init__(self, texts: dict[str, str], odd_keys: Optional[list[str]] = None) -> None:
        self.texts = texts
        #: the keys whose spelling the state must look at, if whoever read
        #: the texts found them already (a worker thread), else None
        self.odd_keys = odd_keys

    def __getitem__(self, key: str) -> Value:
        value: Value = json.loads(self.texts[key])
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts)

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, key: object) -> bool:
        return key in self.texts

    def __repr__(self) -> str:
        return f"EncodedValues({len(self.texts)} records)"


def decoded(records: Mapping[str, Mapping[str, Value]]) -> Records:
    """C{records} with every kind a plain dict of decoded values (for JSON, copies)."""
    return {
        kind: values if isinstance(values, dict) else dict(values.items())
        for kind, values in records.items()
    }


def _check_kind(instance: object, attribute: attrs.Attribute[str], kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {sorted(KINDS)}")


def _check_value(instance: object, attribute: attrs.Attribute[Value | None], value: object) -> None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"a record value must be a dict or None, not {type(value).__name__}")


@attrs.frozen
class Mutation:
    """
    One change to one record: a put of C{value}, or a delete when C{value}
    is C{None}.

    @ivar kind: one of L{KINDS}.
    @ivar key: the record's key within its kind.
    @ivar value: a JSON-serialisable dict, or C{None} for a delete.
    @ivar text: the value's JSON exactly as L{encode_value} writes it, when
        whoever made the mutation has it already (the master's write path
        encodes each value once): stores save it, and L{change_to_json}
        ships it, as it is. Not part of the mutation's equality.
    """

    kind: str = attrs.field(validator=_check_kind)
    key: str = attrs.field(validator=attrs.validators.instance_of(str))
    value: Value | None = attrs.field(validator=_check_value)
    text: Optional[str] = attrs.field(default=None, eq=False, repr=False, kw_only=True)


def _mutation_tuple(mutations: Iterable[Mutation]) -> tuple[Mutation, ...]:
    return tuple(mutations)


@attrs.frozen
class Change:
    """
    One committed, atomic batch of mutations: the unit replication ships.

    @ivar serial: the database serial this change brought the store to.
    @ivar text: the change's JSON as the master wrote it (L{change_to_json}
        of it there), when whoever made the change has it already (a
        slave's pushed change, L{gridreg.registry.pushed_changes}): the
        store logs it as it is. Not part of the change's equality.
    """

    serial: int = attrs.field(validator=attrs.validators.instance_of(int))
    mutations: tuple[Mutation, ...] = attrs.field(converter=_mutation_tuple)
    text: Optional[str] = attrs.field(default=None, eq=False, repr=False, kw_only=True)


@attrs.frozen
class StoreState:
    """
    A whole database, as loaded at start-up or shipped as a snapshot.

    @ivar database_id: the UUID of the database's lineage.
    @ivar serial: the serial of the last change it contains.
    @ivar records: C{records[kind][key] = value}.  States a store returns
        have an entry, possibly empty, for every kind in L{KINDS}.
    """

    database_id: str = attrs.field(validator=attrs.validators.instance_of(str))
    serial: int = attrs.field(validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)])
    records: Records = attrs.field(validator=attrs.validators.instance_of(dict))


def empty_records() -> Records:
    """Return a fresh mapping with an empty dict for every kind."""
    return {kind: {} for kind in KINDS}


#: C{json.dumps(value, allow_nan=False, separators=(",", ":"))} without
#: making its encoder on every call (a slave encodes each pushed value)
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def encode_value(mutation: Mutation) -> str:
    """
    Serialise a put's value the one way every store does, so that a value a
    store accepts is exactly a value it can save and ship.

    @raise ValueError: if the value is not strict JSON.
    """
    if mutation.text is not None:
        return mutation.text
    try:
        return _encode(mutation.value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{mutation.kind} {mutation.key!r}: value is not JSON-serialisable: {e}"
        ) from e


def normalise(mutations: Iterable[Mutation]) -> tuple[Mutation, ...]:
    """
    Copy each put's value through JSON, so every store accepts and returns
    exactly what it can save and ship (tuples become lists, and so on), and
    later changes to the caller's dicts cannot reach stored ones.

    @raise ValueError: if a value is not strict JSON.
    """
    return tuple(m if m.value is None else copied(m, encode_value(m)) for m in mutations)


def copied(mutation: Mutation, text: str) -> Mutation:
    """C{mutation}'s value decoded from C{text}, its L{encode_value}, which it keeps."""
    return Mutation(mutation.kind, mutation.key, json.loads(text), text=text)


def encode_records(records: Mapping[str, Mapping[str, Value]]) -> list[tuple[str, str, str]]:
    """
    Flatten and serialise a whole state's records into C{(kind, key, json)}
    rows, checking every kind and value as a put would.

    @raise ValueError: for an unknown kind or a value that is not strict JSON.
    @raise TypeError: for a value that is not a dict.
    """
    return [
        (kind, key, encode_value(Mutation(kind, key, value)))
        for kind, values in records.items()
        for key, value in values.items()
    ]


def _mutation_to_dict(mutation: Mutation) -> dict[str, Any]:
    return {"kind": mutation.kind, "key": mutation.key, "value": mutation.value}


#: a string as JSON, ASCII only (as C{json.dumps} writes it by default)
_json_string = json.encoder.encode_basestring_ascii


def change_to_json(change: Change, texts: Optional[list[Optional[str]]] = None) -> str:
    """
    Encode a change for the changes log and for replication. When each put
    knows its value's JSON (L{Mutation.text}, or C{texts}, one per mutation,
    as L{encode_value} wrote them), the change is put together around those
    texts, into exactly what C{json.dumps} would write.
    """
    parts = []
    for i, m in enumerate(change.mutations):
        if m.value is None:
            value = "null"
        elif m.text is not None:
            value = m.text
        elif texts is not None and texts[i] is not None:
            value = texts[i]  # type: ignore[assignment]
        else:
            break
        parts.append(
            f'{{"kind":{_json_string(m.kind)},"key":{_json_string(m.key)},"value":{value}}}'
        )
    else:
        if type(change.serial) is int:
            mutations = ",".join(parts)
            return f'{{"serial":{change.serial},"mutations":[{mutations}]}}'
    return json.dumps(
        {"serial": change.serial, "mutations": [_mutation_to_dict(m) for m in change.mutations]},
        allow_nan=False,
        separators=(",", ":"),
    )


def change_from_json(text: str | bytes) -> Change:
    """
    Decode what L{change_to_json} produced.

    @raise ValueError: if C{text} is not a well-formed change.
    """
    return change_from_dict(json.loads(text))


def change_from_dict(body: Any) -> Change:
    """
    A change from its decoded JSON form (as replication receives it, inside
    a list of changes).

    @raise ValueError: if C{body} is not a well-formed change.
    """
    try:
        return Change(
            serial=body["serial"],
            mutations=tuple(Mutation(m["kind"], m["key"], m["value"]) for m in body["mutations"]),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"malformed change: {e!r}") from e
