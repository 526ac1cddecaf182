# -*- test-case-name: tests.test_allocation -*-
"""
IceGrid allocation: client sessions take exclusive use of the allocatable
objects that applications declare (C{<allocatable>} in an C{<adapter>}),
and of whole servers declared C{allocatable="true"}.

Allocation is master-only state, like IceGrid's (slaves refuse
C{createSession}): nothing here is stored or replicated, and a session's
allocations end with the session or with the master. The Ice
C{IceGrid::Session} servant calls L{AllocationManager}; it converts the
session's C{setAllocationTimeout} milliseconds to the seconds used here.

What IceGrid 3.7.8 does, observed with C{icegridregistry} and IcePy
(C{registry.createSession} with C{NullPermissionsVerifier}), and what this
module copies:

  - The default allocation timeout of a session is B{-1: wait for ever}
    (a second session's C{allocateObjectById} of a held object blocked
    until the holder's session was reaped). 0 fails at once with
    C{AllocationTimeoutException}, whose C{reason} is empty.
  - C{allocateObjectById} of an unknown identity, and of a well-known (not
    allocatable) object, raises C{ObjectNotRegisteredException(id)}. Of an
    object the session already holds: C{AllocationException("already
    allocated by the session")}.
  - C{allocateObjectByType} of a type with no allocatable object (well-known
    objects of the type do not count): C{AllocationException("no allocatable
    objects with type `T' registered")}. When every object of the type is
    held, even by the caller itself, it waits.
  - C{releaseObject} of an unknown or well-known identity:
    C{ObjectNotRegisteredException}; of an object held by another session,
    or by nobody: C{AllocationException("can't release object which is not
    allocated")}.
  - Waiters are served in arrival order (FIFO): with two sessions waiting,
    a release grants the first; destroying the session that got it grants
    the second. A by-type waiter gets an object of its type when one is
    released.
  - An allocatable server is held by the session that holds any of its
    allocatable objects: other sessions wait for its other objects (and
    time out) until that session has released I{all} of them; the holder
    allocates the rest at once.
  - Destroying a session releases its objects and grants the waiters.
  - Allocatable objects are not well-known: C{Query.findObjectById} answers
    null, C{findAllObjectsByType} leaves them out, and the locator does not
    resolve them (C{NotRegisteredException}).
  - An application update that removed an allocated object with a waiter:
    the waiter got C{ObjectNotRegisteredException}, and the holder's
    C{releaseObject} of it too. (3.7.8 then failed the update itself with a
    C{NullHandleException} and later hung on C{application remove}; we keep
    the sane part.) A by-type waiter whose type has no allocatable object
    left gets the "no allocatable objects" C{AllocationException}.
  - A session's pending requests (by id, and for an object of a server
    held by another session) fail when it is destroyed, with
    C{AllocationException("session destroyed")}.
  - A C{session}-activation server is held whole like an allocatable
    server. When its holder lets go, C{releaseObject} (and the session's
    C{destroy}) answers once the server has stopped (2 s for a server
    taking 2 s to exit), and only then is it granted to the next session.
    Hooks make these wait by returning a Deferred: the grant's answer waits
    for the L{on_server_allocated} hooks (the node learns the owner first),
    the release's and the next grant for the L{on_server_released} hooks.
  - Not observed, our choice: any negative timeout waits for ever.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from gridreg.ice.exceptions import (
    AllocationException,
    AllocationTimeoutException,
    ObjectNotRegisteredException,
)
from gridreg.ice.types import Identity, Proxy
from gridreg.registry.descriptor_model import DeployedAllocatable
from gridreg.registry.state import RegistryState

__all__ = [
    "AllocationException",
    "AllocationManager",
    "AllocationTimeoutException",
    "ObjectNotRegisteredException",
]

_log = Logger()

#: IceGrid's reasons, word for word.
ALREADY_ALLOCATED = "already allocated by the session"
NOT_ALLOCATED = "can't release object which is not allocated"
SESSION_DESTROYED = "session destroyed"


def no_objects_of_type(type_id: str) -> str:
    return f"no allocatable objects with type `{type_id}' registered"


@attrs.define(eq=False)
class _Request:
    """A waiting allocation: by identity or (C{identity} None) by type."""

    session: str
    identity: Optional[Identity]
    type_id: str
    deferred: Deferred[Proxy]
    timer: Optional[IDelayedCall] = None


@attrs.define
class _ServerHold:
    """An allocatable server, held by C{session} while it holds C{count} of its objects."""

    session: str
    count: int = 0


class AllocationManager:
    """
    Who holds which allocatable object and server, and who waits for them.

    The allocatable objects are those of the master's deployed applications
    (C{state.deployed.allocatables}); the manager follows application
    changes through L{RegistryState.on_change}. Timeouts are in seconds,
    negative meaning for ever.
    """

    def __init__(
        self, state: RegistryState, clock: IReactorTime, rng: Optional[random.Random] = None
    ) -> None:
        self._state = state
        self._clock = clock
        self._rng = rng or random.Random()
        #: identity to the session holding it, with the entry as granted
        self._holders: dict[Identity, tuple[str, DeployedAllocatable]] = {}
        self._held: dict[str, set[Identity]] = {}
        self._servers: dict[str, _ServerHold] = {}
        #: servers let go of whose release hooks have not finished: granted to nobody
        self._settling: set[str] = set()
        #: every waiting request, oldest first (FIFO across sessions)
        self._queue: list[_Request] = []
        self._on_allocated: list[Callable[[str, str], object]] = []
        self._on_released: list[Callable[[str], object]] = []
        self._known = state.deployed.allocatables
        self._closed = False
        state.on_change(self._state_changed)

    # -- hooks -----------------------------------------------------------------

    def on_server_allocated(self, callback: Callable[[str, str], object]) -> None:
        """
        Call C{callback(server_id, session_key)} when a session comes to hold
        an allocatable server, so C{session}-activation servers can start.
        If it returns a Deferred, the grant is answered once that fires.
        """
        self._on_allocated.append(callback)

    def on_server_released(self, callback: Callable[[str], object]) -> None:
        """
        Call C{callback(server_id)} when an allocatable server's holder lets
        go of it. If it returns a Deferred, the release is answered and the
        server's objects granted again only once that fires (a session
        server stops first).
        """
        self._on_released.append(callback)

    # -- queries ---------------------------------------------------------------

    def holder_of(self, identity: Identity) -> Optional[str]:
        """The session holding an object, if any."""
        held = self._holders.get(identity)
        return held[0] if held else None

    def server_holder(self, server_id: str) -> Optional[str]:
        """The session holding an allocatable server, if any."""
        hold = self._servers.get(server_id)
        return hold.session if hold else None

    def allocated_by(self, session_key: str) -> frozenset[Identity]:
        return frozenset(self._held.get(session_key, ()))

    # -- allocation ------------------------------------------------------------

    @property
    def _allocatables(self) -> dict[Identity, DeployedAllocatable]:
        return self._state.deployed.allocatables

    def allocate_by_id(
        self, session_key: str, identity: Identity, timeout: float
    ) -> Deferred[Proxy]:
        """
        Allocate one object to a session, waiting up to C{timeout} seconds
        (negative: for ever) behind earlier requests if someone holds it.

        @return: fires with the object's indirect proxy; fails with
            L{ObjectNotRegisteredException}, L{AllocationException} or
            L{AllocationTimeoutException}.
        """
        entry = self._allocatables.get(identity)
        if entry is None:
            return fail(ObjectNotRegisteredException(identity))
        if self.holder_of(identity) == session_key:
            return fail(AllocationException(ALREADY_ALLOCATED))
        if self._can_take(session_key, identity, entry):
            return self._granted(self._grant(session_key, identity, entry), entry.proxy)
        return self._wait(session_key, identity, entry.type, timeout)

    def allocate_by_type(self, session_key: str, type_id: str, timeout: float) -> Deferred[Proxy]:
        """
        Allocate any free object of a type (picked at random among the free
        ones), or wait for the first one released.
        """
        candidates = [i for i, e in self._allocatables.items() if e.type == type_id]
        if not candidates:
            return fail(AllocationException(no_objects_of_type(type_id)))
        free = [i for i in candidates if self._can_take(session_key, i, self._allocatables[i])]
        if free:
            identity = self._rng.choice(free)
            entry = self._allocatables[identity]
            return self._granted(self._grant(session_key, identity, entry), entry.proxy)
        return self._wait(session_key, None, type_id, timeout)

    def release(self, session_key: str, identity: Identity) -> Deferred[None]:
        """
        Release an object the session holds, granting it (or its server) to
        the next waiters in order.

        @return: fires once the release hooks are done (never fails).
        @raise ObjectNotRegisteredException: no such allocatable object.
        @raise AllocationException: the session does not hold it.
        """
        if identity not in self._allocatables:
            raise ObjectNotRegisteredException(identity)
        held = self._holders.get(identity)
        if held is None or held[0] != session_key:
            raise AllocationException(NOT_ALLOCATED)
        done = self._ungrant(identity)
        self._serve_queue()
        return done

    def release_all(self, session_key: str) -> Deferred[None]:
        """
        The session ended: its pending requests fail with
        C{AllocationException("session destroyed")}, and everything it
        holds goes to the waiters. Fires once the release hooks are done.
        """
        for request in [r for r in self._queue if r.session == session_key]:
            self._fail(request, AllocationException(SESSION_DESTROYED))
        done = [self._ungrant(identity) for identity in list(self._held.get(session_key, ()))]
        self._serve_queue()
        return self._after(done, "releasing what session `{session}' held", session=session_key)

    def close(self) -> None:
        """This replica stops being the master: every request fails, nothing is held."""
        self._closed = True
        for request in list(self._queue):
            self._fail(request, AllocationException("the registry is no longer the master"))
        for identity in list(self._holders):
            self._ungrant(identity)

    # -- internals -------------------------------------------------------------

    def _can_take(self, session: str, identity: Identity, entry: DeployedAllocatable) -> bool:
        if identity in self._holders:
            return False
        if entry.allocatable_server:
            if entry.server_id in self._settling:
                return False
            hold = self._servers.get(entry.server_id)
            return hold is None or hold.session == session
        return True

    def _grant(
        self, session: str, identity: Identity, entry: DeployedAllocatable
    ) -> list[Deferred[Any]]:
        """Give C{identity} to C{session}; what its allocated hooks returned."""
        self._holders[identity] = (session, entry)
        self._held.setdefault(session, set()).add(identity)
        if entry.allocatable_server:
            hold = self._servers.setdefault(entry.server_id, _ServerHold(session))
            hold.count += 1
            if hold.count == 1:
                return self._notify(self._on_allocated, entry.server_id, session)
        return []

    def _granted(self, waits: list[Deferred[Any]], proxy: Proxy) -> Deferred[Proxy]:
        """The grant's answer: C{proxy}, once the allocated hooks are done."""
        if not waits:
            return succeed(proxy)
        done = self._after(waits, "allocating {proxy}", proxy=proxy)
        return done.addCallback(lambda _: proxy)

    def _ungrant(self, identity: Identity) -> Deferred[None]:
        """Take C{identity} back; fires once its server's release hooks are done."""
        session, entry = self._holders.pop(identity)
        held = self._held[session]
        held.discard(identity)
        if not held:
            del self._held[session]
        if entry.allocatable_server:
            hold = self._servers[entry.server_id]
            hold.count -= 1
            if hold.count == 0:
                del self._servers[entry.server_id]
                waits = self._notify(self._on_released, entry.server_id)
                if waits:
                    return self._settle(entry.server_id, waits)
        return succeed(None)

    def _notify(self, callbacks: list[Callable[..., object]], *args: str) -> list[Deferred[Any]]:
        """Call every hook; the Deferreds they return."""
        # A failing hook must not leave allocation half done.
        waits = []
        for callback in list(callbacks):
            try:
                result = callback(*args)
            except Exception:
                _log.failure("allocation hook {callback!r} failed", callback=callback)
            else:
                if isinstance(result, Deferred):
                    waits.append(result)
        return waits

    def _settle(self, server_id: str, waits: list[Deferred[Any]]) -> Deferred[None]:
        """Grant nothing of C{server_id} until its release hooks are done."""
        self._settling.add(server_id)

        def settled(_: object) -> None:
            self._settling.discard(server_id)
            if not self._closed:
                self._serve_queue()

        done = self._after(waits, "releasing server `{server}'", server=server_id)
        return done.addCallback(settled).addErrback(
            lambda f: _log.failure(
                "could not serve the waiters of server `{server}'", f, server=server_id
            )
        )

    def _after(self, waits: list[Deferred[Any]], what: str, **fields: Any) -> Deferred[None]:
        """Fires (never failing) once every one of C{waits} has; failures are logged."""

        def logged(results: list[tuple[bool, Any]]) -> None:
            for ok, result in results:
                if not ok:
                    _log.failure("an allocation hook failed " + what, result, **fields)

        return DeferredList(waits, consumeErrors=True).addCallback(logged)

    def _wait(
        self, session: str, identity: Optional[Identity], type_id: str, timeout: float
    ) -> Deferred[Proxy]:
        if timeout == 0 or self._closed:
            return fail(AllocationTimeoutException())
        request = _Request(session, identity, type_id, Deferred(lambda d: self._cancelled(request)))
        if timeout > 0:
            request.timer = self._clock.callLater(timeout, self._expired, request)
        self._queue.append(request)
        return request.deferred

    def _dequeue(self, request: _Request) -> bool:
        """Forget a request; say whether it was still waiting."""
        if request not in self._queue:
            return False
        self._queue.remove(request)
        if request.timer is not None and request.timer.active():
            request.timer.cancel()
        return True

    def _cancelled(self, request: _Request) -> None:
        # The caller gave up (its connection went): the Deferred fails with
        # CancelledError; the request must not be granted afterwards.
        self._dequeue(request)

    def _expired(self, request: _Request) -> None:
        request.timer = None
        if self._dequeue(request):
            request.deferred.errback(AllocationTimeoutException())

    def _fail(self, request: _Request, exc: Exception) -> None:
        if self._dequeue(request):
            request.deferred.errback(exc)

    def _serve_queue(self) -> None:
        """Grant what the waiters can now have, oldest first."""
        for request in list(self._queue):
            if request not in self._queue:  # settled by a callback meanwhile
                continue
            if request.identity is not None:
                choice = [request.identity]
            else:
                choice = [i for i, e in self._allocatables.items() if e.type == request.type_id]
            free = [
                i
                for i in choice
                if i in self._allocatables
                and self._can_take(request.session, i, self._allocatables[i])
            ]
            if not free:
                continue
            identity = free[0] if request.identity is not None else self._rng.choice(free)
            entry = self._allocatables[identity]
            self._dequeue(request)
            answer = self._granted(self._grant(request.session, identity, entry), entry.proxy)
            answer.addCallback(_answer, request.deferred)

    def _state_changed(self) -> None:
        """
        Applications changed: objects gone (or redeployed differently) are
        no longer held, their waiters fail, and new objects may serve
        by-type waiters.
        """
        current = self._allocatables
        if current is self._known or self._closed:
            return
        self._known = current
        for identity, (_, entry) in list(self._holders.items()):
            if current.get(identity) != entry:
                self._ungrant(identity)
        types = {e.type for e in current.values()}
        for request in list(self._queue):
            if request.identity is not None and request.identity not in current:
                self._fail(request, ObjectNotRegisteredException(request.identity))
            elif request.identity is None and request.type_id not in types:
                self._fail(request, AllocationException(no_objects_of_type(request.type_id)))
        self._serve_queue()


def _answer(proxy: Proxy, waiter: Deferred[Proxy]) -> None:
    # Not if the caller gave up meanwhile: its session ends and releases it.
    if not waiter.called:
        waiter.callback(proxy)
