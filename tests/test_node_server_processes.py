"""
A node's servers as real child processes on the real reactor: what they
are started with, where their output goes, how they are stopped (SIGTERM,
SIGKILL, and a real Ice 3.7 server's C{Ice::Process::shutdown}).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gridreg.ice.stringify import proxy_from_string
from gridreg.node.servers import ServerManager
from gridreg.protocol.errors import NodeError
from gridreg.registry.descriptor_model import ServerDescriptor
from tests._node_fakes import node_config
from tests._processes import ICE_PYTHON, ice_missing

#: a server that records how it was started, then waits for a signal
RECORDER = """
import json, os, signal, sys, time
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": os.environ.get("GRIDREG_T")}), flush=True)
print("to stderr", file=sys.stderr, flush=True)
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring", flush=True)
code = int(os.environ.get("EXIT_CODE", "-1"))
if code >= 0:
    sys.exit(code)
while True:
    signal.pause()
"""

#: a real Ice server: reads the node's config file, serves Ice::Process on
#: adapter A's endpoints (without the locator: no registry runs here)
ICE_SERVER = """
import json, sys
import Ice
props = Ice.createProperties(sys.argv)
config = {k: props.getProperty(k) for k in ("Ice.ProgramName", "Ice.Admin.ServerId", "A.Endpoints", "A.AdapterId", "P")}
props.setProperty("Ice.Default.Locator", "")
props.setProperty("Ice.Admin.Endpoints", "")
props.setProperty("A.AdapterId", "")
init = Ice.InitializationData()
init.properties = props
communicator = Ice.initialize(init)

class Process(Ice.Process):
    def shutdown(self, current=None):
        print(json.dumps({"event": "shutdown"}), flush=True)
        communicator.shutdown()

    def writeMessage(self, message, fd, current=None):
        pass

adapter = communicator.createObjectAdapter("A")
proxy = adapter.addFacet(Process(), Ice.stringToIdentity("S1/admin"), "Process")
adapter.activate()
print(json.dumps({"event": "ready", "config": config, "proxy": communicator.proxyToString(proxy)}), flush=True)
communicator.waitForShutdown()
communicator.destroy()
"""


def _wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Deferred[Any]:
    """Poll C{check} until it returns something true (a real process's file appears)."""

    async def run() -> Any:
        waited = 0.0
        while True:
            value = check()
            if value:
                return value
            if waited > timeout:
                raise AssertionError(f"nothing after {timeout} s")
            await deferLater(reactor, 0.05, lambda: None)
            waited += 0.05

    return Deferred.fromCoroutine(run())


def _lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


#: as IceGrid, a root node runs a server as root only when it names root (and
#: AllowRunningServersAsRoot); these tests' files are the root's own
AS_ROOT = "root" if os.geteuid() == 0 else ""


class RealProcessTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.script = os.path.join(self.base, "recorder.py")
        with open(self.script, "w") as f:
            f.write(RECORDER)
        self.events: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.config = node_config(
            os.path.join(self.base, "data"),
            output_dir=os.path.join(self.base, "out"),
            allow_running_as_root=True,
            wait_time=10,
        )
        self.manager = ServerManager(reactor, self.config, lambda s, a: self.events.append((s, a)))
        self.addCleanup(self.manager.stop_all)

    def server(self, **kw: Any) -> ServerDescriptor:
        fields: dict[str, Any] = dict(
            id="S1",
            exe=sys.executable,
            options=(self.script,),
            pwd=self.base,
            envs=("GRIDREG_T=yes",),
            activation="on-demand",
            user=AS_ROOT,
        )
        fields.update(kw)
        return ServerDescriptor(**fields)

    def out(self, ext: str = "out") -> list[str]:
        return _lines(os.path.join(self.base, "out", "S1." + ext))

    async def test_started_and_stopped(self) -> None:
        """Args end with --Ice.Config; stdout and stderr go to Output/<id>.out/.err; stop waits for the exit."""
        await self.manager.deploy([("App", self.server())])
        pid = await self.manager.activate("S1")
        first = json.loads((await _wait_for(self.out))[0])
        config_file = os.path.join(self.config.data_dir, "servers", "S1", "config", "config")
        self.assertEqual(first["argv"], [self.script, "--Ice.Config=" + config_file])
        self.assertEqual((first["cwd"], first["env"]), (self.base, "yes"))
        self.assertEqual(await _wait_for(lambda: self.out("err")), ["to stderr"])
        self.assertTrue(os.path.exists(os.path.join(self.config.data_dir, "servers", "S1", "pid")))
        await self.manager.stop("S1")
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)
        self.assertEqual(self.manager.server_info("S1")["state"], "inactive")
        self.assertFalse(os.path.exists(os.path.join(self.config.data_dir, "servers", "S1", "pid")))

    async def test_exit_during_activation(self) -> None:
        await self.manager.deploy(
            [("App", self.server(envs=("EXIT_CODE=3",), adapters=_lifetime_adapter()))]
        )
        with self.assertRaises(NodeError) as caught:
            await self.manager.activate("S1")
        self.assertIn("exit status 3", str(caught.exception))

    async def test_sigkill_after_deactivation_timeout(self) -> None:
        await self.manager.deploy(
            [("App", self.server(envs=("IGNORE_TERM=1",), deactivation_timeout=1))]
        )
        await self.manager.activate("S1")
        await _wait_for(lambda: "ignoring" in self.out())
        await self.manager.stop("S1")
        exits = [s["S1"] for s, _ in self.events if "S1" in s]
        self.assertEqual(exits[-1]["state"], "inactive")

    async def test_signal(self) -> None:
        await self.manager.deploy([("App", self.server())])
        await self.manager.activate("S1")
        await _wait_for(self.out)
        self.manager.signal("S1", "SIGKILL")
        await _wait_for(lambda: self.manager.server_info("S1")["state"] == "inactive")


def _lifetime_adapter() -> tuple[Any, ...]:
    from gridreg.registry.descriptor_model import AdapterDescriptor

    return (AdapterDescriptor(name="A", id="S1.A"),)


class RealIceServerTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        reason = ice_missing()
        if reason:
            self.skipTest(reason)

    async def test_process_shutdown(self) -> None:
        """A real Ice 3.7 server reads our config file and stops through Ice::Process::shutdown, not a signal."""
        from gridreg.registry.descriptor_model import AdapterDescriptor

        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        script = os.path.join(base, "ice_server.py")
        with open(script, "w") as f:
            f.write(ICE_SERVER)
        config = node_config(
            os.path.join(base, "data"),
            output_dir=os.path.join(base, "out"),
            allow_running_as_root=True,
            wait_time=10,
        )
        events: list[Any] = []
        manager = ServerManager(reactor, config, lambda s, a: events.append((s, a)))
        self.addCleanup(manager.stop_all)
        server = ServerDescriptor(
            id="S1",
            exe=ICE_PYTHON,
            options=(script,),
            activation="manual",
            user=AS_ROOT,
            properties=(("P", "a #1"),),
            adapters=(
                AdapterDescriptor(
                    name="A", id="S1.A", endpoints="tcp -h 127.0.0.1", server_lifetime=False
                ),
            ),
        )
        await manager.deploy([("App", server)])
        await manager.activate("S1")
        out = os.path.join(base, "out", "S1.out")
        ready = json.loads((await _wait_for(lambda: _lines(out)))[0])
        self.assertEqual(
            ready["config"],
            {
                "Ice.ProgramName": "S1",
                "Ice.Admin.ServerId": "S1",
                "A.Endpoints": "tcp -h 127.0.0.1",
                "A.AdapterId": "S1.A",
                "P": "a #1",
            },
        )
        manager.process_registered("S1", proxy_from_string(ready["proxy"]))
        await manager.stop("S1")
        self.assertEqual(json.loads(_lines(out)[1]), {"event": "shutdown"})
        self.assertEqual(manager.server_info("S1")["state"], "inactive")
