# -*- test-case-name: tests.test_ice_encoding -*-
"""
The Ice data model shared by the codec, the proxy grammar and the registry.

Every value here is immutable and hashable, so registry indexes can use them
as keys and pre-encoded replies can be cached per value.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Union

import attrs


@attrs.frozen(order=True)
class Version:
    """A protocol or encoding version (major, minor)."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


PROTOCOL_1_0 = Version(1, 0)
ENCODING_1_0 = Version(1, 0)
ENCODING_1_1 = Version(1, 1)


@attrs.frozen(order=True, cache_hash=True)
class Identity:
    """An Ice object identity; C{name} comes first on the wire."""

    name: str
    category: str = ""


class ProxyMode(enum.IntEnum):
    """How a proxy invokes: the mode byte in a marshaled proxy."""

    TWOWAY = 0
    ONEWAY = 1
    BATCH_ONEWAY = 2
    DATAGRAM = 3
    BATCH_DATAGRAM = 4


class OperationMode(enum.IntEnum):
    """The mode byte of a request."""

    NORMAL = 0
    NONMUTATING = 1
    IDEMPOTENT = 2


DEFAULT_TIMEOUT = 60000


@attrs.frozen
class TcpEndpoint:
    """A C{tcp} endpoint. C{host} may be empty (the wire keeps it empty)."""

    TYPE: ClassVar[int] = 1
    TRANSPORT: ClassVar[str] = "tcp"

    host: str = ""
    port: int = 0
    timeout: int = DEFAULT_TIMEOUT  # milliseconds, -1 = infinite
    compress: bool = False
    source_address: str = ""  # never marshaled


@attrs.frozen
class SslEndpoint(TcpEndpoint):
    """An C{ssl} endpoint: the same fields as TCP, type 2."""

    TYPE: ClassVar[int] = 2
    TRANSPORT: ClassVar[str] = "ssl"


@attrs.frozen
class UdpEndpoint:
    """A C{udp} endpoint; C{ttl}, C{interface} and C{connect} are not marshaled."""

    TYPE: ClassVar[int] = 3
    TRANSPORT: ClassVar[str] = "udp"

    host: str = ""
    port: int = 0
    compress: bool = False
    ttl: int = -1
    interface: str = ""
    connect: bool = False


@attrs.frozen
class WsEndpoint:
    """A C{ws} endpoint: TCP fields plus a resource path."""

    TYPE: ClassVar[int] = 4
    TRANSPORT: ClassVar[str] = "ws"

    host: str = ""
    port: int = 0
    timeout: int = DEFAULT_TIMEOUT
    compress: bool = False
    resource: str = "/"
    source_address: str = ""


@attrs.frozen
class WssEndpoint(WsEndpoint):
    """A C{wss} endpoint: the same fields as WS, type 5."""

    TYPE: ClassVar[int] = 5
    TRANSPORT: ClassVar[str] = "wss"


@attrs.frozen
class OpaqueEndpoint:
    """
    An endpoint of a type this runtime does not model: kept byte for byte,
    with the encoding of its own encapsulation, and written back unchanged.
    """

    TRANSPORT: ClassVar[str] = "opaque"

    type: int
    encoding: Version
    body: bytes


Endpoint = Union[TcpEndpoint, SslEndpoint, UdpEndpoint, WsEndpoint, WssEndpoint, OpaqueEndpoint]

ENDPOINT_TYPES: dict[int, type] = {
    1: TcpEndpoint,
    2: SslEndpoint,
    3: UdpEndpoint,
    4: WsEndpoint,
    5: WssEndpoint,
}


@attrs.frozen
class Proxy:
    """
    A non-null Ice proxy. A null proxy is represented by C{None}.

    No endpoints and an empty C{adapter_id}: a well-known proxy.
    No endpoints and an C{adapter_id}: an indirect proxy (C{id@adapter}).
    """

    identity: Identity
    facet: str = ""
    mode: ProxyMode = ProxyMode.TWOWAY
    secure: bool = False
    protocol: Version = PROTOCOL_1_0
    encoding: Version = ENCODING_1_1
    endpoints: tuple[Endpoint, ...] = ()
    adapter_id: str = ""

    @property
    def is_well_known(self) -> bool:
        return not self.endpoints and not self.adapter_id

    @property
    def is_indirect(self) -> bool:
        return not self.endpoints
