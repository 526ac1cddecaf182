# -*- test-case-name: tests.test_properties -*-
"""
Ice property files and command-line overrides.

Operators configure IceGrid with Ice property files, so the registry reads
the same syntax with the same escapes and precedence. Every value remembers
where it came from, because a bad value is only fixable if the error says
which file and line set it.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Iterator, Mapping

import attrs

from gridreg.ice.stringify import (
    ProxyParseError,
    endpoints_from_string,
    proxy_from_string,
)
from gridreg.ice.types import DEFAULT_TIMEOUT, Endpoint, Proxy

COMMAND_LINE = "command line"
_INT = re.compile(r"[+-]?[0-9]+\Z")
_SPACE = " \t"


class PropertyError(ValueError):
    """A property file, override or value is malformed; the message says where."""


# -- parsing -----------------------------------------------------------------


def _parse_line(line: str) -> tuple[str, str] | None:
    """
    Parse one C{key = value} line the way Ice does; C{None} for a blank or
    comment line.

    An unescaped C{#} starts a comment. C{\\#}, C{\\=} and C{\\\\} are
    literal; in values C{\\ } keeps a blank that trimming would drop. Any
    other backslash is kept as written, so Windows paths need no doubling.
    Leading and trailing blanks of the key are dropped even when escaped.

    @raise ValueError: for a line without C{=} or with an empty key.
    """
    key: list[str] = []
    value: list[str] = []
    pending: list[str] = []  # unescaped blanks, kept only if more text follows
    in_value = False
    i = 0
    while i < len(line):
        c = line[i]
        escaped = c == "\\" and i + 1 < len(line) and line[i + 1] in "#=\\" + _SPACE
        if escaped:
            c = line[i + 1]
            i += 2
        else:
            i += 1
            if c == "#":
                break
            if c == "=" and not in_value:
                in_value = True
                continue
        if not in_value:
            key.append(c)
        elif c in _SPACE and not escaped:
            if value:
                pending.append(c)
        else:
            value.extend(pending)
            pending.clear()
            value.append(c)
    name = "".join(key).strip(_SPACE)
    if not in_value:
        if name:
            raise ValueError("missing '=' in property line")
        return None
    if not name:
        raise ValueError("empty property name")
    return name, "".join(value)


def parse_text(text: str, source_name: str, properties: Properties | None = None) -> Properties:
    """
    Apply Ice property-file C{text} to C{properties} (or a new set); later
    lines override earlier ones and an empty value unsets the property.

    @param source_name: the file name used in sources and error messages.
    @raise PropertyError: naming C{source_name:line} and the offending text.
    """
    if properties is None:
        properties = Properties()
    text = text.removeprefix("\ufeff")
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        try:
            parsed = _parse_line(line)
        except ValueError as e:
            raise PropertyError(f"{source_name}:{number}: {e}: {line.strip()!r}") from None
        if parsed is not None:
            properties.set(parsed[0], parsed[1], source=f"{source_name}:{number}")
    return properties


def load_file(path: str | os.PathLike[str], properties: Properties | None = None) -> Properties:
    """
    Read an Ice property file (UTF-8) into C{properties} (or a new set).

    @raise PropertyError: if the file cannot be read, is not UTF-8 or has a
        malformed line.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PropertyError(f"{name}: cannot read configuration file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PropertyError(
            f"{name}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x})"
        ) from None
    return parse_text(text, name, properties)


def parse_overrides(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """
    Parse the C{KEY=VALUE} arguments of repeated C{--property} options with
    the property-file syntax (as Ice parses C{--Key=Value}); C{KEY=} unsets.

    @raise PropertyError: naming the bad pair.
    """
    result = []
    for pair in pairs:
        try:
            parsed = _parse_line(pair)
        except ValueError as e:
            raise PropertyError(f"{COMMAND_LINE}: invalid --property {pair!r}: {e}") from None
        if parsed is None:
            raise PropertyError(f"{COMMAND_LINE}: invalid --property {pair!r}: expected KEY=VALUE")
        result.append(parsed)
    return result


# -- the property set ----------------------------------------------------------


class Properties(Mapping[str, str]):
    """
    A set of Ice properties that remembers where each value came from.

    Reading it as a mapping gives raw strings; the typed getters raise
    L{PropertyError} naming the key, the value and its source.
    """

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, str]] = {}

    def __getitem__(self, key: str) -> str:
        return self._values[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Properties({dict(self)!r})"

    def set(self, key: str, value: str, source: str = COMMAND_LINE) -> None:
        """Set C{key}; an empty C{value} unsets it, as in Ice."""
        if value:
            self._values[key] = (value, source)
        else:
            self._values.pop(key, None)

    def apply_overrides(self, pairs: Iterable[tuple[str, str]], source: str = COMMAND_LINE) -> None:
        """Apply L{parse_overrides} results after the files, so they win."""
        for key, value in pairs:
            self.set(key, value, source)

    def source(self, key: str) -> str:
        """
        Where C{key}'s value came from: C{"file:line"} or C{"command line"}.

        @raise KeyError: if C{key} is not set.
        """
        return self._values[key][1]

    def effective(self, key: str) -> str | None:
        """The value of C{key}, or its default from L{KNOWN_PROPERTIES}."""
        if key in self._values:
            return self._values[key][0]
        spec = KNOWN_PROPERTIES.get(key)
        return spec.default if spec is not None else None

    def with_prefix(self, prefix: str) -> dict[str, str]:
        """Every property whose key starts with C{prefix} (full keys)."""
        return {k: v for k, (v, _) in self._values.items() if k.startswith(prefix)}

    def _invalid(self, key: str, why: str) -> PropertyError:
        return PropertyError(f"{self.source(key)}: invalid value for {key}: {self[key]!r}: {why}")

    def get_int(self, key: str, default: int | None = None) -> int:
        """
        C{key} as an integer; unset gives C{default}, else the documented
        default, else 0.
        """
        value = self.get(key)
        if value is None:
            if default is not None:
                return default
            known = self.effective(key)
            return int(known) if known is not None else 0
        if not _INT.match(value.strip()):
            raise self._invalid(key, "not an integer")
        return int(value)

    def get_flag(self, key: str, default: bool = False) -> bool:
        """C{key} as a flag: Ice treats an integer > 0 as true."""
        return self.get_int(key, 1 if default else 0) > 0

    def _defaults(self) -> tuple[str, int]:
        protocol = self.get("Ice.Default.Protocol", "tcp")
        return protocol, self.get_int("Ice.Default.Timeout", DEFAULT_TIMEOUT)

    def get_proxy(self, key: str) -> Proxy | None:
        """C{key} parsed as a stringified proxy, or C{None} if unset."""
        value = self.get(key)
        if value is None:
            return None
        try:
            return proxy_from_string(value, *self._defaults())
        except ProxyParseError as e:
            raise self._invalid(key, e.reason) from None

    def get_endpoints(self, key: str, *, server: bool = True) -> tuple[Endpoint, ...]:
        """
        C{key} parsed as C{:}-separated endpoints; C{()} if unset.

        @param server: whether these are listening endpoints, which may use
            C{-h *}; C{*.Endpoints} properties are, published ones are not.
        """
        value = self.get(key)
        if value is None:
            return ()
        try:
            return endpoints_from_string(value, *self._defaults(), server=server)
        except ProxyParseError as e:
            raise self._invalid(key, e.reason) from None


def message_size_max_bytes(properties: Properties) -> int | None:
    """
    Ice.MessageSizeMax in bytes (the property is in KiB, default 1024), or
    C{None} for no limit: Ice treats 0, negative and over-2-GiB values so.
    """
    kib = properties.get_int("Ice.MessageSizeMax")
    if kib <= 0 or kib > 0x7FFFFFFF // 1024:
        return None
    return kib * 1024


# -- known properties and validation ------------------------------------------


class PropertyKind(enum.Enum):
    """How a known property's value is checked."""

    STRING = "string"
    INT = "int"
    ENDPOINTS = "endpoints"  # listening endpoints: -h * allowed
    PUBLISHED_ENDPOINTS = "published endpoints"
    PROXY = "proxy"
    CHOICE = "choice"


@attrs.frozen
class PropertySpec:
    """A property Ice (or gridreg) documents, its kind and its default."""

    kind: PropertyKind = PropertyKind.STRING
    default: str | None = None
    choices: tuple[str, ...] = ()


_S, _I = PropertySpec(), PropertySpec(PropertyKind.INT)
_PROXY_SUFFIXES = {
    "": PropertySpec(PropertyKind.PROXY),
    "EndpointSelection": PropertySpec(PropertyKind.CHOICE, "Random", ("Random", "Ordered")),
    "ConnectionCached": _I,
    "PreferSecure": _I,
    "LocatorCacheTimeout": _I,
    "InvocationTimeout": _I,
    "Locator": PropertySpec(PropertyKind.PROXY),
    "Router": PropertySpec(PropertyKind.PROXY),
    "CollocationOptimized": _I,
}
_THREAD_POOL = (
    "Size",
    "SizeMax",
    "SizeWarn",
    "StackSize",
    "Serialize",
    "ThreadIdleTime",
    "ThreadPriority",
)
_REGISTRY_TRACES = (
    "Admin",
    "Adapter",
    "Application",
    "Discovery",
    "Locator",
    "Node",
    "Object",
    "Patch",
    "Replica",
    "Server",
    "Session",
    "Subscriber",
    "Topic",
    "TopicManager",
)


def _proxy(prefix: str, into: dict[str, PropertySpec], wild: list[str]) -> None:
    for suffix, spec in _PROXY_SUFFIXES.items():
        into[f"{prefix}.{suffix}" if suffix else prefix] = spec
    wild.append(prefix + ".Context.")


def _adapter(prefix: str, into: dict[str, PropertySpec], wild: list[str]) -> None:
    """The properties every object adapter C{prefix} accepts."""
    into.update(
        {
            f"{prefix}.{s}": _I
            for s in ("ACM", "ACM.Timeout", "ACM.Heartbeat", "ACM.Close", "MessageSizeMax")
        }
    )
    into.update({f"{prefix}.ThreadPool.{s}": _I for s in _THREAD_POOL})
    into.update({f"{prefix}.{s}": _S for s in ("AdapterId", "ReplicaGroupId", "ProxyOptions")})
    into[f"{prefix}.Endpoints"] = PropertySpec(PropertyKind.ENDPOINTS)
    into[f"{prefix}.PublishedEndpoints"] = PropertySpec(PropertyKind.PUBLISHED_ENDPOINTS)
    _proxy(prefix + ".Locator", into, wild)
    _proxy(prefix + ".Router", into, wild)


def _known() -> tuple[dict[str, PropertySpec], tuple[str, ...]]:
    k: dict[str, PropertySpec] = {}
    wild: list[str] = [
        "Ice.Plugin.",
        "Ice.Package.",
        "IceSSL.DH.",
        "IceSSL.FindCert.",
        "IceSSL.TrustOnly.Server.",
    ]
    reg, node = "IceGrid.Registry", "IceGrid.Node"
    k["IceGrid.InstanceName"] = PropertySpec(default="IceGrid")
    k[f"{reg}.ReplicaName"] = PropertySpec(default="Master")
    for name in (
        "Client",
        "Server",
        "Internal",
        "SessionManager",
        "AdminSessionManager",
        "Discovery",
    ):
        _adapter(f"{reg}.{name}", k, wild)
    for name in (
        "PermissionsVerifier",
        "AdminPermissionsVerifier",
        "SSLPermissionsVerifier",
        "AdminSSLPermissionsVerifier",
    ):
        _proxy(f"{reg}.{name}", k, wild)
    k.update({f"{reg}.Trace.{t}": PropertySpec(PropertyKind.INT, "0") for t in _REGISTRY_TRACES})
    k.update(
        {
            f"{reg}.{s}": _S
            for s in (
                "Data",
                "LMDB.Path",
                "AdminCryptPasswords",
                "CryptPasswords",
                "DefaultTemplates",
                "UserAccounts",
                "SessionFilters",
                "AdminSessionFilters",
                "Discovery.Address",
                "Discovery.Interface",
            )
        }
    )
    k.update(
        {
            f"{reg}.{s}": _I
            for s in (
                "LMDB.MapSize",
                "Discovery.Enabled",
                "Discovery.Port",
                "RequireNodeCertCN",
                "RequireReplicaCertCN",
            )
        }
    )
    k[f"{reg}.DynamicRegistration"] = PropertySpec(PropertyKind.INT, "0")
    # gridreg's own: internal endpoints in the clear, and the admin tool's user name
    k["GridReg.Internal.Insecure"] = PropertySpec(PropertyKind.INT, "0")
    k["GridReg.Admin.Name"] = PropertySpec(default="admin")
    for timeout in ("ReplicaSessionTimeout", "NodeSessionTimeout", "SessionTimeout"):
        k[f"{reg}.{timeout}"] = PropertySpec(PropertyKind.INT, "30")
    _adapter(node, k, wild)
    _proxy(f"{node}.UserAccountMapper", k, wild)
    k.update({f"{node}.{s}": _S for s in ("Name", "Data", "Output", "UserAccounts")})
    k.update(
        {
            f"{node}.{s}": _I
            for s in (
                "AllowEndpointsOverride",
                "AllowRunningServersAsRoot",
                "CollocateRegistry",
                "DisableOnFailure",
                "PrintServersReady",
                "ProcessorSocketCount",
                "RedirectErrToOut",
                "Trace.Activator",
                "Trace.Adapter",
                "Trace.Admin",
                "Trace.Patch",
                "Trace.Replica",
                "Trace.Server",
            )
        }
    )
    k[f"{node}.PropertiesOverride"] = _S
    k[f"{node}.WaitTime"] = PropertySpec(PropertyKind.INT, "60")
    _proxy("Ice.Default.Locator", k, wild)
    _proxy("Ice.Default.Router", k, wild)
    _adapter("Ice.Admin", k, wild)
    k.update(
        {
            "Ice.MessageSizeMax": PropertySpec(PropertyKind.INT, "1024"),
            "Ice.Default.Timeout": PropertySpec(PropertyKind.INT, str(DEFAULT_TIMEOUT)),
            "Ice.Default.LocatorCacheTimeout": PropertySpec(PropertyKind.INT, "-1"),
            "Ice.Default.Protocol": PropertySpec(
                PropertyKind.CHOICE, "tcp", ("tcp", "ssl", "udp", "ws", "wss")
            ),
            "Ice.Default.EndpointSelection": _PROXY_SUFFIXES["EndpointSelection"],
            "Ice.ToStringMode": PropertySpec(
                PropertyKind.CHOICE, "Unicode", ("Unicode", "ASCII", "Compat")
            ),
        }
    )
    k.update(
        {
            f"Ice.{s}": _S
            for s in (
                "Default.Host",
                "Default.SourceAddress",
                "Default.EncodingVersion",
                "Default.Package",
                "Admin.InstanceName",
                "Admin.ServerId",
                "Admin.Facets",
                "Config",
                "ChangeUser",
                "EventLog.Source",
                "HTTPProxyHost",
                "ImplicitContext",
                "LogFile",
                "PluginLoadOrder",
                "ProgramName",
                "RetryIntervals",
                "SOCKSProxyHost",
                "StdErr",
                "StdOut",
                "SyslogFacility",
                "Admin.Logger.Properties",
                "Trace.Admin.Properties",
                "Trace.Admin.Logger",
            )
        }
    )
    k.update(
        {
            f"Ice.{s}": _I
            for s in (
                "Trace.Network",
                "Trace.Protocol",
                "Trace.Locator",
                "Trace.Retry",
                "Trace.Slicing",
                "Trace.ThreadPool",
                "Warn.Connections",
                "Warn.Datagrams",
                "Warn.Dispatch",
                "Warn.Endpoints",
                "Warn.UnknownProperties",
                "Warn.UnusedProperties",
                "Warn.AMICallback",
                "Default.CollocationOptimized",
                "Default.InvocationTimeout",
                "Default.PreferSecure",
                "Default.SlicedFormat",
                "Admin.Enabled",
                "Admin.DelayCreation",
                "Admin.Logger.KeepLogs",
                "Admin.Logger.KeepTraces",
                "ACM.Timeout",
                "ACM.Heartbeat",
                "ACM.Close",
                "ACM.Client.Timeout",
                "ACM.Client.Heartbeat",
                "ACM.Client.Close",
                "ACM.Server.Timeout",
                "ACM.Server.Heartbeat",
                "ACM.Server.Close",
                "BatchAutoFlushSize",
                "CacheMessageBuffers",
                "ClassGraphDepthMax",
                "Compression.Level",
                "ConsoleListener",
                "HTTPProxyPort",
                "InitPlugins",
                "IPv4",
                "IPv6",
                "LogStdErr.Convert",
                "Nohup",
                "NullHandleAbort",
                "Override.CloseTimeout",
                "Override.Compress",
                "Override.ConnectTimeout",
                "Override.Timeout",
                "Override.Secure",
                "PreferIPv6Address",
                "PrintAdapterReady",
                "PrintProcessId",
                "PrintStackTraces",
                "ServerIdleTime",
                "SOCKSProxyPort",
                "ThreadPriority",
                "UDP.RcvSize",
                "UDP.SndSize",
                "TCP.Backlog",
                "TCP.RcvSize",
                "TCP.SndSize",
                "UseSyslog",
                "BackgroundLocatorCacheUpdates",
            )
        }
    )
    for pool in ("Client", "Server"):
        k.update({f"Ice.ThreadPool.{pool}.{s}": _I for s in _THREAD_POOL})
    k.update(
        {
            f"IceSSL.{s}": _S
            for s in (
                "Alias",
                "CAs",
                "CertAuthDir",
                "CertAuthFile",
                "CertFile",
                "CertStore",
                "CertStoreLocation",
                "CertVerifier",
                "Ciphers",
                "DefaultDir",
                "DHParams",
                "EntropyDaemon",
                "FindCert",
                "KeyFile",
                "Keychain",
                "KeychainPassword",
                "Keystore",
                "KeystorePassword",
                "KeystoreType",
                "Password",
                "PasswordCallback",
                "Protocols",
                "ProtocolVersionMax",
                "ProtocolVersionMin",
                "Random",
                "TrustOnly",
                "TrustOnly.Client",
                "TrustOnly.Server",
                "Truststore",
                "TruststorePassword",
                "TruststoreType",
            )
        }
    )
    k.update(
        {
            f"IceSSL.{s}": _I
            for s in (
                "CheckCertName",
                "CheckCRL",
                "InitOpenSSL",
                "PasswordRetryMax",
                "RevocationCheck",
                "RevocationCheckCacheOnly",
                "SchannelStrongCrypto",
                "Trace.Security",
                "UsePlatformCAs",
                "VerifyDepthMax",
                "ServerNameIndication",
            )
        }
    )
    k["IceSSL.VerifyPeer"] = PropertySpec(PropertyKind.INT, "2")
    return k, tuple(wild)


#: Every property we know, by exact name (defaults are Ice's or gridreg's).
KNOWN_PROPERTIES: Mapping[str, PropertySpec]
#: Prefixes under which any name is known (contexts, plugins, ...).
KNOWN_PREFIXES: tuple[str, ...]
KNOWN_PROPERTIES, KNOWN_PREFIXES = _known()
#: Reserved prefixes whose unknown properties deserve a warning.
VALIDATED_PREFIXES = ("Ice.", "IceGrid.", "IceSSL.", "GridReg.")
_BY_LOWER = {name.lower(): name for name in KNOWN_PROPERTIES}


def _check(properties: Properties, key: str, spec: PropertySpec) -> None:
    kind = spec.kind
    if kind is PropertyKind.INT:
        properties.get_int(key)
    elif kind is PropertyKind.ENDPOINTS or kind is PropertyKind.PUBLISHED_ENDPOINTS:
        properties.get_endpoints(key, server=kind is PropertyKind.ENDPOINTS)
    elif kind is PropertyKind.PROXY:
        properties.get_proxy(key)
    elif kind is PropertyKind.CHOICE and properties[key] not in spec.choices:
        raise properties._invalid(key, "expected one of " + ", ".join(spec.choices))


def validate(properties: Properties) -> list[str]:
    """
    Check the properties Ice would check at start-up.

    @return: a warning per unknown C{Ice.*}, C{IceGrid.*} or C{IceSSL.*}
        property, worded like Ice's (C{unknown property: `IceGrid.Foo'}),
        followed by where it was set. Other prefixes belong to applications.
    @raise PropertyError: for a known property with a malformed value,
        naming the key, the value and its source.
    """
    warnings = []
    for key in properties:
        spec = KNOWN_PROPERTIES.get(key)
        if spec is not None:
            _check(properties, key, spec)
        elif key.startswith(VALIDATED_PREFIXES) and not key.startswith(KNOWN_PREFIXES):
            hint = _BY_LOWER.get(key.lower())
            message = f"unknown property: `{key}'"
            if hint is not None:
                message += f"; did you mean `{hint}'"
            warnings.append(f"{message} (set at {properties.source(key)})")
    return warnings
