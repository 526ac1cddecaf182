# -*- test-case-name: tests.test_registry_tap -*-
"""
The C{gridregistry} twistd plugin: command-line options and service wiring.

Configuration is IceGrid's: an Ice property file (C{--config}), then
C{--property KEY=VALUE} overrides in order, then C{--replica-name}. Any bad
file, line or value stops start-up with a message naming it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from gridreg.config.options import PropertyOptions
from gridreg.config.stdio import redirect_stdio
from gridreg.config.properties import PropertyError
from gridreg.registry.config import RegistryConfig
from gridreg.scheduling import use_scheduler
from gridreg.tls_gate import keep_tls_out

if TYPE_CHECKING:  # imported once the configuration has said whether TLS is used
    from gridreg.registry.security import InternalSecurity

log = Logger()


class Options(PropertyOptions):
    """twistd gridregistry [--config FILE] [--replica-name NAME] [--property K=V ...]"""

    synopsis = (
        "[--config FILE] [--replica-name NAME] [--property KEY=VALUE ...] "
        "[--readonly] [--initdb-from-replica NAME]"
    )
    longdesc = (
        "Run one replica of a gridreg registry: an IceGrid-compatible locator. "
        "Properties use IceGrid's names (IceGrid.InstanceName, "
        "IceGrid.Registry.Client.Endpoints, IceGrid.Registry.LMDB.Path, ...)."
    )
    optParameters = [
        ["replica-name", None, None, "IceGrid.Registry.ReplicaName: Master, or a slave's name."],
        [
            "initdb-from-replica",
            None,
            None,
            "Start from a copy of the named replica's database (replacing this one's).",
        ],
    ]
    optFlags = [
        [
            "readonly",
            None,
            "Master only: serve reads, refuse writes and do not sync slaves "
            "(to inspect a promoted replica before opening it).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.registry_config: Optional[RegistryConfig] = None
        self.security: Optional[InternalSecurity] = None

    def postOptions(self) -> None:
        try:
            properties = self.read_properties(
                ("IceGrid.Registry.ReplicaName", self["replica-name"], "--replica-name")
            )
            config = RegistryConfig.from_properties(properties)
            if self["readonly"]:
                if not config.is_master:
                    raise PropertyError(
                        "--readonly applies to the master: a slave refuses writes already"
                    )
                config = attrs.evolve(config, readonly=True)
            source = self["initdb-from-replica"]
            if source is not None:
                if not source or source == config.replica_name:
                    raise PropertyError(
                        f"--initdb-from-replica names another replica, not `{source}'"
                    )
                config = attrs.evolve(config, initdb_from_replica=source)
            keep_tls_out(properties)  # before anything imports the reactor
            from gridreg.lean_reactor import use_lean_reactor

            use_lean_reactor(config.lean_reactor)  # before twist installs its default
            from gridreg.registry.security import InternalSecurity

            self.security = InternalSecurity.from_properties(
                properties, needed=bool(config.internal_endpoints) or not config.is_master
            )
            self.registry_config = config
        except PropertyError as exc:
            raise usage.UsageError(str(exc)) from None
        self.properties = properties


def make_store(config: RegistryConfig, reactor: Any = None) -> Any:
    """
    SQLite under IceGrid.Registry.LMDB.Path (or IceGrid.Registry.Data), its
    file used on a worker thread of C{reactor}, or memory when no directory
    is set.
    """
    if config.data_dir:
        from gridreg.store.executor import ThreadExecutor
        from gridreg.store.sqlite import SQLiteStore

        from gridreg.registry.object_table import odd_keys

        if reactor is None:
            from twisted.internet import reactor
        store = SQLiteStore(config.data_dir, executor=ThreadExecutor(reactor))
        store.find_odd_keys = odd_keys  # on the store's thread, not in the state's load
        return store
    from gridreg.store.memory import MemoryStore

    return MemoryStore()


def memory_collapser(reactor: Any, interval: int) -> Optional[IService]:
    """
    The service that moves the process's dense memory onto huge pages once
    it runs, and every C{interval} seconds (L{gridreg.huge_page_collapse});
    None when it is turned off or the kernel cannot.
    """
    if interval <= 0:
        return None
    from gridreg.huge_page_collapse import HugePageCollapse, available

    why_not = available()
    if why_not is not None:
        log.info(
            "GridReg.HugePages.Collapse: {why_not}; the memory stays as it is", why_not=why_not
        )
        return None
    return HugePageCollapse(reactor, interval)


def early_close(enabled: bool) -> Optional[IService]:
    """
    The service that starts the keeper holding the registry's memory, so
    that a killed registry's connections close first (L{gridreg.early_close});
    None when it is turned off or this system cannot have one.
    """
    if not enabled:
        return None
    from gridreg.early_close import EarlyClose, available

    why_not = available()
    if why_not is not None:
        log.info(
            "GridReg.EarlyClose: {why_not}; a killed registry's connections close only once "
            "its memory is freed",
            why_not=why_not,
        )
        return None
    return EarlyClose()


def makeService(
    options: Options,
    reactor: Any = None,
    scheduler: Callable[[str], bool] = use_scheduler,
) -> IService:
    """
    The replica's service, its store already being read: the read runs on
    the store's thread while this thread imports the service's modules
    (the start-up's critical path was the imports, then the read).
    C{scheduler} applies C{GridReg.Scheduler} to this process (a test
    passes its own, so the test runner keeps its policy).
    """
    config = options.registry_config
    assert config is not None
    huge_pages = None
    if reactor is None:  # a real start (twistd, twist): tests give their reactor
        from gridreg.huge_pages import start_again_with_huge_pages

        huge_pages = start_again_with_huge_pages(config.huge_pages)
        from twisted.internet import reactor
    redirect_stdio(options.properties)
    options.log_warnings(log)
    if huge_pages:
        log.info(
            "Started again with PYTHONMALLOC=malloc and GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "
            "(GridReg.HugePages=0 turns it off)"
        )
    scheduler(config.scheduler)  # before any thread starts: they inherit it
    extras = []
    if huge_pages is not None:  # a real start
        extras = [
            service
            for service in (
                memory_collapser(reactor, config.huge_page_collapse),
                early_close(config.early_close),
            )
            if service is not None
        ]
    log.info(
        "Reactor: {reactor} (GridReg.LeanReactor={lean})",
        reactor=f"{type(reactor).__module__}.{type(reactor).__qualname__}",
        lean=int(config.lean_reactor),
    )
    store = make_store(config, reactor)
    store.read_ahead()  # its failure is open()'s, reported as the service starts
    if not config.data_dir:
        log.warn(
            "IceGrid.Registry.LMDB.Path is not set: the registry keeps its database in "
            "memory and loses it when it stops"
        )
    elif os.path.exists(os.path.join(config.data_dir, "data.mdb")):
        log.warn(
            "{data_dir} holds an IceGrid LMDB database (data.mdb), which gridreg cannot "
            "read: gridreg keeps its own database (registry.sqlite) beside it, and "
            "starts without IceGrid's applications, adapters and objects",
            data_dir=config.data_dir,
        )
    from gridreg.registry.service import RegistryService

    if not config.is_master and config.locator is None:
        log.warn(
            "Slave {replica} has no Ice.Default.Locator: it can only find the master "
            "through the endpoints stored in its database",
            replica=config.replica_name,
        )
    registry = RegistryService(reactor, config, store, security=options.security)
    if not extras:
        return registry
    top = MultiService()
    registry.setServiceParent(top)
    for service in extras:
        service.setServiceParent(top)
    return top
