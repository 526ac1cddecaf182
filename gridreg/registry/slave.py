# -*- test-case-name: tests.test_replication -*-
"""
A slave's side of replication: find the master, register, apply what it sends.

The slave keeps one session with the master through a C{ClientService}: a
lost master is looked for again with a capped, jittered back-off, through
C{Ice.Default.Locator} and through the master endpoints it stored itself,
so it also comes back when its locator does not lead to the master.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Optional, Sequence

from twisted.application import _client_service
from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, fail, maybeDeferred, succeed
from twisted.internet import endpoints
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from gridreg.protocol.boxes import FastBoxReader
from gridreg.protocol.prompt import NOW, PromptWriter, ThreadAnswer
from gridreg.protocol.chunking import TransferReceiver, TransferResponder
from gridreg.protocol.commands import (
    PROTOCOL_VERSION,
    BeginSnapshot,
    ForwardAdapterRegistration,
    Hello,
    InstallSnapshot,
    PushChanges,
    RegisterReplica,
    ReplicaKeepAlive,
    ReplicaSetChanged,
)
from gridreg.protocol.errors import (
    DivergedError,
    DuplicateReplicaError,
    SyncError,
    TransferError,
    declared_error,
    failure_reason,
)
from gridreg.client.late_loss import LOSS_NOTICE_DELAY, LateLossEndpoint, late_loss_protocol
from gridreg.client.warm import QuietAMP, QuietClientService, warm_loss_path
from gridreg.ice.server import set_no_delay
from gridreg.log_files import open_at, read_at, stdio_path
from gridreg.protocol.registry_file_commands import OpenRegistryFile, ReadRegistryFile
from gridreg.registry.epochs import NO_EPOCH, Epoch, EpochHistory
from gridreg.registry._slave_session_machine import build_slave_session
from gridreg.registry.pushed_changes import decode_changes
from gridreg.registry.replica_status import ReplicaStatus
from gridreg.registry.slave_wakeups import LossWakeups
from gridreg.registry.snapshot_stream import Run, SnapshotLoad, in_thread
from gridreg.registry.state import RegistryState
from gridreg.registry.trace import TraceLevels
from gridreg.store.interfaces import IRegistryStore, SerialGapError

LocateMaster = Callable[[], Deferred[Sequence[IStreamClientEndpoint]]]

#: how long a refused registration's connection is kept before trying again; doubles
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 5.0

#: the most bytes a master may have in transit to a slave at once (snapshots included)
MAX_REPLICATION_BYTES = 2 * 1024**3

#: seconds between losing the master and acting on it beyond the session itself (the
#: log line, the replica set without the master): the clients that fail over to this
#: slave arrive in that very millisecond, and its reactor serves them first
LOSS_REACTION_DELAY = 0.05


@implementer(IStreamClientEndpoint)
class MasterEndpoint:
    """Connects to wherever the master is now: looked up anew on every attempt."""

    def __init__(self, locate: LocateMaster, clock: Any, timeout: float) -> None:
        self._locate = locate
        self._clock = clock
        #: for each candidate, TLS included: a hung master accepts TCP, then nothing
        self._timeout = timeout
        self._attempts = 0

    def connect(self, factory: Factory) -> Deferred[Any]:
        """
        Try the candidates in order, starting one further each attempt: a
        stale master that answers (and is refused) must not hide the others.
        """

        async def attempt() -> Any:
            candidates = list(await self._locate())
            if candidates:
                start = self._attempts % len(candidates)
                candidates = candidates[start:] + candidates[:start]
            self._attempts += 1
            last: Optional[BaseException] = None
            for endpoint in candidates:
                try:
                    return await endpoint.connect(factory).addTimeout(self._timeout, self._clock)
                except Exception as exc:  # try the next address of the master
                    last = exc
            raise ConnectError(string=f"the master is unreachable: {last or 'no known endpoint'}")

        return Deferred.fromCoroutine(attempt())


#: the wrappers between a slave's connection to its master and its protocol,
#: each passing data on as it is (the endpoint's, the late loss's, the
#: ClientService's), by class, with the attribute that holds what each wraps
_DATA_WRAPPERS: dict[type, str] = {
    kind: inner
    for kind, inner in (
        (getattr(endpoints, "_WrappingProtocol", None), "_wrappedProtocol"),
        (late_loss_protocol, "_late_inner"),
        (getattr(_client_service, "_ReconnectingProtocolProxy", None), "_protocol"),
    )
    if kind is not None
}


def data_straight_to(protocol: Any) -> bool:
    """
    Make what is read from C{protocol}'s connection go straight to it, past
    the wrappers that only pass it on (three calls of a slave's 145 per
    write): the C{dataReceived} of the outermost, as the transport (or the
    TLS layer, which is the protocol's transport) calls it, is C{protocol}'s.
    Everything else (the loss first of all) still goes through them.
    Nothing changes, and False, unless every wrapper is one of
    L{_DATA_WRAPPERS}.
    """
    transport = protocol.transport
    tls = sys.modules.get("twisted.protocols.tls")  # not loaded: no TLS layer
    outer: Any
    if tls is not None and isinstance(transport, tls.TLSMemoryBIOProtocol):
        outer = transport.wrappedProtocol  # which it hands what it decrypts
    else:
        outer = getattr(transport, "protocol", None)
    wrapper = outer
    while wrapper is not protocol:
        inner = _DATA_WRAPPERS.get(type(wrapper))
        if inner is None:
            return False
        wrapper = getattr(wrapper, inner, None)
    if outer is not protocol:
        outer.dataReceived = protocol.dataReceived
    return True


class SlaveProtocol(PromptWriter, FastBoxReader, TransferResponder, QuietAMP):
    """The slave's connection to its master: the master pushes, the slave applies."""

    #: one acknowledgement per push: each leaves at once (L{gridreg.protocol.prompt})
    prompt = NOW

    def __init__(self, slave: "SlaveReplication") -> None:
        super().__init__()
        self.slave = slave
        self.transfers = TransferReceiver(MAX_REPLICATION_BYTES, max_transfers=4)
        #: the snapshots streaming in on this connection, by transfer
        self.snapshots: dict[str, SnapshotLoad] = {}
        self.lost = False

    def connectionMade(self) -> None:
        super().connectionMade()
        # an acknowledgement must not wait for the master's delayed ACK of the one before
        set_no_delay(self.transport)
        self.lock_sends()  # the store's thread may acknowledge (L{ThreadAnswer})
        data_straight_to(self)

    @PushChanges.responder
    def push_changes(
        self,
        database_id: str,
        changes: str,
        transfer: str,
    ) -> Deferred[dict[str, int]]:
        """A push as AMP dispatches it: through a transfer, or not asking for its answer."""

        def apply() -> Deferred[dict[str, int]]:
            payload = self.transfers.take(transfer).decode("utf-8") if transfer else changes
            return self.slave.apply_changes(database_id, payload)

        return maybeDeferred(apply).addErrback(self.slave.failed)

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        """
        A push that asks for its answer, the hot box of replication, goes
        to L{_push_received}; every other box (a push without C{_ask} or
        through a transfer included) goes through AMP's dispatch.
        """
        if (
            box.get(b"_command") == b"PushChanges"
            and b"_ask" in box
            and b"_answer" not in box
            and b"_error" not in box
        ):
            self._push_received(box)
        else:
            super().ampBoxReceived(box)

    def _push_received(self, box: amp.AmpBox) -> None:
        """
        L{push_changes} on the raw box, without AMP's dispatch (its
        responder's look-up, C{maybeDeferred}, and three more steps on the
        push's Deferred: the answer's tag, its send, the unhandled error):
        the answer box, or the error box of a declared error, is the one
        AMP's C{_commandReceived} would send, sent as it sends it. A box
        whose arguments do not decode, or whose changes come as a transfer,
        goes through AMP's dispatch, which decodes it (and says so).
        """
        try:
            database_id = box[b"database_id"].decode("utf-8")
            changes = box[b"changes"].decode("utf-8")
            transfer = box[b"transfer"]
        except (KeyError, UnicodeDecodeError):
            return super().ampBoxReceived(box)
        if transfer:
            return super().ampBoxReceived(box)
        ask = box[b"_ask"]
        # the acknowledgement, which the store's thread may send once durable
        answer = ThreadAnswer(self, ask)

        def reply(result: dict[str, int]) -> None:
            """The commit is durable (the lock released): its answer goes, unless it went."""
            serial = b"%d" % result["serial"]
            if answer.get(b"serial") != serial:
                answer[b"serial"] = serial  # not armed: no commit ran (nothing new), or it differs
            try:
                answer._sendTo(self.boxSender)
            except (amp.ProtocolSwitched, amp.ConnectionLost):
                pass  # as AMP's _safeEmit: nothing to answer on

        d = self.slave.apply_changes(database_id, changes, answer, reply=reply)
        d.addErrback(self._push_failed, ask)
        return None

    def _push_failed(self, failure: Failure, ask: bytes) -> None:
        """
        A push that could not be applied, answered (L{_answer_failure}); what
        escapes that goes to AMP's C{unhandledError}, as from an errback of
        its own after this one, without that errback's step on every push.
        """
        try:
            self._answer_failure(failure, ask)
        except BaseException:  # as the push's Deferred would catch it for the next errback
            self.unhandledError(Failure())

    def _answer_failure(self, failure: Failure, ask: bytes) -> None:
        """
        Said (L{SlaveReplication.failed}, which makes it a L{SyncError}),
        then answered with the error box AMP sends for a declared error.
        """
        error = declared_error(self.slave.failed(failure), PushChanges).value
        box = amp.QuitBox() if error.fatal else amp.AmpBox()
        box[amp.ERROR] = ask
        box[amp.ERROR_DESCRIPTION] = error.description.encode("utf-8", "replace")
        box[amp.ERROR_CODE] = error.errorCode
        try:
            box._sendTo(self.boxSender)
        except (amp.ProtocolSwitched, amp.ConnectionLost):
            pass

    @BeginSnapshot.responder
    def begin_snapshot(
        self, transfer: str, database_id: str, serial: int
    ) -> Deferred[dict[str, Any]]:
        def begin() -> Deferred[dict[str, Any]]:
            return self.slave.begin_snapshot(self, transfer, database_id, serial)

        return maybeDeferred(begin).addErrback(self.slave.failed)

    @InstallSnapshot.responder
    def install_snapshot(
        self, transfer: str, database_id: str, serial: int, size: int, sha256: str
    ) -> Deferred[dict[str, int]]:
        def install() -> Deferred[dict[str, int]]:
            load = self.snapshots.pop(transfer, None)
            if load is None:
                raise SyncError(f"no snapshot is streaming as `{transfer}'")
            try:
                self.transfers.end_stream(transfer, size, sha256)
            except Exception:
                self.slave.abandon_snapshot(load, "the stream was damaged")
                raise
            return self.slave.install_snapshot(load, database_id, serial)

        return maybeDeferred(install).addErrback(self.slave.failed)

    @ReplicaSetChanged.responder
    def replica_set_changed(self, replicas: str, serial: Optional[int] = None) -> dict[str, Any]:
        self.slave.set_active(json.loads(replicas), serial)
        return {}

    # == log files: the master reads this slave's own (a block of its own) ==========

    @OpenRegistryFile.responder
    def open_registry_file(self, file: str, count: int) -> Deferred[dict[str, Any]]:
        def opened() -> Deferred[int]:
            path = stdio_path(self.slave.properties, file, os.getcwd())
            return open_at(self.slave.reactor, path, count)

        return maybeDeferred(opened).addCallback(lambda offset: {"offset": offset})

    @ReadRegistryFile.responder
    def read_registry_file(self, file: str, offset: int, length: int) -> Deferred[dict[str, Any]]:
        def read() -> Deferred[tuple[bytes, int]]:
            path = stdio_path(self.slave.properties, file, os.getcwd())
            return read_at(self.slave.reactor, path, offset, length)

        return maybeDeferred(read).addCallback(lambda r: {"data": r[0], "size": r[1]})

    # == end of log files ============================================================

    def itself(self) -> "SlaveProtocol":
        """This protocol, also when called through a wrapper that proxies it."""
        return self

    def loss_noticed(self, reason: Failure) -> None:
        """
        The master's connection is gone: the session says so at once (no
        write is forwarded to a dead master); the rest of the loss, and the
        ClientService's retry, come L{LOSS_NOTICE_DELAY} later
        (L{LateLossEndpoint}), after the clients failing over meanwhile.
        """
        self.slave.master_lost(self)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.lost = True
        self.transfers.clear()
        loads, self.snapshots = self.snapshots, {}
        for load in loads.values():
            self.slave.abandon_snapshot(load, "the master's connection was lost")
        self.slave.master_lost(self)


def _released(result: Any, lock: DeferredLock) -> Any:
    """Release C{lock}, passing C{result} on (as C{DeferredLock.run} does)."""
    lock.release()
    return result


class SlaveReplication(Service):
    """Keeps this slave registered with the master and its database in sync."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        name: str,
        store: IRegistryStore,
        state: RegistryState,
        locate_master: LocateMaster,
        own_endpoints: Callable[[], dict[str, str]],
        on_active: Callable[[list[str], Optional[int]], None],
        trace: TraceLevels,
        request_timeout: float = 5.0,
        check_master: Optional[Callable[[Any], None]] = None,
        session_timeout: float = 30.0,
        properties: Any = None,
        on_snapshot: Optional[Callable[[bool], None]] = None,
        decode_in: Optional[Run] = None,
        loss_notice_delay: float = LOSS_NOTICE_DELAY,
    ) -> None:
        #: the slave's properties: its Ice.StdOut and Ice.StdErr, which the master may read
        self.properties = properties
        #: told True once the state answers from a snapshot (before this replica's
        #: commit of it), False if that commit failed and the state went back
        self.on_snapshot = on_snapshot or (lambda loaded: None)
        #: where a snapshot streaming in is decoded: a worker thread
        self.decode_in = decode_in or in_thread(reactor)
        #: IceGrid.Registry.ReplicaSessionTimeout: keepalives go 4 times as often
        self.session_timeout = session_timeout
        self._keepalive = LoopingCall(self._keep_alive)
        self._keepalive.clock = reactor
        #: the newest epoch of a master this slave registered with
        self.seen_epoch = NO_EPOCH
        self._retry_delay = FIRST_RETRY_DELAY
        self.reactor = reactor
        self.replica_name = name
        self.store = store
        self.state = state
        self.own_endpoints = own_endpoints
        self.on_active = on_active
        self.trace = trace
        self.request_timeout = request_timeout
        self.check_master = check_master
        #: how each snapshot streaming in gives back the write lock, once
        self._releases: dict[SnapshotLoad, Callable[[], None]] = {}
        #: the connection this slave registered on, until it is lost
        self._connection: Optional[SlaveProtocol] = None
        #: the reaction to the master's loss, due L{LOSS_REACTION_DELAY} after it
        self._loss_reaction: Optional[Any] = None
        self._session = build_slave_session(reactor)
        #: the reactor thread preempts again while the master's clients fail over to it
        self.wakeups = LossWakeups(reactor)
        self._lock = DeferredLock()
        self._client = QuietClientService(
            # the clients failing over at the master's loss are answered before it is acted on
            LateLossEndpoint(
                MasterEndpoint(locate_master, reactor, request_timeout),
                reactor,
                loss_notice_delay,
            ),
            _SlaveFactory(self),
            retryPolicy=backoffPolicy(initialDelay=0.2, maxDelay=5.0, factor=1.5),
            clock=reactor,
            prepareConnection=self._register,
        )

    def startService(self) -> None:
        super().startService()
        # the master's loss must not pay for first-time interface look-ups
        warm_loss_path(SlaveProtocol, late_loss_protocol)
        self._client.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._keepalive.running:
            self._keepalive.stop()
        if self._loss_reaction is not None and self._loss_reaction.active():
            self._loss_reaction.cancel()
        self._loss_reaction = None
        self.wakeups.stop()
        connection = self._connection
        if connection is not None and connection.transport is not None:
            # no graceful close: a hung master would never finish it
            connection.transport.abortConnection()
        return self._client.stopService()

    def _keep_alive(self) -> Optional[Deferred[None]]:
        """
        Tell the master this slave is alive; a master silent for a session
        timeout is taken for gone: drop the connection and look for it again.
        """
        connection = self._connection
        if connection is None:
            return None

        def answered(answer: dict[str, Any]) -> None:
            self.seen_epoch = max(self.seen_epoch, Epoch.from_wire(answer["epoch"]))

        def unanswered(failure: Failure) -> None:
            if self._connection is connection and connection.transport is not None:
                self.log.warn(
                    "[Replica] the master did not answer a keepalive ({reason}): "
                    "dropping the session and looking for it again",
                    reason=failure_reason(failure),
                )
                connection.transport.abortConnection()

        d = connection.callRemote(ReplicaKeepAlive, serial=self.store.serial)
        d.addTimeout(self.session_timeout, self.reactor)
        return d.addCallbacks(answered, unanswered)

    # -- registration --------------------------------------------------------------

    def _register(self, protocol: SlaveProtocol) -> Deferred[None]:
        async def register() -> None:
            greeting = await protocol.callRemote(
                Hello, version=PROTOCOL_VERSION, role="registry", name=self.replica_name
            ).addTimeout(self.request_timeout, self.reactor)
            # the TLS handshake is over once the master has answered: check who it is
            if self.check_master is not None:
                self.check_master(protocol.transport)
            master_epoch = Epoch.from_wire(greeting["epoch"])
            if master_epoch < self.epoch():
                raise StaleMasterError(
                    f"the master at {protocol.transport.getPeer()} is of epoch {master_epoch}, "
                    f"older than epoch {self.epoch()} this replica has seen: refusing it"
                )
            if not greeting["master"]:
                raise SyncError(
                    f"`{greeting['replica']}' answered at the master's address but does not "
                    "act as the master (a slave, or a fenced master)"
                )
            answer = await protocol.callRemote(
                RegisterReplica,
                name=self.replica_name,
                endpoints=json.dumps(self.own_endpoints()),
                database_id=self.store.database_id,
                serial=self.store.serial,
                epoch=self.held_epoch().to_wire(),
            ).addTimeout(self.request_timeout, self.reactor)
            self.seen_epoch = max(self.seen_epoch, Epoch.from_wire(answer["epoch"]))
            # a loss not acted on yet is over: its log line now, no empty replica set
            self._react_to_loss(replica_set=False)
            # ClientService hands us a proxy of our protocol: keep the protocol
            # itself, which is what master_lost() is called with
            self._connection = protocol.itself()
            self._session.registered(self._connection, answer["sync"])
            if not self._keepalive.running:
                self._keepalive.start(self.session_timeout / 4, now=False)
            if self.trace.replica > 0:
                self.log.info(
                    "[Replica] registered with the master (serial {serial} there, "
                    "{mine} here); syncing by {sync}",
                    serial=answer["serial"],
                    mine=self.store.serial,
                    sync=answer["sync"],
                )

        def refused(failure: Failure) -> None:
            reason = f"registration with the master failed: {failure_reason(failure)}"
            operator = failure.check(DuplicateReplicaError, DivergedError, StaleMasterError)
            if operator:
                self._session.refused(reason)
            else:
                self._session.failed(reason)
            delay = self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, MAX_RETRY_DELAY)
            if operator:
                self.log.critical(
                    "Replica `{replica}' cannot sync with this master: {reason} "
                    "(asking again in {delay:g} s)",
                    replica=self.replica_name,
                    reason=failure_reason(failure),
                    delay=delay,
                )
            else:
                self.log.info(
                    "[Replica] registration with the master failed: {reason} "
                    "(trying again in {delay:g} s)",
                    reason=failure_reason(failure),
                    delay=delay,
                )
            # The connection is closed here, after the delay, not by failing
            # prepareConnection: ClientService keeps a refused connection
            # open and then cannot handle its loss. Aborted, not closed: a
            # hung master would never finish a graceful TLS close.
            transport = protocol.transport
            if transport is not None:
                self.reactor.callLater(delay, transport.abortConnection)

        def registered(_: None) -> None:
            self._retry_delay = FIRST_RETRY_DELAY

        return Deferred.fromCoroutine(register()).addCallbacks(registered, refused)

    @property
    def status(self) -> ReplicaStatus:
        """This slave's replication, as C{registry list} shows it."""
        return self._session.status()

    @property
    def master(self) -> Optional[SlaveProtocol]:
        """The master's connection while the session is good (Syncing or Live)."""
        master: Optional[SlaveProtocol] = self._session.master()
        return master

    def master_lost(self, protocol: SlaveProtocol) -> None:
        """
        The session's connection is gone: this slave looks for the master at
        once (its session says so), and logs the loss and takes the master
        out of its replica set L{LOSS_REACTION_DELAY} later, so that the
        clients failing over to it meanwhile are served first.
        """
        if self._connection is protocol:
            self._connection = None
            self.wakeups.master_lost()
            self._session.lost()
            if self._loss_reaction is None:
                self._loss_reaction = self.reactor.callLater(
                    LOSS_REACTION_DELAY, self._react_to_loss
                )

    def _react_to_loss(self, replica_set: bool = True) -> None:
        """Say the master was lost; without C{replica_set}, leave the replica set to the master."""
        call, self._loss_reaction = self._loss_reaction, None
        if call is None:
            return
        if call.active():
            call.cancel()
        self.log.warn("[Replica] lost the session with the master; looking for it again")
        if replica_set:
            self.on_active([], None)

    def set_active(self, replicas: dict[str, Any], serial: Optional[int] = None) -> None:
        """
        The master's list of active replicas, and its serial when it sent it
        (None from an older master): the role serves Ice clients once this
        replica holds that serial, if it waited for the list.
        """
        if self.replica_name in replicas:
            self._session.caught_up()
        self.on_active(sorted(replicas), serial)

    def held_epoch(self) -> Epoch:
        """The epoch of the last change in this replica's database."""
        return EpochHistory.from_meta(self.state.meta).current

    def epoch(self) -> Epoch:
        """The newest epoch this replica has seen: a master older than it is refused."""
        return max(self.held_epoch(), self.seen_epoch)

    def failed(self, failure: Failure) -> Failure:
        """A push or snapshot from the master could not be applied: say why."""
        failure = _as_sync_error(failure)
        reason = failure.getErrorMessage()
        self._session.failed(f"could not apply what the master sent: {reason}")
        self.log.error(
            "[Replica] could not apply what the master sent: {reason}; the master will "
            "drop the session and this replica will sync again",
            reason=reason,
        )
        return failure

    # -- applying ------------------------------------------------------------------

    def apply_changes(
        self,
        database_id: str,
        payload: str,
        answer: Optional[ThreadAnswer] = None,
        reply: Optional[Callable[[dict[str, int]], Any]] = None,
    ) -> Deferred[Any]:
        """
        Store a batch the master pushed, in one transaction (one fsync), and
        answer once it is durable here: the acknowledgement the master's
        write waits for. With C{answer}, the acknowledgement's box, the
        store's thread sends it itself as soon as the commit is durable, if
        the state has taken the batch by then (L{ThreadAnswer}): the
        reactor's wake-up is then off the write's path.

        The batch is visible to lookups as soon as it is decoded, while this
        replica's own commit runs: the master pushes a change only once it
        is durable there, so nothing a lookup sees here can be lost by the
        grid. If this replica's commit fails, the state is loaded again
        from what its store holds (the master drops the session and this
        replica catches up when it registers again).

        With C{reply}, the result is C{reply} of the answer, made where the
        commit's result is handled (a push's answer box): at one write in
        flight the commit's callback releases the lock and replies, in one
        step of its Deferred rather than three.
        """
        lock = self._lock

        def replied(d: Deferred[Any]) -> Deferred[Any]:
            return d if reply is None else d.addCallback(reply)

        def finish(d: Deferred[Any], held: bool) -> Deferred[Any]:
            """An outcome other than a commit's, while held: the lock released, then the reply."""
            return replied(d.addBoth(_released, lock)) if held else d

        def apply(held: bool) -> Deferred[Any]:
            if database_id != self.store.database_id:
                raise SyncError(
                    f"changes of database {database_id}, "
                    f"this replica holds {self.store.database_id}"
                )
            serial = int(self.store.serial)
            # each put keeps its value's text from the push: the store saves it as it is
            changes = decode_changes(payload)
            if changes and changes[0].serial <= serial:  # some held already: those are skipped
                changes = [change for change in changes if change.serial > serial]
            if not changes:
                return finish(succeed({"serial": serial}), held)
            if changes[0].serial != serial + 1:
                # nothing is in flight while the lock is held: the store would refuse it
                raise SerialGapError(serial + 1, changes[0].serial)
            on_durable = None
            if answer is not None:
                answer[b"serial"] = b"%d" % changes[-1].serial
                on_durable = answer.send_from_thread
            # decoded just now, so stored as they are; submitted first, so the
            # commit runs while the state takes the batch
            committed = self.store.apply_many(changes, copy=False, on_durable=on_durable)
            try:
                for change in changes:
                    self.state.apply(change.mutations)
            except Exception:
                broken = Failure()
                return finish(committed.addBoth(lambda _: self._reload(broken)), held)
            if answer is not None:
                answer.arm()  # the state has the batch: its acknowledgement may go once durable

            def applied(_: None) -> dict[str, int]:
                if self.trace.replica > 2:
                    for change in changes:
                        self.log.info("[Replica] applied serial {serial}", serial=change.serial)
                return {"serial": int(self.store.serial)}

            if not held:
                return committed.addCallbacks(applied, self._reload)
            trace_applied = self.trace.replica > 2

            def settled(_: None) -> Any:
                result = applied(None) if trace_applied else {"serial": int(self.store.serial)}
                if lock.waiting:
                    lock.release()  # the next in line runs
                else:
                    lock.locked = False  # released as it was taken, without the lock's call
                return result if reply is None else reply(result)

            def unsettled(failure: Failure) -> Deferred[Any]:
                return self._reload(failure).addBoth(_released, lock)

            return committed.addCallbacks(settled, unsettled)

        if lock.locked:
            # the last push's commit, durable and acknowledged from the store's
            # thread, may wait for the reactor's turn (L{Quiet}): its lock goes
            # first (the lean reactor has handed it over before this event)
            self.store.deliver_ready()
        if lock.locked:  # a snapshot streams in, or a push is still committing
            return replied(lock.run(apply, False))
        # held as its job would hold it, without the lock's own Deferreds:
        # every push at one write in flight comes here
        lock.locked = True
        try:
            return apply(True)
        except BaseException:
            lock.release()
            return fail()

    def _reload(self, failure: Failure) -> Deferred[Any]:
        """The state took a batch the store did not keep: load what the store holds, then fail."""

        def loaded(stored: Any) -> None:
            self.state.load(stored.records)

        def reloaded(result: Any) -> Failure:
            if isinstance(result, Failure):
                self.log.failure("Could not reload the state from the store", result)
            return failure

        return self.store.snapshot().addCallback(loaded).addBoth(reloaded)

    def begin_snapshot(
        self, protocol: SlaveProtocol, transfer: str, database_id: str, serial: int
    ) -> Deferred[dict[str, Any]]:
        """
        Start installing a snapshot of the master's database that streams in
        as C{transfer}: decoded and bulk-loaded in a worker thread, chunk by
        chunk; kept once L{install_snapshot} ends it. This replica's write
        lock is held from here until it is installed or abandoned, so
        nothing else touches the store meanwhile (an abandoned snapshot's
        rollback included).
        """
        if protocol.snapshots:
            raise SyncError("a snapshot is already streaming in on this connection")

        def start(_: object) -> dict[str, Any]:
            if protocol.lost:
                self._lock.release()
                raise SyncError("the master's connection was lost")
            # decoded in a worker thread, stored where the store uses its file
            load = SnapshotLoad(self.store, self.store.run_with_file, self.decode_in)
            released: list[bool] = []

            def release() -> None:
                if not released:
                    released.append(True)
                    self._lock.release()

            self._releases[load] = release
            protocol.snapshots[transfer] = load
            protocol.transfers.begin_stream(
                transfer, lambda data: load.feed(data).addErrback(self._chunk_failed)
            )
            if self.trace.replica > 0:
                self.log.info(
                    "[Replica] receiving a snapshot of database {database_id} from serial {serial}",
                    database_id=database_id,
                    serial=serial,
                )
            return {}

        return self._lock.acquire().addCallback(start)

    def _chunk_failed(self, failure: Failure) -> None:
        """A chunk of a snapshot could not be installed: say why, refuse it (declared)."""
        raise TransferError(self.failed(failure).getErrorMessage())

    def _released(self, load: SnapshotLoad) -> Callable[[Any], Any]:
        def release(result: Any) -> Any:
            self._releases.pop(load, lambda: None)()
            return result

        return release

    def abandon_snapshot(self, load: SnapshotLoad, why: str) -> None:
        """Roll a snapshot back (nothing of it is kept), then let writes go on."""
        d = load.abort(why).addBoth(self._released(load))
        d.addErrback(lambda f: self.log.failure("Could not abandon a snapshot", f))

    def install_snapshot(
        self, load: SnapshotLoad, database_id: str, serial: int
    ) -> Deferred[dict[str, int]]:
        """
        Install a snapshot that has streamed in: the state takes it as soon
        as it is decoded and checked (complete, the one announced) and
        answers lookups from it while this replica commits it; the answer,
        which is when the master counts this replica as holding it, waits
        for the commit. The master streams what it has committed, so what
        lookups see here is durable in the grid, as with a push
        (L{apply_changes}); if this replica's commit fails, the state is
        loaded again from what its store holds.
        """

        def serve(records: Any) -> Deferred[dict[str, int]]:
            self.state.load(records)
            self.on_snapshot(True)
            return load.commit().addCallbacks(committed, self._unload)

        def committed(_: None) -> dict[str, int]:
            if self.trace.replica > 0:
                self.log.info(
                    "[Replica] loaded a snapshot of database {database_id} at serial {serial}",
                    database_id=database_id,
                    serial=serial,
                )
            return {"serial": self.store.serial}

        d = load.records(database_id, serial).addCallback(serve)
        return d.addBoth(self._released(load))

    def _unload(self, failure: Failure) -> Deferred[Any]:
        """A snapshot the state took was not kept: back to what the store holds."""

        def reloaded(result: Any) -> Any:
            self.on_snapshot(False)
            return result

        return self._reload(failure).addBoth(reloaded)

    # -- forwarding ----------------------------------------------------------------

    def forward_registration(
        self, adapter_id: str, replica_group_id: str, proxy: str
    ) -> Deferred[dict[str, Any]]:
        """Hand a registration that reached this slave to the master."""
        if self.master is None:
            return fail(SyncError("the master is unreachable; registrations need the master"))
        return self.master.callRemote(
            ForwardAdapterRegistration,
            adapter_id=adapter_id,
            replica_group_id=replica_group_id,
            proxy=proxy,
        ).addTimeout(self.request_timeout, self.reactor)


class StaleMasterError(SyncError):
    """The replica answering as master is of an older epoch than this slave has seen."""


def _as_sync_error(failure: Failure) -> Failure:
    if failure.check(SyncError):
        return failure
    return Failure(SyncError(failure.getErrorMessage()))


class _SlaveFactory(Factory):
    noisy = False

    def __init__(self, slave: SlaveReplication) -> None:
        self.slave = slave

    def buildProtocol(self, addr: Any) -> SlaveProtocol:
        return SlaveProtocol(self.slave)
