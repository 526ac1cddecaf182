# -*- test-case-name: tests.test_stringify -*-
"""
Ice's stringified identities, endpoints and proxies (the configuration syntax).

Configuration files and command lines name locators, adapters and objects as
text such as C{DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 12000}. Real Ice
clients print and parse the same text, so this module follows the canonical
form IcePy 3.7 produces: anything we print is what an operator would see in
an Ice trace, and anything Ice prints we parse back to the same value.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
import struct
from collections.abc import Callable, Iterable

from gridreg.ice.types import (
    DEFAULT_TIMEOUT,
    ENCODING_1_0,
    ENCODING_1_1,
    ENDPOINT_TYPES,
    PROTOCOL_1_0,
    Endpoint,
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

from gridreg.ice.identities import (  # re-exported: the errors and identity forms are public here
    WHITESPACE,
    EndpointParseError,
    IdentityParseError,
    ProxyParseError,
    _escape,
    _unescape,
    identity_from_string,
    identity_to_string,
)

_MAX_INT32 = 0x7FFFFFFF


_QUOTED = {q: re.compile(q + r"(?:[^\\" + q + r"]|\\.)*" + q, re.DOTALL) for q in "\"'"}


def _quoted_end(text: str, start: int) -> int:
    """Index just past the quote closing the one at C{start} (C{\\} escapes), or -1."""
    match = _QUOTED[text[start]].match(text, start)
    return match.end() if match else -1


def _split_endpoints(text: str, error: Callable[[str], Exception]) -> list[str]:
    """Split at C{:} outside quotes; C{"::1"} stays whole."""
    pieces, start, i = [], 0, 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            end = _quoted_end(text, i)
            if end < 0:
                raise error("mismatched quote")
            i = end
        elif c == "\\" and text[i + 1 : i + 2] in ('"', "'"):
            i += 2
        elif c == ":":
            pieces.append(text[start:i])
            start = i = i + 1
        else:
            i += 1
    pieces.append(text[start:])
    return pieces


def _endpoint_tokens(text: str, error: Callable[[str], Exception]) -> list[str]:
    """Split at white space; quotes group (and are removed), C{\\"} is a literal quote."""
    tokens: list[str] = []
    current: list[str] | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in WHITESPACE:
            if current is not None:
                tokens.append("".join(current))
                current = None
            i += 1
            continue
        if current is None:
            current = []
        if c == "\\" and i + 1 < n and text[i + 1] in "\"'":
            current.append(text[i + 1])
            i += 2
        elif c in "\"'":
            end = _quoted_end(text, i)
            if end < 0:
                raise error("mismatched quote")
            current.append(text[i + 1 : end - 1].replace("\\" + c, c))
            i = end
        else:
            current.append(c)
            i += 1
    if current is not None:
        tokens.append("".join(current))
    return tokens


def _quote_arg(value: str) -> str:
    """Quote like IcePy (on C{:}), and on blanks and quotes so the text parses back."""
    if any(c in value for c in ":\"'" + WHITESPACE):
        return '"' + value.replace('"', '\\"') + '"'
    return value


# -- endpoints ---------------------------------------------------------------

_INT = re.compile(r"[+-]?[0-9]+\Z")
_VERSION = re.compile(r"([0-9]+)\.([0-9]+)\Z")
_TCP_OPTIONS = {
    "-h": "host",
    "-p": "port",
    "-t": "timeout",
    "-z": "compress",
    "--sourceAddress": "source_address",
}
_WS_OPTIONS = dict(_TCP_OPTIONS, **{"-r": "resource"})
_UDP_OPTIONS = {
    "-h": "host",
    "-p": "port",
    "-z": "compress",
    "--ttl": "ttl",
    "--interface": "interface",
    "-c": "connect",
}
_OPAQUE_OPTIONS = {"-t": "type", "-e": "encoding", "-v": "body"}
_TRANSPORTS: dict[str, tuple[type, dict[str, str]]] = {
    "tcp": (TcpEndpoint, _TCP_OPTIONS),
    "ssl": (SslEndpoint, _TCP_OPTIONS),
    "ws": (WsEndpoint, _WS_OPTIONS),
    "wss": (WssEndpoint, _WS_OPTIONS),
    "udp": (UdpEndpoint, _UDP_OPTIONS),
    "opaque": (OpaqueEndpoint, _OPAQUE_OPTIONS),
}
_FLAGS = frozenset({"compress", "connect"})


def _parse_version(value: str) -> Version | None:
    """Parse C{major.minor}; Ice rejects major 0 and anything over 255."""
    match = _VERSION.match(value)
    if match is None or not 0 < int(match.group(1)) <= 255 or int(match.group(2)) > 255:
        return None
    return Version(int(match.group(1)), int(match.group(2)))


def _convert(field: str, option: str, value: str, error: Callable[[str], Exception]) -> object:
    """Turn one endpoint option argument into its field value."""
    if field in ("port", "ttl", "type"):
        limit = {"port": 65535, "ttl": _MAX_INT32, "type": 32767}[field]
        if not _INT.match(value):
            raise error(f"invalid {field} value {value!r} for {option}")
        number = int(value)
        if not 0 <= number <= limit:
            raise error(f"{field} value {value!r} for {option} is out of range 0..{limit}")
        return number
    if field == "timeout" and value == "infinite":
        return -1
    if field == "timeout":
        if not _INT.match(value) or not 0 < int(value) <= _MAX_INT32:
            raise error(f"invalid timeout value {value!r} for -t (milliseconds > 0 or 'infinite')")
        return int(value)
    if field == "source_address":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise error(f"invalid IP address {value!r} for --sourceAddress") from None
    if field == "encoding":
        version = _parse_version(value)
        if version is None:
            raise error(f"invalid encoding version {value!r} for -e")
        return version
    if field == "body":
        stripped = value.rstrip("=")
        try:
            return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
        except binascii.Error:
            raise error(f"invalid base64 value {value!r} for -v") from None
    return value


def endpoint_from_string(
    text: str,
    default_protocol: str = "tcp",
    default_timeout: int = DEFAULT_TIMEOUT,
    *,
    server: bool = False,
) -> Endpoint:
    """
    Parse one endpoint such as C{tcp -h 127.0.0.1 -p 12000}.

    @param default_protocol: what the C{default} transport means
        (Ice.Default.Protocol).
    @param default_timeout: the timeout of endpoints without C{-t}
        (Ice.Default.Timeout).
    @param server: C{True} for object-adapter (listening) endpoints, where
        C{-h *} means every interface; proxies may not use it.
    @raise EndpointParseError: naming the unknown transport or option, the
        missing argument or the bad value.
    """
    endpoints = endpoints_from_string(text, default_protocol, default_timeout, server=server)
    if len(endpoints) != 1:
        raise EndpointParseError("unquoted ':' in a single endpoint", text)
    return endpoints[0]


def endpoints_from_string(
    text: str,
    default_protocol: str = "tcp",
    default_timeout: int = DEFAULT_TIMEOUT,
    *,
    server: bool = False,
) -> tuple[Endpoint, ...]:
    """
    Parse C{:}-separated endpoints (a C{:} inside quotes does not split).

    @raise EndpointParseError: if any endpoint is empty or invalid.
    """

    def error(reason: str) -> EndpointParseError:
        return EndpointParseError(reason, text)

    result = []
    for piece in _split_endpoints(text, error):
        if not piece.strip(WHITESPACE):
            raise error("empty endpoint")
        result.append(
            _parse_endpoint(piece.strip(WHITESPACE), default_protocol, default_timeout, server)
        )
    return tuple(result)


def _parse_endpoint(
    text: str, default_protocol: str, default_timeout: int, server: bool
) -> Endpoint:
    def error(reason: str) -> EndpointParseError:
        return EndpointParseError(reason, text)

    tokens = _endpoint_tokens(text, error)
    transport = default_protocol if tokens[0] == "default" else tokens[0]
    if transport not in _TRANSPORTS:
        raise error(f"unknown transport {tokens[0]!r}")
    kind, options = _TRANSPORTS[transport]
    fields: dict[str, object] = {}
    i = 1
    while i < len(tokens):
        option = tokens[i]
        field = options.get(option)
        if field is None:
            raise error(f"unknown option {option!r} for {transport}")
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if transport == "opaque" and field in fields:
            raise error(f"{option} given more than once")
        if field in _FLAGS:
            if following is not None and not following.startswith("-"):
                raise error(f"unexpected argument {following!r} for {option}")
            fields[field] = True
            i += 1
            continue
        if not following or following.startswith("-"):
            raise error(f"no argument provided for {option}")
        if field == "host" and following == "*" and not server:
            raise error("'-h *' is valid only for server endpoints")
        fields[field] = _convert(field, option, following, error)
        i += 2
    if kind is OpaqueEndpoint:
        return _opaque(fields, error)
    if "timeout" in options.values():
        fields.setdefault("timeout", default_timeout)
    endpoint: Endpoint = kind(**fields)
    return endpoint


def _opaque(fields: dict[str, object], error: Callable[[str], Exception]) -> Endpoint:
    """Build an opaque endpoint, or the modeled one its bytes describe (as IcePy does)."""
    for option, field in (("-t", "type"), ("-v", "body")):
        if field not in fields:
            raise error(f"no {option} option in opaque endpoint")
    fields.setdefault("encoding", ENCODING_1_0)
    opaque = OpaqueEndpoint(**fields)  # type: ignore[arg-type]
    if opaque.type in ENDPOINT_TYPES and opaque.encoding in (ENCODING_1_0, ENCODING_1_1):
        decoded = _decode_body(opaque)
        if decoded is None:
            raise error(f"opaque body does not decode as a type {opaque.type} endpoint")
        return decoded
    return opaque


def _decode_body(opaque: OpaqueEndpoint) -> Endpoint | None:
    """Decode an opaque body of a type we model; C{None} if malformed."""
    data, pos = opaque.body, 0

    def take(size: int) -> bytes:
        nonlocal pos
        if pos + size > len(data):
            raise ValueError("short body")
        pos += size
        return data[pos - size : pos]

    def string() -> str:
        size = take(1)[0]
        if size == 255:
            size = struct.unpack("<i", take(4))[0]
        return take(size).decode("utf-8")

    kind = ENDPOINT_TYPES[opaque.type]
    try:
        host, port = string(), struct.unpack("<i", take(4))[0]
        if kind is UdpEndpoint:
            if opaque.encoding == ENCODING_1_0:
                take(4)
            endpoint: Endpoint = UdpEndpoint(host=host, port=port, compress=bool(take(1)[0]))
        else:
            timeout = struct.unpack("<i", take(4))[0]
            compress = bool(take(1)[0])
            extra = {"resource": string()} if issubclass(kind, WsEndpoint) else {}
            endpoint = kind(host=host, port=port, timeout=timeout, compress=compress, **extra)
    except (ValueError, struct.error):
        return None
    return endpoint if pos == len(data) else None


def endpoint_to_string(endpoint: Endpoint) -> str:
    """Print an endpoint in IcePy's canonical form, e.g. C{tcp -p 12000 -t 60000}."""
    if isinstance(endpoint, OpaqueEndpoint):
        body = base64.b64encode(endpoint.body).decode("ascii")
        return f"opaque -t {endpoint.type} -e {endpoint.encoding} -v {body}"
    parts = [endpoint.TRANSPORT]
    if endpoint.host:
        parts.append("-h " + _quote_arg(endpoint.host))
    parts.append(f"-p {endpoint.port}")
    if isinstance(endpoint, UdpEndpoint):
        if endpoint.interface:
            parts.append("--interface " + _quote_arg(endpoint.interface))
        if endpoint.ttl != -1:
            parts.append(f"--ttl {endpoint.ttl}")
        if endpoint.connect:
            parts.append("-c")
    else:
        if endpoint.source_address:
            parts.append("--sourceAddress " + _quote_arg(endpoint.source_address))
        parts.append("-t " + ("infinite" if endpoint.timeout == -1 else str(endpoint.timeout)))
    if endpoint.compress:
        parts.append("-z")
    if isinstance(endpoint, WsEndpoint):
        parts.append("-r " + _quote_arg(endpoint.resource))
    return " ".join(parts)


# -- proxies -----------------------------------------------------------------

_MODE_OPTIONS = {
    "-t": ProxyMode.TWOWAY,
    "-o": ProxyMode.ONEWAY,
    "-O": ProxyMode.BATCH_ONEWAY,
    "-d": ProxyMode.DATAGRAM,
    "-D": ProxyMode.BATCH_DATAGRAM,
}
_MODE_NAMES = {mode: option for option, mode in _MODE_OPTIONS.items()}
_PROXY_DELIMITERS = WHITESPACE + ":@"


@functools.lru_cache(maxsize=None)
def _delimiter(delimiters: str) -> re.Pattern[str]:
    """The first of C{delimiters}, found by one search (not a few calls a character)."""
    return re.compile("[" + re.escape(delimiters) + "]")


def _proxy_token(
    text: str,
    i: int,
    error: Callable[[str], Exception],
    what: str,
    delimiters: str = _PROXY_DELIMITERS,
) -> tuple[str, int, bool]:
    """
    Read a quoted string (quotes removed, escapes kept) or a run up to one of
    C{delimiters} at C{i}; return it, the index after it and whether quoted.
    """
    if text[i] in "\"'":
        end = _quoted_end(text, i)
        if end < 0:
            raise error(f"mismatched quotes around {what}")
        if end < len(text) and text[end] not in delimiters:
            raise error(f"unexpected {text[end:]!r} after quoted {what}")
        return text[i + 1 : end - 1], end, True
    found = _delimiter(delimiters).search(text, i)
    end = len(text) if found is None else found.start()
    return text[i:end], end, False


def _skip_space(text: str, i: int) -> int:
    return len(text) - len(text[i:].lstrip(WHITESPACE))


@functools.lru_cache(maxsize=64)
def _proxy_endpoints(
    text: str, default_protocol: str, default_timeout: int
) -> tuple[Endpoint, ...]:
    """
    L{endpoints_from_string} for proxies, remembered: the proxies an admin
    adds one after the other mostly share their endpoints, whose parsing was
    a third of parsing a proxy. Endpoints are immutable; a text that does
    not parse is not remembered.
    """
    return endpoints_from_string(text, default_protocol, default_timeout)


def proxy_from_string(
    text: str, default_protocol: str = "tcp", default_timeout: int = DEFAULT_TIMEOUT
) -> Proxy:
    """
    Parse a stringified proxy: C{identity [options] [:endpoint...| @ adapter]}.

    @raise ProxyParseError: (or its identity/endpoint subclasses) naming the
        offending text; the empty string is an error, not a null proxy.
    """

    def error(reason: str) -> ProxyParseError:
        return ProxyParseError(reason, text)

    s = text.strip(WHITESPACE)
    if not s:
        raise error("empty proxy string")
    token, i, _ = _proxy_token(s, 0, error, "identity")
    try:
        identity = identity_from_string(token)
    except IdentityParseError as e:
        raise IdentityParseError(f"{e.reason} (identity {token!r})", text) from None
    fields: dict[str, object] = {"identity": identity}
    while True:
        if i < len(s) and s[i] in ":@":
            break  # no space to skip (the endpoints right after the identity)
        i = _skip_space(s, i)
        if i == len(s) or s[i] in ":@":
            break
        option, i, _ = _proxy_token(s, i, error, "option")
        if option in _MODE_OPTIONS or option == "-s":
            j = _skip_space(s, i)
            if j < len(s) and s[j] not in ":@-":
                raise error(
                    f"unexpected argument {_proxy_token(s, j, error, 'argument')[0]!r} for {option}"
                )
            if option == "-s":
                fields["secure"] = True
            else:
                fields["mode"] = _MODE_OPTIONS[option]
        elif option in ("-f", "-e", "-p"):
            i = _skip_space(s, i)
            argument, quoted = "", False
            if i < len(s) and s[i] not in ":@":
                argument, i, quoted = _proxy_token(s, i, error, f"argument of {option}")
            if not argument or (argument.startswith("-") and not quoted):
                raise error(f"no argument provided for {option}")
            if option == "-f":
                fields["facet"] = _unescape(argument, "", error)
            else:
                version = _parse_version(argument)
                if version is None:
                    raise error(f"invalid version {argument!r} for {option}")
                fields["encoding" if option == "-e" else "protocol"] = version
        elif option.startswith("-"):
            raise error(f"unknown proxy option {option!r}")
        else:
            raise error(f"expected a proxy option but found {option!r}")
    if i < len(s) and s[i] == ":":
        try:
            fields["endpoints"] = _proxy_endpoints(s[i + 1 :], default_protocol, default_timeout)
        except EndpointParseError as e:
            raise EndpointParseError(f"{e.reason} (endpoint {e.text!r})", text) from None
    elif i < len(s):
        fields["adapter_id"] = _parse_adapter_id(s, _skip_space(s, i + 1), error)
    return Proxy(**fields)  # type: ignore[arg-type]


def _parse_adapter_id(s: str, i: int, error: Callable[[str], Exception]) -> str:
    if i == len(s):
        raise error("missing adapter id after '@'")
    raw, end, _ = _proxy_token(s, i, error, "adapter id", WHITESPACE)
    if end != len(s):
        raise error(f"unexpected {s[end:].strip(WHITESPACE)!r} after the adapter id")
    adapter_id = _unescape(raw, "", error)
    if not adapter_id:
        raise error("empty adapter id")
    return adapter_id


def _quote_proxy_part(value: str, quote_option_like: bool = False) -> str:
    """Quote an escaped identity, facet or adapter id that would otherwise split."""
    if any(c in value for c in " :@") or (quote_option_like and value.startswith("-")):
        return f'"{value}"'
    return value


def proxy_to_string(proxy: Proxy, mode: str = "Unicode") -> str:
    """
    Print a proxy exactly as IcePy's C{proxyToString} does, e.g.
    C{hello -t -e 1.1 @ HelloAdapter}. A facet starting with C{-} is quoted so
    that it parses back (IcePy prints it bare and cannot read its own output).
    """
    parts = [_quote_proxy_part(identity_to_string(proxy.identity, mode))]
    if proxy.facet:
        parts.append("-f " + _quote_proxy_part(_escape(proxy.facet, "", mode), True))
    parts.append(_MODE_NAMES[proxy.mode])
    if proxy.secure:
        parts.append("-s")
    if proxy.protocol != PROTOCOL_1_0:
        parts.append(f"-p {proxy.protocol}")
    parts.append(f"-e {proxy.encoding}")
    text = " ".join(parts)
    if proxy.endpoints:
        return ":".join([text] + [endpoint_to_string(e) for e in proxy.endpoints])
    if proxy.adapter_id:
        return f"{text} @ {_quote_proxy_part(_escape(proxy.adapter_id, '', mode))}"
    return text


def endpoints_to_string(endpoints: Iterable[Endpoint]) -> str:
    """Several endpoints as Ice writes them in a proxy: joined by C{:}."""
    return ":".join(endpoint_to_string(endpoint) for endpoint in endpoints)
