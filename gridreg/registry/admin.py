# -*- test-case-name: tests.test_admin -*-
"""
The registry's side of C{gridadmin}: the responders of an admin session.

An admin session is an internal AMP connection whose C{Hello} claimed the
role C{admin}; L{InternalProtocol} then looks every command it does not
answer itself up here. Reads work on any replica, from its own copy of the
database. Writes are the master's alone: a slave refuses them with
L{NotMasterError} naming the master, so the operator knows where to go.

Nothing here may answer more than AMP's 65,535 bytes per value, because
listings and descriptors grow with the grid: lists come in pages bounded by
a count I{and} a byte budget, descriptions in slices of L{CHUNK_SIZE}
characters, and descriptors are uploaded through the chunked channel
(L{gridreg.protocol.chunking}) first.
"""

from __future__ import annotations

import bisect
import fnmatch
import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional


from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.ice.exceptions import (
    AdapterNotExistException,
    AdapterNotFoundException,
    ApplicationNotExistException,
    DeploymentException,
    ObjectExistsException,
    ObjectNotRegisteredException,
    UserException,
)
from gridreg.ice.stringify import (
    ProxyParseError,
    endpoints_to_string,
    identity_from_string,
    identity_to_string,
    proxy_from_string,
    proxy_to_string,
)
from gridreg.ice.types import Identity, Proxy
from gridreg.protocol.commands import (
    CHUNK_SIZE,
    AdminAdapterRemove,
    AdminApplicationAdd,
    AdminApplicationRemove,
    AdminDescribe,
    AdminList,
    AdminObjectAdd,
    AdminObjectRemove,
    AdminPing,
)
from gridreg.protocol.boxes import new_box
from gridreg.protocol.chunking import TransferReceiver, TransferResponder
from gridreg.protocol.errors import (
    ApplicationError,
    NotAuthorizedError,
    NotFoundError,
    NotMasterError,
    QuorumError,
    RegistryUserError,
    TransferError,
    declared_error,
)
from gridreg.registry.admin_model import AdminModel, ReadOnly
from gridreg.registry.descriptors import DescriptorError, parse_application
from gridreg.registry.node_admin import (
    NodeAdminResponder,
    node_details,
    node_listing,
    server_details,
    server_listing,
)
from gridreg.store.digest import state_digest
from gridreg.store.records import Change

if TYPE_CHECKING:
    from gridreg.registry.roles import Replica

#: what C{AdminList} and C{AdminDescribe} know about
KINDS = ("application", "object", "adapter", "registry", "server", "node")
#: the most items one page holds, whatever the caller asks for
MAX_PAGE_ITEMS = 1000
#: the most JSON bytes one page holds, well below AMP's 65,535 per value
PAGE_BUDGET = 50_000
#: an item larger than this has its long fields cut, so any item fits a page
MAX_ITEM_BYTES = 20_000
_CUT_FIELD = 1_000
#: the most descriptor bytes one connection may have uploaded and not used yet
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
#: the most uploads one connection may have open at once
MAX_TRANSFERS = 16

#: errors that already say what the admin needs to hear
_DECLARED = (
    QuorumError,
    NotFoundError,
    NotMasterError,
    RegistryUserError,
    ApplicationError,
    NotAuthorizedError,
    TransferError,
)


def _json(value: Any) -> str:
    """JSON as ASCII, so its length in characters is its length on the wire."""
    return json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def _bounded(item: dict[str, Any]) -> dict[str, Any]:
    """C{item}, with long text fields cut if it would crowd a page on its own."""
    if len(_json(item)) <= MAX_ITEM_BYTES:
        return item
    cut = {
        key: value[:_CUT_FIELD] + "..."
        if isinstance(value, str) and len(value) > _CUT_FIELD
        else value
        for key, value in item.items()
    }
    cut["truncated"] = True
    return cut


def _guarded(method: Callable[..., Any]) -> Callable[..., Deferred[dict[str, Any]]]:
    """
    Answer any failure of a responder with a declared error: AMP answers an
    undeclared one with UNKNOWN and drops the connection.
    """

    @functools.wraps(method)
    def guarded(self: AdminResponder, *args: Any, **kwargs: Any) -> Deferred[dict[str, Any]]:
        return maybeDeferred(method, self, *args, **kwargs).addErrback(self._refusal)

    return guarded


class AdminResponder(TransferResponder, NodeAdminResponder):
    """
    The admin commands for one connection to one replica.

    @ivar registry: the replica (L{Replica}).
    @ivar protocol: the connection, for the peer's name in logs.
    """

    log = Logger()

    def __init__(self, registry: Replica, protocol: amp.AMP) -> None:
        self.registry = registry
        self.protocol = protocol
        self.transfers = TransferReceiver(MAX_UPLOAD_BYTES, MAX_TRANSFERS)
        self.model = AdminModel(registry)

    def locateResponder(self, name: bytes) -> Any:
        if name == AdminObjectAdd.commandName:
            return self._object_add_box
        return super().locateResponder(name)

    def _object_add_box(self, box: amp.AmpBox) -> Deferred[amp.AmpBox]:
        """
        L{object_add} on the raw box, the admin's hot write, without AMP's
        per-argument conversions each way; the answer and the declared
        errors are the boxes AMP's own responder would send. A box whose
        arguments do not decode goes through AMP's responder, which says so.
        """
        try:
            proxy = box[b"proxy"].decode("utf-8")
            type_id = box[b"type"].decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            return super().locateResponder(AdminObjectAdd.commandName)(box)  # type: ignore[no-any-return]
        # object_add's guards in one errback: a Deferred each was a tenth of the write here
        try:
            # before the proxy is parsed, as object_add checks: a replica that
            # refuses writes says so first (ReadOnly, answered as NotMasterError)
            self.model.require_writable()
            d = self.model.add_object(_proxy(proxy), type_id, writable_checked=True)
        except Exception:
            d = fail()
        return d.addCallbacks(self._serial_box, self._object_add_refused, errbackArgs=(proxy,))

    def _serial_box(self, change: Optional[Change]) -> amp.AmpBox:
        # L{_serial}, without its call (every admin's add is answered here)
        serial = change.serial if change is not None else int(self.registry.store.serial)
        return new_box({b"serial": b"%d" % serial})

    def _object_add_refused(self, failure: Failure, proxy: str) -> Failure:
        """L{object_add}'s refusals (L{_object_refusal}, L{_refusal}), as AMP sends them."""
        if failure.check(DeploymentException):
            failure = Failure(RegistryUserError(failure.value.reason))
        return declared_error(self._refusal(failure, proxy), AdminObjectAdd)

    # -- helpers ---------------------------------------------------------------

    def _require_master(self) -> None:
        refusal = self.registry.role.write_refusal()
        if refusal is not None:
            raise NotMasterError(refusal)

    def _serial(self, change: Optional[Change]) -> int:
        """The serial a write reached; a write that changed nothing reports the current one."""
        return change.serial if change is not None else int(self.registry.store.serial)

    def _refusal(self, failure: Failure, what: str = "") -> Failure:
        """Turn a refusal into the declared AMP error the admin tool understands."""
        exc = failure.value
        if isinstance(exc, _DECLARED):
            return failure
        if isinstance(exc, ReadOnly):
            return Failure(NotMasterError(str(exc)))
        if isinstance(exc, ObjectExistsException):
            return Failure(
                RegistryUserError(f"object `{identity_to_string(exc.id)}' already exists")
            )
        if isinstance(exc, ObjectNotRegisteredException):
            return Failure(
                NotFoundError(f"object `{identity_to_string(exc.id)}' is not registered")
            )
        if isinstance(exc, (AdapterNotFoundException, AdapterNotExistException)):
            return Failure(NotFoundError(f"adapter `{what}' not found"))
        if isinstance(exc, ApplicationNotExistException):
            return Failure(NotFoundError(f"application `{exc.name}' not found"))
        if isinstance(exc, DescriptorError):
            return Failure(ApplicationError(str(exc)))
        if isinstance(exc, DeploymentException):
            return Failure(ApplicationError(exc.reason))
        if isinstance(exc, UserException):
            return Failure(RegistryUserError(f"{exc.type_id}: {exc}"))
        self.log.failure("An admin command from {peer} failed", failure, peer=self._peer())
        return Failure(RegistryUserError(f"the registry failed: {exc!r}"))

    def _peer(self) -> str:
        return str(getattr(self.protocol, "peer_name", None) or "?")

    def _write(self, what: str, run: Callable[[], Any]) -> Deferred[dict[str, Any]]:
        d = maybeDeferred(run)
        d.addCallback(lambda change: {"serial": self._serial(change)})
        return d.addErrback(self._refusal, what)

    # -- uploads ---------------------------------------------------------------

    def check_transfer_allowed(self) -> None:
        """Descriptors are uploaded to be deployed, which only the master does."""
        self._require_master()

    # -- applications ----------------------------------------------------------

    @AdminApplicationAdd.responder
    @_guarded
    def application_add(self, transfer: str, update: bool) -> Deferred[dict[str, Any]]:
        """Deploy (or replace) the application whose XML was uploaded as C{transfer}."""
        self._require_master()
        try:
            xml = self.transfers.take(transfer).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ApplicationError(f"the descriptor is not UTF-8 text (byte {e.start})") from None
        # the name the admin said hello with (checked against its certificate under TLS)
        user = str(getattr(self.protocol, "peer_name", None) or "")
        d = maybeDeferred(self.model.add_application, xml, update, user)
        d.addCallback(
            lambda change: {
                "name": self._application_name(change, xml),
                "serial": self._serial(change),
            }
        )
        return d.addErrback(self._refusal)

    def _application_name(self, change: Optional[Change], xml: str) -> str:
        applications = self.registry.state.applications
        if change is not None:
            names = {
                m.key
                for m in change.mutations
                if m.kind == "application" and m.value is not None and m.key in applications
            }
            if len(names) == 1:
                return names.pop()
        return parse_application(xml).name

    @AdminApplicationRemove.responder
    @_guarded
    def application_remove(self, name: str) -> Deferred[dict[str, Any]]:
        self._require_master()
        if name not in self.registry.state.applications:
            raise NotFoundError(f"application `{name}' is not deployed")
        return self._write(name, lambda: self.model.remove_application(name))

    # -- objects ---------------------------------------------------------------

    @AdminObjectAdd.responder
    @_guarded
    def object_add(self, proxy: str, type: str) -> Deferred[dict[str, Any]]:
        self._require_master()
        parsed = _proxy(proxy)
        return self._write(proxy, lambda: _object_refusal(self.model.add_object, parsed, type))

    @AdminObjectRemove.responder
    @_guarded
    def object_remove(self, identity: str) -> Deferred[dict[str, Any]]:
        self._require_master()
        parsed = _identity(identity)
        if parsed in self.registry.state.builtin_objects:
            raise RegistryUserError(
                f"object `{identity_to_string(parsed)}' is the registry's own and cannot be removed"
            )
        return self._write(identity, lambda: _object_refusal(self.model.remove_object, parsed))

    # -- adapters --------------------------------------------------------------

    @AdminAdapterRemove.responder
    @_guarded
    def adapter_remove(self, adapter_id: str) -> Deferred[dict[str, Any]]:
        """
        Remove a registered adapter; for a replica group, as IceGrid does,
        take every member out of the group (the members stay registered).
        """
        self._require_master()
        application = self.registry.state.application_of_adapter(adapter_id)
        if application:
            raise RegistryUserError(
                f"adapter `{adapter_id}' belongs to application `{application}': "
                "update or remove the application instead"
            )
        return self._write(adapter_id, lambda: self.model.remove_adapter(adapter_id))

    # -- reads -----------------------------------------------------------------

    @AdminList.responder
    @_guarded
    def list_page(self, what: str, pattern: str, cursor: str, limit: int) -> dict[str, Any]:
        """
        One page of C{what}, sorted by key, after C{cursor}; the answer's
        cursor is the page's last key, or empty when nothing matching follows.
        """
        keys, item = self._listing(what)
        limit = MAX_PAGE_ITEMS if limit <= 0 else min(limit, MAX_PAGE_ITEMS)
        start = bisect.bisect_right(keys, cursor) if cursor else 0
        page: list[str] = []
        used = 2  # the brackets
        last = ""
        more = False
        for key in keys[start:]:
            if pattern and not fnmatch.fnmatchcase(key, pattern):
                continue
            text = _json(_bounded(item(key)))
            if len(page) >= limit or used + len(text) + 1 > PAGE_BUDGET:
                more = True
                break
            page.append(text)
            used += len(text) + 1
            last = key
        return {"items": "[" + ",".join(page) + "]", "cursor": last if more else ""}

    def _listing(self, what: str) -> tuple[list[str], Callable[[str], dict[str, Any]]]:
        """The sorted keys of C{what} and how to make the list item of one."""
        state = self.registry.state
        if what == "application":
            apps = state.applications
            return sorted(apps), lambda k: {
                "name": k,
                "description": apps[k].description,
                **self._metadata(k),
            }
        if what == "object":
            objects = self._objects()
            return sorted(objects), lambda k: self._object_item(objects[k])
        if what == "adapter":
            ids = set(state.adapters) | set(state.replica_groups)
            ids |= set(state.deployed.adapters) | set(state.deployed.replica_groups)
            return sorted(ids), lambda k: self._adapter_item(k, members=False)
        if what == "registry":
            replicas = {r["name"]: r for r in self.registry.replica_info()}
            fields = ("name", "role", "serial", "lag", "alive", "state", "reason", "client")
            return sorted(replicas), lambda k: {f: replicas[k].get(f) for f in fields}
        if what == "server":
            return server_listing(self.registry.nodes)
        if what == "node":
            return node_listing(self.registry.nodes)
        raise RegistryUserError(f"unknown kind `{what}': expected one of {', '.join(KINDS)}")

    def _metadata(self, name: str) -> dict[str, Any]:
        """An application's uuid, revision, and who wrote it when (ms since the epoch)."""
        return dict(self.model.application_metadata(name).to_json())

    def _objects(self) -> dict[str, Identity]:
        state = self.registry.state
        everything = {identity_to_string(i): i for i in state.objects}
        everything.update((identity_to_string(i), i) for i in state.deployed.objects)
        everything.update((identity_to_string(i), i) for i in state.builtin_objects)
        return everything

    def _object_item(self, identity: Identity) -> dict[str, Any]:
        info = self.registry.state.find_object(identity)
        assert info is not None
        return {
            "identity": identity_to_string(identity),
            "proxy": proxy_to_string(info.proxy),
            "type": info.type,
        }

    def _adapter_item(self, adapter_id: str, members: bool) -> dict[str, Any]:
        state = self.registry.state
        info = state.adapters.get(adapter_id)
        item: dict[str, Any] = {
            "id": adapter_id,
            "application": state.application_of_adapter(adapter_id) or "",
        }
        if info is not None:
            item.update(
                kind="adapter",
                replica_group=info.replica_group_id,
                endpoints=endpoints_to_string(info.proxy.endpoints),
            )
            return item
        deployed = state.deployed.adapters.get(adapter_id)
        if deployed is not None:  # deployed, not registered: its server is not running
            item.update(kind="adapter", replica_group=deployed.replica_group_id, endpoints="")
            return item
        group = state.replica_group_members(adapter_id)
        item.update(
            kind="replica-group",
            replica_group="",
            endpoints=endpoints_to_string(e for m in group for e in m.proxy.endpoints),
        )
        if members:
            item["members"] = [
                {"id": m.adapter_id, "endpoints": endpoints_to_string(m.proxy.endpoints)}
                for m in group
            ]
        return item

    @AdminDescribe.responder
    @_guarded
    def describe(self, what: str, key: str, offset: int) -> Deferred[dict[str, Any]]:
        """
        C{key} of C{what} in detail, as JSON text sliced from C{offset}, at
        most L{CHUNK_SIZE} characters (all ASCII) at a time.
        """
        if offset < 0:
            raise RegistryUserError(f"invalid offset {offset}")
        d = maybeDeferred(self._details, what, key).addCallback(_json)
        return d.addCallback(
            lambda text: {
                "data": text[offset : offset + CHUNK_SIZE],
                "more": offset + CHUNK_SIZE < len(text),
            }
        )

    def _details(self, what: str, key: str) -> dict[str, Any] | Deferred[dict[str, Any]]:
        state = self.registry.state
        if what == "application":
            app = state.applications.get(key)
            if app is None:
                raise NotFoundError(f"application `{key}' not found")
            return {
                "name": app.name,
                "description": app.description,
                **self._metadata(key),
                "xml": app.xml,
            }
        if what == "object":
            identity = _identity(key)
            if state.find_object(identity) is None:
                raise NotFoundError(f"object `{identity_to_string(identity)}' is not registered")
            return self._object_item(identity)
        if what == "adapter":
            if key not in state.adapters and key not in state.replica_groups:
                raise NotFoundError(f"adapter `{key}' not found")
            return self._adapter_item(key, members=True)
        if what == "registry":
            replica = self._replica(key)
            if key != self.registry.config.replica_name:
                return replica
            # this replica's own records: the digest to compare replicas by
            return self.registry.store.snapshot().addCallback(
                lambda stored: {**replica, "digest": state_digest(stored)}
            )
        if what == "server":
            return server_details(self.registry.nodes, key)
        if what == "node":
            return node_details(self.registry.nodes, key)
        raise RegistryUserError(f"unknown kind `{what}': expected one of {', '.join(KINDS)}")

    def _replica(self, name: str) -> dict[str, Any]:
        for replica in self.registry.replica_info():
            if replica["name"] == name:
                return dict(replica)
        raise NotFoundError(f"registry replica `{name}' not found")

    @AdminPing.responder
    @_guarded
    def ping(self, name: str) -> dict[str, Any]:
        return {"alive": bool(self._replica(name).get("alive"))}


def _proxy(text: str) -> Proxy:
    try:
        return proxy_from_string(text)
    except ProxyParseError as e:
        raise RegistryUserError(f"invalid proxy `{text}': {e.reason}") from None


def _object_refusal(write: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """An object write IceGrid refuses is the admin's mistake, not a bad descriptor."""

    def refused(failure: Failure) -> Failure:
        if failure.check(DeploymentException):
            return Failure(RegistryUserError(failure.value.reason))
        return failure

    return maybeDeferred(write, *args).addErrback(refused)


def _identity(text: str) -> Identity:
    try:
        return identity_from_string(text)
    except ProxyParseError as e:
        raise RegistryUserError(f"invalid identity `{text}': {e.reason}") from None


__all__ = ["KINDS", "MAX_PAGE_ITEMS", "MAX_UPLOAD_BYTES", "PAGE_BUDGET", "AdminResponder"]
