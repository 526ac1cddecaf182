# -*- test-case-name: tests.test_node_live_update -*-
"""
Properties changed while a server runs, as IceGrid 3.7.8's node changes
them for an update made without restart: the server's configuration file
is written again (a later start reads the new one) and the difference is
sent to the server's own C{Ice::PropertiesAdmin} facet
(C{setProperties}, an empty value removing a property), so the process
keeps running with its pid (docs/icegrid-node-facts.md, "Application
updates").
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred, fail

from gridreg.ice.encoding import OutputStream
from gridreg.ice.types import OperationMode, Proxy
from gridreg.node.admin import admin_endpoints
from gridreg.node.config import NodeConfig
from gridreg.node.server_config import config_lines
from gridreg.protocol.errors import NodeError
from gridreg.registry.descriptor_model import ServerDescriptor

#: how long the server may take to take its new properties, connection included
SET_PROPERTIES_TIMEOUT = 10.0

Invoke = Callable[[Proxy, str, bytes, float], Deferred[Any]]


def properties_only_changed(old: ServerDescriptor, new: ServerDescriptor) -> bool:
    """Whether C{new} differs from C{old} in its properties and nothing else."""
    return old != new and attrs.evolve(new, properties=old.properties) == old


def property_changes(
    old: ServerDescriptor, new: ServerDescriptor, config: NodeConfig
) -> dict[str, str]:
    """
    What C{setProperties} must be told for a server configured from C{old}
    to run as if configured from C{new}: changed and added properties with
    their values, removed ones with an empty value. Both are effective
    descriptors (the node's variables substituted).
    """
    before = _settings(old, config)
    after = _settings(new, config)
    changes = {key: value for key, value in after.items() if before.get(key) != value}
    changes.update({key: "" for key in before if key not in after})
    return changes


def _settings(descriptor: ServerDescriptor, config: NodeConfig) -> dict[str, str]:
    # comment lines (a name starting with '#' and no value) are not properties
    return {
        name: value
        for name, value in config_lines(descriptor, config)
        if not (name.startswith("#") and not value)
    }


def encode_property_dict(changes: dict[str, str]) -> bytes:
    """C{Ice::PropertyDict} (a C{dictionary<string, string>}), in key order."""
    out = OutputStream()
    out.write_size(len(changes))
    for key in sorted(changes):
        out.write_string(key)
        out.write_string(changes[key])
    return out.getvalue()


def set_properties(
    reactor: Any,
    admin: Optional[Proxy],
    changes: dict[str, str],
    timeout: float = SET_PROPERTIES_TIMEOUT,
) -> Deferred[None]:
    """
    Call C{setProperties} on the C{Properties} facet of the admin object
    C{admin} the server registered.

    @raise NodeError: (through the Deferred) the server registered no admin
        object, or it has no tcp endpoint.
    """
    from gridreg.registry.remote import call_direct

    if admin is None:
        return fail(NodeError("the server registered no admin object"))
    endpoints = admin_endpoints(admin)
    if not endpoints:
        return fail(NodeError("the server's admin object has no tcp endpoint"))
    facet = attrs.evolve(admin, facet="Properties")
    d = call_direct(
        reactor,
        endpoints,
        facet,
        "setProperties",
        OperationMode.NORMAL,
        encode_property_dict(changes),
        timeout,
    )
    return d.addCallback(lambda _: None)
