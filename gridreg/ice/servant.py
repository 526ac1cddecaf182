# -*- test-case-name: tests.test_ice_server,tests.test_registry_vectors -*-
"""
Servants and the object adapter that dispatches Ice requests to them.

A servant answers the operations of one Ice interface. The adapter maps
identities to servants, answers the C{Ice::Object} built-ins, checks the
operation mode as a real Ice server does and turns every outcome into a reply
body (status byte and what follows), so the connection only frames bytes.

A whole identity category may be served by one L{CategoryRouter} (IceGrid's
admin routers: C{<instance>-RegistryServerAdminRouter/<server>} and its
kin), which gets every request on that category that no servant of its own
identity answers, facets included, and answers with the reply body itself.

Replies of operations declared C{cacheable} depend only on the request bytes
and the registry's state; the adapter keeps them by request bytes until the
state changes (L{ObjectAdapter.invalidate}), so a repeated locate request is
answered without decoding it.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional, Protocol, Union

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream, MarshalError, OutputStream
from gridreg.ice.exceptions import UserException
from gridreg.ice.messages import (
    ReplyStatus,
    Request,
    not_exist_body,
    success_body,
    unknown_body,
    user_exception_body,
)
from gridreg.ice.types import Identity, OperationMode

ReplyBody = bytes
DispatchResult = Union[ReplyBody, "Deferred[ReplyBody]"]
Handler = Callable[[Any, Request, InputStream], Any]

OBJECT_TYPE_ID = "::Ice::Object"


class OperationNotOffered(Exception):
    """
    Raised by a servant for an operation it declares but cannot carry out
    here: answered as C{Ice::OperationNotExistException}, as a server
    without that operation would.
    """


class Uncached(bytes):
    """A result payload that must not be reused (a load-balanced answer)."""


@attrs.frozen
class Operation:
    """What the adapter needs to know about one Slice operation."""

    name: str
    handler: Handler
    idempotent: bool
    cacheable: bool
    #: the handler also takes the connection the request came on (or None)
    with_connection: bool = False


def operation(
    name: str, *, idempotent: bool = False, cacheable: bool = False, connection: bool = False
) -> Callable[[Handler], Handler]:
    """
    Declare a servant method as the Ice operation C{name}.

    The method receives the decoded L{Request} and an L{InputStream} over its
    parameters, and returns the result payload (bytes, already encoded in the
    request's encoding), or a Deferred of it, or raises a L{UserException}.

    @param idempotent: the Slice operation is C{idempotent}: requests in mode
        Normal are refused, as IceGrid does.
    @param cacheable: the reply depends only on the request and the state,
        so it may be reused until L{ObjectAdapter.invalidate}.
    @param connection: the method takes a fourth argument, the connection
        (an L{IceServerProtocol}, or None for a batched or local dispatch):
        sessions live as long as the connection that created them.
    """

    def decorate(method: Handler) -> Handler:
        if hasattr(method, "__ice_operation__"):
            # one function serving several operations: give each its own handle
            shared = method

            def method(servant: Any, request: Request, params: InputStream, *more: Any) -> Any:
                return shared(servant, request, params, *more)

        method.__ice_operation__ = Operation(  # type: ignore[attr-defined]
            name, method, idempotent, cacheable, connection
        )
        return method

    return decorate


class Servant:
    """
    Base class of every servant: collects the L{operation} methods of the
    class and answers the built-ins from C{type_ids}.
    """

    #: the most-derived Slice type id, which C{ice_id} answers
    type_id: ClassVar[str] = OBJECT_TYPE_ID
    #: every Slice type id of the interface, sorted, including ::Ice::Object
    type_ids: ClassVar[tuple[str, ...]] = (OBJECT_TYPE_ID,)
    _operations: ClassVar[dict[str, Operation]] = {}
    #: the one connection this servant answers on, others getting
    #: ObjectNotExistException (IceGrid's sessions); None: any connection
    bound_to: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ops: dict[str, Operation] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                op = getattr(value, "__ice_operation__", None)
                if op is not None:
                    ops[op.name] = op
        cls._operations = ops
        cls.type_ids = tuple(sorted(set(cls.type_ids) | {OBJECT_TYPE_ID, cls.type_id}))

    def find_operation(self, name: str) -> Optional[Operation]:
        return self._operations.get(name)


class CategoryRouter(Protocol):
    """Answers every request on one identity category (see the module docstring)."""

    def route(self, request: Request, connection: Any) -> DispatchResult:
        """
        The reply body for C{request}, which came on C{connection} (None for
        a batched or local dispatch); may raise, or fail, like an operation.
        """


def _mode_mismatch(expected: str, received: int) -> str:
    return (
        "::Ice::MarshalException: unexpected operation mode. "
        f"expected = ::Ice::{expected} received = ::Ice::{OperationMode(received).name.title()}"
    )


class ObjectAdapter:
    """
    Maps identities to servants and dispatches requests to them.

    C{dispatch} never raises: every failure becomes the reply status a real
    Ice server would send, and unexpected errors are logged.
    """

    log = Logger()

    def __init__(self, name: str) -> None:
        self.name = name
        self._servants: dict[Identity, Servant] = {}
        self._routers: dict[str, CategoryRouter] = {}
        self._cache: dict[bytes, bytes] = {}
        self.cache_limit = 100_000
        #: counts L{invalidate}s: a reply taken from the cache stays valid
        #: while this is unchanged (a connection's memo of its last one)
        self.replies_epoch = 0

    def add(self, identity: Identity, servant: Servant) -> None:
        self._servants[identity] = servant
        self.invalidate()

    def remove(self, identity: Identity) -> None:
        self._servants.pop(identity, None)
        self.invalidate()

    def add_category(self, category: str, router: CategoryRouter) -> None:
        """Route the requests on C{category} that no servant answers to C{router}."""
        self._routers[category] = router
        self.invalidate()

    def remove_category(self, category: str) -> None:
        self._routers.pop(category, None)
        self.invalidate()

    def find(self, identity: Identity) -> Optional[Servant]:
        return self._servants.get(identity)

    def invalidate(self) -> None:
        """Forget every cached reply: the state they were computed from changed."""
        self.replies_epoch += 1
        self._cache.clear()

    def cached_reply(self, key: bytes) -> Optional[bytes]:
        """The reply body cached for these request bytes (after the request id)."""
        return self._cache.get(key)

    def reply_lookup(self) -> Callable[[bytes], Optional[bytes]]:
        """
        L{cached_reply} for a connection's read loop to bind once: the cache's
        own C{get} (one C call per request, no Python frame), unless a
        subclass answers differently. It stays valid: the cache is only ever
        cleared in place.
        """
        if type(self).cached_reply is ObjectAdapter.cached_reply:
            return self._cache.get
        return self.cached_reply

    def replies_memoizable(self) -> bool:
        """
        Whether a connection may keep the reply of its last cached request
        and answer a repeat of the same bytes with it while
        C{replies_epoch} is unchanged: so for this cache, whose replies only
        go stale at L{invalidate}; not for a subclass that answers
        C{cached_reply} its own way.
        """
        return type(self).cached_reply is ObjectAdapter.cached_reply

    def dispatch(
        self, request: Request, cache_key: Optional[bytes] = None, connection: Any = None
    ) -> DispatchResult:
        """
        Dispatch one request and return its reply body.

        @param cache_key: the request's bytes after the request id; when the
            operation is cacheable and succeeds synchronously, its reply is
            kept under this key.
        @param connection: the connection the request came on, for the
            operations declared with C{connection=True}.
        """
        servant = self._servants.get(request.identity)
        if servant is None:
            router = self._routers.get(request.identity.category)
            if router is not None:
                return self._route(router, request, connection)
        if servant is None or (servant.bound_to is not None and servant.bound_to is not connection):
            return not_exist_body(
                ReplyStatus.OBJECT_NOT_EXIST, request.identity, request.facet, request.operation
            )
        if request.facet:
            return not_exist_body(
                ReplyStatus.FACET_NOT_EXIST, request.identity, request.facet, request.operation
            )
        return self.dispatch_to(servant, request, cache_key, connection)

    def dispatch_to(
        self,
        servant: Servant,
        request: Request,
        cache_key: Optional[bytes] = None,
        connection: Any = None,
    ) -> DispatchResult:
        """
        Dispatch C{request} to C{servant} whatever its identity and facet
        say: what an object with facets does once it found the facet's servant.
        """
        op = servant.find_operation(request.operation)
        if op is None:
            return self._builtin(servant, request)
        if op.idempotent and request.mode == OperationMode.NORMAL:
            return unknown_body(
                ReplyStatus.UNKNOWN_LOCAL_EXCEPTION, _mode_mismatch("Idempotent", request.mode)
            )
        if not op.idempotent and request.mode != OperationMode.NORMAL:
            return unknown_body(
                ReplyStatus.UNKNOWN_LOCAL_EXCEPTION, _mode_mismatch("Normal", request.mode)
            )
        try:
            params = InputStream(request.params, request.encoding)
            if op.with_connection:
                result = op.handler(servant, request, params, connection)
            else:
                result = op.handler(servant, request, params)
        except BaseException as exc:
            return self._failed(request, Failure(exc))
        if isinstance(result, Deferred):
            return result.addCallbacks(
                lambda payload: success_body(request.encoding, payload),
                lambda failure: self._failed(request, failure),
            )
        body = success_body(request.encoding, result)
        if op.cacheable and cache_key is not None and type(result) is not Uncached:
            if len(self._cache) >= self.cache_limit:
                self._cache.clear()
            self._cache[cache_key] = body
        return body

    def _route(self, router: CategoryRouter, request: Request, connection: Any) -> DispatchResult:
        try:
            result = router.route(request, connection)
        except BaseException as exc:
            return self._failed(request, Failure(exc))
        if isinstance(result, Deferred):
            return result.addErrback(lambda failure: self._failed(request, failure))
        return result

    def _builtin(self, servant: Servant, request: Request) -> ReplyBody:
        """The Ice::Object operations every servant answers, in any mode."""
        operation_name = request.operation
        out = OutputStream(request.encoding)
        if operation_name == "ice_ping":
            pass
        elif operation_name == "ice_isA":
            try:
                type_id = InputStream(request.params, request.encoding).read_string()
            except MarshalError as exc:
                return unknown_body(
                    ReplyStatus.UNKNOWN_LOCAL_EXCEPTION, f"::Ice::MarshalException: {exc}"
                )
            out.write_bool(type_id in servant.type_ids)
        elif operation_name == "ice_id":
            out.write_string(servant.type_id)
        elif operation_name == "ice_ids":
            out.write_string_seq(list(servant.type_ids))
        else:
            return not_exist_body(
                ReplyStatus.OPERATION_NOT_EXIST, request.identity, request.facet, operation_name
            )
        return success_body(request.encoding, out.getvalue())

    def _failed(self, request: Request, failure: Failure) -> ReplyBody:
        """Turn a servant's failure into the reply a real Ice server sends."""
        exc = failure.value
        if isinstance(exc, UserException):
            return user_exception_body(request.encoding, exc)
        if isinstance(exc, OperationNotOffered):
            return not_exist_body(
                ReplyStatus.OPERATION_NOT_EXIST, request.identity, request.facet, request.operation
            )
        if isinstance(exc, MarshalError):
            self.log.info(
                "Bad parameters for {operation} on {identity!r}: {error}",
                operation=request.operation,
                identity=request.identity,
                error=str(exc),
            )
            return unknown_body(
                ReplyStatus.UNKNOWN_LOCAL_EXCEPTION, f"::Ice::MarshalException: {exc}"
            )
        self.log.failure(
            "Servant failed in {operation} on {identity!r}",
            failure,
            operation=request.operation,
            identity=request.identity,
        )
        return unknown_body(
            ReplyStatus.UNKNOWN_EXCEPTION, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        )
