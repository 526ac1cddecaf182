# -*- test-case-name: tests.test_registry_tap -*-
"""
The C{gridregistry} twistd plugin: command-line options and service wiring.

Configuration is IceGrid's: an Ice property file (C{--config}), then
C{--property KEY=VALUE} overrides in order, then C{--replica-name}. Any bad
file, line or value stops start-up with a message naming it.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from gridreg.config.properties import (
    Properties,
    PropertyError,
    load_file,
    parse_overrides,
    validate,
)
from gridreg.registry.config import RegistryConfig
from gridreg.registry.security import InternalSecurity
from gridreg.registry.service import RegistryService

log = Logger()


class Options(usage.Options):
    """twistd gridregistry [--config FILE] [--replica-name NAME] [--property K=V ...]"""

    synopsis = "[--config FILE] [--replica-name NAME] [--property KEY=VALUE ...]"
    longdesc = (
        "Run one replica of a gridreg registry: an IceGrid-compatible locator. "
        "Properties use IceGrid's names (IceGrid.InstanceName, "
        "IceGrid.Registry.Client.Endpoints, IceGrid.Registry.Data, ...)."
    )
    optParameters = [
        ["config", "c", None, "An Ice property file to read (like --Ice.Config)."],
        ["replica-name", None, None, "IceGrid.Registry.ReplicaName: Master, or a slave's name."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["property"] = []
        self.properties: Optional[Properties] = None
        self.registry_config: Optional[RegistryConfig] = None
        self.security: Optional[InternalSecurity] = None
        self.warnings: list[str] = []

    def opt_property(self, value: str) -> None:
        """Set one property, KEY=VALUE (repeatable; later ones win)."""
        self["property"].append(value)

    def postOptions(self) -> None:
        try:
            properties = load_file(self["config"]) if self["config"] else Properties()
            for key, value in parse_overrides(self["property"]):
                properties.set(key, value, source="command line")
            if self["replica-name"] is not None:
                properties.set(
                    "IceGrid.Registry.ReplicaName", self["replica-name"], source="--replica-name"
                )
            self.warnings = validate(properties)
            config = RegistryConfig.from_properties(properties)
            self.security = InternalSecurity.from_properties(
                properties, needed=bool(config.internal_endpoints) or not config.is_master
            )
            self.registry_config = config
        except PropertyError as exc:
            raise usage.UsageError(str(exc)) from None
        self.properties = properties


def make_store(config: RegistryConfig) -> Any:
    """SQLite under IceGrid.Registry.Data, or memory when no directory is set."""
    if config.data_dir:
        from gridreg.store.sqlite import SQLiteStore

        return SQLiteStore(config.data_dir)
    from gridreg.store.memory import MemoryStore

    return MemoryStore()


def makeService(options: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor
    config = options.registry_config
    assert config is not None
    for warning in options.warnings:
        log.warn("{warning}", warning=warning)
    if not config.data_dir:
        log.warn(
            "IceGrid.Registry.Data is not set: the registry keeps its database in "
            "memory and loses it when it stops"
        )
    if not config.is_master and config.locator is None:
        log.warn(
            "Slave {replica} has no Ice.Default.Locator: it can only find the master "
            "through the endpoints stored in its database",
            replica=config.replica_name,
        )
    return RegistryService(reactor, config, make_store(config), security=options.security)
