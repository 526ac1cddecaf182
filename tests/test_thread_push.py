# -*- test-case-name: tests.test_thread_push -*-
"""
Tests for the master's pushes sent from its store's thread
(L{gridreg.protocol.prompt.ThreadCall}, L{MasterReplication.prepare}), on
real loopback TCP: the slave is a raw non-blocking socket, read without
waiting (on loopback a sent byte is in the peer's receive queue as soon as
C{send} returns), so what it reads is what went out on the wire, and when.
"""

from __future__ import annotations

import socket
from collections import deque
import threading
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionLost
from twisted.internet.task import deferLater
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.protocol.errors import QuorumError
from gridreg.protocol.prompt import NOW, AnswerTo, ThreadCall, encoded_fields_after_ask
from gridreg.registry.database import RegistryDatabase
from gridreg.registry.master import MasterReplication
from gridreg.registry.state import ObjectInfo, RegistryState
from gridreg.registry.trace import TraceLevels
from gridreg.store.executor import Quiet
from gridreg.store.interfaces import StoreError
from gridreg.store.memory import MemoryStore
from tests.test_prompt_write import Answering, Prompt, connected, pending


class SteppedExecutor:
    """
    A store executor whose jobs run at once, except commits while C{held}:
    those in two steps the test takes, the job on a real thread of its own
    (L{work}, as the store's thread runs it), then its result to the
    reactor (L{deliver}).
    """

    def __init__(self) -> None:
        self.held = False
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []
        self._outcome: list[Any] = []
        #: per quiet commit: whether its next step said the reactor would wake anyway
        self.woken_anyway: list[bool] = []

    def submit(self, job: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if not self.held or getattr(job, "__name__", "") != "_persist_checked":
            try:
                d.callback(job(*args))
            except Exception:
                d.errback(Failure())
            return d
        self._pending.append((job, args, d))
        return d

    def work(self) -> None:
        job, args, _ = self._pending[0]

        def run() -> None:
            try:
                outcome = job(*args)
            except StoreError as e:
                self._outcome.append(Failure(e))
                return
            if isinstance(outcome, Quiet):
                # queued for the reactor, then the thread's next step, as the store's thread
                self._outcome.append(outcome.result)
                self.woken_anyway.append(outcome.then())
            else:
                self._outcome.append(outcome)

        worker = threading.Thread(target=run)
        worker.start()
        worker.join()

    def deliver(self) -> None:
        _, _, d = self._pending.pop(0)
        outcome = self._outcome.pop(0)
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            d.callback(outcome)

    def stop(self) -> Deferred[None]:
        return Deferred()


def proxy(name: str) -> Proxy:
    return Proxy(Identity(name, "pushed"), endpoints=(TcpEndpoint("127.0.0.1", 10000),))


def boxes(data: bytes) -> list[amp.AmpBox]:
    return amp.parseString(data) if data else []


class Slave:
    """The slave's end of a session: a raw socket that reads pushes and answers them."""

    def __init__(self, peer: socket.socket) -> None:
        self.peer = peer
        self.serial = 0

    def read(self) -> list[amp.AmpBox]:
        return boxes(pending(self.peer))

    def acknowledge(self, push: amp.AmpBox) -> None:
        self.serial += len(eval_changes(push))
        self.peer.send(amp.AmpBox(_answer=push[b"_ask"], serial=b"%d" % self.serial).serialize())


def eval_changes(push: amp.AmpBox) -> list[Any]:
    import json

    return json.loads(push[b"changes"])


def settled(d: Deferred[Any]) -> Callable[[], bool]:
    """Whether C{d} has its final result (not a Deferred it waits on)."""
    done: list[Any] = []

    def record(result: Any) -> Any:
        done.append(result)
        return result

    d.addBoth(record)
    return lambda: bool(done)


async def until(condition: Callable[[], Any], what: str) -> Any:
    """Turn the reactor until C{condition()} is true (the peer's bytes, a Deferred firing)."""
    for _ in range(5000):
        value = condition()
        if value:
            return value
        await deferLater(reactor, 0.001, lambda: None)
    raise AssertionError(f"never happened: {what}")


class Session(Prompt):
    """The master's end of a slave's session: its loss ends the session, as the registry's."""

    def __init__(self, replication: MasterReplication, made: Deferred[Prompt]) -> None:
        super().__init__(NOW, made)
        self.replication = replication

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.replication.lost(self)


class MasterPushTests(TestCase):
    """A master with one or two slave sessions on real sockets, its store stepped by hand."""

    async def master(self, slaves: int = 1, min_acks: int = 0, mode: str = "tcp") -> None:
        self.store = MemoryStore()
        self.executor = SteppedExecutor()
        self.store._executor = self.executor  # type: ignore[assignment]
        await self.store.open()
        self.database = RegistryDatabase(self.store, RegistryState(), True, TraceLevels())
        self.replication = MasterReplication(
            self.store, reactor, 5.0, TraceLevels(), lambda: None, min_acks=min_acks
        )
        self.database.replicate = self.replication.replicate
        self.database.prepare_replication = self.replication.prepare
        self.database.abandon_replication = self.replication.abandon
        self.slaves: list[Slave] = []
        self.protocols: list[Prompt] = []
        for n in range(slaves):
            protocol, peer = await connected(self, lambda made: Session(self.replication, made))
            name = f"Replica{n + 1}"
            self.replication.register(protocol, name, {}, self.store.database_id, 0)
            session = self.replication.sessions[name]
            await until(lambda: session.live, f"{name} live")
            self.slaves.append(Slave(peer))
            self.protocols.append(protocol)

    def write(self, name: str) -> Deferred[Any]:
        """An admin write, held in the store until the test steps it."""
        self.executor.held = True
        from gridreg.registry.state import object_mutation

        info = ObjectInfo(proxy(name), "::Demo::Hello")
        return self.database.commit([object_mutation(proxy(name).identity, info)])

    async def test_the_push_leaves_from_the_thread_once_durable(self) -> None:
        """
        Nothing reaches the slave while the commit runs; the store's thread
        sends the push as soon as the commit is durable, before the reactor
        hears of it; the write is answered only once the slave acknowledges.
        """
        await self.master()
        slave = self.slaves[0]
        written = self.write("a")
        self.assertEqual(slave.read(), [])  # not durable: nothing pushed
        self.executor.work()  # durable, on a thread of its own
        (push,) = slave.read()
        self.assertEqual(push[b"_command"], b"PushChanges")
        self.assertEqual([c["serial"] for c in eval_changes(push)], [1])
        self.executor.deliver()  # the reactor hears of the commit: nothing sent twice
        self.assertEqual(slave.read(), [])
        self.assertNoResult(written)
        slave.acknowledge(push)
        await until(settled(written), "the write answered")
        self.assertEqual(self.successResultOf(written).serial, 1)
        self.assertEqual(self.replication.sessions["Replica1"].serial, 1)

    async def test_a_slow_commit_is_not_the_slaves_silence(self) -> None:
        """
        A push readied before its commit is timed from the commit's end:
        however long the master's own commit takes, the watch does not
        drop the slave for it.
        """
        await self.master()
        session = self.replication.sessions["Replica1"]
        written = self.write("slow")
        later = reactor.seconds() + 60
        self.assertFalse(session.push_overdue(later))
        self.executor.work()
        self.executor.deliver()
        self.assertTrue(session.push_overdue(later))
        (push,) = self.slaves[0].read()
        self.slaves[0].acknowledge(push)
        await until(settled(written), "the write answered")
        self.assertFalse(session.push_overdue(later))

    async def test_a_refused_commit_pushes_nothing(self) -> None:
        """
        The store refuses the commit: no push ever leaves, and the session
        is idle again for the next write, whose push goes from the thread.
        """
        await self.master()
        slave = self.slaves[0]
        real = self.store._persist_all

        def refuse(changes: Any) -> None:
            raise StoreError("disk full")

        self.store._persist_all = refuse  # type: ignore[method-assign]
        written = self.write("refused")
        self.executor.work()
        self.assertEqual(slave.read(), [])
        self.executor.deliver()
        self.failureResultOf(written, StoreError)
        self.assertEqual(slave.read(), [])
        self.assertEqual(self.protocols[0]._outstandingRequests, {})
        self.store._persist_all = real  # type: ignore[method-assign]
        # the state reloads from the store first; then the next write
        await until(lambda: self.database._reloading is None, "the reload")
        written = self.write("next")
        self.executor.work()
        (push,) = slave.read()
        self.assertEqual([c["serial"] for c in eval_changes(push)], [1])
        self.executor.deliver()
        slave.acknowledge(push)
        await until(settled(written), "the next write answered")

    async def test_a_busy_session_gets_its_push_from_the_reactor(self) -> None:
        """
        A session whose last push is still unanswered is not readied: its
        push goes once that one is acknowledged, from the reactor, behind it.
        """
        await self.master()
        slave = self.slaves[0]
        first = self.write("first")
        self.executor.work()
        (push1,) = slave.read()
        self.executor.deliver()
        second = self.write("second")  # the session still waits for push1's answer
        self.executor.work()
        # one slave: the first commit wakes the reactor (its answer alone would
        # wait for the commit's part there); the second readied none: woken as ever
        self.assertEqual(self.executor.woken_anyway, [False])
        self.assertEqual(slave.read(), [])
        self.executor.deliver()
        self.assertEqual(slave.read(), [])
        slave.acknowledge(push1)
        push2 = (await until(slave.read, "the second push"))[0]
        self.assertEqual([c["serial"] for c in eval_changes(push2)], [2])
        slave.acknowledge(push2)
        both = settled(first), settled(second)
        await until(lambda: both[0]() and both[1](), "both answered")

    async def test_a_timed_out_push_frees_its_session_first(self) -> None:
        """
        A readied push the watch times out leaves its session idle before the
        write hears of it: the write queued behind it is not left waiting, and
        both are answered (the slave dropped, MinAcks 0).
        """
        await self.master()
        session = self.replication.sessions["Replica1"]
        first = self.write("first")
        self.executor.work()
        self.executor.deliver()
        second = self.write("second")  # queued behind the unanswered push
        self.executor.work()
        self.executor.deliver()
        idle_when_told: list[bool] = []
        first.addBoth(lambda result: (idle_when_told.append(session._jobs == deque()), result)[1])
        session.time_out_push()
        await until(lambda: settled(first)() and settled(second)(), "both answered")
        self.assertEqual(idle_when_told, [True])
        self.assertTrue(session.closed)
        self.assertIsNone(session._frees)

    async def test_an_error_answer_frees_its_session(self) -> None:
        """A readied push answered with an error frees its session as an acknowledgement does."""
        await self.master()
        session = self.replication.sessions["Replica1"]
        slave = self.slaves[0]
        written = self.write("refused")
        self.executor.work()
        (push,) = slave.read()
        self.executor.deliver()
        self.assertTrue(session._running)
        slave.peer.send(
            amp.AmpBox(
                _error=push[b"_ask"], _error_code=b"NOPE", _error_description=b"no"
            ).serialize()
        )
        await until(settled(written), "the write answered")
        self.assertFalse(session._running)
        self.assertIsNone(session._frees)
        self.assertTrue(session.closed)  # dropped: it did not acknowledge

    async def test_buffered_boxes_go_first(self) -> None:
        """
        Boxes the reactor buffered on the connection (the socket did not
        take them) keep their place: the thread leaves the push to the
        reactor, which sends it behind them.
        """
        await self.master()
        slave = self.slaves[0]
        protocol = self.protocols[0]
        protocol.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = amp.AmpBox({b"_command": b"Other", b"data": b"x" * 60_000})
        written = self.write("behind")
        for _ in range(8):
            protocol.sendBox(big)
        self.assertTrue(protocol.transport.dataBuffer or protocol.transport._tempDataBuffer)
        self.executor.work()
        self.executor.deliver()
        received = b""
        while b"PushChanges" not in received:
            received += pending(slave.peer)
            await deferLater(reactor, 0.001, lambda: None)
        *others, push = boxes(received)
        self.assertEqual(others, [big] * 8)
        slave.acknowledge(push)
        await until(settled(written), "the write answered")

    async def test_the_reactor_is_woken_when_one_answer_decides(self) -> None:
        """
        With one slave, or MinAcks 1, a single answer decides the write: the
        reactor is woken for the commit, as before, so that its part of the
        commit does not wait for that answer; with two answers to wait for
        it is not (L{test_one_encoding_for_every_slave}).
        """
        await self.master(slaves=1)
        written = self.write("one")
        self.executor.work()
        self.assertEqual(self.executor.woken_anyway, [False])
        (push,) = self.slaves[0].read()
        self.executor.deliver()
        self.slaves[0].acknowledge(push)
        await until(settled(written), "the write answered")
        await self.master(slaves=2, min_acks=1)
        written = self.write("quorum of one")
        self.executor.work()
        self.assertEqual(self.executor.woken_anyway, [False])
        pushes = [slave.read()[0] for slave in self.slaves]
        self.executor.deliver()
        for slave, push in zip(self.slaves, pushes):
            slave.acknowledge(push)
        await until(settled(written), "the quorum's write answered")

    async def test_a_write_waiting_for_the_commit_wakes_the_reactor(self) -> None:
        """
        Two slaves, but a write arrived while the commit ran: the reactor is
        woken for the commit, so that the next one starts at once, while
        the slaves commit this one, not at their first acknowledgement.
        """
        await self.master(slaves=2)
        first = self.write("first")
        second = self.write("second")  # waits for the first commit to end
        self.executor.work()
        self.assertEqual(self.executor.woken_anyway, [False])
        pushes = [slave.read()[0] for slave in self.slaves]
        self.executor.deliver()  # the second write stages, its commit starts
        self.assertEqual(len(self.executor._pending), 1)
        for slave, push in zip(self.slaves, pushes):
            slave.acknowledge(push)
        await until(settled(first), "the first write answered")
        self.executor.work()
        self.executor.deliver()
        for slave in self.slaves:
            (push,) = await until(slave.read, "the second push")
            slave.acknowledge(push)
        await until(settled(second), "the second write answered")
        self.assertEqual(self.successResultOf(second).serial, 2)

    async def test_each_readied_push_counted_once_directly(self) -> None:
        """
        With MinAcks 0 each readied push is counted by the write as it is
        settled, its Deferred not waited on: the write is answered once
        after both slaves are accounted for (one acknowledged, the other's
        push timed out and the slave dropped), and an answer that comes
        after its push timed out is not counted again.
        """
        await self.master(slaves=2)
        sessions = [self.replication.sessions[f"Replica{n}"] for n in (1, 2)]
        written = self.write("counted")
        self.executor.work()
        pushes = [slave.read()[0] for slave in self.slaves]
        self.executor.deliver()
        self.assertEqual([s._counted is not None for s in sessions], [True, True])
        self.slaves[0].acknowledge(pushes[0])
        await until(lambda: sessions[0]._counted is None, "the first answer counted")
        self.assertNoResult(written)
        late = sessions[1]._awaiting
        assert late is not None
        sessions[1].time_out_push()
        self.assertEqual(self.successResultOf(written).serial, 1)
        self.assertTrue(sessions[1].closed)
        self.assertIsNone(sessions[1]._counted)
        sessions[1]._answered(amp.AmpBox(serial=b"1"), late)  # too late: of no use
        self.assertEqual(sessions[1].serial, 0)

    async def test_quorum_counts_thread_sent_pushes(self) -> None:
        """
        With MinAcks 1 and two slaves, both pushes leave from the thread;
        the write is answered once one slave acknowledges, as before.
        """
        await self.master(slaves=2, min_acks=1)
        written = self.write("quorum")
        self.executor.work()
        pushes = [slave.read() for slave in self.slaves]
        self.assertEqual([len(p) for p in pushes], [1, 1])
        self.executor.deliver()
        self.assertNoResult(written)
        self.slaves[1].acknowledge(pushes[1][0])
        await until(settled(written), "the write answered")
        self.assertEqual(self.successResultOf(written).serial, 1)

    async def test_one_encoding_for_every_slave(self) -> None:
        """
        The push is encoded once for both slaves: each gets AMP's exact
        bytes of its box, the two boxes differ only in their tags, and as
        both left from the thread the store need not wake the reactor.
        """
        await self.master(slaves=2)
        self.protocols[1]._nextTag()  # the second connection's tags run ahead
        written = self.write("shared")
        self.executor.work()
        self.assertEqual(self.executor.woken_anyway, [True])
        raw = [pending(slave.peer) for slave in self.slaves]
        pushes = [boxes(data)[0] for data in raw]
        for data, push in zip(raw, pushes):
            self.assertEqual(data, push.serialize())
        self.assertNotEqual(pushes[0][b"_ask"], pushes[1][b"_ask"])
        self.assertEqual(
            {k: v for k, v in pushes[0].items() if k != b"_ask"},
            {k: v for k, v in pushes[1].items() if k != b"_ask"},
        )
        self.assertEqual([c["serial"] for c in eval_changes(pushes[0])], [1])
        self.executor.deliver()
        for slave, push in zip(self.slaves, pushes):
            slave.acknowledge(push)
        await until(settled(written), "the write answered")

    async def test_quorum_not_reached_fails_as_before(self) -> None:
        """Both slaves refuse: the write fails with QuorumError, the pushes counted."""
        await self.master(slaves=2, min_acks=1)
        written = self.write("refused")
        self.executor.work()
        pushes = [slave.read()[0] for slave in self.slaves]
        self.executor.deliver()
        for slave, push in zip(self.slaves, pushes):
            error = amp.AmpBox(
                _error=push[b"_ask"], _error_code=b"UNKNOWN", _error_description=b"no"
            )
            slave.peer.send(error.serialize())
        await until(settled(written), "the write failed")
        self.failureResultOf(written, QuorumError)

    async def test_a_session_lost_during_the_commit_is_not_counted(self) -> None:
        """The slave's connection closes while the commit runs: the write still answers."""
        await self.master(slaves=1)
        written = self.write("lost")
        self.slaves[0].peer.close()
        await until(lambda: not self.replication.sessions, "the session lost")
        self.executor.work()
        self.assertEqual(self.executor.woken_anyway, [False])  # no answer will wake it
        self.executor.deliver()
        await until(settled(written), "the write answered")
        self.assertEqual(self.successResultOf(written).serial, 1)


class ThreadCallTests(TestCase):
    """L{ThreadCall} alone, on a connection whose sends hold a lock."""

    async def connect(self) -> tuple[Answering, socket.socket]:
        protocol, peer = await connected(self, lambda made: Answering(NOW, made))
        return protocol, peer  # type: ignore[return-value]

    def from_a_thread(self, call: ThreadCall) -> None:
        worker = threading.Thread(target=call.send_from_thread)
        worker.start()
        worker.join()

    async def test_issued_calls_wait_and_the_thread_sends_amps_bytes(self) -> None:
        protocol, peer = await self.connect()
        call = ThreadCall(protocol, serial=b"3")
        answer = call.issue(b"Push")
        self.assertEqual(pending(peer), b"")
        self.from_a_thread(call)
        expected = amp.AmpBox(_command=b"Push", _ask=call[b"_ask"], serial=b"3").serialize()
        self.assertEqual(pending(peer), expected)
        call.release()
        self.from_a_thread(call)
        self.assertEqual(pending(peer), b"")
        protocol.dataReceived(amp.AmpBox(_answer=call[b"_ask"], ok=b"1").serialize())
        self.assertEqual(self.successResultOf(answer)[b"ok"], b"1")

    async def test_released_first_the_reactor_sends_it(self) -> None:
        protocol, peer = await self.connect()
        call = ThreadCall(protocol, serial=b"3")
        answer = call.issue(b"Push")
        answer.addErrback(lambda f: f.trap(ConnectionAborted))  # never answered here
        call.release()
        self.from_a_thread(call)
        (box,) = boxes(pending(peer))
        self.assertEqual(box[b"serial"], b"3")

    async def test_encoded_after_its_tag_it_is_amps_bytes(self) -> None:
        """
        Given the bytes after its tag (encoded once for many connections),
        a call sends exactly the bytes AMP would write for it.
        """
        protocol, peer = await self.connect()
        after_ask = encoded_fields_after_ask(
            {b"_command": b"Push", b"changes": b"[1]", b"serial": b"3"}
        )
        self.assertIsNotNone(after_ask)
        call = ThreadCall(protocol, after_ask, changes=b"[1]", serial=b"3")
        call.issue(b"Push").addErrback(lambda f: f.trap(ConnectionAborted))
        self.from_a_thread(call)
        expected = amp.AmpBox(
            _command=b"Push", _ask=call[b"_ask"], changes=b"[1]", serial=b"3"
        ).serialize()
        self.assertEqual(pending(peer), expected)

    def test_a_pushs_bytes_after_its_tag_are_amps(self) -> None:
        """
        A commit's push, put together from the parts every push shares
        (L{_Readied.after_ask}), is what L{encoded_fields_after_ask} writes
        for its box; a database id longer than an AMP value is encoded whole.
        """
        from gridreg.registry.master import _Readied
        from gridreg.store.records import Change, Mutation

        for size in (1, 254, 255, 300):
            change = Change(7, (Mutation("object", "k", {"proxy": "x" * size, "type": ""}),))
            readied = _Readied([change], [f'{{"serial": 7, "pad": "{"x" * size}"}}'])
            for database_id in (b"", b"d", b"a-database-id" * 20):
                self.assertEqual(
                    readied.after_ask(database_id),
                    encoded_fields_after_ask(
                        {
                            b"_command": b"PushChanges",
                            b"changes": readied.payload,
                            b"database_id": database_id,
                            b"transfer": b"",
                        }
                    ),
                )
            self.assertIsNone(readied.after_ask(b"d" * (amp.MAX_VALUE_LENGTH + 1)))

    def test_a_key_before_the_tag_is_not_encoded_apart(self) -> None:
        """A key that sorts before C{_ask} would move in AMP's order: no shared encoding."""
        self.assertIsNone(encoded_fields_after_ask({b"_command": b"Push", b"Serial": b"3"}))

    def receiving(self) -> tuple[list[tuple[Any, ...]], Callable[..., None]]:
        """A receiver for L{ThreadCall.issue}, and what it was given."""
        got: list[tuple[Any, ...]] = []
        return got, lambda result, *args: got.append((result, *args))

    async def test_issued_to_a_receiver_the_answer_goes_to_it(self) -> None:
        """
        Issued with a receiver, the call sends AMP's bytes all the same and
        its answer box goes to the receiver, with the arguments given; AMP
        keeps no Deferred for it.
        """
        protocol, peer = await self.connect()
        got, receiver = self.receiving()
        call = ThreadCall(protocol, serial=b"3")
        self.assertIsNone(call.issue(b"Push", receiver, "first"))
        self.assertNotIsInstance(protocol._outstandingRequests[call[b"_ask"]], Deferred)
        self.assertEqual(pending(peer), b"")
        self.from_a_thread(call)
        expected = amp.AmpBox(_command=b"Push", _ask=call[b"_ask"], serial=b"3").serialize()
        self.assertEqual(pending(peer), expected)
        call.release()
        protocol.dataReceived(amp.AmpBox(_answer=call[b"_ask"], ok=b"1").serialize())
        [(box, extra)] = got
        self.assertEqual((box[b"ok"], extra), (b"1", "first"))
        self.assertEqual(protocol._outstandingRequests, {})

    async def test_issued_to_a_receiver_an_error_answer_is_a_failure(self) -> None:
        protocol, peer = await self.connect()
        got, receiver = self.receiving()
        call = ThreadCall(protocol, serial=b"3")
        call.issue(b"Push", receiver)
        call.release()
        error = amp.AmpBox(_error=call[b"_ask"], _error_code=b"NOPE", _error_description=b"refused")
        protocol.dataReceived(error.serialize())
        [(failure,)] = got
        self.assertIsInstance(failure, Failure)
        failure.trap(amp.RemoteAmpError)
        self.assertEqual(failure.value.errorCode, b"NOPE")
        self.assertTrue(protocol.transport.connected)  # handled: the connection stays

    async def test_issued_to_a_receiver_a_lost_connection_is_a_failure(self) -> None:
        protocol, peer = await self.connect()
        lost: Deferred[None] = Deferred()
        got: list[Any] = []

        def receiver(result: Any) -> None:
            got.append(result)
            lost.callback(None)

        call = ThreadCall(protocol, serial=b"3")
        call.issue(b"Push", receiver)
        protocol.transport.abortConnection()
        await lost
        [failure] = got
        self.assertIsInstance(failure, Failure)
        failure.trap(ConnectionAborted, ConnectionLost)

    async def test_withdrawn_a_receivers_call_is_never_answered(self) -> None:
        protocol, peer = await self.connect()
        got, receiver = self.receiving()
        call = ThreadCall(protocol, serial=b"3")
        call.issue(b"Push", receiver)
        call.withdraw()
        self.from_a_thread(call)
        call.release()
        self.assertEqual(pending(peer), b"")
        self.assertEqual(protocol._outstandingRequests, {})
        self.assertEqual(got, [])

    async def test_a_receivers_error_goes_to_amps_unhandled_error(self) -> None:
        """What the receiver raises is AMP's unhandled error, as a Deferred's would be."""
        protocol, peer = await self.connect()
        unhandled: list[Failure] = []
        protocol.unhandledError = unhandled.append  # type: ignore[method-assign]

        def receiver(result: Any) -> None:
            raise ValueError("broken receiver")

        call = ThreadCall(protocol, serial=b"3")
        call.issue(b"Push", receiver)
        call.release()
        protocol.dataReceived(amp.AmpBox(_answer=call[b"_ask"], ok=b"1").serialize())
        [failure] = unhandled
        failure.trap(ValueError)

    def test_an_error_with_no_one_to_tell_is_logged(self) -> None:
        """Failed by a lost connection (no C{addErrback} first), a receiver's error is logged."""

        def receiver(result: Any) -> None:
            raise ValueError("broken receiver")

        AnswerTo(receiver).errback(Failure(ConnectionLost()))
        [failure] = self.flushLoggedErrors(ValueError)
        self.assertEqual(str(failure.value), "broken receiver")

    async def test_withdrawn_it_is_never_sent_and_its_answer_forgotten(self) -> None:
        protocol, peer = await self.connect()
        call = ThreadCall(protocol, serial=b"3")
        answer = call.issue(b"Push")
        call.withdraw()
        self.from_a_thread(call)
        call.release()
        self.assertEqual(pending(peer), b"")
        self.assertEqual(protocol._outstandingRequests, {})
        self.assertNoResult(answer)
