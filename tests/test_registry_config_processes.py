# -*- test-case-name: tests.test_registry_config_processes -*-
"""
A real C{twist gridregistry} configured the IceGrid 3.7 way, with
C{IceGrid.Registry.LMDB.Path} naming its database directory, keeps what real
Ice servers registered across a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from gridreg.config.properties import IGNORED_WARNING
from tests._processes import (
    RunningRegistry,
    free_port,
    ice_missing,
    run_ice_client,
    start_gridregistry,
    start_ice_server,
)


def _log(registry: RunningRegistry) -> list[dict[str, Any]]:
    """
    The JSON log events of a registry that has ended: C{twist} writes them as
    RFC 7464 JSON text sequences, each line led by a record separator.
    """
    assert registry.process.ended is not None
    return [json.loads(line.lstrip("\x1e")) for line in registry.process.lines if line]


def _loaded(events: list[dict[str, Any]]) -> list[Any]:
    """How many adapters the registry loaded from its database at start-up."""
    return [
        e["adapters"]
        for e in events
        if str(e.get("log_format", "")).startswith("Registry replica {replica}")
    ]


class LmdbPathTests(TestCase):
    """IceGrid 3.7's name for the database directory keeps the data."""

    skip = ice_missing()
    timeout = 60

    async def test_restart_keeps_registrations(self) -> None:
        workdir = Path(self.mktemp()).resolve()
        database = workdir / "lmdb"
        config = {
            "IceGrid.Registry.Client.Endpoints": f"tcp -h 127.0.0.1 -p {free_port()}",
            "IceGrid.Registry.Server.Endpoints": f"tcp -h 127.0.0.1 -p {free_port()}",
            # an empty value unsets the older name the helper sets by default
            "IceGrid.Registry.Data": "",
            "IceGrid.Registry.LMDB.Path": str(database),
            "IceGrid.Registry.LMDB.MapSize": "10",
        }
        registry = await start_gridregistry(reactor, workdir, config)
        self.addCleanup(registry.stop)
        server = await start_ice_server(
            reactor, registry.locator, ("HelloAdapter", "Rep1@RepGroup"), name="kept"
        )
        self.addCleanup(server.stop)
        await registry.stop()
        events = _log(registry)
        self.assertEqual(_loaded(events), [0])
        warnings = [e["log_format"] for e in events if e["log_level"]["name"] == "warn"]
        self.assertEqual(warnings, [IGNORED_WARNING])
        self.assertEqual(
            [e.get("property") for e in events if "property" in e],
            ["IceGrid.Registry.LMDB.MapSize"],
        )
        self.assertNotEqual(list(database.iterdir()), [])
        self.assertEqual(list((workdir / "db").iterdir()), [])

        restarted = await start_gridregistry(reactor, workdir, config)
        self.addCleanup(restarted.stop)
        adapter, group = await run_ice_client(
            reactor,
            restarted.locator,
            [["resolve", "hello@HelloAdapter"], ["resolve", "hello@RepGroup"]],
        )
        self.assertTrue(adapter["ok"], adapter)
        self.assertEqual(adapter["result"], "kept")
        self.assertTrue(group["ok"], group)
        self.assertEqual(group["result"], "kept")
        await restarted.stop()
        self.assertEqual(_loaded(_log(restarted)), [2])
