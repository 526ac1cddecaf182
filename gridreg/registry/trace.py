# -*- test-case-name: tests.test_registry_tap -*-
"""
IceGrid's registry trace categories, read once from the properties.

Trace messages are logged through C{twisted.logger} at info level, prefixed
with the category in brackets as IceGrid prints them, so an operator who
knows IceGrid's traces recognises them.
"""

from __future__ import annotations

import attrs

from gridreg.config.properties import Properties

_PREFIX = "IceGrid.Registry.Trace."


@attrs.frozen
class TraceLevels:
    """The level of each IceGrid.Registry.Trace.* category (0 = off)."""

    locator: int = 0
    adapter: int = 0
    object: int = 0
    replica: int = 0
    node: int = 0
    application: int = 0
    session: int = 0
    server: int = 0
    topic: int = 0

    @classmethod
    def from_properties(cls, properties: Properties) -> "TraceLevels":
        return cls(
            **{
                field.name: properties.get_int(_PREFIX + field.name.title(), 0)
                for field in attrs.fields(cls)
            }
        )
