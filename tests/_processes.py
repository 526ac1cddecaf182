# -*- test-case-name: tests.test_interop_icegrid -*-
"""
Real processes for integration tests and benchmarks.

Integration tests prove that gridreg interoperates with unmodified ZeroC Ice
3.7 programs, and that it behaves like the real C{icegridregistry}. This
module starts those programs (and our own C{twist gridregistry}) on the real
reactor and talks to them through line-oriented JSON on their stdio, without
ever blocking: every wait is a L{Deferred} with a timeout.

The Ice programs run under the system Python (L{ICE_PYTHON}), the only one
with the Debian C{python3-zeroc-ice} binding; see C{tests/interop/}.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred

from tests._lineprocess import (
    LOOPBACK,
    Event,
    LineProcess,
    ProcessError,
    ProcessReactor,
    free_port,
    wait_for_port,
)

__all__ = [
    "Event",
    "IceClient",
    "IceServer",
    "IceServerError",
    "LineProcess",
    "ProcessError",
    "RunningRegistry",
    "free_port",
    "ice_missing",
    "run_ice_client",
    "start_gridregistry",
    "start_ice_client",
    "start_ice_server",
    "start_icegridregistry",
    "wait_for_port",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
INTEROP_DIR = REPO_ROOT / "tests" / "interop"
ICE_PYTHON = os.environ.get("GRIDREG_ICE_PYTHON", "/usr/bin/python3")
ICEGRIDREGISTRY = shutil.which("icegridregistry")


def ice_missing() -> str | None:
    """
    Why real Ice programs cannot run here, or C{None} when they can.

    Tests skip with this reason, except when C{GRIDREG_REQUIRE_ICE=1} (as in
    CI), where a missing Ice installation must fail loudly instead.
    """
    if os.environ.get("GRIDREG_REQUIRE_ICE") == "1":
        return None
    if ICEGRIDREGISTRY is None:
        return "icegridregistry (Debian zeroc-icegrid) is not installed"
    if not os.path.exists(ICE_PYTHON):
        return f"{ICE_PYTHON} (with python3-zeroc-ice) is missing"
    return None


def endpoint_port(endpoint: str) -> int | None:
    """
    The C{-p} port of the first endpoint in an Ice endpoint string.
    """
    match = re.search(r"-p\s+(\d+)", endpoint)
    return int(match.group(1)) if match else None


@attrs.define
class RunningRegistry:
    """
    A registry process (IceGrid's or ours) and how to reach it.
    """

    process: LineProcess
    instance: str
    client_port: int
    server_port: int | None
    data_dir: Path
    config_file: Path
    host: str = LOOPBACK

    @property
    def client_endpoint(self) -> str:
        return f"tcp -h {self.host} -p {self.client_port}"

    @property
    def locator(self) -> str:
        """
        The C{Ice.Default.Locator} value for clients and servers.
        """
        return f"{self.instance}/Locator:{self.client_endpoint}"

    def stop(self) -> Deferred[LineProcess]:
        return self.process.terminate()

    def kill(self, signal: str = "KILL") -> Deferred[LineProcess]:
        return self.process.kill(signal)


def write_config(path: Path, properties: Mapping[str, str]) -> None:
    """
    Write Ice properties in Ice's C{key=value} file syntax.
    """
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))


async def _start_registry(
    reactor: ProcessReactor,
    name: str,
    args: list[str],
    env: Mapping[str, str],
    workdir: Path,
    properties: Mapping[str, str],
    config_file: Path,
    data_dir: Path,
    timeout: float | None,
    listening: Callable[[dict[str, Any]], bool] | None = None,
) -> RunningRegistry:
    """
    Spawn a registry; with a C{timeout}, wait until it listens: for the
    C{listening} log event when given (so a port that another process
    happened to hold is not taken for ours), and for its client port.
    """
    client_port = endpoint_port(properties["IceGrid.Registry.Client.Endpoints"])
    if client_port is None:
        raise ValueError("IceGrid.Registry.Client.Endpoints needs an explicit -p PORT")
    server = properties.get("IceGrid.Registry.Server.Endpoints")
    process = LineProcess.spawn(reactor, name, args, env, workdir)
    registry = RunningRegistry(
        process=process,
        instance=properties["IceGrid.InstanceName"],
        client_port=client_port,
        server_port=endpoint_port(server) if server else None,
        data_dir=data_dir,
        config_file=config_file,
    )
    if timeout is None:
        return registry
    try:
        if listening is not None:
            await process.next_event(listening, timeout=timeout)
        await wait_for_port(reactor, LOOPBACK, client_port, timeout, process)
    except BaseException:
        await process.terminate()
        raise
    return registry


#: how each launcher runs a registry: C{python -m} what
LAUNCHERS = {
    "twist": ("twisted", "gridregistry"),
    "lean": ("gridreg.registry",),
    #: the lean launcher with a timeline of its start-up (bench.slave_startup --timeline)
    "timeline": ("bench._slave_timeline",),
}


def _gridregistry_listens(event: dict[str, Any]) -> bool:
    """twist's log event of a gridregistry that listens on all its endpoints."""
    return str(event.get("log_format", "")).startswith("Registry {replica} serves clients on")


def start_icegridregistry(
    reactor: ProcessReactor,
    tmpdir: str | os.PathLike[str],
    instance: str = "DemoIceGrid",
    dynamic: bool = True,
    extra_props: Mapping[str, str] = {},
    timeout: float = 20.0,
) -> Deferred[RunningRegistry]:
    """
    Run ZeroC's C{icegridregistry} on free loopback ports with its database
    in C{tmpdir}/db; fire once its client endpoint accepts connections.
    """
    workdir = Path(tmpdir).resolve()
    data_dir = workdir / "db"
    data_dir.mkdir(parents=True, exist_ok=True)
    properties = {
        "IceGrid.InstanceName": instance,
        "IceGrid.Registry.Client.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
        "IceGrid.Registry.Server.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
        "IceGrid.Registry.Internal.Endpoints": f"tcp -h {LOOPBACK}",
        "IceGrid.Registry.LMDB.Path": str(data_dir),
        "IceGrid.Registry.LMDB.MapSize": "10",
        "IceGrid.Registry.DynamicRegistration": "1" if dynamic else "0",
        "IceGrid.Registry.PermissionsVerifier": f"{instance}/NullPermissionsVerifier",
        "IceGrid.Registry.AdminPermissionsVerifier": f"{instance}/NullPermissionsVerifier",
        "IceGrid.Registry.Discovery.Enabled": "0",
        **extra_props,
    }
    config_file = workdir / "icegridregistry.cfg"
    write_config(config_file, properties)
    executable = ICEGRIDREGISTRY or "/usr/bin/icegridregistry"
    args = [executable, f"--Ice.Config={config_file}"]
    return Deferred.fromCoroutine(
        _start_registry(
            reactor,
            "icegridregistry",
            args,
            dict(os.environ),
            workdir,
            properties,
            config_file,
            data_dir,
            timeout,
        )
    )


@attrs.frozen
class SslRegistry:
    """A master serving Ice clients on an C{ssl} endpoint, and what an IceSSL client needs."""

    registry: RunningRegistry
    port: int
    #: the properties that make a client trust the grid's CA (no certificate of its own)
    trust: dict[str, str]

    @property
    def locator(self) -> str:
        return f"DemoIceGrid/Locator:ssl -h {LOOPBACK} -p {self.port}"

    @property
    def client_properties(self) -> dict[str, str]:
        """A real Ice client with IceSSL, trusting the CA, as admin C{client}."""
        return {
            "Ice.Plugin.IceSSL": "IceSSL:createIceSSL",
            "IceSSL.CertFile": "admin-client.pem",
            "IceSSL.KeyFile": "admin-client.key",
            **self.trust,
        }


async def start_ssl_gridregistry(reactor: ProcessReactor, tmpdir: str) -> SslRegistry:
    """
    Run our registry with its client endpoint on C{ssl}, certificates made
    for the grid in C{tmpdir}/certs (replica C{Master}, admin C{client}).
    """
    from gridreg.certs import make_demo_certs

    workdir = Path(tmpdir).resolve()
    certs = workdir / "certs"
    make_demo_certs(str(certs), replicas=["Master"], admins=["client"], instance="DemoIceGrid")
    port = free_port()
    trust = {"IceSSL.DefaultDir": str(certs), "IceSSL.CAs": "ca.pem"}
    registry = await start_gridregistry(
        reactor,
        workdir,
        {
            "IceGrid.Registry.Client.Endpoints": f"ssl -h {LOOPBACK} -p {port}",
            "IceSSL.CertFile": "registry-Master.pem",
            "IceSSL.KeyFile": "registry-Master.key",
            **trust,
        },
    )
    return SslRegistry(registry, port, trust)


def start_gridregistry(
    reactor: ProcessReactor,
    tmpdir: str | os.PathLike[str],
    config_lines: Mapping[str, str] = {},
    args: Sequence[str] = (),
    timeout: float = 20.0,
    wait: bool = True,
    launcher: str = "twist",
) -> Deferred[RunningRegistry]:
    """
    Run our registry, C{python -m twisted gridregistry --config FILE ARGS}
    (C{twist}, which never daemonizes), with the repository on C{PYTHONPATH}
    so the plugin in C{twisted/plugins} is found; with C{launcher="lean"},
    C{python -m gridreg.registry --config FILE ARGS} (the C{gridregistry}
    console script, L{gridreg.registry.launch}) instead.

    C{config_lines} are Ice properties written to FILE on top of defaults:
    instance C{DemoIceGrid}, client and server endpoints on free loopback
    ports, C{IceGrid.Registry.Data} = C{tmpdir}/db, dynamic registration on.
    Fires once the client endpoint accepts connections (at once without
    C{wait}: for a registry expected to stop by itself).
    """
    workdir = Path(tmpdir).resolve()
    data_dir = workdir / "db"
    data_dir.mkdir(parents=True, exist_ok=True)
    properties = {
        "IceGrid.InstanceName": "DemoIceGrid",
        "IceGrid.Registry.Client.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
        "IceGrid.Registry.Server.Endpoints": f"tcp -h {LOOPBACK} -p {free_port()}",
        "IceGrid.Registry.Data": str(data_dir),
        "IceGrid.Registry.DynamicRegistration": "1",
        **config_lines,
    }
    config_file = workdir / "gridregistry.cfg"
    write_config(config_file, properties)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}")
    command = [sys.executable, "-m", *LAUNCHERS[launcher], "--config", str(config_file)]
    command.extend(args)
    return Deferred.fromCoroutine(
        _start_registry(
            reactor,
            "gridregistry",
            command,
            env,
            workdir,
            properties,
            config_file,
            data_dir,
            timeout if wait else None,
            _gridregistry_listens,
        )
    )


def ice_env() -> dict[str, str]:
    """
    The environment for the system-Python Ice scripts: ours, minus the
    variables that would point that interpreter at our own Python's modules.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _property_args(properties: Mapping[str, str]) -> list[str]:
    return [f"--property={key}={value}" for key, value in properties.items()]


class IceServerError(ProcessError):
    """
    The Ice server reported an error instead of becoming ready; C{type} is
    the Ice exception's name, e.g. C{"Ice.NotRegisteredException"}.
    """

    def __init__(self, event: Event, description: str) -> None:
        super().__init__(f"{event.get('type')}: {event.get('message')}\n{description}")
        self.type: str | None = event.get("type")
        self.event = event


@attrs.define
class IceServer:
    """
    A running C{tests/interop/ice_server.py} whose adapters are active.
    """

    process: LineProcess
    ready: Event

    @property
    def name(self) -> str:
        """
        What its servants' C{sayHello} answers.
        """
        return str(self.ready["name"])

    @property
    def adapters(self) -> dict[str, Any]:
        return dict(self.ready["adapters"])

    def port(self, adapter_id: str) -> int:
        return int(self.ready["adapters"][adapter_id]["ports"][0])

    def deactivate(self, adapter_id: str, timeout: float = 20.0) -> Deferred[Event]:
        """
        Deactivate one adapter, which unregisters it from the locator.
        """
        self.process.write_line(["deactivate", adapter_id])
        return self.process.next_event(
            lambda e: e.get("event") in ("deactivated", "command-error"), timeout
        )

    def stop(self) -> Deferred[LineProcess]:
        """
        Close stdin: the server destroys its communicator (unregistering
        its adapters) and exits.
        """
        return self.process.stop_gracefully()


def start_ice_server(
    reactor: ProcessReactor,
    locator: str | None,
    adapters: Sequence[str] = ("HelloAdapter",),
    replica_group: str | None = None,
    objects: Sequence[str] = ("hello",),
    name: str | None = None,
    properties: Mapping[str, str] = {},
    timeout: float = 20.0,
) -> Deferred[IceServer]:
    """
    Start a real Ice server (see C{tests/interop/ice_server.py}; an adapter
    may be given as C{ID@GROUP}) and fire once its adapters are active and
    registered with C{locator}.

    @raise IceServerError: (asynchronously) if activation failed; the
        process has exited by then.
    """
    args = [ICE_PYTHON, str(INTEROP_DIR / "ice_server.py")]
    if locator is not None:
        args.append(f"--locator={locator}")
    args.extend(f"--adapter={adapter}" for adapter in adapters)
    args.extend(f"--object={identity}" for identity in objects)
    if replica_group is not None:
        args.append(f"--replica-group={replica_group}")
    if name is not None:
        args.append(f"--name={name}")
    args.extend(_property_args(properties))
    process = LineProcess.spawn(
        reactor, f"ice_server {name or adapters[0]}", args, ice_env(), INTEROP_DIR
    )

    async def started() -> IceServer:
        try:
            event = await process.next_event(
                lambda e: e.get("event") in ("ready", "error"), timeout
            )
        except BaseException:
            await process.terminate()
            raise
        if event["event"] == "error":
            await process.stop_gracefully()
            raise IceServerError(event, process.describe())
        return IceServer(process, event)

    return Deferred.fromCoroutine(started())


def _client_args(locator: str | None, properties: Mapping[str, str]) -> list[str]:
    args = [ICE_PYTHON, str(INTEROP_DIR / "ice_client.py")]
    if locator is not None:
        args.append(f"--locator={locator}")
    return args + _property_args(properties)


Command = Sequence[Any] | str


def _encode(command: Command) -> str:
    return command if isinstance(command, str) else json.dumps(list(command))


def run_ice_client(
    reactor: ProcessReactor,
    locator: str | None,
    commands: Sequence[Command],
    properties: Mapping[str, str] = {},
    timeout: float = 30.0,
) -> Deferred[list[Event]]:
    """
    Run C{tests/interop/ice_client.py} once with C{commands} (each a word
    list such as C{["resolve", "hello@HelloAdapter"]}) and fire with one
    result dict per command, in order.
    """
    args = _client_args(locator, properties) + [_encode(c) for c in commands]
    process = LineProcess.spawn(reactor, "ice_client", args, ice_env(), INTEROP_DIR)
    timer = reactor.callLater(timeout, process.terminate)

    async def finished() -> list[Event]:
        await process.when_ended()
        timed_out = not timer.active()
        if not timed_out:
            timer.cancel()
        results = [e for e in process.events if "ok" in e and "command" in e]
        if process.exit_code != 0 or len(results) < len(commands):
            why = f"timed out after {timeout} s; " if timed_out else ""
            raise ProcessError(
                f"ice_client gave {len(results)} of {len(commands)} results ({why}"
                f"commands {list(commands)!r}):\n{process.describe()}"
            )
        return results[: len(commands)]

    return Deferred.fromCoroutine(finished())


async def assert_query_answers(reactor: ProcessReactor, registry: RunningRegistry) -> None:
    """A real Ice client finds the registry's Query object through its Locator."""
    [query] = await run_ice_client(
        reactor, registry.locator, [["findObjectById", "DemoIceGrid/Query"]]
    )
    if not query["ok"]:
        raise AssertionError(f"the registry did not answer findObjectById: {query}")


@attrs.define
class IceClient:
    """
    A long-lived C{ice_client.py}: one communicator (with its connections
    and locator cache) across many commands.
    """

    process: LineProcess

    def call(self, *command: Any, timeout: float = 30.0) -> Deferred[Event]:
        """
        Run one command, e.g. C{call("resolve", "hello@HelloAdapter")}, and
        fire with its result dict.
        """
        self.process.write_line(list(command))
        return self.process.next_event(lambda e: "ok" in e and "command" in e, timeout)

    def stop(self) -> Deferred[LineProcess]:
        return self.process.stop_gracefully()


def start_ice_client(
    reactor: ProcessReactor,
    locator: str | None,
    properties: Mapping[str, str] = {},
) -> IceClient:
    """
    Start an interactive Ice client that reads its commands from stdin.
    """
    process = LineProcess.spawn(
        reactor, "ice_client", _client_args(locator, properties), ice_env(), INTEROP_DIR
    )
    return IceClient(process)
