# -*- test-case-name: tests.test_ice_admin -*-
"""
One Ice call from the registry to an object somewhere else: a permissions
verifier, or the object an admin adds without a type (IceGrid asks it its
C{ice_id}).

Indirect and well-known proxies are resolved from the registry's own state,
as IceGrid resolves them through its internal locator; each call dials its
own connection and closes it, because these calls are rare.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, fail

from gridreg.client.endpoints import ValidatedEndpoint, client_endpoint
from gridreg.ice.client import IceClientFactory, IceClientProtocol
from gridreg.ice.encoding import InputStream
from gridreg.ice.messages import Reply
from gridreg.ice.outgoing import reply_stream
from gridreg.ice.types import ENCODING_1_1, Endpoint, OperationMode, Proxy, Version
from gridreg.registry.state import RegistryState

#: how long one such call may take, connecting included
CALL_TIMEOUT = 10.0


class UnreachableError(Exception):
    """The proxy could not be resolved or reached."""


def resolve(state: RegistryState, proxy: Proxy) -> tuple[Endpoint, ...]:
    """The endpoints C{proxy} reaches, direct or through this registry's state."""
    if proxy.endpoints:
        return proxy.endpoints
    adapter_id = proxy.adapter_id
    if proxy.is_well_known:
        info = state.find_object(proxy.identity)
        if info is None:
            raise UnreachableError(
                f"object `{proxy.identity.category}/{proxy.identity.name}' is not registered"
            )
        if info.proxy.endpoints:
            return info.proxy.endpoints
        adapter_id = info.proxy.adapter_id
    found = state.locate_adapter(adapter_id)
    if not found or not found[0]:
        raise UnreachableError(f"adapter `{adapter_id}' is not active")
    return found[0]


def call(
    reactor: Any,
    state: RegistryState,
    proxy: Proxy,
    operation: str,
    mode: OperationMode,
    params: bytes = b"",
    timeout: float = CALL_TIMEOUT,
    tls: Optional[Any] = None,
) -> Deferred[InputStream]:
    """
    Call C{operation} on C{proxy}; fires with the result stream, or fails
    with the user exception, a request failure or a connection error.
    """
    try:
        endpoints = resolve(state, proxy)
    except UnreachableError as e:
        return fail(e)
    return call_direct(reactor, endpoints, proxy, operation, mode, params, timeout, tls)


def call_direct(
    reactor: Any,
    endpoints: tuple[Endpoint, ...],
    proxy: Proxy,
    operation: str,
    mode: OperationMode,
    params: bytes = b"",
    timeout: float = CALL_TIMEOUT,
    tls: Optional[Any] = None,
) -> Deferred[InputStream]:
    """
    Call C{operation} on C{proxy}'s object at the first of C{endpoints} over
    a connection of its own, closed after the reply; within C{timeout} for
    the connection and the reply.
    """
    return invoke_direct(
        reactor, endpoints, proxy, operation, mode, params, timeout, tls
    ).addCallback(reply_stream)


def invoke_direct(
    reactor: Any,
    endpoints: tuple[Endpoint, ...],
    proxy: Proxy,
    operation: str,
    mode: OperationMode,
    params: bytes = b"",
    timeout: float = CALL_TIMEOUT,
    tls: Optional[Any] = None,
    *,
    encoding: Version = ENCODING_1_1,
    context: Optional[dict[str, str]] = None,
) -> Deferred[Reply]:
    """
    As L{call_direct}, but fire with the L{Reply} whatever it says: what a
    router needs, to hand the answer back as it came.
    """
    if not endpoints:
        return fail(UnreachableError("no endpoint to call"))
    try:
        dial = ValidatedEndpoint(
            client_endpoint(reactor, endpoints[0], tls, timeout_cap=timeout), reactor, timeout
        )
    except ValueError as e:
        return fail(UnreachableError(str(e)))

    def connected(protocol: IceClientProtocol) -> Deferred[Reply]:
        d = protocol.invoke(
            proxy.identity,
            operation,
            mode,
            params,
            facet=proxy.facet,
            encoding=encoding,
            context=context,
            timeout=timeout,
        )

        def close(result: Any) -> Any:
            protocol.close().addErrback(lambda _: None)
            return result

        return d.addBoth(close)

    return dial.connect(IceClientFactory(reactor)).addCallback(connected)
