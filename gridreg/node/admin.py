# -*- test-case-name: tests.test_admin_routers -*-
"""
The node's end of IceGrid's admin routers (L{AdminRequest}): Ice requests
for the node's own admin object, answered here (its C{Properties} facet,
the node's configuration as loaded), and for a server's, sent on to the
admin object the server registered with C{setServerProcessProxy}.

The node forwards because a server's C{Ice.Admin.Endpoints} are
C{tcp -h localhost} (as icegridnode writes them): only the node's host can
reach them, as with IceGrid, whose registry goes through the node too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred, fail, maybeDeferred

from gridreg.ice.admin_facets import AdminObject, forwarded_request
from gridreg.ice.messages import Reply, reply_body
from gridreg.ice.types import Proxy, SslEndpoint, TcpEndpoint
from gridreg.protocol.errors import NodeError, NotFoundError, failure_reason

#: how long a server's admin object may take to answer, connection included
FORWARD_TIMEOUT = 10.0


def admin_endpoints(proxy: Proxy) -> tuple[TcpEndpoint, ...]:
    """
    The endpoints the node reaches a server's admin object at: its plain
    tcp ones (C{Ice.Admin.Endpoints} is C{tcp -h localhost}, as icegridnode
    writes it).
    """
    return tuple(
        e for e in proxy.endpoints if isinstance(e, TcpEndpoint) and not isinstance(e, SslEndpoint)
    )


class NodeAdmin:
    """What a node answers to L{gridreg.protocol.node_commands.AdminRequest}."""

    def __init__(
        self,
        reactor: Any,
        properties: Mapping[str, str],
        servers: Any,
        invoke: Optional[Callable[..., Deferred[Reply]]] = None,
    ) -> None:
        """
        @param invoke: how a request reaches a server (by default
            L{gridreg.registry.remote.invoke_direct}, a connection per request).
        """
        self.reactor = reactor
        self.servers = servers
        self.admin = AdminObject.with_properties(properties)
        if invoke is None:
            from gridreg.registry.remote import invoke_direct as invoke
        self._invoke = invoke

    def request(
        self,
        server: str,
        facet: str,
        operation: str,
        mode: int,
        context: dict[str, str],
        encoding: str,
        params: bytes,
    ) -> Deferred[bytes]:
        """
        The reply body, status byte onward. Fails with C{NotFoundError}
        for an unknown server, C{NodeError} when it cannot be reached.
        """
        request = forwarded_request(facet, operation, mode, context, encoding, params)
        if not server:
            return maybeDeferred(self.admin.dispatch, request)
        try:
            proxy = self.servers.admin_proxy(server)
        except (NotFoundError, NodeError) as exc:  # said to the replica as they are
            return fail(exc)
        d = self._invoke(
            self.reactor,
            admin_endpoints(proxy),
            attrs.evolve(proxy, facet=facet),
            operation,
            mode,  # type: ignore[arg-type]  (sent as it came: the server judges it)
            params,
            FORWARD_TIMEOUT,
            encoding=request.encoding,
            context=context,
        )

        def unreachable(failure: Any) -> Any:
            return fail(
                NodeError(
                    f"the admin object of server `{server}': "
                    f"{failure_reason(failure, FORWARD_TIMEOUT)}"
                )
            )

        return d.addCallbacks(reply_body, unreachable)
