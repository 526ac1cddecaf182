# -*- test-case-name: tests.test_ice_admin -*-
"""
C{IceGrid::Admin} on the Ice wire: the object an admin session's
C{getAdmin} hands out, which C{icegridadmin} drives.

Every operation is the shared L{AdminModel}'s, so C{gridadmin} and
C{icegridadmin} see one registry; this module only decodes parameters,
encodes IceGrid's structs and says refusals as IceGrid's user exceptions.
Application descriptors and server infos are Ice classes, encoded by
L{gridreg.registry.descriptor_slice}, imported when first needed: a
registry without it refuses those operations as an older server would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    ApplicationNotExistException,
    BadSignalException,
    DeploymentException,
    NodeUnreachableException,
    ServerStartException,
    ServerStopException,
    UserException,
)
from gridreg.ice.messages import Request
from gridreg.ice.servant import Servant, operation
from gridreg.ice.stringify import proxy_to_string
from gridreg.ice.types import Identity, OperationMode, Proxy
from gridreg.protocol.errors import NodeError, NodeUnreachableError, NotFoundError
from gridreg.registry import descriptor_slice, remote
from gridreg.registry.admin_model import NODE_NOT_ACTIVE, READ_ONLY_REASON, AdminModel, ReadOnly
from gridreg.registry.descriptors import DescriptorError

if TYPE_CHECKING:
    from gridreg.registry.ice_sessions import AdminSessionServant

TRACE = "IceGrid.Registry.Trace.Admin"

#: IceGrid::ServerState, in Slice order
SERVER_STATES = (
    "inactive",
    "activating",
    "activationtimedout",
    "active",
    "deactivating",
    "destroying",
    "destroyed",
)


def write_server_state(out: OutputStream, state: str) -> None:
    """An C{IceGrid::ServerState} (an unknown state goes as C{Inactive})."""
    out.write_enum(SERVER_STATES.index(state) if state in SERVER_STATES else 0, 6)


class AdminServant(Servant):
    """C{IceGrid::Admin} for one admin session."""

    type_id = "::IceGrid::Admin"
    log = Logger()

    def __init__(self, model: AdminModel, session: Optional["AdminSessionServant"] = None):
        self.model = model
        self.session = session

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def _out(request: Request) -> OutputStream:
        return OutputStream(request.encoding)

    def _write(self, request: Request, run: Callable[[], Any]) -> Deferred[bytes]:
        """A write: IceGrid's refusals for a read-only replica and bad descriptors."""
        return maybeDeferred(run).addCallbacks(lambda _: b"", _as_ice)

    # -- applications -----------------------------------------------------------------

    @property
    def _user(self) -> str:
        """The admin session's user, recorded in the applications it writes."""
        return self.session.user if self.session is not None else ""

    @operation("addApplication")
    def add_application(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._deploy(request, params, update=False, restart=True)

    @operation("syncApplication")
    def sync_application(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._deploy(request, params, update=True, restart=True)

    @operation("syncApplicationWithoutRestart")
    def sync_application_without_restart(
        self, request: Request, params: InputStream
    ) -> Deferred[bytes]:
        return self._deploy(request, params, update=True, restart=False)

    def _deploy(
        self, request: Request, params: InputStream, update: bool, restart: bool
    ) -> Deferred[bytes]:
        """
        An add records the session's user as creator; a sync leaves the
        last updater empty, as IceGrid 3.7.8 does (measured).
        """

        def run() -> Deferred[Any]:
            self.model.require_writable()
            xml = descriptor_slice.read_application_descriptor(params)
            user = "" if update else self._user
            if update:
                name = descriptor_slice.xml_to_slice(xml).name
                if name not in self.model.registry.state.applications:
                    raise ApplicationNotExistException(name)
            return self.model.add_application(xml, update, user, restart)

        return self._write(request, run)

    @operation("updateApplication")
    def update_application(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._update(request, params, restart=True)

    @operation("updateApplicationWithoutRestart")
    def update_application_without_restart(
        self, request: Request, params: InputStream
    ) -> Deferred[bytes]:
        return self._update(request, params, restart=False)

    def _update(self, request: Request, params: InputStream, restart: bool) -> Deferred[bytes]:

        def run() -> Deferred[Any]:
            self.model.require_writable()
            update = descriptor_slice.read_application_update(params)
            return self.model.update_application(update, self._user, restart)

        return self._write(request, run)

    @operation("instantiateServer")
    def instantiate_server(self, request: Request, params: InputStream) -> Deferred[bytes]:
        """IceGrid 3.7.8 leaves the last updater empty here too (measured)."""

        def run() -> Deferred[Any]:
            self.model.require_writable()
            application = params.read_string()
            node = params.read_string()
            instance = descriptor_slice.read_server_instance(params)
            return self.model.instantiate_server(application, node, instance)

        return self._write(request, run)

    @operation("removeApplication")
    def remove_application(self, request: Request, params: InputStream) -> Deferred[bytes]:
        name = params.read_string()
        return self._write(request, lambda: self.model.remove_application(name))

    @operation("getApplicationInfo", idempotent=True)
    def get_application_info(self, request: Request, params: InputStream) -> bytes:
        name = params.read_string()
        app = self.model.registry.state.applications.get(name)
        if app is None:
            raise ApplicationNotExistException(name)
        meta = self.model.application_metadata(name)
        out = self._out(request)
        info = descriptor_slice.application_info(name, app.xml, meta)
        descriptor_slice.write_application_info(out, info)
        return out.getvalue()

    @operation("getDefaultApplicationDescriptor", idempotent=True)
    def get_default_application_descriptor(self, request: Request, params: InputStream) -> bytes:
        raise DeploymentException(
            "no default templates configured, you need to set "
            "IceGrid.Registry.DefaultTemplates in the IceGrid registry configuration."
        )

    @operation("getAllApplicationNames", idempotent=True)
    def get_all_application_names(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_string_seq(sorted(self.model.registry.state.applications))
        return out.getvalue()

    @operation("patchApplication")
    def patch_application(self, request: Request, params: InputStream) -> bytes:
        """
        Nothing to patch: gridreg deploys no IcePatch2 distributions (a
        descriptor naming one is refused when added), and IceGrid succeeds
        the same way for an application without any. icegridadmin's
        C{application add} calls this right after adding.
        """
        name = params.read_string()
        params.read_bool()  # shutdown: no server needs stopping for an empty patch
        if name not in self.model.registry.state.applications:
            raise ApplicationNotExistException(name)
        return b""

    @operation("patchServer")
    def patch_server(self, request: Request, params: InputStream) -> bytes:
        """As L{patch_application}: no distribution, nothing to patch."""
        server_id = params.read_string()
        params.read_bool()
        self.model.server(server_id)  # raises ServerNotExistException
        return b""

    # -- servers ----------------------------------------------------------------------

    @operation("getServerInfo", idempotent=True)
    def get_server_info(self, request: Request, params: InputStream) -> bytes:
        server_id = params.read_string()
        application, server = self.model.server(server_id)
        out = self._out(request)
        meta = self.model.application_metadata(application)
        descriptor_slice.write_server_info(
            out, application, meta.uuid, meta.revision, server.node, server.descriptor, ""
        )
        return out.getvalue()

    @operation("getServerState", idempotent=True)
    def get_server_state(self, request: Request, params: InputStream) -> bytes:
        state = str(self.model.server_status(params.read_string()).get("state") or "inactive")
        out = self._out(request)
        write_server_state(out, state)
        return out.getvalue()

    @operation("getServerPid", idempotent=True)
    def get_server_pid(self, request: Request, params: InputStream) -> bytes:
        pid = self.model.server_status(params.read_string()).get("pid") or 0
        out = self._out(request)
        out.write_int(int(pid))
        return out.getvalue()

    @operation("getServerAdminCategory", idempotent=True)
    def get_server_admin_category(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_string(f"{self.model.registry.config.instance_name}-RegistryServerAdminRouter")
        return out.getvalue()

    # getServerAdmin, getNodeAdmin, getRegistryAdmin: at the end (the admin routers)

    @operation("enableServer", idempotent=True)
    def enable_server(self, request: Request, params: InputStream) -> Deferred[bytes]:
        server_id = params.read_string()
        enabled = params.read_bool()
        return self._control(server_id, "enable" if enabled else "disable")

    @operation("isServerEnabled", idempotent=True)
    def is_server_enabled(self, request: Request, params: InputStream) -> bytes:
        enabled = self.model.server_status(params.read_string()).get("enabled")
        out = self._out(request)
        out.write_bool(enabled is not False)
        return out.getvalue()

    @operation("startServer")
    def start_server(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._control(params.read_string(), "start")

    @operation("stopServer")
    def stop_server(self, request: Request, params: InputStream) -> Deferred[bytes]:
        return self._control(params.read_string(), "stop")

    @operation("sendSignal")
    def send_signal(self, request: Request, params: InputStream) -> Deferred[bytes]:
        server_id = params.read_string()
        return self._control(server_id, "signal", params.read_string())

    def _control(self, server_id: str, action: str, argument: str = "") -> Deferred[bytes]:
        """Relayed to the node; its refusals said as IceGrid's exceptions."""

        def failed(failure: Failure) -> Failure:
            _, server = self.model.server(server_id)
            if failure.check(NodeUnreachableError):
                return Failure(NodeUnreachableException(server.node, NODE_NOT_ACTIVE))
            if failure.check(NodeError, NotFoundError):
                reason = failure.getErrorMessage()
                if action == "start":
                    return Failure(ServerStartException(server_id, reason))
                if action == "stop":
                    return Failure(ServerStopException(server_id, reason))
                if action == "signal":
                    return Failure(BadSignalException(reason))
                return Failure(NodeUnreachableException(server.node, reason))
            return failure

        d = maybeDeferred(self.model.control_server, server_id, action, argument)
        return d.addCallbacks(lambda _: b"", failed)

    @operation("getAllServerIds", idempotent=True)
    def get_all_server_ids(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_string_seq(self.model.server_ids())
        return out.getvalue()

    # -- adapters ---------------------------------------------------------------------

    @operation("getAdapterInfo", idempotent=True)
    def get_adapter_info(self, request: Request, params: InputStream) -> bytes:
        infos = self.model.adapter_info(params.read_string())
        out = self._out(request)
        out.write_size(len(infos))
        for adapter_id, proxy, group in infos:
            out.write_string(adapter_id)
            out.write_proxy(proxy)
            out.write_string(group)
        return out.getvalue()

    @operation("removeAdapter")
    def remove_adapter(self, request: Request, params: InputStream) -> Deferred[bytes]:
        adapter_id = params.read_string()
        return self._write(request, lambda: self.model.remove_adapter(adapter_id))

    @operation("getAllAdapterIds", idempotent=True)
    def get_all_adapter_ids(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_string_seq(self.model.adapter_ids())
        return out.getvalue()

    # -- objects ----------------------------------------------------------------------

    @operation("addObject")
    def add_object(self, request: Request, params: InputStream) -> Deferred[bytes]:
        """Without a type, IceGrid asks the object its C{ice_id}, and so do we."""
        proxy = params.read_proxy()

        def run() -> Deferred[Any]:
            self.model.require_writable()
            if proxy is None:
                raise DeploymentException("proxy is null")
            self.model._managed("adding", proxy.identity)
            registry = self.model.registry
            d = remote.call(
                registry.reactor, registry.state, proxy, "ice_id", OperationMode.NONMUTATING
            )

            def no_type(failure: Failure) -> Failure:
                if failure.check(UserException):
                    return failure
                return Failure(
                    DeploymentException(
                        f"failed to invoke ice_id() on proxy `{proxy_to_string(proxy)}':\n"
                        f"{failure.getErrorMessage() or failure.type.__name__}"
                    )
                )

            d.addCallbacks(lambda result: result.read_string(), no_type)
            return d.addCallback(lambda type_id: self.model.add_object(proxy, type_id))

        return self._write(request, run)

    @operation("addObjectWithType")
    def add_object_with_type(self, request: Request, params: InputStream) -> Deferred[bytes]:
        proxy = params.read_proxy()
        type_id = params.read_string()
        return self._write(request, lambda: self.model.add_object(proxy, type_id))

    @operation("updateObject")
    def update_object(self, request: Request, params: InputStream) -> Deferred[bytes]:
        proxy = params.read_proxy()
        return self._write(request, lambda: self.model.update_object(proxy))

    @operation("removeObject")
    def remove_object(self, request: Request, params: InputStream) -> Deferred[bytes]:
        identity = params.read_identity()
        return self._write(request, lambda: self.model.remove_object(identity))

    @operation("getObjectInfo", idempotent=True)
    def get_object_info(self, request: Request, params: InputStream) -> bytes:
        info = self.model.object_info(params.read_identity())
        out = self._out(request)
        _write_object_info(out, info.proxy, info.type)
        return out.getvalue()

    @operation("getObjectInfosByType", idempotent=True)
    def get_object_infos_by_type(self, request: Request, params: InputStream) -> bytes:
        return self._object_infos(request, self.model.objects_of_type(params.read_string()))

    @operation("getAllObjectInfos", idempotent=True)
    def get_all_object_infos(self, request: Request, params: InputStream) -> bytes:
        return self._object_infos(request, self.model.objects_matching(params.read_string()))

    def _object_infos(self, request: Request, infos: list[Any]) -> bytes:
        out = self._out(request)
        out.write_size(len(infos))
        for info in infos:
            _write_object_info(out, info.proxy, info.type)
        return out.getvalue()

    # -- nodes ------------------------------------------------------------------------

    @operation("pingNode", idempotent=True)
    def ping_node(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_bool(self.model.ping_node(params.read_string()))
        return out.getvalue()

    @operation("getNodeLoad", idempotent=True)
    def get_node_load(self, request: Request, params: InputStream) -> bytes:
        session = self.model.node_session(params.read_string())
        load = session.load
        out = self._out(request)
        for value in (load.avg1, load.avg5, load.avg15) if load else (-1.0, -1.0, -1.0):
            out.write_float(float(value))
        return out.getvalue()

    @operation("getNodeInfo", idempotent=True)
    def get_node_info(self, request: Request, params: InputStream) -> bytes:
        name = params.read_string()
        info = self.model.node_session(name).info
        out = self._out(request)
        out.write_string(name)
        for key in ("os", "hostname", "release", "version", "machine"):
            out.write_string(str(info.get(key, "")))
        out.write_int(int(info.get("nproc", 1) or 1))
        out.write_string(str(info.get("data", "")))
        return out.getvalue()

    @operation("getNodeProcessorSocketCount", idempotent=True)
    def get_node_processor_socket_count(self, request: Request, params: InputStream) -> bytes:
        info = self.model.node_session(params.read_string()).info
        out = self._out(request)
        out.write_int(int(info.get("sockets", 1) or 1))
        return out.getvalue()

    @operation("getNodeHostname", idempotent=True)
    def get_node_hostname(self, request: Request, params: InputStream) -> bytes:
        info = self.model.node_session(params.read_string()).info
        out = self._out(request)
        out.write_string(str(info.get("hostname", "")))
        return out.getvalue()

    @operation("shutdownNode")
    def shutdown_node(self, request: Request, params: InputStream) -> Deferred[bytes]:
        name = params.read_string()

        def failed(failure: Failure) -> Failure:
            if failure.check(NodeError, NodeUnreachableError):
                return Failure(NodeUnreachableException(name, failure.getErrorMessage()))
            return failure

        d = maybeDeferred(self.model.shutdown_node, name)
        return d.addCallbacks(lambda _: b"", failed)

    @operation("getAllNodeNames", idempotent=True)
    def get_all_node_names(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_string_seq(self.model.node_names())
        return out.getvalue()

    # -- registries -------------------------------------------------------------------

    @operation("pingRegistry", idempotent=True)
    def ping_registry(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_bool(self.model.ping_registry(params.read_string()))
        return out.getvalue()

    @operation("getRegistryInfo", idempotent=True)
    def get_registry_info(self, request: Request, params: InputStream) -> bytes:
        name = params.read_string()
        hostname = self.model.registry_hostname(name)
        out = self._out(request)
        out.write_string(name)
        out.write_string(hostname)
        return out.getvalue()

    @operation("shutdownRegistry", idempotent=True)
    def shutdown_registry(self, request: Request, params: InputStream) -> bytes:
        self.model.shutdown_registry(params.read_string())
        return b""

    @operation("getAllRegistryNames", idempotent=True)
    def get_all_registry_names(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_string_seq(sorted(self.model.registries()))
        return out.getvalue()

    @operation("shutdown")
    def shutdown(self, request: Request, params: InputStream) -> bytes:
        self.model.shutdown()
        return b""

    @operation("getSliceChecksums", idempotent=True)
    def get_slice_checksums(self, request: Request, params: InputStream) -> bytes:
        out = self._out(request)
        out.write_size(0)
        return out.getvalue()

    # -- the admin routers' proxies (what the IceGrid GUI asks for metrics) -------------

    def _router_proxy(self, request: Request, router: str, name: str) -> bytes:
        """
        IceGrid 3.7.8's proxy for the admin object of a server, node or
        replica: C{<instance>-Registry<router>AdminRouter/<name>} on the
        endpoints the session is served on (the client endpoints, or for a
        Glacier2 session its session manager's), served by
        L{gridreg.registry.admin_routers} on the connections of admin sessions.
        """
        registry = self.model.registry
        endpoints = self.session.endpoints if self.session is not None else None
        if endpoints is None:
            own = registry.directory.own
            endpoints = own.client if own is not None else ()
        proxy = Proxy(
            Identity(name, f"{registry.config.instance_name}-Registry{router}AdminRouter"),
            endpoints=tuple(endpoints),
        )
        out = self._out(request)
        out.write_proxy(proxy)
        return out.getvalue()

    @operation("getServerAdmin", idempotent=True)
    def get_server_admin(self, request: Request, params: InputStream) -> bytes:
        server_id = params.read_string()
        self.model.server(server_id)  # ServerNotExistException
        return self._router_proxy(request, "Server", server_id)

    @operation("getNodeAdmin", idempotent=True)
    def get_node_admin(self, request: Request, params: InputStream) -> bytes:
        name = params.read_string()
        self.model.node_session(name)  # NodeNotExistException, NodeUnreachableException
        return self._router_proxy(request, "Node", name)

    @operation("getRegistryAdmin", idempotent=True)
    def get_registry_admin(self, request: Request, params: InputStream) -> bytes:
        name = params.read_string()
        self.model.replica(name)  # RegistryNotExistException
        return self._router_proxy(request, "Replica", name)


def _write_object_info(out: OutputStream, proxy: Optional[Proxy], type_id: str) -> None:
    out.write_proxy(proxy)
    out.write_string(type_id)


def _as_ice(failure: Failure) -> Failure:
    """A write's refusal, as IceGrid's exception."""
    if failure.check(ReadOnly):
        return Failure(DeploymentException(READ_ONLY_REASON))
    if failure.check(DescriptorError):
        return Failure(DeploymentException(failure.getErrorMessage()))
    if failure.check(NotFoundError):
        return Failure(DeploymentException(failure.getErrorMessage()))
    return failure
