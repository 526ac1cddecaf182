"""
Unit tests of a node's servers (L{gridreg.node.servers.ServerManager}):
fake processes, a L{Clock}, no real child.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import attrs

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.stringify import proxy_from_string
from gridreg.node.activator import parse_signal, write_pid_record
from gridreg.node.load import LoadSampler, load_from_text
from gridreg.node.servers import ServerManager
from gridreg.protocol.errors import NodeError, NotFoundError
from gridreg.registry.descriptor_model import AdapterDescriptor, ServerDescriptor
from gridreg.registry.state import encode_proxy_field
from tests._node_fakes import FakeProc, FakeSpawner, fake_host, node_config

ADAPTER = AdapterDescriptor(name="A", id="S1.A", endpoints="tcp -h 127.0.0.1")
SERVER = ServerDescriptor(
    id="S1",
    exe="srv",
    options=("--x", "${node.data}"),
    envs=("FOO=1", "FOO=2", "BAR=b"),
    activation="on-demand",
    adapters=(ADAPTER,),
)
ENDPOINTS = proxy_from_string("x:tcp -h 127.0.0.1 -p 5000")


class Harness:
    def __init__(self, case: SynchronousTestCase, euid: int = 1000, **config: Any) -> None:
        self.clock = Clock()
        self.spawner = FakeSpawner()
        self.proc = FakeProc()
        self.events: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.shutdowns: list[Any] = []
        self.shutdown_result: Deferred[None] = Deferred()
        self.config = node_config(os.path.abspath(case.mktemp()), **config)
        self.manager = ServerManager(
            None,
            self.config,
            lambda s, a: self.events.append((s, a)),
            self.spawner,
            self.clock,
            host=fake_host(euid),
            proc=self.proc.reader(),
            process_shutdown=self._shutdown,
        )

    def _shutdown(self, proxy: Any, timeout: float) -> Deferred[None]:
        self.shutdowns.append((proxy, timeout))
        return self.shutdown_result

    def states(self, server_id: str = "S1") -> list[str]:
        return [s[server_id]["state"] for s, _ in self.events if server_id in s]

    def deploy(self, *servers: ServerDescriptor, app: str = "App") -> None:
        SynchronousTestCase().successResultOf(self.manager.deploy([(app, s) for s in servers]))


class ActivationTests(SynchronousTestCase):
    def test_spawn(self) -> None:
        """The process gets execvp's executable, options then --Ice.Config, node env + envs, the node's cwd."""
        h = Harness(self)
        h.deploy(SERVER)
        h.manager.activate("S1")
        spawned = h.spawner.last.spawned
        config_file = os.path.join(h.config.data_dir, "servers", "S1", "config", "config")
        self.assertEqual(spawned["executable"], "/fake/bin/srv")
        self.assertEqual(
            spawned["args"], ["srv", "--x", h.config.data_dir, "--Ice.Config=" + config_file]
        )
        self.assertEqual(
            spawned["env"], {"PATH": "/fake/bin", "HOME": "/h", "FOO": "2", "BAR": "b"}
        )
        self.assertEqual(spawned["path"], "/node/cwd")
        self.assertEqual((spawned["uid"], spawned["gid"]), (None, None))
        self.assertEqual((spawned["child_fds"][1], spawned["child_fds"][2]), (1, 2))
        self.assertTrue(os.path.exists(config_file))

    def test_pwd_relative_exe(self) -> None:
        h = Harness(self)
        h.deploy(attrs.evolve(SERVER, exe="bin/srv", pwd="/opt/app"))
        h.manager.activate("S1")
        self.assertEqual(h.spawner.last.spawned["executable"], "/opt/app/bin/srv")
        self.assertEqual(h.spawner.last.spawned["path"], "/opt/app")

    def test_active_after_adapters_and_live_state_first(self) -> None:
        """Active only once the lifetime adapter registered; live state says so before the Deferred fires."""
        h = Harness(self)
        h.deploy(SERVER)
        d = h.manager.activate("S1")
        d2 = h.manager.activate("S1")
        self.assertEqual(len(h.spawner.processes), 1)
        self.assertNoResult(d)
        seen: list[int] = []
        d.addCallback(lambda pid: seen.append(len(h.events)) or pid)
        h.manager.adapter_registered("S1.A", "", ENDPOINTS)
        pid = h.spawner.last.pid
        self.assertEqual(self.successResultOf(d), pid)
        self.assertEqual(self.successResultOf(d2), pid)
        servers, adapters = h.events[seen[0] - 1]
        self.assertEqual(servers, {"S1": {"state": "active", "pid": pid, "enabled": True}})
        self.assertEqual(
            adapters, {"S1.A": {"proxy": encode_proxy_field(ENDPOINTS), "replica_group": ""}}
        )
        self.assertEqual(h.states(), ["inactive", "activating", "active"])
        self.assertEqual(
            h.manager.server_info("S1"),
            {"server": "S1", "application": "App", "state": "active", "pid": pid, "enabled": True},
        )

    def test_no_lifetime_adapter_active_once_spawned(self) -> None:
        h = Harness(self)
        h.deploy(attrs.evolve(SERVER, adapters=(attrs.evolve(ADAPTER, server_lifetime=False),)))
        self.assertEqual(self.successResultOf(h.manager.activate("S1")), h.spawner.last.pid)

    def test_timeout(self) -> None:
        """No registration within the activation timeout: NodeError, and the process is stopped."""
        h = Harness(self, wait_time=30)
        h.deploy(attrs.evolve(SERVER, activation_timeout=5))
        d = h.manager.activate("S1")
        h.clock.advance(4.9)
        self.assertNoResult(d)
        h.clock.advance(0.2)
        self.assertIn("timed out", str(self.failureResultOf(d, NodeError).value))
        self.assertEqual(h.spawner.last.signals, [signal.SIGTERM])
        self.assertEqual(h.manager.server_info("S1")["state"], "inactive")

    def test_default_timeout_is_wait_time(self) -> None:
        h = Harness(self, wait_time=30)
        h.deploy(SERVER)
        d = h.manager.activate("S1")
        h.clock.advance(29.9)
        self.assertNoResult(d)
        h.clock.advance(0.2)
        self.failureResultOf(d, NodeError)

    def test_exit_during_activation(self) -> None:
        h = Harness(self)
        h.deploy(SERVER)
        d = h.manager.activate("S1")
        h.spawner.last.exit(3)
        self.assertIn("exit status 3", str(self.failureResultOf(d, NodeError).value))
        self.assertEqual(h.states()[-1], "inactive")

    def test_spawn_failure(self) -> None:
        h = Harness(self)
        h.deploy(SERVER)
        h.spawner.fail_with = OSError("no fork")
        self.assertIn(
            "no fork", str(self.failureResultOf(h.manager.activate("S1"), NodeError).value)
        )
        self.assertEqual(h.manager.server_info("S1")["state"], "inactive")

    def test_missing_executable(self) -> None:
        h = Harness(self)
        h.deploy(attrs.evolve(SERVER, exe="nothere"))
        self.assertIn(
            "nothere", str(self.failureResultOf(h.manager.activate("S1"), NodeError).value)
        )
        self.assertEqual(h.spawner.processes, [])

    def test_disabled_and_unknown(self) -> None:
        h = Harness(self)
        h.deploy(SERVER)
        h.manager.enable("S1", False)
        self.assertIn(
            "disabled", str(self.failureResultOf(h.manager.activate("S1"), NodeError).value)
        )
        self.failureResultOf(h.manager.activate("S2"), NotFoundError)
        self.assertRaises(NotFoundError, h.manager.adapter_registered, "Other.A", "", ENDPOINTS)
        self.assertEqual(
            h.events[-1], ({"S1": {"state": "inactive", "pid": None, "enabled": False}}, {})
        )

    def test_pid_record(self) -> None:
        """A running server's pid and start time are on disk until it exits."""
        h = Harness(self)
        h.deploy(attrs.evolve(SERVER, adapters=()))
        h.proc.start_times[1001] = "4242"
        h.manager.activate("S1")
        record = os.path.join(h.config.data_dir, "servers", "S1", "pid")
        with open(record) as f:
            self.assertEqual(f.read().split(), ["1001", "4242"])
        h.spawner.last.exit(0)
        self.assertFalse(os.path.exists(record))


class UserTests(SynchronousTestCase):
    def test_root_runs_as_nobody(self) -> None:
        h = Harness(self, euid=0)
        h.deploy(SERVER)
        h.manager.activate("S1")
        self.assertEqual(
            (h.spawner.last.spawned["uid"], h.spawner.last.spawned["gid"]), (65534, 65534)
        )

    def test_root_runs_as_user(self) -> None:
        h = Harness(self, euid=0)
        h.deploy(attrs.evolve(SERVER, user="bob"))
        h.manager.activate("S1")
        self.assertEqual(h.spawner.last.spawned["uid"], 1001)

    def test_root_allowed_only_when_named(self) -> None:
        """AllowRunningServersAsRoot lets user="root" run as root; no user is still nobody."""
        h = Harness(self, euid=0, allow_running_as_root=True)
        h.deploy(SERVER)
        h.manager.activate("S1")
        self.assertEqual(h.spawner.last.spawned["uid"], 65534)
        h2 = Harness(self, euid=0, allow_running_as_root=True)
        h2.deploy(attrs.evolve(SERVER, user="root"))
        h2.manager.activate("S1")
        self.assertEqual(h2.spawner.last.spawned["uid"], 0)

    def test_root_refused_unless_allowed(self) -> None:
        h = Harness(self, euid=0)
        h.deploy(attrs.evolve(SERVER, user="root"))
        error = self.failureResultOf(h.manager.activate("S1"), NodeError).value
        self.assertIn("AllowRunningServersAsRoot", str(error))

    def test_other_user_refused(self) -> None:
        h = Harness(self, euid=1000)
        h.deploy(attrs.evolve(SERVER, user="bob"))
        error = self.failureResultOf(h.manager.activate("S1"), NodeError).value
        self.assertIn("insufficient privileges", str(error))
        self.assertEqual(h.spawner.processes, [])

    def test_own_user_accepted(self) -> None:
        h = Harness(self, euid=1000)
        h.deploy(attrs.evolve(SERVER, user="alice", adapters=()))
        self.successResultOf(h.manager.activate("S1"))


class StopTests(SynchronousTestCase):
    def running(self, h: Harness, **changes: Any) -> None:
        h.deploy(attrs.evolve(SERVER, adapters=(), **changes))
        self.successResultOf(h.manager.activate("S1"))

    def test_sigterm_then_sigkill(self) -> None:
        h = Harness(self, wait_time=20)
        h.spawner.exit_on_term = False
        self.running(h, deactivation_timeout=7)
        process = h.spawner.last
        d = h.manager.stop("S1")
        self.assertEqual(process.signals, [signal.SIGTERM])
        self.assertEqual(h.states()[-1], "deactivating")
        h.clock.advance(6.9)
        self.assertNoResult(d)
        h.clock.advance(0.2)
        self.assertEqual(process.signals, [signal.SIGTERM, signal.SIGKILL])
        self.assertNoResult(d)
        process.exit(signal=9)
        self.successResultOf(d)
        self.assertEqual(h.states()[-1], "inactive")
        self.flushLoggedErrors()

    def test_stop_not_running(self) -> None:
        h = Harness(self)
        h.deploy(SERVER)
        self.successResultOf(h.manager.stop("S1"))
        self.failureResultOf(h.manager.stop("nope"), NotFoundError)

    def test_process_shutdown(self) -> None:
        """A registered Ice::Process is asked to shut down; no signal while it does."""
        h = Harness(self)
        self.running(h)
        process_proxy = proxy_from_string("admin -f Process:tcp -h 127.0.0.1 -p 6000")
        h.manager.process_registered("S1", process_proxy)
        d = h.manager.stop("S1")
        self.assertEqual(h.shutdowns[0][0], process_proxy)
        self.assertEqual(h.spawner.last.signals, [])
        h.shutdown_result.callback(None)
        h.spawner.last.exit(0)
        self.successResultOf(d)

    def test_process_shutdown_fails(self) -> None:
        h = Harness(self)
        self.running(h)
        h.manager.process_registered("S1", proxy_from_string("admin:tcp -h 127.0.0.1 -p 6000"))
        d = h.manager.stop("S1")
        h.shutdown_result.errback(ConnectionRefusedError("refused"))
        self.assertEqual(h.spawner.last.signals[0], signal.SIGTERM)
        self.successResultOf(d)

    def test_exit_unregisters_adapters(self) -> None:
        h = Harness(self)
        h.deploy(SERVER)
        h.manager.activate("S1")
        h.manager.adapter_registered("S1.A", "RG", ENDPOINTS)
        self.assertIn("S1.A", h.manager.live_state()[1])
        self.successResultOf(h.manager.stop("S1"))
        self.assertEqual(h.events[-1][1], {"S1.A": {"proxy": "", "replica_group": "RG"}})
        self.assertEqual(
            h.manager.live_state(),
            ({"S1": {"state": "inactive", "pid": None, "enabled": True}}, {}),
        )

    def test_crash_logged(self) -> None:
        h = Harness(self)
        self.running(h)
        h.spawner.last.exit(signal=11)
        self.assertEqual(h.states()[-1], "inactive")

    def test_signal(self) -> None:
        h = Harness(self)
        h.deploy(attrs.evolve(SERVER, adapters=()))
        self.assertRaises(NodeError, h.manager.signal, "S1", "SIGUSR1")
        self.successResultOf(h.manager.activate("S1"))
        for name in ("SIGUSR1", "USR1", "10", "usr1"):
            h.manager.signal("S1", name)
        self.assertEqual(h.spawner.last.signals, [signal.SIGUSR1] * 4)
        self.assertRaises(NodeError, h.manager.signal, "S1", "SIGNOPE")
        self.assertEqual(parse_signal("9"), signal.SIGKILL)


ALWAYS = attrs.evolve(SERVER, activation="always", adapters=())


class AlwaysTests(SynchronousTestCase):
    def started(self, **config: Any) -> Harness:
        h = Harness(self, **config)
        h.deploy(ALWAYS)
        self.assertEqual(h.spawner.processes, [], "always servers wait for start()")
        self.successResultOf(h.manager.start())
        self.assertEqual(len(h.spawner.processes), 1)
        return h

    def test_restart_backoff(self) -> None:
        h = self.started()
        delays = []
        for _ in range(8):
            h.spawner.last.exit(1)
            count = len(h.spawner.processes)
            waited = 0.0
            while len(h.spawner.processes) == count:
                h.clock.advance(0.5)
                waited += 0.5
            delays.append(waited)
        self.assertEqual(delays, [1, 2, 4, 8, 16, 32, 60, 60])
        h.clock.advance(60)
        h.spawner.last.exit(1)
        h.clock.advance(1)
        self.assertEqual(len(h.spawner.processes), 10, "stayed up 60 s: back to 1 s")

    def test_clean_exit_restarts(self) -> None:
        h = self.started()
        h.spawner.last.exit(0)
        h.clock.advance(1)
        self.assertEqual(len(h.spawner.processes), 2)

    def test_stop_all_no_restart(self) -> None:
        h = self.started()
        self.successResultOf(h.manager.stop_all())
        h.clock.advance(120)
        self.assertEqual(len(h.spawner.processes), 1)
        self.assertEqual(h.states()[-1], "inactive")

    def test_disable_on_failure_seconds(self) -> None:
        h = self.started(disable_on_failure=30)
        h.spawner.last.exit(2)
        self.assertFalse(h.manager.server_info("S1")["enabled"])
        h.clock.advance(29)
        self.assertEqual(len(h.spawner.processes), 1)
        h.clock.advance(1)
        self.assertTrue(h.manager.server_info("S1")["enabled"])
        self.assertEqual(len(h.spawner.processes), 2)

    def test_disable_on_failure_forever(self) -> None:
        h = self.started(disable_on_failure=-1)
        h.spawner.last.exit(2)
        h.clock.advance(3600)
        self.assertEqual(len(h.spawner.processes), 1)
        h.manager.enable("S1", True)
        self.assertEqual(len(h.spawner.processes), 2)

    def test_requested_stop_is_not_failure(self) -> None:
        h = self.started(disable_on_failure=-1)
        self.successResultOf(h.manager.stop("S1"))
        self.assertTrue(h.manager.server_info("S1")["enabled"])


class DeployTests(SynchronousTestCase):
    def test_changes(self) -> None:
        """Changed and running: stopped; changed and stopped: not started; gone: destroyed."""
        h = Harness(self)
        a, b, c = (attrs.evolve(SERVER, id=i, adapters=()) for i in ("A", "B", "C"))
        h.deploy(a, b, c)
        self.successResultOf(h.manager.activate("A"))
        self.successResultOf(h.manager.activate("C"))
        first_a, first_c = h.spawner.processes
        h.deploy(attrs.evolve(a, options=("--new",)), attrs.evolve(b, options=("--new",)), c)
        self.assertEqual(first_a.signals, [signal.SIGTERM])
        self.assertEqual(first_c.signals, [])
        self.assertEqual(len(h.spawner.processes), 2)
        self.assertEqual(h.manager.server_info("A")["state"], "inactive")
        self.successResultOf(h.manager.activate("A"))  # the next locate: the new descriptor
        self.assertEqual(h.spawner.last.spawned["args"][1], "--new")
        self.assertEqual(h.manager.server_info("B")["state"], "inactive")
        h.deploy(attrs.evolve(a, options=("--new",)))
        self.assertEqual(first_c.signals, [signal.SIGTERM])
        self.assertEqual(
            h.events[-1][0], {"C": {"state": "destroyed", "pid": None, "enabled": True}}
        )
        self.assertEqual(sorted(h.manager.live_state()[0]), ["A"])
        self.assertRaises(NotFoundError, h.manager.server_info, "B")

    def test_only_always_servers_come_back_after_a_change(self) -> None:
        """
        As IceGrid 3.7.8's node after C{application update}: a running
        manual, on-demand or owned session server whose descriptor changed is
        stopped and stays stopped; an C{always} one is started again.
        """
        h = Harness(self)
        self.successResultOf(h.manager.start())
        servers = [
            attrs.evolve(SERVER, id=activation, activation=activation, adapters=())
            for activation in ("manual", "on-demand", "session", "always")
        ]
        h.deploy(*servers)
        self.successResultOf(h.manager.set_session("session", "session-A"))
        for server in servers[:3]:
            self.successResultOf(h.manager.activate(server.id))
        self.assertEqual(len(h.spawner.processes), 4)
        h.deploy(*(attrs.evolve(s, options=("--new",)) for s in servers))
        states = {s.id: h.manager.server_info(s.id)["state"] for s in servers}
        self.assertEqual(
            states,
            {
                "manual": "inactive",
                "on-demand": "inactive",
                "session": "inactive",
                "always": "active",
            },
        )
        self.assertEqual(len(h.spawner.processes), 5)
        self.assertEqual(h.spawner.last.spawned["args"][1], "--new")

    def test_always_on_deploy_after_start(self) -> None:
        h = Harness(self)
        self.successResultOf(h.manager.start())
        h.deploy(ALWAYS)
        self.assertEqual(len(h.spawner.processes), 1)


class LeftoverTests(SynchronousTestCase):
    def test_leftover_stopped_before_always_start(self) -> None:
        """A previous run's server (same pid and start time) is stopped, then always servers start."""
        h = Harness(self, wait_time=10)
        h.deploy(ALWAYS)
        write_pid_record(h.config.data_dir, "S1", 4321, "777")
        write_pid_record(h.config.data_dir, "Gone", 4322, "778")
        h.proc.start_times.update({4321: "777", 4322: "999"})  # 4322: a reused pid
        h.proc.die_on = {signal.SIGKILL}
        d = h.manager.start()
        self.assertEqual(h.proc.kills, [(4321, signal.SIGTERM)])
        self.assertNoResult(d)
        h.clock.advance(9.95)
        self.assertEqual(h.spawner.processes, [])
        h.clock.advance(0.2)
        self.assertEqual(h.proc.kills, [(4321, signal.SIGTERM), (4321, signal.SIGKILL)])
        h.clock.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(len(h.spawner.processes), 1)
        self.assertFalse(os.path.exists(os.path.join(h.config.data_dir, "servers", "Gone", "pid")))

    def test_exits_on_sigterm(self) -> None:
        h = Harness(self)
        write_pid_record(h.config.data_dir, "S1", 4321, "777")
        h.proc.start_times[4321] = "777"
        h.proc.die_on = {signal.SIGTERM}
        d = h.manager.start()
        h.clock.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(h.proc.kills, [(4321, signal.SIGTERM)])


class LoadTests(SynchronousTestCase):
    def test_divided_by_cpus(self) -> None:
        self.assertEqual(load_from_text("2.00 1.00 0.50 1/100 42\n", 4), (0.5, 0.25, 0.125))
        sampler = LoadSampler(reader=lambda: "3 6 9 1/1 1", cpu_count=lambda: None)
        self.assertEqual(sampler.sample(), (3.0, 6.0, 9.0))

    def test_unreadable(self) -> None:
        def broken() -> str:
            raise OSError("no /proc")

        self.assertEqual(LoadSampler(reader=broken).sample(), (0.0, 0.0, 0.0))


class RedeployTests(SynchronousTestCase):
    def test_no_second_copy_while_old_one_stops(self) -> None:
        """Removed then deployed again: the new one starts only once the old process exited."""
        h = Harness(self)
        h.spawner.exit_on_term = False
        h.deploy(ALWAYS)
        self.successResultOf(h.manager.start())
        old = h.spawner.last
        h.deploy()
        h.deploy(ALWAYS)
        d = h.manager.activate("S1")
        self.assertEqual(len(h.spawner.processes), 1)
        self.assertNoResult(d)
        old.exit(signal=signal.SIGTERM)
        self.assertNotIn("destroyed", h.states(), "S1 is deployed: never announced destroyed")
        self.assertEqual(len(h.spawner.processes), 2)
        self.assertEqual(self.successResultOf(d), h.spawner.last.pid)
        self.assertEqual(h.manager.server_info("S1")["state"], "active")


SESSION = attrs.evolve(SERVER, activation="session", adapters=())


class SessionActivationTests(SynchronousTestCase):
    """The node starts a session server only while the master says a client session owns it."""

    def test_not_owned_is_refused_with_icegrids_reason(self) -> None:
        h = Harness(self)
        h.deploy(SESSION)
        failure = self.failureResultOf(h.manager.activate("S1"), NodeError)
        self.assertEqual(failure.getErrorMessage(), "The server is not owned by a session.")
        self.assertEqual(h.spawner.processes, [])

    def test_owned_starts_like_on_demand_and_stops_when_released(self) -> None:
        h = Harness(self)
        h.spawner.exit_on_term = False
        h.deploy(SESSION)
        self.successResultOf(h.manager.set_session("S1", "session-A"))
        self.successResultOf(h.manager.activate("S1"))
        process = h.spawner.last
        released = h.manager.set_session("S1", "")
        self.assertEqual(process.signals, [signal.SIGTERM])
        self.assertNoResult(released)  # answered once the process has exited
        process.exit(signal=signal.SIGTERM)
        self.successResultOf(released)
        self.assertEqual(h.states()[-1], "inactive")
        self.failureResultOf(h.manager.activate("S1"), NodeError)

    def test_owner_told_before_the_server_is_deployed(self) -> None:
        """The master's SetServerSession may overtake a DeployServers from another replica."""
        h = Harness(self)
        self.successResultOf(h.manager.set_session("S1", "session-A"))
        h.deploy(SESSION)
        self.successResultOf(h.manager.activate("S1"))

    def test_other_activation_modes_ignore_owners(self) -> None:
        h = Harness(self)
        h.deploy(attrs.evolve(SERVER, adapters=()))
        self.successResultOf(h.manager.activate("S1"))
        self.successResultOf(h.manager.set_session("S1", ""))
        self.assertEqual(h.manager.server_info("S1")["state"], "active")

    def test_a_removed_server_forgets_its_owner(self) -> None:
        """Deployed again later, it waits for a new owner."""
        h = Harness(self)
        h.deploy(SESSION)
        self.successResultOf(h.manager.set_session("S1", "session-A"))
        h.deploy()
        h.deploy(SESSION)
        self.failureResultOf(h.manager.activate("S1"), NodeError)
