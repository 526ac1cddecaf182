# -*- test-case-name: tests.test_node_tap -*-
"""
The C{gridnode} twistd plugin: command-line options and service wiring.

Configuration is IceGrid's: an Ice property file (C{--config}), then
C{--property KEY=VALUE} overrides in order, then C{--node-name}. Any bad
file, line or value stops start-up with a message naming it.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from gridreg.config.properties import (
    IGNORED_WARNING,
    IgnoredProperty,
    Properties,
    PropertyError,
    ignored_properties,
    load_file,
    parse_overrides,
    validate,
)
from gridreg.node.config import NodeConfig
from gridreg.registry.security import InternalSecurity

log = Logger()


class Options(usage.Options):
    """twistd gridnode [--config FILE] [--node-name NAME] [--property K=V ...]"""

    synopsis = "[--config FILE] [--node-name NAME] [--property KEY=VALUE ...]"
    longdesc = (
        "Run a gridreg node: it keeps a session with every registry replica and starts "
        "the servers deployed on it, as icegridnode does. Properties use IceGrid's names "
        "(IceGrid.Node.Name, IceGrid.Node.Data, IceGrid.Node.Output, Ice.Default.Locator, ...)."
    )
    optParameters = [
        ["config", "c", None, "An Ice property file to read (like --Ice.Config)."],
        ["node-name", None, None, "IceGrid.Node.Name: this node's name."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["property"] = []
        self.properties: Optional[Properties] = None
        self.node_config: Optional[NodeConfig] = None
        self.security: Optional[InternalSecurity] = None
        self.warnings: list[str] = []
        self.ignored: list[IgnoredProperty] = []

    def opt_property(self, value: str) -> None:
        """Set one property, KEY=VALUE (repeatable; later ones win)."""
        self["property"].append(value)

    def postOptions(self) -> None:
        try:
            properties = load_file(self["config"]) if self["config"] else Properties()
            for key, value in parse_overrides(self["property"]):
                properties.set(key, value, source="command line")
            if self["node-name"] is not None:
                properties.set("IceGrid.Node.Name", self["node-name"], source="--node-name")
            self.warnings = validate(properties)
            self.ignored = ignored_properties(properties)
            self.node_config = NodeConfig.from_properties(properties)
            self.security = InternalSecurity.from_properties(properties, needed=True)
        except PropertyError as exc:
            raise usage.UsageError(str(exc)) from None
        self.properties = properties


def makeService(options: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor
    from gridreg.node.service import NodeService

    config = options.node_config
    assert config is not None
    for warning in options.warnings:
        log.warn("{problem}", problem=warning)
    for ignored in options.ignored:
        log.warn(IGNORED_WARNING, **ignored.fields())
    return NodeService(reactor, config, options.security)
