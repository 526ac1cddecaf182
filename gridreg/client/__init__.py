# -*- test-case-name: tests.test_client_locator -*-
"""
gridreg's client library for Twisted programs: find services through the
registry's locator, failing over between replicas, and keep a service's
endpoints registered.

The names below are imported at their first use (PEP 562's module
C{__getattr__}): a slave registry uses this package's locator client and
connection helpers, not server registration, and importing one submodule
no longer builds the others (C{tests.test_registry_launch}).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridreg.client.failover import FailoverEndpoint
    from gridreg.client.locator import (
        LocatorClient,
        LocatorUnreachableError,
        locator_retry_policy,
    )
    from gridreg.client.registration import (
        AdapterRegistration,
        NoLocatorRegistryError,
        register_port,
    )

#: each public name and the submodule that defines it
_WHERE = {
    "AdapterRegistration": "gridreg.client.registration",
    "FailoverEndpoint": "gridreg.client.failover",
    "LocatorClient": "gridreg.client.locator",
    "LocatorUnreachableError": "gridreg.client.locator",
    "NoLocatorRegistryError": "gridreg.client.registration",
    "locator_retry_policy": "gridreg.client.locator",
    "register_port": "gridreg.client.registration",
}

__all__ = [
    "AdapterRegistration",
    "FailoverEndpoint",
    "LocatorClient",
    "LocatorUnreachableError",
    "NoLocatorRegistryError",
    "locator_retry_policy",
    "register_port",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value
