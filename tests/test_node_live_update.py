"""
Properties changed without restart (L{gridreg.node.live_update}): a running
server gets them through its admin object's C{Properties} facet and keeps
running, as IceGrid 3.7.8's node does; anything else falls back to a stop.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.encoding import InputStream
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Proxy
from gridreg.node import live_update
from gridreg.node.servers import ServerManager
from gridreg.registry.descriptor_model import ServerDescriptor
from tests._node_fakes import FakeProc, FakeSpawner, fake_host, node_config

SERVER = ServerDescriptor(
    id="S1", exe="srv", activation="manual", properties=(("A", "1"), ("B", "2"))
)
ADMIN = proxy_from_string("S1-admin:tcp -h 127.0.0.1 -p 6000")


class PropertyChangeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.config = node_config(self.mktemp())

    def test_changed_added_and_removed(self) -> None:
        new = attrs.evolve(SERVER, properties=(("A", "9"), ("C", "3")))
        self.assertEqual(
            live_update.property_changes(SERVER, new, self.config),
            {"A": "9", "C": "3", "B": ""},
        )

    def test_only_properties(self) -> None:
        self.assertTrue(
            live_update.properties_only_changed(
                SERVER, attrs.evolve(SERVER, properties=(("A", "9"),))
            )
        )
        self.assertFalse(live_update.properties_only_changed(SERVER, SERVER))
        self.assertFalse(
            live_update.properties_only_changed(
                SERVER, attrs.evolve(SERVER, options=("--x",), properties=(("A", "9"),))
            )
        )

    def test_property_dict_encoding(self) -> None:
        inp = InputStream(live_update.encode_property_dict({"b": "", "a": "1"}))
        self.assertEqual(inp.read_size(), 2)
        self.assertEqual(
            [(inp.read_string(), inp.read_string()) for _ in range(2)], [("a", "1"), ("b", "")]
        )


class ManagerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.spawner = FakeSpawner()
        self.calls: list[tuple[Optional[Proxy], dict[str, str]]] = []
        self.answer: Deferred[None] = succeed(None)
        self.manager = ServerManager(
            None,
            node_config(self.mktemp()),
            lambda s, a: None,
            self.spawner,
            Clock(),
            host=fake_host(1000),
            proc=FakeProc().reader(),
            process_shutdown=lambda p, t: succeed(None),
            set_properties=self._set_properties,
        )
        self.successResultOf(self.manager.deploy([("App", SERVER)]))
        self.successResultOf(self.manager.activate("S1"))
        self.manager.process_registered("S1", ADMIN)
        self.pid = self.manager.server_info("S1")["pid"]

    def _set_properties(self, admin: Optional[Proxy], changes: dict[str, str]) -> Any:
        self.calls.append((admin, changes))
        return self.answer

    def test_running_server_takes_its_properties(self) -> None:
        new = attrs.evolve(SERVER, properties=(("A", "9"), ("B", "2")))
        self.successResultOf(self.manager.deploy([("App", new)], frozenset({"S1"})))
        self.assertEqual(self.calls, [(ADMIN, {"A": "9"})])
        info = self.manager.server_info("S1")
        self.assertEqual((info["state"], info["pid"]), ("active", self.pid))
        self.assertEqual(self.manager.effective_descriptor("S1").properties, new.properties)
        self.assertEqual(len(self.spawner.processes), 1)

    def test_with_restart_the_server_stops(self) -> None:
        """Not written without restart: stopped as any changed server (IceGrid's node)."""
        new = attrs.evolve(SERVER, properties=(("A", "9"),))
        self.successResultOf(self.manager.deploy([("App", new)]))
        self.assertEqual(self.calls, [])
        self.spawner.last.exit(0)
        self.assertEqual(self.manager.server_info("S1")["state"], "inactive")

    def test_more_than_properties_stops(self) -> None:
        new = attrs.evolve(SERVER, options=("--y",), properties=(("A", "9"),))
        self.successResultOf(self.manager.deploy([("App", new)], frozenset({"S1"})))
        self.assertEqual(self.calls, [])
        self.spawner.last.exit(0)
        self.assertEqual(self.manager.server_info("S1")["state"], "inactive")

    def test_a_refusing_server_keeps_running(self) -> None:
        self.answer = fail(ConnectionRefusedError("refused"))
        new = attrs.evolve(SERVER, properties=(("A", "9"),))
        self.successResultOf(self.manager.deploy([("App", new)], frozenset({"S1"})))
        # the failure is logged as a warning; the server runs on, as it was
        self.assertEqual(len(self.calls), 1)
        self.assertEqual(self.manager.server_info("S1")["state"], "active")
        self.assertEqual(len(self.spawner.processes), 1)
