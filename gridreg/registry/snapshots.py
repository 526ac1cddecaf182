# -*- test-case-name: tests.test_initdb -*-
"""
A whole database as one JSON blob: what C{--initdb-from-replica} copies
(C{FetchDatabase}); both ends use these two functions only. A fresh slave
is sent a streamed binary snapshot instead (L{gridreg.registry.snapshot_stream}).
"""

from __future__ import annotations

import json

from gridreg.protocol.errors import SyncError
from gridreg.store.records import StoreState


def snapshot_to_json(state: StoreState) -> bytes:
    return json.dumps(
        {"database_id": state.database_id, "serial": state.serial, "records": state.records},
        separators=(",", ":"),
    ).encode("utf-8")


def snapshot_from_json(data: bytes) -> StoreState:
    """
    @raise SyncError: C{data} is not a snapshot.
    """
    try:
        body = json.loads(data)
        return StoreState(body["database_id"], body["serial"], body["records"])
    except (ValueError, KeyError, TypeError) as e:
        raise SyncError(f"malformed snapshot: {e}") from None
