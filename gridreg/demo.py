# -*- test-case-name: tests.test_demo -*-
"""
A demo grid on one machine: three registry replicas over mutual TLS, the
sample application deployed, and two sample Ice servers in its replica group.

Run C{python3 -m gridreg.demo} (or C{gridreg-demo}); stop it with Ctrl-C.
Everything lives under C{--dir} (default C{demo-grid/}): certificates,
configuration files, databases and logs; a second run reuses them, so the
databases carry over.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from twisted.internet import defer, task
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure

from gridreg.certs import make_demo_certs

log = Logger("gridreg.demo")

INSTANCE = "DemoIceGrid"
REPLICAS = ("Master", "Replica1", "Replica2")
ICE_PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parent.parent


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

    def write_files(self) -> None:
        """Certificates and one property file per replica, plus the admin's."""
        certs = self.root / "certs"
        make_demo_certs(str(certs), replicas=REPLICAS, admins=["admin"], instance=INSTANCE)
        for replica in REPLICAS:
            client, server, internal = (
                f"tcp -h 127.0.0.1 -p {self.port(replica, kind)}"
                for kind in ("client", "server", "internal")
            )
            lines = {
                "IceGrid.InstanceName": INSTANCE,
                "IceGrid.Registry.ReplicaName": replica,
                "IceGrid.Registry.Client.Endpoints": client,
                "IceGrid.Registry.Server.Endpoints": server,
                "IceGrid.Registry.Internal.Endpoints": internal,
                "IceGrid.Registry.Data": str(self.root / "db" / replica),
                "IceGrid.Registry.DynamicRegistration": "1",
                "IceGrid.Registry.Trace.Replica": "1",
                "IceGrid.Registry.Trace.Adapter": "1",
                "Ice.Default.Locator": self.locator,
                "IceSSL.DefaultDir": str(certs),
                "IceSSL.CAs": "ca.pem",
                "IceSSL.CertFile": f"registry-{replica}.pem",
                "IceSSL.KeyFile": f"registry-{replica}.key",
            }
            _write_properties(self.root / f"{replica}.cfg", lines)
        _write_properties(
            self.root / "admin.cfg",
            {
                "Ice.Default.Locator": self.locator,
                "IceSSL.DefaultDir": str(certs),
                "IceSSL.CAs": "ca.pem",
                "IceSSL.CertFile": "admin-admin.pem",
                "IceSSL.KeyFile": "admin-admin.key",
            },
        )
        _write_properties(self.root / "client.cfg", {"Ice.Default.Locator": self.locator})

    def spawn(self, name: str, args: list[str], env: Optional[dict[str, str]] = None) -> _Child:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = _Child(name, logs / f"{name}.log")
        environment = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), environment.get("PYTHONPATH", "")) if p
        )
        process = self.reactor.spawnProcess(
            child, args[0], args, env=environment, path=str(self.root)
        )
        self.children.append((process, child))
        return child

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
            except Exception:
                if waited >= timeout:
                    raise
                await task.deferLater(self.reactor, 0.1, lambda: None)
                waited += 0.1

    async def start(self, app: Path) -> None:
        self.write_files()
        for replica in REPLICAS:
            self.spawn(
                replica,
                [sys.executable, "-m", "twisted", "gridregistry", "--config", f"{replica}.cfg"],
            )
            await self.wait_for_port(self.port(replica, "client"))
            log.info("replica {replica} is up", replica=replica)
        await self.deploy(app)
        if os.path.exists(ICE_PYTHON) and _has_ice():
            for index in (1, 2):
                server = f"HelloServer-{index}"
                self.spawn(
                    server,
                    [
                        ICE_PYTHON,
                        str(REPO / "tests" / "interop" / "ice_server.py"),
                        f"--locator={self.locator}",
                        f"--adapter={server}.Hello@HelloGroup",
                        f"--name={server}",
                        "--ignore-stdin",
                    ],
                )
        else:
            log.warn(
                "no Ice for Python at {python}: the sample servers are not started",
                python=ICE_PYTHON,
            )

    async def deploy(self, app: Path) -> None:
        """Add (or update) the sample application with gridadmin."""
        for verb in ("add", "update"):
            child = self.spawn(
                f"gridadmin-{verb}",
                [
                    sys.executable,
                    "-m",
                    "gridreg.admin.cli",
                    "--config",
                    "admin.cfg",
                    "application",
                    verb,
                    str(app),
                ],
            )
            await child.ended
            if (
                verb == "add"
                and "already exists" not in (self.root / "logs" / "gridadmin-add.log").read_text()
            ):
                return

    async def stop(self) -> None:
        for process, child in reversed(self.children):
            if not child.ended.called:
                try:
                    process.signalProcess("TERM")
                except Exception:
                    pass
        await defer.DeferredList([c.ended for _, c in self.children])


def _has_ice() -> bool:
    return shutil.which(ICE_PYTHON) is not None and os.path.isdir(
        "/usr/lib/python3/dist-packages/Ice"
    )


def _write_properties(path: Path, properties: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{key} = {value}\n" for key, value in properties.items())
    path.write_text("# written by gridreg.demo\n" + text)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dir", default="demo-grid", help="where the grid keeps its files")
    parser.add_argument("--base-port", type=int, default=4061, help="Master's client port")
    parser.add_argument(
        "--app", default=str(REPO / "etc" / "demo-app.xml"), help="the application to deploy"
    )
    parser.add_argument("--exit-after-start", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])

    async def run(reactor: Any) -> None:
        grid = DemoGrid(reactor, Path(options.dir).resolve(), options.base_port)
        # Ctrl-C or SIGTERM stops the reactor; the children are stopped first
        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: defer.Deferred.fromCoroutine(grid.stop())
        )
        await grid.start(Path(options.app).resolve())
        log.info(
            "The demo grid is up.\n"
            "  Ice clients:  Ice.Default.Locator={locator}\n"
            "  admin:        gridadmin --config {root}/admin.cfg registry list\n"
            "  logs:         {root}/logs/\n"
            "Ctrl-C stops it.",
            locator=grid.locator,
            root=grid.root,
        )
        if not options.exit_after_start:
            await defer.Deferred()  # until the reactor is stopped by a signal

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
