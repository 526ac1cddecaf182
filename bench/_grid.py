"""
Replicated grids for the replication and failover benchmarks: a master and
slaves of either registry on loopback, with the same instance name, ports
chosen once per replica (so a restarted replica keeps them) and one
directory per replica.

  - IceGrid: C{icegridregistry} processes; slaves find the master through
    C{Ice.Default.Locator} (the master's client endpoint), replicas talk
    plain TCP on their internal endpoints, admin access uses the null
    permissions verifier.
  - gridreg: C{twist gridregistry} processes whose internal endpoints talk
    mutual TLS with certificates from L{gridreg.certs.make_demo_certs}, or,
    with C{internal="tcp"}, plain TCP (C{GridReg.Internal.Insecure}) as
    IceGrid's do here, so the process loads no TLS library
    (L{gridreg.tls_gate}); every replica's C{Ice.Default.Locator} lists
    every replica of the grid.

Writes go through L{Writer}s: IceGrid's admin session in a real Ice client
(C{bench/ice_admin_driver.py}), gridreg's L{AdminSession} in this process
or, for the replication benchmark, in one of its own
(C{bench/gridreg_admin_driver.py}).
Visibility on a replica is observed either by a real Ice client
(L{IceObserver}) or from this process (L{probe_object}). Every time here is
C{time.monotonic()}, which is C{CLOCK_MONOTONIC} in every process of the
machine, so times taken in different processes compare.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater

from bench._harness import GRIDREG_PROPERTIES, LEAN, LOOPBACK, REPO_ROOT
from gridreg.admin.session import AdminSession, open_admin_session
from gridreg.certs import make_demo_certs
from gridreg.config.properties import Properties
from gridreg.ice.client import IceClientProtocol
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import ReplyStatus
from gridreg.ice.types import ENCODING_1_1, Identity, OperationMode, Proxy, TcpEndpoint
from gridreg.registry.state import ObjectInfo, object_mutation
from gridreg.store.sqlite import SQLiteStore
from tests._processes import (
    ICE_PYTHON,
    LineProcess,
    RunningRegistry,
    free_port,
    ice_env,
    start_gridregistry,
    start_icegridregistry,
)

INSTANCE = "DemoIceGrid"
MASTER = "Master"
#: every replica name a benchmark may start (gridreg needs a certificate for each)
REPLICA_NAMES = (MASTER, *(f"Replica{i}" for i in range(1, 17)))
TYPE_ID = "::Demo::Hello"
#: what the benchmark's well-known objects point at (nothing listens there)
TARGET_ENDPOINTS = f"tcp -h {LOOPBACK} -p 10000"
BENCH_DIR = REPO_ROOT / "bench"
STORE_BATCH = 1000
#: how gridreg's replicas and admin clients reach internal endpoints (L{Grid})
INTERNAL = ("tls", "tcp")


_tracked: list[LineProcess] = []
_cleanup_installed: list[bool] = []


def track(reactor: Any, process: LineProcess) -> LineProcess:
    """
    Terminate C{process} when the reactor shuts down, if it still runs: an
    interrupted benchmark (Ctrl-C stops the reactor without running the
    coroutines' C{finally} blocks) leaves no registry or client behind.
    """
    if not _cleanup_installed:
        _cleanup_installed.append(True)
        reactor.addSystemEventTrigger("before", "shutdown", _terminate_tracked)
    _tracked[:] = [p for p in _tracked if p.ended is None]
    _tracked.append(process)
    return process


def _terminate_tracked() -> Deferred[Any]:
    running = [p for p in _tracked if p.ended is None]
    return DeferredList([p.terminate() for p in running], consumeErrors=True)


def object_name(category: str, prefix: str, index: int) -> str:
    return f"{category}/{prefix}{index}"


class Grid:
    """
    The replicas of one registry kind under C{root}: started, stopped,
    killed and signalled by name.
    """

    def __init__(
        self, reactor: Any, kind: str, root: Path, names: Sequence[str], internal: str = "tls"
    ) -> None:
        #: how gridreg's replicas are started: "twist", or "lean" (kind C{LEAN})
        self.launcher = "twist"
        if kind == LEAN:
            kind, self.launcher = "gridreg", "lean"
        if kind not in ("icegrid", "gridreg"):
            raise ValueError(f"unknown registry {kind!r}")
        if internal not in INTERNAL:
            raise ValueError(f"unknown internal transport {internal!r}")
        #: gridreg's internal sessions: "tls" (mutual TLS) or "tcp" (in the clear)
        self.internal = internal
        self.reactor = reactor
        self.kind = kind
        self.root = root
        self.names = tuple(names)
        self.ports = {
            name: {what: free_port() for what in ("client", "server", "internal")}
            for name in self.names
        }
        self.running: dict[str, RunningRegistry] = {}
        #: more properties for some replicas, by name (gridreg's debug switches)
        self.extra: dict[str, dict[str, str]] = {}
        self.certs = root / "certs"
        root.mkdir(parents=True, exist_ok=True)
        if kind == "gridreg":
            make_demo_certs(
                str(self.certs), replicas=REPLICA_NAMES, admins=["admin"], instance=INSTANCE
            )

    def client_port(self, name: str) -> int:
        return self.ports[name]["client"]

    def locator(self, *names: str) -> str:
        """The locator proxy listing C{names} (default: every replica), in that order."""
        endpoints = ":".join(
            f"tcp -h {LOOPBACK} -p {self.ports[n]['client']}" for n in (names or self.names)
        )
        return f"{INSTANCE}/Locator:{endpoints}"

    def data_dir(self, name: str) -> Path:
        """Where replica C{name} keeps its database (what the start helpers use)."""
        return (self.root / name / "db").resolve()

    def wipe(self, name: str) -> None:
        """Forget replica C{name}'s database: its next start is a fresh replica."""
        shutil.rmtree(self.data_dir(name), ignore_errors=True)

    def internal_properties(self, certificate: str) -> dict[str, str]:
        """How a gridreg process of this grid secures internal sessions, as C{certificate}."""
        if self.internal == "tcp":
            return {"GridReg.Internal.Insecure": "1"}
        return {
            "IceSSL.DefaultDir": str(self.certs),
            "IceSSL.CAs": "ca.pem",
            "IceSSL.CertFile": f"{certificate}.pem",
            "IceSSL.KeyFile": f"{certificate}.key",
        }

    def properties(self, name: str) -> dict[str, str]:
        ports = self.ports[name]
        common = {
            "IceGrid.InstanceName": INSTANCE,
            "IceGrid.Registry.Client.Endpoints": f"tcp -h {LOOPBACK} -p {ports['client']}",
            "IceGrid.Registry.Server.Endpoints": f"tcp -h {LOOPBACK} -p {ports['server']}",
            "IceGrid.Registry.Internal.Endpoints": f"tcp -h {LOOPBACK} -p {ports['internal']}",
        }
        if self.kind == "icegrid":
            props = dict(common, **{"IceGrid.Registry.LMDB.MapSize": "512"})
            if name != MASTER:
                props["IceGrid.Registry.ReplicaName"] = name
                props["Ice.Default.Locator"] = self.locator(MASTER)
            return props
        return {
            **common,
            **GRIDREG_PROPERTIES,
            **self.extra.get(name, {}),
            "IceGrid.Registry.ReplicaName": name,
            "Ice.Default.Locator": self.locator(),
            **self.internal_properties(f"registry-{name}"),
        }

    async def start(self, name: str) -> RunningRegistry:
        """Start replica C{name}; fires once its client endpoint accepts connections."""
        if name in self.running:
            raise RuntimeError(f"{self.kind} replica {name} is already running")
        workdir = self.root / name
        if self.kind == "icegrid":
            registry = await start_icegridregistry(
                self.reactor, workdir, instance=INSTANCE, extra_props=self.properties(name)
            )
        else:
            registry = await start_gridregistry(
                self.reactor, workdir, self.properties(name), launcher=self.launcher
            )
        track(self.reactor, registry.process)
        self.running[name] = registry
        return registry

    def pid(self, name: str) -> int:
        pid = self.running[name].process.pid
        assert pid is not None
        return pid

    async def stop(self, name: str) -> None:
        registry = self.running.pop(name, None)
        if registry is not None:
            await registry.stop()

    def signal(self, name: str, signal: str) -> None:
        """Send C{signal} (C{"KILL"}, C{"STOP"}) to replica C{name}."""
        self.running[name].process.signal(signal)

    async def stop_all(self) -> None:
        """Stop every running replica (a stopped one is continued first)."""
        running, self.running = self.running, {}
        await DeferredList([r.stop() for r in running.values()], consumeErrors=True)


# -- writing -----------------------------------------------------------------------


class Writer:
    """Admin writes on the master of one grid."""

    async def add(self, identity: str) -> tuple[float, float]:
        """Add one well-known object; return when the write started and was acknowledged."""
        raise NotImplementedError

    async def add_many(
        self, category: str, prefix: str, start: int, count: int, in_flight: int
    ) -> float:
        """Add C{count} objects with C{in_flight} outstanding; return the seconds taken."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


@attrs.define
class IceDriver:
    """A C{bench/ice_admin_driver.py} process (see its docstring)."""

    process: LineProcess

    @classmethod
    async def start(
        cls, reactor: Any, locator: str, properties: Mapping[str, str] = {}, name: str = "driver"
    ) -> IceDriver:
        args = [ICE_PYTHON, str(BENCH_DIR / "ice_admin_driver.py"), f"--locator={locator}"]
        args += [f"--property={k}={v}" for k, v in properties.items()]
        return await cls.spawn(reactor, name, args, ice_env())

    @classmethod
    async def spawn(
        cls, reactor: Any, name: str, args: Sequence[str], env: Mapping[str, str]
    ) -> IceDriver:
        """Start a driver process and wait for its C{ready} line."""
        process = track(reactor, LineProcess.spawn(reactor, name, args, env, BENCH_DIR))
        try:
            await process.next_event("ready", timeout=30)
        except BaseException:
            await process.terminate()
            raise
        return cls(process)

    async def call(self, *command: Any, timeout: float = 60.0) -> dict[str, Any]:
        self.process.write_line(list(command))
        result = await self.process.next_event(lambda e: "ok" in e and "command" in e, timeout)
        if not result["ok"]:
            raise RuntimeError(f"{self.process.name}: {command[0]} failed: {result}")
        return result

    async def stop(self) -> None:
        await self.process.stop_gracefully()


class IceGridWriter(Writer):
    """IceGrid's admin session, in a real Ice client pointed at the master."""

    def __init__(self, driver: IceDriver) -> None:
        self.driver = driver

    @classmethod
    async def open(cls, reactor: Any, grid: Grid) -> IceGridWriter:
        driver = await IceDriver.start(reactor, grid.locator(MASTER), name="icegrid admin")
        return cls(driver)

    async def add(self, identity: str) -> tuple[float, float]:
        result = await self.driver.call("add", identity, TARGET_ENDPOINTS, TYPE_ID)
        return result["start"], result["ack"]

    async def add_many(
        self, category: str, prefix: str, start: int, count: int, in_flight: int
    ) -> float:
        options = {
            "category": category,
            "prefix": prefix,
            "start": start,
            "count": count,
            "in_flight": in_flight,
            "endpoints": TARGET_ENDPOINTS,
            "type": TYPE_ID,
        }
        result = await self.driver.call("add_many", options, timeout=600)
        if result["errors"]:
            raise RuntimeError(f"IceGrid refused {result['errors']} adds: {result['error_types']}")
        return float(result["seconds"])

    async def close(self) -> None:
        await self.driver.stop()


def _proxy(identity: str) -> str:
    return f"{identity}:{TARGET_ENDPOINTS}"


class GridregWriter(Writer):
    """gridreg's admin session (AMP over mutual TLS), in this process."""

    def __init__(self, session: AdminSession) -> None:
        self.session = session

    @classmethod
    async def open(cls, reactor: Any, grid: Grid, timeout: float = 30.0) -> GridregWriter:
        properties = Properties()
        for key, value in {
            "Ice.Default.Locator": grid.locator(MASTER),
            **grid.internal_properties("admin-admin"),
        }.items():
            properties.set(key, value)
        return cls(await open_admin_session(reactor, properties, None, timeout))

    async def add(self, identity: str) -> tuple[float, float]:
        start = time.monotonic()
        await self.session.add_object(_proxy(identity), TYPE_ID)
        return start, time.monotonic()

    async def add_many(
        self, category: str, prefix: str, start: int, count: int, in_flight: int
    ) -> float:
        slots = DeferredSemaphore(max(1, in_flight))
        begin = time.monotonic()

        def one(index: int) -> Deferred[int]:
            proxy = _proxy(object_name(category, prefix, index))
            return slots.run(
                lambda: Deferred.fromCoroutine(self.session.add_object(proxy, TYPE_ID))
            )

        await gatherResults([one(i) for i in range(start, start + count)], consumeErrors=True)
        return time.monotonic() - begin

    async def close(self) -> None:
        await self.session.close()


class GridregDriverWriter(IceGridWriter):
    """
    gridreg's admin session in a process of its own
    (C{bench/gridreg_admin_driver.py}, the same commands as IceGrid's
    driver), so that its CPU per write is read apart and it shares an
    interpreter with nothing else, as IceGrid's writer.
    """

    @classmethod
    async def open(cls, reactor: Any, grid: Grid) -> GridregDriverWriter:
        properties = {
            "Ice.Default.Locator": grid.locator(MASTER),
            **grid.internal_properties("admin-admin"),
        }
        args = [sys.executable, str(BENCH_DIR / "gridreg_admin_driver.py")]
        args += [f"--property={k}={v}" for k, v in properties.items()]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        return cls(await IceDriver.spawn(reactor, "gridreg admin", args, env))


async def open_writer(reactor: Any, grid: Grid, own_process: bool = False) -> Writer:
    """
    The grid's admin writer; with C{own_process}, gridreg's too runs in a
    process of its own (L{GridregDriverWriter}), else in this one.
    """
    if grid.kind == "icegrid":
        return await IceGridWriter.open(reactor, grid)
    if own_process:
        return await GridregDriverWriter.open(reactor, grid)
    return await GridregWriter.open(reactor, grid)


def build_gridreg_store(data_dir: Path, category: str, prefix: str, count: int) -> Deferred[float]:
    """
    Write C{count} objects into a new gridreg store (the master's, before it
    starts), C{STORE_BATCH} per change; fire with the seconds it took.
    """

    async def build() -> float:
        begin = time.monotonic()
        store = SQLiteStore(str(data_dir))
        await store.open()
        endpoints = (TcpEndpoint(LOOPBACK, 10000),)
        try:
            for first in range(0, count, STORE_BATCH):
                mutations = []
                for i in range(first, min(count, first + STORE_BATCH)):
                    identity = Identity(f"{prefix}{i}", category)
                    info = ObjectInfo(Proxy(identity, endpoints=endpoints), TYPE_ID)
                    mutations.append(object_mutation(identity, info))
                await store.commit(mutations)
        finally:
            await store.close()
        return time.monotonic() - begin

    return Deferred.fromCoroutine(build())


def build_gridreg_store_from(
    reactor: Any, root: Path | None, data_dir: Path, category: str, prefix: str, count: int
) -> Deferred[object]:
    """
    L{build_gridreg_store}, by the checkout C{root}'s own code (a process
    of its own) when given: a store is written in the schema of the
    gridreg that will open it (a baseline older than this checkout refuses
    a newer schema).
    """
    if root is None:
        return build_gridreg_store(data_dir, category, prefix, count)
    from twisted.internet.utils import getProcessOutputAndValue

    script = (
        "import sys; from twisted.internet import task; from pathlib import Path;"
        "from bench._grid import build_gridreg_store;"
        "task.react(lambda r: build_gridreg_store(Path(sys.argv[1]), sys.argv[2],"
        " sys.argv[3], int(sys.argv[4])))"
    )
    env = dict(os.environ, PYTHONPATH=str(root))

    def built(result: tuple[bytes, bytes, int]) -> None:
        out, err, code = result
        if code != 0:
            why = err.decode(errors="replace")
            raise RuntimeError(f"building the store from {root} failed: {why}")

    return getProcessOutputAndValue(
        sys.executable,
        ["-c", script, str(data_dir), category, prefix, str(count)],
        env=env,
        path=str(root),
        reactor=reactor,
    ).addCallback(built)


# -- observing ---------------------------------------------------------------------


class IceObserver:
    """A real Ice client pointed only at one replica, polling for objects."""

    def __init__(self, driver: IceDriver) -> None:
        self.driver = driver

    @classmethod
    async def open(cls, reactor: Any, grid: Grid, replica: str) -> IceObserver:
        driver = await IceDriver.start(reactor, grid.locator(replica), name=f"observer {replica}")
        return cls(driver)

    async def start_poll(
        self, identity: str, timeout: float = 10.0, interval: float = 0.0005
    ) -> Deferred[dict[str, Any]]:
        """
        Start polling for C{identity}; fire once the poller has begun, with
        a Deferred of the poll's result.
        """
        process = self.driver.process
        process.write_line(["poll", identity, timeout, interval])
        await process.next_event("polling", timeout=30)
        return process.next_event(lambda e: e.get("command") == "poll", timeout + 30)

    async def close(self) -> None:
        await self.driver.stop()


@attrs.frozen
class ProbeResult:
    """When a replica first accepted an Ice connection, and when it first knew the object."""

    connected: float
    found: float


async def probe_object(
    reactor: Any,
    port: int,
    identity: Identity,
    timeout: float,
    interval: float = 0.002,
) -> ProbeResult:
    """
    Ask the locator on C{port} for C{identity} every C{interval} seconds
    (connecting again whenever the connection fails) until it answers with
    a proxy; bounded by C{timeout}.

    @raise RuntimeError: no answer in time.
    """
    what = f"object {identity.category}/{identity.name}"
    params = _identity_params(identity)
    return await _probe(reactor, port, "findObjectById", params, what, timeout, interval)


def _identity_params(identity: Identity) -> bytes:
    """A C{findObjectById}'s parameters: the identity."""
    out = OutputStream(ENCODING_1_1)
    out.write_identity(identity)
    return out.getvalue()


async def _answers_with_a_proxy(
    protocol: IceClientProtocol, operation: str, params: bytes, timeout: float
) -> bool:
    """Ask the locator on C{protocol}'s connection; whether it answered with a proxy."""
    reply = await protocol.invoke(
        Identity("Locator", INSTANCE), operation, OperationMode.NONMUTATING, params, timeout=timeout
    )
    if reply.status != ReplyStatus.SUCCESS:
        return False
    assert reply.payload is not None and reply.encoding is not None
    return InputStream(reply.payload, reply.encoding).read_proxy() is not None


async def probe_adapter(
    reactor: Any, port: int, adapter_id: str, timeout: float, interval: float = 0.002
) -> ProbeResult:
    """Like L{probe_object}, for C{findAdapterById}."""
    out = OutputStream(ENCODING_1_1)
    out.write_string(adapter_id)
    what = f"adapter {adapter_id}"
    return await _probe(reactor, port, "findAdapterById", out.getvalue(), what, timeout, interval)


async def _probe(
    reactor: Any,
    port: int,
    operation: str,
    params: bytes,
    what: str,
    timeout: float,
    interval: float,
) -> ProbeResult:
    deadline = time.monotonic() + timeout
    protocol: IceClientProtocol | None = None
    connected: float | None = None
    try:
        while time.monotonic() < deadline:
            try:
                if protocol is None or not protocol.connected:
                    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=1)
                    protocol = await connectProtocol(endpoint, IceClientProtocol(reactor))
                    await protocol.when_validated().addTimeout(2, reactor)
                    if connected is None:
                        connected = time.monotonic()
                if await _answers_with_a_proxy(protocol, operation, params, 5):
                    found = time.monotonic()
                    assert connected is not None
                    return ProbeResult(connected, found)
            except Exception:  # refused, lost, timed out: connect again
                _abort(protocol)
                protocol = None
            await deferLater(reactor, interval)
    finally:
        _abort(protocol)
    raise RuntimeError(f"{what} not found on port {port} in {timeout} s")


async def missing_objects(
    reactor: Any, port: int, identities: Sequence[str], timeout: float = 30.0
) -> list[str]:
    """
    Ask the locator on C{port} once for each of C{identities} (one
    connection, one C{findObjectById} at a time): those it does not know.

    @raise RuntimeError: the replica could not be asked.
    """
    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=5)
    protocol = await connectProtocol(endpoint, IceClientProtocol(reactor))
    missing = []
    try:
        await protocol.when_validated().addTimeout(timeout, reactor)
        for text in identities:
            params = _identity_params(parse_identity(text))
            if not await _answers_with_a_proxy(protocol, "findObjectById", params, timeout):
                missing.append(text)
    finally:
        _abort(protocol)
    return missing


@attrs.define
class PacedWrites:
    """
    Admin writes at a steady rate, one in flight (a driver takes one command
    at a time): a write starts at each 1/C{rate} s slot, or at once when
    the one before overran its slot. L{samples} are (identity, start, ack).
    """

    reactor: Any
    writer: Writer
    rate: float
    prefix: str
    samples: list[tuple[str, float, float]] = attrs.Factory(list)
    _stopping: bool = False
    _done: Deferred[None] | None = None

    def start(self) -> None:
        self._done = Deferred.fromCoroutine(self._run())

    async def _run(self) -> None:
        interval = 1.0 / self.rate
        clock = self.reactor
        slot = clock.seconds()
        index = 0
        while not self._stopping:
            pause = slot - clock.seconds()
            if pause > 0:
                await deferLater(self.reactor, pause)
                if self._stopping:
                    break
            identity = f"{self.prefix}{index}"
            start, ack = await self.writer.add(identity)
            self.samples.append((identity, start, ack))
            index += 1
            slot = max(slot + interval, clock.seconds())

    async def stop(self) -> list[tuple[str, float, float]]:
        """Start no more writes; fire with every write's sample once the last is acknowledged."""
        self._stopping = True
        assert self._done is not None
        await self._done
        return self.samples


def _abort(protocol: IceClientProtocol | None) -> None:
    if protocol is not None and protocol.connected:
        transport: Any = protocol.transport
        transport.abortConnection()


def parse_identity(text: str) -> Identity:
    category, _, name = text.rpartition("/")
    return Identity(name, category)


async def wait_synced(
    reactor: Any, grid: Grid, writer: Writer, slaves: Sequence[str], tag: str, timeout: float = 60.0
) -> None:
    """
    Write a sentinel object on the master and wait until every slave in
    C{slaves} answers for it: they are registered and caught up.
    """
    identity = f"sentinel/{tag}"
    await writer.add(identity)
    await gatherResults(
        [
            Deferred.fromCoroutine(
                probe_object(reactor, grid.client_port(s), parse_identity(identity), timeout)
            )
            for s in slaves
        ],
        consumeErrors=True,
    )


def remove_tree(path: os.PathLike[str] | str, keep: bool) -> None:
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


def internal_argument(parser: Any) -> None:
    """C{--gridreg-internal}: the benchmarks' choice of L{Grid}'s C{internal}."""
    parser.add_argument(
        "--gridreg-internal",
        choices=INTERNAL,
        default="tls",
        help="gridreg's internal sessions: mutual TLS (default), or plain TCP as IceGrid's "
        "here (GridReg.Internal.Insecure; the registry then loads no TLS library)",
    )
