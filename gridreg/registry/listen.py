# -*- test-case-name: tests.test_registry_service -*-
"""
From Ice endpoints to Twisted listening ports, and back to the endpoints a
registry publishes in the proxies it hands out.
"""

from __future__ import annotations

import socket
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.interfaces import IListeningPort, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory

from gridreg.ice.types import Endpoint, SslEndpoint, TcpEndpoint

#: hosts meaning "every interface" in an Ice server endpoint
_ANY_HOSTS = ("", "*", "0.0.0.0", "::")

#: the listen backlog, as Ice's default for Ice.TCP.Backlog: Twisted's 50 drops
#: the handshakes of a burst of new clients (bench/idle_connections.py)
LISTEN_BACKLOG = socket.SOMAXCONN

#: the address published for an endpoint that listens on every interface
DEFAULT_PUBLISHED_HOST = "127.0.0.1"


def listen_ice(
    reactor: Any,
    endpoint: Endpoint,
    factory: Factory,
    tls: Optional[IOpenSSLServerConnectionCreator] = None,
) -> Deferred[IListeningPort]:
    """Listen on a C{tcp} or C{ssl} Ice endpoint."""
    if not isinstance(endpoint, TcpEndpoint):
        return fail(ValueError(f"cannot listen on a {endpoint.TRANSPORT} endpoint"))
    host = endpoint.host
    interface = "" if host in ("", "*") else host
    if isinstance(endpoint, SslEndpoint):
        if tls is None:
            return fail(
                ValueError("an ssl endpoint needs IceSSL.CertFile, IceSSL.KeyFile and IceSSL.CAs")
            )
        return SSL4ServerEndpoint(
            reactor, endpoint.port, tls, backlog=LISTEN_BACKLOG, interface=interface
        ).listen(factory)
    endpoint_type = TCP6ServerEndpoint if ":" in interface else TCP4ServerEndpoint
    return endpoint_type(
        reactor, endpoint.port, backlog=LISTEN_BACKLOG, interface=interface
    ).listen(factory)


def published_endpoint(endpoint: Endpoint, port: IListeningPort) -> Endpoint:
    """
    The endpoint clients are given for a listening port: the configured
    host (loopback when it listens on every interface) and the real port,
    which differs from the configured one when that was 0.
    """
    assert isinstance(endpoint, TcpEndpoint)
    host = DEFAULT_PUBLISHED_HOST if endpoint.host in _ANY_HOSTS else endpoint.host
    return attrs.evolve(endpoint, host=host, port=port.getHost().port)
