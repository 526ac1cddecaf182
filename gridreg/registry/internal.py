# -*- test-case-name: tests.test_replication -*-
"""
The server side of a registry's internal endpoints (AMP, over mutual TLS).

Every connection starts with C{Hello}; the role it claims is checked against
the peer's certificate, and decides which commands it may send: slaves
register and forward registrations, admin clients use the admin commands.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.ice.admin_facets import forwarded_request
from gridreg.ice.encoding import InputStream
from gridreg.ice.exceptions import UserException
from gridreg.ice.types import ENCODING_1_1
from gridreg.protocol import commands, node_commands
from gridreg.protocol.commands import (
    PROTOCOL_VERSION,
    AdminObjectAdd,
    FetchDatabase,
    ForwardAdapterRegistration,
    Hello,
    ReplicaAdminRequest,
    ReplicaKeepAlive,
    RegisterReplica,
)
from gridreg.protocol.boxes import FastBoxReader
from gridreg.protocol.prompt import NOW, TURN, AnswerTo, PromptWriter, batch_tls_turns
from gridreg.protocol.chunking import new_transfer_id, send_blob
from gridreg.protocol.errors import NodeError, NotAuthorizedError, NotMasterError
from gridreg.protocol.node_commands import NodeKeepAlive, NodeLiveState, RegisterNode
from gridreg.registry.loadbalancing import LoadSamples
from gridreg.registry.epochs import Epoch
from gridreg.registry.snapshots import snapshot_to_json

if TYPE_CHECKING:
    from gridreg.registry.roles import Replica

ROLES = ("registry", "node", "admin")

#: every command of the internal protocol, by wire name
_COMMANDS: dict[bytes, type[amp.Command]] = {
    value.commandName: value
    for module in (commands, node_commands)
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, amp.Command) and value is not amp.Command
}


def _checking_arguments(
    command: type[amp.Command], responder: Callable[[amp.AmpBox], Any], protocol: amp.AMP
) -> Callable[[amp.AmpBox], Any]:
    """
    C{responder}, refusing a box whose arguments do not decode (missing, not
    an integer, not UTF-8) with a C{BAD_ARGUMENTS} error that closes the
    connection, instead of AMP's unhandled-error traceback. Found by
    C{bench/fuzz.py}.
    """

    def checked(box: amp.AmpBox) -> Any:
        # AMP's responder raises only while it decodes the arguments: the
        # responder's own errors come back in its Deferred. So the box is
        # decoded once, by it.
        try:
            return responder(box)
        except (KeyError, ValueError, TypeError) as exc:
            raise amp.RemoteAmpError(
                b"BAD_ARGUMENTS",
                f"{command.__name__}: bad arguments ({exc!r})",
                fatal=True,
            ) from None

    return checked


def _user_exception(failure: Failure) -> Any:
    """An Ice user exception crosses AMP as its type id, in the answer."""
    if failure.check(UserException):
        exc = failure.value
        return {"exception": exc.type_id, "reason": str(exc)}
    return failure


#: where AMP logs a command's undeclared error (its module's logger)
_amp_log = Logger(namespace=amp.__name__)


def _error_box(failure: Failure, ask: bytes) -> amp.AmpBox:
    """
    The error box AMP's C{_commandReceived} answers C{failure} with (its
    C{formatError}): a declared error by its code and description, closing
    the connection if fatal; any other as AMP's unknown error, logged.
    """
    if failure.check(amp.RemoteAmpError):
        error = failure.value
        code = error.errorCode
        description = error.description
        if isinstance(description, str):
            description = description.encode("utf-8", "replace")
        box = amp.QuitBox() if error.fatal else amp.AmpBox()
    else:
        box = amp.QuitBox()
        _amp_log.failure("while receiving response to command", failure)
        code = amp.UNKNOWN_ERROR_CODE
        description = b"Unknown Error"
    box[amp.ERROR] = ask
    box[amp.ERROR_DESCRIPTION] = description
    box[amp.ERROR_CODE] = code
    return box


#: the admin's add, answered past AMP's dispatch (L{InternalProtocol._admin_add_received})
_ADMIN_ADD = AdminObjectAdd.commandName

#: how soon each session's boxes reach the socket (L{gridreg.protocol.prompt}):
#: a slave's session gets one push per group commit, an admin's may get many answers
_PROMPT = {"registry": NOW, "admin": TURN}


class InternalProtocol(PromptWriter, FastBoxReader, amp.AMP):
    """One connection to a replica's internal endpoint."""

    log = Logger()

    def __init__(
        self,
        registry: "Replica",
        admin_locator: Optional[amp.CommandLocator],
        authorize: Optional[Callable[[Any, str, str], None]],
    ) -> None:
        super().__init__()
        self.registry = registry
        self.admin_locator = admin_locator
        self._authorize = authorize
        self.role: Optional[str] = None
        self.peer_name: Optional[str] = None
        #: the responders found (L{locateResponder}), by command name, the
        #: session's role and admin locator: the same for every box of a
        #: session, where finding one took about 15 Python calls per box
        self._responders: dict[tuple[bytes, Optional[str], Any], Any] = {}

    def dataReceived(self, data: bytes) -> None:
        """
        A box AMP itself refuses (an empty one, say) closes this connection
        with a logged reason, instead of escaping to the reactor as an
        unhandled error. Found by C{bench/fuzz.py}.
        """
        try:
            super().dataReceived(data)
        except amp.AmpError as exc:
            self.log.warn(
                "Closing internal connection from {peer}: {reason}",
                peer=str(self.transport.getPeer()),
                reason=repr(exc),
            )
            self.transport.loseConnection()

    def unhandledError(self, failure: Failure) -> None:
        """
        A command sent without C{_ask} that fails with a declared error (an
        unknown command, bad arguments, a refused write) has no one to tell:
        the connection closes with a logged reason, not AMP's traceback.
        Found by C{bench/fuzz.py}.
        """
        if failure.check(amp.RemoteAmpError):
            self.log.warn(
                "Closing internal connection from {peer}: {reason}",
                peer=str(self.transport.getPeer()),
                reason=failure.value.description,
            )
            self.transport.loseConnection()
            return
        super().unhandledError(failure)

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        """
        Two boxes of every replicated write skip a step of AMP's: an answer
        to a readied push (L{AnswerTo}, from each slave) goes straight to
        its receiver, and the admin's add that asks for its answer to
        L{_admin_add_received}. Every other box goes through AMP's dispatch.
        """
        if amp.ANSWER in box:
            # AMP's _answerReceived, its look-up (a tag it does not know
            # raises as there) and hand-over, without two calls of its own
            requests: Any = self._outstandingRequests
            question = requests.pop(box[amp.ANSWER])
            if type(question) is AnswerTo:
                question.answered(box, self.unhandledError)
            else:
                question.addErrback(self.unhandledError)
                question.callback(box)
        elif (
            box.get(amp.COMMAND) == _ADMIN_ADD
            and self.role == "admin"
            and amp.ASK in box
            and amp.ERROR not in box
        ):
            self._admin_add_received(box)
        else:
            super().ampBoxReceived(box)

    def _admin_add_received(self, box: amp.AmpBox) -> None:
        """
        AMP's C{_commandReceived} for the admin's add (C{AdminObjectAdd}
        with C{_ask}), without its dispatch's steps (C{dispatchCommand},
        C{maybeDeferred}, C{formatAnswer}, C{_safeEmit}: a Deferred's
        callback each): the responder AMP would find, called as it calls
        it, its answer or error box (L{_error_box}) sent as AMP sends it,
        and what fails after that to L{unhandledError}, as there. A session
        with no such responder leaves the box to AMP, which refuses it.
        """
        responder = self.locator.locateResponder(_ADMIN_ADD)
        if responder is None:
            super().ampBoxReceived(box)
            return
        ask = box[amp.ASK]
        try:
            answer = responder(box)
        except BaseException:  # as maybeDeferred: what the responder raises is its answer
            answer = fail()
        if type(answer) is not Deferred:
            answer = maybeDeferred(lambda: answer)  # (not this responder) as AMP takes it
        answer.addCallbacks(
            self._send_answer, self._send_error, callbackArgs=(ask,), errbackArgs=(ask,)
        )

    def _send_answer(self, box: amp.AmpBox, ask: bytes) -> None:
        """
        AMP's C{formatAnswer} and C{_safeEmit}: the answer box, tagged,
        sent; what fails goes to L{unhandledError}, as AMP's last errback
        gives it (here without a callback entry of its own).
        """
        try:
            box[amp.ANSWER] = ask
            if type(box) is amp.AmpBox:
                self.boxSender.sendBox(box)  # what its _sendTo does, without the call
            else:
                box._sendTo(self.boxSender)
        except (amp.ProtocolSwitched, amp.ConnectionLost):
            pass  # as AMP's _safeEmit: nothing to answer on
        except Exception:
            self.unhandledError(Failure())

    def _send_error(self, failure: Failure, ask: bytes) -> None:
        """AMP's C{formatError} and C{_safeEmit}: the error box, sent (as L{_send_answer})."""
        try:
            _error_box(failure, ask)._sendTo(self.boxSender)
        except (amp.ProtocolSwitched, amp.ConnectionLost):
            pass
        except Exception:
            self.unhandledError(Failure())

    def locateResponder(self, name: bytes) -> Any:
        """
        The responder for the command C{name}, found once per name, role and
        admin locator (they decide which is found; each one found is a
        function of the box alone); a name without one is looked up again.
        """
        key = (name, self.role, self.admin_locator)
        responder = self._responders.get(key)
        if responder is None:
            responder = self._find_responder(name)
            if responder is not None:
                self._responders[key] = responder
        return responder

    def _find_responder(self, name: bytes) -> Any:
        if not name.isascii():
            return None  # an unknown command; AMP's own lookup would raise (fuzzing)
        responder = super().locateResponder(name)
        if responder is None and self.role == "admin" and self.admin_locator is not None:
            responder = self.admin_locator.locateResponder(name)
        command = _COMMANDS.get(name)
        if responder is None or command is None:
            return responder
        return _checking_arguments(command, responder, self)

    def _require(self, role: str) -> None:
        if self.role != role:
            raise NotAuthorizedError(f"this command needs a {role} session")

    @Hello.responder
    def hello(self, version: int, role: str, name: str) -> dict[str, Any]:
        if role not in ROLES:
            raise NotAuthorizedError(f"unknown role `{role}'")
        if version != PROTOCOL_VERSION:
            raise NotAuthorizedError(
                f"internal protocol version {version}; this replica speaks version "
                f"{PROTOCOL_VERSION}: run the same gridreg release on every replica"
            )
        if self._authorize is not None:
            if not ISSLTransport.providedBy(self.transport):
                raise NotAuthorizedError("internal sessions need TLS")
            self._authorize(self.transport, role, name)
        self.role = role
        self.peer_name = name
        self.prompt = _PROMPT.get(role)
        self.prompt_clock = self.registry.reactor
        if self.prompt == TURN:
            batch_tls_turns(self.transport, self.registry.reactor)
        config = self.registry.config
        return {
            "version": PROTOCOL_VERSION,
            "instance": config.instance_name,
            "replica": config.replica_name,
            **self.registry.role.hello(),
        }

    @RegisterReplica.responder
    def register_replica(
        self, name: str, endpoints: str, database_id: str, serial: int, epoch: str
    ) -> dict[str, Any]:
        self._require("registry")
        if name != self.peer_name:
            raise NotAuthorizedError(
                f"registered as `{name}' after saying hello as `{self.peer_name}'"
            )
        try:
            slave_epoch = Epoch.from_wire(epoch)
        except ValueError:
            raise NotAuthorizedError(f"malformed epoch `{epoch}'") from None
        return self.registry.role.register_replica(
            self, name, json.loads(endpoints), database_id, serial, slave_epoch
        )

    @ForwardAdapterRegistration.responder
    def forward_adapter_registration(
        self, adapter_id: str, replica_group_id: str, proxy: str
    ) -> Deferred[dict[str, Any]]:
        self._require("registry")
        role = self.registry.role
        if not role.is_master:
            raise NotMasterError(role.write_refusal())
        decoded = InputStream(base64.b64decode(proxy), ENCODING_1_1).read_proxy() if proxy else None
        d = self.registry.database.set_adapter_direct_proxy(adapter_id, replica_group_id, decoded)
        return d.addCallbacks(lambda _: {"exception": "", "reason": ""}, _user_exception)

    @ReplicaKeepAlive.responder
    def replica_keepalive(self, serial: int) -> dict[str, Any]:
        self._require("registry")
        return {"epoch": self.registry.role.keepalive(self, serial).to_wire()}

    @FetchDatabase.responder
    def fetch_database(self) -> Deferred[dict[str, Any]]:
        """Send this replica's database to a replica starting from a copy of it."""
        self._require("registry")
        timeout = self.registry.config.replica_session_timeout
        clock = self.registry.reactor

        def call(command: type[amp.Command], **kwargs: Any) -> Deferred[Any]:
            return self.callRemote(command, **kwargs).addTimeout(timeout, clock)

        async def send() -> dict[str, Any]:
            state = await self.registry.store.snapshot()
            transfer = new_transfer_id("database")
            await send_blob(call, transfer, snapshot_to_json(state))
            self.log.info(
                "[Replica] sent a copy of this database (serial {serial}) to `{peer}'",
                serial=state.serial,
                peer=self.peer_name,
            )
            return {"transfer": transfer, "database_id": state.database_id, "serial": state.serial}

        return Deferred.fromCoroutine(send())

    @ReplicaAdminRequest.responder
    def replica_admin_request(
        self, facet: str, operation: str, mode: int, context: str, encoding: str, params: bytes
    ) -> Deferred[dict[str, Any]]:
        """Another replica's admin router asks for this replica's admin object."""
        self._require("registry")
        request = forwarded_request(
            facet, operation, mode, json.loads(context or "{}"), encoding, params
        )
        d = maybeDeferred(self.registry.admin_routers.local, request)
        return d.addCallback(lambda reply: {"reply": reply})

    # -- node sessions (gridreg.protocol.node_commands) -------------------------------

    @RegisterNode.responder
    def register_node(self, name: str, info: str, epoch: str) -> dict[str, Any]:
        """A node asks to be managed; the node, not this replica, judges the epoch."""
        self._require("node")
        if name != self.peer_name:
            raise NotAuthorizedError(
                f"registered as `{name}' after saying hello as `{self.peer_name}'"
            )
        return self.registry.nodes.register(self, name, _json_object(info, "info"))

    @NodeKeepAlive.responder
    def node_keepalive(self, load1: float, load5: float, load15: float) -> dict[str, Any]:
        self._require("node")
        return {"epoch": self.registry.nodes.keepalive(self, LoadSamples(load1, load5, load15))}

    @NodeLiveState.responder
    def node_live_state(self, servers: str, adapters: str, full: bool) -> dict[str, Any]:
        self._require("node")
        try:
            self.registry.nodes.live_state(
                self,
                _json_object(servers, "servers"),
                _json_object(adapters, "adapters"),
                full,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise NodeError(f"malformed live state: {exc}") from None
        return {}

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.connections.discard(self)
        if self.role == "registry":
            self.registry.role.replica_lost(self)
        elif self.role == "node":
            self.registry.nodes.lost(self)


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        raise NodeError(f"`{what}' is not JSON") from None
    if not isinstance(value, dict):
        raise NodeError(f"`{what}' is not a JSON object")
    return value


class InternalFactory(Factory):
    noisy = False

    def __init__(
        self,
        registry: "Replica",
        admin_locator: Optional[Callable[[InternalProtocol], amp.CommandLocator]],
        authorize: Optional[Callable[[Any, str, str], None]],
    ) -> None:
        self.registry = registry
        self.admin_locator = admin_locator
        self.authorize = authorize
        self.connections: set[InternalProtocol] = set()

    def buildProtocol(self, addr: Any) -> InternalProtocol:
        protocol = InternalProtocol(self.registry, None, self.authorize)
        protocol.factory = self
        if self.admin_locator is not None:
            protocol.admin_locator = self.admin_locator(protocol)
        self.connections.add(protocol)
        return protocol

    def close_all(self) -> None:
        """Close every internal connection (the replica is stopping)."""
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
