# -*- test-case-name: tests.test_registry_launch -*-
"""
Tests for L{gridreg.registry.launch}, the lean launcher (C{gridregistry},
C{python -m gridreg.registry}): it reads the C{gridregistry} plugin's very
options, serves a real Ice client, stops as C{twist} does, and its start-up
leaves out what only C{twist} imports.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gridreg.registry import launch, tap
from tests._processes import (
    LOOPBACK,
    REPO_ROOT,
    free_port,
    ice_missing,
    run_ice_client,
    start_gridregistry,
)

#: what C{twist} imports and the lean launcher must not (C{twisted.trial.itrial}
#: brings C{unittest}; C{twisted.application.app} brings C{pdb})
TWIST_ONLY = (
    "twisted.application.app",
    "twisted.application.twist",
    "twisted.application.reactors",
    "twisted.trial",
    "unittest",
    "pdb",
)

#: a fresh interpreter builds a registry as the launcher does, then lists its modules
BUILD_AND_LIST = """
import json, sys
from gridreg.registry import launch, tap
options = launch.Options()
options.parseOptions(sys.argv[1:])
tap.makeService(options)
print(json.dumps(sorted(sys.modules)))
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class OptionsTests(SynchronousTestCase):
    def test_every_plugin_option(self) -> None:
        """The launcher takes each option of the plugin, under the same name."""
        plugin, lean = tap.Options(), launch.Options()
        for name in ("replica-name", "initdb-from-replica", "readonly", "config", "property"):
            self.assertIn(name, plugin.synonyms)
            self.assertIn(name, lean.synonyms)

    def test_same_configuration(self) -> None:
        """The same command line gives the same registry configuration."""
        args = [
            "--property=IceGrid.InstanceName=Lean",
            "--property=IceGrid.Registry.Client.Endpoints=tcp -h 127.0.0.1 -p 4999",
            "--property=GridReg.Internal.Insecure=1",
            "--replica-name=Replica1",
            "--property=Ice.Default.Locator=Lean/Locator:tcp -h 127.0.0.1 -p 4061",
        ]
        plugin, lean = tap.Options(), launch.Options()
        plugin.parseOptions(args)
        lean.parseOptions(args + ["--log-level=debug", "--log-format=json"])
        self.assertEqual(lean.registry_config, plugin.registry_config)
        self.assertEqual(lean["log-level"], LogLevel.debug)

    def test_plugin_errors(self) -> None:
        """A configuration the plugin refuses, the launcher refuses with its message."""
        with self.assertRaises(usage.UsageError) as plugin:
            tap.Options().parseOptions(["--readonly", "--replica-name=Replica1"])
        with self.assertRaises(usage.UsageError) as lean:
            launch.Options().parseOptions(["--readonly", "--replica-name=Replica1"])
        self.assertEqual(str(lean.exception), str(plugin.exception))

    def test_bad_log_options(self) -> None:
        for bad in ("--log-level=loud", "--log-format=xml"):
            self.assertRaises(usage.UsageError, launch.Options().parseOptions, [bad])


class _Reactor:
    """Just what L{launch.start} asks of a reactor."""

    def __init__(self) -> None:
        self.when_running: list[tuple[Any, tuple[Any, ...]]] = []

    def callWhenRunning(self, f: Any, *args: Any) -> None:
        self.when_running.append((f, args))

    def run(self) -> None:
        for f, args in self.when_running:
            f(*args)


class _Recording(Service):
    """A replica's service that notes whether the collector was on as it was made and started."""

    def __init__(self, seen: list[bool]) -> None:
        self.seen = seen
        seen.append(gc.isenabled())

    def startService(self) -> None:
        super().startService()
        self.seen.append(gc.isenabled())


class CollectorTests(SynchronousTestCase):
    """
    The launcher keeps the garbage collector off its start-up, and gives it
    back as it was once the reactor runs, with what start-up made frozen.
    """

    def setUp(self) -> None:
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        self.addCleanup(gc.unfreeze)
        self.seen: list[bool] = []
        self.patch(tap, "makeService", lambda options: _Recording(self.seen))

    def test_off_until_the_reactor_runs(self) -> None:
        gc.enable()
        fake = _Reactor()
        service = launch.start(launch.Options(), fake)
        self.assertEqual(self.seen, [False, False])  # made and started without it
        self.assertTrue(service.running)
        self.assertFalse(gc.isenabled())
        frozen = gc.get_freeze_count()
        fake.run()
        self.assertTrue(gc.isenabled())
        self.assertGreater(gc.get_freeze_count(), frozen)

    def test_left_off_when_it_was_off(self) -> None:
        gc.disable()
        fake = _Reactor()
        launch.start(launch.Options(), fake, collecting=False)
        fake.run()
        self.assertFalse(gc.isenabled())

    def test_given_back_when_the_service_fails_to_start(self) -> None:
        gc.enable()

        def broken(options: Any) -> Any:
            raise SystemExit("gridregistry: cannot start")

        self.patch(tap, "makeService", broken)
        self.assertRaises(SystemExit, launch.start, launch.Options(), _Reactor())
        self.assertTrue(gc.isenabled())


class ImportLauncherTests(SynchronousTestCase):
    def test_imports_frozen_collector_as_it_was(self) -> None:
        """
        In a fresh interpreter, the program's imports leave the collector
        as it was (on, or off) and the modules' objects frozen out of its reach.
        """
        script = (
            "import gc, json, sys\n"
            "if sys.argv[1] == 'off': gc.disable()\n"
            "import gridreg.registry\n"
            "gridreg.registry.import_launcher()\n"
            "print(json.dumps([gc.isenabled(), gc.get_freeze_count(), "
            "'gridreg.registry.launch' in sys.modules]))\n"
        )
        for state, enabled in (("on", True), ("off", False)):
            listing = subprocess.run(
                [sys.executable, "-c", script, state],
                env=child_env(),
                capture_output=True,
                check=True,
                timeout=60,
            )
            collecting, frozen, imported = json.loads(listing.stdout)
            self.assertEqual(collecting, enabled)
            self.assertTrue(imported)
            self.assertGreater(frozen, 10_000)  # the modules' objects, functions and classes


#: what a replica imports only once it is used (an admin connects, a file
#: is read, a client session is verified...), never at start-up
AT_FIRST_USE = (
    "gridreg.registry.admin",
    "gridreg.registry.node_admin",
    "gridreg.store.digest",
    "gridreg.registry.descriptor_xml",
    "gridreg.registry.initdb",
    "gridreg.client.registration",
    "gridreg.client._registration_machine",
    "defusedxml",
    "OpenSSL",
    "cryptography",
)


#: what any replica imports only when configured for it or once it is asked for
#: it: the Glacier2 session managers, on-demand activation (at the Locator's
#: first adapter without endpoints)
WHEN_USED = (
    "gridreg.registry.glacier2_managers",
    "gridreg.registry.activation",
)

#: what a slave never imports before it holds an application or is asked for
#: one: the master's allocations, and the descriptor model (its attrs classes
#: were about 5 ms of a fresh slave's start-up)
SLAVE_WHEN_USED = (
    "gridreg.registry.allocation",
    "gridreg.registry.session_servers",
    "gridreg.registry.descriptors",
    "gridreg.registry.descriptor_model",
)


class StartupImportsTests(SynchronousTestCase):
    def modules(self, *args: str) -> set[str]:
        """The modules a fresh interpreter holds once it has built a replica from C{args}."""
        port = free_port()
        listing = subprocess.run(
            [
                sys.executable,
                "-c",
                BUILD_AND_LIST,
                f"--property=IceGrid.Registry.Client.Endpoints=tcp -h {LOOPBACK} -p {port}",
                *args,
            ],
            env=child_env(),
            capture_output=True,
            check=True,
            timeout=60,
        )
        modules = set(json.loads(listing.stdout))
        self.assertIn("gridreg.registry.service", modules)
        return modules

    def assertNotLoaded(self, modules: set[str], names: tuple[str, ...]) -> None:
        loaded = sorted(
            m for m in modules for name in names if m == name or m.startswith(name + ".")
        )
        self.assertEqual(loaded, [])

    def test_master_built_without_twist_or_unused_modules(self) -> None:
        """
        Building a master as the launcher does imports none of C{twist}'s
        own modules, nor what a master loads only at first use, nor the
        slave's role, so the start-up's diet cannot silently regress.
        """
        modules = self.modules()
        self.assertIn("gridreg.registry.master_role", modules)
        self.assertNotLoaded(
            modules,
            TWIST_ONLY + AT_FIRST_USE + WHEN_USED + ("gridreg.registry.slave", "gridreg.client"),
        )

    def test_slave_built_without_twist_or_unused_modules(self) -> None:
        """
        The same for a slave, which never loads the master's replication
        either, and of the client library only what finds its master.
        """
        modules = self.modules(
            "--replica-name=Replica1",
            "--property=GridReg.Internal.Insecure=1",
            f"--property=Ice.Default.Locator=DemoIceGrid/Locator:tcp -h {LOOPBACK} -p 9",
        )
        self.assertIn("gridreg.registry.slave_role", modules)
        self.assertNotLoaded(
            modules,
            TWIST_ONLY + AT_FIRST_USE + WHEN_USED + SLAVE_WHEN_USED + ("gridreg.registry.master",),
        )

    def test_glacier2_managers_imported_when_configured(self) -> None:
        """A replica with a session manager adapter has its managers built at start."""
        modules = self.modules(
            f"--property=IceGrid.Registry.SessionManager.Endpoints=tcp -h {LOOPBACK} -p "
            f"{free_port()}"
        )
        self.assertIn("gridreg.registry.glacier2_managers", modules)


class LeanProcessTests(TestCase):
    skip = ice_missing()
    timeout = 60

    async def test_serves_a_real_ice_client(self) -> None:
        """
        A registry started by C{python -m gridreg.registry}, its instance
        name given by C{--property} over the file's, answers a real Ice
        client through its Locator.
        """
        registry = await start_gridregistry(
            reactor,
            self.mktemp(),
            args=["--property", "IceGrid.InstanceName=LeanGrid"],
            launcher="lean",
        )
        self.addCleanup(registry.stop)
        [query] = await run_ice_client(
            reactor,
            f"LeanGrid/Locator:{registry.client_endpoint}",
            [["findObjectById", "LeanGrid/Query"]],
        )
        self.assertTrue(query["ok"], query)

    async def test_ends_by_the_signal_that_stopped_it(self) -> None:
        """SIGTERM stops the service and the process ends by SIGTERM, as with twist."""
        registry = await start_gridregistry(reactor, self.mktemp(), launcher="lean")
        process = await registry.stop()
        self.assertEqual(process.exit_signal, signal.SIGTERM)
        formats = [event.get("log_format") for event in process.events]
        self.assertIn("Main loop terminated.", formats)  # stopped, not killed

    async def test_usage_error(self) -> None:
        """A bad option: twist's usage exit status, the plugin's message."""
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "gridreg.registry", "--readonly", "--replica-name=Replica1"],
            env=child_env(),
            path=str(Path(self.mktemp()).parent),
        )
        self.assertEqual(code, 64)
        self.assertIn(b"--readonly applies to the master", err)
