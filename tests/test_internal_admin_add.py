# -*- test-case-name: tests.test_internal_admin_add -*-
"""
The admin's add answered past AMP's dispatch
(L{InternalProtocol._admin_add_received}) and a readied push's answer
handed straight to its receiver: every box gets the bytes AMP's own
dispatch sent for it, on a replica in the same state, and what the fast
path does not take goes through AMP as before.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import fail
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity
from gridreg.protocol.commands import PROTOCOL_VERSION, AdminObjectAdd, AdminPing, Hello
from gridreg.protocol.prompt import AnswerTo
from gridreg.registry.admin import AdminResponder
from gridreg.registry.internal import InternalProtocol
from tests._helpers import MemoryNetwork
from tests.test_admin import MASTER_PORTS, start_registry

ADD = AdminObjectAdd.commandName
HELLO = Identity("hello")
SLAVE_REFUSAL = "this replica `Replica1' is a read-only slave; writes go to the master"


class AMPDispatched(InternalProtocol):
    """An internal session that leaves every box to AMP's dispatch (before the fast path)."""

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        amp.AMP.ampBoxReceived(self, box)


def add_box(ask: Optional[bytes] = b"7", proxy: bytes = b"hello@HelloAdapter") -> bytes:
    """The admin's add of C{proxy} as the wire carries it, asking with C{ask} (or not)."""
    box = amp.AmpBox({b"_command": ADD, b"proxy": proxy, b"type": b"::Demo"})
    if ask is not None:
        box[b"_ask"] = ask
    return box.serialize()


class Session:
    """A replica's internal session on a string transport, after its hello."""

    def __init__(
        self,
        testcase: SynchronousTestCase,
        protocol_type: type[InternalProtocol],
        role: str = "admin",
    ) -> None:
        network = MemoryNetwork()
        self.registry: Any = start_registry(testcase, network, "Master", MASTER_PORTS)
        self.clock = network.reactor
        self.protocol = protocol_type(self.registry, None, None)
        self.protocol.admin_locator = AdminResponder(self.registry, self.protocol)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        hello = amp.AmpBox(
            _command=Hello.commandName,
            _ask=b"1",
            version=b"%d" % PROTOCOL_VERSION,
            role=role.encode("ascii"),
            name=b"alice",
        )
        self.protocol.dataReceived(hello.serialize())
        self.clock.advance(0)
        assert b"_answer" in self.transport.value(), self.transport.value()
        self.transport.clear()

    def send(self, data: bytes) -> bytes:
        """What the replica writes back for C{data}, its commit and answer done."""
        self.protocol.dataReceived(data)
        self.clock.advance(0)
        written = self.transport.value()
        self.transport.clear()
        return written


class AdminAddFastPathTests(SynchronousTestCase):
    """The admin's add answers the bytes AMP's dispatch answered."""

    def pair(self, role: str = "admin") -> tuple[Session, Session]:
        return Session(self, InternalProtocol, role), Session(self, AMPDispatched, role)

    def assertSameAnswers(
        self, boxes: list[bytes], role: str = "admin", prepare: Any = None
    ) -> list[bytes]:
        """Each box in turn on a fresh replica of each kind: the same bytes back, and kept."""
        fast, reference = self.pair(role)
        if prepare is not None:
            prepare(fast)
            prepare(reference)
        answers = []
        for data in boxes:
            answer = fast.send(data)
            self.assertEqual(answer, reference.send(data))
            self.assertEqual(fast.transport.disconnecting, reference.transport.disconnecting)
            answers.append(answer)
        return answers

    def test_success(self) -> None:
        """An add answers its serial, tagged with its C{_ask}, and the object is there."""
        fast, reference = self.pair()
        serial = fast.registry.store.serial
        answer = fast.send(add_box(b"42"))
        self.assertEqual(answer, reference.send(add_box(b"42")))
        self.assertEqual(
            amp.parseString(answer),
            [amp.AmpBox({b"_answer": b"42", b"serial": b"%d" % (serial + 1)})],
        )
        for session in (fast, reference):
            self.assertIsNotNone(session.registry.state.find_object(HELLO))

    def test_declared_errors(self) -> None:
        """
        Each refusal of the add (it exists, a proxy that does not parse, a
        null proxy, IceGrid's own category) is the same error box.
        """
        answers = self.assertSameAnswers(
            [
                add_box(b"2"),
                add_box(b"3", proxy=b"hello:tcp -p 1"),
                add_box(b"4", proxy=b"bad -x:tcp"),
                add_box(b"5", proxy=b""),
                add_box(b"6", proxy=b"DemoIceGrid/Query:tcp -p 1"),
            ]
        )
        for data in answers[1:]:
            (box,) = amp.parseString(data)
            self.assertEqual(box[b"_error_code"], b"USER_ERROR")
        (exists,) = amp.parseString(answers[1])
        self.assertEqual(exists[b"_error_description"], b"object `hello' already exists")

    def test_refused_on_a_slave(self) -> None:
        """A write sent to a slave is refused as it was, before its proxy is parsed."""

        def slave(session: Session) -> None:
            self.patch(session.registry.role, "write_refusal", lambda: SLAVE_REFUSAL)

        answers = self.assertSameAnswers([add_box(b"8"), add_box(b"9", proxy=b"x@")], prepare=slave)
        for data in answers:
            (box,) = amp.parseString(data)
            self.assertEqual(box[b"_error_code"], b"NOT_MASTER")
            self.assertEqual(box[b"_error_description"], SLAVE_REFUSAL.encode("utf-8"))

    def test_failing_database(self) -> None:
        """What the database's write raises unforeseen is the same declared error."""

        def broken(session: Session) -> None:
            def add_object(*args: Any, **kwargs: Any) -> Any:
                raise ZeroDivisionError("broken")

            self.patch(session.registry.database, "add_object", add_object)

        (answer,) = self.assertSameAnswers([add_box(b"3")], prepare=broken)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        (box,) = amp.parseString(answer)
        self.assertIn(b"the registry failed", box[b"_error_description"])

    def test_bad_arguments(self) -> None:
        """An add without its type, or not UTF-8, is refused by AMP's decoding and closes."""
        for box in (
            amp.AmpBox({b"_command": ADD, b"_ask": b"5", b"proxy": b"hello@A"}).serialize(),
            add_box(b"6", proxy=b"\xff@A"),
        ):
            (answer,) = self.assertSameAnswers([box])
            (error,) = amp.parseString(answer)
            self.assertEqual(error[b"_error_code"], b"BAD_ARGUMENTS")

    def test_undeclared_failures(self) -> None:
        """
        A responder's undeclared failure, returned or raised, is AMP's
        unknown error box (the connection closed), and logged as AMP logs it.
        """
        for responder in (
            lambda box: fail(ZeroDivisionError("returned")),
            lambda box: 1 / 0,
        ):

            def patched(session: Session, responder: Any = responder) -> None:
                self.patch(session.protocol.admin_locator, "_object_add_box", responder)

            (answer,) = self.assertSameAnswers([add_box(b"3")], prepare=patched)
            self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
            self.assertEqual(
                amp.parseString(answer),
                [
                    amp.AmpBox(
                        {
                            b"_error": b"3",
                            b"_error_code": b"UNKNOWN",
                            b"_error_description": b"Unknown Error",
                        }
                    )
                ],
            )

    def test_failed_send_is_unhandled(self) -> None:
        """
        An answer or error box that cannot be sent goes to the protocol's
        C{unhandledError}, as AMP's last errback gave it (logged, the
        connection closed), for success and refusal alike.
        """
        for data in (add_box(b"3"), add_box(b"4", proxy=b"DemoIceGrid/Query:tcp -p 1")):
            unhandled = []
            for protocol_type in (InternalProtocol, AMPDispatched):
                session = Session(self, protocol_type)
                failures: list[Failure] = []

                def send_box(box: amp.AmpBox) -> None:
                    raise ZeroDivisionError("cannot send")

                self.patch(session.protocol, "sendBox", send_box)
                self.patch(session.protocol, "unhandledError", failures.append)
                self.assertEqual(session.send(data), b"")
                unhandled.append([f.type for f in failures])
            self.assertEqual(unhandled, [[ZeroDivisionError], [ZeroDivisionError]])

    def test_unknown_to_the_session(self) -> None:
        """A session that is not an admin's has no add: AMP refuses it, as before."""
        (answer,) = self.assertSameAnswers([add_box(b"4")], role="node")
        (error,) = amp.parseString(answer)
        self.assertEqual(error[b"_error_code"], b"UNHANDLED")

    def test_other_boxes_go_through_amp(self) -> None:
        """
        An add without C{_ask} is made and not answered, as AMP does; an
        unknown command is refused; other commands answer as before.
        """
        fast, reference = self.pair()
        for session in (fast, reference):
            self.assertEqual(session.send(add_box(None)), b"")
            self.assertIsNotNone(session.registry.state.find_object(HELLO))
        unknown = amp.AmpBox({b"_command": b"NoSuchCommand", b"_ask": b"3"}).serialize()
        ping = amp.AmpBox({b"_command": AdminPing.commandName, b"_ask": b"4", b"name": b"Master"})
        for data in (unknown, ping.serialize()):
            self.assertEqual(fast.send(data), reference.send(data))
        self.assertEqual(amp.parseString(fast.send(unknown))[0][b"_error_code"], b"UNHANDLED")

    def test_malformed_answers_still_raise(self) -> None:
        """A box answering a call nobody made raises, as in AMP (its reader then closes)."""
        for protocol_type in (InternalProtocol, AMPDispatched):
            session = Session(self, protocol_type)
            with self.assertRaises(KeyError):
                session.protocol.ampBoxReceived(
                    amp.AmpBox({b"_command": ADD, b"_answer": b"99", b"serial": b"1"})
                )


class AnswerToTests(SynchronousTestCase):
    """A readied push's answer goes straight to its receiver; any other as AMP hands it."""

    def setUp(self) -> None:
        self.session = Session(self, InternalProtocol, role="registry")
        self.protocol = self.session.protocol
        self.requests: Any = self.protocol._outstandingRequests

    def test_answer_to_a_receiver(self) -> None:
        received: list[Any] = []
        self.requests[b"5"] = AnswerTo(
            lambda result, extra: received.append((result, extra)), ("push",)
        )
        self.protocol.ampBoxReceived(amp.AmpBox({b"_answer": b"5", b"serial": b"3"}))
        self.assertEqual(received, [({b"_answer": b"5", b"serial": b"3"}, "push")])
        self.assertNotIn(b"5", self.protocol._outstandingRequests)

    def test_receiver_errors_go_to_unhandled_error(self) -> None:
        """What the receiver raises reaches the protocol's C{unhandledError}, as AMP gave it."""
        unhandled: list[Failure] = []
        self.patch(self.protocol, "unhandledError", unhandled.append)

        def receiver(result: Any) -> None:
            raise ZeroDivisionError("receiver")

        self.requests[b"6"] = AnswerTo(receiver)
        self.protocol.ampBoxReceived(amp.AmpBox({b"_answer": b"6", b"serial": b"3"}))
        self.assertEqual(len(unhandled), 1)
        self.assertTrue(unhandled[0].check(ZeroDivisionError))

    def test_deferred_calls_still_answered(self) -> None:
        """A call AMP keeps a Deferred for (C{callRemote}) gets its answer as before."""
        d = self.protocol.callRemoteString(b"Anything", value=b"1")
        (sent,) = amp.parseString(self.session.transport.value())
        self.protocol.ampBoxReceived(amp.AmpBox({b"_answer": sent[b"_ask"], b"ok": b"yes"}))
        self.assertEqual(self.successResultOf(d)[b"ok"], b"yes")
