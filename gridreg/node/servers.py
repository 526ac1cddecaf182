# -*- test-case-name: tests.test_node_servers,tests.test_node_server_processes -*-
"""
The servers of one node: what the node's replica sessions call
(L{gridreg.protocol.node_commands}) to deploy, start, stop, enable and
signal them, and what they push back as the node's live state.

Every change of a server's state, pid or enabled flag and of a registered
adapter reaches C{on_live_state} synchronously, before any Deferred that
the change completes fires: a replica learns a server is active (and its
endpoints) before it answers the activation.

A node that was SIGKILLed leaves its servers running. L{ServerManager.start}
finds them from their pid records (pid plus the process's start time, so a
reused pid is never taken for one) and I{stops} them before starting
anything: it cannot adopt them, because they are not its children (no exit
status, no output files reopened) and the registry forgot their adapters
with the old node session. IceGrid 3.7 starts a second copy instead; we
never run two.
"""

from __future__ import annotations

import signal as _signal
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.types import OperationMode, Proxy
from gridreg.node import live_update
from gridreg.node.activator import (
    Host,
    ProcReader,
    ReactorSpawner,
    Spawner,
    parse_signal,
    read_pid_records,
    remove_pid_record,
)
from gridreg.node.admin import admin_endpoints
from gridreg.node.config import NodeConfig
from gridreg.node.server import ManagedServer, ServerEnvironment
from gridreg.node.server_config import node_variables
from gridreg.protocol.errors import NodeError, NotFoundError
from gridreg.protocol.node_commands import NOT_OWNED
from gridreg.registry.descriptor_model import ServerDescriptor

__all__ = ["ServerManager", "shutdown_process"]

LiveStateCallback = Callable[[dict[str, Any], dict[str, Any]], None]
#: C{setProperties} on a server's admin object (L{live_update.set_properties})
SetProperties = Callable[[Optional[Proxy], dict[str, str]], Deferred[None]]

#: how often a leftover server (not our child) is checked for having exited
LEFTOVER_POLL_INTERVAL = 0.1


def shutdown_process(reactor: Any, proxy: Proxy, timeout: float) -> Deferred[None]:
    """
    Call C{Ice::Process::shutdown} on C{proxy} (its first tcp endpoint),
    within C{timeout} seconds for the connection and the reply.
    """
    from gridreg.registry.remote import call_direct

    endpoints = admin_endpoints(proxy)
    if not endpoints:
        return fail(NodeError("the server's process proxy has no tcp endpoint"))
    d = call_direct(reactor, endpoints, proxy, "shutdown", OperationMode.NORMAL, b"", timeout)
    return d.addCallback(lambda _: None)


class ServerManager:
    """The node's set of servers (see the module docstring)."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: NodeConfig,
        on_live_state: LiveStateCallback,
        spawner: Optional[Spawner] = None,
        clock: Optional[IReactorTime] = None,
        *,
        host: Optional[Host] = None,
        proc: Optional[ProcReader] = None,
        process_shutdown: Optional[Callable[[Proxy, float], Deferred[None]]] = None,
        set_properties: Optional[SetProperties] = None,
    ) -> None:
        self.config = config
        self.clock: IReactorTime = clock if clock is not None else reactor
        self._on_live_state = on_live_state
        self._proc = proc or ProcReader()
        self.env = ServerEnvironment(
            clock=self.clock,
            config=config,
            spawner=spawner if spawner is not None else ReactorSpawner(reactor),
            host=host or Host(),
            proc=self._proc,
            shutdown_process=process_shutdown or (lambda p, t: shutdown_process(reactor, p, t)),
            variables=node_variables(config),
        )
        self._set_properties = set_properties or (
            lambda admin, changes: live_update.set_properties(reactor, admin, changes)
        )
        self._servers: dict[str, ManagedServer] = {}
        self._supervising = False
        self._stopping = False
        self._pending: list[Deferred[Any]] = []
        self._destroying: dict[str, Deferred[None]] = {}
        #: session server id to the client session owning it (the master says)
        self._owners: dict[str, str] = {}

    # -- deployment ----------------------------------------------------------

    def deploy(
        self, entries: list[tuple[str, ServerDescriptor]], live: frozenset[str] = frozenset()
    ) -> Deferred[None]:
        """
        Make this node's servers those of C{entries}: new ones are added
        (C{always} ones started), running ones whose descriptor changed are
        stopped (C{always} ones restarted), the others are stopped and
        destroyed. Fires once taken in.

        @param live: the servers written without restart: an active one whose
            properties alone changed takes them at run time instead.
        """
        wanted = {descriptor.id: (app, descriptor) for app, descriptor in entries}
        for server_id in [s for s in self._servers if s not in wanted]:
            self._destroy(self._servers.pop(server_id))
        for server_id, (app, descriptor) in wanted.items():
            server = self._servers.get(server_id)
            if server is None:
                server = ManagedServer(app, descriptor, self.env, self._notify)
                server.supervised = self._supervising
                self._servers[server_id] = server
                self._notify({server_id: server.entry()}, {})
                if server_id in self._destroying:
                    self._after_destroyed(server_id, server.start_if_always)
                else:
                    server.start_if_always()
            elif (server.application, server.descriptor) != (app, descriptor):
                if server_id not in live or not self._update_live(server, app, descriptor):
                    self._replace(server, app, descriptor)
        return succeed(None)

    def _update_live(self, server: ManagedServer, app: str, descriptor: ServerDescriptor) -> bool:
        """
        Give an active server its changed properties through its admin
        object, as IceGrid 3.7.8's node does for an update without restart;
        False when that cannot be done (not active, or more than properties
        changed), for the caller to stop it instead.
        """
        if server.state != "active" or not live_update.properties_only_changed(
            server.descriptor, descriptor
        ):
            return False
        before = server.effective
        server.update_properties(app, descriptor)
        changes = live_update.property_changes(before, server.effective, self.config)
        trace = self.config.trace.server > 0
        if trace:
            self.log.info(
                "[Server] updating runtime properties for server `{server}'", server=server.id
            )

        def updated(_: None) -> None:
            if trace:
                self.log.info(
                    "[Server] updated runtime properties for server `{server}'", server=server.id
                )

        def failed(failure: Failure) -> None:
            self.log.warn(
                "[Server] server `{server}' did not take its new properties: {error}",
                server=server.id,
                error=failure.getErrorMessage(),
            )

        self._track(self._set_properties(server.admin_proxy, changes).addCallbacks(updated, failed))
        return True

    def _replace(self, server: ManagedServer, app: str, descriptor: ServerDescriptor) -> None:
        """
        A changed descriptor: applied at once when stopped, else once the
        server has stopped. As IceGrid 3.7.8's node, only an C{always} server
        is started again; the others wait for a start or a locate.
        """
        if server.state == "inactive" and not server.pid:
            server.update(app, descriptor)
            server.start_if_always()
            return
        supervised = server.supervised
        server.supervised = False

        def restart(_: None) -> Optional[Deferred[int]]:
            if self._servers.get(server.id) is not server:
                return None
            server.update(app, descriptor)
            server.supervised = supervised and not self._stopping
            if not server.enabled or self._stopping or server.descriptor.activation != "always":
                return None
            return server.activate().addErrback(restart_failed)

        def restart_failed(failure: Failure) -> None:
            self.log.warn(
                "[Server] server `{server}' did not restart with its new descriptor: {error}",
                server=server.id,
                error=failure.getErrorMessage(),
            )

        self._track(server.halt().addCallback(restart))

    def _destroy(self, server: ManagedServer) -> None:
        """
        Stop and forget C{server}. Until its process is gone, a server
        deployed again under its id waits: never two copies of one server.
        """
        d = server.destroy()
        self._destroying[server.id] = d
        self._owners.pop(server.id, None)  # its allocation ended with its application

        def gone(_: None) -> None:
            if self._destroying.get(server.id) is d:
                del self._destroying[server.id]

        d.addCallback(gone)
        self._track(d)

    def _after_destroyed(self, server_id: str, action: Callable[[], Any]) -> Deferred[Any]:
        """C{action}'s result once the old server under C{server_id} is gone."""
        waiter: Deferred[None] = Deferred()
        self._destroying[server_id].addCallback(lambda r: (waiter.callback(None), r)[1])
        return waiter.addCallback(lambda _: action())

    def _track(self, d: Deferred[Any]) -> None:
        self._pending.append(d)

        def done(result: object) -> object:
            self._pending.remove(d)
            return result

        d.addBoth(done)

    # -- control -------------------------------------------------------------

    def _get(self, server_id: str) -> ManagedServer:
        server = self._servers.get(server_id)
        if server is None:
            raise NotFoundError(
                f"server `{server_id}' is not deployed on node `{self.config.name}'"
            )
        return server

    def activate(self, server_id: str) -> Deferred[int]:
        """The pid once the server is active; L{NodeError} why not, L{NotFoundError} if unknown."""
        if server_id in self._destroying and server_id in self._servers:
            return self._after_destroyed(server_id, lambda: self.activate(server_id))
        return self._get_deferred(server_id, self._activate_owned)

    def _activate_owned(self, server: ManagedServer) -> Deferred[int]:
        # A session server runs only for the client session that holds it.
        if server.descriptor.activation == "session" and server.id not in self._owners:
            return fail(NodeError(NOT_OWNED))
        return server.activate()

    def set_session(self, server_id: str, session: str) -> Deferred[None]:
        """
        The client session owning session server C{server_id} (C{""}: none,
        and a running one is stopped: fires once it has exited). Kept for a
        server not deployed here yet.
        """
        if session:
            self._owners[server_id] = session
            return succeed(None)
        self._owners.pop(server_id, None)
        server = self._servers.get(server_id)
        if server is None or server.descriptor.activation != "session":
            return succeed(None)
        return server.stop()

    def stop(self, server_id: str) -> Deferred[None]:
        """Fires once the server's process has exited (or at once if none ran)."""
        return self._get_deferred(server_id, lambda s: s.stop())

    def _get_deferred(
        self, server_id: str, action: Callable[[ManagedServer], Deferred[Any]]
    ) -> Deferred[Any]:
        try:
            server = self._get(server_id)
        except NotFoundError as exc:
            return fail(exc)
        return action(server)

    def enable(self, server_id: str, enabled: bool) -> None:
        self._get(server_id).enable(enabled)

    def signal(self, server_id: str, signal: str) -> None:
        """@raise NodeError: bad signal name, or the server is not running."""
        server = self._get(server_id)
        server.signal(parse_signal(signal))

    def adapter_registered(
        self, adapter_id: str, replica_group: str, proxy: Optional[Proxy]
    ) -> None:
        """@raise NotFoundError: no server of this node declares C{adapter_id}."""
        for server in self._servers.values():
            if server.owns(adapter_id):
                server.adapter_registered(adapter_id, replica_group, proxy)
                return
        raise NotFoundError(
            f"adapter `{adapter_id}' belongs to no server of node `{self.config.name}'"
        )

    def process_registered(self, server_id: str, proxy: Proxy) -> None:
        self._get(server_id).process_registered(proxy)

    def admin_proxy(self, server_id: str) -> Proxy:
        """
        The running server's admin object, default facet.

        @raise NotFoundError: unknown server.
        @raise NodeError: it is not running, or registered no admin object.
        """
        proxy = self._get(server_id).admin_proxy
        if proxy is None:
            raise NodeError(f"server `{server_id}' has no admin object: it is not running")
        return proxy

    # -- live state ------------------------------------------------------------

    def live_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        servers = {sid: s.entry() for sid, s in self._servers.items()}
        adapters: dict[str, Any] = {}
        for s in self._servers.values():
            adapters.update(s.adapters())
        return servers, adapters

    def always_servers(self) -> dict[str, Any]:
        """The servers with C{always} activation, by id (for IceGrid.Node.PrintServersReady)."""
        return {sid: s for sid, s in self._servers.items() if s.descriptor.activation == "always"}

    def effective_descriptor(self, server_id: str) -> ServerDescriptor:
        """The descriptor server C{server_id} runs with, node variables substituted (log files)."""
        return self._get(server_id).effective

    def server_info(self, server_id: str) -> dict[str, Any]:
        """@raise NotFoundError: unknown server."""
        return self._get(server_id).info()

    def _notify(self, servers: dict[str, Any], adapters: dict[str, Any]) -> None:
        for server_id, entry in servers.items():
            current = self._servers.get(server_id)
            if entry["state"] == "destroyed" and current is not None:
                # the id was deployed again while its old process stopped
                servers[server_id] = current.entry()
        if servers or adapters:
            self._on_live_state(servers, adapters)

    # -- node start and stop ---------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Stop whatever a previous run of this node left running (see the
        module docstring), then start the C{always} servers.
        """

        async def run() -> None:
            stops = []
            for server_id, pid, start_time in read_pid_records(self.config.data_dir):
                stops.append(self._stop_leftover(server_id, pid, start_time))
            if stops:
                await DeferredList(stops)
            self._supervising = True
            for server in list(self._servers.values()):
                server.supervised = True
                server.start_if_always()

        return Deferred.fromCoroutine(run())

    def _stop_leftover(self, server_id: str, pid: int, start_time: str) -> Deferred[None]:
        """SIGTERM, SIGKILL after the deactivation timeout, polling /proc until it is gone."""

        def same() -> bool:
            return self._proc.start_time(pid) == start_time

        def done(_: object = None) -> None:
            remove_pid_record(self.config.data_dir, server_id)

        if not same():
            done()
            return succeed(None)
        server = self._servers.get(server_id)
        timeout = float(
            (server.descriptor.deactivation_timeout if server else 0) or self.config.wait_time
        )
        self.log.warn(
            "[Server] stopping server `{server}' (pid {pid}), left running by the node's last run",
            server=server_id,
            pid=pid,
        )
        self._kill(pid, _signal.SIGTERM)
        deadline = self.clock.seconds() + timeout
        finished: Deferred[None] = Deferred()
        killed = [False]

        def poll() -> None:
            if not same():
                loop.stop()
                return
            if not killed[0] and self.clock.seconds() >= deadline:
                killed[0] = True
                self.log.warn(
                    "[Server] server `{server}' (pid {pid}) did not stop in {timeout} s: SIGKILL",
                    server=server_id,
                    pid=pid,
                    timeout=timeout,
                )
                self._kill(pid, _signal.SIGKILL)

        loop = LoopingCall(poll)
        loop.clock = self.clock  # type: ignore[misc]
        loop.start(LEFTOVER_POLL_INTERVAL, now=False).addCallback(done).chainDeferred(finished)
        return finished

    def _kill(self, pid: int, number: int) -> None:
        try:
            self._proc.kill(pid, number)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            self.log.warn("[Server] cannot signal pid {pid}: {error}", pid=pid, error=str(exc))

    def stop_all(self) -> Deferred[None]:
        """
        Stop every server (the node stops): none restarts. Bounded by the
        longest deactivation timeout, after which SIGKILL has been sent.
        """
        self._stopping = True
        self._supervising = False
        stops = [server.halt() for server in self._servers.values()]
        stops.extend(self._pending)
        return DeferredList(stops, consumeErrors=True).addCallback(lambda _: None)
