# -*- test-case-name: tests.test_registry_tap -*-
"""
Tests for L{gridreg.registry.tap}, the C{gridregistry} twistd plugin: its
options (C{--config}, C{--property} in order, C{--replica-name}), the errors
that stop start-up, and C{makeService}, which builds a registry without
starting it. Also the configuration it derives
(L{gridreg.registry.config}, L{gridreg.registry.trace}).
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import TcpEndpoint
from gridreg.registry import tap
from gridreg.registry.config import RegistryConfig
from gridreg.registry.service import RegistryService
from gridreg.registry.trace import TraceLevels
from gridreg.store.memory import MemoryStore
from gridreg.store.sqlite import SQLiteStore

INSECURE = "GridReg.Internal.Insecure=1"
#: how the warning about a registry without a database directory ends
IN_MEMORY = "is not set: the registry keeps its database in memory and loses it when it stops"


class OptionsTests(SynchronousTestCase):
    def options(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(args))
        return options

    def config(self, *args: str) -> RegistryConfig:
        config = self.options(*args).registry_config
        assert config is not None
        return config

    def write(self, text: str) -> str:
        path = self.mktemp()
        Path(path).write_text(text, encoding="utf-8")
        return path

    def refused(self, *args: str) -> str:
        with self.assertRaises(usage.UsageError) as caught:
            self.options(*args)
        return str(caught.exception)

    def test_defaults(self) -> None:
        """No option at all: IceGrid's defaults, a master on 127.0.0.1:4061, in memory."""
        config = self.config()
        self.assertEqual(config.instance_name, "IceGrid")
        self.assertEqual(config.replica_name, "Master")
        self.assertTrue(config.is_master)
        self.assertEqual(config.client_endpoints, (TcpEndpoint("127.0.0.1", 4061),))
        self.assertIsNone(config.data_dir)
        self.assertEqual(config.trace, TraceLevels())

    def test_config_file(self) -> None:
        path = self.write(
            "# a registry\nIceGrid.InstanceName = Demo\n"
            "IceGrid.Registry.Client.Endpoints = tcp -h 127.0.0.1 -p 5061\n"
        )
        config = self.config("--config", path)
        self.assertEqual(config.instance_name, "Demo")
        self.assertEqual(config.client_endpoints, (TcpEndpoint("127.0.0.1", 5061),))
        properties = config.properties
        assert properties is not None
        self.assertEqual(properties.source("IceGrid.InstanceName"), f"{path}:2")

    def test_short_config(self) -> None:
        path = self.write("IceGrid.InstanceName = Short\n")
        self.assertEqual(self.config("-c", path).instance_name, "Short")

    def test_properties_override_the_file_in_order(self) -> None:
        """Each --property overrides the file and earlier ones; KEY= unsets."""
        path = self.write("IceGrid.InstanceName = FromFile\nIceGrid.Registry.Trace.Locator = 1\n")
        config = self.config(
            "--config",
            path,
            "--property",
            "IceGrid.InstanceName=First",
            "--property",
            "IceGrid.InstanceName=Second",
            "--property",
            "IceGrid.Registry.Trace.Locator=",
        )
        self.assertEqual(config.instance_name, "Second")
        self.assertEqual(config.trace.locator, 0)

    def test_replica_name_wins(self) -> None:
        """--replica-name overrides the file and --property, whatever the order."""
        path = self.write("IceGrid.Registry.ReplicaName = FromFile\n")
        config = self.config(
            "--replica-name",
            "Replica1",
            "--config",
            path,
            "--property",
            "IceGrid.Registry.ReplicaName=FromProperty",
            "--property",
            INSECURE,
        )
        self.assertEqual(config.replica_name, "Replica1")
        self.assertFalse(config.is_master)

    def test_trace_levels(self) -> None:
        config = self.config(
            "--property",
            "IceGrid.Registry.Trace.Locator=2",
            "--property",
            "IceGrid.Registry.Trace.Replica=1",
        )
        self.assertEqual(config.trace, TraceLevels(locator=2, replica=1))

    def test_unknown_property_is_a_warning(self) -> None:
        options = self.options("--property", "IceGrid.Bogus=1")
        self.assertEqual(
            options.warnings, ["unknown property: `IceGrid.Bogus' (set at command line)"]
        )

    def test_missing_file(self) -> None:
        path = os.path.join(self.mktemp(), "missing.cfg")
        self.assertEqual(
            self.refused("--config", path),
            f"{path}: cannot read configuration file: No such file or directory",
        )

    def test_bad_line(self) -> None:
        path = self.write("IceGrid.InstanceName = Demo\nbroken line\n")
        self.assertEqual(
            self.refused("--config", path),
            f"{path}:2: missing '=' in property line: 'broken line'",
        )

    def test_not_utf8(self) -> None:
        path = self.mktemp()
        Path(path).write_bytes(b"IceGrid.InstanceName = Demo\nIceGrid.Registry.Data = \xff\n")
        self.assertEqual(self.refused("--config", path), f"{path}:2: not valid UTF-8 (byte 0xff)")

    def test_bad_property_argument(self) -> None:
        self.assertEqual(
            self.refused("--property", "novalue"),
            "command line: invalid --property 'novalue': missing '=' in property line",
        )

    def test_bad_value(self) -> None:
        self.assertEqual(
            self.refused("--property", "Ice.MessageSizeMax=big"),
            "command line: invalid value for Ice.MessageSizeMax: 'big': not an integer",
        )

    def test_bad_value_in_file_names_the_line(self) -> None:
        path = self.write("\nIceGrid.Registry.Client.Endpoints = bogus -x\n")
        self.assertEqual(
            self.refused("--config", path),
            f"{path}:2: invalid value for IceGrid.Registry.Client.Endpoints: 'bogus -x': "
            "unknown transport 'bogus'",
        )

    def test_slave_needs_tls(self) -> None:
        """A slave reaches its master over internal sessions: mutual TLS, or an explicit opt-out."""
        self.assertIn(
            "internal endpoints need mutual TLS", self.refused("--replica-name", "Replica1")
        )

    def test_readonly_and_initdb_as_icegridregistry_spells_them(self) -> None:
        self.assertTrue(self.config("--readonly").readonly)
        self.assertFalse(self.config().readonly)
        for args in (["--initdb-from-replica", "Replica1"], ["--initdb-from-replica=Replica1"]):
            self.assertEqual(self.config(*args).initdb_from_replica, "Replica1")
        self.assertIsNone(self.config().initdb_from_replica)

    def test_readonly_is_for_the_master(self) -> None:
        message = self.refused(
            "--readonly",
            "--replica-name",
            "Replica1",
            "--property",
            "GridReg.Internal.Insecure=1",
        )
        self.assertEqual(
            message, "--readonly applies to the master: a slave refuses writes already"
        )

    def test_initdb_names_another_replica(self) -> None:
        self.assertEqual(
            self.refused("--initdb-from-replica", "Master"),
            "--initdb-from-replica names another replica, not `Master'",
        )

    def test_quorum_properties(self) -> None:
        config = self.config(
            "--property",
            "GridReg.Replication.MinAcks=2",
            "--property",
            "GridReg.Replication.EpochCheckInterval=3",
        )
        self.assertEqual((config.min_acks, config.epoch_check_interval), (2, 3.0))
        self.assertIn(
            "must be 0 or more", self.refused("--property", "GridReg.Replication.MinAcks=-1")
        )
        self.assertIn(
            "must be more than 0",
            self.refused("--property", "GridReg.Replication.EpochCheckInterval=0"),
        )


class MakeServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        #: the scheduling policies makeService applied to this process
        self.policies: list[str] = []

    def make(self, *args: str) -> RegistryService:
        options = tap.Options()
        options.parseOptions(list(args))
        service = tap.makeService(options, reactor=self.reactor, scheduler=self.schedule)
        self.assertIsInstance(service, RegistryService)
        assert isinstance(service, RegistryService)
        return service

    def schedule(self, policy: str) -> bool:
        self.policies.append(policy)
        return True

    def logged(self) -> list[str]:
        return [event["log_format"] for event in self.events]

    def test_applies_the_scheduling_policy(self) -> None:
        """GridReg.Scheduler reaches the process: SCHED_BATCH unless told normal."""
        self.make()
        self.make("--property", "GridReg.Scheduler=normal")
        self.assertEqual(self.policies, ["batch", "normal"])

    def test_builds_without_starting(self) -> None:
        """makeService wires a registry: nothing listens, connects or runs yet."""
        service = self.make("--property", "IceGrid.InstanceName=Demo")
        self.assertFalse(service.running)
        self.assertIs(service.reactor, self.reactor)
        self.assertEqual(service.config.instance_name, "Demo")
        self.assertIsInstance(service.store, MemoryStore)
        self.assertEqual(self.reactor.tcpServers, [])
        self.assertEqual(self.reactor.sslServers, [])
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(len([f for f in self.logged() if f.endswith(IN_MEMORY)]), 1)

    def test_data_dir_not_opened(self) -> None:
        """With IceGrid.Registry.Data the store is SQLite, opened only when the service starts."""
        data = Path(self.mktemp())
        data.mkdir()
        service = self.make("--property", f"IceGrid.Registry.Data={data}")
        self.assertIsInstance(service.store, SQLiteStore)
        self.assertEqual(os.listdir(data), [])
        self.assertEqual([f for f in self.logged() if f.endswith(IN_MEMORY)], [])

    def test_slave_without_locator_warned(self) -> None:
        self.make("--replica-name", "Replica1", "--property", INSECURE)
        self.assertIn(
            "Slave {replica} has no Ice.Default.Locator: it can only find the master "
            "through the endpoints stored in its database",
            self.logged(),
        )


class PluginTests(SynchronousTestCase):
    def test_discoverable(self) -> None:
        """twistd finds the plugin by its tapname, and it points at this module."""
        [maker] = [p for p in getPlugins(IServiceMaker) if p.tapname == "gridregistry"]
        self.assertEqual(maker.module, "gridreg.registry.tap")
        self.assertIs(maker.options, tap.Options)
        self.assertIs(maker.makeService, tap.makeService)
