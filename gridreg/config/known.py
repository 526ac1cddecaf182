# -*- test-case-name: tests.test_properties -*-
"""
The properties Ice, IceGrid, IceSSL and gridreg document: their kinds and
defaults, so that a misspelt name is warned about and a bad value stops
start-up with the property's name.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from gridreg.ice.types import DEFAULT_TIMEOUT


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
    k["GridReg.Replication.MinAcks"] = PropertySpec(PropertyKind.INT, "0")
    k["GridReg.Replication.EpochCheckInterval"] = PropertySpec(PropertyKind.INT, "5")
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
