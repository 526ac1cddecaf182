# -*- test-case-name: tests.test_ice_encoding -*-
"""
Marshaling of Ice data (encodings 1.0 and 1.1) to and from bytes.

L{OutputStream} writes and L{InputStream} reads the primitive types, sizes,
strings, identities, proxies, endpoints and encapsulations described in
C{docs/ice-protocol.md} sections 1 and 6.  The streams are deliberately
small and concrete: the locator decodes one request per call, so every
read is a bounds check plus a C{struct} call, and every malformed input
surfaces as L{MarshalError} and nothing else, because the decoders face
bytes from the network.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from gridreg.ice.types import (
    ENCODING_1_0,
    ENCODING_1_1,
    Endpoint,
    Identity,
    OpaqueEndpoint,
    Proxy,
    ProxyMode,
    SslEndpoint,
    TcpEndpoint,
    UdpEndpoint,
    Version,
    WsEndpoint,
    WssEndpoint,
)

__all__ = [
    "InputStream",
    "MarshalError",
    "OutputStream",
    "encaps",
    "is_supported_encoding",
    "version_of",
]


class MarshalError(ValueError):
    """
    Malformed, truncated or unsupported marshaled data.

    Readers raise only this on bad input, so network-facing code needs a
    single C{except} clause.  Writers raise it for values that cannot be
    represented on the wire.
    """


_BYTE = struct.Struct("<B")
_SHORT = struct.Struct("<h")
_INT = struct.Struct("<i")
_LONG = struct.Struct("<q")
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")
_ENCAPS_HEADER = struct.Struct("<iBB")
_VERSION = struct.Struct("<BB")

_PROXY_MODES = tuple(ProxyMode)
_UDP_1_0_VERSIONS = b"\x01\x00\x01\x00"
_MODELLED_TYPES = frozenset((1, 2, 3, 4, 5))


def version_of(major: int, minor: int) -> Version:
    """
    Return a L{Version}, reusing the shared constants for the common values
    so that decoding does not allocate one per proxy or encapsulation.
    """
    if major == 1:
        if minor == 1:
            return ENCODING_1_1
        if minor == 0:
            return ENCODING_1_0
    return Version(major, minor)


def is_supported_encoding(encoding: Version) -> bool:
    """Whether C{encoding} is 1.0 or 1.1, the two encodings Ice 3.7 speaks."""
    return encoding.major == 1 and encoding.minor in (0, 1)


#: the one-byte sizes' bytes, by size (L{OutputStream.write_string}: a C{struct} call less)
_SMALL_SIZES = tuple(bytes((n,)) for n in range(255))


def _size_bytes(value: int) -> bytes:
    if value < 0:
        raise MarshalError(f"negative size {value}")
    if value < 255:
        return _BYTE.pack(value)
    if value > 0x7FFFFFFF:
        raise MarshalError(f"size {value} too large")
    return b"\xff" + _INT.pack(value)


def encaps(encoding: Version, payload: bytes) -> bytes:
    """
    Wrap C{payload} (already marshaled with C{encoding}) in an
    encapsulation: int32 total size including the 6-byte header, then the
    encoding version.
    """
    return _ENCAPS_HEADER.pack(len(payload) + 6, encoding.major, encoding.minor) + payload


#: endpoints' bytes by (endpoint, 1.0 encoding?) (L{OutputStream.write_endpoint}):
#: endpoints are frozen values, equal ones marshal alike; bounded, as any peer
#: may send new ones. A dict's get and set are atomic: any thread may marshal
_endpoint_bytes: dict[tuple[Any, bool], bytes] = {}
_ENDPOINTS_KEPT = 1024

#: a proxy's bytes after its identity, by those fields and the 1.0 flag
#: (L{OutputStream.write_proxy}): the objects an admin adds mostly differ only
#: in their identity; bounded as L{_endpoint_bytes} is, thread-safe as it is
_proxy_tails: dict[tuple[Any, ...], bytes] = {}
_PROXY_TAILS_KEPT = 1024


class OutputStream:
    """
    Accumulates marshaled data.

    @ivar encoding: the encoding of the data being written; it decides the
        proxy layout, enum widths and the version of endpoint
        encapsulations.
    """

    __slots__ = ("_buf", "_is_1_0", "encoding")

    def __init__(self, encoding: Version = ENCODING_1_1) -> None:
        if encoding.major != 1 or encoding.minor not in (0, 1):  # is_supported_encoding
            raise MarshalError(f"unsupported encoding {encoding}")
        self.encoding = encoding
        self._is_1_0 = encoding.minor == 0
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        """Return everything written so far."""
        return bytes(self._buf)

    def write_bytes(self, raw: bytes) -> None:
        """Append already-marshaled bytes verbatim."""
        self._buf += raw

    def write_byte(self, value: int) -> None:
        try:
            self._buf.append(value)
        except ValueError as e:
            raise MarshalError(f"byte out of range: {value}") from e

    def write_bool(self, value: bool) -> None:
        self._buf.append(1 if value else 0)

    def write_short(self, value: int) -> None:
        self._pack(_SHORT, value)

    def write_int(self, value: int) -> None:
        self._pack(_INT, value)

    def write_long(self, value: int) -> None:
        self._pack(_LONG, value)

    def write_float(self, value: float) -> None:
        self._pack(_FLOAT, value)

    def write_double(self, value: float) -> None:
        self._pack(_DOUBLE, value)

    def _pack(self, packer: struct.Struct, value: object) -> None:
        try:
            self._buf += packer.pack(value)
        except struct.error as e:
            raise MarshalError(f"cannot marshal {value!r}: {e}") from e

    def write_size(self, value: int) -> None:
        """Write a size: one byte below 255, else C{FF} and an int32."""
        self._buf += _size_bytes(value)

    def write_string(self, value: str) -> None:
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise MarshalError(f"string not encodable as UTF-8: {e}") from e
        size = len(data)
        self._buf += _SMALL_SIZES[size] if size < 255 else _size_bytes(size)
        self._buf += data

    def write_string_seq(self, values: Sequence[str]) -> None:
        self.write_size(len(values))
        for value in values:
            self.write_string(value)

    def write_string_dict(self, values: Mapping[str, str]) -> None:
        """Write a C{dictionary<string,string>}, e.g. an C{Ice::Context}."""
        self.write_size(len(values))
        for key, value in values.items():
            self.write_string(key)
            self.write_string(value)

    def write_identity(self, identity: Identity) -> None:
        self.write_string(identity.name)
        self.write_string(identity.category)

    def write_facet(self, facet: str) -> None:
        """Write a facet as the 0- or 1-element sequence the wire uses."""
        if facet:
            self._buf.append(1)
            self.write_string(facet)
        else:
            self._buf.append(0)

    def write_version(self, version: Version) -> None:
        self._pack_version(version)

    def _pack_version(self, version: Version) -> None:
        try:
            self._buf += _VERSION.pack(version.major, version.minor)
        except struct.error as e:
            raise MarshalError(f"bad version {version}") from e

    def write_enum(self, value: int, max_value: int) -> None:
        """
        Write an enumerator.  1.1 writes a size; 1.0 writes a byte, short or
        int depending on C{max_value}, the largest enumerator value of the
        enum (this is what Ice 3.7 compares, see C{ice-protocol.md} §1).
        """
        if not 0 <= value <= max_value:
            raise MarshalError(f"enumerator {value} out of range 0..{max_value}")
        if not self._is_1_0:
            self.write_size(value)
        elif max_value < 127:
            self._buf.append(value)
        elif max_value < 32767:
            self.write_short(value)
        else:
            self.write_int(value)

    def write_encaps(self, encoding: Version, payload: bytes) -> None:
        self._buf += encaps(encoding, payload)

    def write_proxy(self, proxy: Proxy | None) -> None:
        """Write a proxy inline; C{None} is the null proxy C{00 00}."""
        if proxy is None:
            self._buf += b"\x00\x00"
            return
        identity = proxy.identity
        if not identity.name:
            raise MarshalError("a proxy needs a non-empty identity name")
        try:
            name = identity.name.encode("utf-8")
            category = identity.category.encode("utf-8")
        except UnicodeEncodeError as e:
            raise MarshalError(f"string not encodable as UTF-8: {e}") from e
        buf = self._buf  # write_identity's two strings, without their calls
        size = len(name)
        buf += _SMALL_SIZES[size] if size < 255 else _size_bytes(size)
        buf += name
        size = len(category)
        buf += _SMALL_SIZES[size] if size < 255 else _size_bytes(size)
        buf += category
        protocol, encoding = proxy.protocol, proxy.encoding
        # the versions by their numbers: equal as Versions are, without their __hash__
        key = (
            proxy.facet,
            proxy.mode,
            proxy.secure,
            protocol.major,
            protocol.minor,
            encoding.major,
            encoding.minor,
            proxy.endpoints,
            proxy.adapter_id,
            self._is_1_0,
        )
        try:
            tail = _proxy_tails.get(key)
        except TypeError:  # a field that cannot be hashed (a bytearray body): not kept
            self._buf += self._proxy_tail(proxy)
            return
        if tail is None:
            tail = self._proxy_tail(proxy)  # what does not marshal raises, and is not kept
            if len(_proxy_tails) >= _PROXY_TAILS_KEPT:
                _proxy_tails.clear()
            _proxy_tails[key] = tail
        buf += tail

    def _proxy_tail(self, proxy: Proxy) -> bytes:
        """
        A proxy's bytes after its identity, in this stream's encoding (kept
        by L{write_proxy}: their marshaling field by field was a fifth of
        the Python calls of an admin's write of an object on the master).
        """
        out = OutputStream(self.encoding)
        out._write_proxy_tail(proxy)
        return bytes(out._buf)

    def _write_proxy_tail(self, proxy: Proxy) -> None:
        self.write_facet(proxy.facet)
        mode = int(proxy.mode)
        if not 0 <= mode <= 4:
            raise MarshalError(f"bad proxy mode {mode}")
        self._buf.append(mode)
        self._buf.append(1 if proxy.secure else 0)
        if not self._is_1_0:
            self._pack_version(proxy.protocol)
            self._pack_version(proxy.encoding)
        self.write_size(len(proxy.endpoints))
        if proxy.endpoints:
            for endpoint in proxy.endpoints:
                self.write_endpoint(endpoint)
        else:
            self.write_string(proxy.adapter_id)

    def write_proxy_seq(self, proxies: Sequence[Proxy | None]) -> None:
        self.write_size(len(proxies))
        for proxy in proxies:
            self.write_proxy(proxy)

    def write_endpoint(self, endpoint: Endpoint) -> None:
        """
        Write an endpoint: type short plus an encapsulation.  Modelled
        endpoints are encapsulated with this stream's encoding; an
        L{OpaqueEndpoint} keeps its own encoding and body.

        Each endpoint's bytes are kept, per encoding (L{_endpoint_bytes}):
        a registry writes the same few endpoints again and again (every
        object a server's adapter adds is stored as its marshaled proxy),
        and their marshaling field by field was a fifth of the Python calls
        of an admin's write of an object.
        """
        key = (endpoint, self._is_1_0)
        try:
            data = _endpoint_bytes.get(key)
        except TypeError:  # a field that cannot be hashed (a bytearray body): not kept
            self._buf += self._marshal_endpoint(endpoint)
            return
        if data is None:
            data = self._marshal_endpoint(endpoint)
            if len(_endpoint_bytes) >= _ENDPOINTS_KEPT:
                _endpoint_bytes.clear()
            _endpoint_bytes[key] = data
        self._buf += data

    def _marshal_endpoint(self, endpoint: Endpoint) -> bytes:
        """An endpoint's bytes in this stream's encoding (L{write_endpoint})."""
        if isinstance(endpoint, OpaqueEndpoint):
            out = OutputStream(self.encoding)
            out._pack(_SHORT, endpoint.type)
            out.write_encaps(endpoint.encoding, endpoint.body)
            return out.getvalue()
        body = OutputStream(self.encoding)
        if isinstance(endpoint, UdpEndpoint):
            body.write_string(endpoint.host)
            body.write_int(endpoint.port)
            if self._is_1_0:
                body.write_bytes(_UDP_1_0_VERSIONS)
            body.write_bool(endpoint.compress)
        elif isinstance(endpoint, (TcpEndpoint, WsEndpoint)):
            body.write_string(endpoint.host)
            body.write_int(endpoint.port)
            body.write_int(endpoint.timeout)
            body.write_bool(endpoint.compress)
            if isinstance(endpoint, WsEndpoint):
                body.write_string(endpoint.resource)
        else:
            raise MarshalError(f"cannot marshal endpoint {endpoint!r}")
        out = OutputStream(self.encoding)
        out._pack(_SHORT, endpoint.TYPE)
        out.write_encaps(self.encoding, body.getvalue())
        return out.getvalue()


class InputStream:
    """
    Reads marshaled data from C{data}, starting at C{pos}.

    Every read checks the remaining length first, and every size is checked
    against the bytes left before anything is allocated, so garbage cannot
    make the reader allocate more than the input it was given.

    @ivar pos: the offset of the next byte to read.
    @ivar encoding: the encoding of the data (proxy layout, enum widths).
    """

    __slots__ = ("_end", "_is_1_0", "data", "encoding", "pos")

    def __init__(
        self, data: bytes | bytearray | memoryview, encoding: Version = ENCODING_1_1, pos: int = 0
    ) -> None:
        if encoding.major != 1 or encoding.minor > 1:
            raise MarshalError(f"unsupported encoding {encoding}")
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.pos = pos
        self.encoding = encoding
        self._is_1_0 = encoding.minor == 0
        self._end = len(self.data)

    @property
    def remaining(self) -> int:
        """The number of unread bytes."""
        return self._end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self._end

    def _need(self, n: int) -> int:
        """Reserve C{n} bytes and return their start offset."""
        pos = self.pos
        if n < 0 or pos + n > self._end:
            raise MarshalError(f"need {n} bytes at offset {pos}, {self._end - pos} left")
        self.pos = pos + n
        return pos

    def skip(self, n: int) -> None:
        self._need(n)

    def read_bytes(self, n: int) -> bytes:
        pos = self._need(n)
        return self.data[pos : pos + n]

    def read_byte(self) -> int:
        pos = self.pos
        if pos >= self._end:
            raise MarshalError(f"need 1 byte at offset {pos}")
        self.pos = pos + 1
        return self.data[pos]

    def read_bool(self) -> bool:
        return self.read_byte() != 0

    def _unpack(self, packer: struct.Struct) -> int:
        pos = self._need(packer.size)
        return packer.unpack_from(self.data, pos)[0]  # type: ignore[no-any-return]

    def read_short(self) -> int:
        return self._unpack(_SHORT)

    def read_int(self) -> int:
        return self._unpack(_INT)

    def read_long(self) -> int:
        return self._unpack(_LONG)

    def read_float(self) -> float:
        return self._unpack(_FLOAT)

    def read_double(self) -> float:
        return self._unpack(_DOUBLE)

    def read_size(self) -> int:
        size = self.read_byte()
        if size == 255:
            size = self._unpack(_INT)
            if size < 0:
                raise MarshalError(f"negative size {size}")
        return size

    def read_count(self, min_element_size: int) -> int:
        """
        Read a sequence/dictionary size and check that that many elements,
        each at least C{min_element_size} bytes, can fit in what is left.
        """
        count = self.read_size()
        if count * min_element_size > self._end - self.pos:
            raise MarshalError(f"count {count} exceeds the remaining data")
        return count

    def read_string(self) -> str:
        size = self.read_size()
        pos = self._need(size)
        try:
            return self.data[pos : pos + size].decode("utf-8")
        except UnicodeDecodeError as e:
            raise MarshalError(f"invalid UTF-8 in string: {e}") from e

    def read_string_seq(self) -> list[str]:
        return [self.read_string() for _ in range(self.read_count(1))]

    def read_string_dict(self) -> dict[str, str]:
        result = {}
        for _ in range(self.read_count(2)):
            key = self.read_string()
            result[key] = self.read_string()
        return result

    def read_identity(self) -> Identity:
        name = self.read_string()
        return Identity(name, self.read_string())

    def read_facet(self) -> str:
        """Read a facet sequence (0 or 1 element) and return it as a string."""
        count = self.read_size()
        if count == 0:
            return ""
        if count > 1:
            raise MarshalError(f"facet sequence with {count} elements")
        return self.read_string()

    def read_version(self) -> Version:
        pos = self._need(2)
        return version_of(self.data[pos], self.data[pos + 1])

    def read_enum(self, max_value: int) -> int:
        """Read an enumerator of an enum whose largest value is C{max_value}."""
        if not self._is_1_0:
            value = self.read_size()
        elif max_value < 127:
            value = self.read_byte()
        elif max_value < 32767:
            value = self.read_short()
        else:
            value = self.read_int()
        if not 0 <= value <= max_value:
            raise MarshalError(f"enumerator {value} out of range 0..{max_value}")
        return value

    def read_encaps(self) -> tuple[Version, bytes]:
        """
        Read an encapsulation and return its encoding and payload (the bytes
        after the 6-byte header).  The declared size is checked against the
        data left.
        """
        pos = self._need(6)
        size, major, minor = _ENCAPS_HEADER.unpack_from(self.data, pos)
        if size < 6:
            raise MarshalError(f"encapsulation size {size} < 6")
        end = pos + size
        if end > self._end:
            raise MarshalError(f"encapsulation size {size} exceeds the remaining data")
        self.pos = end
        return version_of(major, minor), self.data[pos + 6 : end]

    def skip_tagged_members(self) -> None:
        """
        Skip 1.1 tagged (optional) members up to and including the C{FF}
        end marker, as found in slices flagged 0x04.
        """
        while True:
            tag = self.read_byte()
            if tag == 0xFF:
                return
            fmt = tag & 0x07
            if tag >> 3 == 30:
                self.read_size()
            if fmt <= 3:  # F1, F2, F4, F8
                self._need(1 << fmt)
            elif fmt == 4:  # Size
                self.read_size()
            elif fmt == 5:  # VSize
                self._need(self.read_size())
            elif fmt == 6:  # FSize
                size = self._unpack(_INT)
                self._need(size)
            else:
                raise MarshalError("tagged class members are not supported")

    def read_proxy(self) -> Proxy | None:
        """
        Read an inline proxy; return C{None} for a null proxy (empty
        identity name).  A proxy read from 1.0 data gets protocol 1.0 and
        encoding 1.0.
        """
        name = self.read_string()
        category = self.read_string()
        if not name:
            return None
        facet = self.read_facet()
        mode = self.read_byte()
        if mode > 4:
            raise MarshalError(f"bad proxy mode {mode}")
        secure = self.read_byte() != 0
        if self._is_1_0:
            protocol = encoding = ENCODING_1_0
        else:
            protocol = self.read_version()
            encoding = self.read_version()
        count = self.read_count(8)
        if count:
            endpoints = tuple(self.read_endpoint() for _ in range(count))
            adapter_id = ""
        else:
            endpoints = ()
            adapter_id = self.read_string()
        return Proxy(
            Identity(name, category),
            facet,
            _PROXY_MODES[mode],
            secure,
            protocol,
            encoding,
            endpoints,
            adapter_id,
        )

    def read_proxy_seq(self) -> list[Proxy | None]:
        return [self.read_proxy() for _ in range(self.read_count(2))]

    def read_endpoint(self) -> Endpoint:
        """
        Read an endpoint.  Unknown types, and known types encapsulated with
        an encoding we do not speak, become an L{OpaqueEndpoint} that is
        written back unchanged.  Tagged data after the known fields is
        skipped.
        """
        etype = self._unpack(_SHORT)
        encoding, body = self.read_encaps()
        if etype not in _MODELLED_TYPES or not is_supported_encoding(encoding):
            return OpaqueEndpoint(etype, encoding, body)
        inp = InputStream(body, encoding)
        host = inp.read_string()
        port = inp.read_int()
        if etype == 3:
            if inp._is_1_0:
                inp._need(4)  # protocol and encoding 1.0, always written as such
            return UdpEndpoint(host, port, inp.read_bool())
        timeout = inp.read_int()
        compress = inp.read_bool()
        if etype == 1:
            return TcpEndpoint(host, port, timeout, compress)
        if etype == 2:
            return SslEndpoint(host, port, timeout, compress)
        resource = inp.read_string()
        if etype == 4:
            return WsEndpoint(host, port, timeout, compress, resource)
        return WssEndpoint(host, port, timeout, compress, resource)
