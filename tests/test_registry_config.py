# -*- test-case-name: tests.test_registry_config -*-
"""
Tests for L{gridreg.registry.config}: the database directory under its
IceGrid 3.7 and older names, and the start-up warnings about properties
gridreg knows but ignores (L{gridreg.config.known.PROPERTY_SUPPORT}).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any, Callable

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from gridreg.admin.session import admin_name
from gridreg.certs import make_demo_certs
from gridreg.client.locator import LocatorClient
from gridreg.config.known import (
    KNOWN_PREFIXES,
    KNOWN_PROPERTIES,
    PROPERTY_SUPPORT,
    Support,
    property_support,
)
from gridreg.config.properties import Properties, PropertyError, parse_text
from gridreg.config.stdio import stdio_files
from gridreg.ice.types import TcpEndpoint
from gridreg.node.config import NodeConfig
from gridreg.registry import tap
from gridreg.registry.config import RegistryConfig
from gridreg.registry.security import InternalSecurity


def _properties(values: Mapping[str, str], source: str = "registry.cfg") -> Properties:
    text = "".join(f"{key}={value}\n" for key, value in values.items())
    return parse_text(text, source)


class DataDirTests(SynchronousTestCase):
    """The database directory, named the IceGrid 3.7 way or the older way."""

    def test_lmdb_path(self) -> None:
        """IceGrid 3.7's IceGrid.Registry.LMDB.Path alone names the directory."""
        config = RegistryConfig.from_properties(
            _properties({"IceGrid.Registry.LMDB.Path": "db/master"})
        )
        self.assertEqual(config.data_dir, "db/master")

    def test_older_name(self) -> None:
        config = RegistryConfig.from_properties(_properties({"IceGrid.Registry.Data": "db/master"}))
        self.assertEqual(config.data_dir, "db/master")

    def test_neither(self) -> None:
        """Without either the registry runs on memory (tap.make_store)."""
        config = RegistryConfig.from_properties(Properties())
        self.assertIsNone(config.data_dir)
        self.assertEqual(type(tap.make_store(config)).__name__, "MemoryStore")

    def test_lmdb_path_gives_a_sqlite_store(self) -> None:
        path = self.mktemp()
        config = RegistryConfig.from_properties(_properties({"IceGrid.Registry.LMDB.Path": path}))
        store = tap.make_store(config)
        self.assertEqual((type(store).__name__, store.path), ("SQLiteStore", path))

    def test_both_same_directory(self) -> None:
        """Both names for one directory, spelt differently, are fine."""
        config = RegistryConfig.from_properties(
            _properties(
                {"IceGrid.Registry.LMDB.Path": "db/master/", "IceGrid.Registry.Data": "db/./master"}
            )
        )
        self.assertEqual(config.data_dir, "db/master/")

    def test_both_different(self) -> None:
        """Two different directories stop start-up, naming both properties."""
        properties = _properties(
            {"IceGrid.Registry.Data": "db/old", "IceGrid.Registry.LMDB.Path": "db/new"}
        )
        error = self.assertRaises(PropertyError, RegistryConfig.from_properties, properties)
        self.assertEqual(
            str(error),
            "IceGrid.Registry.LMDB.Path (registry.cfg:2) and IceGrid.Registry.Data "
            "(registry.cfg:1) name different database directories, 'db/new' and 'db/old': "
            "set only IceGrid.Registry.LMDB.Path (IceGrid.Registry.Data is its older name)",
        )

    def test_both_different_is_a_usage_error(self) -> None:
        options = tap.Options()
        error = self.assertRaises(
            UsageError,
            options.parseOptions,
            [
                "--property=IceGrid.Registry.Data=a",
                "--property=IceGrid.Registry.LMDB.Path=b",
            ],
        )
        self.assertIn("name different database directories", str(error))

    def test_ice_default_timeout_and_protocol(self) -> None:
        """The registry's own endpoints take Ice's defaults, as IceGrid's do."""
        config = RegistryConfig.from_properties(
            _properties(
                {
                    "Ice.Default.Timeout": "5000",
                    "Ice.Default.Protocol": "tcp",
                    "IceGrid.Registry.Client.Endpoints": "default -h 127.0.0.1 -p 4061",
                }
            )
        )
        self.assertEqual(config.client_endpoints, (TcpEndpoint("127.0.0.1", 4061, 5000),))


def _warnings(arguments: list[str]) -> list[dict[str, Any]]:
    """The warnings C{twist gridregistry ARGUMENTS} logs while it is built."""
    options = tap.Options()
    options.parseOptions(arguments)
    with capturedLogs() as events:
        tap.makeService(options, reactor=MemoryReactorClock(), scheduler=lambda policy: True)
    return [e for e in events if e["log_level"] is LogLevel.warn]


class StartupWarningTests(SynchronousTestCase):
    """Each set property gridreg ignores gets one start-up warning line."""

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_ignored_properties(self) -> None:
        data = self.mktemp()
        path = self.write(
            f"IceGrid.Registry.LMDB.Path={data}\n"
            "IceGrid.Registry.LMDB.MapSize=10\n"
            "IceGrid.Registry.Discovery.Enabled=0\n"
            "IceGrid.Registry.Trace.Node=0\n"
            "IceGrid.Registry.Trace.Locator=2\n"
            "IceGrid.Registry.PermissionsVerifier.InvocationTimeout=1000\n"
            "IceGrid.Node.Endpoints=tcp\n"
            "Ice.ThreadPool.Server.Size=4\n"
            "Ice.ACM.Timeout=60\n"
            "Ice.Plugin.IceSSL=IceSSL:createIceSSL\n"
            "IceGrid.Registry.Frobnicate=1\n"
        )
        events = _warnings(["--config", path, "--property=IceSSL.VerifyPeer=1"])
        self.assertEqual(
            [formatEvent(e) for e in events],
            [
                f"unknown property: `IceGrid.Registry.Frobnicate' (set at {path}:11)",
                "property `IceGrid.Registry.LMDB.MapSize' is not supported by gridreg (yet): "
                f"gridreg's SQLite database grows as needed; no size limit is applied "
                f"(set at {path}:2)",
                "property `IceGrid.Registry.PermissionsVerifier.InvocationTimeout' is not "
                "supported by gridreg (yet): a verifier is called with gridreg's own settings "
                "(one connection per call, 10 s); its proxy properties are ignored "
                f"(set at {path}:6)",
                "property `IceGrid.Node.Endpoints' is not supported by gridreg (yet): a "
                "gridnode needs no endpoint: replicas reach it over the session it opens "
                f"with them (set at {path}:7)",
                "property `Ice.ThreadPool.Server.Size' is not supported by gridreg (yet): "
                "gridreg serves every connection on one reactor thread "
                f"(set at {path}:8)",
                "property `Ice.Plugin.IceSSL' is not supported by gridreg (yet): gridreg loads "
                f"no Ice plug-ins; ignored (set at {path}:10)",
                "property `IceSSL.VerifyPeer' is not supported by gridreg (yet): a peer "
                "certificate signed by IceSSL.CAs is always required (set at command line)",
            ],
        )
        self.assertEqual(
            [e.get("property") for e in events[1:]],
            [
                "IceGrid.Registry.LMDB.MapSize",
                "IceGrid.Registry.PermissionsVerifier.InvocationTimeout",
                "IceGrid.Node.Endpoints",
                "Ice.ThreadPool.Server.Size",
                "Ice.Plugin.IceSSL",
                "IceSSL.VerifyPeer",
            ],
        )

    def test_memory_database_warning(self) -> None:
        """Without a directory the warning names IceGrid 3.7's property."""
        self.assertEqual(
            [formatEvent(e) for e in _warnings([])],
            [
                "IceGrid.Registry.LMDB.Path is not set: the registry keeps its database "
                "in memory and loses it when it stops"
            ],
        )

    def test_icegrid_database_directory(self) -> None:
        """A directory holding IceGrid's own LMDB database is not read: say so."""
        data = self.mktemp()
        os.mkdir(data)
        with open(os.path.join(data, "data.mdb"), "wb"):
            pass
        self.assertEqual(
            [formatEvent(e) for e in _warnings([f"--property=IceGrid.Registry.LMDB.Path={data}"])],
            [
                f"{data} holds an IceGrid LMDB database (data.mdb), which gridreg cannot read: "
                "gridreg keeps its own database (registry.sqlite) beside it, and starts "
                "without IceGrid's applications, adapters and objects"
            ],
        )

    def test_honoured_configuration_is_quiet(self) -> None:
        """A configuration of honoured properties (and inert values) logs nothing."""
        path = self.write(
            "IceGrid.InstanceName=DemoIceGrid\n"
            "IceGrid.Registry.Client.Endpoints=tcp -h 127.0.0.1 -p 4061\n"
            "IceGrid.Registry.Server.Endpoints=tcp -h 127.0.0.1\n"
            f"IceGrid.Registry.LMDB.Path={self.mktemp()}\n"
            "IceGrid.Registry.DynamicRegistration=1\n"
            "IceGrid.Registry.Trace.Replica=2\n"
            "IceGrid.Registry.Trace.Patch=0\n"
            "IceGrid.Registry.Discovery.Enabled=00\n"
            "Ice.MessageSizeMax=2048\n"
            "Ice.ToStringMode=Unicode\n"
            "IceGrid.Registry.Client.ACM.Timeout=30\n"
        )
        self.assertEqual(_warnings(["--config", path]), [])


class ClassificationTests(SynchronousTestCase):
    """Every known property is classified, and each class behaves as it says."""

    def test_every_known_property_is_classified(self) -> None:
        missing = [name for name in KNOWN_PROPERTIES if property_support(name) is None]
        missing += [p for p in KNOWN_PREFIXES if property_support(p + "Anything") is None]
        self.assertEqual(missing, [])

    def test_table_names_known_properties(self) -> None:
        """No entry is a typo: each names or prefixes at least one known property."""
        stray = [
            key
            for key in PROPERTY_SUPPORT
            if not (
                key in KNOWN_PROPERTIES
                or key.endswith("*")
                and any(name.startswith(key[:-1]) for name in KNOWN_PROPERTIES)
            )
        ]
        self.assertEqual(stray, [])

    def test_ignored_entries_say_what_happens_instead(self) -> None:
        silent = [
            key
            for key, entry in PROPERTY_SUPPORT.items()
            if not entry.honoured and not entry.instead
        ]
        self.assertEqual(silent, [])

    def test_one_of_each(self) -> None:
        self.assertIs(property_support("IceGrid.Registry.LMDB.Path").support, Support.HONOURED)
        self.assertIs(property_support("IceGrid.Node.Endpoints").support, Support.UNSUPPORTED)
        self.assertIs(property_support("IceGrid.AdminRouter.Endpoints").support, Support.PLANNED)
        self.assertIs(
            property_support("IceGrid.Registry.LMDB.MapSize").support, Support.UNSUPPORTED
        )
        # the longest prefix wins: an adapter's ACM is honoured, its thread pool is not
        self.assertIs(
            property_support("IceGrid.Registry.Client.ACM.Timeout").support, Support.HONOURED
        )
        self.assertIs(
            property_support("IceGrid.Registry.Client.ThreadPool.Size").support,
            Support.UNSUPPORTED,
        )


# -- every property marked honoured is read by something -------------------------

BASE = {
    "IceGrid.Registry.Client.Endpoints": "tcp -h 127.0.0.1 -p 4061",
    "IceGrid.Registry.Internal.Endpoints": "tcp -h 127.0.0.1 -p 4063",
    "Ice.Default.Locator": "IceGrid/Locator:tcp -h 127.0.0.1 -p 4061",
    "IceSSL.DefaultDir": "{certs}",
    "IceSSL.CAs": "ca.pem",
    "IceSSL.CertFile": "registry-Master.pem",
    "IceSSL.KeyFile": "registry-Master.key",
}
NO_TLS = {"IceSSL.CAs": "", "IceSSL.CertFile": "", "IceSSL.KeyFile": ""}
NODE = {"IceGrid.Node.Name": "node1", "IceGrid.Node.Data": "data"}

#: per honoured entry: properties to add to BASE first, then the property's sample value
#: discovery on, so its Address, Port, Interface and Endpoints matter
DISCOVERY = {"IceGrid.Registry.Discovery.Enabled": "1"}

SAMPLES: dict[str, tuple[Mapping[str, str], str]] = {
    "IceGrid.InstanceName": ({}, "OtherGrid"),
    "Ice.StdOut": ({}, "/var/log/gridreg.out"),
    "Ice.StdErr": ({}, "/var/log/gridreg.err"),
    "IceGrid.Registry.ReplicaName": ({}, "Replica1"),
    "IceGrid.Registry.Client.Endpoints": ({}, "tcp -h 127.0.0.1 -p 5061"),
    "IceGrid.Registry.Client.PublishedEndpoints": ({}, "tcp -h registry.example -p 4061"),
    "IceGrid.Registry.Server.Endpoints": ({}, "tcp -h 127.0.0.1 -p 5062"),
    "IceGrid.Registry.Server.PublishedEndpoints": ({}, "tcp -h registry.example -p 4062"),
    "IceGrid.Registry.Internal.Endpoints": ({}, "tcp -h 127.0.0.1 -p 5063"),
    "IceGrid.Registry.LMDB.Path": ({}, "db"),
    "IceGrid.Registry.Data": ({}, "db"),
    "IceGrid.Registry.DynamicRegistration": ({}, "1"),
    "IceGrid.Registry.ReplicaSessionTimeout": ({}, "10"),
    "IceGrid.Registry.Trace.Adapter": ({}, "1"),
    "IceGrid.Registry.Trace.Application": ({}, "1"),
    "IceGrid.Registry.Trace.Locator": ({}, "1"),
    "IceGrid.Registry.Trace.Object": ({}, "1"),
    "IceGrid.Registry.Trace.Replica": ({}, "1"),
    "IceGrid.Registry.Trace.Node": ({}, "1"),
    "IceGrid.Registry.Trace.Server": ({}, "1"),
    "IceGrid.Registry.NodeSessionTimeout": ({}, "10"),
    "IceGrid.Registry.SessionTimeout": ({}, "10"),
    "IceGrid.Registry.Trace.Session": ({}, "1"),
    "IceGrid.Registry.Trace.Topic": ({}, "1"),
    "IceGrid.Registry.PermissionsVerifier": ({}, "IceGrid/NullPermissionsVerifier"),
    "IceGrid.Registry.AdminPermissionsVerifier": ({}, "IceGrid/NullPermissionsVerifier"),
    "IceGrid.Registry.SSLPermissionsVerifier": ({}, "IceGrid/NullSSLPermissionsVerifier"),
    "IceGrid.Registry.AdminSSLPermissionsVerifier": ({}, "IceGrid/NullSSLPermissionsVerifier"),
    "IceGrid.Registry.CryptPasswords": ({}, "passwords"),
    "IceGrid.Registry.AdminCryptPasswords": ({}, "admin-passwords"),
    "Ice.Default.Locator": ({}, "IceGrid/Locator:tcp -h 127.0.0.1 -p 5061"),
    "Ice.Default.Protocol": (
        {"IceGrid.Registry.Client.Endpoints": "default -h 127.0.0.1 -p 4061"},
        "ssl",
    ),
    "Ice.Default.Timeout": ({}, "5000"),
    "Ice.MessageSizeMax": ({}, "4096"),
    "IceSSL.CAs": ({}, "copy-ca.pem"),
    "IceSSL.CertFile": ({}, "copy-cert.pem"),
    "IceSSL.KeyFile": ({}, "copy-cert.key"),
    "IceSSL.DefaultDir": ({}, "{copy}"),
    "GridReg.Internal.Insecure": (NO_TLS, "1"),
    "GridReg.Admin.Name": ({}, "operator"),
    "GridReg.Replication.MinAcks": ({}, "1"),
    "GridReg.Replication.EpochCheckInterval": ({}, "2"),
    "GridReg.Debug.ReactorProbe": ({}, "5"),
    "GridReg.Scheduler": ({}, "normal"),
    "GridReg.HugePages": ({}, "1"),
    "GridReg.HugePages.Collapse": ({}, "30"),
    "GridReg.EarlyClose": ({}, "0"),
    "GridReg.LeanReactor": ({}, "0"),
    "GridReg.Client.ReadPause": ({}, "100"),
    "IceGrid.Registry.Discovery.Enabled": ({}, "1"),
    "IceGrid.Registry.Discovery.Address": (DISCOVERY, "239.255.0.2"),
    "IceGrid.Registry.Discovery.Port": (DISCOVERY, "5555"),
    "IceGrid.Registry.Discovery.Interface": (DISCOVERY, "127.0.0.1"),
    "IceGrid.Registry.Discovery.Endpoints": (DISCOVERY, "udp -h 239.255.0.1 -p 5555"),
    "IceGrid.Registry.Trace.Discovery": ({}, "1"),
    "IceGrid.Registry.SessionManager.Endpoints": ({}, "tcp -h 127.0.0.1 -p 5064"),
    "IceGrid.Registry.AdminSessionManager.Endpoints": ({}, "tcp -h 127.0.0.1 -p 5065"),
    "IceGrid.Registry.SessionManager.PublishedEndpoints": (
        {"IceGrid.Registry.SessionManager.Endpoints": "tcp -h 127.0.0.1 -p 5064"},
        "tcp -h registry.example -p 5064",
    ),
    "IceGrid.Registry.AdminSessionManager.PublishedEndpoints": (
        {"IceGrid.Registry.AdminSessionManager.Endpoints": "tcp -h 127.0.0.1 -p 5065"},
        "tcp -h registry.example -p 5065",
    ),
    "IceGrid.Registry.SessionFilters": ({}, "1"),
    "IceGrid.Registry.AdminSessionFilters": ({}, "1"),
    "Ice.Default.LocatorCacheTimeout": ({}, "10"),
    "Ice.Default.Locator.InvocationTimeout": ({}, "2000"),
    # -- read by gridnode, harmless in a registry's file --
    "IceGrid.Node.Name": ({"IceGrid.Node.Data": "d"}, "node1"),
    "IceGrid.Node.Data": (NODE, "other"),
    "IceGrid.Node.Output": (NODE, "out"),
    "IceGrid.Node.RedirectErrToOut": (NODE, "1"),
    "IceGrid.Node.PrintServersReady": (NODE, "servers"),
    "IceGrid.Node.WaitTime": (NODE, "5"),
    "IceGrid.Node.DisableOnFailure": (NODE, "-1"),
    "IceGrid.Node.PropertiesOverride": (NODE, "Ice.Trace.Network=1"),
    "IceGrid.Node.AllowRunningServersAsRoot": (NODE, "1"),
    "IceGrid.Node.Trace.Server": (NODE, "1"),
    "IceGrid.Node.Trace.Adapter": (NODE, "1"),
    "IceGrid.Node.Trace.Activator": (NODE, "1"),
    "IceGrid.Node.Trace.Replica": (NODE, "1"),
    "IceGrid.Node.ProcessorSocketCount": (NODE, "4"),
    "GridReg.Node.LoadAverageFile": (NODE, "loadavg"),
}

#: honoured entries implemented by the ACM branch, with a sample value each
ACM_SAMPLES = {
    "Ice.ACM*": ("Ice.ACM.Server.Close", "0"),
    "IceGrid.Registry.Client.ACM*": ("IceGrid.Registry.Client.ACM.Timeout", "45"),
    "IceGrid.Registry.Server.ACM*": ("IceGrid.Registry.Server.ACM.Timeout", "45"),
}


def _security(properties: Properties) -> object:
    try:
        return InternalSecurity.from_properties(properties, needed=True).tls
    except PropertyError as exc:
        return str(exc)


def _client(properties: Properties) -> object:
    client = LocatorClient.from_properties(MemoryReactorClock(), properties)
    return (client.locator, client.cache_timeout, client.request_timeout)


def _node(properties: Properties) -> object:
    try:
        return NodeConfig.from_properties(properties)
    except PropertyError as exc:
        return str(exc)


#: what a registry, its internal TLS, gridreg.client, gridadmin and gridnode make of them
READERS: tuple[Callable[[Properties], object], ...] = (
    RegistryConfig.from_properties,
    _node,
    _security,
    _client,
    lambda properties: admin_name(properties, None),
    stdio_files,
)


class HonouredPropertiesAreReadTests(SynchronousTestCase):
    """
    Each property marked honoured changes what gridreg does: setting it to
    its sample value changes the registry's configuration, its TLS, the
    client's or gridadmin's settings.
    """

    def setUp(self) -> None:
        self.certs = os.path.abspath(self.mktemp())
        make_demo_certs(self.certs, replicas=["Master"])
        for name, copy in (
            ("ca.pem", "copy-ca.pem"),
            ("registry-Master.pem", "copy-cert.pem"),
            ("registry-Master.key", "copy-cert.key"),
        ):
            shutil.copy(os.path.join(self.certs, name), os.path.join(self.certs, copy))
        self.copy = os.path.abspath(self.mktemp())
        shutil.copytree(self.certs, self.copy)

    def effect(self, values: Mapping[str, str]) -> list[object]:
        properties = Properties()
        for key, value in values.items():
            properties.set(key, value.format(certs=self.certs, copy=self.copy))
        return [read(properties) for read in READERS]

    def assert_read(self, key: str, extra: Mapping[str, str], value: str) -> None:
        base = {**BASE, **extra}
        self.assertNotEqual(
            self.effect(base), self.effect({**base, key: value}), f"nothing reads {key}"
        )

    def test_every_honoured_entry_has_a_sample(self) -> None:
        honoured = {key for key, entry in PROPERTY_SUPPORT.items() if entry.honoured}
        self.assertEqual(honoured, set(SAMPLES) | set(ACM_SAMPLES))

    def test_honoured_properties_are_read(self) -> None:
        for key, (extra, value) in SAMPLES.items():
            self.assert_read(key, extra, value)

    def test_acm_properties_are_read(self) -> None:
        for key, value in ACM_SAMPLES.values():
            self.assert_read(key, {}, value)
