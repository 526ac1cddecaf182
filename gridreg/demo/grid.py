# -*- test-case-name: tests.test_demo,tests.test_demo_processes -*-
"""
The demo grid's files and processes: a master and a slave replica, two
nodes, and the sample application deployed on them.

Everything lives under one directory: certificates, one property file per
process, databases, node data, logs. The application's servers are
C{on-demand}, so none runs until a client resolves C{hello}; then a node
starts one (L{gridreg.demo.sample_server}) and the client is answered once
it has registered.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.error import ConnectError
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.admin.session import AdminSession, AdminSessionError, open_admin_session
from gridreg.admin.variables import set_variables
from gridreg.certs import make_demo_certs
from gridreg.config.properties import load_file
from gridreg.protocol.errors import ApplicationError, NotFoundError, RegistryUserError

log = Logger("gridreg.demo")

INSTANCE = "DemoIceGrid"
REPLICAS = ("Master", "Replica1")
NODES = ("node1", "node2")
APPLICATION = "DemoApp"
#: the directory holding the gridreg package: the sample servers' PYTHONPATH
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


def sample_application() -> str:
    """The sample descriptor shipped in this package."""
    return resources.files("gridreg.demo").joinpath("demo-app.xml").read_text(encoding="utf-8")


class _Child(ProcessProtocol):
    """A child process whose output goes to a log file."""

    def __init__(self, name: str, logfile: Path) -> None:
        self.name = name
        self.output = logfile.open("ab")
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output.write(data)
        self.output.flush()

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.output.close()
        self.ended.callback(None)


class DemoGrid:
    """The files and processes of the demo grid."""

    def __init__(self, reactor: Any, root: Path, base_port: int) -> None:
        self.reactor = reactor
        self.root = root
        self.base_port = base_port
        self.children: list[tuple[Any, _Child]] = []

    def port(self, replica: str, kind: str) -> int:
        return (
            self.base_port
            + 10 * REPLICAS.index(replica)
            + ("client", "server", "internal").index(kind)
        )

    @property
    def locator(self) -> str:
        endpoints = ":".join(f"tcp -h 127.0.0.1 -p {self.port(r, 'client')}" for r in REPLICAS)
        return f"{INSTANCE}/Locator:{endpoints}"

    @property
    def application_file(self) -> Path:
        return self.root / "demo-app.xml"

    def _tls(self, role: str, name: str) -> dict[str, str]:
        return {
            "IceSSL.DefaultDir": str(self.root / "certs"),
            "IceSSL.CAs": "ca.pem",
            "IceSSL.CertFile": f"{role}-{name}.pem",
            "IceSSL.KeyFile": f"{role}-{name}.key",
        }

    def write_files(self) -> None:
        """Certificates, a property file per process, and the application to deploy."""
        make_demo_certs(
            str(self.root / "certs"),
            replicas=REPLICAS,
            nodes=NODES,
            admins=["admin"],
            instance=INSTANCE,
        )
        for replica in REPLICAS:
            client, server, internal = (
                f"tcp -h 127.0.0.1 -p {self.port(replica, kind)}"
                for kind in ("client", "server", "internal")
            )
            _write_properties(
                self.root / f"{replica}.cfg",
                {
                    "IceGrid.InstanceName": INSTANCE,
                    "IceGrid.Registry.ReplicaName": replica,
                    "IceGrid.Registry.Client.Endpoints": client,
                    "IceGrid.Registry.Server.Endpoints": server,
                    "IceGrid.Registry.Internal.Endpoints": internal,
                    "IceGrid.Registry.Data": str(self.root / "db" / replica),
                    "IceGrid.Registry.DynamicRegistration": "1",
                    "IceGrid.Registry.Trace.Replica": "1",
                    "IceGrid.Registry.Trace.Node": "1",
                    "IceGrid.Registry.Trace.Adapter": "1",
                    "Ice.Default.Locator": self.locator,
                    **self._tls("registry", replica),
                },
            )
        for node in NODES:
            _write_properties(
                self.root / f"{node}.cfg",
                {
                    "IceGrid.Node.Name": node,
                    "IceGrid.Node.Data": str(self.root / "nodes" / node),
                    "IceGrid.Node.Output": str(self.root / "logs" / "servers"),
                    "IceGrid.Node.Trace.Activator": "1",
                    # honoured only for servers that name root: the demo's do when run as root
                    "IceGrid.Node.AllowRunningServersAsRoot": "1",
                    "IceGrid.Node.Trace.Server": "1",
                    "Ice.Default.Locator": self.locator,
                    **self._tls("node", node),
                },
            )
            (self.root / "nodes" / node).mkdir(parents=True, exist_ok=True)
        (self.root / "logs" / "servers").mkdir(parents=True, exist_ok=True)
        _write_properties(
            self.root / "admin.cfg",
            {"Ice.Default.Locator": self.locator, **self._tls("admin", "admin")},
        )
        _write_properties(self.root / "client.cfg", {"Ice.Default.Locator": self.locator})
        # the servers run under this interpreter, importing this gridreg
        self.application_file.write_text(
            set_variables(
                sample_application(),
                [
                    ("python", sys.executable),
                    ("pythonpath", str(PACKAGE_ROOT)),
                    ("user", "root" if os.geteuid() == 0 else ""),
                ],
            ),
            encoding="utf-8",
        )

    def spawn(self, name: str, args: list[str]) -> _Child:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = _Child(name, logs / f"{name}.log")
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), environment.get("PYTHONPATH", "")) if p
        )
        process = self.reactor.spawnProcess(
            child, args[0], args, env=environment, path=str(self.root)
        )
        self.children.append((process, child))
        return child

    async def _sleep(self, seconds: float) -> None:
        await task.deferLater(self.reactor, seconds, lambda: None)

    async def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory, Protocol

        factory = Factory.forProtocol(Protocol)
        factory.noisy = False
        waited = 0.0
        while True:
            try:
                protocol = await TCP4ClientEndpoint(self.reactor, "127.0.0.1", port).connect(
                    factory
                )
                protocol.transport.loseConnection()
                return
            except ConnectError:  # not listening yet (Twisted's, not the builtin)
                if waited >= timeout:
                    raise
                await self._sleep(0.1)
                waited += 0.1

    async def admin(self) -> AdminSession:
        """An admin session with the master, as C{gridadmin --config admin.cfg} opens it."""
        properties = load_file(self.root / "admin.cfg")
        return await open_admin_session(self.reactor, properties, None, 10.0)

    async def start(self) -> None:
        """Write the files, start the replicas, deploy, start the nodes and wait for them."""
        self.write_files()
        for replica in REPLICAS:
            self.spawn(
                replica,
                [sys.executable, "-m", "twisted", "gridregistry", "--config", f"{replica}.cfg"],
            )
            await self.wait_for_port(self.port(replica, "client"))
            log.info("replica {replica} is up", replica=replica)
        session = await self.admin()
        try:
            await self.deploy(session)
            for node in NODES:
                self.spawn(
                    node, [sys.executable, "-m", "twisted", "gridnode", "--config", f"{node}.cfg"]
                )
            for node in NODES:
                await self.wait_for_node(session, node)
                log.info("node {node} is up", node=node)
        finally:
            await session.close()

    async def deploy(self, session: AdminSession) -> None:
        """Add the sample application, or update it when a previous run added it."""
        xml = self.application_file.read_text(encoding="utf-8")
        try:
            name, serial = await session.upload_and_add_application(xml, False)
            verb = "added"
        except (ApplicationError, RegistryUserError) as e:
            if "already exists" not in str(e):
                raise
            name, serial = await session.upload_and_add_application(xml, True)
            verb = "updated"
        log.info("application {name} {verb} (serial {serial})", name=name, verb=verb, serial=serial)

    async def wait_for_node(self, session: AdminSession, node: str, timeout: float = 30.0) -> None:
        waited = 0.0
        while True:
            try:
                if (await session.node_control(node, "ping")).get("alive"):
                    return
            except NotFoundError:
                pass  # not registered yet
            if waited >= timeout:
                raise AdminSessionError(f"node `{node}' did not register within {timeout:g}s")
            await self._sleep(0.2)
            waited += 0.2

    async def stop(self) -> None:
        """SIGTERM to every child still running, nodes first; fires when all have exited."""
        for process, child in reversed(self.children):
            if not child.ended.called:
                process.signalProcess("TERM")
        await defer.DeferredList([c.ended for _, c in self.children])


def _write_properties(path: Path, properties: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{key} = {value}\n" for key, value in properties.items())
    path.write_text("# written by gridreg.demo\n" + text)
