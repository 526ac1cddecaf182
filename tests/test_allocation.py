"""
Tests for L{gridreg.registry.allocation}: sessions allocating objects and
servers, as IceGrid 3.7.8 was observed to (see the module's docstring).
"""

from __future__ import annotations

import random

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.exceptions import ObjectNotRegisteredException
from gridreg.ice.types import Identity, Proxy
from gridreg.registry.allocation import (
    AllocationException,
    AllocationManager,
    AllocationTimeoutException,
)
from gridreg.registry.applications import APPLICATION
from gridreg.registry.descriptors import application_to_json, parse_application
from gridreg.registry.state import RegistryState
from gridreg.store.records import Mutation

APP = """<icegrid><application name="Alloc">
  <node name="n1">
    <server id="S1" exe="s1">
      <adapter name="A">
        <allocatable identity="obj1" type="::T"/>
        <allocatable identity="obj2" type="::T"/>
        <object identity="wk1" type="::W"/>
      </adapter>
    </server>
    <server id="S2" exe="s2" allocatable="true" activation="session">
      <adapter name="B">
        <allocatable identity="sobj1" type="::S"/>
        <allocatable identity="sobj2" type="::S"/>
      </adapter>
    </server>
  </node>
</application></icegrid>"""

OBJ1, OBJ2, SOBJ1, SOBJ2, WK1 = (Identity(n, "") for n in ("obj1", "obj2", "sobj1", "sobj2", "wk1"))


def deploy(state: RegistryState, xml: str) -> None:
    app = parse_application(xml)
    state.apply([Mutation(APPLICATION, app.name, application_to_json(app))])


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.state = RegistryState()
        deploy(self.state, APP)
        self.manager = AllocationManager(self.state, self.clock, random.Random(4))
        self.allocated: list[tuple[str, str]] = []
        self.released: list[str] = []
        self.manager.on_server_allocated(lambda s, k: self.allocated.append((s, k)))
        self.manager.on_server_released(self.released.append)

    def granted(self, d: Deferred[Proxy]) -> Proxy:
        return self.successResultOf(d)

    def refused(self, d: Deferred[Proxy], exc: type[Exception]) -> Exception:
        return self.failureResultOf(d, exc).value


class ByIdTests(_Base):
    def test_free_object(self) -> None:
        """A free object is granted at once as its indirect proxy C{identity@adapter}."""
        proxy = self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.assertEqual((proxy.identity, proxy.adapter_id), (OBJ1, "S1.A"))
        self.assertEqual(self.manager.holder_of(OBJ1), "s1")

    def test_unknown_and_well_known(self) -> None:
        """Only allocatable objects can be allocated; well-known ones are "not registered"."""
        for identity in (Identity("nosuch", ""), WK1):
            e = self.refused(
                self.manager.allocate_by_id("s1", identity, -1), ObjectNotRegisteredException
            )
            self.assertEqual(e, ObjectNotRegisteredException(identity))

    def test_again_by_the_same_session(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        e = self.refused(self.manager.allocate_by_id("s1", OBJ1, -1), AllocationException)
        self.assertEqual(e, AllocationException("already allocated by the session"))

    def test_timeout(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        d = self.manager.allocate_by_id("s2", OBJ1, 0.3)
        self.assertNoResult(d)
        self.clock.advance(0.29)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        e = self.refused(d, AllocationTimeoutException)
        self.assertEqual(e.reason, "")  # type: ignore[attr-defined]
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_zero_timeout_fails_at_once(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.refused(self.manager.allocate_by_id("s2", OBJ1, 0), AllocationTimeoutException)

    def test_timeout_is_an_allocation_exception(self) -> None:
        self.assertIsInstance(AllocationTimeoutException(), AllocationException)
        self.assertEqual(
            AllocationTimeoutException.type_id, "::IceGrid::AllocationTimeoutException"
        )
        self.assertEqual(
            [t for t, _ in AllocationTimeoutException().slices()],
            ["::IceGrid::AllocationTimeoutException", "::IceGrid::AllocationException"],
        )

    def test_wait_for_ever(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        d = self.manager.allocate_by_id("s2", OBJ1, -1)
        self.clock.advance(10**6)
        self.assertNoResult(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.manager.release("s1", OBJ1)
        self.assertEqual(self.granted(d).identity, OBJ1)
        self.assertEqual(self.manager.holder_of(OBJ1), "s2")

    def test_fifo(self) -> None:
        """Waiters are granted in the order they asked, whatever their timeouts."""
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        d2 = self.manager.allocate_by_id("s2", OBJ1, 50)
        d3 = self.manager.allocate_by_id("s3", OBJ1, -1)
        d4 = self.manager.allocate_by_id("s4", OBJ1, 5)
        self.manager.release("s1", OBJ1)
        self.granted(d2)
        self.assertNoResult(d3)
        self.manager.release_all("s2")
        self.granted(d3)
        self.assertNoResult(d4)
        self.clock.advance(5)
        self.refused(d4, AllocationTimeoutException)

    def test_cancel(self) -> None:
        """A cancelled request (the client went away) is never granted."""
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        d2 = self.manager.allocate_by_id("s2", OBJ1, 10)
        d3 = self.manager.allocate_by_id("s3", OBJ1, 10)
        d2.cancel()
        self.refused(d2, CancelledError)
        self.manager.release("s1", OBJ1)
        self.granted(d3)
        self.assertEqual(self.manager.holder_of(OBJ1), "s3")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_callback_releasing_at_once(self) -> None:
        """A grant's callback may release again: the next waiter gets it."""
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        d2 = self.manager.allocate_by_id("s2", OBJ1, -1)
        d2.addCallback(lambda p: self.manager.release("s2", p.identity))
        d3 = self.manager.allocate_by_id("s3", OBJ1, -1)
        self.manager.release("s1", OBJ1)
        self.successResultOf(d2)
        self.granted(d3)


class ByTypeTests(_Base):
    def test_free_of_type(self) -> None:
        got = {
            self.granted(self.manager.allocate_by_type("s1", "::T", -1)).identity for _ in range(2)
        }
        self.assertEqual(got, {OBJ1, OBJ2})

    def test_unknown_type(self) -> None:
        """Well-known objects of a type do not count."""
        for type_id in ("::No", "::W"):
            e = self.refused(self.manager.allocate_by_type("s1", type_id, -1), AllocationException)
            self.assertEqual(
                e, AllocationException(f"no allocatable objects with type `{type_id}' registered")
            )

    def test_waits_even_when_the_caller_holds_them_all(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.granted(self.manager.allocate_by_id("s1", OBJ2, -1))
        d = self.manager.allocate_by_type("s1", "::T", 1)
        self.clock.advance(1)
        self.refused(d, AllocationTimeoutException)

    def test_first_released_goes_to_the_oldest_waiter(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.granted(self.manager.allocate_by_id("s1", OBJ2, -1))
        by_type = self.manager.allocate_by_type("s2", "::T", -1)
        by_id = self.manager.allocate_by_id("s3", OBJ2, -1)
        self.manager.release("s1", OBJ2)
        self.assertEqual(self.granted(by_type).identity, OBJ2)
        self.assertNoResult(by_id)
        self.manager.release("s1", OBJ1)
        self.assertNoResult(by_id)  # a by-id waiter wants its own object
        self.manager.release("s2", OBJ2)
        self.granted(by_id)


class ReleaseTests(_Base):
    def test_unknown_or_well_known(self) -> None:
        for identity in (Identity("nosuch", ""), WK1):
            e = self.assertRaises(
                ObjectNotRegisteredException, self.manager.release, "s1", identity
            )
            self.assertEqual(e.id, identity)

    def test_not_the_holder(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        for identity in (OBJ1, OBJ2):  # held by another session, held by none
            e = self.assertRaises(AllocationException, self.manager.release, "s2", identity)
            self.assertEqual(e.reason, "can't release object which is not allocated")
        self.assertEqual(self.manager.holder_of(OBJ1), "s1")

    def test_twice(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.manager.release("s1", OBJ1)
        self.assertRaises(AllocationException, self.manager.release, "s1", OBJ1)


class SessionEndTests(_Base):
    def test_releases_and_grants(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.granted(self.manager.allocate_by_id("s1", SOBJ1, -1))
        d1 = self.manager.allocate_by_id("s2", OBJ1, -1)
        d2 = self.manager.allocate_by_type("s2", "::S", -1)
        self.manager.release_all("s1")
        self.granted(d1)
        self.granted(d2)
        self.assertEqual(self.manager.allocated_by("s1"), frozenset())
        self.assertEqual(len(self.manager.allocated_by("s2")), 2)

    def test_pending_requests_fail(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        d = self.manager.allocate_by_id("s2", OBJ1, 30)
        other = self.manager.allocate_by_id("s3", OBJ1, 30)
        self.manager.release_all("s2")
        self.assertEqual(
            self.refused(d, AllocationException), AllocationException("session destroyed")
        )
        self.assertNoResult(other)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_unknown_session(self) -> None:
        self.manager.release_all("nobody")

    def test_close(self) -> None:
        """The master steps down: every waiter fails, nothing is held."""
        self.granted(self.manager.allocate_by_id("s1", SOBJ1, -1))
        d = self.manager.allocate_by_id("s2", SOBJ1, 30)
        self.manager.close()
        self.refused(d, AllocationException)
        self.assertIsNone(self.manager.holder_of(SOBJ1))
        self.assertEqual(self.released, ["S2"])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AllocatableServerTests(_Base):
    def test_exclusive(self) -> None:
        """The holder of one object of an allocatable server holds the server."""
        self.granted(self.manager.allocate_by_id("s1", SOBJ1, -1))
        self.assertEqual(self.manager.server_holder("S2"), "s1")
        self.assertEqual(self.allocated, [("S2", "s1")])
        self.refused(self.manager.allocate_by_id("s2", SOBJ2, 0), AllocationTimeoutException)
        self.refused(self.manager.allocate_by_type("s2", "::S", 0), AllocationTimeoutException)
        self.granted(self.manager.allocate_by_id("s1", SOBJ2, 0))
        self.assertEqual(self.allocated, [("S2", "s1")])

    def test_released_with_its_last_object(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", SOBJ1, -1))
        self.granted(self.manager.allocate_by_id("s1", SOBJ2, -1))
        d = self.manager.allocate_by_id("s2", SOBJ1, -1)
        self.manager.release("s1", SOBJ1)
        self.assertNoResult(d)  # s1 still holds sobj2, hence S2
        self.assertEqual(self.released, [])
        self.manager.release("s1", SOBJ2)
        self.granted(d)
        self.assertEqual(self.released, ["S2"])
        self.assertEqual(self.allocated, [("S2", "s1"), ("S2", "s2")])
        self.assertEqual(self.manager.server_holder("S2"), "s2")

    def test_plain_server_objects_are_independent(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.granted(self.manager.allocate_by_id("s2", OBJ2, -1))
        self.assertEqual(self.allocated, [])

    def test_failing_hook(self) -> None:
        def broken(server_id: str, session: str) -> None:
            raise RuntimeError("node unreachable")

        self.manager.on_server_allocated(broken)
        self.granted(self.manager.allocate_by_id("s1", SOBJ1, -1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.manager.server_holder("S2"), "s1")


class ApplicationChangeTests(_Base):
    def test_removed_object(self) -> None:
        """
        The holder loses a removed object and its release says "not
        registered"; a by-id waiter is told the same.
        """
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.granted(self.manager.allocate_by_id("s1", SOBJ1, -1))
        d = self.manager.allocate_by_id("s2", OBJ1, 30)
        deploy(
            self.state,
            APP.replace('<allocatable identity="obj1" type="::T"/>', "").replace(
                '<allocatable identity="sobj1" type="::S"/>', ""
            ),
        )
        self.assertEqual(
            self.refused(d, ObjectNotRegisteredException), ObjectNotRegisteredException(OBJ1)
        )
        self.assertRaises(ObjectNotRegisteredException, self.manager.release, "s1", OBJ1)
        self.assertEqual(self.manager.allocated_by("s1"), frozenset())
        self.assertEqual(self.released, ["S2"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_type_gone(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.granted(self.manager.allocate_by_id("s1", OBJ2, -1))
        d = self.manager.allocate_by_type("s2", "::T", -1)
        deploy(self.state, APP.replace('type="::T"', 'type="::U"'))
        self.assertEqual(
            self.refused(d, AllocationException),
            AllocationException("no allocatable objects with type `::T' registered"),
        )

    def test_new_object_serves_a_waiter(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.granted(self.manager.allocate_by_id("s1", OBJ2, -1))
        d = self.manager.allocate_by_type("s2", "::T", -1)
        deploy(
            self.state,
            APP.replace(
                '<object identity="wk1"',
                '<allocatable identity="obj3" type="::T"/><object identity="wk1"',
            ),
        )
        self.assertEqual(self.granted(d).identity, Identity("obj3", ""))
        self.assertEqual(self.manager.holder_of(OBJ1), "s1")  # unchanged objects stay held

    def test_application_removed(self) -> None:
        self.granted(self.manager.allocate_by_id("s1", SOBJ1, -1))
        d = self.manager.allocate_by_id("s2", SOBJ1, -1)
        self.state.apply([Mutation(APPLICATION, "Alloc", None)])
        self.refused(d, ObjectNotRegisteredException)
        self.assertEqual(self.released, ["S2"])
        self.assertIsNone(self.manager.server_holder("S2"))


class NotWellKnownTests(_Base):
    def test_not_found_by_locator_or_query(self) -> None:
        """IceGrid: C{findObjectById(obj1)} is null and by-type finds none."""
        self.assertIsNone(self.state.find_object(OBJ1))
        self.assertEqual(self.state.objects_of_type("::T"), [])
        self.assertIsNotNone(self.state.find_object(WK1))
        self.assertIn(OBJ1, self.state.deployed.allocatables)

    def test_not_found_while_allocated(self) -> None:
        """
        IceGrid 3.7.8: nor while a session holds it, for anybody (that
        session's own connection included); a Glacier2 router reaches it by
        the proxy the client used first, from its own routing table.
        """
        self.successResultOf(self.manager.allocate_by_id("s1", OBJ1, -1))
        self.assertIsNone(self.state.find_object(OBJ1))
        self.assertEqual(self.state.objects_of_type("::T"), [])
