# -*- test-case-name: tests.test_observers -*-
"""
IceGrid's admin-session observers: what the IceGrid GUI's live view is built
from. An admin session registers up to five observers (registry, node,
application, adapter, object); each gets its initial state, then every later
change, in order, on master and slaves alike.

Changes come from the replicated state (L{RegistryState.on_mutations}: added
objects and dynamically registered adapters, applications), from node
sessions (nodes up and down, server states, the adapters servers register)
and from the replica set (replicas up and down). As IceGrid 3.7.8 does (seen
with a real registry), the object observer covers the objects added through
C{IceGrid::Admin} and the registry's own (updated as replicas come and go),
not the ones applications deploy,
and the adapter observer the dynamically registered adapters; an observer
whose call fails (an exception, a timeout, its connection closing) is
dropped and gets nothing more, while the session and its other observers
carry on.

Each event is encoded once and sent to every observer of its kind; an
observer is sent its next call when it has answered the previous one.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.encoding import OutputStream
from gridreg.ice.stringify import endpoints_to_string, identity_to_string
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode, Proxy
from gridreg.registry import descriptor_slice
from gridreg.registry.application_update import update_info
from gridreg.registry.applications import APPLICATION
from gridreg.registry.ice_admin import SERVER_STATES, write_server_state  # noqa: F401 (SERVER_STATES re-exported)
from gridreg.registry.state import ADAPTER, OBJECT, REPLICA, AdapterInfo, Mutation

if TYPE_CHECKING:
    from gridreg.registry.nodes import NodeSession

#: how long an observer may take to answer one call
OBSERVER_TIMEOUT = 30.0
#: the observer kinds, in the order setObservers names them
KINDS = ("registry", "node", "application", "adapter", "object")

Send = Callable[[str, bytes], Deferred[Any]]


# -- one observer ------------------------------------------------------------------


class ObserverLink:
    """
    One registered observer: calls go out one at a time, in order; the first
    failure drops it.

    @ivar name: the observer's identity and @ivar endpoints: where it is
        called (empty on the session's connection), as the Topic traces
        name them.
    @ivar trace: the IceGrid.Registry.Trace.Topic level (set by the hub).
    """

    log = Logger()

    def __init__(
        self,
        kind: str,
        describe: str,
        send: Send,
        close: Callable[[], None],
        name: str = "",
        endpoints: str = "",
    ) -> None:
        self.kind = kind
        self.describe = describe
        self.name = name
        self.endpoints = endpoints
        self.trace = 0
        self._send = send
        self._close = close
        self.queue: deque[tuple[str, bytes]] = deque()
        self.busy = False
        self.dead = False

    @property
    def topic(self) -> str:
        """IceGrid's name for the topic of this kind of observer."""
        return f"{self.kind.title()}Observer-1.1"

    def publish(self, operation: str, params: bytes) -> None:
        if self.dead:
            return
        self.queue.append((operation, params))
        self._pump()

    def _pump(self) -> None:
        if self.busy:
            return
        self.busy = True
        while self.queue and not self.dead:
            operation, params = self.queue.popleft()
            synchronous: list[Any] = []
            waiting = [True]

            def settled(result: Any, operation: str = operation, waiting: list = waiting) -> None:
                if waiting[0]:
                    synchronous.append(result)
                    return
                self._settled(operation, result)
                self.busy = False
                self._pump()

            maybeDeferred(self._send, operation, params).addBoth(settled)
            waiting[0] = False
            if not synchronous:
                return  # still busy: settled() goes on
            self._settled(operation, synchronous[0])
        self.busy = False

    def _settled(self, operation: str, result: Any) -> None:
        if isinstance(result, Failure) and not self.dead:
            # IceGrid 3.7.8 drops it silently at every Trace.Topic level; gridreg
            # says so from level 1 on, where IceGrid traces the subscriptions
            if self.trace > 0:
                self.log.info(
                    "[Topic] {topic}: dropping {observer}: {operation} failed: {why}",
                    topic=self.topic,
                    observer=self.describe,
                    operation=operation,
                    why=result.getErrorMessage() or result.type.__name__,
                )
            self.close()

    def close(self) -> None:
        if not self.dead:
            self.dead = True
            self.queue.clear()
            self._close()


def identity_sender(connection: Any, identity: Identity) -> Send:
    """Calls on an object the client serves on its session's connection (bidirectional)."""

    def send(operation: str, params: bytes) -> Deferred[Any]:
        return connection.call(
            identity, operation, OperationMode.NORMAL, params, timeout=OBSERVER_TIMEOUT
        )

    return send


class ProxySender:
    """Calls on an observer proxy over a connection of the registry's own, kept open."""

    def __init__(self, reactor: Any, state: Any, proxy: Proxy) -> None:
        self.reactor = reactor
        self.state = state
        self.proxy = proxy
        self._protocol: Any = None

    def _connect(self) -> Deferred[Any]:
        from gridreg.client.endpoints import ValidatedEndpoint, client_endpoint
        from gridreg.ice.client import IceClientFactory
        from gridreg.registry.remote import UnreachableError, resolve

        try:
            endpoints = resolve(self.state, self.proxy)
            dial = ValidatedEndpoint(
                client_endpoint(self.reactor, endpoints[0], None, timeout_cap=OBSERVER_TIMEOUT),
                self.reactor,
                OBSERVER_TIMEOUT,
            )
        except (UnreachableError, ValueError, IndexError) as e:
            return fail(UnreachableError(str(e) or "no endpoint"))

        def connected(protocol: Any) -> Any:
            self._protocol = protocol
            return protocol

        return dial.connect(IceClientFactory(self.reactor)).addCallback(connected)

    def __call__(self, operation: str, params: bytes) -> Deferred[Any]:
        if self._protocol is None or not self._protocol.connected:
            if self._protocol is not None:
                return fail(ConnectionError("the observer's connection was lost"))
            # calls are one at a time (ObserverLink), so one connect is in flight at most
            return self._connect().addCallback(lambda _: self(operation, params))
        return self._protocol.call(
            self.proxy.identity,
            operation,
            OperationMode.NORMAL,
            params,
            facet=self.proxy.facet,
            timeout=OBSERVER_TIMEOUT,
        )

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.close().addErrback(lambda _: None)


# -- encoding ----------------------------------------------------------------------


def _out() -> OutputStream:
    return OutputStream(ENCODING_1_1)


def _wire_proxy(out: OutputStream, field: Optional[str]) -> None:
    """A proxy as stored (its 1.1 marshaling, base64), written as is."""
    if field:
        out.write_bytes(base64.b64decode(field))
    else:
        out.write_proxy(None)


def write_node_info(out: OutputStream, name: str, info: dict[str, Any]) -> None:
    """C{IceGrid::NodeInfo}, as C{getNodeInfo} answers it."""
    out.write_string(name)
    for key in ("os", "hostname", "release", "version", "machine"):
        out.write_string(str(info.get(key, "")))
    out.write_int(int(info.get("nproc", 1) or 1))
    out.write_string(str(info.get("data", "")))


def write_server_dynamic_info(out: OutputStream, server_id: str, value: dict[str, Any]) -> None:
    state = str(value.get("state") or "inactive")
    out.write_string(server_id)
    write_server_state(out, state)
    out.write_int(int(value.get("pid") or 0))
    out.write_bool(value.get("enabled") is not False)


def write_node_dynamic_info(out: OutputStream, session: "NodeSession") -> None:
    """A node as C{nodeInit} and C{nodeUp} carry it: the servers not inactive, the live adapters."""
    write_node_info(out, session.name, session.info)
    servers = [
        (server_id, value)
        for server_id, value in sorted(session.servers.items())
        if (value.get("state") or "inactive") != "inactive"
    ]
    out.write_size(len(servers))
    for server_id, value in servers:
        write_server_dynamic_info(out, server_id, value)
    adapters = sorted(session.adapters.items())
    out.write_size(len(adapters))
    for adapter_id, info in adapters:
        out.write_string(adapter_id)
        out.write_proxy(info.proxy)


def write_adapter_info(out: OutputStream, info: AdapterInfo) -> None:
    out.write_string(info.adapter_id)
    out.write_proxy(info.proxy)
    out.write_string(info.replica_group_id)


# -- per replica --------------------------------------------------------------------


class Subscription:
    """The observers one admin session registered, by kind."""

    def __init__(self, session: Any, links: dict[str, ObserverLink]) -> None:
        self.session = session
        self.links = links

    def close(self) -> None:
        for link in self.links.values():
            link.close()


class ObserverHub:
    """
    Every observing admin session of one replica, and the hooks that feed
    them; built when the first session registers observers.
    """

    log = Logger()

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.subscriptions: dict[int, Subscription] = {}
        self._listening = False
        self._watching_replicas = False
        self._registries: list[str] = []
        #: the registry's own objects as last published
        self._builtin: dict[Identity, Any] = {}
        #: each application's descriptor as last published, for the next diff
        self._application_xml: dict[str, str] = {}

    # -- (un)subscribing ------------------------------------------------------------

    def subscribe(self, session: Any, links: dict[str, ObserverLink]) -> None:
        """Replace C{session}'s observers by C{links} and send each its initial state."""
        self.unsubscribe(session)
        self._listen()
        subscription = Subscription(session, links)
        self.subscriptions[id(session)] = subscription
        for kind, link in links.items():
            link.trace = self._trace
            self._trace_topic(link, "subscribeAndGetPublisher", " QoS: ")
            operation, params = self._initial(kind)
            link.publish(operation, params)

    def unsubscribe(self, session: Any) -> None:
        subscription = self.subscriptions.pop(id(session), None)
        if subscription is not None:
            for link in subscription.links.values():  # dropped ones too, as IceGrid
                self._trace_topic(link, "unsubscribe", "")
            subscription.close()
        if not self.subscriptions and self._listening:
            # without observers, writes cost nothing more (RegistryState.apply)
            self.registry.state.forget_mutations(self._mutations)
            self.registry.nodes.listeners.remove(self)
            self._listening = False

    @property
    def _trace(self) -> int:
        return int(getattr(self.registry.config.trace, "topic", 0))

    def _trace_topic(self, link: ObserverLink, what: str, qos: str) -> None:
        """IceGrid's Topic trace of a subscription: its endpoints (and QoS) from level 2."""
        level = self._trace
        if level > 0:
            more = f' endpoints: "{link.endpoints}"{qos}' if level > 1 else ""
            self.log.info(
                "[Topic] {topic}: {what}: {name}{more}",
                topic=link.topic,
                what=what,
                name=link.name,
                more=more,
            )

    def _listen(self) -> None:
        if self._listening:
            return
        self._listening = True
        registry = self.registry
        registry.state.on_mutations(self._mutations)
        registry.nodes.listeners.append(self)
        if not self._watching_replicas:
            self._watching_replicas = True
            registry.directory.on_active_changed(self._replicas_changed)
        self._registries = list(registry.directory.active)
        self._builtin = dict(registry.state.builtin_objects)

    def _publish(self, kind: str, operation: str, params: bytes) -> None:
        for subscription in list(self.subscriptions.values()):
            link = subscription.links.get(kind)
            if link is not None:
                link.publish(operation, params)

    def _wanted(self, kind: str) -> bool:
        return any(kind in s.links for s in self.subscriptions.values())

    # -- initial state ----------------------------------------------------------------

    def _initial(self, kind: str) -> tuple[str, bytes]:
        out = _out()
        registry = self.registry
        state = registry.state
        if kind == "registry":
            names = list(registry.directory.active)
            out.write_size(len(names))
            for name in names:
                self._write_registry_info(out, name)
            return "registryInit", out.getvalue()
        if kind == "node":
            sessions = [s for _, s in sorted(registry.nodes.sessions.items()) if not s.closed]
            out.write_size(len(sessions))
            for session in sessions:
                write_node_dynamic_info(out, session)
            return "nodeInit", out.getvalue()
        if kind == "application":
            out.write_int(int(registry.store.serial))
            self._application_xml = {n: a.xml for n, a in state.applications.items()}
            infos = [self._application_info(name) for name in sorted(self._application_xml)]
            descriptor_slice.write_application_infos(out, infos)
            return "applicationInit", out.getvalue()
        if kind == "adapter":
            adapters = [state.adapters[a] for a in sorted(state.adapters)]
            out.write_size(len(adapters))
            for info in adapters:
                write_adapter_info(out, info)
            return "adapterInit", out.getvalue()
        objects = list(state.builtin_objects.values()) + list(state.objects.values())
        out.write_size(len(objects))
        for info in objects:
            out.write_proxy(info.proxy)
            out.write_string(info.type)
        return "objectInit", out.getvalue()

    def _write_registry_info(self, out: OutputStream, name: str) -> None:
        try:
            hostname = self.registry.admin_model.registry_hostname(name)
        except Exception:  # a replica not known any more: its name is still worth showing
            hostname = ""
        out.write_string(name)
        out.write_string(hostname)

    # -- the replicated state ------------------------------------------------------------

    def _mutations(self, applied: Optional[list[tuple[Mutation, bool]]]) -> None:
        """One committed change: C{(mutation, whether its key existed)}; None: a reload."""
        if not self.subscriptions:
            return
        if applied is None:
            self._builtin = dict(self.registry.state.builtin_objects)
            for kind in ("application", "adapter", "object"):
                if self._wanted(kind):
                    self._publish(kind, *self._initial(kind))
            return
        if any(m.kind == REPLICA for m, _ in applied):
            self._builtin_changed()
        for mutation, existed in applied:
            try:
                if mutation.kind == OBJECT:
                    self._object_changed(mutation, existed)
                elif mutation.kind == ADAPTER:
                    self._adapter_changed(mutation, existed)
                elif mutation.kind == APPLICATION:
                    self._application_changed(mutation, existed)
            except Exception:  # one bad record must not stop the others' updates
                self.log.failure("Could not publish a change to the observers")

    def _object_changed(self, mutation: Mutation, existed: bool) -> None:
        out = _out()
        if mutation.value is None:
            category, name = json.loads(mutation.key)
            out.write_identity(Identity(name, category))
            self._publish("object", "objectRemoved", out.getvalue())
            return
        _wire_proxy(out, mutation.value.get("proxy"))
        out.write_string(mutation.value.get("type", ""))
        self._publish("object", "objectUpdated" if existed else "objectAdded", out.getvalue())

    def _adapter_changed(self, mutation: Mutation, existed: bool) -> None:
        out = _out()
        if mutation.value is None:
            out.write_string(mutation.key)
            self._publish("adapter", "adapterRemoved", out.getvalue())
            return
        out.write_string(mutation.key)
        _wire_proxy(out, mutation.value.get("proxy"))
        out.write_string(mutation.value.get("replica_group", ""))
        self._publish("adapter", "adapterUpdated" if existed else "adapterAdded", out.getvalue())

    def _application_changed(self, mutation: Mutation, existed: bool) -> None:
        if not self._wanted("application"):
            return
        serial = int(self.registry.store.serial)
        name = mutation.key
        if mutation.value is None:
            self._application_removed(serial, name)
        elif existed:
            self._application_updated(serial, name)
        else:
            self._application_added(serial, name)

    def _application_info(self, name: str) -> Any:
        state = self.registry.state
        return descriptor_slice.application_info(
            name, state.applications[name].xml, state.deployed.metadata[name]
        )

    def _application_removed(self, serial: int, name: str) -> None:
        self._application_xml.pop(name, None)
        out = _out()
        out.write_int(serial)
        out.write_string(name)
        self._publish("application", "applicationRemoved", out.getvalue())

    def _application_added(self, serial: int, name: str) -> None:
        app = self.registry.state.applications.get(name)
        if app is None:
            return
        self._application_xml[name] = app.xml
        out = _out()
        out.write_int(serial)
        descriptor_slice.write_application_info(out, self._application_info(name))
        self._publish("application", "applicationAdded", out.getvalue())

    def _application_updated(self, serial: int, name: str) -> None:
        """
        C{applicationUpdated} with the diff from the descriptor last
        published (what observers hold) to the stored one, as IceGrid sends.
        """
        state = self.registry.state
        app = state.applications.get(name)
        old = self._application_xml.get(name)
        if app is None or old is None:
            self._application_added(serial, name)
            return
        meta = state.deployed.metadata[name]
        info = update_info(old, app.xml, meta.update_time, meta.update_user, meta.revision)
        self._application_xml[name] = app.xml
        out = _out()
        out.write_int(serial)
        descriptor_slice.write_application_update_info(out, info)
        self._publish("application", "applicationUpdated", out.getvalue())

    # -- node sessions (called by NodeSessions) ---------------------------------------------

    def node_up(self, session: "NodeSession") -> None:
        if self._wanted("node"):
            out = _out()
            write_node_dynamic_info(out, session)
            self._publish("node", "nodeUp", out.getvalue())

    def node_down(self, name: str) -> None:
        if self._wanted("node"):
            out = _out()
            out.write_string(name)
            self._publish("node", "nodeDown", out.getvalue())

    def server_updated(self, node: str, server_id: str, value: dict[str, Any]) -> None:
        if self._wanted("node"):
            out = _out()
            out.write_string(node)
            write_server_dynamic_info(out, server_id, value)
            self._publish("node", "updateServer", out.getvalue())

    def adapter_updated(self, node: str, adapter_id: str, proxy: Optional[Proxy]) -> None:
        if self._wanted("node"):
            out = _out()
            out.write_string(node)
            out.write_string(adapter_id)
            out.write_proxy(proxy)
            self._publish("node", "updateAdapter", out.getvalue())

    # -- the replica set --------------------------------------------------------------

    def _replicas_changed(self, active: list[str]) -> None:
        before, self._registries = self._registries, list(active)
        if self._wanted("registry"):
            self._registries_changed(before, active)
        self._builtin_changed()

    def _builtin_changed(self) -> None:
        """
        The registry's own objects follow the replica set (Locator and Query
        list every active replica; each has its Registry-* objects): said as
        object additions, updates and removals, as IceGrid does.
        """
        before, now = self._builtin, dict(self.registry.state.builtin_objects)
        self._builtin = now
        if not self._wanted("object"):
            return
        for identity in before:
            if identity not in now:
                out = _out()
                out.write_identity(identity)
                self._publish("object", "objectRemoved", out.getvalue())
        for identity, info in now.items():
            if before.get(identity) != info:
                out = _out()
                out.write_proxy(info.proxy)
                out.write_string(info.type)
                operation = "objectUpdated" if identity in before else "objectAdded"
                self._publish("object", operation, out.getvalue())

    def _registries_changed(self, before: list[str], active: list[str]) -> None:
        for name in before:
            if name not in active:
                out = _out()
                out.write_string(name)
                self._publish("registry", "registryDown", out.getvalue())
        for name in active:
            if name not in before:
                out = _out()
                self._write_registry_info(out, name)
                self._publish("registry", "registryUp", out.getvalue())


def links_by_identity(
    session: Any, identities: Iterable[Identity], connection: Any
) -> dict[str, ObserverLink]:
    """The observers a session names by identity, on its own connection (null ones skipped)."""
    links = {}
    for kind, identity in zip(KINDS, identities):
        if identity.name:
            links[kind] = ObserverLink(
                kind,
                f"`{identity.category}/{identity.name}' of `{session.user}'",
                identity_sender(connection, identity),
                lambda: None,
                identity_to_string(identity),
            )
    return links


def links_by_proxy(
    session: Any, proxies: Iterable[Optional[Proxy]], reactor: Any, state: Any
) -> dict[str, ObserverLink]:
    """The observers a session names by proxy, each called over a connection of its own."""
    links = {}
    for kind, proxy in zip(KINDS, proxies):
        if proxy is not None:
            sender = ProxySender(reactor, state, proxy)
            links[kind] = ObserverLink(
                kind,
                f"`{proxy.identity.category}/{proxy.identity.name}' of `{session.user}'",
                sender,
                sender.close,
                identity_to_string(proxy.identity),
                endpoints_to_string(proxy.endpoints),
            )
    return links
