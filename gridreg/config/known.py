# -*- test-case-name: tests.test_properties -*-
"""
The properties Ice, IceGrid, IceSSL and gridreg document: their kinds and
defaults, so that a misspelt name is warned about and a bad value stops
start-up with the property's name; and what gridreg does with each
(L{PROPERTY_SUPPORT}), so that one it ignores is warned about too.
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
    _adapter("IceGrid.AdminRouter", k, wild)
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
    k["GridReg.Debug.ReactorProbe"] = PropertySpec(PropertyKind.INT, "0")
    k["GridReg.Scheduler"] = PropertySpec(PropertyKind.CHOICE, "batch", ("batch", "normal"))
    k["GridReg.HugePages"] = PropertySpec(PropertyKind.INT, "0")
    k["GridReg.HugePages.Collapse"] = PropertySpec(PropertyKind.INT, "0")
    k["GridReg.EarlyClose"] = PropertySpec(PropertyKind.INT, "1")
    k["GridReg.LeanReactor"] = PropertySpec(PropertyKind.INT, "1")
    k["GridReg.Client.ReadPause"] = PropertySpec(PropertyKind.INT, "0")
    k["GridReg.Node.LoadAverageFile"] = PropertySpec(default="/proc/loadavg")
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


# -- what gridreg does with each known property -------------------------------


class Support(enum.Enum):
    """Whether gridreg acts on a property it knows."""

    HONOURED = "honoured"  # some part of gridreg reads it and acts on it
    PLANNED = "planned"  # ignored until planned work (nodes, sessions, ...) reads it
    UNSUPPORTED = "unsupported"  # ignored, with no plan to read it


@attrs.frozen
class PropertySupport:
    """
    What gridreg does with a known property.

    @ivar instead: for an ignored property, what gridreg does instead; the
        start-up warning says it.
    @ivar inert: values that ask for what gridreg does anyway, so setting
        one earns no warning (compared as integers for C{INT} properties).
    """

    support: Support
    instead: str = ""
    inert: tuple[str, ...] = ()

    @property
    def honoured(self) -> bool:
        return self.support is Support.HONOURED


_HONOURED = PropertySupport(Support.HONOURED)


def _planned(instead: str, *inert: str) -> PropertySupport:
    return PropertySupport(Support.PLANNED, instead, inert)


def _unsupported(instead: str, *inert: str) -> PropertySupport:
    return PropertySupport(Support.UNSUPPORTED, instead, inert)


_NO_NODES = "not implemented by gridreg's nodes yet; ignored"
_NO_USER_ACCOUNTS = "session users are not mapped to OS accounts yet (planned); ignored"
_VERIFIER_PROXY = (
    "a verifier is called with gridreg's own settings (one connection per call, 10 s); "
    "its proxy properties are ignored"
)
_NO_ADMIN_ROUTER = "gridreg routes no calls to servers' admin objects (planned); ignored"
_ADAPTER_DISCOVERY = (
    "gridreg's Discovery adapter takes only Endpoints (or Address, Port and Interface); ignored"
)
_NO_TRACE = "gridreg has no such trace category; nothing is traced"
_ADAPTER = "gridreg's {} adapter takes only {} and ACM.*; ignored"
_SESSION_MANAGER = "gridreg's {} adapter takes only Endpoints and PublishedEndpoints; ignored"
_ICE_RUNTIME = "an Ice run-time setting; gridreg runs on Twisted, not the Ice run time; ignored"

#: What gridreg does with each known property, keyed by exact name or by a
#: prefix ending in C{*}; an exact name wins, then the longest prefix. To
#: implement a property, flip its entry to C{_HONOURED} (and add a sample to
#: tests.test_registry_config, which checks that something reads it).
PROPERTY_SUPPORT: Mapping[str, PropertySupport] = {
    # -- read by the registry (gridreg.registry.config, gridreg.tls) --
    "IceGrid.InstanceName": _HONOURED,
    "IceGrid.Registry.ReplicaName": _HONOURED,
    "IceGrid.Registry.Client.Endpoints": _HONOURED,
    "IceGrid.Registry.Client.PublishedEndpoints": _HONOURED,
    "IceGrid.Registry.Server.Endpoints": _HONOURED,
    "IceGrid.Registry.Server.PublishedEndpoints": _HONOURED,
    "IceGrid.Registry.Internal.Endpoints": _HONOURED,
    "IceGrid.Registry.LMDB.Path": _HONOURED,
    "IceGrid.Registry.Data": _HONOURED,
    "IceGrid.Registry.DynamicRegistration": _HONOURED,
    "IceGrid.Registry.ReplicaSessionTimeout": _HONOURED,
    "IceGrid.Registry.Trace.Adapter": _HONOURED,
    "IceGrid.Registry.Trace.Application": _HONOURED,
    "IceGrid.Registry.Trace.Locator": _HONOURED,
    "IceGrid.Registry.Trace.Object": _HONOURED,
    "IceGrid.Registry.Trace.Replica": _HONOURED,
    "Ice.Default.Locator": _HONOURED,
    "Ice.Default.Protocol": _HONOURED,
    "Ice.Default.Timeout": _HONOURED,
    "Ice.MessageSizeMax": _HONOURED,
    "IceSSL.CAs": _HONOURED,
    "IceSSL.CertFile": _HONOURED,
    "IceSSL.KeyFile": _HONOURED,
    "IceSSL.DefaultDir": _HONOURED,
    "GridReg.Internal.Insecure": _HONOURED,
    # -- read by gridadmin or gridreg.client, harmless in a shared file --
    "GridReg.Admin.Name": _HONOURED,
    "GridReg.Replication.MinAcks": _HONOURED,
    "GridReg.Replication.EpochCheckInterval": _HONOURED,
    "GridReg.Debug.ReactorProbe": _HONOURED,
    "GridReg.Scheduler": _HONOURED,
    "GridReg.HugePages": _HONOURED,
    "GridReg.HugePages.Collapse": _HONOURED,
    "GridReg.EarlyClose": _HONOURED,
    "GridReg.LeanReactor": _HONOURED,
    "GridReg.Client.ReadPause": _HONOURED,
    "GridReg.Node.LoadAverageFile": _HONOURED,
    "IceGrid.Node.ProcessorSocketCount": _HONOURED,
    "Ice.Default.LocatorCacheTimeout": _HONOURED,
    "Ice.Default.Locator.InvocationTimeout": _HONOURED,
    # -- ACM (idle connections), implemented on its own branch --
    "Ice.ACM*": _HONOURED,
    "IceGrid.Registry.Client.ACM*": _HONOURED,
    "IceGrid.Registry.Server.ACM*": _HONOURED,
    "IceGrid.Registry.Internal.ACM*": _unsupported(
        "internal sessions are AMP, kept alive by their own keepalives "
        "(IceGrid.Registry.ReplicaSessionTimeout)"
    ),
    # -- the registry's adapters: the rest of their properties --
    "IceGrid.Registry.Client.*": _unsupported(
        _ADAPTER.format("Client", "Endpoints, PublishedEndpoints")
    ),
    "IceGrid.Registry.Server.*": _unsupported(
        _ADAPTER.format("Server", "Endpoints, PublishedEndpoints")
    ),
    "IceGrid.Registry.Internal.*": _unsupported(_ADAPTER.format("Internal", "Endpoints")),
    "IceGrid.Registry.Internal.PublishedEndpoints": _unsupported(
        "other replicas are given the Internal.Endpoints hosts and the ports listened on"
    ),
    "IceGrid.Registry.Client.MessageSizeMax": _unsupported(
        "Ice.MessageSizeMax limits every client and server connection"
    ),
    "IceGrid.Registry.Server.MessageSizeMax": _unsupported(
        "Ice.MessageSizeMax limits every client and server connection"
    ),
    "IceGrid.Registry.Internal.MessageSizeMax": _unsupported(
        "replicas talk gridreg's own protocol, which has no size limit: large data travels "
        "in chunks",
        "0",
    ),
    # -- persistence and deployment --
    "IceGrid.Registry.LMDB.MapSize": _unsupported(
        "gridreg's SQLite database grows as needed; no size limit is applied"
    ),
    "IceGrid.Registry.DefaultTemplates": _unsupported(
        "no templates are preloaded; define templates in the application descriptors"
    ),
    "IceGrid.Registry.RequireReplicaCertCN": _unsupported(
        "with TLS a replica's certificate must always name it "
        "(<replica>.registry.gridreg); the check cannot be turned off",
        "1",
    ),
    # -- tracing --
    "IceGrid.Registry.Trace.*": _unsupported(_NO_TRACE, "0"),
    "IceGrid.Registry.Trace.Node": _HONOURED,
    "IceGrid.Registry.Trace.Server": _HONOURED,
    "IceGrid.Registry.Trace.Patch": _unsupported("gridreg does not patch servers (no IcePatch2)", "0"),
    "IceGrid.Registry.Trace.Session": _HONOURED,
    "IceGrid.Registry.Trace.Topic": _HONOURED,
    "IceGrid.Registry.Trace.Admin": _planned("admin operations are not traced yet", "0"),
    "IceGrid.Registry.Trace.Discovery": _HONOURED,
    # -- nodes (planned) --
    "IceGrid.Node.*": _unsupported("not implemented by gridnode"),
    "IceGrid.Node.Name": _HONOURED,
    "IceGrid.Node.Data": _HONOURED,
    "IceGrid.Node.Output": _HONOURED,
    "IceGrid.Node.RedirectErrToOut": _HONOURED,
    "IceGrid.Node.PrintServersReady": _HONOURED,
    "IceGrid.Node.WaitTime": _HONOURED,
    "IceGrid.Node.DisableOnFailure": _HONOURED,
    "IceGrid.Node.PropertiesOverride": _HONOURED,
    "IceGrid.Node.AllowRunningServersAsRoot": _HONOURED,
    "IceGrid.Node.Trace.Server": _HONOURED,
    "IceGrid.Node.Trace.Adapter": _HONOURED,
    "IceGrid.Node.Trace.Activator": _HONOURED,
    "IceGrid.Node.Trace.Replica": _HONOURED,
    "IceGrid.Node.Trace.*": _unsupported("not traced by gridnode", "0"),
    "IceGrid.Node.Endpoints": _unsupported(
        "a gridnode needs no endpoint: replicas reach it over the session it opens with them"
    ),
    "IceGrid.Node.CollocateRegistry": _unsupported(
        "run gridregistry and gridnode as two processes", "0"
    ),
    "IceGrid.Registry.NodeSessionTimeout": _HONOURED,
    "IceGrid.Registry.RequireNodeCertCN": _unsupported(
        "with TLS a node's certificate must always name it (<node>.node.gridreg); the check "
        "cannot be turned off",
        "1",
    ),
    # -- sessions and admin sessions --
    "IceGrid.Registry.SessionTimeout": _HONOURED,
    "IceGrid.Registry.PermissionsVerifier": _HONOURED,
    "IceGrid.Registry.AdminPermissionsVerifier": _HONOURED,
    "IceGrid.Registry.SSLPermissionsVerifier": _HONOURED,
    "IceGrid.Registry.AdminSSLPermissionsVerifier": _HONOURED,
    "IceGrid.Registry.PermissionsVerifier*": _unsupported(_VERIFIER_PROXY),
    "IceGrid.Registry.AdminPermissionsVerifier*": _unsupported(_VERIFIER_PROXY),
    "IceGrid.Registry.SSLPermissionsVerifier*": _unsupported(_VERIFIER_PROXY),
    "IceGrid.Registry.AdminSSLPermissionsVerifier*": _unsupported(_VERIFIER_PROXY),
    "IceGrid.Registry.CryptPasswords": _HONOURED,
    "IceGrid.Registry.AdminCryptPasswords": _HONOURED,
    "IceGrid.Registry.UserAccounts": _planned(_NO_USER_ACCOUNTS),
    # -- the Glacier2 session managers (gridreg.registry.glacier2_managers) --
    "IceGrid.Registry.SessionManager.Endpoints": _HONOURED,
    "IceGrid.Registry.AdminSessionManager.Endpoints": _HONOURED,
    "IceGrid.Registry.SessionManager.PublishedEndpoints": _HONOURED,
    "IceGrid.Registry.AdminSessionManager.PublishedEndpoints": _HONOURED,
    "IceGrid.Registry.SessionFilters": _HONOURED,
    "IceGrid.Registry.AdminSessionFilters": _HONOURED,
    "IceGrid.Registry.SessionManager.*": _unsupported(_SESSION_MANAGER.format("SessionManager")),
    "IceGrid.Registry.AdminSessionManager.*": _unsupported(
        _SESSION_MANAGER.format("AdminSessionManager")
    ),
    "IceGrid.AdminRouter.*": _planned(_NO_ADMIN_ROUTER),
    # -- discovery: the IceLocatorDiscovery lookup (gridreg.registry.discovery_service) --
    "IceGrid.Registry.Discovery.*": _unsupported(_ADAPTER_DISCOVERY),
    "IceGrid.Registry.Discovery.Enabled": _HONOURED,
    "IceGrid.Registry.Discovery.Address": _HONOURED,
    "IceGrid.Registry.Discovery.Port": _HONOURED,
    "IceGrid.Registry.Discovery.Interface": _HONOURED,
    "IceGrid.Registry.Discovery.Endpoints": _HONOURED,
    # -- Ice run-time settings --
    "Ice.*": _unsupported(_ICE_RUNTIME),
    "Ice.Admin*": _unsupported("gridreg has no Ice admin object; use gridadmin"),
    "Ice.Admin.Enabled": _unsupported("gridreg has no Ice admin object; use gridadmin", "0"),
    "Ice.Config": _unsupported("read as a property it does nothing; pass the file with --config"),
    "Ice.Default.Locator.*": _unsupported(
        "a slave asks each replica at Ice.Default.Locator's endpoints, with its own timeouts"
    ),
    "Ice.Default.Router*": _unsupported("gridreg uses no router; ignored"),
    "Ice.Default.Host": _unsupported("an endpoint without -h listens on every interface"),
    "Ice.ChangeUser": _unsupported("use twistd's --uid and --gid"),
    "Ice.LogFile": _unsupported("gridreg logs through twisted.logger: use twistd's --logfile"),
    "Ice.UseSyslog": _unsupported("use twistd's --syslog", "0"),
    "Ice.StdErr": _HONOURED,
    "Ice.StdOut": _HONOURED,
    "Ice.Plugin*": _unsupported("gridreg loads no Ice plug-ins; ignored"),
    "Ice.InitPlugins": _unsupported("gridreg loads no Ice plug-ins; ignored"),
    "Ice.PluginLoadOrder": _unsupported("gridreg loads no Ice plug-ins; ignored"),
    "Ice.PrintAdapterReady": _unsupported("no ready line is printed; wait for the port", "0"),
    "Ice.PrintProcessId": _unsupported("use twistd's --pidfile", "0"),
    "Ice.ThreadPool.*": _unsupported("gridreg serves every connection on one reactor thread"),
    "Ice.ToStringMode": _unsupported("identities are always printed in Unicode mode", "Unicode"),
    "Ice.Trace.*": _unsupported("no Ice run-time tracing; see IceGrid.Registry.Trace.*", "0"),
    "Ice.Warn.UnknownProperties": _unsupported(
        "unknown Ice, IceGrid and IceSSL properties are always warned about", "1"
    ),
    # -- IceSSL --
    "IceSSL.*": _unsupported(
        "gridreg's TLS reads only IceSSL.CAs, IceSSL.CertFile, IceSSL.KeyFile and "
        "IceSSL.DefaultDir (PEM files) and always requires a certificate signed by IceSSL.CAs"
    ),
    "IceSSL.VerifyPeer": _unsupported(
        "a peer certificate signed by IceSSL.CAs is always required", "2"
    ),
}


def property_support(name: str) -> PropertySupport | None:
    """
    What gridreg does with property C{name}: its exact entry in
    L{PROPERTY_SUPPORT}, else the longest C{*} prefix that matches it.
    """
    found = PROPERTY_SUPPORT.get(name)
    if found is not None:
        return found
    best = ""
    for key in PROPERTY_SUPPORT:
        if key.endswith("*") and name.startswith(key[:-1]) and len(key) > len(best):
            best = key
    return PROPERTY_SUPPORT[best] if best else None
