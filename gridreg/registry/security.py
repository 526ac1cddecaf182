# -*- test-case-name: tests.test_replication -*-
"""
How a replica secures its internal endpoints: mutual TLS from the IceSSL.*
properties, or plain TCP only when the operator asked for it explicitly.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from gridreg.config.properties import Properties, PropertyError
from gridreg.endpoints import client_endpoint, with_transport
from gridreg.ice.types import Endpoint
from gridreg.registry.listen import listen_ice

#: how long a replica waits for a TCP connection to another replica
CONNECT_TIMEOUT = 5.0


class InternalSecurity:
    """
    TLS settings for internal sessions (or their explicit absence).

    The TLS options are built once per peer name and kept: building them
    read and converted the certificate files each time (a millisecond or
    more of the reactor, which a master spent on every connection to a
    peer). The files are checked at start-up; a changed file takes effect
    at the next start, as it always did for the server side.

    Internal connections' TLS writes through (C{buffered=False}, see
    L{gridreg.endpoints}): a box is encrypted when it is written, not on
    the reactor's next pass.
    """

    log = Logger()

    def __init__(self, tls: Any = None) -> None:
        self.tls = tls
        self._server_options: Any = None
        #: client options by the DNS name the peer must present
        self._client_options: dict[str, Any] = {}

    def server_options(self) -> Any:
        """The server TLS options (built at the first call), or None without TLS."""
        if self.tls is None:
            return None
        if self._server_options is None:
            from gridreg import tls

            self._server_options = tls.server_tls_options(self.tls)
        return self._server_options

    def client_options(self, replica: str) -> Any:
        """
        The client TLS options that accept only replica C{replica}'s
        certificate (built at the first call for it), or None without TLS.
        """
        if self.tls is None:
            return None
        from gridreg import tls

        expected = tls.dns_name("registry", replica)
        options = self._client_options.get(expected)
        if options is None:
            options = self._client_options[expected] = tls.client_tls_options(self.tls, expected)
        return options

    @classmethod
    def insecure(cls) -> "InternalSecurity":
        return cls(None)

    @classmethod
    def from_properties(cls, properties: Properties, needed: bool) -> "InternalSecurity":
        """
        @param needed: the replica has internal endpoints or a master to reach.
        @raise PropertyError: internal endpoints without IceSSL.* and without
            the explicit permission to run them in the clear.
        """
        from gridreg import tls

        config = tls.tls_config_from_properties(properties)
        if config is not None:
            return cls(config)
        if needed and not tls.insecure_allowed(properties):
            raise PropertyError(
                "internal endpoints need mutual TLS: set IceSSL.CAs, IceSSL.CertFile and "
                "IceSSL.KeyFile (see `python -m gridreg.certs'), or GridReg.Internal.Insecure=1 "
                "to run them in the clear"
            )
        return cls(None)

    @property
    def authorize(self) -> Optional[Callable[[Any, str, str], None]]:
        """Checks a peer's certificate against the role and name it claims."""
        if self.tls is None:
            return None
        from gridreg import tls

        def check(transport: Any, role: str, name: str) -> None:
            from gridreg.protocol.errors import NotAuthorizedError

            try:
                tls.authorize(tls.peer_identity(transport), role, name)
            except tls.PeerNotAuthorized as exc:
                raise NotAuthorizedError(str(exc)) from None

        return check

    def check_server(self, transport: Any, replica: str) -> None:
        """
        After the handshake with a replica: is it exactly the one we meant?
        (The certificate's name was checked already; this also compares the
        exact replica name, which DNS labels fold.)
        """
        check = self.authorize
        if check is not None:
            check(transport, "registry", replica)

    def ice_tls(self) -> Any:
        """
        TLS options for the Ice protocol's C{ssl} endpoints: the same
        certificates, and, like IceSSL's default C{IceSSL.VerifyPeer=2}, a
        client certificate signed by the grid's CA is required.
        """
        return self.server_options()

    def listen(
        self, reactor: Any, endpoint: Endpoint, factory: Factory
    ) -> Deferred[IListeningPort]:
        if self.tls is None:
            return listen_ice(reactor, endpoint, factory)
        secure = with_transport(endpoint, secure=True)
        return listen_ice(reactor, secure, factory, self.server_options(), buffered=False)

    def client_endpoint(
        self, reactor: Any, endpoint: Endpoint, replica: str
    ) -> IStreamClientEndpoint:
        """
        An endpoint reaching replica C{replica}, checking its certificate's
        name, within L{CONNECT_TIMEOUT} whatever the endpoint's C{-t}.
        """
        secure = with_transport(endpoint, self.tls is not None, timeout=-1)
        return client_endpoint(
            reactor,
            secure,
            self.client_options(replica),
            timeout_cap=CONNECT_TIMEOUT,
            buffered=False,
        )
