# -*- test-case-name: tests.test_registry_discovery -*-
"""
The IceLocatorDiscovery lookup: how Ice clients without C{Ice.Default.Locator}
find the replicas.

A client with the IceLocatorDiscovery plug-in multicasts
C{IceLocatorDiscovery/Lookup.findLocator(instanceName, reply)} as one
datagram (a oneway request, no connection validation); every registry of
that instance answers with C{reply.foundLocator(locator)}, also a oneway
datagram, and the plug-in merges the endpoints of the locators it hears.
Each replica answers with its C{<instance>/Locator} proxy, which already
carries the client endpoints of every active replica, so one answer is
enough for the client to fail over along all of them.

Off by default (C{IceGrid.Registry.Discovery.Enabled=0}), unlike IceGrid:
gridreg replicas never joined a multicast group before, and turning the
lookup on silently would join 239.255.0.1 on the default route's interface
of every host running a replica (and of every test run), answer any
IceLocatorDiscovery client of the same instance on that network, and need
UDP 4061 open in firewalls that were set up for TCP only. Set
C{Enabled=1} (with C{Interface} to keep it on one network) to use it.

Nothing here may stop a replica: a datagram that cannot be decoded is
dropped with a log line, and an endpoint that cannot be listened on or
whose multicast group cannot be joined (no route in a container, say) is
logged and skipped.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from gridreg.ice.encoding import InputStream, MarshalError, OutputStream
from gridreg.ice.messages import (
    HEADER_SIZE,
    MessageType,
    ProtocolError,
    Request,
    decode_request,
    decompress_message,
    encode_request,
    parse_header,
)
from gridreg.ice.stringify import endpoints_to_string
from gridreg.ice.types import Identity, OperationMode, Proxy, UdpEndpoint

__all__ = ["LOOKUP_IDENTITY", "Discovery", "LookupProtocol", "found_locator_datagram"]

#: the identity IceLocatorDiscovery's plug-in sends its lookup to
LOOKUP_IDENTITY = Identity("Lookup", "IceLocatorDiscovery")
#: the largest datagram read, as Ice's UDP transport (64 KB less the headers)
MAX_DATAGRAM = 65535


class DroppedDatagram(Exception):
    """A datagram that is not a lookup request this registry can answer."""


def found_locator_datagram(reply: Proxy, locator: Proxy) -> bytes:
    """The oneway C{reply.foundLocator(locator)} request, as one datagram."""
    params = OutputStream(reply.encoding)
    params.write_proxy(locator)
    request = Request(
        0,
        reply.identity,
        reply.facet,
        "foundLocator",
        OperationMode.NORMAL,
        {},
        reply.encoding,
        params.getvalue(),
    )
    return encode_request(request)


def _decode_lookup(data: bytes) -> tuple[str, Optional[Proxy]]:
    """
    The instance name and reply proxy of a C{findLocator} datagram.

    @raise DroppedDatagram: anything else, with the reason.
    """
    if len(data) < HEADER_SIZE:
        raise DroppedDatagram(f"{len(data)} bytes, shorter than a message header")
    try:
        header = parse_header(data)
        if header.size != len(data):
            raise DroppedDatagram(f"header says {header.size} bytes, datagram has {len(data)}")
        if header.message_type != MessageType.REQUEST:
            raise DroppedDatagram(f"message type {header.message_type}, not a request")
        message = decompress_message(data, MAX_DATAGRAM) if header.compression == 2 else data
        request = decode_request(message[HEADER_SIZE:])
        if request.identity != LOOKUP_IDENTITY or request.facet:
            raise DroppedDatagram(f"request for {request.identity!r}, not the lookup")
        if request.operation != "findLocator":
            raise DroppedDatagram(f"operation {request.operation!r}, not findLocator")
        params = InputStream(request.params, request.encoding)
        instance = params.read_string()
        reply = params.read_proxy()
    except (ProtocolError, MarshalError, ValueError, IndexError) as exc:
        raise DroppedDatagram(f"malformed: {exc}") from None
    return instance, reply


def _reply_address(reply: Proxy, sender: tuple[str, int]) -> Optional[tuple[str, int]]:
    """
    Where to send the answer: the reply proxy's first UDP endpoint with an
    IPv4 address (an empty host means the sender's); names are not resolved.
    """
    for endpoint in reply.endpoints:
        if not isinstance(endpoint, UdpEndpoint) or not 0 < endpoint.port < 65536:
            continue
        host = endpoint.host or sender[0]
        try:
            if ipaddress.ip_address(host).version == 4:
                return host, endpoint.port
        except ValueError:
            continue
    return None


class LookupProtocol(DatagramProtocol):
    """
    Answers C{findLocator} for one instance on one lookup endpoint; replies
    go out through C{sender}, a socket not bound to the multicast group.
    """

    log = Logger()

    def __init__(
        self,
        instance: str,
        locator: Callable[[], Optional[Proxy]],
        send: Callable[[bytes, tuple[str, int]], None],
        trace: int = 0,
    ) -> None:
        self.instance = instance
        self.locator = locator
        self.send = send
        self.trace = trace

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            instance, reply = _decode_lookup(datagram)
        except DroppedDatagram as why:
            self.log.info(
                "[Discovery] dropped a datagram from {sender}: {why}", sender=addr, why=str(why)
            )
            return
        if instance and instance != self.instance:
            if self.trace > 1:
                self.log.info(
                    "[Discovery] ignored discovery lookup for instance name `{asked}' "
                    "from {sender}",
                    asked=instance,
                    sender=addr,
                )
            return
        locator = self.locator()
        if reply is None or locator is None:
            return  # nowhere to answer, or not listening yet
        target = _reply_address(reply, addr)
        if target is None:
            self.log.info(
                "[Discovery] cannot answer {sender}: reply proxy {reply!r} has no IPv4 "
                "udp endpoint",
                sender=addr,
                reply=endpoints_to_string(reply.endpoints),
            )
            return
        try:
            self.send(found_locator_datagram(reply, locator), target)
        except Exception as exc:  # an unreachable network must not stop the replica
            self.log.info(
                "[Discovery] cannot answer {target}: {error}", target=target, error=str(exc)
            )
            return
        if self.trace > 0:
            self.log.info(
                "[Discovery] replying to discovery lookup for instance name `{asked}' "
                "from {target} with {locator}",
                asked=instance,
                target=target,
                locator=endpoints_to_string(locator.endpoints),
            )


class Discovery:
    """
    The lookup endpoints of one replica: listens on each after the client
    endpoints listen, and stops listening when the replica stops.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        instance: str,
        endpoints: tuple[UdpEndpoint, ...],
        locator: Callable[[], Optional[Proxy]],
        trace: int = 0,
    ) -> None:
        self.reactor = reactor
        self.instance = instance
        self.endpoints = endpoints
        self.locator = locator
        self.trace = trace
        self.ports: list[Any] = []
        self._sender: Any = None

    def _send(self, datagram: bytes, target: tuple[str, int]) -> None:
        if self._sender is None:
            self._sender = self.reactor.listenUDP(0, DatagramProtocol())
        self._sender.write(datagram, target)

    def start(self) -> None:
        """Listen on every lookup endpoint; failures are warnings, never fatal."""
        for endpoint in self.endpoints:
            try:
                self._listen(endpoint)
            except Exception as exc:
                self.log.warn(
                    "[Discovery] cannot listen on {endpoint}: {error}; IceLocatorDiscovery "
                    "clients will not find this replica there",
                    endpoint=endpoints_to_string((endpoint,)),
                    error=str(exc),
                )

    def _listen(self, endpoint: UdpEndpoint) -> None:
        protocol = LookupProtocol(self.instance, self.locator, self._send, self.trace)
        text = endpoints_to_string((endpoint,))
        host = endpoint.host if endpoint.host not in ("", "*", "0.0.0.0") else ""
        if host and ipaddress.ip_address(host).is_multicast:
            port = self.reactor.listenMulticast(
                endpoint.port, protocol, interface=host, listenMultiple=True
            )
            self.ports.append(port)
            joined = maybeDeferred(port.joinGroup, host, endpoint.interface or "")
            joined.addCallbacks(
                lambda _: self.log.info("[Discovery] answering lookups on {e}", e=text),
                lambda f: self.log.warn(
                    "[Discovery] cannot join {group} on {e}: {error}; IceLocatorDiscovery "
                    "clients will not find this replica there",
                    group=host,
                    e=text,
                    error=f.getErrorMessage(),
                ),
            )
        else:
            self.ports.append(self.reactor.listenUDP(endpoint.port, protocol, interface=host))
            self.log.info("[Discovery] answering lookups on {e}", e=text)

    def stop(self) -> Deferred[Any]:
        """Stop listening on the lookup endpoints and close the reply socket."""
        ports = self.ports + ([self._sender] if self._sender is not None else [])
        self.ports, self._sender = [], None
        return DeferredList(
            [maybeDeferred(port.stopListening) for port in ports], consumeErrors=True
        )
