# -*- test-case-name: tests.test_registry_config -*-
"""
A registry replica's settings, read once from Ice properties.

Everything a replica needs is named by IceGrid's own property names, so an
IceGrid configuration file works unchanged; the defaults here are the
embedded ones the quick start relies on.
"""

from __future__ import annotations

import os
from typing import Optional

import attrs

from gridreg.config.properties import Properties, PropertyError, message_size_max_bytes
from gridreg.ice.acm import AcmConfig
from gridreg.ice.stringify import EndpointParseError, endpoints_from_string
from gridreg.ice.types import Endpoint, Proxy, TcpEndpoint, UdpEndpoint
from gridreg.registry.trace import TraceLevels

DEFAULT_CLIENT_ENDPOINTS = "tcp -h 127.0.0.1 -p 4061"
DEFAULT_SERVER_ENDPOINTS = "tcp -h 127.0.0.1"
#: IceGrid's defaults for the multicast lookup endpoint (IceGrid.Registry.Discovery.*)
DEFAULT_DISCOVERY_ADDRESS = "239.255.0.1"
DEFAULT_DISCOVERY_ADDRESS_IPV6 = "ff15::1"
DEFAULT_DISCOVERY_PORT = 4061
#: gridreg's default for IceGrid.Registry.Discovery.Enabled: 0, unlike IceGrid's 1, so a
#: replica joins no multicast group (and sends no IGMP report) on a network unless asked;
#: see gridreg.registry.discovery_service
DEFAULT_DISCOVERY_ENABLED = 0
#: the database directory: IceGrid 3.7's name, then the name up to 3.6
DATA_DIR_PROPERTIES = ("IceGrid.Registry.LMDB.Path", "IceGrid.Registry.Data")


@attrs.frozen
class RegistryConfig:
    """What one registry replica is and where it listens."""

    instance_name: str
    replica_name: str
    client_endpoints: tuple[Endpoint, ...]
    server_endpoints: tuple[Endpoint, ...]
    client_published: Optional[tuple[Endpoint, ...]]
    server_published: Optional[tuple[Endpoint, ...]]
    data_dir: Optional[str]
    dynamic_registration: bool
    message_size_max: Optional[int]
    trace: TraceLevels
    internal_endpoints: tuple[Endpoint, ...] = ()
    locator: Optional[Proxy] = None
    replica_session_timeout: float = 30.0
    #: IceGrid.Registry.NodeSessionTimeout: a node silent this long loses its session
    node_session_timeout: int = 30
    #: IceGrid.Registry.SessionTimeout: an Ice client or admin session not heard from
    #: this long ends (seconds)
    session_timeout: int = 30
    #: ACM of the client and server endpoints (IceGrid.Registry.{Client,Server}.ACM.*)
    client_acm: AcmConfig = AcmConfig()
    server_acm: AcmConfig = AcmConfig()
    properties: Optional[Properties] = attrs.field(default=None, eq=False, repr=False)
    #: GridReg.Replication.MinAcks: slaves that must commit a write before it is acknowledged
    min_acks: int = 0
    #: GridReg.Debug.ReactorProbe: the period (ms) of a timer that logs how late the
    #: reactor runs it (benchmarks); 0 for none
    reactor_probe_ms: int = 0
    #: GridReg.Scheduler: the CPU scheduling policy, "normal" or "batch" (gridreg.scheduling)
    scheduler: str = "batch"
    #: GridReg.HugePages: start again with the Python heap on transparent huge pages, so
    #: that a killed registry's connections close sooner (gridreg.huge_pages); off by
    #: default: the second start costs about 0.2 s of every start-up
    huge_pages: bool = False
    #: GridReg.HugePages.Collapse: the longest time (seconds) between the passes that
    #: move the process's dense anonymous memory onto huge pages in place
    #: (gridreg.huge_page_collapse), the first a second after start-up; 0 (default)
    #: for none: a pass stalls the reactor, which shows in the writes' p99 lag
    huge_page_collapse: int = 0
    #: GridReg.EarlyClose: start a keeper process that holds the registry's memory, so
    #: that a killed registry's connections close before the kernel frees it
    #: (gridreg.early_close); on by default
    early_close: bool = True
    #: GridReg.LeanReactor: run on gridreg.lean_reactor (an epoll reactor without the
    #: per-event legacy log context, about 1.3 us of every locate); 0 for Twisted's own
    lean_reactor: bool = True
    #: GridReg.Client.ReadPause: microseconds a client connection stops reading after
    #: answering a read of a few pipelined requests (gridreg.ice.server); 0: never
    client_read_pause_us: int = 0
    #: GridReg.Replication.EpochCheckInterval: how often a master asks the replicas that
    #: are not its live slaves whether a newer master exists (seconds)
    epoch_check_interval: float = 5.0
    #: IceGrid.Registry.[Admin][SSL]PermissionsVerifier, by kind ("", "admin", "ssl",
    #: "ssl admin"): who may open Ice sessions
    verifiers: tuple[tuple[str, Proxy], ...] = ()
    #: IceGrid.Registry.[Admin]CryptPasswords, by kind ("", "admin")
    crypt_passwords: tuple[tuple[str, str], ...] = ()
    #: --readonly: a master that serves reads and refuses writes and slaves
    readonly: bool = False
    #: --initdb-from-replica: start from a copy of this replica's database
    initdb_from_replica: Optional[str] = None
    #: IceGrid.Registry.Discovery.Endpoints (derived from Address, Port and Interface
    #: when unset) where the IceLocatorDiscovery lookup is answered; empty when disabled
    discovery_endpoints: tuple[UdpEndpoint, ...] = ()
    #: IceGrid.Registry.Trace.Discovery
    discovery_trace: int = 0
    #: IceGrid.Registry.SessionManager.Endpoints: where the Glacier2 session managers of
    #: client sessions listen; empty: none (IceGrid's default)
    session_manager_endpoints: tuple[Endpoint, ...] = ()
    #: IceGrid.Registry.AdminSessionManager.Endpoints: the same for admin sessions
    admin_session_manager_endpoints: tuple[Endpoint, ...] = ()
    #: their PublishedEndpoints: what the managers' and sessions' proxies carry
    session_manager_published: Optional[tuple[Endpoint, ...]] = None
    admin_session_manager_published: Optional[tuple[Endpoint, ...]] = None
    #: IceGrid.Registry.SessionFilters / AdminSessionFilters: sessions created through
    #: Glacier2 set the router's identity filters
    session_filters: bool = False
    admin_session_filters: bool = False

    @property
    def is_master(self) -> bool:
        return self.replica_name == "Master"

    @classmethod
    def from_properties(cls, properties: Properties) -> "RegistryConfig":
        """
        @raise PropertyError: a value is malformed or an endpoint cannot be
            served; the message names the property.
        """
        return cls(
            instance_name=properties.get("IceGrid.InstanceName") or "IceGrid",
            replica_name=properties.get("IceGrid.Registry.ReplicaName") or "Master",
            client_endpoints=_listen_endpoints(
                properties, "IceGrid.Registry.Client.Endpoints", DEFAULT_CLIENT_ENDPOINTS
            ),
            server_endpoints=_listen_endpoints(
                properties, "IceGrid.Registry.Server.Endpoints", DEFAULT_SERVER_ENDPOINTS
            ),
            client_published=_optional_endpoints(
                properties, "IceGrid.Registry.Client.PublishedEndpoints"
            ),
            server_published=_optional_endpoints(
                properties, "IceGrid.Registry.Server.PublishedEndpoints"
            ),
            data_dir=_data_dir(properties),
            dynamic_registration=properties.get_flag("IceGrid.Registry.DynamicRegistration"),
            message_size_max=message_size_max_bytes(properties),
            trace=TraceLevels.from_properties(properties),
            internal_endpoints=_optional_endpoints(
                properties, "IceGrid.Registry.Internal.Endpoints"
            )
            or (),
            locator=properties.get_proxy("Ice.Default.Locator"),
            replica_session_timeout=float(
                properties.get_int("IceGrid.Registry.ReplicaSessionTimeout", 30)
            ),
            node_session_timeout=_positive(properties, "IceGrid.Registry.NodeSessionTimeout", 30),
            session_timeout=_positive(properties, "IceGrid.Registry.SessionTimeout", 30),
            verifiers=tuple(
                (kind, proxy)
                for kind, name in _VERIFIERS
                if (proxy := properties.get_proxy(f"IceGrid.Registry.{name}")) is not None
            ),
            crypt_passwords=tuple(
                (kind, path)
                for kind, name in (("", "CryptPasswords"), ("admin", "AdminCryptPasswords"))
                if (path := properties.get(f"IceGrid.Registry.{name}"))
            ),
            client_acm=AcmConfig.from_properties(
                properties,
                "IceGrid.Registry.Client",
                properties.get_int("IceGrid.Registry.SessionTimeout", 30),
            ),
            server_acm=AcmConfig.from_properties(properties, "IceGrid.Registry.Server", 30),
            properties=properties,
            min_acks=_non_negative(properties, "GridReg.Replication.MinAcks", 0),
            reactor_probe_ms=_non_negative(properties, "GridReg.Debug.ReactorProbe", 0),
            scheduler=_scheduler(properties),
            huge_pages=_non_negative(properties, "GridReg.HugePages", 0) > 0,
            huge_page_collapse=_non_negative(properties, "GridReg.HugePages.Collapse", 0),
            early_close=_non_negative(properties, "GridReg.EarlyClose", 1) > 0,
            lean_reactor=_non_negative(properties, "GridReg.LeanReactor", 1) > 0,
            client_read_pause_us=_non_negative(properties, "GridReg.Client.ReadPause", 0),
            epoch_check_interval=float(
                _positive(properties, "GridReg.Replication.EpochCheckInterval", 5)
            ),
            discovery_endpoints=_discovery_endpoints(properties),
            discovery_trace=properties.get_int("IceGrid.Registry.Trace.Discovery", 0),
            session_manager_endpoints=_served_endpoints(
                properties, "IceGrid.Registry.SessionManager.Endpoints"
            ),
            admin_session_manager_endpoints=_served_endpoints(
                properties, "IceGrid.Registry.AdminSessionManager.Endpoints"
            ),
            session_manager_published=_optional_endpoints(
                properties, "IceGrid.Registry.SessionManager.PublishedEndpoints"
            ),
            admin_session_manager_published=_optional_endpoints(
                properties, "IceGrid.Registry.AdminSessionManager.PublishedEndpoints"
            ),
            session_filters=properties.get_flag("IceGrid.Registry.SessionFilters"),
            admin_session_filters=properties.get_flag("IceGrid.Registry.AdminSessionFilters"),
        )


_VERIFIERS = (
    ("", "PermissionsVerifier"),
    ("admin", "AdminPermissionsVerifier"),
    ("ssl", "SSLPermissionsVerifier"),
    ("ssl admin", "AdminSSLPermissionsVerifier"),
)


def _data_dir(properties: Properties) -> Optional[str]:
    """
    The database directory: C{IceGrid.Registry.LMDB.Path} or its older name
    C{IceGrid.Registry.Data}; both may be set only to the same directory.
    """
    current, older = DATA_DIR_PROPERTIES
    path, old_path = properties.get(current), properties.get(older)
    if path and old_path and not _same_dir(path, old_path):
        raise PropertyError(
            f"{current} ({properties.source(current)}) and {older} "
            f"({properties.source(older)}) name different database directories, "
            f"{path!r} and {old_path!r}: set only {current} ({older} is its older name)"
        )
    return path or old_path or None


def _same_dir(a: str, b: str) -> bool:
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _parse(properties: Properties, key: str, text: str) -> tuple[Endpoint, ...]:
    try:
        return endpoints_from_string(text, *properties.endpoint_defaults(), server=True)
    except EndpointParseError as exc:
        raise PropertyError(f"{key} ({properties.source(key)}): {exc}") from None


def _listen_endpoints(properties: Properties, key: str, default: str) -> tuple[Endpoint, ...]:
    return _served_endpoints(properties, key, default)


def _served_endpoints(properties: Properties, key: str, default: str = "") -> tuple[Endpoint, ...]:
    """The tcp and ssl endpoints C{key} (else C{default}) names; none when both are empty."""
    text = properties.get(key) or default
    if not text:
        return ()
    endpoints = _parse(properties, key, text)
    for endpoint in endpoints:
        if not isinstance(endpoint, TcpEndpoint) or isinstance(endpoint, UdpEndpoint):
            raise PropertyError(
                f"{key} ({properties.source(key)}): gridreg serves tcp and ssl endpoints, "
                f"not `{endpoint.TRANSPORT}'"
            )
    return endpoints


def _optional_endpoints(properties: Properties, key: str) -> Optional[tuple[Endpoint, ...]]:
    text = properties.get(key)
    if not text:
        return None
    return _parse(properties, key, text)


def _scheduler(properties: Properties) -> str:
    from gridreg.scheduling import POLICIES

    value = properties.get("GridReg.Scheduler") or "batch"
    if value not in POLICIES:
        raise PropertyError(
            f"GridReg.Scheduler ({properties.source('GridReg.Scheduler')}): expected one of "
            f"{', '.join(POLICIES)}, not {value!r}"
        )
    return value


def _non_negative(properties: Properties, key: str, default: int) -> int:
    value = properties.get_int(key, default)
    if value < 0:
        raise PropertyError(f"{key} ({properties.source(key)}): must be 0 or more, not {value}")
    return value


def _positive(properties: Properties, key: str, default: int) -> int:
    value = properties.get_int(key, default)
    if value <= 0:
        raise PropertyError(f"{key} ({properties.source(key)}): must be more than 0, not {value}")
    return value


def _discovery_endpoints(properties: Properties) -> tuple[UdpEndpoint, ...]:
    """
    The lookup endpoints, as IceGrid derives them: explicit
    C{IceGrid.Registry.Discovery.Endpoints}, else C{udp -h ADDRESS -p PORT
    [--interface INTERFACE]}; none when C{Discovery.Enabled} is 0.
    """
    prefix = "IceGrid.Registry.Discovery."
    if properties.get_int(prefix + "Enabled", DEFAULT_DISCOVERY_ENABLED) <= 0:
        return ()
    key = prefix + "Endpoints"
    text = properties.get(key)
    if not text:
        ipv6 = properties.get_int("Ice.IPv4", 1) <= 0 or properties.get_flag(
            "Ice.PreferIPv6Address"
        )
        default = DEFAULT_DISCOVERY_ADDRESS_IPV6 if ipv6 else DEFAULT_DISCOVERY_ADDRESS
        address = properties.get(prefix + "Address") or default
        port = properties.get_int(prefix + "Port", DEFAULT_DISCOVERY_PORT)
        if not 0 < port < 65536:
            raise PropertyError(
                f"{prefix}Port ({properties.source(prefix + 'Port')}): "
                f"must be a port number, 1 to 65535, not {port}"
            )
        interface = properties.get(prefix + "Interface") or ""
        text = f'udp -h "{address}" -p {port}'
        if interface:
            text += f' --interface "{interface}"'
        blame_interface = interface and not properties.get(prefix + "Address")
        key = prefix + ("Interface" if blame_interface else "Address")
    try:
        endpoints = endpoints_from_string(text, "udp", server=True)
    except EndpointParseError as exc:
        raise PropertyError(f"{key} ({_source(properties, key)}): {exc}") from None
    for endpoint in endpoints:
        if not isinstance(endpoint, UdpEndpoint):
            raise PropertyError(
                f"{key} ({_source(properties, key)}): the lookup is served on udp "
                f"endpoints, not `{endpoint.TRANSPORT}'"
            )
        if ":" in endpoint.host or ":" in endpoint.interface:
            raise PropertyError(
                f"{key} ({_source(properties, key)}): gridreg serves the lookup over IPv4 "
                f"only, not on {endpoint.host!r}"
            )
    return endpoints  # type: ignore[return-value]


def _source(properties: Properties, key: str) -> str:
    try:
        return properties.source(key)
    except KeyError:
        return "default"
