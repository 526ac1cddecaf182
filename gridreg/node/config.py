# -*- test-case-name: tests.test_node_config -*-
"""
A node's settings, read once from Ice properties with IceGrid's names, so an
C{icegridnode} configuration file works unchanged. Bad or missing values
stop start-up with a message naming the property.
"""

from __future__ import annotations

import os
from typing import Optional

import attrs

from gridreg.config.properties import Properties, PropertyError
from gridreg.ice.types import Proxy

#: IceGrid.Node.WaitTime's default: activation and deactivation timeouts, seconds
DEFAULT_WAIT_TIME = 60


@attrs.frozen
class NodeTrace:
    """IceGrid.Node.Trace.*: 0 is silent, higher levels say more."""

    server: int = 0
    adapter: int = 0
    activator: int = 0
    replica: int = 0

    @classmethod
    def from_properties(cls, properties: Properties) -> "NodeTrace":
        return cls(
            *(
                properties.get_int(f"IceGrid.Node.Trace.{category}", 0)
                for category in ("Server", "Adapter", "Activator", "Replica")
            )
        )


@attrs.frozen
class NodeConfig:
    """
    What one node is and how it runs servers.

    @ivar data_dir: C{IceGrid.Node.Data}; servers' generated configuration
        files live under C{servers/<id>/config}, their data under
        C{servers/<id>/data}.
    @ivar output_dir: C{IceGrid.Node.Output}, or None: servers inherit the
        node's stdout and stderr.
    @ivar wait_time: C{IceGrid.Node.WaitTime}, the default activation and
        deactivation timeout in seconds.
    @ivar disable_on_failure: C{IceGrid.Node.DisableOnFailure}: 0 keeps a
        failed server enabled, N > 0 disables it for N seconds, < 0 until an
        administrator enables it.
    @ivar properties_override: C{IceGrid.Node.PropertiesOverride}, as
        (name, value) pairs set on every server.
    @ivar print_servers_ready: C{IceGrid.Node.PrintServersReady}: the token
        printed as C{<token> ready} once every C{always} server is up.
    """

    name: str
    data_dir: str
    locator: Proxy
    instance_name: str = "IceGrid"
    output_dir: Optional[str] = None
    redirect_err_to_out: bool = False
    print_servers_ready: str = ""
    wait_time: int = DEFAULT_WAIT_TIME
    disable_on_failure: int = 0
    properties_override: tuple[tuple[str, str], ...] = ()
    allow_running_as_root: bool = False
    #: IceGrid.Node.ProcessorSocketCount: divides the load averages; 0 counts processors
    processors: int = 0
    #: GridReg.Node.LoadAverageFile: where the load averages are read (a container's
    #: own, or a test's; /proc/loadavg by default)
    load_file: str = "/proc/loadavg"
    trace: NodeTrace = NodeTrace()
    properties: Optional[Properties] = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_properties(cls, properties: Properties) -> "NodeConfig":
        """
        @raise PropertyError: a value is missing or malformed; the message
            names the property and where it was set.
        """
        name = properties.get("IceGrid.Node.Name") or ""
        if not name:
            raise PropertyError(
                "IceGrid.Node.Name is not set: a node needs a name (--node-name NAME, "
                "or IceGrid.Node.Name in its configuration file)"
            )
        if "/" in name or name.strip() != name:
            raise PropertyError(
                f"IceGrid.Node.Name ({properties.source('IceGrid.Node.Name')}): "
                f"{name!r} is not a valid node name"
            )
        data_dir = properties.get("IceGrid.Node.Data") or ""
        if not data_dir:
            raise PropertyError(
                "IceGrid.Node.Data is not set: a node needs a directory for its servers' "
                "configuration files"
            )
        locator = properties.get_proxy("Ice.Default.Locator")
        if locator is None:
            raise PropertyError(
                "Ice.Default.Locator is not set: a node finds the registry replicas through it"
            )
        wait_time = properties.get_int("IceGrid.Node.WaitTime", DEFAULT_WAIT_TIME)
        if wait_time <= 0:
            raise PropertyError(
                f"IceGrid.Node.WaitTime ({properties.source('IceGrid.Node.WaitTime')}): "
                f"must be more than 0 seconds, not {wait_time}"
            )
        output = properties.get("IceGrid.Node.Output") or None
        return cls(
            name=name,
            data_dir=os.path.abspath(data_dir),
            locator=locator,
            instance_name=locator.identity.category or "IceGrid",
            output_dir=os.path.abspath(output) if output else None,
            redirect_err_to_out=properties.get_int("IceGrid.Node.RedirectErrToOut", 0) > 0,
            print_servers_ready=properties.get("IceGrid.Node.PrintServersReady") or "",
            wait_time=wait_time,
            disable_on_failure=properties.get_int("IceGrid.Node.DisableOnFailure", 0),
            properties_override=_overrides(properties),
            allow_running_as_root=properties.get_int("IceGrid.Node.AllowRunningServersAsRoot", 0)
            > 0,
            processors=_non_negative(properties, "IceGrid.Node.ProcessorSocketCount"),
            load_file=properties.get("GridReg.Node.LoadAverageFile") or "/proc/loadavg",
            trace=NodeTrace.from_properties(properties),
            properties=properties,
        )


def _overrides(properties: Properties) -> tuple[tuple[str, str], ...]:
    """
    C{IceGrid.Node.PropertiesOverride}: whitespace-separated C{Name=Value}
    (a bare C{Name} means C{Name=1}, as Ice's command-line form).
    """
    key = "IceGrid.Node.PropertiesOverride"
    text = properties.get(key) or ""
    pairs = []
    for word in text.split():
        if word.startswith("--"):
            word = word[2:]
        name, sep, value = word.partition("=")
        if not name:
            raise PropertyError(f"{key} ({properties.source(key)}): {word!r} is not Name=Value")
        pairs.append((name, value if sep else "1"))
    return tuple(pairs)


def _non_negative(properties: Properties, key: str) -> int:
    value = properties.get_int(key, 0)
    if value < 0:
        raise PropertyError(f"{key} ({properties.source(key)}): must be 0 or more, not {value}")
    return value
