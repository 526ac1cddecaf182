# -*- test-case-name: tests.test_pushed_changes -*-
"""
A push's changes, each put keeping its value's JSON as the master wrote it.

The master writes a push as C{"[" + ",".join(texts) + "]"}, each text a
change as L{change_to_json} writes it, around each value's JSON as
L{encode_value} wrote it. A slave decoded the whole push, then its store's
thread encoded each value again to save it (and the change around it): a
round trip through JSON per value, on every slave, for text the push
already held. Here a push in that form is walked once: each value is
decoded by C{json}'s own scanner, which says where its text ends, and the
put keeps that text (L{Mutation.text}), which the store saves and logs as
it is. Anything else (spaces, escapes in a kind or key, another order of
fields, an escaped kind) is decoded the general way, and the store encodes it as before; so
is anything the walk finds wrong, which the general way then refuses with
its own error. Each change walked keeps its own text too (L{Change.text}),
which the store logs as it is: it was put together again around the
values' texts on the store's thread, for each pushed change.

A value's text is what the master stored: it may be spelled otherwise than
this replica would spell the decoded value (a master of another version),
which changes nothing that reads it (every reader decodes it; the digest
of L{gridreg.store.digest} does not depend on the spelling).
"""

from __future__ import annotations

import json
import re
from json.scanner import make_scanner
from typing import Any, Callable

from gridreg.store.records import Change, Mutation, change_from_dict

__all__ = ["decode_changes"]


def _refuse_constant(name: str) -> Any:
    """NaN and the infinities are not strict JSON: the general path handles (and refuses) them."""
    raise ValueError(f"{name} is not strict JSON")


#: C{json}'s scanner (C where available): C{scan(text, index)} is C{(value, end)}
_scan: Callable[[str, int], tuple[Any, int]] = make_scanner(
    json.JSONDecoder(parse_constant=_refuse_constant)  # type: ignore[arg-type]
)

#: a change's start, up to its first mutation's key's text if it has one (most have one)
_CHANGE = re.compile(r'\{"serial":(0|[1-9][0-9]*),"mutations":\[(?:\{"kind":"([a-z]+)","key":")?')

#: a mutation's start, up to its key's text (an object's key is a JSON list: escaped)
_MUTATION = re.compile(r'\{"kind":"([a-z]+)","key":"')

#: C{json}'s string scanner: C{scanstring(text, index after the quote)} is C{(string, end)}
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]

_VALUE = ',"value":'
_VALUE_LENGTH = len(_VALUE)


class _Irregular(Exception):
    """The push is not in the master's form: decode it the general way."""


def decode_changes(payload: str) -> list[Change]:
    """
    The changes of a push (a JSON list of changes), each change with its
    text and each put with its value's text where the push is in the
    master's form.

    @raise ValueError: if C{payload} is not a well-formed list of changes.
    """
    try:
        return _walk(payload)
    except (_Irregular, StopIteration, ValueError, TypeError, IndexError):
        return [change_from_dict(c) for c in json.loads(payload)]


def _walk(payload: str) -> list[Change]:
    """The master's form, walked once; L{_Irregular} (or the scanner's errors) otherwise."""
    if payload == "[]":
        return []
    if payload[:1] != "[":
        raise _Irregular()
    change_at = _CHANGE.match
    mutation_at = _MUTATION.match
    scan = _scan
    scanstring = _scanstring
    changes = []
    pos = 1
    while True:
        # the checks come in the order most changes meet them: one mutation each
        head = change_at(payload, pos)
        if head is None:
            raise _Irregular()
        start_of_change = pos
        kind = head[2]
        key_at = head.end()
        mutations = []
        if kind is None:
            if not payload.startswith("]}", key_at):  # nor a change without mutations
                raise _Irregular()
            pos = key_at + 2
        else:
            while True:
                key, pos = scanstring(payload, key_at)
                if not payload.startswith(_VALUE, pos):
                    raise _Irregular()
                start = pos + _VALUE_LENGTH
                value, pos = scan(payload, start)
                text = None if value is None else payload[start:pos]
                mutations.append(Mutation(kind, key, value, text=text))
                if payload.startswith("}]}", pos):
                    pos += 3
                    break
                if not payload.startswith("},", pos):
                    raise _Irregular()
                found = mutation_at(payload, pos + 2)
                if found is None:
                    raise _Irregular()
                kind = found[1]
                key_at = found.end()
        changes.append(Change(int(head[1]), mutations, text=payload[start_of_change:pos]))
        if payload[pos] == ",":
            pos += 1
        elif payload[pos:] == "]":  # at the end only: nothing is copied but that
            return changes
        else:
            raise _Irregular()
