# -*- test-case-name: tests.test_admin -*-
"""
The admin calls both sessions make, over one primitive: L{AdminCalls.request}
sends a command by name and returns its answer. L{gridreg.admin.session}
implements it with Twisted's AMP, L{gridreg.admin.wire} with a blocking
socket; what a call asks and how its answer is read is written once, here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from gridreg.admin.common import AdminUnreachableError

#: the items asked for per list page; the registry may return fewer
PAGE_LIMIT = 1000


class AdminCalls:
    """Typed admin calls; subclasses say how a command is sent (L{request})."""

    async def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        """
        Send the AMP command named C{command}; its answer. A registry refusal
        raises the error it stands for, no answer in time
        L{AdminUnreachableError}.
        """
        raise NotImplementedError

    # -- applications ----------------------------------------------------------

    async def remove_application(self, name: str) -> int:
        return (await self.request("AdminApplicationRemove", name=name))["serial"]  # type: ignore[no-any-return]

    # -- reads -----------------------------------------------------------------

    async def pages(self, what: str, pattern: str = "") -> AsyncIterator[list[dict[str, Any]]]:
        """The pages of a listing, in order; see L{list}."""
        cursor = ""
        while True:
            result = await self.request(
                "AdminList", what=what, pattern=pattern, cursor=cursor, limit=PAGE_LIMIT
            )
            yield json.loads(result["items"])
            cursor = result["cursor"]
            if not cursor:
                return

    async def list(self, what: str, pattern: str = "") -> list[dict[str, Any]]:
        """
        Every C{what} ("application", "object", "adapter", "registry",
        "server" or "node")
        whose key matches the glob C{pattern} ("" for all), sorted by key.
        """
        items: list[dict[str, Any]] = []
        async for page in self.pages(what, pattern):
            items.extend(page)
        return items

    async def describe(self, what: str, key: str) -> dict[str, Any]:
        """One C{what} in detail, gathered from as many slices as it takes."""
        parts: list[str] = []
        offset = 0
        while True:
            result = await self.request("AdminDescribe", what=what, key=key, offset=offset)
            parts.append(result["data"])
            offset += len(result["data"])
            if not result["more"]:
                break
            if not result["data"]:
                raise AdminUnreachableError(f"the description of {what} `{key}' stopped short")
        return json.loads("".join(parts))  # type: ignore[no-any-return]

    async def ping(self, name: str) -> bool:
        return (await self.request("AdminPing", name=name))["alive"]  # type: ignore[no-any-return]

    # -- writes ----------------------------------------------------------------

    async def add_object(self, proxy: str, type: str = "") -> int:
        return (await self.request("AdminObjectAdd", proxy=proxy, type=type))["serial"]  # type: ignore[no-any-return]

    async def remove_object(self, identity: str) -> int:
        return (await self.request("AdminObjectRemove", identity=identity))["serial"]  # type: ignore[no-any-return]

    async def remove_adapter(self, adapter_id: str) -> int:
        return (await self.request("AdminAdapterRemove", adapter_id=adapter_id))["serial"]  # type: ignore[no-any-return]

    # -- servers and nodes (relayed by the replica to the node) ----------------

    async def server_control(self, server: str, action: str, argument: str = "") -> dict[str, Any]:
        """
        C{action} ("state", "pid", "start", "stop", "enable", "disable",
        "signal") on C{server}; its state afterwards.
        """
        result = await self.request(
            "AdminServerControl", server=server, action=action, argument=argument
        )
        return json.loads(result["result"])  # type: ignore[no-any-return]

    async def node_control(self, node: str, action: str) -> dict[str, Any]:
        """C{action} ("ping", "load", "shutdown") on C{node}."""
        result = await self.request("AdminNodeControl", node=node, action=action)
        return json.loads(result["result"])  # type: ignore[no-any-return]
