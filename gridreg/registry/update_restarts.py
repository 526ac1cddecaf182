# -*- test-case-name: tests.test_application_update -*-
"""
Which servers an application update would stop: what
C{updateApplicationWithoutRestart} and C{syncApplicationWithoutRestart}
refuse, with IceGrid 3.7.8's reason (measured, docs/icegrid-node-facts.md).

IceGrid refuses a change to anything but a server's properties whether the
server runs or not, and the removal (or move) of a running server. Property
changes are applied to a running server through its admin facet, by
IceGrid's node and gridreg's alike (L{gridreg.node.live_update}), so they
never need a stop.
"""

from __future__ import annotations

from typing import Callable

import attrs

from gridreg.registry.descriptor_model import DerivedApplication, DescriptorError


class NeedsRestart(DescriptorError):
    """An update without restart that would stop servers."""


def servers_to_stop(
    old: DerivedApplication, new: DerivedApplication, running: Callable[[str, str], bool]
) -> list[str]:
    """
    The ids of C{old}'s servers that replacing it by C{new} would stop, sorted.

    @param running: whether server C{id} on node C{node} runs (C{running(id, node)}).
    """
    stopped = []
    for server_id, before in old.servers.items():
        after = new.servers.get(server_id)
        if after is None or after.node != before.node:
            if running(server_id, before.node):
                stopped.append(server_id)
            continue
        if after.descriptor == before.descriptor:
            continue
        other = attrs.evolve(after.descriptor, properties=before.descriptor.properties)
        if other != before.descriptor:
            stopped.append(server_id)
    return sorted(stopped)


def refuse_restarts(
    old: DerivedApplication, new: DerivedApplication, running: Callable[[str, str], bool]
) -> None:
    """
    @raise NeedsRestart: with IceGrid's reason, when L{servers_to_stop} names any.
    """
    stopped = servers_to_stop(old, new, running)
    if not stopped:
        return
    if len(stopped) == 1:
        which = f"the server `{stopped[0]}'"
    else:
        which = f"the servers `{', '.join(stopped)}'"
    raise NeedsRestart(
        f"check for application `{old.name}' update failed:\n{which} would need to be stopped"
    )
