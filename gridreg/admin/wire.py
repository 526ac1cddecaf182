# -*- test-case-name: tests.test_admin_interactive -*-
"""
A blocking admin session for the C{gridadmin} command, without Twisted.

C{gridadmin} runs a few requests and exits, and importing the reactor,
pyOpenSSL and Twisted's TLS costs several times what the work does (about
200 ms of a 370 ms C{registry list}). This module does the same as
L{gridreg.admin.session} with the standard library's C{socket} and C{ssl}:
the locator lookup (one Ice request per replica C{Ice.Default.Locator}
lists), a mutual TLS connection that checks the replica's DNS name and
exact name, and AMP boxes on it, so C{gridadmin} imports no Twisted.
L{gridreg.admin.session} stays the session for programs on a reactor.

Its methods are coroutines that never suspend, so the command functions
in L{gridreg.admin.cli} run on either session; L{run_now} runs one.

The AMP commands' arguments are described again in L{COMMANDS} (their
L{twisted.protocols.amp.Command} classes cannot be imported without
Twisted); tests compare the two.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
from collections.abc import Callable, Coroutine
from typing import Any, Optional, TypeVar

import attrs

from gridreg.admin.calls import AdminCalls
from gridreg.admin.common import (
    MASTER,
    AdminConfigError,
    AdminUnreachableError,
    instance_name,
    reason,
    tls_settings,
)
from gridreg.config.properties import Properties
from gridreg.ice.types import Identity, Proxy, TcpEndpoint
from gridreg.protocol.version import PROTOCOL_VERSION
from gridreg.tls import (
    REGISTRY,
    PeerNotAuthorized,
    authorize,
    dns_name,
    peer_identity,
    peer_identity_from_ssl,
    ssl_client_context,
)

__all__ = ["COMMANDS", "BlockingSession", "Refused", "open_blocking_session", "run_now"]

T = TypeVar("T")

#: gridreg.protocol.chunking's sizes
CHUNK_SIZE = 60_000

_U, _I, _B, _S = "unicode", "integer", "boolean", "string"

#: name -> (arguments, response), as the Commands in gridreg.protocol declare them
COMMANDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "Hello": (
        {"version": _I, "role": _U, "name": _U},
        {"version": _I, "instance": _U, "replica": _U, "master": _B, "epoch": _U},
    ),
    "AdminList": (
        {"what": _U, "pattern": _U, "cursor": _U, "limit": _I},
        {"items": _U, "cursor": _U},
    ),
    "AdminDescribe": ({"what": _U, "key": _U, "offset": _I}, {"data": _U, "more": _B}),
    "AdminPing": ({"name": _U}, {"alive": _B}),
    "AdminObjectAdd": ({"proxy": _U, "type": _U}, {"serial": _I}),
    "AdminObjectRemove": ({"identity": _U}, {"serial": _I}),
    "AdminAdapterRemove": ({"adapter_id": _U}, {"serial": _I}),
    "AdminApplicationAdd": ({"transfer": _U, "update": _B}, {"name": _U, "serial": _I}),
    "AdminApplicationRemove": ({"name": _U}, {"serial": _I}),
    "AdminServerControl": ({"server": _U, "action": _U, "argument": _U}, {"result": _U}),
    "AdminNodeControl": ({"node": _U, "action": _U}, {"result": _U}),
    "BeginTransfer": ({"transfer": _U, "size": _I, "sha256": _U}, {}),
    "TransferChunk": ({"transfer": _U, "seq": _I, "data": _S}, {}),
}

#: the error codes those commands declare -> the name of the exception
#: class in gridreg.protocol.errors that stands for it
ERROR_CODES = {
    "QUORUM": "QuorumError",
    "NOT_AUTHORIZED": "NotAuthorizedError",
    "NOT_MASTER": "NotMasterError",
    "NOT_FOUND": "NotFoundError",
    "USER_ERROR": "RegistryUserError",
    "APPLICATION_ERROR": "ApplicationError",
    "TRANSFER_ERROR": "TransferError",
    "NODE_ERROR": "NodeError",
    "NODE_UNREACHABLE": "NodeUnreachableError",
}


class Refused(Exception):
    """
    The registry answered a command with an error: C{code} is its AMP error
    code (a key of L{ERROR_CODES} for the declared ones), the message its
    description. L{gridreg.admin.cli} prints and maps it as it does the
    exception class the Twisted session raises for that code.
    """

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that awaits only this module's sessions."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a blocking gridadmin command waited for something else")


# -- AMP boxes ---------------------------------------------------------------------


def _encode(kind: str, value: Any) -> bytes:
    if kind == _U:
        return str(value).encode("utf-8")
    if kind == _I:
        return str(int(value)).encode("ascii")
    if kind == _B:
        return b"True" if value else b"False"
    return bytes(value)


def _decode(kind: str, value: bytes) -> Any:
    if kind == _U:
        return value.decode("utf-8")
    if kind == _I:
        return int(value)
    if kind == _B:
        if value not in (b"True", b"False"):
            raise ValueError(f"bad boolean {value!r}")
        return value == b"True"
    return value


def encode_box(box: dict[bytes, bytes]) -> bytes:
    """One AMP box: length-prefixed keys and values, then an empty key."""
    parts = []
    for key, value in box.items():
        if len(key) > 255 or len(value) > 0xFFFF:
            raise AdminConfigError(f"the AMP value {key.decode()!r} is too large to send")
        parts.append(struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value)
    return b"".join(parts) + b"\x00\x00"


class _Reader:
    """AMP boxes from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the registry closed the connection")
            self.buffer += data
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    def box(self) -> dict[bytes, bytes]:
        box: dict[bytes, bytes] = {}
        while True:
            (length,) = struct.unpack("!H", self._take(2))
            if length == 0:
                return box
            key = self._take(length)
            (length,) = struct.unpack("!H", self._take(2))
            box[key] = self._take(length)


# -- the session -------------------------------------------------------------------


class BlockingSession(AdminCalls):
    """
    The admin calls (L{AdminCalls}) over a blocking socket.

    @ivar broken: the connection failed or was closed; open a new session.
    """

    def __init__(self, sock: socket.socket, timeout: float, replica: str) -> None:
        self.sock = sock
        self.timeout = timeout
        self.replica = replica
        self.instance = ""
        self.is_master = False
        self.broken = False
        self._reader = _Reader(sock)
        self._tag = 0
        self._transfers = 0

    async def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        return self.exchange(command, **arguments)

    def exchange(self, command: str, **arguments: Any) -> dict[str, Any]:
        """
        Send C{command} and wait for its answer.

        @raise Refused: the registry answered with an error.
        @raise AdminUnreachableError: no answer in time, or the connection failed.
        """
        if self.broken:
            raise AdminUnreachableError(
                f"the connection to registry replica `{self.replica}' is closed"
            )
        argument_kinds, response_kinds = COMMANDS[command]
        self._tag += 1
        tag = str(self._tag).encode("ascii")
        box = {b"_command": command.encode("ascii"), b"_ask": tag}
        for name, kind in argument_kinds.items():
            box[name.encode("ascii")] = _encode(kind, arguments[name])
        data = encode_box(box)
        try:
            self.sock.sendall(data)
            answer = self._reader.box()
        except TimeoutError:
            self.broken = True
            raise AdminUnreachableError(
                f"registry replica `{self.replica}' did not answer within {self.timeout:g}s"
            ) from None
        except (OSError, ValueError, struct.error) as e:
            self.broken = True
            raise AdminUnreachableError(
                f"the connection to registry replica `{self.replica}' failed: {reason(e)}"
            ) from None
        if answer.get(b"_error") == tag:
            raise Refused(
                answer.get(b"_error_code", b"UNKNOWN").decode("utf-8", "replace"),
                answer.get(b"_error_description", b"").decode("utf-8", "replace"),
            )
        if answer.get(b"_answer") != tag:
            self.broken = True
            raise AdminUnreachableError(
                f"the connection to registry replica `{self.replica}' failed: "
                "an answer to another request"
            )
        try:
            return {
                name: _decode(kind, answer[name.encode("ascii")])
                for name, kind in response_kinds.items()
            }
        except (KeyError, ValueError) as e:
            self.broken = True
            raise AdminUnreachableError(
                f"registry replica `{self.replica}' answered {command} malformed: {reason(e)}"
            ) from None

    def is_alive(self) -> bool:
        """
        Whether the connection still looks usable between commands: an idle
        admin connection has nothing to read, so anything readable is the
        registry closing it (or a protocol error).
        """
        if self.broken:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            readable = [self.sock]
        if readable:
            self.broken = True
        return not self.broken

    # -- the calls AdminSession has --------------------------------------------

    async def upload_and_add_application(self, xml: str, update: bool) -> tuple[str, int]:
        import hashlib

        data = xml.encode("utf-8")
        self._transfers += 1
        transfer = f"upload-{self._transfers}"
        self.exchange(
            "BeginTransfer",
            transfer=transfer,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        for seq, start in enumerate(range(0, len(data), CHUNK_SIZE)):
            self.exchange(
                "TransferChunk", transfer=transfer, seq=seq, data=data[start : start + CHUNK_SIZE]
            )
        result = self.exchange("AdminApplicationAdd", transfer=transfer, update=update)
        return result["name"], result["serial"]

    async def close(self) -> None:
        self.broken = True
        try:
            self.sock.close()
        except OSError:
            pass


# -- finding and dialling the replica --------------------------------------------


class _IceCall:
    """
    One two-way Ice request on a new plain TCP connection, in steps, so
    that several replicas are asked at once: L{ask} on each, then
    L{answer} on each.
    """

    def __init__(self, endpoint: TcpEndpoint, timeout: float) -> None:
        self.sock = socket.create_connection((endpoint.host or "127.0.0.1", endpoint.port), timeout)
        self._reader = _Reader(self.sock)

    def _message(self) -> tuple[int, bytes]:
        from gridreg.ice import messages

        head = self._reader._take(messages.HEADER_SIZE)
        header = messages.parse_header(head)
        body = self._reader._take(header.size - messages.HEADER_SIZE)
        if header.compression == 2:
            body = messages.decompress_message(head + body, None)[messages.HEADER_SIZE :]
        return header.message_type, body

    def ask(self, proxy: Proxy, operation: str, params: bytes) -> None:
        """Wait for the server to validate the connection, then send the request."""
        from gridreg.ice import messages
        from gridreg.ice.types import OperationMode

        kind, _ = self._message()
        if kind != messages.MessageType.VALIDATE_CONNECTION:
            raise ConnectionError("the locator did not validate the connection")
        request = messages.Request(
            1, proxy.identity, "", operation, OperationMode.NONMUTATING, {}, proxy.encoding, params
        )
        self.sock.sendall(messages.encode_request(request))

    def answer(self) -> Any:
        """The reply's result stream; raises the exception a failed reply stands for."""
        from gridreg.ice import messages
        from gridreg.ice.encoding import InputStream

        while True:
            kind, body = self._message()
            if kind == messages.MessageType.REPLY:
                break
            if kind == messages.MessageType.CLOSE_CONNECTION:
                raise ConnectionError("the locator closed the connection")
        try:  # a graceful close, as an Ice client says goodbye
            self.sock.sendall(messages.MAGIC + b"\x01\x00\x01\x00" + struct.pack("<bbi", 4, 0, 14))
        except OSError:
            pass
        self.close()
        reply = messages.decode_reply(body)
        error = messages.reply_error(reply)
        if error is not None:
            raise error
        return InputStream(reply.payload, reply.encoding)  # type: ignore[arg-type]

    def close(self) -> None:
        self.sock.close()


def supported(properties: Properties) -> bool:
    """
    Whether this module can reach the locator: plain TCP endpoints only (an
    C{ssl} locator needs the Twisted session). A malformed or missing
    locator counts as supported, so L{discover} reports it.
    """
    try:
        locator = properties.get_proxy("Ice.Default.Locator")
    except ValueError:
        return True
    if locator is None:
        return True
    return (
        bool(locator.endpoints)
        and not locator.secure
        and all(type(e) is TcpEndpoint for e in locator.endpoints)
    )


def discover(properties: Properties, replica: Optional[str], timeout: float) -> Proxy:
    """
    As L{gridreg.admin.session.discover}: the proxy of
    C{InternalRegistry-<replica>}, asked of every replica the locator lists
    (one after the other here), their endpoints merged in the locator's
    order (see L{supported}).
    """
    from gridreg.ice.encoding import MarshalError, OutputStream
    from gridreg.ice.exceptions import ObjectNotFoundException, RequestFailedError, UserException
    from gridreg.ice.messages import ProtocolError

    name = replica or MASTER
    try:
        instance = instance_name(properties)
        locator = properties.get_proxy("Ice.Default.Locator")
    except ValueError as e:  # PropertyError too
        raise AdminConfigError(str(e)) from None
    if locator is None:
        raise AdminConfigError(
            "Ice.Default.Locator is not set: it must name the registry's locator, "
            "e.g. DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061"
        )
    out = OutputStream(locator.encoding)
    out.write_identity(Identity(f"InternalRegistry-{name}", instance))
    params = out.getvalue()
    invocation = properties.get_int("Ice.Default.Locator.InvocationTimeout", -1)
    wait = min(timeout, invocation / 1000.0) if invocation > 0 else timeout
    found: list[Proxy] = []
    failures: list[BaseException] = []
    errors = (UserException, RequestFailedError, ProtocolError, MarshalError, OSError)
    calls: list[Optional[_IceCall]] = []
    for endpoint in locator.endpoints:  # connect to every replica, ask every one, then read
        try:
            calls.append(_IceCall(endpoint, wait))  # type: ignore[arg-type]  # all tcp: supported()
        except OSError as e:
            failures.append(e)  # that replica is out; the others may answer
            calls.append(None)
    for i, call in enumerate(calls):
        if call is not None:
            try:
                call.ask(locator, "findObjectById", params)
            except errors as e:
                failures.append(e)
                call.close()
                calls[i] = None
    for call in calls:
        if call is None:
            continue
        try:
            proxy = call.answer().read_proxy()
        except errors as e:
            failures.append(e)
            call.close()
            continue
        if proxy is None:
            failures.append(ObjectNotFoundException())
        else:
            found.append(proxy)
    if found:
        endpoints = [e for proxy in found for e in proxy.endpoints]
        unique = [e for i, e in enumerate(endpoints) if e not in endpoints[:i]]
        return attrs.evolve(found[0], endpoints=tuple(unique))
    if any(isinstance(f, ObjectNotFoundException) for f in failures):
        if replica is None:
            raise AdminUnreachableError(
                f"the registry of `{instance}' has no master now (no {instance}/InternalRegistry-"
                f"{MASTER}); use --replica NAME for read-only access to a slave"
            )
        raise Refused("NOT_FOUND", f"the registry of `{instance}' has no replica `{replica}'")
    last = failures[-1] if failures else None
    raise AdminUnreachableError(
        f"no registry replica answered at {properties.get('Ice.Default.Locator')}: "
        f"{reason(last) if last is not None else 'no endpoint'}"
    )


def _dial(
    endpoint: TcpEndpoint,
    context: Optional[ssl.SSLContext],
    replica: str,
    timeout: float,
) -> socket.socket:
    """A connection to one internal endpoint; over TLS, to the replica C{replica} only."""
    sock = socket.create_connection((endpoint.host or "127.0.0.1", endpoint.port), timeout)
    if context is None:
        return sock
    try:
        secure = context.wrap_socket(sock, server_hostname=dns_name(REGISTRY, replica))
    except BaseException:
        sock.close()
        raise
    return secure


def _check_replica(sock: ssl.SSLSocket, name: str) -> None:
    """
    The peer is the replica C{name} exactly, read from C{ssl}'s decoding of
    its certificate; a refusal is worded by L{peer_identity} from the DER.

    @raise PeerNotAuthorized: it is not.
    """
    try:
        authorize(peer_identity_from_ssl(sock.getpeercert() or {}), REGISTRY, name)
        return
    except PeerNotAuthorized:
        pass
    from cryptography import x509

    der = sock.getpeercert(binary_form=True)
    if der is None:
        raise PeerNotAuthorized("the peer presented no certificate")
    authorize(peer_identity(x509.load_der_x509_certificate(der)), REGISTRY, name)


def open_blocking_session(
    properties: Properties,
    replica: Optional[str],
    timeout: float,
    *,
    warn: Callable[[str], None],
) -> BlockingSession:
    """As L{gridreg.admin.session.open_admin_session}, blocking (see L{supported})."""
    tls, user = tls_settings(properties, warn)
    name = replica or MASTER
    proxy = discover(properties, replica, timeout)
    candidates = [e for e in proxy.endpoints if isinstance(e, TcpEndpoint)]
    if not candidates:
        raise AdminUnreachableError(f"registry replica `{name}' publishes no tcp internal endpoint")
    try:
        context = ssl_client_context(tls) if tls is not None else None
    except (OSError, ssl.SSLError) as e:
        raise AdminConfigError(f"cannot use the TLS files: {reason(e)}") from None
    failures = []
    for endpoint in candidates:
        address = f"{endpoint.host or '127.0.0.1'}:{endpoint.port}"
        try:
            sock = _dial(endpoint, context, name, timeout)
        except TimeoutError:
            failures.append(f"{address}: no connection within {timeout:g}s")
            continue
        except (OSError, ssl.SSLError) as e:
            failures.append(f"{address}: {reason(e)}")
            continue
        sock.settimeout(timeout)
        session = BlockingSession(sock, timeout, name)
        try:
            hello = session.exchange("Hello", version=PROTOCOL_VERSION, role="admin", name=user)
            if context is not None:
                # the handshake checked the DNS name, which folds case; this is the exact name
                try:
                    _check_replica(sock, name)  # type: ignore[arg-type]
                except PeerNotAuthorized as e:
                    raise AdminUnreachableError(f"not the replica we asked for: {e}") from None
        except AdminUnreachableError as e:
            sock.close()
            failures.append(f"{address}: {e}")
            continue
        except BaseException:
            sock.close()
            raise
        session.instance = hello["instance"]
        session.replica = hello["replica"]
        session.is_master = hello["master"]
        return session
    hint = "; use --replica NAME for read-only access to a slave" if replica is None else ""
    raise AdminUnreachableError(
        f"cannot reach registry replica `{name}' ({'; '.join(failures)}){hint}"
    )
