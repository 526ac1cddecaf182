# -*- test-case-name: tests.test_application_update -*-
"""
What IceGrid keeps about an application besides its descriptor (its
C{ApplicationInfo}): a uuid given when it is added and kept for life, who
added it and when, who changed it last and when, and a revision that
starts at 1 and grows by one with every update or sync.

It travels in the application's stored record (key C{meta}), so slaves
replicate it and restarts keep it. Records written before it existed have
none: they read as revision 1 with a uuid derived from the name, the same
on every replica, kept from then on.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping
from typing import Any, Optional

import attrs

#: namespace of the uuids given to applications stored without one
_LEGACY_NAMESPACE = _uuid.UUID("6b1d8c52-4e0f-4f1e-9a55-0b5e2c3a7d11")


@attrs.frozen
class ApplicationMetadata:
    """
    @ivar create_time: milliseconds since the epoch, as IceGrid's C{createTime}.
    @ivar update_time: likewise; equal to C{create_time} until the first update.
    @ivar live_update: the last write was made without restart
        (C{updateApplicationWithoutRestart}, C{syncApplicationWithoutRestart}):
        the nodes give running servers whose properties alone changed their
        new properties at run time instead of stopping them. Replicated with
        the application, so every replica deploys alike.
    """

    uuid: str
    create_time: int = 0
    create_user: str = ""
    update_time: int = 0
    update_user: str = ""
    revision: int = 1
    live_update: bool = False

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, value: Optional[Mapping[str, Any]], name: str) -> ApplicationMetadata:
        """
        Read L{to_json}'s output; a missing or malformed record gives the
        legacy defaults for application C{name}, so old databases still load.
        """
        if not isinstance(value, Mapping) or not isinstance(value.get("uuid"), str):
            return cls(legacy_uuid(name))
        fields: dict[str, Any] = {"uuid": value["uuid"]}
        for key, kind in (
            ("create_time", int),
            ("create_user", str),
            ("update_time", int),
            ("update_user", str),
            ("revision", int),
        ):
            item = value.get(key)
            if isinstance(item, kind) and not isinstance(item, bool):
                fields[key] = item
        fields["live_update"] = value.get("live_update") is True
        return cls(**fields)

    def updated(self, user: str, now_ms: int, live_update: bool = False) -> ApplicationMetadata:
        """After an update or a sync by C{user} at C{now_ms} (C{live_update}: without restart)."""
        return attrs.evolve(
            self,
            update_time=now_ms,
            update_user=user,
            revision=self.revision + 1,
            live_update=live_update,
        )


def created(user: str, now_ms: int) -> ApplicationMetadata:
    """A newly added application's: a fresh uuid (IceGrid's upper-case form), revision 1."""
    return ApplicationMetadata(str(_uuid.uuid4()).upper(), now_ms, user, now_ms, user, 1)


def legacy_uuid(name: str) -> str:
    """The uuid of an application stored before gridreg kept one."""
    return str(_uuid.uuid5(_LEGACY_NAMESPACE, name)).upper()
