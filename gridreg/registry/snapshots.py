# -*- test-case-name: tests.test_initdb -*-
"""
A whole database as one blob: what a fresh slave is sent, and what
C{--initdb-from-replica} copies. JSON for now (issue 9 asks for a denser
format); both ends use these two functions only.
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
