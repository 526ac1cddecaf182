# -*- test-case-name: tests.test_client_locator -*-
"""
gridreg's client library for Twisted programs: find services through the
registry's locator, failing over between replicas, and keep a service's
endpoints registered.
"""

from gridreg.client.failover import FailoverEndpoint
from gridreg.client.locator import LocatorClient, LocatorUnreachableError, locator_retry_policy
from gridreg.client.registration import AdapterRegistration, NoLocatorRegistryError, register_port

__all__ = [
    "AdapterRegistration",
    "FailoverEndpoint",
    "LocatorClient",
    "LocatorUnreachableError",
    "NoLocatorRegistryError",
    "locator_retry_policy",
    "register_port",
]
