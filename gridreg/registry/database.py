# -*- test-case-name: tests.test_applications,tests.test_replication,tests.test_admin -*-
"""
The registry's write path: validate a change, commit it to the store, then
apply it to the in-memory state.

A write's Deferred fires only after the store has made the change durable,
so whatever a caller was told succeeded survives a crash. Writes are
validated one at a time, each against the state the previous one left.

Group commit: the writes that arrive while the store is committing wait;
once that commit is durable and announced, they are validated one after
the other, each staged (applied to the lookup indexes, listeners not told
yet) so the next is validated against it, and all go into the next
transaction (one fsync); the slaves get them as one batch. Once a batch is
durable its writes are replicated (pushed first) and announced, in serial
order, and the state then holds exactly what is durable, so listeners (nodes, observers)
never see a write that could still be lost. Lookups can find a staged
write during its commit, before it is durable; it is acknowledged only
once durable (and replicated as the rules say). If the store refuses a
batch, its writes fail and the state is reloaded from the store before the
next write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar

from twisted.internet.defer import Deferred, DeferredLock, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.exceptions import (
    AdapterNotFoundException,
    ApplicationNotExistException,
    DeploymentException,
    InvalidReplicaGroupIdException,
    ObjectExistsException,
    ObjectNotRegisteredException,
)
from gridreg.ice.types import Identity, Proxy
from gridreg.protocol.errors import NotFoundError, NotMasterError, RegistryUserError
from gridreg.registry.application_metadata import created
from gridreg.registry.applications import APPLICATION
from gridreg.registry.state import (
    AdapterInfo,
    ObjectInfo,
    RegistryState,
    Staged,
    adapter_mutation,
    object_mutation,
)
from gridreg.registry.trace import TraceLevels
from gridreg.store.interfaces import IRegistryStore
from gridreg.store.records import Change, Mutation, copied, encode_value

if TYPE_CHECKING:  # the descriptor model is imported once an application is
    from gridreg.registry.descriptors import DerivedApplication


#: the default bound on one change's values (JSON bytes), far above any descriptor
#: that fits in an Ice message or an admin upload
MAX_CHANGE_BYTES = 64 * 1024 * 1024


def _answer_with(_: None, answer: Deferred[Optional[Change]], change: Change) -> None:
    """A write's acknowledgement came: its caller hears of C{change}."""
    answer.callback(change)


def _with_texts(mutations: list[Mutation]) -> tuple[list[Mutation], int]:
    """
    C{mutations}, each put with its JSON text (the one the store saves and
    the slaves get as it is), and their texts' size: each value through
    JSON once. A put that has its text already was made with it, its value
    its own (L{copied}, L{object_mutation}): not copied again. One mutation
    (every admin's add) without the lists' passes over it.

    @raise ValueError: a value is not strict JSON.
    """
    if len(mutations) == 1:
        m = mutations[0]
        if m.value is None:
            return [m], 0
        if m.text is not None:
            return [m], len(m.text)
        text = encode_value(m)
        return [copied(m, text)], len(text)
    encoded = [None if m.value is None else encode_value(m) for m in mutations]
    size = sum(len(text) for text in encoded if text is not None)
    return [
        m if text is None or m.text is not None else copied(m, text)
        for m, text in zip(mutations, encoded)
    ], size


def _fork(shared: Deferred[None], count: int) -> list[Deferred[None]]:
    """C{count} Deferreds that each fire with C{shared}'s outcome."""
    forks: list[Deferred[None]] = [Deferred() for _ in range(count)]

    def fire(result: Any) -> None:
        for fork in forks:
            if isinstance(result, Failure):
                fork.errback(result)
            else:
                fork.callback(result)

    shared.addBoth(fire)
    return forks


class _Queued:
    """
    A validated, staged write waiting for its transaction.

    Its Deferred, C{durable}, fires once the write is durable: with the
    change, once the slaves also acknowledged it (C{acknowledged}, every
    write of L{RegistryDatabase._serially}); else at once with the change
    and its acknowledgement's Deferred (L{RegistryDatabase.write_locked}).
    One Deferred either way: a second one, chained, was about eight
    Python calls on every write.
    """

    __slots__ = ("mutations", "staged", "durable", "acknowledged")

    def __init__(self, mutations: list[Mutation], staged: Staged, acknowledged: bool) -> None:
        self.mutations = mutations
        self.staged = staged
        self.acknowledged = acknowledged
        self.durable: Deferred[Any] = Deferred()

    def committed(self, change: Change, ack: Deferred[None]) -> None:
        """Durable as C{change}; C{ack} fires once the slaves acknowledged it."""
        if self.acknowledged:
            ack.addCallbacks(_answer_with, self.durable.errback, (self.durable, change))
        else:
            self.durable.callback((change, ack))


T = TypeVar("T")
#: a last look at an application update (deployed, new), raising to refuse it
UpdateCheck = Callable[["DerivedApplication", "DerivedApplication"], None]


class RegistryDatabase:
    """Changes to adapters and well-known objects, made durable then visible."""

    log = Logger()

    def __init__(
        self,
        store: IRegistryStore,
        state: RegistryState,
        dynamic_registration: bool,
        trace: TraceLevels,
    ) -> None:
        self.store = store
        self.state = state
        self.dynamic_registration = dynamic_registration
        self.trace = trace
        self._lock = DeferredLock()
        #: the largest change committed: whatever the master commits, it can replicate
        self.max_change_bytes = MAX_CHANGE_BYTES
        #: sends committed changes (one batch, in serial order) to the slaves (set on a master)
        self.replicate: Callable[[Sequence[Change]], Deferred[None]] = lambda changes: succeed(None)
        #: on a master: readies a batch's pushes before its commit, returning what the
        #: store's thread calls once the batch is durable (see L{MasterReplication.prepare})
        self.prepare_replication: Optional[
            Callable[[Sequence[Change]], Optional[Callable[[], bool]]]
        ] = None
        #: forgets the pushes readied for a batch the store refused
        self.abandon_replication: Callable[[], None] = lambda: None
        #: staged writes waiting for the next transaction
        self._queue: list[_Queued] = []
        self._committing = False
        #: staging the writes that waited for a commit: they go in one batch
        self._gathering = False
        #: the write holding the lock until the commit in progress is done
        self._after_commit: list[Deferred[None]] = []
        self._idle_waiters: list[Deferred[None]] = []
        #: fires once the state is reloaded after the store refused a batch
        self._reloading: Optional[list[Deferred[None]]] = None
        #: why writes are refused now (a slave's, names the master), or None
        self.refusal: Callable[[], Optional[str]] = lambda: None
        #: on a slave: hands an adapter registration to the master
        self.forward: Optional[
            Callable[[str, str, Optional[Proxy]], Deferred[Optional[Change]]]
        ] = None

    def _serially(
        self, validate_and_build: Callable[[], list[Mutation]]
    ) -> Deferred[Optional[Change]]:
        """
        Validate against the current state and queue for the next commit,
        one write at a time; fire once durable and the slaves have it too.

        The lock is held only while the write is validated and staged: the
        next write is validated while this one commits, and joins the next
        transaction.
        """
        refusal = self.refusal()
        if refusal is not None:
            return fail(NotMasterError(refusal))
        lock = self._lock
        if not lock.locked and not self._committing and self._reloading is None:
            # nothing ahead of this write: it is staged and its commit started
            # now, the lock held as its job would hold it, without the
            # lock's own Deferreds (every write at one in flight comes here);
            # the refusal just checked holds: nothing ran since
            lock.locked = True
            try:
                return self._stage(validate_and_build, acknowledged=True, checked=True)
            finally:
                if lock.waiting:  # queued by what the write itself called
                    lock.release()
                else:
                    lock.locked = False
        # the lock's job returns the write's Deferred boxed, so the lock is
        # released once the write is queued, not once it is durable
        d = self._lock.run(self._stage_boxed, validate_and_build)
        return d.addCallback(lambda box: box[0])

    def _stage_boxed(self, validate_and_build: Callable[[], list[Mutation]]) -> Any:
        waiters = (
            self._reloading
            if self._reloading is not None
            else (self._after_commit if self._committing else None)
        )
        if waiters is not None:
            # holds the lock meanwhile: the writes behind it wait too
            waiter: Deferred[None] = Deferred()
            waiters.append(waiter)
            return waiter.addCallback(lambda _: self._stage_boxed(validate_and_build))
        return [self._stage(validate_and_build, acknowledged=True)]

    def write_locked(
        self, validate_and_build: Callable[[], list[Mutation]]
    ) -> Deferred[Optional[tuple[Change, Deferred[None]]]]:
        """
        The body of a write, for callers that hold the write lock (see
        L{exclusively}): fires, once durable, with the change and its
        acknowledgement.
        """
        return self._stage(validate_and_build, acknowledged=False)

    def _stage(
        self,
        validate_and_build: Callable[[], list[Mutation]],
        acknowledged: bool,
        checked: bool = False,
    ) -> Deferred[Any]:
        """
        Validate, stage and queue a write, the write lock held: its Deferred
        fires once durable (see L{_Queued}), with None if nothing changes.

        @param checked: the caller has just found writes accepted, nothing
            run since (L{_serially} without a wait).
        """
        try:
            if not checked:
                refusal = self.refusal()  # again: the role may have changed while this write waited
                if refusal is not None:
                    raise NotMasterError(refusal)
            mutations = validate_and_build()
            if not mutations:
                return succeed(None)
            # each value through JSON once: its size, and the copy the store keeps
            mutations, size = _with_texts(mutations)
            if size > self.max_change_bytes:
                raise RegistryUserError(
                    f"the change is {size} bytes; a replicated change may have at most "
                    f"{self.max_change_bytes}"
                )
        except Exception:
            return fail()
        queued = _Queued(mutations, self.state.stage(mutations), acknowledged)
        self._queue.append(queued)
        if not self._gathering:
            self._commit_queued()
        return queued.durable

    def _commit_queued(self) -> None:
        """Commit every queued write in one transaction, unless one is in progress."""
        if self._committing or not self._queue:
            if not self._committing:
                self._fire_idle()
            return
        batch, self._queue = self._queue, []
        self._committing = True

        def durable(changes: list[Change]) -> None:
            self._committing = False
            # pushed first: the slaves' part of the write starts before the listeners'
            replicated = self.replicate(changes)
            acks = [replicated] if len(batch) == 1 else _fork(replicated, len(batch))
            for queued in batch:
                self.state.announce(queued.staged)
            for queued, change, ack in zip(batch, changes, acks):
                queued.committed(change, ack)
            if self._after_commit:
                # the writes that waited stage now, all before the next commit starts
                self._gathering = True
                try:
                    self._release(self._after_commit)
                finally:
                    self._gathering = False
            if self._queue or self._idle_waiters:  # else nothing to start, nobody to tell
                self._commit_queued()

        def refused(failure: Failure) -> None:
            self._committing = False
            behind, self._queue = self._queue, []
            self.log.error(
                "The store refused {count} write(s) ({reason}); {behind} queued behind them "
                "fail too, and the state is reloaded from the store",
                count=len(batch),
                behind=len(behind),
                reason=failure.getErrorMessage(),
            )
            self.abandon_replication()  # what was readied for the slaves is never sent
            self._reload()
            for queued in batch + behind:
                queued.durable.errback(failure)
            self._release(self._after_commit)  # they wait for the reload now
            self._fire_idle()

        self.store.commit_many(
            [queued.mutations for queued in batch],
            copy=False,
            on_assigned=self._prepare_replication,
        ).addCallbacks(durable, refused)

    def _prepare_replication(self, changes: Sequence[Change]) -> Optional[Callable[[], bool]]:
        """
        L{prepare_replication} for a commit, and what its store's thread
        calls once it is durable: the pushes' sending, and whether the
        reactor may hear of the commit without being woken for it (L{Quiet}).
        Not if writes wait for this commit to end: the next one starts at
        once, as the slaves commit this one (16 in flight).
        """
        prepare = self.prepare_replication
        send = None if prepare is None else prepare(changes)
        if send is None:
            return None

        def on_durable() -> bool:
            quiet = send()
            # read on the store's thread: a write staged after this still wakes the
            # reactor itself (its call is an event), which then hears of the commit
            return quiet and not self._queue and not self._after_commit

        return on_durable

    def _reload(self) -> None:
        """Drop what was staged: load the state again from what the store holds."""
        waiters: list[Deferred[None]] = []
        self._reloading = waiters

        def loaded(stored: Any) -> None:
            self.state.load(stored.records)

        def done(result: Any) -> None:
            if isinstance(result, Failure):
                self.log.failure("Could not reload the state from the store", result)
            self._reloading = None
            for waiter in waiters:
                waiter.callback(None)

        self.store.snapshot().addCallback(loaded).addBoth(done)

    @staticmethod
    def _release(waiters: list[Deferred[None]]) -> None:
        pending = list(waiters)
        waiters.clear()
        for waiter in pending:
            waiter.callback(None)

    def _fire_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _when_idle(self) -> Deferred[None]:
        if not self._committing and not self._queue:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def exclusively(self, job: Callable[[], Deferred[T]]) -> Deferred[T]:
        """
        Run C{job} with the write lock held and no commit in progress: every
        write waits for it.
        """
        return self._lock.run(lambda: self._when_idle().addCallback(lambda _: job()))

    def drain(self) -> Deferred[None]:
        """Fire once the writes queued now have committed (or failed)."""
        return self._lock.run(self._when_idle)

    def commit(self, mutations: list[Mutation]) -> Deferred[Optional[Change]]:
        """Commit prepared mutations (the replica set, applications) like any write."""
        return self._serially(lambda: mutations)

    # -- adapters --------------------------------------------------------------

    def set_adapter_direct_proxy(
        self, adapter_id: str, replica_group_id: str, proxy: Optional[Proxy]
    ) -> Deferred[Optional[Change]]:
        """
        Register (or with a null proxy, unregister) an adapter's endpoints,
        as C{Ice::LocatorRegistry} does with dynamic registration.

        @raise AdapterNotFoundException: dynamic registration is off and the
            adapter is unknown.
        @raise InvalidReplicaGroupIdException: the replica group id names a
            plain adapter, or the adapter id names a replica group.
        """
        if self.forward is not None:
            return self.forward(adapter_id, replica_group_id, proxy)

        def build() -> list[Mutation]:
            state = self.state
            known = adapter_id in state.adapters
            group_id = replica_group_id
            if proxy is None:
                if not known:
                    return []
                self._trace_adapter("unregistered", adapter_id, replica_group_id)
                return [adapter_mutation(adapter_id, None)]
            deployed_group = state.deployed_group_of(adapter_id)
            if deployed_group is not None:
                # an application deploys it: its replica group is the descriptor's
                if group_id and group_id != deployed_group:
                    raise InvalidReplicaGroupIdException()
                group_id = deployed_group
            elif not known and not self.dynamic_registration:
                self._trace_adapter("refused (dynamic registration disabled)", adapter_id, "")
                raise AdapterNotFoundException()
            if group_id and group_id in state.adapters:
                raise InvalidReplicaGroupIdException()
            if state.is_replica_group(adapter_id):
                raise InvalidReplicaGroupIdException()
            info = AdapterInfo(adapter_id, proxy, group_id)
            if state.adapters.get(adapter_id) == info:
                return []  # a retried or repeated registration: nothing changes
            self._trace_adapter("registered", adapter_id, group_id)
            return [adapter_mutation(adapter_id, info)]

        return self._serially(build)

    def remove_adapter(self, adapter_id: str) -> Deferred[Optional[Change]]:
        """Remove a registered adapter (the admin's C{adapter remove})."""

        def build() -> list[Mutation]:
            if adapter_id not in self.state.adapters:
                raise AdapterNotFoundException()
            self._trace_adapter("removed", adapter_id, "")
            return [adapter_mutation(adapter_id, None)]

        return self._serially(build)

    def _trace_adapter(self, what: str, adapter_id: str, group: str) -> None:
        if self.trace.adapter > 0:
            self.log.info(
                "[Adapter] adapter `{adapter_id}' {what}{group_note}",
                adapter_id=adapter_id,
                what=what,
                group_note=f" (replica group `{group}')" if group else "",
            )

    # -- well-known objects ----------------------------------------------------

    def add_object(self, proxy: Proxy, type_id: str = "") -> Deferred[Optional[Change]]:
        """
        Add a well-known object.

        @raise ObjectExistsException: an object with that identity exists.
        """

        def build() -> list[Mutation]:
            identity = proxy.identity
            if self.state.find_object(identity) is not None:
                raise ObjectExistsException(identity)
            if not identity.name:
                raise DeploymentException("a well-known object needs a non-empty identity")
            self._trace_object("added", identity)
            return [object_mutation(identity, ObjectInfo(proxy, type_id))]

        return self._serially(build)

    def update_object(self, proxy: Proxy) -> Deferred[Optional[Change]]:
        """
        Replace a well-known object's proxy, keeping its type.

        @raise ObjectNotRegisteredException: no such object.
        """

        def build() -> list[Mutation]:
            identity = proxy.identity
            old = self.state.objects.get(identity)
            if old is None:
                raise ObjectNotRegisteredException(identity)
            self._trace_object("updated", identity)
            return [object_mutation(identity, ObjectInfo(proxy, old.type))]

        return self._serially(build)

    def remove_object(self, identity: Identity) -> Deferred[Optional[Change]]:
        """
        Remove a well-known object.

        @raise ObjectNotRegisteredException: no such object.
        """

        def build() -> list[Mutation]:
            owner = self.state.deployed.application_of_object(identity)
            if owner is not None:
                raise DeploymentException(
                    f"object `{identity.category}/{identity.name}' is deployed by application "
                    f"`{owner}': update the application instead"
                )
            if identity not in self.state.objects:
                raise ObjectNotRegisteredException(identity)
            self._trace_object("removed", identity)
            return [object_mutation(identity, None)]

        return self._serially(build)

    def _trace_object(self, what: str, identity: Identity) -> None:
        if self.trace.object > 0:
            self.log.info(
                "[Object] object `{category}/{name}' {what}",
                category=identity.category,
                name=identity.name,
                what=what,
            )

    # -- applications --------------------------------------------------------------

    def add_application(
        self,
        xml_text: str,
        update: bool = False,
        user: str = "",
        now_ms: int = 0,
        check: Optional[UpdateCheck] = None,
    ) -> Deferred[Optional[Change]]:
        """
        Deploy an application from its IceGrid XML descriptor (or, with
        C{update}, replace the deployed one of the same name: a sync).

        @param user: who asks, kept in the application's metadata (its
            creator on an add, its last updater on an update).
        @param now_ms: the time of the write, milliseconds since the epoch.
        @param check: for an update without restart, called with the
            deployed and the new application before anything is written; it
            raises to refuse. Its presence marks the write as made without
            restart (L{ApplicationMetadata.live_update}).
        @raise DescriptorError: the descriptor is malformed, invalid, or
            claims ids another application (or an admin object) holds.
        @raise NotFoundError: C{update} of an application that is not deployed.
        """

        def build() -> list[Mutation]:
            from gridreg.registry.descriptors import derived_from_xml

            derived = derived_from_xml(xml_text)
            name = derived.descriptor.name
            if update and name not in self.state.deployed.derived:
                raise NotFoundError(f"application `{name}' is not deployed")
            return self._application_mutations(derived, update, user, now_ms, check)

        return self._serially(build)

    def update_application(
        self,
        name: str,
        make_xml: Callable[[str], str],
        user: str = "",
        now_ms: int = 0,
        check: Optional[UpdateCheck] = None,
    ) -> Deferred[Optional[Change]]:
        """
        Replace deployed application C{name} by C{make_xml(its XML)}, worked
        out under the write lock so that concurrent updates all apply.

        @raise ApplicationNotExistException: no such application.
        @raise DescriptorError: the result is invalid, or renames the application.
        """

        def build() -> list[Mutation]:
            current = self.state.deployed.derived.get(name)
            if current is None:
                raise ApplicationNotExistException(name)
            from gridreg.registry.descriptors import derived_from_xml

            derived = derived_from_xml(make_xml(current.descriptor.xml))
            return self._application_mutations(derived, True, user, now_ms, check)

        return self._serially(build)

    def _application_mutations(
        self,
        derived: DerivedApplication,
        update: bool,
        user: str,
        now_ms: int,
        check: Optional[UpdateCheck],
    ) -> list[Mutation]:
        from gridreg.registry.descriptors import (
            DescriptorError,
            application_to_json,
            check_conflicts,
            check_update,
        )

        app = derived.descriptor
        deployed = self.state.deployed.derived
        others = [d for name, d in deployed.items() if name != app.name]
        if update:
            check_update(deployed[app.name], derived, others)
            if check is not None:
                check(deployed[app.name], derived)
            # a check is what an update without restart passes (AdminModel)
            meta = self.state.deployed.metadata[app.name].updated(
                user, now_ms, live_update=check is not None
            )
        else:
            if app.name in deployed:
                raise DescriptorError(f"application `{app.name}' already exists")
            check_conflicts(derived, others)
            meta = created(user, now_ms)
        for identity in derived.objects:
            if identity in self.state.objects:
                raise DescriptorError(
                    f"object `{identity.category}/{identity.name}' was added by the admin"
                )
        self._trace_application("updated" if update else "added", app.name)
        record = {**application_to_json(app), "meta": meta.to_json()}
        return [Mutation(APPLICATION, app.name, record)]

    def remove_application(self, name: str) -> Deferred[Optional[Change]]:
        """
        Remove a deployed application and the registrations of its adapters.

        @raise NotFoundError: no such application.
        """

        def build() -> list[Mutation]:
            derived = self.state.deployed.derived.get(name)
            if derived is None:
                raise NotFoundError(f"application `{name}' is not deployed")
            self._trace_application("removed", name)
            return [Mutation(APPLICATION, name, None)] + [
                adapter_mutation(adapter_id, None)
                for adapter_id in derived.adapters
                if adapter_id in self.state.adapters
            ]

        return self._serially(build)

    def _trace_application(self, what: str, name: str) -> None:
        if self.trace.application > 0:
            self.log.info("[Application] application `{name}' {what}", name=name, what=what)
