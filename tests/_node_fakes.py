"""Fakes for node server tests: a recording spawner and a host with no real accounts."""

from __future__ import annotations

from typing import Any, Optional

import attrs
from zope.interface import implementer

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from gridreg.config.properties import Properties
from gridreg.ice.stringify import proxy_from_string
from gridreg.node.activator import Host, ProcReader
from gridreg.node.config import NodeConfig


@implementer(IProcessTransport)
class FakeProcess:
    """A spawned child that exits when a test says so."""

    def __init__(
        self, spawner: "FakeSpawner", protocol: ProcessProtocol, pid: int, **spawned: Any
    ) -> None:
        self.spawner = spawner
        self.protocol = protocol
        self.pid: Optional[int] = pid
        self.signals: list[int] = []
        self.spawned = spawned
        self.exit_on_term = spawner.exit_on_term

    def signalProcess(self, signal: Any) -> None:  # noqa: N802
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(signal)
        if self.exit_on_term and signal in (15, 9):
            self.exit(signal=signal)

    def exit(self, code: int = 0, signal: Optional[int] = None) -> None:
        self.pid = None
        if signal is None and code == 0:
            reason = Failure(ProcessDone(0))
        else:
            reason = Failure(ProcessTerminated(exitCode=None if signal else code, signal=signal))
        self.protocol.processEnded(reason)

    def closeStdin(self) -> None: ...  # noqa: N802
    def closeStdout(self) -> None: ...  # noqa: N802
    def closeStderr(self) -> None: ...  # noqa: N802
    def closeChildFD(self, descriptor: int) -> None: ...  # noqa: N802
    def writeToChild(self, childFD: int, data: bytes) -> None: ...  # noqa: N802,N803
    def loseConnection(self) -> None: ...  # noqa: N802


class FakeSpawner:
    """Records every spawn; C{fail_with} makes the next ones raise."""

    def __init__(self) -> None:
        self.processes: list[FakeProcess] = []
        self.next_pid = 1000
        self.fail_with: Optional[Exception] = None
        self.exit_on_term = True

    def spawn(
        self,
        protocol: ProcessProtocol,
        executable: str,
        args: list[str],
        env: dict[str, str],
        path: str,
        uid: Optional[int],
        gid: Optional[int],
        child_fds: dict[int, Any],
    ) -> FakeProcess:
        if self.fail_with is not None:
            raise self.fail_with
        self.next_pid += 1
        process = FakeProcess(
            self,
            protocol,
            self.next_pid,
            executable=executable,
            args=args,
            env=env,
            path=path,
            uid=uid,
            gid=gid,
            child_fds=dict(child_fds),
        )
        self.processes.append(process)
        return process

    @property
    def last(self) -> FakeProcess:
        return self.processes[-1]


@attrs.frozen
class _Account:
    pw_name: str
    pw_uid: int
    pw_gid: int


ACCOUNTS = {
    "root": _Account("root", 0, 0),
    "nobody": _Account("nobody", 65534, 65534),
    "alice": _Account("alice", 1000, 1000),
    "bob": _Account("bob", 1001, 1001),
}


def fake_host(euid: int = 1000, **kw: Any) -> Host:
    def getpwnam(name: str) -> Any:
        return ACCOUNTS[name]

    return Host(
        geteuid=lambda: euid,
        getpwnam=getpwnam,
        environ={"PATH": "/fake/bin", "HOME": "/h"},
        cwd=lambda: "/node/cwd",
        is_executable=lambda p: p in ("/fake/bin/srv", "/opt/app/bin/srv"),
        **kw,
    )


class FakeProc:
    """/proc as a dict: pid to start time; kill records and can end a process."""

    def __init__(self) -> None:
        self.start_times: dict[int, str] = {}
        self.kills: list[tuple[int, int]] = []
        self.die_on: set[int] = set()

    def reader(self) -> ProcReader:
        def read(path: str) -> str:
            pid = int(path.split("/")[2])
            if pid not in self.start_times:
                raise FileNotFoundError(path)
            fields = ["S"] + ["0"] * 18 + [self.start_times[pid]] + ["0"] * 5
            return f"{pid} (x y) " + " ".join(fields)

        def kill(pid: int, sig: int) -> None:
            if pid not in self.start_times:
                raise ProcessLookupError(pid)
            self.kills.append((pid, sig))
            if sig in self.die_on:
                del self.start_times[pid]

        return ProcReader(read=read, kill=kill)


LOCATOR = "IceGrid/Locator:tcp -h 127.0.0.1 -p 4061"


def node_config(data_dir: str, **kw: Any) -> NodeConfig:
    """A node's config whose properties hold its locator as written (the config file quotes that)."""
    properties = Properties()
    properties.set("Ice.Default.Locator", LOCATOR)
    return NodeConfig(
        name="node1",
        data_dir=data_dir,
        locator=proxy_from_string(LOCATOR),
        properties=properties,
        **kw,
    )
