# -*- test-case-name: tests.test_admin -*-
"""
What both ways of opening an admin session share, without Twisted: the
errors, who we are (L{admin_name}), which grid (L{instance_name}) and the
TLS settings (L{tls_settings}). C{gridadmin} imports only this and
L{gridreg.admin.wire} for a command, so it starts in a fraction of the time
the reactor and pyOpenSSL take to import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from gridreg.config.properties import Properties, PropertyError
from gridreg.tls import (
    ADMIN,
    PeerIdentity,
    PeerNotAuthorized,
    TLSConfig,
    peer_identity,
    peer_identity_from_ssl,
)

MASTER = "Master"
ADMIN_NAME_PROPERTY = "GridReg.Admin.Name"


class AdminSessionError(Exception):
    """The admin session could not be opened or used; the message says why."""


class AdminUnreachableError(AdminSessionError):
    """No answer from the registry: unreachable, timed out, or the connection failed."""


class AdminConfigError(AdminSessionError):
    """The local configuration (properties, TLS files) cannot work."""


def reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def instance_name(properties: Properties) -> str:
    """C{IceGrid.InstanceName}, else the category of the locator's identity."""
    name = properties.get("IceGrid.InstanceName")
    if name:
        return name
    locator = properties.get_proxy("Ice.Default.Locator")
    if locator is not None and locator.identity.category:
        return locator.identity.category
    return "IceGrid"


def admin_name(properties: Properties, tls: Optional[TLSConfig]) -> str:
    """
    Who we say we are: C{GridReg.Admin.Name}, else the name in our admin
    certificate (the registry checks the two agree), else C{admin}.

    @raise AdminConfigError: the certificate is not an admin certificate.
    """
    configured = properties.get(ADMIN_NAME_PROPERTY)
    if tls is None:
        return configured or "admin"
    try:
        identity = own_identity(tls.cert_file)
    except PeerNotAuthorized as e:
        raise AdminConfigError(f"IceSSL.CertFile {tls.cert_file}: {e}") from None
    if identity.role != ADMIN:
        raise AdminConfigError(
            f"IceSSL.CertFile {tls.cert_file} is the certificate of {identity.role} "
            f"`{identity.name}', not of an admin: use an admin certificate"
        )
    return configured or identity.name


def own_identity(cert_file: str) -> PeerIdentity:
    """
    The identity in the (first) certificate of C{cert_file}, read by the
    standard library's decoder when it has one, else (or to word a
    refusal exactly) by C{cryptography}, which takes longer to import.

    @raise PeerNotAuthorized: the certificate names no gridreg identity.
    """
    import ssl

    decode = getattr(
        getattr(ssl, "_ssl", None), "_test_decode_cert", None
    )  # CPython's, undocumented
    if decode is not None:
        try:
            return peer_identity_from_ssl(decode(cert_file))
        except (PeerNotAuthorized, OSError, ValueError):
            pass
    from cryptography import x509

    with open(cert_file, "rb") as f:
        return peer_identity(x509.load_pem_x509_certificates(f.read())[0])


def tls_settings(
    properties: Properties, warn: Callable[[str], None]
) -> tuple[Optional[TLSConfig], str]:
    """
    Our TLS files (C{None} for plain TCP, only with C{GridReg.Internal.Insecure})
    and the admin name to say C{Hello} with.

    @raise AdminConfigError: bad properties or TLS files, or no TLS without
        C{GridReg.Internal.Insecure}.
    """
    from gridreg.tls import insecure_allowed, tls_config_from_properties

    try:
        tls = tls_config_from_properties(properties)
        insecure = tls is None and insecure_allowed(properties)
    except PropertyError as e:
        raise AdminConfigError(str(e)) from None
    if tls is None and not insecure:
        raise AdminConfigError(
            "no TLS configured: set IceSSL.CAs, IceSSL.CertFile and IceSSL.KeyFile to the grid "
            "CA and an admin certificate (or GridReg.Internal.Insecure=1 on a test machine)"
        )
    if insecure:
        warn(
            "GridReg.Internal.Insecure is set: the admin session runs over plain TCP, "
            "unauthenticated and unencrypted"
        )
    return tls, admin_name(properties, tls)
