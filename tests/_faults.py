# -*- test-case-name: tests.test_faults_processes -*-
"""
Fault injection for tests with real registry processes, on loopback only.

  - L{TcpProxy}: a TCP relay the test controls: forward, black-hole (accept,
    stop reading, never forward), cut (close both sides), heal.
  - L{FakeLocator}: an Ice locator that answers C{findObjectById} from a
    fixed table, so a replica can be pointed at the master through a
    L{TcpProxy} (give it as the replica's C{Ice.Default.Locator}).
  - L{hang}, L{resume}, L{kill}: SIGSTOP, SIGCONT, SIGKILL of a registry.
  - L{corrupt_database}, L{foreign_database}: a data directory a registry
    must refuse.
  - L{SmallDisk}: a small tmpfs mounted on a data directory, filled to the
    last byte and emptied again on demand (needs the right to mount).

Nothing here blocks the reactor for long: waits are L{Deferred}s.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import ObjectNotFoundException
from gridreg.ice.messages import Request
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.server import IceServerFactory
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import Identity, Proxy
from gridreg.store.sqlite import DB_FILENAME
from tests._lineprocess import LOOPBACK, ProcessReactor
from tests._processes import RunningRegistry

__all__ = [
    "FakeLocator",
    "SmallDisk",
    "TcpProxy",
    "corrupt_database",
    "foreign_database",
    "hang",
    "kill",
    "resume",
]

FORWARD = "forward"
BLACKHOLE = "blackhole"
CUT = "cut"
PARTITION = "partition"


# -- the TCP proxy --------------------------------------------------------------


class _Side(Protocol):
    """One end of a relayed connection; the other end is C{peer}."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.peer: _Side | None = None
        self.pending: list[bytes] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        if self.pair.proxy.mode == PARTITION:
            self.pair.proxy.dropped += len(data)  # lost on the way
            self.pair.proxy._notify()
            return
        if self.pair.half_open:
            self.abort()  # what the peer's host answers to data for a dead connection
            return
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.pair.side_lost(self)

    def pause(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.pauseProducing()

    def resume(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.resumeProducing()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abortConnection()


class _Pair:
    """A client's connection to the proxy and the proxy's to the target."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.inbound = _Side(self)
        self.outbound: _Side | None = None
        self.connecting = False
        self.closed = False
        #: one side closed during a partition; the other was not told
        self.half_open = False

    def connect_onward(self) -> None:
        """Open the proxy's connection to the target and start relaying."""
        if self.connecting or self.closed:
            return
        self.connecting = True
        outbound = _Side(self)
        endpoint = TCP4ClientEndpoint(self.proxy.reactor, *self.proxy.target, timeout=5)

        def connected(side: _Side) -> None:
            if self.closed:
                side.abort()
                return
            self.outbound = side
            side.peer, self.inbound.peer = self.inbound, side
            for data in self.inbound.pending:
                side.transport.write(data)  # type: ignore[union-attr]
            self.inbound.pending.clear()
            if self.proxy.mode == BLACKHOLE:
                side.pause()
            else:
                self.inbound.resume()
            self.proxy.connected += 1
            self.proxy._notify()

        def failed(failure: Failure) -> None:
            self.close()

        connectProtocol(endpoint, outbound).addCallbacks(connected, failed)

    def side_lost(self, side: _Side) -> None:
        if self.proxy.mode == PARTITION and not self.closed:
            other = self.outbound if side is self.inbound else self.inbound
            if other is not None and not other.lost:
                self.half_open = True
                return
        # a close on one side closes the other, as the end of a TCP connection would
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.pairs.discard(self)
        self.inbound.abort()
        if self.outbound is not None:
            self.outbound.abort()

    def pause(self) -> None:
        self.inbound.pause()
        if self.outbound is not None:
            self.outbound.pause()

    def resume(self) -> None:
        if self.outbound is None:
            self.connect_onward()
            return
        self.inbound.resume()
        self.outbound.resume()


class _ProxyFactory(Factory):
    noisy = False

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy

    def buildProtocol(self, addr: Any) -> _Side:
        return self.proxy._accepted()


class TcpProxy:
    """
    A TCP relay on loopback, from L{port} to C{target}, that the test
    switches between modes:

      - L{forward} (the start): bytes flow both ways; a close on either side
        closes the other;
      - L{blackhole}: connections stay open, but the proxy stops reading
        both sides and relays nothing, as in a partition; new connections
        are accepted and left hanging; L{heal} resumes them;
      - L{cut}: every connection is closed, both sides, and new ones are
        closed as soon as accepted until L{heal};
      - L{partition}: bytes both ways are read and dropped, closes are not
        passed on (a peer learns of one only when it next sends), new
        connections hang as with L{blackhole};
      - L{heal}: back to forwarding.

    @ivar accepted: how many connections the proxy has accepted.
    @ivar connected: how many of them it has relayed to the target.
    @ivar dropped: how many bytes partitions have dropped.
    """

    def __init__(self, reactor: ProcessReactor, target: tuple[str, int]) -> None:
        self.reactor = reactor
        self.target = target
        self.mode = FORWARD
        self.pairs: set[_Pair] = set()
        self.accepted = 0
        self.connected = 0
        self.dropped = 0
        self._port: IListeningPort | None = None
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    async def start(self) -> TcpProxy:
        endpoint = TCP4ServerEndpoint(self.reactor, 0, interface=LOOPBACK)
        self._port = await endpoint.listen(_ProxyFactory(self))
        return self

    @property
    def port(self) -> int:
        assert self._port is not None, "start() the proxy first"
        port: int = self._port.getHost().port
        return port

    @property
    def endpoint(self) -> str:
        """The proxy's address as an Ice endpoint string."""
        return f"tcp -h {LOOPBACK} -p {self.port}"

    def _accepted(self) -> _Side:
        self.accepted += 1
        pair = _Pair(self)
        self.pairs.add(pair)
        if self.mode == CUT:
            self.reactor.callLater(0, pair.close)
        elif self.mode == FORWARD:
            self.reactor.callLater(0, pair.connect_onward)
        else:
            self.reactor.callLater(0, pair.inbound.pause)
        return pair.inbound

    def _notify(self) -> None:
        waiting, self._waiters = self._waiters, []
        for check, deferred in waiting:
            if check():
                deferred.callback(None)
            else:
                self._waiters.append((check, deferred))

    def _when(self, check: Callable[[], bool], timeout: float) -> Deferred[None]:
        if check():
            return succeed(None)
        deferred: Deferred[None] = Deferred()
        self._waiters.append((check, deferred))
        return deferred.addTimeout(timeout, self.reactor)

    def when_connected(self, count: int, timeout: float = 20.0) -> Deferred[None]:
        """Fire once the proxy has relayed C{count} connections in all."""
        return self._when(lambda: self.connected >= count, timeout)

    def when_dropped(self, count: int, timeout: float = 20.0) -> Deferred[None]:
        """Fire once a partition has dropped C{count} bytes in all."""
        return self._when(lambda: self.dropped >= count, timeout)

    def forward(self) -> None:
        self.heal()

    def blackhole(self) -> None:
        self.mode = BLACKHOLE
        for pair in list(self.pairs):
            pair.pause()

    def cut(self) -> None:
        self.mode = CUT
        for pair in list(self.pairs):
            pair.close()

    def partition(self) -> None:
        """
        Drop every byte both ways and pass no close on, as a network
        partition does: a side that closes meanwhile leaves its peer with a
        dead connection, reset only when the peer next sends something.
        """
        self.mode = PARTITION
        for pair in list(self.pairs):
            pair.resume()

    def heal(self) -> None:
        """Forward again (dead connections left by a partition stay dead)."""
        self.mode = FORWARD
        for pair in list(self.pairs):
            pair.resume()

    def stop(self) -> Deferred[None]:
        """Close every connection and stop listening."""
        for pair in list(self.pairs):
            pair.close()
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        return Deferred.fromCoroutine(_stop_listening(port))


async def _stop_listening(port: IListeningPort) -> None:
    await port.stopListening()


# -- a locator that points wherever the test says --------------------------------


class _FixedLocatorServant(Servant):
    type_id = "::Ice::Locator"

    def __init__(self, objects: Mapping[Identity, Proxy]) -> None:
        self.objects = objects

    @operation("findObjectById", idempotent=True)
    def find_object_by_id(self, request: Request, params: InputStream) -> bytes:
        proxy = self.objects.get(params.read_identity())
        if proxy is None:
            raise ObjectNotFoundException()
        out = OutputStream(request.encoding)
        out.write_proxy(proxy)
        return out.getvalue()

    @operation("findAdapterById", idempotent=True)
    def find_adapter_by_id(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_proxy(None)
        return out.getvalue()

    @operation("getRegistry", idempotent=True)
    def get_registry(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_proxy(None)
        return out.getvalue()


class FakeLocator:
    """
    An Ice locator on loopback that knows only C{objects}, identity to
    endpoints (e.g. C{{"DemoIceGrid/InternalRegistry-Master": proxy.endpoint}});
    L{locator} is its C{Ice.Default.Locator} value.
    """

    def __init__(self, reactor: ProcessReactor, instance: str, objects: Mapping[str, str]) -> None:
        self.reactor = reactor
        self.instance = instance
        table: dict[Identity, Proxy] = {}
        for identity, endpoints in objects.items():
            parsed = proxy_from_string(f"{identity}:{endpoints}")
            table[parsed.identity] = parsed
        self.adapter = ObjectAdapter("FakeLocator")
        self.adapter.add(Identity("Locator", instance), _FixedLocatorServant(table))
        self._port: IListeningPort | None = None

    async def start(self) -> FakeLocator:
        endpoint = TCP4ServerEndpoint(self.reactor, 0, interface=LOOPBACK)
        self._port = await endpoint.listen(IceServerFactory(self.adapter))
        return self

    @property
    def locator(self) -> str:
        assert self._port is not None, "start() the locator first"
        return f"{self.instance}/Locator:tcp -h {LOOPBACK} -p {self._port.getHost().port}"

    def stop(self) -> Deferred[None]:
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        return Deferred.fromCoroutine(_stop_listening(port))


# -- signals -------------------------------------------------------------------------


def hang(registry: RunningRegistry) -> None:
    """SIGSTOP: the process keeps its sockets open and answers nothing."""
    registry.process.signal("STOP")


def resume(registry: RunningRegistry) -> None:
    """SIGCONT after L{hang}."""
    registry.process.signal("CONT")


def kill(registry: RunningRegistry) -> Deferred[Any]:
    """SIGKILL; fires once the process is gone."""
    return registry.process.kill("KILL")


# -- databases a registry must refuse --------------------------------------------------


def database_file(data_dir: str | os.PathLike[str]) -> Path:
    """The database file of a registry's data directory."""
    return Path(data_dir) / DB_FILENAME


def corrupt_database(data_dir: str | os.PathLike[str]) -> Path:
    """
    Overwrite the first pages of the data directory's database (an existing
    one, or a new file) with bytes that are no SQLite header; return its path.
    """
    path = database_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    size = max(path.stat().st_size if path.exists() else 0, 8192)
    garbage = (b"this is not a database \xff\x00" * (size // 24 + 1))[:size]
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.write(garbage)
    return path


def foreign_database(data_dir: str | os.PathLike[str]) -> Path:
    """
    Put a valid SQLite database of another program where the registry's
    database belongs; return its path.
    """
    path = database_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    try:
        db.execute("CREATE TABLE songs (title TEXT, artist TEXT)")
        db.execute("INSERT INTO songs VALUES ('Blue in Green', 'Miles Davis')")
        db.commit()
    finally:
        db.close()
    return path


# -- a disk that fills up --------------------------------------------------------------


class SmallDisk:
    """
    A tmpfs of C{size_kib} mounted on C{path} (the data directory, which
    must be empty). L{fill} takes its last free byte with a ballast file;
    L{release} gives the space back. L{unmount} in a cleanup.
    """

    def __init__(self, reactor: ProcessReactor, path: Path, size_kib: int = 4096) -> None:
        self.reactor = reactor
        self.path = path
        self.size_kib = size_kib
        self.ballast = path / "ballast"
        self.mounted = False

    async def mount(self) -> str | None:
        """Mount; return why not (no privilege, no tmpfs) or C{None} once mounted."""
        self.path.mkdir(parents=True, exist_ok=True)
        out, err, code = await getProcessOutputAndValue(
            "/bin/mount",
            ["-t", "tmpfs", "-o", f"size={self.size_kib}k,mode=700", "tmpfs", str(self.path)],
            env=dict(os.environ),
            reactor=self.reactor,
        )
        if code != 0:
            return f"cannot mount a tmpfs (needs CAP_SYS_ADMIN): {(out + err).decode().strip()}"
        self.mounted = True
        return None

    def fill(self) -> int:
        """Write the ballast until the file system is full; return its size."""
        written = 0
        block = b"\0" * 4096
        with open(self.ballast, "ab", buffering=0) as f:
            while True:
                try:
                    written += f.write(block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        # a partial block may still fit
        with open(self.ballast, "ab", buffering=0) as f:
            for size in (2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
                try:
                    written += f.write(b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
        return written

    def release(self) -> None:
        self.ballast.unlink(missing_ok=True)

    async def unmount(self) -> None:
        if not self.mounted:
            return
        out, err, code = await getProcessOutputAndValue(
            "/bin/umount", ["-l", str(self.path)], env=dict(os.environ), reactor=self.reactor
        )
        if code != 0:
            raise RuntimeError(f"umount {self.path}: {(out + err).decode().strip()}")
        self.mounted = False
