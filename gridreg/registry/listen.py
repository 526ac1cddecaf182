# -*- test-case-name: tests.test_endpoints -*-
"""
From Ice endpoints to Twisted listening ports (through
L{gridreg.endpoints.server_endpoint}), and back to the endpoints a registry
publishes in the proxies it hands out.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IListeningPort, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory

from gridreg.endpoints import server_endpoint
from gridreg.ice.types import Endpoint, TcpEndpoint

#: hosts meaning "every interface" in an Ice server endpoint
_ANY_HOSTS = ("", "*", "0.0.0.0", "::")

#: the address published for an endpoint that listens on every interface
DEFAULT_PUBLISHED_HOST = "127.0.0.1"


def listen_ice(
    reactor: Any,
    endpoint: Endpoint,
    factory: Factory,
    tls: Optional[IOpenSSLServerConnectionCreator] = None,
    *,
    buffered: bool = True,
) -> Deferred[IListeningPort]:
    """
    Listen on a C{tcp} or C{ssl} Ice endpoint; a failed Deferred
    (L{ValueError}) for another transport, or C{ssl} without C{tls}.

    @param buffered: see L{gridreg.endpoints.server_endpoint}.
    """
    try:
        listening = server_endpoint(reactor, endpoint, tls, buffered=buffered)
    except ValueError as e:
        return fail(e)
    return listening.listen(factory)


def published_endpoint(endpoint: Endpoint, port: IListeningPort) -> Endpoint:
    """
    The endpoint clients are given for a listening port: the configured
    host (loopback when it listens on every interface) and the real port,
    which differs from the configured one when that was 0.
    """
    assert isinstance(endpoint, TcpEndpoint)
    host = DEFAULT_PUBLISHED_HOST if endpoint.host in _ANY_HOSTS else endpoint.host
    return attrs.evolve(endpoint, host=host, port=port.getHost().port)
