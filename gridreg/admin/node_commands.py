# -*- test-case-name: tests.test_admin_cli_nodes -*-
"""
gridadmin's C{server} and C{node} commands: read through C{AdminList} and
C{AdminDescribe}, control through C{AdminServerControl} and
C{AdminNodeControl}, which any replica relays to the node. Their text
follows icegridadmin's where it has one (C{server state}: C{active (pid =
1234, enabled)}).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from gridreg.admin.results import EXIT_OK, EXIT_REFUSED, Result, _cell, format_fields, format_table

if TYPE_CHECKING:
    from gridreg.admin.session import AdminSession


SERVER_COLUMNS = (
    ("SERVER", "server"),
    ("APPLICATION", "application"),
    ("NODE", "node"),
    ("STATE", "state"),
    ("PID", "pid"),
    ("ENABLED", "enabled"),
    ("ACTIVATION", "activation"),
)
NODE_COLUMNS = (
    ("NODE", "node"),
    ("ALIVE", "alive"),
    ("HOSTNAME", "hostname"),
    ("OS", "os"),
    ("LOAD1", "load1"),
    ("LOAD5", "load5"),
    ("LOAD15", "load15"),
    ("SERVERS", "servers"),
)


def _load(value: Any) -> Any:
    return (
        f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    )


def server_state_line(data: dict[str, Any]) -> str:
    """A server's state as icegridadmin prints it: C{active (pid = 1234, enabled)}."""
    enabled = "enabled" if data.get("enabled", True) else "disabled"
    pid = data.get("pid")
    detail = f"pid = {pid}, {enabled}" if pid is not None else enabled
    return f"{data.get('state', 'unknown')} ({detail})"


async def _server_list(session: AdminSession, args: argparse.Namespace) -> Result:
    items = await session.list("server", args.pattern)
    return Result(items, format_table(items, SERVER_COLUMNS))


def _section(title: str, lines: Sequence[str]) -> list[str]:
    return [f"{title}:", *(f"  {line}" for line in lines)] if lines else []


async def _server_describe(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.describe("server", args.id)
    fields: dict[str, Any] = {
        key: data.get(key)
        for key in ("application", "node", "state", "pid", "enabled", "activation", "exe", "pwd")
        if key in data
    }
    if data.get("options"):
        fields["options"] = shlex.join(data["options"])
    lines = [f"server `{data.get('server', args.id)}'", format_fields(fields)]
    lines += _section("envs", list(data.get("envs") or ()))
    adapters = [
        {
            "name": a.get("name"),
            "id": a.get("id"),
            "replica_group": a.get("replica_group_id") or a.get("replica_group") or None,
            "endpoints": a.get("endpoints"),
        }
        for a in data.get("adapters") or ()
    ]
    if adapters:
        table = format_table(
            adapters,
            (
                ("NAME", "name"),
                ("ID", "id"),
                ("REPLICA-GROUP", "replica_group"),
                ("ENDPOINTS", "endpoints"),
            ),
        )
        lines += _section("adapters", table.split("\n"))
    properties = data.get("properties") or ()
    if isinstance(properties, dict):
        properties = list(properties.items())
    lines += _section("properties", [f"{name} = {value}" for name, value in properties])
    return Result(data, "\n".join(line for line in lines if line))


async def _server_state(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.server_control(args.id, "state")
    return Result(data, server_state_line(data))


async def _server_pid(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.server_control(args.id, "pid")
    if data.get("pid") is None:
        return Result(data, "", EXIT_REFUSED, f"server `{args.id}' is not running")
    return Result(data, str(data["pid"]))


_DONE = {"start": "started", "stop": "stopped", "enable": "enabled", "disable": "disabled"}


async def _server_control(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.server_control(args.id, args.action)
    return Result(data, f"server `{args.id}' {_DONE[args.action]}: {server_state_line(data)}")


async def _server_signal(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.server_control(args.id, "signal", args.signal)
    return Result(data, f"server `{args.id}' sent {args.signal}: {server_state_line(data)}")


async def _node_list(session: AdminSession, args: argparse.Namespace) -> Result:
    items = await session.list("node")
    rows = [
        {
            **item,
            **{key: _load(item.get(key)) for key in ("load1", "load5", "load15")},
            "servers": len(item["servers"])
            if isinstance(item.get("servers"), list)
            else item.get("servers"),
        }
        for item in items
    ]
    return Result(items, format_table(rows, NODE_COLUMNS))


async def _node_describe(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.describe("node", args.name)
    scalars = {
        key: _load(value) if key.startswith("load") else value for key, value in data.items()
    }
    lines = [f"node `{data.get('node', args.name)}'", format_fields(scalars, skip=("node",))]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += _section(key, [f"{k}: {_cell(v)}" for k, v in value.items()])
        elif isinstance(value, list):
            lines += _section(key, [_cell(v) for v in value])
    return Result(data, "\n".join(line for line in lines if line))


async def _node_ping(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.node_control(args.name, "ping")
    alive = bool(data.get("alive"))
    return Result(
        data,
        f"node `{args.name}' is {'up' if alive else 'down'}",
        EXIT_OK if alive else EXIT_REFUSED,
    )


async def _node_load(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.node_control(args.name, "load")
    loads = " / ".join(str(_load(data.get(key))) for key in ("load1", "load5", "load15"))
    return Result(data, f"load average (1/5/15): {loads}")


async def _node_shutdown(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.node_control(args.name, "shutdown")
    return Result(data, f"node `{args.name}' shut down")


NODE_COMMANDS: dict[
    tuple[str, str], Callable[[AdminSession, argparse.Namespace], Awaitable[Result]]
] = {
    ("server", "list"): _server_list,
    ("server", "describe"): _server_describe,
    ("server", "state"): _server_state,
    ("server", "pid"): _server_pid,
    ("server", "start"): _server_control,
    ("server", "stop"): _server_control,
    ("server", "enable"): _server_control,
    ("server", "disable"): _server_control,
    ("server", "signal"): _server_signal,
    ("node", "list"): _node_list,
    ("node", "describe"): _node_describe,
    ("node", "ping"): _node_ping,
    ("node", "load"): _node_load,
    ("node", "shutdown"): _node_shutdown,
}
