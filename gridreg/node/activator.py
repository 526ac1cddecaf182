# -*- test-case-name: tests.test_node_servers,tests.test_node_server_processes -*-
"""
How a node starts server processes and finds them again: the executable as
C{execvp} would find it, the account a server runs as, its output files,
signals, and pid records that let a restarted node recognise servers a
crashed (SIGKILLed) node left behind.

Everything that touches the host goes through L{Host} and L{ProcReader} so
the lifecycle code is tested without real processes.
"""

from __future__ import annotations

import os
import pwd
import signal as _signal
from collections.abc import Mapping
from typing import Any, Callable, Optional, Protocol

import attrs

from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol

from gridreg.protocol.errors import NodeError
from gridreg.registry.descriptor_model import ServerDescriptor

__all__ = [
    "Host",
    "ProcReader",
    "ReactorSpawner",
    "Spawner",
    "parse_signal",
    "resolve_executable",
    "run_as",
    "signal_name",
]


class Spawner(Protocol):
    """Starts one child process (L{ReactorSpawner} in production, a fake in tests)."""

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
    ) -> IProcessTransport: ...


@attrs.frozen
class ReactorSpawner:
    """L{Spawner} over C{IReactorProcess.spawnProcess}: no shell, explicit argv and env."""

    reactor: Any

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
    ) -> IProcessTransport:
        # What the node's own process already is is not asked for again, so
        # Twisted can use posix_spawn instead of fork (about 3 ms less per
        # start, bench.activation): same account, same working directory.
        if uid == os.geteuid() and gid in (None, os.getegid()):
            uid = gid = None
        if os.path.abspath(path) == os.path.abspath("."):
            path = None  # type: ignore[assignment]
        return self.reactor.spawnProcess(  # type: ignore[no-any-return]
            protocol, executable, args, env, path, uid, gid, False, child_fds
        )


@attrs.frozen
class Host:
    """What the node asks of its own process and accounts (injectable for tests)."""

    geteuid: Callable[[], int] = os.geteuid
    getpwnam: Callable[[str], Any] = pwd.getpwnam
    environ: Mapping[str, str] = attrs.field(factory=lambda: dict(os.environ))
    cwd: Callable[[], str] = os.getcwd
    is_executable: Callable[[str], bool] = lambda p: os.path.isfile(p) and os.access(p, os.X_OK)


def resolve_executable(exe: str, pwd_dir: str, host: Host) -> str:
    """
    C{exe} as C{execvp} finds it: a name with a slash is a path (relative to
    the server's working directory), a bare name is looked up on the node's
    C{PATH}.

    @raise NodeError: nothing executable by that name.
    """
    if not exe:
        raise NodeError("the server has no executable")
    if "/" in exe:
        path = exe if os.path.isabs(exe) else os.path.join(pwd_dir, exe)
        if host.is_executable(path):
            return os.path.normpath(path)
        raise NodeError(f"couldn't find `{exe}' executable: {path} is not an executable file")
    for directory in (host.environ.get("PATH") or os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", exe)
        if host.is_executable(candidate):
            return candidate
    raise NodeError(f"couldn't find `{exe}' executable on the node's PATH")


def run_as(
    descriptor: ServerDescriptor, allow_root: bool, host: Host
) -> tuple[Optional[int], Optional[int]]:
    """
    The (uid, gid) to start C{descriptor}'s server as, or (None, None) for
    the node's own account. As IceGrid 3.7.8 does (checked against it): a
    root node runs servers as the descriptor's C{user}, else as C{nobody};
    C{IceGrid.Node.AllowRunningServersAsRoot} only allows C{user="root"}. A
    node that is not root can only run servers as itself.

    @raise NodeError: the account does not exist, or is not the node's.
    """
    euid = host.geteuid()
    user = descriptor.user
    if euid == 0:
        name = user or "nobody"
        try:
            account = host.getpwnam(name)
        except KeyError:
            raise NodeError(f"unknown user account `{name}'") from None
        if account.pw_uid == 0 and not allow_root:
            raise NodeError(
                "running the server as root is not allowed (IceGrid.Node.AllowRunningServersAsRoot)"
            )
        return account.pw_uid, account.pw_gid
    if user:
        try:
            account = host.getpwnam(user)
        except KeyError:
            raise NodeError(f"unknown user account `{user}'") from None
        if account.pw_uid != euid:
            raise NodeError(
                f"node has insufficient privileges to load server under user account `{user}'"
            )
    return None, None


def parse_signal(text: str) -> int:
    """
    A signal named as IceGrid accepts it: C{SIGUSR1}, C{USR1} or C{10}.

    @raise NodeError: no such signal.
    """
    value = text.strip()
    if value.isdigit():
        number = int(value)
        if number in {s.value for s in _signal.Signals}:
            return number
        raise NodeError(f"unknown signal {text!r}")
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise NodeError(f"unknown signal {text!r}") from None


def signal_name(number: Optional[int]) -> str:
    """C{SIGKILL} for 9 (C{signal N} if unknown)."""
    if number is None:
        return "no signal"
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def output_fds(output_dir: Optional[str], server_id: str, err_to_out: bool) -> dict[int, int]:
    """
    The child's stdout and stderr: C{<Output>/<server>.out} and C{.err}
    opened for appending (both C{.out} with C{RedirectErrToOut}), or the
    node's own when there is no output directory. The caller closes the
    returned descriptors (other than 1 and 2) once the child is spawned.
    """
    if output_dir is None:
        return {1: 1, 2: 2}
    os.makedirs(output_dir, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    out = os.open(os.path.join(output_dir, server_id + ".out"), flags, 0o644)
    if err_to_out:
        return {1: out, 2: out}
    try:
        err = os.open(os.path.join(output_dir, server_id + ".err"), flags, 0o644)
    except OSError:
        os.close(out)
        raise
    return {1: out, 2: err}


def close_fds(fds: Mapping[int, Any]) -> None:
    """Close the descriptors L{output_fds} (or a stdin) opened in the node."""
    for fd in set(v for k, v in fds.items() if isinstance(v, int) and v > 2):
        os.close(fd)


# -- pid records ---------------------------------------------------------------


@attrs.frozen
class ProcReader:
    """
    A process's start time from C{/proc/<pid>/stat} (field 22, in clock
    ticks since boot): with the pid it names one process for good, as a pid
    alone may be reused after the node crashed.
    """

    read: Callable[[str], str] = lambda path: open(path, encoding="ascii").read()  # noqa: SIM115
    kill: Callable[[int, int], None] = os.kill

    def start_time(self, pid: int) -> Optional[str]:
        """Its start time, or None when there is no such (live) process."""
        try:
            stat = self.read(f"/proc/{pid}/stat")
        except OSError:
            return None
        # the command name (field 2) is in parentheses and may hold spaces
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 20 or fields[0] == "Z":
            return None
        return fields[19]


def pid_record_path(data_dir: str, server_id: str) -> str:
    return os.path.join(data_dir, "servers", server_id, "pid")


def write_pid_record(data_dir: str, server_id: str, pid: int, start_time: Optional[str]) -> None:
    """Record a running server (atomically: a crash leaves the old or the new record)."""
    path = pid_record_path(data_dir, server_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{pid} {start_time or ''}\n")
    os.replace(tmp, path)


def remove_pid_record(data_dir: str, server_id: str) -> None:
    try:
        os.remove(pid_record_path(data_dir, server_id))
    except FileNotFoundError:
        pass


def read_pid_records(data_dir: str) -> list[tuple[str, int, str]]:
    """Every (server id, pid, start time) recorded under C{<data>/servers}; bad records skipped."""
    root = os.path.join(data_dir, "servers")
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    records = []
    for name in names:
        try:
            with open(pid_record_path(data_dir, name), encoding="ascii") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) == 2 and fields[0].isdigit():
            records.append((name, int(fields[0]), fields[1]))
    return records
