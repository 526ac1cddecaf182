# -*- test-case-name: tests.test_tls -*-
"""
Mutual TLS for gridreg's internal AMP sessions.

Replicas, nodes and admin clients reach a replica's internal endpoint
(C{IceGrid.Registry.Internal.Endpoints}); both sides present a certificate
signed by the grid's CA. Being signed by that CA only I{authenticates} a
peer. What it may do depends on its role and name, so every certificate
carries one DNS name of the form C{<label>.<role>.gridreg}:

    - C{<replica>.registry.gridreg} for registry replicas;
    - C{<node>.node.gridreg} for nodes;
    - C{<user>.admin.gridreg} for admin clients;

and the exact name, which DNS cannot spell, as its subject CN. Clients check
the server's DNS name during the handshake (L{client_tls_options}); servers
read the client's identity afterwards (L{peer_identity}) and L{authorize} it
for the session it asks for. L{gridreg.certs} makes such certificates.

Files are named with IceSSL's properties (L{tls_config_from_properties}), so
an IceGrid configuration reads the same.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from gridreg.config.properties import PropertyError
from gridreg.ice.types import TcpEndpoint

if TYPE_CHECKING:  # the TLS machinery is imported by the functions that use it
    import ssl

    from cryptography import x509
    from OpenSSL.crypto import X509
    from twisted.internet.interfaces import (
        IOpenSSLClientConnectionCreator,
        IOpenSSLServerConnectionCreator,
        IStreamClientEndpoint,
        IStreamServerEndpoint,
    )
    from twisted.internet.ssl import Certificate, PrivateCertificate

__all__ = [
    "ADMIN",
    "INSECURE_PROPERTY",
    "INSECURE_WARNING",
    "NODE",
    "REGISTRY",
    "ROLES",
    "PeerIdentity",
    "PeerNotAuthorized",
    "TLSConfig",
    "authorize",
    "client_tls_options",
    "dns_label",
    "dns_name",
    "insecure_allowed",
    "peer_identity",
    "server_tls_options",
    "ssl_client_context",
    "tls_config_from_properties",
    "wrap_client_endpoint",
    "wrap_server_endpoint",
]

REGISTRY = "registry"
NODE = "node"
ADMIN = "admin"
#: the roles a certificate may name; anything else is refused
ROLES = (REGISTRY, NODE, ADMIN)
DOMAIN = "gridreg"

#: the gridreg property that lets internal endpoints run without TLS
INSECURE_PROPERTY = "GridReg.Internal.Insecure"
INSECURE_WARNING = (
    "GridReg.Internal.Insecure is set: internal sessions (replication, nodes, admin) run "
    "over plain TCP, unauthenticated and unencrypted; anyone who can reach the internal "
    "endpoint can act as a replica, node or administrator. Use this only on a trusted "
    "test machine."
)

CA_PROPERTY = "IceSSL.CAs"
CERT_PROPERTY = "IceSSL.CertFile"
KEY_PROPERTY = "IceSSL.KeyFile"
DIR_PROPERTY = "IceSSL.DefaultDir"


def _min_tls() -> Any:
    from twisted.internet.ssl import TLSVersion

    return TLSVersion.TLSv1_2


_MAX_LABEL = 63
_HASH_CHARS = 8
_NOT_LDH = re.compile(r"[^a-z0-9-]")
#: what the hash suffix looks like; a name that already ends so is hashed
#: too, so a plain label can never equal an encoded one
_LOOKS_HASHED = re.compile(rf"-[0-9a-f]{{{_HASH_CHARS}}}\Z")
_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class PeerNotAuthorized(Exception):
    """
    The TLS peer may not do what it asked: it has no usable gridreg
    identity, or the wrong role or name. The message says which.
    """


@attrs.frozen
class TLSConfig:
    """PEM files: the grid CA(s) to trust, our certificate (chain) and its key."""

    ca_file: str
    cert_file: str
    key_file: str


@attrs.frozen
class PeerIdentity:
    """
    Who a TLS peer is, from its certificate.

    @ivar role: C{registry}, C{node} or C{admin}.
    @ivar name: the exact replica, node or user name (the subject CN).
    @ivar dns_name: the certificate's C{<label>.<role>.gridreg} name.
    """

    role: str
    name: str
    dns_name: str


# -- names ---------------------------------------------------------------------


def dns_label(name: str) -> str:
    """
    A DNS label for C{name}, deterministic and distinct for distinct names.

    ASCII letters are lowercased. Other characters DNS forbids become C{-};
    when that, trimming C{-} at the ends, or shortening to 63 characters
    changes the name, a C{-} and 8 hex digits of the name's SHA-256 are
    appended (C{"Replica 1"} gives C{replica-1-} plus the hash), so odd names
    cannot collide. Names that differ only in ASCII case share a label, as
    DNS ignores case; the CN tells them apart.

    @raise ValueError: for an empty name.
    """
    if not name:
        raise ValueError("an empty name has no DNS label")
    lowered = name.translate(_UPPER)
    label = _NOT_LDH.sub("-", lowered).strip("-")
    if (
        label == lowered
        and len(label) <= _MAX_LABEL
        and not _LOOKS_HASHED.search(label)
        and label[2:4] != "--"
    ):  # "xn--" style labels mean punycode
        return label
    import hashlib  # only odd names need it: gridadmin's start-up need not load it

    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    stem = label[: _MAX_LABEL - _HASH_CHARS - 1].rstrip("-") or "x"
    return f"{stem}-{digest}"


def dns_name(role: str, name: str) -> str:
    """
    The DNS name a peer's certificate carries, e.g. C{master.registry.gridreg}
    for the replica C{Master}; clients pass it as C{expected_peer}.

    @raise ValueError: for an unknown role or an empty name.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return f"{dns_label(name)}.{role}.{DOMAIN}"


# -- configuration -------------------------------------------------------------


class _FileError(ValueError):
    """A TLS file is missing or unusable; C{which} is the property that names it."""

    def __init__(self, which: str, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.which, self.path, self.why = which, path, why


def _read(which: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise _FileError(which, path, "no such file") from None
    except OSError as e:
        raise _FileError(which, path, e.strerror or str(e)) from None


def _certificates(which: str, path: str) -> list[x509.Certificate]:
    from cryptography import x509

    data = _read(which, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise _FileError(which, path, "not a PEM certificate file") from None
    return certs


def _checked(config: TLSConfig) -> tuple[list[x509.Certificate], list[x509.Certificate], Any]:
    """The trusted CAs, our chain and its key, checked to belong together."""
    from cryptography.hazmat.primitives import serialization

    cas = _certificates(CA_PROPERTY, config.ca_file)
    chain = _certificates(CERT_PROPERTY, config.cert_file)
    data = _read(KEY_PROPERTY, config.key_file)
    try:
        key = serialization.load_pem_private_key(data, None)
    except TypeError:
        raise _FileError(
            KEY_PROPERTY,
            config.key_file,
            "the key is encrypted; gridreg needs an unencrypted PEM key",
        ) from None
    except ValueError:
        raise _FileError(KEY_PROPERTY, config.key_file, "not a PEM private key") from None
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != chain[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise _FileError(
            KEY_PROPERTY,
            config.key_file,
            f"not the private key of the certificate in {config.cert_file}",
        )
    return cas, chain, key


#: the client context L{_loads_in_ssl} made, for L{ssl_client_context} to hand out once
_SSL_CLIENTS: dict[TLSConfig, Any] = {}


def _ssl_client(config: TLSConfig) -> Any:
    import ssl

    def no_password() -> bytes:
        raise ValueError("encrypted")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(config.ca_file)
    context.load_cert_chain(config.cert_file, config.key_file, password=no_password)
    return context


def _loads_in_ssl(config: TLSConfig) -> bool:
    """
    Whether the standard library's C{ssl} takes the files (certificates,
    an unencrypted key that matches): then they are fine, and nothing as
    large as C{cryptography} needs importing to say so (C{gridadmin}).
    """
    try:
        _SSL_CLIENTS[config] = _ssl_client(config)
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return False
    return True


def ssl_client_context(config: TLSConfig) -> ssl.SSLContext:
    """
    A standard library C{ssl} client context with our certificate and key,
    trusting the grid CA (TLS 1.2 or later; it checks the server's DNS name
    when given C{server_hostname}, see L{dns_name}): what C{gridadmin}
    dials with. The one L{tls_config_from_properties} checked the files
    with is reused once, as loading them is a good part of a command's work.

    @raise OSError: a file is missing or unusable (C{ssl.SSLError} too).
    """
    context = _SSL_CLIENTS.pop(config, None)
    return context if context is not None else _ssl_client(config)


#: what L{_load} made, by certificate set, with the files' sizes and mtimes then
_LOADED: dict[TLSConfig, tuple[tuple[tuple[int, int], ...], Any]] = {}


def _load(config: TLSConfig) -> tuple[list[Certificate], PrivateCertificate, list[X509]]:
    """
    The trusted CAs, our certificate with its key, and any intermediates:
    read, checked and converted once per certificate set (and again if a
    file is replaced), as every TLS options object built from them needs
    them (a master builds client options for each peer it contacts).
    """
    try:
        stats = tuple(
            (st.st_size, st.st_mtime_ns)
            for st in map(os.stat, (config.ca_file, config.cert_file, config.key_file))
        )
    except OSError:
        return _load_files(config)  # says which file, as reading it does
    known = _LOADED.get(config)
    if known is not None and known[0] == stats:
        return known[1]  # type: ignore[no-any-return]
    loaded = _load_files(config)
    _LOADED[config] = (stats, loaded)
    return loaded


def _load_files(config: TLSConfig) -> tuple[list[Certificate], PrivateCertificate, list[X509]]:
    from OpenSSL.crypto import X509, PKey
    from twisted.internet.ssl import Certificate, KeyPair, PrivateCertificate

    cas, chain, key = _checked(config)
    pair = KeyPair(PKey.from_cryptography_key(key))
    ours = PrivateCertificate.fromCertificateAndKeyPair(
        Certificate(X509.from_cryptography(chain[0])), pair
    )
    return (
        [Certificate(X509.from_cryptography(c)) for c in cas],
        ours,
        [X509.from_cryptography(c) for c in chain[1:]],
    )


def _where(properties: Mapping[str, str], key: str) -> str:
    source = getattr(properties, "source", None)
    return f"{source(key)}: " if source is not None else ""


def tls_config_from_properties(properties: Mapping[str, str]) -> TLSConfig | None:
    """
    The TLS files named by C{IceSSL.CAs}, C{IceSSL.CertFile} and
    C{IceSSL.KeyFile}, relative ones under C{IceSSL.DefaultDir}; all PEM.

    The files are read now, so a bad path or file stops start-up with an
    error naming the property, not a failed handshake later.

    @return: C{None} when none of the three is set.
    @raise PropertyError: when only some are set, or a file is missing,
        unreadable, not PEM, or the key does not match the certificate.
    """
    keys = (CA_PROPERTY, CERT_PROPERTY, KEY_PROPERTY)
    values = {key: properties.get(key) for key in keys}
    if not any(values.values()):
        return None
    for key, value in values.items():
        if not value:
            raise PropertyError(
                f"{key} is not set: gridreg's mutual TLS needs {', '.join(keys)} together"
            )
    base = properties.get(DIR_PROPERTY) or ""
    paths = {key: os.path.join(base, value) for key, value in values.items() if value}
    config = TLSConfig(paths[CA_PROPERTY], paths[CERT_PROPERTY], paths[KEY_PROPERTY])
    try:
        if not _loads_in_ssl(config):
            _checked(config)  # says what is wrong, naming the file
    except _FileError as e:
        raise PropertyError(
            f"{_where(properties, e.which)}invalid value for {e.which}: "
            f"{values[e.which]!r}: {e.path}: {e.why}"
        ) from None
    return config


def insecure_allowed(properties: Mapping[str, str]) -> bool:
    """
    Whether the operator set C{GridReg.Internal.Insecure} to a number > 0,
    allowing plain TCP on internal endpoints; if so, log L{INSECURE_WARNING}.
    Call it once at start-up.

    @raise PropertyError: if the value is not an integer.
    """
    value = properties.get(INSECURE_PROPERTY)
    if value is None or not value.strip():
        return False
    try:
        allowed = int(value.strip()) > 0
    except ValueError:
        raise PropertyError(
            f"{_where(properties, INSECURE_PROPERTY)}invalid value for "
            f"{INSECURE_PROPERTY}: {value!r}: not an integer"
        ) from None
    if allowed:
        from twisted.logger import Logger

        Logger(namespace="gridreg.tls").warn(INSECURE_WARNING, property=INSECURE_PROPERTY)
    return allowed


# -- TLS options -----------------------------------------------------------------


def server_tls_options(config: TLSConfig) -> IOpenSSLServerConnectionCreator:
    """
    Server TLS settings that I{require} a client certificate signed by the
    grid CA (TLS 1.2 or later). Who the client is gets checked after the
    handshake with L{peer_identity} and L{authorize}.

    @raise ValueError: if a file is missing or unusable.
    """
    from twisted.internet.ssl import CertificateOptions, trustRootFromCertificates

    cas, ours, extra = _load(config)
    return CertificateOptions(
        privateKey=ours.privateKey.original,
        certificate=ours.original,
        extraCertChain=extra,
        trustRoot=trustRootFromCertificates(cas),
        raiseMinimumTo=_min_tls(),
    )


def client_tls_options(config: TLSConfig, expected_peer: str) -> IOpenSSLClientConnectionCreator:
    """
    Client TLS settings that present our certificate and accept only a
    server whose certificate, signed by the grid CA, carries the DNS name
    C{expected_peer} (see L{dns_name}), whatever address we dialled.

    @raise ValueError: if a file is missing or unusable.
    """
    from twisted.internet.ssl import optionsForClientTLS, trustRootFromCertificates

    cas, ours, extra = _load(config)
    return optionsForClientTLS(
        expected_peer,
        trustRoot=trustRootFromCertificates(cas),
        clientCertificate=ours,
        extraCertificateOptions={"raiseMinimumTo": _min_tls(), "extraCertChain": extra},
    )


# -- identity and authorization ----------------------------------------------------


def _as_cryptography(cert: object) -> x509.Certificate:
    from cryptography import x509

    if isinstance(cert, x509.Certificate):
        return cert
    from OpenSSL.crypto import X509
    from twisted.internet.ssl import Certificate

    if isinstance(cert, Certificate):  # Twisted's wrapper, e.g. AMP's peerCertificate
        cert = cert.original
    if isinstance(cert, X509):
        return cert.to_cryptography()
    raise PeerNotAuthorized(f"unusable peer certificate {cert!r}")


def peer_identity(transport: Any) -> PeerIdentity:
    """
    The identity in the certificate a TLS peer presented, once the
    handshake is complete (e.g. from C{IHandshakeListener.handshakeCompleted}).

    @param transport: a TLS transport (C{getPeerCertificate()}), or the
        peer's certificate itself.
    @raise PeerNotAuthorized: if there is no certificate, no DNS name
        C{<label>.<role>.gridreg} with a known role, several of them, or a
        subject CN that is missing or does not encode to that label.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    get = getattr(transport, "getPeerCertificate", None)
    cert = get() if get is not None else transport
    if cert is None:
        raise PeerNotAuthorized("the peer presented no certificate")
    cert = _as_cryptography(cert)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return _identity(names, cns, cert.subject.rfc4514_string)


def peer_identity_from_ssl(cert: Mapping[str, Any]) -> PeerIdentity:
    """
    L{peer_identity} for a certificate as the standard library's C{ssl}
    decodes it (C{SSLSocket.getpeercert()}), so C{gridadmin} need not import
    C{cryptography}. Refusals may word the subject differently.
    """
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    cns = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]

    def subject() -> str:
        return ",".join(f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn)

    return _identity(names, cns, subject)


def _identity(
    names: Sequence[str], cns: Sequence[object], subject: Callable[[], str]
) -> PeerIdentity:
    ours = sorted({n.lower() for n in names if n.lower().endswith("." + DOMAIN)})
    shaped = [n.split(".") for n in ours if n.count(".") == 2]
    if not shaped:
        raise PeerNotAuthorized(
            f"the peer certificate {subject()!r} has no <name>.<role>.{DOMAIN} DNS name"
        )
    if len(shaped) > 1:
        raise PeerNotAuthorized(f"the peer certificate names several identities: {ours}")
    label, role, _ = shaped[0]
    dns = ".".join(shaped[0])
    if role not in ROLES:
        raise PeerNotAuthorized(f"peer {dns} has the unknown role {role!r}")
    if len(cns) != 1 or not isinstance(cns[0], str):
        raise PeerNotAuthorized(f"peer {dns} has no single subject CN naming it")
    name = cns[0]
    if not name or dns_label(name) != label:
        raise PeerNotAuthorized(f"peer {dns}: its CN {name!r} does not match its DNS name")
    return PeerIdentity(role, name, dns)


def authorize(identity: PeerIdentity, role: str, name: str | None = None) -> None:
    """
    Check that a peer has C{role} and, if given, exactly the name C{name}.

    @raise PeerNotAuthorized: with a message saying who the peer is and
        what this endpoint accepts.
    """
    if identity.role != role:
        raise PeerNotAuthorized(
            f"peer {identity.name!r} has role {identity.role}, this endpoint accepts {role}"
        )
    if name is not None and identity.name != name:
        raise PeerNotAuthorized(
            f"peer {identity.name!r} ({identity.dns_name}) is not the {role} {name!r} expected here"
        )


# -- endpoints ---------------------------------------------------------------------


def _tls_server_endpoint(
    wrapped: IStreamServerEndpoint, options: IOpenSSLServerConnectionCreator
) -> IStreamServerEndpoint:
    """TLS over another server endpoint, for Twisted releases without wrapServerTLS."""
    from twisted.internet.interfaces import IStreamServerEndpoint
    from twisted.protocols.tls import TLSMemoryBIOFactory
    from zope.interface import implementer

    @implementer(IStreamServerEndpoint)
    @attrs.frozen
    class _TLSServerEndpoint:
        wrapped: Any
        options: Any

        def listen(self, factory: Any) -> Any:
            return self.wrapped.listen(TLSMemoryBIOFactory(self.options, False, factory))

    return _TLSServerEndpoint(wrapped, options)  # type: ignore[return-value]


def wrap_server_endpoint(
    reactor: Any, endpoint: str | TcpEndpoint | IStreamServerEndpoint, config: TLSConfig
) -> IStreamServerEndpoint:
    """
    A listening endpoint speaking mutual TLS with L{server_tls_options}.

    @param endpoint: a Twisted server endpoint string (C{tcp:12000:interface=127.0.0.1}),
        an Ice C{tcp}/C{ssl} endpoint (as parsed from
        C{IceGrid.Registry.Internal.Endpoints}), or a server endpoint to wrap.
    """
    from twisted.internet import endpoints
    from twisted.internet.endpoints import serverFromString

    from gridreg.endpoints import server_endpoint, with_transport

    options = server_tls_options(config)
    if isinstance(endpoint, TcpEndpoint):
        return server_endpoint(reactor, with_transport(endpoint, secure=True), options)
    wrapped: IStreamServerEndpoint = (
        serverFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    )
    wrap = getattr(endpoints, "wrapServerTLS", None)  # Twisted >= 25
    if wrap is not None:
        return wrap(options, wrapped)  # type: ignore[no-any-return]
    return _tls_server_endpoint(wrapped, options)


def wrap_client_endpoint(
    reactor: Any, host: str, port: int, config: TLSConfig, expected_peer: str, timeout: float = 30
) -> IStreamClientEndpoint:
    """
    An endpoint dialling C{host:port} with L{client_tls_options}: it connects
    only if the server proves to be C{expected_peer} (a L{dns_name}).

    @param host: an IPv4 or IPv6 literal, or a host name resolved over IPv4,
        as for an Ice C{ssl} endpoint (L{gridreg.endpoints.client_endpoint}).
    @param timeout: seconds allowed for the TCP connection.
    """
    from gridreg.endpoints import client_endpoint
    from gridreg.ice.types import SslEndpoint

    options = client_tls_options(config, expected_peer)
    return client_endpoint(reactor, SslEndpoint(host, port, -1), options, timeout_cap=timeout)
