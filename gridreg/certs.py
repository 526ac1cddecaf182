# -*- test-case-name: tests.test_tls -*-
"""
C{gridreg-certs}: a certificate authority and peer certificates for a demo
or test grid.

Replicas, nodes and admin clients authenticate each other with mutual TLS
(L{gridreg.tls}): every peer holds a certificate signed by the grid's own CA,
whose DNS name says its role and name. This command makes that CA and those
certificates, so a demo grid needs no external PKI::

    python -m gridreg.certs --out certs --instance DemoIceGrid \\
        --replica Master --replica Replica1 --node node1 --admin admin

It is idempotent: an existing CA is reused, so running it again with one
more C{--node} adds only that node; existing peer files are kept unless
C{--force}. Production grids may use any CA that issues the same names.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

from gridreg.tls import ADMIN, NODE, REGISTRY, TLSConfig, dns_name

__all__ = ["CertificateError", "cert_paths", "main", "make_demo_certs"]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
DEFAULT_DAYS = 365
#: a new CA outlives the certificates it signs, so adding a peer next year
#: does not need a new CA (and new certificates for everyone)
CA_DAYS = 3650
#: how far back certificates are valid from, so small clock skew between
#: the demo's machines does not reject a freshly made certificate
BACKDATE = timedelta(hours=1)
_SAFE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")


class CertificateError(Exception):
    """The output directory holds files this command cannot safely reuse."""


def cert_paths(out_dir: str, role: str, name: str) -> tuple[str, str]:
    """
    Where L{make_demo_certs} puts the certificate and key of one peer:
    C{<role>-<name>.pem} and C{.key}, or C{<role>-<DNS label>} when the
    name is not safe as a file name (it holds C{/}, spaces, ...).
    """
    stem = name if _SAFE_STEM.match(name) else dns_name(role, name).split(".", 1)[0]
    base = os.path.join(out_dir, f"{role}-{stem}")
    return base + ".pem", base + ".key"


def _write(path: str, data: bytes, mode: int) -> None:
    """Write atomically with C{mode}, so a key is never readable by others, even briefly."""
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; make it exact
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    until: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(until)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _make_ca(
    instance: str, now: datetime, days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, instance),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{instance} gridreg CA"),
        ]
    )
    cert = (
        _builder(name, name, key.public_key(), now, now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    instance: str,
    role: str,
    name: str,
    now: datetime,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, instance),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    # never beyond the CA: a reused CA may expire sooner than asked
    until = min(now + timedelta(days=days), ca.not_valid_after_utc)
    cert = (
        _builder(subject, ca.subject, key.public_key(), now, until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns_name(role, name))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER,  # type: ignore[no-any-return]
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def _load_ca(cert_path: str, key_path: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"cannot reuse the CA in {cert_path} and {key_path}: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key.public_key()) != _spki(
        cert.public_key()
    ):
        raise CertificateError(f"{key_path} is not the private key of {cert_path}")
    return cert, key


def _signed_by(cert_path: str, ca: x509.Certificate) -> bool:
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _peers(
    replicas: Iterable[str], nodes: Iterable[str], admins: Iterable[str]
) -> list[tuple[str, str]]:
    """The (role, name) pairs, de-duplicated; two names sharing a DNS name are an error."""
    peers: list[tuple[str, str]] = []
    by_dns: dict[str, str] = {}
    for role, names in ((REGISTRY, replicas), (NODE, nodes), (ADMIN, admins)):
        for name in names:
            if (role, name) in peers:
                continue
            dns = dns_name(role, name)
            if dns in by_dns:
                raise ValueError(
                    f"{role} names {by_dns[dns]!r} and {name!r} would share the "
                    f"DNS name {dns}; rename one"
                )
            by_dns[dns] = name
            peers.append((role, name))
    return peers


def make_demo_certs(
    out_dir: str,
    replicas: Iterable[str] = (),
    nodes: Iterable[str] = (),
    admins: Iterable[str] = (),
    *,
    instance: str = "IceGrid",
    days: int = DEFAULT_DAYS,
    force: bool = False,
    now: datetime | None = None,
    report: TextIO | None = None,
) -> dict[tuple[str, str], TLSConfig]:
    """
    Make (or reuse) the grid CA in C{out_dir} and a certificate per peer.

    @param replicas: registry replica names (role C{registry}).
    @param nodes: node names (role C{node}).
    @param admins: admin user names (role C{admin}).
    @param instance: the IceGrid instance name, recorded in the subjects.
    @param days: validity of newly made certificates.
    @param force: re-issue peer certificates that already exist.
    @param now: the issue time; the current time if C{None}.
    @param report: where to write one line per file made or kept.
    @return: the L{TLSConfig} of each peer, keyed by C{(role, name)}.
    @raise ValueError: for a bad argument (an empty name, C{days < 1}, two
        names sharing a DNS name, a name too long for a subject CN).
    @raise CertificateError: for unusable existing files.
    """
    if days < 1:
        raise ValueError(f"--days must be at least 1, not {days}")
    for name in (*replicas, *nodes, *admins):
        if not 1 <= len(name) <= 64:
            raise ValueError(f"name {name!r} must have 1 to 64 characters (a certificate CN)")
    peers = _peers(replicas, nodes, admins)
    if now is None:
        now = datetime.now(timezone.utc)

    def say(action: str, path: str) -> None:
        if report is not None:
            report.write(f"{action} {path}\n")

    os.makedirs(out_dir, exist_ok=True)
    ca_path, ca_key_path = os.path.join(out_dir, CA_CERT), os.path.join(out_dir, CA_KEY)
    have = [os.path.exists(p) for p in (ca_path, ca_key_path)]
    if all(have):
        ca, ca_key = _load_ca(ca_path, ca_key_path)
        say("kept", ca_path)
    elif any(have):
        raise CertificateError(
            f"{ca_path} and {ca_key_path} must both exist or both be "
            "absent; remove the other to make a new CA"
        )
    else:
        ca, ca_key = _make_ca(instance, now, max(days, CA_DAYS))
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(ca_path, ca.public_bytes(serialization.Encoding.PEM), 0o644)
        say("created", ca_key_path)
        say("created", ca_path)

    result = {}
    for role, name in peers:
        cert_path, key_path = cert_paths(out_dir, role, name)
        exists = os.path.exists(cert_path) and os.path.exists(key_path)
        if exists and not force:
            if not _signed_by(cert_path, ca):
                raise CertificateError(
                    f"{cert_path} is not signed by {ca_path}; use --force to re-issue it"
                )
            say("kept", cert_path)
        else:
            cert, key = _make_leaf(ca, ca_key, instance, role, name, now, days)
            _write(key_path, _key_pem(key), 0o600)
            _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            say("created", key_path)
            say("created", cert_path)
        result[role, name] = TLSConfig(ca_path, cert_path, key_path)
    return result


class _UsageExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An argument parser that writes to given streams and returns instead of exiting."""

    def __init__(self, out: TextIO, err: TextIO, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._out, self._err = out, err

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        super().print_help(self._out if file is None else file)

    def print_usage(self, file: SupportsWrite[str] | None = None) -> None:
        super().print_usage(self._err if file is None else file)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._err.write(message)
        raise _UsageExit(status)

    def error(self, message: str) -> NoReturn:
        self.print_usage()
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser(out: TextIO, err: TextIO) -> _Parser:
    parser = _Parser(
        out,
        err,
        prog="gridreg-certs",
        description="Make a CA and mutual-TLS certificates for a gridreg grid's "
        "replicas, nodes and admin clients. Existing files are reused.",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="directory for ca.pem, ca.key and <role>-<name>.pem/.key",
    )
    parser.add_argument(
        "--instance",
        default="IceGrid",
        help="IceGrid.InstanceName, recorded in the subjects (default: IceGrid)",
    )
    parser.add_argument(
        "--replica",
        action="append",
        default=[],
        metavar="NAME",
        help="a registry replica name (IceGrid.Registry.ReplicaName); repeatable",
    )
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME",
        help="a node name (IceGrid.Node.Name); repeatable",
    )
    parser.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="USER",
        help="an admin client user name; repeatable",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"validity of new certificates in days (default: {DEFAULT_DAYS})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-issue peer certificates that already exist (the CA is kept)",
    )
    return parser


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """
    Run C{gridreg-certs}.

    @return: the exit status: 0 on success, 2 for bad arguments, 1 when
        existing files cannot be reused.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parser = _parser(out, err)
    try:
        args = parser.parse_args(argv)
    except _UsageExit as e:  # the parser has written help or the usage error
        return e.status
    try:
        make_demo_certs(
            args.out,
            args.replica,
            args.node,
            args.admin,
            instance=args.instance,
            days=args.days,
            force=args.force,
            report=out,
        )
    except ValueError as e:
        err.write(f"{parser.prog}: error: {e}\n")
        return 2
    except (CertificateError, OSError) as e:
        err.write(f"{parser.prog}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
