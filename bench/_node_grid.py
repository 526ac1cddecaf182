"""
Grids with a node, for the node benchmarks: a master, a slave and one node
of either kind on loopback, the same application deployed on both.

  - IceGrid: C{icegridregistry} master and slave (L{bench._grid.Grid}) and
    one C{icegridnode}; administered with C{icegridadmin -u x -p x} (null
    permissions verifier) in a subprocess.
  - gridreg: C{gridregistry} master and slave over mutual TLS
    (L{bench._grid.Grid}) and one C{twistd -n --pidfile= gridnode --config F}
    with its node certificate (C{node-<name>.pem} from
    L{gridreg.certs.make_demo_certs}, the same CA); administered through an
    L{AdminSession} in this process (the AMP commands C{gridadmin} sends:
    L{AdminServerControl}, L{AdminNodeControl}).

Both nodes run the same real Ice server, C{bench/hello_node_server.py}, as
C{/usr/bin/python3}; it writes C{started}, C{registering} and C{activated}
timestamps to its output file (C{IceGrid.Node.Output}/<server>.out).

IceGrid's node, run as root, runs servers as C{nobody}
(docs/icegrid-node-facts.md): the node's directories are made traversable
and its output directory writable for everyone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from bench._grid import INSTANCE, MASTER, Grid, track
from bench._harness import LOOPBACK, REPO_ROOT
from bench._system import cpu_seconds
from gridreg.admin.session import AdminSession, open_admin_session
from gridreg.certs import make_demo_certs
from gridreg.config.properties import Properties
from gridreg.protocol.node_commands import AdminNodeControl, AdminServerControl
from tests._processes import ICE_PYTHON, LineProcess, ice_env, write_config

SLAVE = "Replica1"
NODE = "node1"
SERVER = "hello"
ADAPTER = "HelloAdapter"
APPLICATION = "NodeBench"
SERVER_SCRIPT = REPO_ROOT / "bench" / "hello_node_server.py"
ICEGRIDNODE = shutil.which("icegridnode") or "/usr/bin/icegridnode"
ICEGRIDADMIN = shutil.which("icegridadmin") or "/usr/bin/icegridadmin"


def descriptor(node: str = NODE) -> str:
    """
    The application both grids deploy: one on-demand server on C{node}.
    When the nodes run as root the server runs as root too (C{user="root"},
    with C{IceGrid.Node.AllowRunningServersAsRoot=1}): a root node would
    otherwise run it as C{nobody}, which then needs write access to the
    output files.
    """
    user = ' user="root"' if os.geteuid() == 0 else ""
    return f"""<icegrid>
  <application name="{APPLICATION}">
    <node name="{node}">
      <server id="{SERVER}" exe="{ICE_PYTHON}" activation="on-demand"{user}>
        <option>{SERVER_SCRIPT}</option>
        <adapter name="Hello" id="{ADAPTER}" endpoints="tcp -h {LOOPBACK}"/>
      </server>
    </node>
  </application>
</icegrid>
"""


class NodeBenchGrid(Grid):
    """L{Grid} with extra registry properties (e.g. C{NodeSessionTimeout})."""

    def __init__(
        self,
        reactor: Any,
        kind: str,
        root: Path,
        names: Sequence[str],
        extra: Mapping[str, str] = {},
    ) -> None:
        super().__init__(reactor, kind, root, names)
        self.extra = dict(extra)

    def properties(self, name: str) -> dict[str, str]:
        return dict(super().properties(name), **self.extra)


@attrs.frozen
class ServerTimes:
    """What the server wrote about its last start (C{time.monotonic()} values)."""

    started: float
    registering: float
    activated: float


def last_server_times(path: Path) -> ServerTimes | None:
    """The last complete start recorded in a server's output file."""
    try:
        lines = path.read_text().split("\n")
    except OSError:
        return None
    found: dict[str, float] = {}
    for line in reversed(lines):
        word, _, value = line.partition(" ")
        if word not in ("started", "registering", "activated") or word in found:
            continue
        try:
            found[word] = float(value)
        except ValueError:
            continue
        if word == "started":
            if len(found) == 3:
                return ServerTimes(found["started"], found["registering"], found["activated"])
            found = {}  # a start still under way (or one that failed): look further back
    return None


class NodeGrid:
    """A master, a slave and one node of one kind, with the application deployed."""

    def __init__(
        self,
        reactor: Any,
        kind: str,
        root: Path,
        registry_properties: Mapping[str, str] = {},
    ) -> None:
        self.reactor = reactor
        self.kind = kind
        self.root = root
        self.grid = NodeBenchGrid(
            reactor, kind, root / "registries", (MASTER, SLAVE), registry_properties
        )
        self.node_dir = root / "node"
        self.data_dir = self.node_dir / "data"
        self.output_dir = self.node_dir / "out"
        self.node: LineProcess | None = None
        self.admin: AdminSession | None = None
        if kind == "gridreg":
            make_demo_certs(str(self.grid.certs), nodes=[NODE], instance=INSTANCE)

    # -- processes -----------------------------------------------------------------

    async def start(self, timeout: float = 60.0) -> None:
        await self.grid.start(MASTER)
        await self.grid.start(SLAVE)
        self._prepare_node_dirs()
        self.node = track(self.reactor, self._spawn_node())
        await self._wait_node_up(timeout)
        await self.add_application(descriptor())

    def _prepare_node_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.root, self.node_dir, self.data_dir, *self.root.parents):
            if path == Path("/"):
                break
            try:
                os.chmod(path, os.stat(path).st_mode | 0o011)  # traversable by nobody
            except OSError:
                pass
        os.chmod(self.output_dir, 0o1777)

    def node_properties(self) -> dict[str, str]:
        props = {
            "IceGrid.Node.Name": NODE,
            "IceGrid.Node.Data": str(self.data_dir.resolve()),
            "IceGrid.Node.Output": str(self.output_dir.resolve()),
            "Ice.Default.Locator": self.grid.locator(MASTER, SLAVE),
        }
        if os.geteuid() == 0:
            props["IceGrid.Node.AllowRunningServersAsRoot"] = "1"
        if self.kind == "icegrid":
            props["IceGrid.Node.Endpoints"] = f"tcp -h {LOOPBACK}"
        else:
            props.update(
                {
                    "IceSSL.DefaultDir": str(self.grid.certs),
                    "IceSSL.CAs": "ca.pem",
                    "IceSSL.CertFile": f"node-{NODE}.pem",
                    "IceSSL.KeyFile": f"node-{NODE}.key",
                }
            )
        return props

    def _spawn_node(self) -> LineProcess:
        config = self.node_dir / "node.cfg"
        write_config(config, self.node_properties())
        if self.kind == "icegrid":
            args = [ICEGRIDNODE, f"--Ice.Config={config}"]
            return LineProcess.spawn(
                self.reactor, "icegridnode", args, dict(os.environ), self.node_dir
            )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        twistd = Path(sys.executable).parent / "twistd"
        if twistd.exists():
            args = [str(twistd), "-n", "--pidfile=", "gridnode", "--config", str(config)]
        else:
            args = [sys.executable, "-m", "twisted", "gridnode", "--config", str(config)]
        return LineProcess.spawn(self.reactor, "gridnode", args, env, self.node_dir)

    async def _wait_node_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.node is not None
            if self.node.ended is not None:
                raise RuntimeError(f"the {self.kind} node exited:\n{self.node.describe()}")
            try:
                if await self.node_alive():
                    return
            except Exception as e:  # not up yet
                last = e
            await deferLater(self.reactor, 0.2)
        raise RuntimeError(f"the {self.kind} node did not register in {timeout} s: {last}")

    def pids(self) -> dict[str, int]:
        """The registry replicas' and the node's process ids."""
        found = {name: self.grid.pid(name) for name in self.grid.running}
        if self.node is not None and self.node.pid is not None:
            found["node"] = self.node.pid
        return found

    def cpu(self) -> float:
        """CPU seconds used so far by the replicas and the node together."""
        return sum(cpu_seconds(pid) for pid in self.pids().values())

    async def stop(self) -> None:
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        if self.node is not None and self.node.ended is None:
            await self.node.terminate()
        await self.grid.stop_all()

    # -- administration ------------------------------------------------------------

    async def icegridadmin(self, *commands: str, via: str = MASTER) -> tuple[str, str, int]:
        config = self.root / f"icegridadmin-{via}.cfg"
        if not config.exists():
            write_config(config, {"Ice.Default.Locator": self.grid.locator(via)})
        args = [f"--Ice.Config={config}", "-u", "x", "-p", "x"]
        for command in commands:
            args += ["-e", command]
        out, err, code = await getProcessOutputAndValue(
            ICEGRIDADMIN, args, env=dict(os.environ), path=str(self.root), reactor=self.reactor
        )
        return out.decode(), err.decode(), code

    async def session(self) -> AdminSession:
        if self.admin is None:
            properties = Properties()
            for key, value in {
                "Ice.Default.Locator": self.grid.locator(MASTER),
                "IceSSL.DefaultDir": str(self.grid.certs),
                "IceSSL.CAs": "ca.pem",
                "IceSSL.CertFile": "admin-admin.pem",
                "IceSSL.KeyFile": "admin-admin.key",
            }.items():
                properties.set(key, value)
            self.admin = await open_admin_session(self.reactor, properties, None, 30.0)
        return self.admin

    async def add_application(self, xml: str) -> None:
        if self.kind == "icegrid":
            path = self.root / "application.xml"
            path.write_text(xml)
            out, err, code = await self.icegridadmin(f"application add {path}")
            if code != 0:
                raise RuntimeError(f"icegridadmin application add failed: {out}{err}")
            return
        session = await self.session()
        await session.upload_and_add_application(xml, False)

    async def node_alive(self) -> bool:
        if self.kind == "icegrid":
            out, _, code = await self.icegridadmin(f"node ping {NODE}")
            return code == 0 and "node is up" in out
        session = await self.session()
        answer = await session.call(AdminNodeControl, node=NODE, action="ping")
        return bool(json.loads(answer["result"]).get("alive"))

    async def server_stop(self, server: str = SERVER) -> None:
        """Stop C{server}, if it runs; returns once its process has exited."""
        if self.kind == "icegrid":
            out, err, code = await self.icegridadmin(f"server stop {server}")
            if code != 0 and "already inactive" not in out + err:
                raise RuntimeError(f"icegridadmin server stop {server} failed: {out}{err}")
            return
        session = await self.session()
        try:
            await session.call(AdminServerControl, server=server, action="stop", argument="")
        except Exception as e:  # an inactive server: nothing to stop
            if "inactive" not in str(e).lower():
                raise

    def server_output(self, server: str = SERVER) -> Path:
        return self.output_dir / f"{server}.out"

    def last_start(self, server: str = SERVER) -> ServerTimes | None:
        """The server's last start, from its output file (any C{*.out} naming it as a fallback)."""
        times = last_server_times(self.server_output(server))
        if times is None:
            for path in sorted(self.output_dir.rglob(f"*{server}*")):
                times = last_server_times(path) or times
        return times


async def run_first_ping(
    reactor: Any, locator: str, proxy: str, timeout: float = 120.0
) -> dict[str, Any]:
    """One fresh Ice client process's first C{ice_ping} (see C{bench/ice_first_ping.py})."""
    args = [ICE_PYTHON, str(REPO_ROOT / "bench" / "ice_first_ping.py"), "ping"]
    args += ["--locator", locator, "--proxy", proxy]
    process = track(reactor, LineProcess.spawn(reactor, "first ping", args, ice_env(), REPO_ROOT))
    try:
        result = await process.next_event(lambda e: e.get("command") == "ping", timeout)
    finally:
        await process.when_ended()
    return result


async def exec_probe(reactor: Any, count: int) -> list[float]:
    """Seconds from spawning the server's interpreter to its script's first line."""
    args = [ICE_PYTHON, str(REPO_ROOT / "bench" / "ice_first_ping.py"), "exec-probe"]
    args += ["--server", str(SERVER_SCRIPT), "--count", str(count)]
    process = track(reactor, LineProcess.spawn(reactor, "exec probe", args, ice_env(), REPO_ROOT))
    try:
        result = await process.next_event(lambda e: e.get("command") == "exec-probe", 120)
    finally:
        await process.when_ended()
    return [float(s) for s in result["seconds"]]


__all__ = [
    "ADAPTER",
    "APPLICATION",
    "NODE",
    "SERVER",
    "SLAVE",
    "NodeGrid",
    "ServerTimes",
    "descriptor",
    "exec_probe",
    "last_server_times",
    "run_first_ping",
]
