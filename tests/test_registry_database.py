# -*- test-case-name: tests.test_registry_database -*-
"""
The registry's write path (L{gridreg.registry.database}): one write at a
time, refused when the role says so (also after waiting), bounded in size,
committed before it is visible, acknowledged once replicated, and the
adapter and object rules Ice servers and the admin rely on.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.exceptions import (
    AdapterNotFoundException,
    DeploymentException,
    InvalidReplicaGroupIdException,
    ObjectExistsException,
    ObjectNotRegisteredException,
)
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.protocol.errors import NotMasterError, RegistryUserError
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.descriptors import DescriptorError
from gridreg.registry.state import RegistryState
from gridreg.registry.trace import TraceLevels
from gridreg.store.memory import MemoryStore
from gridreg.store.records import Change, Mutation
from tests.test_applications import demo_xml


def direct(port: int) -> Proxy:
    return Proxy(Identity("dummy"), endpoints=(TcpEndpoint("127.0.0.1", port),))


class DatabaseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.successResultOf(self.store.open())
        self.state = RegistryState()
        self.events: list[dict[str, Any]] = []
        self.patch(RegistryDatabase, "log", Logger(observer=self.events.append))
        self.database = self.make(dynamic=True)

    def make(self, dynamic: bool, trace: int = 0) -> RegistryDatabase:
        return RegistryDatabase(
            self.store,
            self.state,
            dynamic,
            TraceLevels(adapter=trace, object=trace, application=trace),
        )

    def messages(self) -> str:
        return "\n".join(formatEvent(e) for e in self.events)


class WritePathTests(DatabaseTests):
    def test_a_write_is_committed_then_visible_then_replicated(self) -> None:
        replicated: list[Change] = []
        acknowledged: Deferred[None] = Deferred()

        def replicate(changes: list[Change]) -> Deferred[None]:
            replicated.extend(changes)
            self.assertIn(Identity("hello"), self.state.objects, "visible when replicated")
            return acknowledged

        self.database.replicate = replicate
        d = self.database.add_object(proxy_from_string("hello@A"), "::Demo::Hello")
        self.assertNoResult(d)
        self.assertEqual(self.store.serial, 1)
        (change,) = replicated
        self.assertEqual(change.serial, 1)
        acknowledged.callback(None)
        self.assertIs(self.successResultOf(d), change)

    def test_the_next_write_does_not_wait_for_acknowledgements(self) -> None:
        pending: list[Deferred[None]] = []
        self.database.replicate = lambda change: pending.append(Deferred()) or pending[-1]
        first = self.database.add_object(proxy_from_string("a@A"))
        second = self.database.add_object(proxy_from_string("b@A"))
        self.assertEqual(self.store.serial, 2)
        self.assertNoResult(first)
        pending[1].callback(None)
        self.assertEqual(self.successResultOf(second).serial, 2)

    def test_a_refused_write_changes_nothing(self) -> None:
        self.database.refusal = lambda: "read-only slave; the master is at 4061"
        failure = self.failureResultOf(
            self.database.add_object(proxy_from_string("a@A")), NotMasterError
        )
        self.assertEqual(failure.getErrorMessage(), "read-only slave; the master is at 4061")
        self.assertEqual(self.store.serial, 0)

    def test_a_write_queued_behind_a_fencing_is_refused(self) -> None:
        """The role is asked again once the write holds the lock."""
        gate: Deferred[None] = Deferred()
        self.database.exclusively(lambda: gate)
        refusal: list[Optional[str]] = [None]
        self.database.refusal = lambda: refusal[0]
        d = self.database.add_object(proxy_from_string("a@A"))
        self.assertNoResult(d)
        refusal[0] = "fenced"
        gate.callback(None)
        self.failureResultOf(d, NotMasterError)
        self.assertEqual(self.store.serial, 0)
        self.assertNotIn(Identity("a"), self.state.objects)

    def test_writes_wait_for_an_exclusive_job_and_drain_waits_for_writes(self) -> None:
        gate: Deferred[None] = Deferred()
        self.database.exclusively(lambda: gate)
        d = self.database.add_object(proxy_from_string("a@A"))
        drained = self.database.drain()
        self.assertEqual(self.store.serial, 0)
        self.assertNoResult(drained)
        gate.callback(None)
        self.successResultOf(d)
        self.successResultOf(drained)
        self.assertEqual(self.store.serial, 1)

    def test_a_write_that_changes_nothing_commits_nothing(self) -> None:
        replicated: list[Change] = []
        self.database.replicate = lambda change: replicated.append(change) or succeed(None)
        self.assertIsNone(self.successResultOf(self.database.commit([])))
        self.assertIsNone(
            self.successResultOf(self.database.set_adapter_direct_proxy("A", "", None))
        )
        self.assertEqual((self.store.serial, replicated), (0, []))

    def test_the_size_bound_of_a_change(self) -> None:
        mutation = Mutation("meta", "big", {"pad": "x" * 100})
        from gridreg.store.records import encode_value

        size = len(encode_value(mutation))
        self.database.max_change_bytes = size
        self.successResultOf(self.database.commit([mutation]))
        self.database.max_change_bytes = size - 1
        failure = self.failureResultOf(self.database.commit([mutation]), RegistryUserError)
        self.assertEqual(
            failure.getErrorMessage(),
            f"the change is {size} bytes; a replicated change may have at most {size - 1}",
        )
        self.assertEqual(self.store.serial, 1)
        # a deletion carries no value: it is never too large
        self.database.max_change_bytes = 0
        self.successResultOf(self.database.commit([Mutation("meta", "big", None)]))

    def test_a_failed_write_does_not_block_the_next(self) -> None:
        self.failureResultOf(
            self.database.update_object(proxy_from_string("missing@A")),
            ObjectNotRegisteredException,
        )
        self.successResultOf(self.database.add_object(proxy_from_string("a@A")))


class AdapterTests(DatabaseTests):
    def test_register_and_unregister(self) -> None:
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "", direct(1)))
        self.assertEqual(self.state.adapters["A"].proxy, direct(1))
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "", None))
        self.assertNotIn("A", self.state.adapters)
        self.assertEqual(self.store.serial, 2)

    def test_a_repeated_registration_commits_nothing(self) -> None:
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "G", direct(1)))
        self.assertIsNone(
            self.successResultOf(self.database.set_adapter_direct_proxy("A", "G", direct(1)))
        )
        self.assertEqual(self.store.serial, 1)
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "G", direct(2)))
        self.assertEqual(self.store.serial, 2)

    def test_unknown_adapters_need_dynamic_registration(self) -> None:
        self.database = self.make(dynamic=False, trace=1)
        self.failureResultOf(
            self.database.set_adapter_direct_proxy("A", "", direct(1)), AdapterNotFoundException
        )
        self.assertIn("adapter `A' refused (dynamic registration disabled)", self.messages())
        self.assertEqual(self.store.serial, 0)

    def test_replica_group_ids_must_not_name_adapters(self) -> None:
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "", direct(1)))
        self.failureResultOf(
            self.database.set_adapter_direct_proxy("B", "A", direct(2)),
            InvalidReplicaGroupIdException,
        )
        self.successResultOf(self.database.set_adapter_direct_proxy("B", "G", direct(2)))
        self.failureResultOf(
            self.database.set_adapter_direct_proxy("G", "", direct(3)),
            InvalidReplicaGroupIdException,
        )

    def test_deployed_adapters_keep_their_replica_group(self) -> None:
        self.database = self.make(dynamic=False)
        self.successResultOf(self.database.add_application(demo_xml()))
        deployed = {a: info.replica_group_id for a, info in self.state.deployed.adapters.items()}
        grouped = next(a for a, g in deployed.items() if g)
        group = deployed[grouped]
        self.successResultOf(self.database.set_adapter_direct_proxy(grouped, "", direct(1)))
        self.assertEqual(self.state.adapters[grouped].replica_group_id, group)
        self.failureResultOf(
            self.database.set_adapter_direct_proxy(grouped, "Other", direct(1)),
            InvalidReplicaGroupIdException,
        )
        self.successResultOf(self.database.set_adapter_direct_proxy(grouped, group, direct(2)))

    def test_remove_adapter(self) -> None:
        self.failureResultOf(self.database.remove_adapter("A"), AdapterNotFoundException)
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "", direct(1)))
        self.successResultOf(self.database.remove_adapter("A"))
        self.assertNotIn("A", self.state.adapters)

    def test_adapter_changes_are_traced(self) -> None:
        self.database = self.make(dynamic=True, trace=1)
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "G", direct(1)))
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "G", None))
        self.successResultOf(self.database.set_adapter_direct_proxy("B", "", direct(1)))
        self.successResultOf(self.database.remove_adapter("B"))
        text = self.messages()
        self.assertIn("[Adapter] adapter `A' registered (replica group `G')", text)
        self.assertIn("[Adapter] adapter `A' unregistered (replica group `G')", text)
        self.assertIn("[Adapter] adapter `B' registered\n", text + "\n")
        self.assertIn("[Adapter] adapter `B' removed", text)

    def test_nothing_traced_at_level_zero(self) -> None:
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "", direct(1)))
        self.successResultOf(self.database.add_object(proxy_from_string("a@A")))
        self.successResultOf(self.database.add_application(demo_xml()))
        self.assertEqual(self.events, [])

    def test_a_slave_forwards_registrations(self) -> None:
        forwarded: list[tuple[str, str, Optional[Proxy]]] = []
        self.database.forward = lambda *args: forwarded.append(args) or succeed(None)
        self.successResultOf(self.database.set_adapter_direct_proxy("A", "G", direct(1)))
        self.assertEqual(forwarded, [("A", "G", direct(1))])
        self.assertEqual(self.store.serial, 0)


class ObjectTests(DatabaseTests):
    def test_add_update_remove(self) -> None:
        self.database = self.make(dynamic=True, trace=1)
        self.successResultOf(self.database.add_object(proxy_from_string("a@A"), "::T"))
        self.failureResultOf(
            self.database.add_object(proxy_from_string("a@B")), ObjectExistsException
        )
        self.failureResultOf(
            self.database.update_object(proxy_from_string("b@B")), ObjectNotRegisteredException
        )
        self.successResultOf(self.database.update_object(proxy_from_string("a@B")))
        info = self.state.objects[Identity("a")]
        self.assertEqual((info.proxy.adapter_id, info.type), ("B", "::T"))
        self.successResultOf(self.database.remove_object(Identity("a")))
        self.failureResultOf(
            self.database.remove_object(Identity("a")), ObjectNotRegisteredException
        )
        text = self.messages()
        for what in ("added", "updated", "removed"):
            self.assertIn(f"[Object] object `/a' {what}", text)

    def test_an_object_needs_a_name(self) -> None:
        self.failureResultOf(
            self.database.add_object(Proxy(Identity("", "cat"))), DeploymentException
        )
        self.assertEqual(self.store.serial, 0)

    def test_deployed_objects_belong_to_their_application(self) -> None:
        self.database = self.make(dynamic=True, trace=1)
        self.successResultOf(self.database.add_application(demo_xml()))
        self.assertIn("[Application] application `", self.messages())
        (name,) = self.state.deployed.derived
        identity = next(iter(self.state.deployed.derived[name].objects))
        failure = self.failureResultOf(self.database.remove_object(identity), DeploymentException)
        self.assertIn(f"is deployed by application `{name}'", str(failure.value))
        self.assertIsNotNone(self.state.find_object(identity))


OTHER_APP = """<icegrid>
  <application name="OtherApp">
    <replica-group id="OtherGroup">
      <object identity="other" type="::Demo::Hello"/>
    </replica-group>
  </application>
</icegrid>
"""


class ApplicationTests(DatabaseTests):
    def test_an_update_is_traced_as_such(self) -> None:
        self.database = self.make(dynamic=True, trace=1)
        self.successResultOf(self.database.add_application(demo_xml()))
        self.successResultOf(self.database.add_application(demo_xml(), update=True))
        traced = [line for line in self.messages().splitlines() if "[Application]" in line]
        self.assertEqual(
            traced,
            [
                "[Application] application `DemoApp' added",
                "[Application] application `DemoApp' updated",
            ],
        )

    def test_an_update_may_not_take_another_application_s_object(self) -> None:
        self.successResultOf(self.database.add_application(demo_xml()))
        self.successResultOf(self.database.add_application(OTHER_APP))
        taking = demo_xml().replace(
            '<object identity="hello" type="::Demo::Hello"/>',
            '<object identity="hello" type="::Demo::Hello"/>\n'
            '      <object identity="other" type="::Demo::Hello"/>',
        )
        self.assertIn('identity="other"', taking)
        serial = self.store.serial
        self.failureResultOf(self.database.add_application(taking, update=True), DescriptorError)
        self.assertEqual(self.store.serial, serial)

    def test_an_application_may_not_take_an_object_the_admin_added(self) -> None:
        self.successResultOf(self.database.add_object(proxy_from_string("other@A")))
        failure = self.failureResultOf(self.database.add_application(OTHER_APP), DescriptorError)
        self.assertIn("object `/other' was added by the admin", str(failure.value))
        self.assertNotIn("OtherApp", self.state.deployed.derived)

    def test_the_default_bound_on_a_change_is_64_mib(self) -> None:
        self.assertEqual(self.database.max_change_bytes, 64 * 1024 * 1024)
