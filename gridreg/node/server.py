# -*- test-case-name: tests.test_node_servers,tests.test_node_server_processes -*-
"""
One server a node manages: its process, its registered adapters, and what
IceGrid's node does when it starts, stops, crashes or is disabled.

A server is I{active} once its process runs and every adapter declared with
C{server-lifetime} has registered its endpoints. An C{always} server is
restarted after every exit, with a delay doubling from 1 s to 60 s that
starts over once it stayed up 60 s. A crash is logged with the exit status or
signal and may disable the server (C{IceGrid.Node.DisableOnFailure}).

Stopping asks the server's C{Ice::Process} to C{shutdown} when it registered
one, else (or when that fails) sends SIGTERM; SIGKILL follows after the
deactivation timeout.
"""

from __future__ import annotations

import os
import shutil
import signal as _signal
from typing import Any, Callable, Optional

import attrs

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IProcessTransport, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.ice.types import Proxy
from gridreg.node._server_machine import (
    ACTIVATING,
    ACTIVE,
    DEACTIVATING,
    DESTROYED,
    INACTIVE,
    build_server_machine,
)
from gridreg.node.activator import (
    Host,
    ProcReader,
    Spawner,
    close_fds,
    output_fds,
    remove_pid_record,
    resolve_executable,
    run_as,
    signal_name,
    write_pid_record,
)
from gridreg.node.config import NodeConfig
from gridreg.node.server_config import server_dir, substitute_node_variables, write_config
from gridreg.protocol.errors import NodeError
from gridreg.registry.descriptor_model import ServerDescriptor
from gridreg.registry.state import encode_proxy_field

__all__ = ["ManagedServer", "ServerEnvironment", "RESTART_DELAY_MAX"]

#: the first delay before an C{always} server is started again, seconds
RESTART_DELAY_MIN = 1.0
#: the longest delay; also how long it must stay up for the delay to start over
RESTART_DELAY_MAX = 60.0

Notify = Callable[[dict[str, Any], dict[str, Any]], None]
ShutdownProcess = Callable[[Proxy, float], "Deferred[None]"]


@attrs.define(eq=False)
class ServerEnvironment:
    """What every server of one node shares."""

    clock: IReactorTime
    config: NodeConfig
    spawner: Spawner
    host: Host
    proc: ProcReader
    shutdown_process: ShutdownProcess
    variables: dict[str, str]


class _ServerProcess(ProcessProtocol):
    """Tells its server when its process ended; output goes to files, not here."""

    def __init__(self, server: "ManagedServer") -> None:
        self.server = server

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 (Twisted's name)
        self.server._process_ended(reason)


def _exit_description(reason: Failure) -> tuple[bool, str]:
    """(whether it failed, how it ended in words)."""
    code = getattr(reason.value, "exitCode", None)
    sig = getattr(reason.value, "signal", None)
    if sig is not None:
        return True, f"signal {signal_name(sig)}"
    if code:
        return True, f"exit status {code}"
    return False, "exit status 0"


class ManagedServer:
    """
    A deployed server of this node.

    @ivar supervised: whether C{always} activation applies: false until the
        node has dealt with a previous run's leftovers, and once it stops.
    """

    log = Logger()

    def __init__(
        self, application: str, descriptor: ServerDescriptor, env: ServerEnvironment, notify: Notify
    ) -> None:
        self.env = env
        self.notify = notify
        self.application = application
        self.descriptor = descriptor
        self._effective = self._substituted(descriptor)
        self.enabled = True
        self.supervised = False
        self.pid: Optional[int] = None
        self._machine = build_server_machine(env.clock)
        self._process: Optional[IProcessTransport] = None
        self._process_proxy: Optional[Proxy] = None
        self._registered: dict[str, tuple[str, Proxy]] = {}
        self._activation_waiters: list[Deferred[int]] = []
        self._stop_waiters: list[Deferred[None]] = []
        self._activation_call: Optional[IDelayedCall] = None
        self._kill_call: Optional[IDelayedCall] = None
        self._restart_call: Optional[IDelayedCall] = None
        self._enable_call: Optional[IDelayedCall] = None
        self._restart_delay = RESTART_DELAY_MIN
        self._started_at = 0.0

    # -- what the manager reads ----------------------------------------------

    @property
    def id(self) -> str:
        return self.descriptor.id

    @property
    def effective(self) -> ServerDescriptor:
        """The descriptor with the node's variables substituted: what the server runs with."""
        return self._effective

    @property
    def state(self) -> str:
        return self._machine.state()

    def entry(self) -> dict[str, Any]:
        """This server in node live state's shape."""
        return {"state": self.state, "pid": self.pid, "enabled": self.enabled}

    @property
    def admin_proxy(self) -> Optional[Proxy]:
        """The admin object the running server registered (C{setServerProcessProxy}), if any."""
        return self._process_proxy

    def info(self) -> dict[str, Any]:
        return {"server": self.id, "application": self.application, **self.entry()}

    def adapters(self) -> dict[str, dict[str, str]]:
        """The adapters it registered, in node live state's shape."""
        return {
            aid: {"proxy": encode_proxy_field(proxy), "replica_group": group}
            for aid, (group, proxy) in self._registered.items()
        }

    def owns(self, adapter_id: str) -> bool:
        return any(a.id == adapter_id for a in self._effective.adapters)

    # -- activation ----------------------------------------------------------

    def activate(self) -> Deferred[int]:
        """Fires with the pid once active; one start shared by every caller."""
        state = self.state
        if state == DESTROYED:
            return fail(NodeError(f"server `{self.id}' was removed from this node"))
        if not self.enabled:
            return fail(NodeError(f"server `{self.id}' is disabled"))
        if state == ACTIVE:
            assert self.pid is not None
            return succeed(self.pid)
        if state == DEACTIVATING:
            return self.when_stopped().addCallback(lambda _: self.activate())
        d: Deferred[int] = Deferred()
        self._activation_waiters.append(d)
        if state == INACTIVE:
            self._spawn()
        return d

    def _lifetime_adapters(self) -> set[str]:
        return {a.id for a in self._effective.adapters if a.server_lifetime}

    def _spawn(self) -> None:
        self._cancel("_restart_call")
        config, host, desc = self.env.config, self.env.host, self._effective
        fds: dict[int, Any] = {}
        try:
            uid, gid = run_as(desc, config.allow_running_as_root, host)
            cwd = desc.pwd or host.cwd()
            executable = resolve_executable(desc.exe, cwd, host)
            path = write_config(desc, config, self.env.clock.seconds(), uid)
            fds = output_fds(config.output_dir, self.id, config.redirect_err_to_out)
            if uid is not None:
                # the server reopens them itself (Ice.StdOut, Ice.StdErr)
                for fd in {v for k, v in fds.items() if v > 2}:
                    os.fchown(fd, uid, gid if gid is not None else -1)
            fds[0] = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except (NodeError, OSError) as exc:
            close_fds(fds)
            self._activation_failed(f"cannot start server `{self.id}': {exc}")
            return
        args = [desc.exe, *desc.options, f"--Ice.Config={path}"]
        environment = dict(host.environ)
        for entry in desc.envs:
            name, sep, value = entry.partition("=")
            if sep and name:
                environment[name] = value
        self._trace(
            "activator",
            1,
            "[Activator] activating server `{server}': path = {path}, pwd = {pwd}, args = {args}",
            path=executable,
            pwd=cwd,
            args=" ".join(args),
        )
        self._machine.start()
        try:
            transport = self.env.spawner.spawn(
                _ServerProcess(self), executable, args, environment, cwd, uid, gid, fds
            )
        except (OSError, ValueError, TypeError) as exc:
            self._machine.exited()
            self._activation_failed(f"cannot start server `{self.id}': {exc}")
            return
        finally:
            close_fds(fds)
        self._process = transport
        self.pid = transport.pid
        self._started_at = self.env.clock.seconds()
        try:
            write_pid_record(
                config.data_dir, self.id, transport.pid, self.env.proc.start_time(transport.pid)
            )
        except OSError as exc:
            self.log.warn(
                "[Server] cannot record the pid of server `{server}': {error}",
                server=self.id,
                error=str(exc),
            )
        self._trace(
            "server",
            1,
            "[Server] changed server `{server}' state to `Activating' (pid {pid})",
            pid=self.pid,
        )
        if not self._lifetime_adapters() - set(self._registered):
            self.notify({self.id: self.entry()}, {})
            self._become_active({})
            return
        self.notify({self.id: self.entry()}, {})
        timeout = desc.activation_timeout or config.wait_time
        self._activation_call = self.env.clock.callLater(
            timeout, self._activation_timed_out, timeout
        )

    def _activation_failed(self, reason: str) -> None:
        self.log.warn("[Server] {reason}", server=self.id, reason=reason)
        self.notify({self.id: self.entry()}, {})
        self._fail_activation(reason)

    def _fail_activation(self, reason: str) -> None:
        waiters, self._activation_waiters = self._activation_waiters, []
        for d in waiters:
            d.errback(NodeError(reason))

    def _become_active(self, adapters_delta: dict[str, Any]) -> None:
        """Active: live state first (with the adapters), then the activation waiters."""
        self._cancel("_activation_call")
        self._machine.ready()
        self._trace("server", 1, "[Server] changed server `{server}' state to `Active'")
        self.notify({self.id: self.entry()}, adapters_delta)
        waiters, self._activation_waiters = self._activation_waiters, []
        for d in waiters:
            d.callback(self.pid)

    def _activation_timed_out(self, timeout: float) -> None:
        self._activation_call = None
        missing = sorted(self._lifetime_adapters() - set(self._registered))
        reason = (
            f"server `{self.id}' activation timed out after {timeout:g} s: "
            f"adapters not registered: {', '.join(missing)}"
        )
        self.log.warn("[Server] {reason}", server=self.id, reason=reason)
        self._fail_activation(reason)
        self.stop()

    # -- registrations ---------------------------------------------------------

    def adapter_registered(
        self, adapter_id: str, replica_group: str, proxy: Optional[Proxy]
    ) -> None:
        if proxy is None:
            self._registered.pop(adapter_id, None)
            delta = {adapter_id: {"proxy": "", "replica_group": replica_group}}
        else:
            self._registered[adapter_id] = (replica_group, proxy)
            delta = {
                adapter_id: {"proxy": encode_proxy_field(proxy), "replica_group": replica_group}
            }
        self._trace(
            "adapter",
            1,
            "[Adapter] server `{server}' adapter `{adapter_id}' {what}",
            adapter_id=adapter_id,
            what="registered" if proxy else "unregistered",
        )
        if self.state == ACTIVATING and not self._lifetime_adapters() - set(self._registered):
            self._become_active(delta)
        else:
            self.notify({}, delta)

    def process_registered(self, proxy: Proxy) -> None:
        self._process_proxy = proxy

    # -- stopping ------------------------------------------------------------

    def when_stopped(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self._process is None:
            d.callback(None)
        else:
            self._stop_waiters.append(d)
        return d

    def stop(self) -> Deferred[None]:
        """Fires once the process has exited (at once if none runs)."""
        state = self.state
        if state in (INACTIVE, DESTROYED) or self._process is None:
            return succeed(None)
        d = self.when_stopped()
        if state == DEACTIVATING:
            return d
        self._machine.stop()
        self._trace("server", 1, "[Server] changed server `{server}' state to `Deactivating'")
        self.notify({self.id: self.entry()}, {})
        self._cancel("_activation_call")
        self._fail_activation(f"server `{self.id}' was stopped during its activation")
        timeout = float(self._effective.deactivation_timeout or self.env.config.wait_time)
        self._kill_call = self.env.clock.callLater(timeout, self._kill, timeout)
        proxy = self._process_proxy
        if proxy is None:
            self._send(_signal.SIGTERM)
        else:
            self._trace("server", 2, "[Server] asking server `{server}' to shut down")
            self.env.shutdown_process(proxy, timeout / 2).addErrback(self._shutdown_failed)
        return d

    def _shutdown_failed(self, failure: Failure) -> None:
        if self._process is None:
            return
        self._trace(
            "server",
            1,
            "[Server] server `{server}' shutdown failed ({error}): sending SIGTERM",
            error=failure.getErrorMessage(),
        )
        self._send(_signal.SIGTERM)

    def _kill(self, timeout: float) -> None:
        self._kill_call = None
        self.log.warn(
            "[Server] server `{server}' did not stop within {timeout} s: sending SIGKILL",
            server=self.id,
            timeout=timeout,
        )
        self._send(_signal.SIGKILL)

    def signal(self, number: int) -> None:
        """@raise NodeError: the server is not running."""
        if self._process is None:
            raise NodeError(f"server `{self.id}' is not running")
        self._trace(
            "activator",
            1,
            "[Activator] sent signal {sig} to server `{server}'",
            sig=signal_name(number),
        )
        self._send(number)

    def _send(self, number: int) -> None:
        if self._process is None:
            return
        try:
            self._process.signalProcess(number)
        except (ProcessExitedAlready, OSError):
            pass

    def _process_ended(self, reason: Failure) -> None:
        expected = self.state == DEACTIVATING
        failed, how = _exit_description(reason)
        self._cancel("_activation_call")
        self._cancel("_kill_call")
        self._process = None
        self._process_proxy = None
        pid, self.pid = self.pid, None
        remove_pid_record(self.env.config.data_dir, self.id)
        adapters = {
            aid: {"proxy": "", "replica_group": g} for aid, (g, _) in self._registered.items()
        }
        self._registered.clear()
        self._machine.exited()
        if failed and not expected:
            self.log.warn(
                "[Server] server `{server}' (pid {pid}) terminated abnormally: {how}",
                server=self.id,
                pid=pid,
                how=how,
            )
            self._disable_after_failure()
        else:
            self._trace(
                "activator",
                1,
                "[Activator] detected termination of server `{server}' (pid {pid}): {how}",
                pid=pid,
                how=how,
            )
        self._trace("server", 1, "[Server] changed server `{server}' state to `Inactive'")
        self.notify({self.id: self.entry()}, adapters)
        self._fail_activation(f"server `{self.id}' terminated during its activation: {how}")
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)
        self._schedule_restart(self.env.clock.seconds() - self._started_at)

    # -- enabling, restarting ------------------------------------------------

    def _disable_after_failure(self) -> None:
        seconds = self.env.config.disable_on_failure
        if seconds == 0:
            return
        self.enabled = False
        if seconds > 0:
            self._cancel("_enable_call")
            self._enable_call = self.env.clock.callLater(seconds, self._reenable)

    def _reenable(self) -> None:
        self._enable_call = None
        self.enable(True)

    def enable(self, enabled: bool) -> None:
        self._cancel("_enable_call")
        changed = enabled != self.enabled
        self.enabled = enabled
        if changed:
            self.notify({self.id: self.entry()}, {})
        if enabled and self.state == INACTIVE and self._restart_call is None:
            self.start_if_always()

    def start_if_always(self) -> None:
        """Start an C{always} server that is not running (a failure is logged, not raised)."""
        if self._effective.activation != "always" or not self.supervised or not self.enabled:
            return
        if self.state != INACTIVE:
            return
        self.activate().addErrback(self._always_failed)

    def _always_failed(self, failure: Failure) -> None:
        self.log.warn(
            "[Server] `always' server `{server}' did not start: {error}",
            server=self.id,
            error=failure.getErrorMessage(),
        )

    def _schedule_restart(self, up_for: float) -> None:
        if self._effective.activation != "always" or not self.supervised or not self.enabled:
            return
        if up_for >= RESTART_DELAY_MAX:
            self._restart_delay = RESTART_DELAY_MIN
        delay = self._restart_delay
        self._restart_delay = min(delay * 2, RESTART_DELAY_MAX)
        self._trace("server", 1, "[Server] restarting server `{server}' in {delay} s", delay=delay)
        self._cancel("_restart_call")
        self._restart_call = self.env.clock.callLater(delay, self._restart)

    def _restart(self) -> None:
        self._restart_call = None
        self.start_if_always()

    # -- deployment ----------------------------------------------------------

    def update(self, application: str, descriptor: ServerDescriptor) -> None:
        """A new descriptor for a server that is not running."""
        assert self._process is None
        self.application = application
        self.descriptor = descriptor
        self._effective = self._substituted(descriptor)

    def update_properties(self, application: str, descriptor: ServerDescriptor) -> None:
        """
        A new descriptor that differs only in its properties, taken while
        the server runs (L{gridreg.node.live_update}); its next start
        writes the new configuration file.
        """
        self.application = application
        self.descriptor = descriptor
        self._effective = self._substituted(descriptor)

    def halt(self) -> Deferred[None]:
        """Stop for good (the node stops): no restart, whatever the activation."""
        self.supervised = False
        self._cancel("_restart_call")
        return self.stop()

    def destroy(self) -> Deferred[None]:
        """Stop, then forget the server: its state is C{destroyed} and its files are gone."""

        def gone(_: None) -> None:
            self._cancel("_enable_call")
            self._machine.destroy()
            self._trace("server", 1, "[Server] changed server `{server}' state to `Destroyed'")
            shutil.rmtree(server_dir(self.env.config.data_dir, self.id), ignore_errors=True)
            self.notify({self.id: self.entry()}, {})

        return self.halt().addCallback(gone)

    # -- helpers -------------------------------------------------------------

    def _substituted(self, descriptor: ServerDescriptor) -> ServerDescriptor:
        return substitute_node_variables(descriptor, self.env.variables, self.env.config.data_dir)

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        if call is not None:
            setattr(self, name, None)
            if call.active():
                call.cancel()

    def _trace(self, category: str, level: int, fmt: str, **kw: Any) -> None:
        if getattr(self.env.config.trace, category) >= level:
            self.log.info(fmt, server=self.id, **kw)
