# -*- test-case-name: tests.test_node_server_config -*-
"""
The Ice configuration file a node writes for each server, as C{icegridnode}
3.7 writes it, at the same place: C{<IceGrid.Node.Data>/servers/<id>/config/config},
passed to the server as the last argument, C{--Ice.Config=<that path>}.

What a real icegridnode 3.7.8 wrote (node C{node1}, IceGrid.Node.Output
C{/d/out}, IceGrid.Node.PropertiesOverride C{Ice.Trace.Network=1 Foo.Bar=baz},
a server C{S1} with adapters C{A} (an object with C{property="Identity"})
and C{B} (id C{BId}, replica group C{RG}), properties P1, NodeVars, P0)::

    # Configuration file (12/01/26 11:26:27.315)

    # Server configuration
    Ice.Admin.ServerId=S1
    Ice.Admin.Endpoints=tcp -h localhost
    Ice.ProgramName=S1
    # Object adapter A
    A.Endpoints=tcp -h 127.0.0.1
    A.AdapterId=S1.A
    # Object adapter B
    B.Endpoints=tcp -h 127.0.0.1
    B.AdapterId=BId
    B.ReplicaGroupId=RG
    # Server descriptor properties
    Identity=obj1
    P1=v1
    NodeVars=node1 Linux vm 6.18.44-fc-v657 \\#1 SMP PREEMPT_DYNAMIC @0 x86_64 /d /d
    P0=v0
    Ice.StdErr=/d/out/S1.err
    Ice.StdOut=/d/out/S1.out
    Ice.Default.Locator=IceGrid/Locator:tcp -h 127.0.0.1 -p 4061
    # Node properties override
    Foo.Bar=baz
    Ice.Trace.Network=1

Observed: objects' C{property} attributes come first among the descriptor
properties; duplicates are written as they are (the last one wins when Ice
reads the file); the overrides are sorted by name; C{#} in a value is
escaped. We write the same lines in the same order.

C{Ice.Admin.Endpoints=tcp -h localhost} is kept: with it (and
C{Ice.Admin.ServerId} and the locator) an Ice server registers its
C{Ice::Process} proxy with the registry, which is how the node can ask it to
shut down gracefully (L{gridreg.node.server}). The admin object itself is
never used by gridreg; it listens on loopback only.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Mapping
from typing import Optional

import attrs

from gridreg.ice.stringify import proxy_to_string
from gridreg.node.config import NodeConfig
from gridreg.registry.descriptor_model import AdapterDescriptor, ServerDescriptor

__all__ = [
    "config_lines",
    "config_path",
    "escape_property",
    "node_variables",
    "render_config",
    "server_dir",
    "substitute_node_variables",
    "write_config",
]


def node_variables(config: NodeConfig) -> dict[str, str]:
    """The C{${node.*}} variables IceGrid leaves for the node to fill in."""
    uname = platform.uname()
    return {
        "node": config.name,
        "node.os": uname.system,
        "node.hostname": socket.gethostname(),
        "node.release": uname.release,
        "node.version": uname.version,
        "node.machine": uname.machine,
        "node.datadir": config.data_dir,
        "node.data": config.data_dir,
    }


def _substitute(text: str, variables: Mapping[str, str]) -> str:
    if "${" not in text:
        return text
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
    return text


def substitute_node_variables(
    descriptor: ServerDescriptor, variables: Mapping[str, str], data_dir: str
) -> ServerDescriptor:
    """
    C{descriptor} with the node variables (and C{${server.data}}, the
    server's data directory) substituted in every string the node uses.
    """
    names = dict(variables)
    names["server.data"] = os.path.join(server_dir(data_dir, descriptor.id), "data")

    def sub(text: str) -> str:
        return _substitute(text, names)

    return attrs.evolve(
        descriptor,
        exe=sub(descriptor.exe),
        pwd=sub(descriptor.pwd),
        options=tuple(sub(o) for o in descriptor.options),
        envs=tuple(sub(e) for e in descriptor.envs),
        properties=tuple((sub(k), sub(v)) for k, v in descriptor.properties),
        logs=tuple(sub(p) for p in descriptor.logs),
        adapters=tuple(
            attrs.evolve(a, endpoints=sub(a.endpoints), id=sub(a.id)) for a in descriptor.adapters
        ),
    )


def escape_property(text: str, escape_equal: bool = False) -> str:
    """
    A key or value as Ice's property reader needs it: C{#} (and C{=} in a
    key) escaped, leading and trailing spaces escaped, and a backslash doubled
    where it precedes an escaped character (IceGrid's C{escapeProperty}).
    """
    first = len(text) - len(text.lstrip(" "))
    last = len(text.rstrip(" "))
    out: list[str] = []
    backslashes = 0
    for i, c in enumerate(text):
        if c == "\\":
            backslashes += 1
            continue
        escaped = c == "#" or (c == "=" and escape_equal) or (c == " " and (i < first or i >= last))
        out.append("\\" * (backslashes * 2 if escaped else backslashes))
        backslashes = 0
        out.append("\\" + c if escaped else c)
    out.append("\\" * (backslashes * 2))
    return "".join(out)


def _adapter_lines(server: ServerDescriptor, adapter: AdapterDescriptor) -> list[tuple[str, str]]:
    lines = [
        (f"# Object adapter {adapter.name}", ""),
        (f"{adapter.name}.Endpoints", adapter.endpoints),
        (f"{adapter.name}.AdapterId", adapter.id),
    ]
    if adapter.replica_group_id:
        lines.append((f"{adapter.name}.ReplicaGroupId", adapter.replica_group_id))
    return lines


def config_lines(descriptor: ServerDescriptor, config: NodeConfig) -> list[tuple[str, str]]:
    """
    The file's entries after its header, in icegridnode's order: names
    starting with C{#} and an empty value are comment lines.
    """
    sid = descriptor.id
    lines: list[tuple[str, str]] = [
        ("# Server configuration", ""),
        ("Ice.Admin.ServerId", sid),
        ("Ice.Admin.Endpoints", "tcp -h localhost"),
        ("Ice.ProgramName", sid),
    ]
    for adapter in descriptor.adapters:
        lines.extend(_adapter_lines(descriptor, adapter))
    # objects' and allocatables' property attributes first, as icegridnode
    own = [
        (o.property, o.identity)
        for adapter in descriptor.adapters
        for o in (*adapter.objects, *adapter.allocatables)
        if o.property
    ]
    own.extend(descriptor.properties)
    if own:  # icegridnode writes the heading only when there is something under it
        lines.append(("# Server descriptor properties", ""))
        lines.extend(own)
    if config.output_dir is not None:
        # a descriptor's own Ice.StdOut / Ice.StdErr wins: icegridnode then
        # writes no line of its own for it (docs/icegrid-node-facts.md, "Log files")
        set_here = {key for key, _ in own}
        out = os.path.join(config.output_dir, sid + ".out")
        err = out if config.redirect_err_to_out else os.path.join(config.output_dir, sid + ".err")
        lines.extend(
            (key, path)
            for key, path in (("Ice.StdErr", err), ("Ice.StdOut", out))
            if key not in set_here
        )
    lines.append(("Ice.Default.Locator", _locator(config)))
    if config.properties_override:
        lines.append(("# Node properties override", ""))
        lines.extend(sorted(dict(config.properties_override).items()))
    return lines


def _locator(config: NodeConfig) -> str:
    """The node's own C{Ice.Default.Locator}, as written in its configuration."""
    written = config.properties.get("Ice.Default.Locator") if config.properties else None
    return written or proxy_to_string(config.locator)


def _timestamp(now: float) -> str:
    """IceUtil::Time::toDateTime: C{dd/mm/yy HH:MM:SS.mmm}, local time."""
    stamp = time.localtime(now)
    return time.strftime("%d/%m/%y %H:%M:%S", stamp) + f".{int(now * 1000) % 1000:03d}"


def render_config(descriptor: ServerDescriptor, config: NodeConfig, now: float) -> str:
    """The whole file; C{now} (seconds since the epoch) dates its header."""
    text = [f"# Configuration file ({_timestamp(now)})", ""]
    for name, value in config_lines(descriptor, config):
        if name.startswith("#") and not value:
            text.append(name)
        else:
            text.append(f"{escape_property(name, True)}={escape_property(value)}")
    return "\n".join(text) + "\n"


def server_dir(data_dir: str, server_id: str) -> str:
    return os.path.join(data_dir, "servers", server_id)


def config_path(data_dir: str, server_id: str) -> str:
    return os.path.join(server_dir(data_dir, server_id), "config", "config")


def write_config(
    descriptor: ServerDescriptor, config: NodeConfig, now: float, uid: Optional[int] = None
) -> str:
    """
    Write the server's file (and its C{data}, C{dbs}, C{distrib} directories,
    as icegridnode does); returns the file's path. A server run as another
    account owns its directories, so it can read its file and write its data.

    @raise OSError: the node cannot write under its data directory.
    """
    base = server_dir(config.data_dir, descriptor.id)
    for sub in ("config", "data", "dbs", "distrib"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    path = config_path(config.data_dir, descriptor.id)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(render_config(descriptor, config, now))
    os.replace(tmp, path)
    os.chmod(path, 0o644)
    if uid is not None:
        for sub in ("data", "dbs", "distrib"):
            os.chown(os.path.join(base, sub), uid, -1)
    return path
