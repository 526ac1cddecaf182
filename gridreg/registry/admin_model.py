# -*- test-case-name: tests.test_ice_admin,tests.test_admin -*-
"""
What an administrator may do to a replica, whichever tool asks: C{gridadmin}
over AMP (L{gridreg.registry.admin}) and C{icegridadmin} over Ice
(L{gridreg.registry.ice_admin}) share these checks and writes, so the two
cannot drift apart.

Refusals are IceGrid's user exceptions with IceGrid 3.7.8's reasons
(measured against the real registry); each front end says them its own way.
A write asked of a replica that does not accept writes raises L{ReadOnly}
with the role's reason: the Ice front end answers it with IceGrid's
C{DeploymentException} text, the AMP one names the master.
"""

from __future__ import annotations

import fnmatch
import socket
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, fail

from gridreg.ice.exceptions import (
    AdapterNotExistException,
    ApplicationNotExistException,
    DeploymentException,
    NodeNotExistException,
    NodeUnreachableException,
    ObjectNotRegisteredException,
    RegistryNotExistException,
    RegistryUnreachableException,
    ServerNotExistException,
)
from gridreg.ice.stringify import identity_to_string
from gridreg.ice.types import Identity, Proxy
from gridreg.protocol.errors import NodeError
from gridreg.registry.state import AdapterInfo, ObjectInfo
from gridreg.store.records import Change

if TYPE_CHECKING:
    from gridreg.registry.roles import Replica

#: IceGrid's refusal of any write at a slave or a read-only master
READ_ONLY_REASON = "this operation is not allowed on a slave or read-only master registry."
#: why a node without a session here cannot be asked anything
NODE_NOT_ACTIVE = "the node is not active"
#: IceGrid 3.7.8's reason for stopping a server that is not running
ALREADY_INACTIVE = "The server is already inactive."


class ReadOnly(Exception):
    """This replica does not accept writes now; the argument says why."""


class AdminModel:
    """The admin operations of one replica, as IceGrid defines them."""

    def __init__(self, registry: "Replica") -> None:
        self.registry = registry

    @property
    def _state(self) -> Any:
        return self.registry.state

    @property
    def _instance(self) -> str:
        return str(self.registry.config.instance_name)

    # -- writes ------------------------------------------------------------------

    def require_writable(self) -> None:
        refusal = self.registry.role.write_refusal()
        if refusal is not None:
            raise ReadOnly(refusal)

    def _managed(self, verb: str, identity: Identity) -> None:
        """IceGrid keeps its own category: nobody adds, updates or removes objects in it."""
        if identity.category == self._instance:
            raise DeploymentException(
                f"{verb} object `{identity_to_string(identity)}' is not allowed:\n"
                f"objects with identity category `{self._instance}' are managed by IceGrid"
            )

    def add_object(
        self, proxy: Optional[Proxy], type_id: str, writable_checked: bool = False
    ) -> Deferred[Optional[Change]]:
        """
        @param writable_checked: the caller has just called L{require_writable}
            (the admin's add, which checks before it parses the proxy).
        """
        if not writable_checked:
            self.require_writable()
        if proxy is None:
            raise DeploymentException("proxy is null")
        if proxy.identity.category == str(self.registry.config.instance_name):
            self._managed("adding", proxy.identity)  # refused: IceGrid's own category
        # an existing object is refused by the database's write itself
        # (ObjectExistsException), against the state it validates in: a look
        # here first was a second one on every admin's add
        return self.registry.database.add_object(proxy, type_id)

    def update_object(self, proxy: Optional[Proxy]) -> Deferred[Optional[Change]]:
        self.require_writable()
        if proxy is None:
            raise DeploymentException("proxy is null")
        self._managed("updating", proxy.identity)
        return self.registry.database.update_object(proxy)

    def remove_object(self, identity: Identity) -> Deferred[Optional[Change]]:
        self.require_writable()
        self._managed("removing", identity)
        return self.registry.database.remove_object(identity)

    def remove_adapter(self, adapter_id: str) -> Deferred[Optional[Change]]:
        """
        Remove a registered adapter; for a replica group, as IceGrid does,
        take every member out of the group (the members stay registered).
        """
        self.require_writable()
        state = self._state
        application = state.application_of_adapter(adapter_id)
        if application:
            raise DeploymentException(
                f"removing adapter `{adapter_id}' is not allowed:\n"
                f"the adapter was added with the application descriptor `{application}'"
            )
        if adapter_id not in state.adapters and adapter_id in state.replica_groups:
            return Deferred.fromCoroutine(self._ungroup(adapter_id))
        if adapter_id not in state.adapters:
            raise AdapterNotExistException(adapter_id)
        return self.registry.database.remove_adapter(adapter_id)

    async def _ungroup(self, group_id: str) -> Optional[Change]:
        database, state = self.registry.database, self._state
        last: Optional[Change] = None
        for member in list(state.replica_groups.get(group_id, ())):
            info = state.adapters.get(member)
            if info is not None and info.replica_group_id == group_id:
                last = await database.set_adapter_direct_proxy(member, "", info.proxy) or last
        return last

    def add_application(
        self, xml: str, update: bool = False, user: str = "", restart: bool = True
    ) -> Deferred[Optional[Change]]:
        """
        Add application C{xml}, or with C{update} replace the deployed one
        of its name (a sync); C{user} is recorded in its metadata. Without
        C{restart}, an update that would stop a server is refused.
        """
        self.require_writable()
        check = None if restart else self._refuse_restarts
        return self.registry.database.add_application(xml, update, user, self._now_ms(), check)

    def update_application(
        self, update: Any, user: str = "", restart: bool = True
    ) -> Deferred[Optional[Change]]:
        """
        Apply an C{ApplicationUpdateDescriptor} to the deployed application
        it names, then write the result as a sync would.

        @raise ApplicationNotExistException: no such application.
        """
        from gridreg.registry.application_update import apply_update, check_templates
        from gridreg.registry.descriptor_slice import slice_to_xml, xml_to_slice

        self.require_writable()

        def make(xml: str) -> str:
            app = apply_update(xml_to_slice(xml), update)
            check_templates(app)
            return str(slice_to_xml(app))

        return self._rewrite(update.name, make, user, restart)

    def instantiate_server(
        self, application: str, node: str, instance: Any, user: str = ""
    ) -> Deferred[Optional[Change]]:
        """One more instance of a server template on C{node} (C{instantiateServer})."""
        from gridreg.registry.application_update import instantiate
        from gridreg.registry.descriptor_slice import slice_to_xml, xml_to_slice

        self.require_writable()
        return self._rewrite(
            application,
            lambda xml: str(slice_to_xml(instantiate(xml_to_slice(xml), node, instance))),
            user,
            True,
        )

    def _rewrite(
        self, name: str, make: Any, user: str, restart: bool
    ) -> Deferred[Optional[Change]]:
        if name not in self._state.applications:
            raise ApplicationNotExistException(name)
        check = None if restart else self._refuse_restarts
        return self.registry.database.update_application(name, make, user, self._now_ms(), check)

    def _now_ms(self) -> int:
        return int(self.registry.reactor.seconds() * 1000)

    def _refuse_restarts(self, old: Any, new: Any) -> None:
        from gridreg.registry.update_restarts import refuse_restarts

        nodes = self.registry.nodes

        def running(server_id: str, node: str) -> bool:
            state = nodes.server_status(server_id, node)["state"]
            return state not in ("inactive", "unknown")

        refuse_restarts(old, new, running)

    def application_metadata(self, name: str) -> Any:
        """The uuid, revision, creator and last updater of application C{name}."""
        meta = self._state.deployed.metadata.get(name)
        if meta is None:
            raise ApplicationNotExistException(name)
        return meta

    def remove_application(self, name: str) -> Deferred[Optional[Change]]:
        self.require_writable()
        if name not in self._state.applications:
            raise ApplicationNotExistException(name)
        return self.registry.database.remove_application(name)

    # -- objects -------------------------------------------------------------------

    def objects(self) -> dict[Identity, ObjectInfo]:
        """Every well-known object: added, deployed and the registry's own."""
        state = self._state
        found: dict[Identity, Any] = {}
        for identity in list(state.objects) + list(state.deployed.objects):
            info = state.find_object(identity)
            if info is not None:
                found[identity] = info
        found.update(state.builtin_objects)
        return found

    def object_info(self, identity: Identity) -> ObjectInfo:
        info = self._state.find_object(identity)
        if info is None:
            raise ObjectNotRegisteredException(identity)
        return info

    def objects_matching(self, expression: str) -> list[ObjectInfo]:
        """IceGrid's C{getAllObjectInfos}: a glob on the stringified identity, "" for all."""
        return [
            info
            for identity, info in sorted(
                self.objects().items(), key=lambda kv: identity_to_string(kv[0])
            )
            if not expression or fnmatch.fnmatchcase(identity_to_string(identity), expression)
        ]

    def objects_of_type(self, type_id: str) -> list[ObjectInfo]:
        return [info for info in self.objects_matching("") if info.type == type_id]

    # -- adapters ------------------------------------------------------------------

    def adapter_ids(self) -> list[str]:
        state = self._state
        ids = set(state.adapters) | set(state.replica_groups)
        ids |= set(state.deployed.adapters) | set(state.deployed.replica_groups)
        ids |= set(getattr(state, "live_adapters", {}))
        return sorted(ids)

    def adapter_info(self, adapter_id: str) -> list[tuple[str, Optional[Proxy], str]]:
        """
        C{(id, direct proxy, replica group)} of the adapter, or of every
        member of the replica group C{adapter_id}.
        """
        state = self._state
        info = state.adapter_info(adapter_id)
        if info is not None:
            return [(adapter_id, info.proxy, info.replica_group_id)]
        deployed = state.deployed.adapters.get(adapter_id)
        if deployed is not None:
            return [(adapter_id, None, deployed.replica_group_id)]
        if adapter_id in state.replica_groups or adapter_id in state.deployed.replica_groups:
            members: list[AdapterInfo] = state.replica_group_members(adapter_id)
            return [(m.adapter_id, m.proxy, adapter_id) for m in members]
        raise AdapterNotExistException(adapter_id)

    # -- registries ----------------------------------------------------------------

    def registries(self) -> dict[str, dict[str, Any]]:
        """
        The replicas up now: as IceGrid 3.7.8, a slave that is down is unknown
        (RegistryNotExistException) until it is back.
        """
        return {r["name"]: r for r in self.registry.replica_info() if r["alive"]}

    def replica(self, name: str) -> dict[str, Any]:
        found = self.registries().get(name)
        if found is None:
            raise RegistryNotExistException(name)
        return found

    def registry_hostname(self, name: str) -> str:
        """The host a replica runs on: this one's name, another's client host."""
        replica = self.replica(name)
        if name == self.registry.config.replica_name:
            return socket.gethostname()
        endpoints = self.registry.directory.endpoints_of(name)
        host = endpoints.client[0].host if endpoints and endpoints.client else ""
        return str(host or replica.get("client", ""))

    def ping_registry(self, name: str) -> bool:
        return bool(self.replica(name).get("alive"))

    def shutdown_registry(self, name: str) -> None:
        self.replica(name)
        if name != self.registry.config.replica_name:
            raise RegistryUnreachableException(
                name, "gridreg shuts down only the replica the admin session is attached to"
            )
        self.shutdown()

    def shutdown(self) -> None:
        """Stop this replica's process, after the reply has gone out."""
        reactor = self.registry.reactor
        if getattr(reactor, "running", False):
            reactor.callLater(0.1, reactor.stop)

    # -- nodes ---------------------------------------------------------------------

    def node_names(self) -> list[str]:
        from gridreg.registry.node_admin import node_listing

        return node_listing(self.registry.nodes)[0]

    def node_known(self, name: str) -> bool:
        return name in self.node_names()

    def node_session(self, name: str) -> Any:
        """The node's session here; unknown and inactive nodes are refused as IceGrid does."""
        if not self.node_known(name):
            raise NodeNotExistException(name)
        session = self.registry.nodes.sessions.get(name)
        if session is None or session.closed:
            raise NodeUnreachableException(name, NODE_NOT_ACTIVE)
        return session

    def ping_node(self, name: str) -> bool:
        try:
            self.node_session(name)
        except NodeUnreachableException:
            return False
        return True

    # -- servers -------------------------------------------------------------------

    def server_ids(self) -> list[str]:
        from gridreg.registry.node_admin import server_listing

        return server_listing(self.registry.nodes)[0]

    def server(self, server_id: str) -> tuple[str, Any]:
        found = self.registry.nodes.server(server_id)
        if found is None:
            raise ServerNotExistException(server_id)
        return found

    def server_status(self, server_id: str) -> dict[str, Any]:
        """
        What the server's node reports of it: as IceGrid, a server whose
        node has no session here cannot be asked about.
        """
        _, server = self.server(server_id)
        if server.node not in self.registry.nodes.sessions:
            raise NodeUnreachableException(server.node, NODE_NOT_ACTIVE)
        return dict(self.registry.nodes.server_status(server_id, server.node))

    def control_server(self, server_id: str, action: str, argument: str = "") -> Deferred[Any]:
        """
        Relay C{action} (start, stop, enable, disable, signal) to the
        server's node over its session here: it works at a slave too, and
        nothing is written. Fails with the node's L{NodeError} when the node refuses.
        """
        from gridreg.protocol.node_commands import (
            ActivateServer,
            EnableServer,
            SignalServer,
            StopServer,
        )
        from gridreg.registry.activation import DEFAULT_ACTIVATION_TIMEOUT
        from gridreg.registry.nodes import MARGIN

        _, server = self.server(server_id)
        nodes = self.registry.nodes
        node = server.node
        if node not in nodes.sessions:
            raise NodeUnreachableException(node, NODE_NOT_ACTIVE)
        descriptor = server.descriptor
        if action == "start":
            timeout = (descriptor.activation_timeout or DEFAULT_ACTIVATION_TIMEOUT) + MARGIN
            return nodes.call(node, ActivateServer, timeout, server=server_id)
        if action == "stop":
            if nodes.server_status(server_id, node)["state"] == "inactive":
                # IceGrid 3.7.8: ServerStopException, "The server is already inactive."
                return fail(NodeError(ALREADY_INACTIVE))
            timeout = (descriptor.deactivation_timeout or DEFAULT_ACTIVATION_TIMEOUT) + MARGIN
            return nodes.call(node, StopServer, timeout, server=server_id)
        if action in ("enable", "disable"):
            return nodes.call(
                node, EnableServer, nodes.timeout, server=server_id, enabled=action == "enable"
            )
        if action == "signal":
            return nodes.call(node, SignalServer, nodes.timeout, server=server_id, signal=argument)
        d: Deferred[Any] = Deferred()
        d.callback(None)
        return d

    def shutdown_node(self, name: str) -> Deferred[Any]:
        from gridreg.protocol.node_commands import ShutdownNode

        self.node_session(name)
        nodes = self.registry.nodes
        return nodes.call(name, ShutdownNode, nodes.timeout)
