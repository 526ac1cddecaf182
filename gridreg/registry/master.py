# -*- test-case-name: tests.test_replication -*-
"""
The master's side of replication: one session per slave, and the fan-out.

Each session sends, strictly in order, first whatever the slave missed (the
retained changes, or a snapshot in chunks) and then every new change. A
write on the master returns once each slave that was live when it committed
has acknowledged it or has been dropped for not answering in time; a dropped
slave reconnects and catches up by itself.

A push has no timer of its own: each session notes when its push in flight
left, and the watch that drops silent slaves (every quarter of the session
timeout) drops one whose push has waited longer than the timeout. A timer
per push was a C{callLater} and its cancellation on every write, per slave.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from typing import Any, Callable, Optional, Sequence

from twisted.internet.defer import Deferred, TimeoutError, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.direct_send import PLAIN_TCP
from gridreg.ice.server import set_no_delay
from gridreg.protocol.chunking import new_transfer_id, send_blob, send_stream
from gridreg.protocol.commands import (
    BeginSnapshot,
    InstallSnapshot,
    PushChanges,
    ReplicaSetChanged,
)
from gridreg.protocol.errors import DuplicateReplicaError, QuorumError, failure_reason
from gridreg.protocol.prompt import (
    PromptWriter,
    ThreadCall,
    amp_field,
    encoded_fields_after_ask,
)
from gridreg.registry.snapshot_stream import Run, SnapshotProducer, in_thread
from gridreg.registry.replica_status import DISCONNECTED, FAILED, LIVE, SYNCING, ReplicaStatus
from gridreg.registry.trace import TraceLevels
from gridreg.store.interfaces import IRegistryStore
from gridreg.store.records import Change, change_to_json

#: changes are gathered into batches of about this many bytes of JSON
_BATCH_BYTES = 50_000
#: a batch up to this size travels inside PushChanges, a larger one is chunked
INLINE_BYTES = 60_000

_length = struct.Struct("!H").pack

#: a push's fields after its tag as AMP writes them, keys sorted (each after
#: C{_ask}): its command and the key of its changes, then their value; the key
#: of the database id, then its value; an empty transfer and the box's end
_PUSH_HEAD = amp_field(b"_command") + amp_field(PushChanges.commandName) + amp_field(b"changes")
_DATABASE_ID_KEY = amp_field(b"database_id")
_PUSH_END = amp_field(b"transfer") + amp_field(b"") + b"\x00\x00"


class SlaveSession:
    """One slave, as the master sees it."""

    log = Logger()

    def __init__(
        self,
        name: str,
        endpoints: dict[str, str],
        protocol: amp.AMP,
        serial: int,
        database_id: str,
        clock: IReactorTime,
        timeout: float,
        trace: TraceLevels,
    ) -> None:
        self.name = name
        self.endpoints = endpoints
        self.protocol = protocol
        #: the last serial this slave holds
        self.serial = serial
        self.database_id = database_id
        self.clock = clock
        self.timeout = timeout
        self.trace = trace
        self.live = False
        self.closed = False
        #: when the slave was last heard from (a keepalive or an acknowledgement)
        self.heard = clock.seconds()
        #: jobs waiting for the one running (see L{run})
        self._jobs: deque[tuple[Callable[[], Deferred[Any]], Optional[Deferred[Any]]]] = deque()
        self._running = False
        #: changes waiting for the next push, each batch with its JSON and its Deferred
        self._outbox: list[tuple[list[Change], list[str], Deferred[None]]] = []
        self._flush_queued = False
        #: when the push waiting for its acknowledgement left, or None
        self.pushed_at: Optional[float] = None
        #: that push's outcome, for the watch to fail once it is overdue
        self._awaiting: Optional[Deferred[None]] = None
        #: the outcome of the push readied before its commit (L{prepare_push})
        self._prepared: Optional[Deferred[None]] = None
        #: that push's outcome while it holds the session busy: once it is
        #: known (L{_answered}, L{time_out_push}) the session is idle again,
        #: before the write hears of it (L{_settle}), as a first callback did
        self._frees: Optional[Deferred[None]] = None
        #: the write's count of acknowledgements that the push waiting for
        #: its answer is told to directly (L{count_into}, L{_settle})
        self._counted: Optional[_Countdown] = None

    def run(self, job: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """
        Run C{job} after every job queued before it: sends stay in serial
        order. (A queue of its own rather than a C{DeferredLock}: one push
        per write passes here, and the lock's Deferreds were a tenth of it.)
        """
        d: Deferred[Any] = Deferred()
        self._enqueue(job, d)
        return d

    def _enqueue(self, job: Callable[[], Deferred[Any]], d: Optional[Deferred[Any]]) -> None:
        """Queue C{job}; its outcome goes to C{d}, if any (a flush has its own)."""
        self._jobs.append((job, d))
        if not self._running:
            self._run_next()

    def _run_next(self) -> None:
        while self._jobs:
            job, d = self._jobs.popleft()
            self._running = True
            result = maybeDeferred(job)
            if not result.called:
                result.addBoth(self._finished, d)
                return
            self._running = False
            if d is not None:
                result.chainDeferred(d)

    def _finished(self, outcome: Any, d: Optional[Deferred[Any]]) -> None:
        self._running = False
        if d is not None:
            d.callback(outcome)
        if not self._running:
            self._run_next()

    def send(self, changes: list[Change], texts: Optional[list[str]] = None) -> Deferred[None]:
        """
        Queue new changes for the slave: they go at once if nothing is being
        sent, else together with every change queued meanwhile, in one
        message once the slave has acknowledged the one before.

        @param texts: each change's JSON (L{change_to_json}), when the
            caller has it already: one encoding serves every slave.
        """
        texts = texts or [change_to_json(c) for c in changes]
        if not (self._running or self._jobs or self._flush_queued):
            # nothing ahead of it (every write at one in flight): it goes now
            self._running = True
            return maybeDeferred(self.push, changes, texts).addBoth(self._sent)
        d: Deferred[None] = Deferred()
        self._outbox.append((changes, texts, d))
        if not self._flush_queued:
            self._flush_queued = True
            self._enqueue(self._flush, None)
        return d

    def _sent(self, result: Any) -> Any:
        """A push sent at once is done: what was queued behind it goes next."""
        self._running = False
        self._run_next()
        return result

    def _flush(self) -> Deferred[None]:
        self._flush_queued = False
        items, self._outbox = self._outbox, []
        if len(items) == 1:
            changes, texts, only = items[0]
            return maybeDeferred(self.push, changes, texts).addBoth(_settle, only)
        changes = [change for batch, _, _ in items for change in batch]
        texts = [text for _, batch_texts, _ in items for text in batch_texts]

        def done(result: Any) -> None:
            for _, _, d in items:
                _settle(result, d)

        return maybeDeferred(self.push, changes, texts).addBoth(done)

    def prepare_push(self, changes: Sequence[Change], readied: "_Readied") -> Optional[ThreadCall]:
        """
        On the reactor, before C{changes} commit on the master: if this
        session is idle and live on a plain TCP connection, and the changes
        are exactly the next ones the slave needs in one inline batch, issue
        their push now (L{ThreadCall}: its tag and answer registered, its
        bytes held) for the store's thread to send once the commit is
        durable, and hold the session busy for it until it is answered.
        Else None: the push goes as any, once the commit is durable.
        The push's bytes but its tag are encoded once for every session
        (C{readied}, the commit's L{_Readied}).
        """
        protocol: Any = self.protocol
        if (
            not self.live
            or self.closed
            or self._running
            or self._jobs
            or self._flush_queued
            or protocol.send_lock is None
            or protocol._failAllReason is not None
            or type(protocol.transport) not in PLAIN_TCP
            or changes[0].serial != self.serial + 1
        ):
            return None
        payload = readied.payload
        if len(payload) > _BATCH_BYTES:
            return None  # push() would split it, or chunk it
        database_id = self.database_id.encode("utf-8")
        after_ask = readied.afters.get(database_id)
        if after_ask is None:
            after_ask = readied.after_ask(database_id)
        call = ThreadCall(
            protocol,
            after_ask,
            {b"database_id": database_id, b"changes": payload, b"transfer": b""},
        )
        # its timeout runs from the commit's end (L{prepared}): a slow commit of
        # the master's own is not the slave's silence
        answer: Deferred[None] = Deferred()
        self._awaiting = answer
        self._running = True
        self._frees = answer
        # the answer goes straight to _answered, without a Deferred of AMP's
        call.issue(PushChanges.commandName, self._answered, answer)
        self._prepared = answer
        return call

    def prepared(self, call: ThreadCall) -> Deferred[None]:
        """
        On the reactor, the commit durable: the push L{prepare_push} issued
        goes (unless the store's thread sent it); fires as L{send} does.
        """
        call.release()
        d, self._prepared = self._prepared, None
        assert d is not None
        if not d.called:  # not answered yet: the watch times it from now
            self.pushed_at = self.clock.seconds()
        return d

    def withdraw(self, call: ThreadCall) -> None:
        """
        On the reactor, the commit refused (or this session closed while it
        ran): the push is never sent, the session idle again.
        """
        call.withdraw()
        d, self._prepared = self._prepared, None
        if d is None:
            return
        d.addErrback(lambda _: None)  # a lost connection's failure: no write waits for it
        if d.called:
            return
        self.pushed_at = None
        self._awaiting = None
        self._frees = None
        self._running = False
        self._run_next()

    def _call(self, command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
        return self.protocol.callRemote(command, **kwargs).addTimeout(self.timeout, self.clock)

    def push(self, changes: list[Change], texts: Optional[list[str]] = None) -> Deferred[None]:
        """
        Send changes the slave does not have yet, in batches of about
        C{_BATCH_BYTES}; a batch larger than an AMP value (a single large
        change) goes through the chunked channel.

        @param texts: the changes' JSON, if the caller has it.
        """
        if texts is None:
            texts = [change_to_json(c) for c in changes]
        missing = [text for c, text in zip(changes, texts) if c.serial > self.serial]
        if not missing:
            return succeed(None)
        batches: list[list[str]] = [[]]
        size = 0
        for text in missing:
            if batches[-1] and size + len(text) > _BATCH_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(text)
            size += len(text)
        if len(batches) == 1:
            return self._push_batch(batches[0])
        d: Deferred[Any] = succeed(None)
        for batch in batches:
            d.addCallback(lambda _, b=batch: self._push_batch(b))
        return d

    def _push_batch(self, batch: list[str]) -> Deferred[None]:
        # change_to_json writes ASCII only: as many bytes on the wire as characters
        text = "[" + ",".join(batch) + "]"
        if len(text) <= INLINE_BYTES:
            return self._push_changes(text.encode("ascii"), b"")
        transfer = new_transfer_id("changes")
        d = send_blob(self._call, transfer, text.encode("utf-8"))
        return d.addCallback(lambda _: self._push_changes(b"", transfer.encode("utf-8")))

    def _push_changes(self, changes: bytes, transfer: bytes) -> Deferred[None]:
        """
        Send one L{PushChanges} through AMP's C{callRemoteString}, its API for
        hot simple messages: the slave gets the same box, without the
        per-argument conversions of C{callRemote} (a third of the master's
        cost per push); the declared errors come out as C{callRemote} gives
        them. Unanswered, it is failed by L{MasterReplication}'s watch
        (L{push_overdue}, L{time_out_push}).
        """
        answer: Deferred[None] = Deferred()
        self.pushed_at = self.clock.seconds()
        self._awaiting = answer
        d = self.protocol.callRemoteString(
            PushChanges.commandName,
            database_id=self.database_id.encode("utf-8"),
            changes=changes,
            transfer=transfer,
        )
        d.addBoth(self._answered, answer)
        return answer

    def count_into(self, sent: Deferred[None], countdown: "_Countdown") -> None:
        """
        Count the outcome of C{sent} (what L{send} or L{prepared} gave) in
        C{countdown}: told directly if C{sent} is the readied push
        (L{prepare_push}; every write's at one in flight) still waiting for
        its answer (L{_settle}), its Deferred then left unfired, as nothing
        else waits on it (the session frees itself in L{_settle}, not by a
        callback, as a push L{send} made does); else by a callback on
        C{sent}. (A callback on each push's Deferred and its run were about
        eight Python calls a slave on every write.)
        """
        if sent is self._frees and self._counted is None and not sent.called:
            self._counted = countdown
        else:
            sent.addCallbacks(countdown.acked, countdown.failed, errbackArgs=(self,))

    def _settle(self, answer: Deferred[None], failure: Optional[Failure]) -> None:
        """
        The push C{answer} stands for is done: acknowledged, or C{failure}.
        If it is the readied push (L{prepare_push}) the session is idle
        again and what was queued behind it goes next, before the write
        hears of it (a callback of its own on each push was about four
        Python calls); then the write hears of it: its count directly
        (L{count_into}), else C{answer}'s callbacks.
        """
        self.pushed_at = None
        self._awaiting = None
        counted, self._counted = self._counted, None
        if answer is self._frees:
            self._frees = None
            self._running = False
            if self._jobs:  # nothing queued behind it at one in flight
                self._run_next()
        if counted is not None:
            if failure is None:
                counted.acked()
            else:
                counted.failed(failure, self)
        elif failure is None:
            answer.callback(None)
        else:
            answer.errback(failure)

    def _answered(self, result: Any, answer: Deferred[None]) -> None:
        """The slave's answer (or AMP's failure) to the push C{answer} stands for."""
        if answer is not self._awaiting or answer.called:
            return  # timed out already: what comes later is of no use
        if isinstance(result, Failure):
            self._settle(answer, _declared(result))
            return
        self.serial = int(result[b"serial"])
        self.heard = self.clock.seconds()
        if self.trace.replica > 2:
            self.log.info(
                "[Replica] slave `{replica}' acknowledged serial {serial}",
                replica=self.name,
                serial=self.serial,
            )
        self._settle(answer, None)

    def push_overdue(self, now: float) -> bool:
        """Whether a push has waited longer than the session timeout for its answer."""
        return self.pushed_at is not None and now - self.pushed_at > self.timeout

    def time_out_push(self) -> None:
        """Fail the push waiting for its answer with a L{TimeoutError}."""
        answer = self._awaiting
        if answer is not None and not answer.called:
            self._settle(answer, Failure(TimeoutError()))
        else:
            self._awaiting = None
            self.pushed_at = None

    def send_snapshot(self, store: IRegistryStore, run: Run) -> Deferred[None]:
        """
        Replace the slave's database with the master's: streamed, a page of
        records at a time, encoded in C{run} (see L{SnapshotProducer}).
        """
        producer = SnapshotProducer(store, run)
        transfer = new_transfer_id("snapshot")
        self.database_id = producer.database_id
        started = self.clock.seconds()
        d = self._call(
            BeginSnapshot,
            transfer=transfer,
            database_id=producer.database_id,
            serial=producer.base_serial,
        )
        d.addCallback(lambda _: send_stream(self._call, transfer, producer.produce))

        def sent(sent: tuple[int, str]) -> Deferred[dict[str, Any]]:
            size, sha256 = sent
            if self.trace.replica > 1:
                self.log.info(
                    "[Replica] sent slave `{replica}' a snapshot of {size} bytes at serial "
                    "{serial} ({seconds:.3f} s)",
                    replica=self.name,
                    size=size,
                    serial=producer.serial,
                    seconds=self.clock.seconds() - started,
                )
            return self._call(
                InstallSnapshot,
                transfer=transfer,
                database_id=producer.database_id,
                serial=producer.serial,
                size=size,
                sha256=sha256,
            )

        def done(answer: dict[str, Any]) -> None:
            self.serial = answer["serial"]

        return d.addCallback(sent).addCallback(done)

    def drop(self, why: str) -> None:
        """Close the session; the slave will reconnect and catch up."""
        if self.closed:
            return
        self.closed = True
        self.live = False
        self.log.warn("[Replica] dropping slave `{replica}': {why}", replica=self.name, why=why)
        transport = self.protocol.transport
        if transport is not None:
            transport.abortConnection()


def _declared(failure: Failure) -> Failure:
    """An error answer as C{callRemote} raises it: a declared error by its code."""
    if not failure.check(amp.RemoteAmpError):
        return failure
    error = failure.value
    declared = PushChanges.reverseErrors.get(error.errorCode, amp.UnknownRemoteError)
    return Failure(declared(error.description))


class _Readied:
    """The pushes readied for one commit in progress (L{MasterReplication.prepare})."""

    def __init__(self, changes: Sequence[Change], texts: list[str]) -> None:
        self.first = changes[0].serial
        self.last = changes[-1].serial
        #: each change's JSON, for every slave
        self.texts = texts
        self.calls: dict[SlaveSession, ThreadCall] = {}
        #: every open session has a call here, and the write waits for two
        #: answers or more (L{send_from_thread} may then be quiet)
        self.every_session = False
        #: the batch as one push carries it, encoded once for every slave
        #: (change_to_json writes ASCII only: as many bytes on the wire as characters)
        self.payload = ("[" + ",".join(texts) + "]").encode("ascii")
        #: per database id, the push's bytes after the tag (L{after_ask}); None
        #: for what is encoded whole
        self.afters: dict[bytes, Optional[bytes]] = {}
        #: what went wrong on the store's thread, reported on the reactor
        self.thread_failure: Optional[Failure] = None

    def after_ask(self, database_id: bytes) -> Optional[bytes]:
        """The push's bytes after its tag (L{encoded_fields_after_ask}), once per database id."""
        if database_id not in self.afters:
            payload = self.payload
            if (
                type(database_id) is bytes
                and len(database_id) <= amp.MAX_VALUE_LENGTH
                and len(payload) <= amp.MAX_VALUE_LENGTH
            ):
                # the bytes encoded_fields_after_ask writes for this box, put
                # together from the parts every push shares (its pass over the
                # keys was a dozen calls per commit, before the commit starts)
                after: Optional[bytes] = b"".join(
                    (
                        _PUSH_HEAD,
                        _length(len(payload)),
                        payload,
                        _DATABASE_ID_KEY,
                        _length(len(database_id)),
                        database_id,
                        _PUSH_END,
                    )
                )
            else:
                after = encoded_fields_after_ask(
                    {
                        b"_command": PushChanges.commandName,
                        b"database_id": database_id,
                        b"changes": payload,
                        b"transfer": b"",
                    }
                )
            self.afters[database_id] = after
        return self.afters[database_id]

    def send_from_thread(self) -> bool:
        """
        On the store's thread, the commit durable: send each push that can
        go now. Never raises: the commit is durable whatever happens here,
        and the reactor sends what did not go.

        True if every open session's push went and the write waits for two
        answers or more: each slave's answer (or its connection's loss, or
        the watch's timer) wakes the reactor, which need not be woken for
        the commit itself (L{Quiet}), and hears of it at the first answer,
        while the write waits for the next. Else the reactor has pushes to
        send, or the commit's part on it would be on the write's path: it
        is woken as before.
        """
        went = self.every_session
        try:
            for session, call in self.calls.items():
                if session.closed:  # dropped meanwhile: the reactor withdraws it
                    went = False
                elif not call.send_from_thread():
                    went = False
        except Exception:  # the commit must not be reported failed: the reactor sends instead
            self.thread_failure = Failure()
            return False
        return went


def _settle(result: Any, d: Deferred[None]) -> None:
    """Fire C{d} with a push's outcome: None, or its failure."""
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(None)


class _Countdown:
    """
    Fires C{done} once every push given has been acknowledged or its slave
    dropped (L{MasterReplication.replicate} with MinAcks 0). Each push
    tells it directly if it can (L{SlaveSession.count_into}: the one
    waiting for its answer), else by one callback pair on its Deferred.
    """

    def __init__(
        self,
        unacknowledged: Callable[[SlaveSession, Failure], object],
        pushes: list[tuple[SlaveSession, Deferred[None]]],
    ) -> None:
        self.done: Deferred[None] = Deferred()
        self._unacknowledged = unacknowledged
        self._left = len(pushes)
        if not pushes:
            self.done.callback(None)
        for session, sent in pushes:
            session.count_into(sent, self)

    def acked(self, _: object = None) -> None:
        """One push acknowledged (or its slave dropped)."""
        self._left -= 1
        if not self._left:
            self.done.callback(None)

    def failed(self, failure: Failure, session: SlaveSession) -> None:
        """One push failed: its slave is dropped, and it counts as done."""
        self._unacknowledged(session, failure)
        self.acked()


class MasterReplication:
    """Tracks the slaves of this master and replicates every change to them."""

    log = Logger()

    def __init__(
        self,
        store: IRegistryStore,
        clock: IReactorTime,
        timeout: float,
        trace: TraceLevels,
        on_replicas_changed: Callable[[], None],
        min_acks: int = 0,
    ) -> None:
        self.store = store
        #: GridReg.Replication.MinAcks: slaves that must commit a change before it is acknowledged
        self.min_acks = min_acks
        self.clock = clock
        self.timeout = timeout
        self.trace = trace
        self.sessions: dict[str, SlaveSession] = {}
        #: every slave seen since start-up, by name: live, syncing, or why not
        self.statuses: dict[str, ReplicaStatus] = {}
        self._watch = LoopingCall(self._drop_silent)
        self._watch.clock = clock
        self._on_replicas_changed = on_replicas_changed
        #: where snapshots are encoded: a worker thread
        self.run_in_thread = in_thread(clock)
        #: the pushes readied for the commit in progress (L{prepare})
        self._readied: Optional[_Readied] = None

    def _set_status(self, name: str, state: str, reason: str = "") -> None:
        self.statuses[name] = ReplicaStatus(state, reason, self.clock.seconds())

    # -- sessions ----------------------------------------------------------------

    def register(
        self,
        protocol: amp.AMP,
        name: str,
        endpoints: dict[str, str],
        database_id: str,
        serial: int,
    ) -> dict[str, Any]:
        """
        Accept a slave and start catching it up.

        @raise DuplicateReplicaError: a live slave already has this name.
        """
        if name == "Master":
            raise DuplicateReplicaError("a second replica named Master: there is one master")
        old = self.sessions.get(name)
        if old is not None and not old.closed and old.protocol is not protocol:
            raise DuplicateReplicaError(f"a replica named `{name}' is already registered")
        # Nagle's algorithm held what follows the answer (a snapshot's first
        # command) until the slave's delayed ACK: 40 ms of every sync
        transport = getattr(protocol, "transport", None)
        set_no_delay(transport)
        if isinstance(protocol, PromptWriter) and type(transport) in PLAIN_TCP:
            protocol.lock_sends()  # the store's thread may push on it (L{prepare})
        same_lineage = database_id == self.store.database_id and serial <= self.store.serial
        session = SlaveSession(
            name,
            endpoints,
            protocol,
            serial if same_lineage else -1,
            self.store.database_id,
            self.clock,
            self.timeout,
            self.trace,
        )
        self.sessions[name] = session
        sync = "changes" if same_lineage else "snapshot"
        self._set_status(name, SYNCING, f"catching up by {sync} from serial {serial}")
        if self.trace.replica > 0:
            self.log.info(
                "[Replica] slave `{replica}' registered at serial {serial} "
                "(database {database_id}); syncing by {sync}",
                replica=name,
                serial=serial,
                database_id=database_id,
                sync=sync,
            )
        self._sync(session)
        return {"database_id": self.store.database_id, "serial": self.store.serial, "sync": sync}

    def _sync(self, session: SlaveSession) -> None:
        started = self.clock.seconds()

        def catch_up() -> Deferred[None]:
            # queued now, so that a change replicated meanwhile waits behind it;
            # sent on the next turn, once the slave has its registration's answer
            return deferLater(self.clock, 0, send)

        def send() -> Deferred[None]:
            if session.serial >= 0:
                d = self.store.changes_since(session.serial)

                def missing(changes: Optional[list[Change]]) -> Deferred[None]:
                    if changes is None:
                        return session.send_snapshot(self.store, self.run_in_thread)
                    return session.push(changes)

                return d.addCallback(missing)
            return session.send_snapshot(self.store, self.run_in_thread)

        def live(_: object) -> None:
            if session.closed:
                return
            session.live = True
            self._set_status(session.name, LIVE)
            if self.trace.replica > 0:
                self.log.info(
                    "[Replica] slave `{replica}' is up to date at serial {serial} "
                    "({seconds:.3f} s)",
                    replica=session.name,
                    serial=session.serial,
                    seconds=self.clock.seconds() - started,
                )
            self._on_replicas_changed()

        session.run(catch_up).addCallbacks(
            live, lambda f: self.drop(session, f"sync failed: {self._why(f)}")
        )

    def drop(self, session: SlaveSession, why: str) -> None:
        """Stop replicating to a slave that failed; it will reconnect and catch up."""
        was_live = session.live
        session.drop(why)
        if self.sessions.get(session.name) is session:
            del self.sessions[session.name]
            self._set_status(session.name, FAILED, why)
        if was_live:
            self._on_replicas_changed()

    def heard_from(self, protocol: amp.AMP, serial: int) -> bool:
        """A keepalive from the slave on C{protocol}: False if it has no session."""
        for session in self.sessions.values():
            if session.protocol is protocol and not session.closed:
                session.heard = self.clock.seconds()
                return True
        return False

    def start_watching(self) -> None:
        """
        Drop slaves that stay silent for a session timeout (half-open
        connections), or leave a push unanswered that long.
        """
        if not self._watch.running:
            self._watch.start(self.timeout / 4, now=False)

    def stop_watching(self) -> None:
        if self._watch.running:
            self._watch.stop()

    def _drop_silent(self) -> None:
        try:
            now = self.clock.seconds()
            for session in list(self.sessions.values()):
                if session.closed:
                    continue
                if session.push_overdue(now):
                    session.time_out_push()  # its write drops the session, saying why
                    if not session.closed:
                        why = f"no acknowledgement: no answer within {self.timeout:g} s"
                        self.drop(session, why)
                elif now - session.heard > self.timeout:
                    self.drop(session, f"nothing heard from it for {now - session.heard:.1f} s")
        except Exception:  # a LoopingCall that raises stops for good
            self.log.failure("Could not check the slaves' keepalives")

    def close_all(self, why: str) -> None:
        """Drop every slave session (the master stops, or is fenced)."""
        for session in list(self.sessions.values()):
            self.drop(session, why)

    def lost(self, protocol: amp.AMP) -> None:
        """A slave's connection is gone."""
        for name, session in list(self.sessions.items()):
            if session.protocol is protocol:
                session.closed = True
                session.live = False
                del self.sessions[name]
                self._set_status(name, DISCONNECTED, "the slave's connection was lost")
                if self.trace.replica > 0:
                    self.log.info("[Replica] slave `{replica}' disconnected", replica=name)
                self._on_replicas_changed()

    def live_slaves(self) -> dict[str, dict[str, str]]:
        return {n: s.endpoints for n, s in self.sessions.items() if s.live}

    # -- fan-out -------------------------------------------------------------------

    def replicate(self, changes: Change | Sequence[Change]) -> Deferred[None]:
        """
        Send committed changes (one group commit, in serial order) to every
        slave, as one message each. With C{min_acks} 0 (IceGrid's rule), fire
        once every slave that was live has acknowledged them or been dropped;
        with C{min_acks} N, fire once N slaves have committed them, or fail
        with L{QuorumError} when they cannot within the session timeout.
        """
        batch = [changes] if isinstance(changes, Change) else list(changes)
        pushes: list[Deferred[bool]] = []
        readied = self._readied_for(batch)
        # encoded once, for every slave
        texts = (
            readied.texts
            if readied is not None
            else ([change_to_json(c) for c in batch] if self.sessions else [])
        )
        calls = readied.calls if readied is not None else {}
        counted: list[tuple[SlaveSession, Deferred[None]]] = []
        for session in list(self.sessions.values()):
            if session.closed:
                continue
            call = calls.pop(session, None)
            sent = session.send(batch, texts) if call is None else session.prepared(call)
            if self.min_acks <= 0 and session.live:
                # counted after the loop (L{_Countdown}, L{SlaveSession.count_into})
                counted.append((session, sent))
                continue
            d: Deferred[bool] = sent.addCallbacks(
                lambda _: True, lambda f, s=session: self._unacknowledged(s, f)
            )
            pushes.append(d)
        if self.trace.replica > 1:
            self.log.info(
                "[Replica] replicating serial {serial} to {count} slave(s)",
                serial=batch[-1].serial,
                count=len(pushes) + len(counted),
            )
        for session, call in calls.items():
            # closed or lost while the commit ran: not sent, not counted, as before
            session.withdraw(call)
        if self.min_acks <= 0:
            return _Countdown(self._unacknowledged, counted).done
        return self._quorum(batch[-1], pushes)

    def prepare(self, changes: Sequence[Change]) -> Optional[Callable[[], bool]]:
        """
        On the reactor, before C{changes} (one group commit) commit: ready
        each idle session's push (L{SlaveSession.prepare_push}) and return
        what the store's thread calls once the commit is durable, which
        sends them (or None: nothing to send from there), and says whether
        the reactor may hear of the commit without being woken for it
        (L{_Readied.send_from_thread}). The pushes never
        leave before the master's own commit is durable; L{replicate}
        accounts for them as for any push (MinAcks included), and
        L{abandon} forgets them if the store refuses the commit.
        """
        if self._readied is not None:
            self.abandon()  # nothing can be readied for a commit that never came back
        if not self.sessions:
            return None
        readied = _Readied(changes, [change_to_json(c) for c in changes])
        every = True
        for session in list(self.sessions.values()):
            call = session.prepare_push(changes, readied)
            if call is not None:
                readied.calls[session] = call
            elif not session.closed:
                every = False  # its push is the reactor's to send
        # the reactor, not woken for the commit, hears of it at the first
        # acknowledgement: quiet only if the write waits for another one after
        # it, so that the commit's part on the reactor overlaps that wait
        # (with one slave to wait for it would be on the write's path)
        needed = len(readied.calls) if self.min_acks <= 0 else self.min_acks
        readied.every_session = every and needed >= 2
        self._readied = readied
        return readied.send_from_thread if readied.calls else None

    def abandon(self) -> None:
        """The store refused the commit L{prepare} readied pushes for: none is sent."""
        readied, self._readied = self._readied, None
        if readied is None:
            return
        for session, call in readied.calls.items():
            session.withdraw(call)
        if readied.thread_failure is not None:
            self.log.failure("Could not push from the store's thread", readied.thread_failure)

    def _readied_for(self, batch: list[Change]) -> Optional["_Readied"]:
        """What L{prepare} readied for exactly C{batch}, taken; anything else is abandoned."""
        readied = self._readied
        if readied is None:
            return None
        if readied.first != batch[0].serial or readied.last != batch[-1].serial:
            self.abandon()
            return None
        self._readied = None
        if readied.thread_failure is not None:
            self.log.failure("Could not push from the store's thread", readied.thread_failure)
        return readied

    def _why(self, failure: Failure) -> str:
        return failure_reason(failure, self.timeout)

    def _unacknowledged(self, session: SlaveSession, failure: Failure) -> bool:
        self.drop(session, f"no acknowledgement: {self._why(failure)}")
        return False

    def _quorum(self, change: Change, pushes: list[Deferred[bool]]) -> Deferred[None]:
        """Fire once C{min_acks} of C{pushes} succeeded; fail once that cannot happen."""
        needed = self.min_acks
        done: Deferred[None] = Deferred()
        counts = {"acked": 0, "finished": 0}

        def refuse() -> None:
            if not done.called:
                done.errback(
                    QuorumError(
                        f"serial {change.serial} is committed on the master, but only "
                        f"{counts['acked']} slave(s) committed it within "
                        f"{self.timeout:g} s and GridReg.Replication.MinAcks is {needed}; "
                        "the other slaves get it when they sync"
                    )
                )

        def finished(acked: bool) -> None:
            counts["finished"] += 1
            counts["acked"] += acked
            if counts["acked"] >= needed and not done.called:
                done.callback(None)
            elif counts["finished"] == len(pushes):
                refuse()

        for push in pushes:
            push.addCallback(finished)
        if len(pushes) < needed:
            refuse()
        else:
            timer = self.clock.callLater(self.timeout, refuse)
            done.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return done

    def announce(self, replicas: dict[str, dict[str, str]]) -> None:
        """Tell every live slave which replicas are active."""
        payload = json.dumps(replicas)
        serial = int(self.store.serial)
        for session in list(self.sessions.values()):
            if session.live:
                session.protocol.callRemote(
                    ReplicaSetChanged, replicas=payload, serial=serial
                ).addErrback(
                    lambda f, s=session: self.drop(s, f"replica set not delivered: {self._why(f)}")
                )
