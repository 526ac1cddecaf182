# -*- test-case-name: tests.test_registry_tap,tests.test_node_tap -*-
"""
What the gridregistry and gridnode plugins share on their command lines:
an Ice property file (C{--config}), then C{--property KEY=VALUE} overrides
in order, checked against the known properties, and the start-up warnings
that checking produces.
"""

from __future__ import annotations

from typing import Optional

from twisted.logger import Logger
from twisted.python import usage

from gridreg.config.properties import (
    IGNORED_WARNING,
    IgnoredProperty,
    Properties,
    ignored_properties,
    load_file,
    parse_overrides,
    validate,
)


class PropertyOptions(usage.Options):
    """Options of a plugin configured with IceGrid's properties."""

    optParameters = [
        ["config", "c", None, "An Ice property file to read (like --Ice.Config)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["property"] = []
        self.properties: Optional[Properties] = None
        self.warnings: list[str] = []
        self.ignored: list[IgnoredProperty] = []

    def opt_property(self, value: str) -> None:
        """Set one property, KEY=VALUE (repeatable; later ones win)."""
        self["property"].append(value)

    def read_properties(self, *named: tuple[str, Optional[str], str]) -> Properties:
        """
        The file, then the overrides, then the C{(key, value, source)} set by
        named options (when their value is not None); checked.

        @raise PropertyError: a bad file, line or value.
        """
        properties = load_file(self["config"]) if self["config"] else Properties()
        for key, value in parse_overrides(self["property"]):
            properties.set(key, value, source="command line")
        for key, value, source in named:
            if value is not None:
                properties.set(key, value, source=source)
        self.warnings = validate(properties)
        self.ignored = ignored_properties(properties)
        return properties

    def log_warnings(self, log: Logger) -> None:
        """Say what checking the properties found, once, at start-up."""
        for warning in self.warnings:
            # not "warning": trial's legacy observer takes such events for Python warnings
            log.warn("{problem}", problem=warning)
        for ignored in self.ignored:
            log.warn(IGNORED_WARNING, **ignored.fields())
