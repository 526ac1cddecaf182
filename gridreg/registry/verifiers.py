# -*- test-case-name: tests.test_ice_admin -*-
"""
Who may open an Ice session: the permissions verifiers IceGrid configures.

C{IceGrid.Registry.PermissionsVerifier} (client sessions) and
C{AdminPermissionsVerifier} (admin sessions) name a C{Glacier2::PermissionsVerifier}
proxy, or C{<instance>/NullPermissionsVerifier}, built in, which accepts
everyone; C{CryptPasswords} / C{AdminCryptPasswords} name a file of
C{user crypt-hash} lines checked here. The C{SSL} variants check the client
certificate of an ssl connection; gridreg has the built-in
C{<instance>/NullSSLPermissionsVerifier} and remote C{Glacier2::SSLPermissionsVerifier}s.

Refusals are IceGrid 3.7.8's, measured: no verifier configured names the
property to set, a wrong password has an empty reason, an unreachable
verifier is an "internal server error".
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.config.properties import PropertyError
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import Glacier2PermissionDeniedException, PermissionDeniedException
from gridreg.ice.types import Identity, OperationMode, Proxy
from gridreg.registry.state import RegistryState

log = Logger()

#: the reason IceGrid gives when the verifier could not be asked
INTERNAL_ERROR = "internal server error"


def not_configured(kind: str) -> PermissionDeniedException:
    """
    IceGrid's refusal when no verifier of C{kind} is set: C{kind} is "" (client
    sessions), "admin", "ssl" or "ssl admin".
    """
    words = f"{kind} " if kind else ""
    prop = {
        "": "PermissionsVerifier",
        "admin": "AdminPermissionsVerifier",
        "ssl": "SSLPermissionsVerifier",
        "ssl admin": "AdminSSLPermissionsVerifier",
    }[kind]
    return PermissionDeniedException(
        f"no {words}permissions verifier configured, use the property\n"
        f"`IceGrid.Registry.{prop}' to configure\n"
        "a permissions verifier."
    )


class PasswordVerifier(Protocol):
    def check(self, user: str, password: str) -> Deferred[None]:
        """Fires once C{user} may have a session; fails with L{PermissionDeniedException}."""


class CertificateVerifier(Protocol):
    def authorize(self, info: "SSLInfo") -> Deferred[None]:
        """Fires once the connection's certificate is accepted."""


class NullVerifier:
    """C{<instance>/NullPermissionsVerifier} (and its SSL twin): everyone may."""

    def check(self, user: str, password: str) -> Deferred[None]:
        return succeed(None)

    def authorize(self, info: "SSLInfo") -> Deferred[None]:
        return succeed(None)


class CryptVerifier:
    """A C{user crypt-hash} file, as IceGrid's C{CryptPasswords} reads it."""

    def __init__(self, passwords: dict[str, str]) -> None:
        from passlib.context import CryptContext

        self.passwords = passwords
        self._context = CryptContext(
            schemes=["sha512_crypt", "sha256_crypt", "md5_crypt", "bcrypt", "des_crypt"]
        )

    @classmethod
    def from_file(cls, path: str) -> "CryptVerifier":
        """@raise OSError: the file cannot be read."""
        passwords: dict[str, str] = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and not fields[0].startswith("#"):
                    passwords[fields[0]] = fields[1]
        return cls(passwords)

    def check(self, user: str, password: str) -> Deferred[None]:
        stored = self.passwords.get(user)
        try:
            ok = stored is not None and self._context.verify(password, stored)
        except (ValueError, TypeError) as e:  # an unknown or malformed hash
            log.warn("The crypt hash of user {user} cannot be checked: {error}", user=user, error=e)
            ok = False
        return succeed(None) if ok else fail(PermissionDeniedException(""))


class RemoteVerifier:
    """A C{Glacier2::PermissionsVerifier} or C{SSLPermissionsVerifier} elsewhere."""

    def __init__(self, reactor: Any, state: RegistryState, proxy: Proxy) -> None:
        self.reactor = reactor
        self.state = state
        self.proxy = proxy

    def check(self, user: str, password: str) -> Deferred[None]:
        out = OutputStream(self.proxy.encoding)
        out.write_string(user)
        out.write_string(password)
        return self._ask("checkPermissions", out.getvalue())

    def authorize(self, info: "SSLInfo") -> Deferred[None]:
        out = OutputStream(self.proxy.encoding)
        info.write(out)
        return self._ask("authorize", out.getvalue())

    def _ask(self, operation: str, params: bytes) -> Deferred[None]:
        from gridreg.registry import remote  # its Ice client, only for remote verifiers

        d = remote.call(
            self.reactor, self.state, self.proxy, operation, OperationMode.IDEMPOTENT, params
        )
        return d.addCallbacks(self._answered, self._failed)

    def _answered(self, result: InputStream) -> None:
        reason = result.read_string()
        if not result.read_bool():
            raise PermissionDeniedException(reason)

    def _failed(self, failure: Failure) -> Failure:
        if failure.check(Glacier2PermissionDeniedException, PermissionDeniedException):
            return Failure(PermissionDeniedException(failure.value.reason))
        log.info(
            "[Session] exception while verifying password with permissions verifier: {error}",
            error=failure.getErrorMessage(),
        )
        return Failure(PermissionDeniedException(INTERNAL_ERROR))


class SSLInfo:
    """C{Glacier2::SSLInfo}: the connection's addresses, cipher and certificate chain (PEM)."""

    def __init__(
        self,
        remote_host: str,
        remote_port: int,
        local_host: str,
        local_port: int,
        cipher: str,
        certs: list[str],
    ) -> None:
        self.remote_host, self.remote_port = remote_host, remote_port
        self.local_host, self.local_port = local_host, local_port
        self.cipher, self.certs = cipher, certs

    def write(self, out: OutputStream) -> None:
        out.write_string(self.remote_host)
        out.write_int(self.remote_port)
        out.write_string(self.local_host)
        out.write_int(self.local_port)
        out.write_string(self.cipher)
        out.write_string_seq(self.certs)


def build_verifiers(
    verifiers: tuple[tuple[str, Proxy], ...],
    crypt_passwords: tuple[tuple[str, str], ...],
    instance: str,
    reactor: Any,
    state: RegistryState,
) -> dict[str, Any]:
    """
    The verifier of each kind ("", "admin", "ssl", "ssl admin") the
    properties configure; a proxy wins over a password file, as in IceGrid.

    @raise PropertyError: a password file cannot be read.
    """
    found: dict[str, Any] = {}
    for kind, path in crypt_passwords:
        name = f"IceGrid.Registry.{'Admin' if kind else ''}CryptPasswords"
        try:
            found[kind] = CryptVerifier.from_file(path)
        except OSError as e:
            raise PropertyError(f"{name}: cannot read {path!r}: {e.strerror}") from None
    for kind, proxy in verifiers:
        null = "NullSSLPermissionsVerifier" if kind.startswith("ssl") else "NullPermissionsVerifier"
        if proxy.identity == Identity(null, instance):
            found[kind] = NullVerifier()
        else:
            found[kind] = RemoteVerifier(reactor, state, proxy)
    return found
