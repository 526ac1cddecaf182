# -*- test-case-name: tests.test_store_digest -*-
"""
A digest of a registry database's records, to compare replicas.

Two replicas hold the same state exactly when their digests are equal: the
digest covers every record (kind, key and value), and nothing else, so it
does not depend on the order records were written in, on how a value's
JSON was spelled, on the serial or on the database id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from gridreg.store.records import StoreState

#: Names the encoding below; a change to it changes every digest.
_VERSION = b"gridreg-records-digest-v1\n"


def canonical_json(value: Any) -> str:
    """
    The one JSON text of C{value}: keys sorted, no spaces, non-ASCII escaped.

    @raise ValueError: if C{value} is not strict JSON (NaN, infinities).
    @raise TypeError: if C{value} holds something JSON cannot encode.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def _field(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"%d:" % len(data) + data + b","


def records_digest(records: Mapping[str, Mapping[str, Any]]) -> str:
    """
    The SHA-256 digest (64 hex digits) of C{records[kind][key] = value}.

    Records are hashed sorted by kind then key, each as three length-prefixed
    fields (kind, key, canonical JSON of the value), so no two different
    sets of records share an encoding. A kind with no records counts as
    absent.
    """
    digest = hashlib.sha256(_VERSION)
    for kind in sorted(records):
        values = records[kind]
        for key in sorted(values):
            digest.update(_field(kind) + _field(key) + _field(canonical_json(values[key])))
    return digest.hexdigest()


def state_digest(state: StoreState) -> str:
    """L{records_digest} of a whole stored state (its records only)."""
    return records_digest(state.records)


__all__ = ["canonical_json", "records_digest", "state_digest"]
