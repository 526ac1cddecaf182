# -*- test-case-name: tests.test_discovery -*-
"""
The well-known objects every replica derives from the replica set.

Slaves, nodes and the admin tool find the master from C{Ice.Default.Locator}
alone by asking any replica for C{<instance>/InternalRegistry-Master}; Ice
clients get a Locator and a Query carrying the client endpoints of every
active replica, so they can fail over along them.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import attrs

from gridreg.ice.stringify import endpoints_from_string, endpoints_to_string
from gridreg.ice.types import Endpoint, Identity, Proxy
from gridreg.registry.state import ObjectInfo

MASTER = "Master"
REPLICA = "replica"


@attrs.frozen
class ReplicaEndpoints:
    """
    Where one replica listens, as published; the Glacier2 session managers'
    endpoints only when configured (and only then in the JSON).
    """

    client: tuple[Endpoint, ...]
    server: tuple[Endpoint, ...] = ()
    internal: tuple[Endpoint, ...] = ()
    session_manager: tuple[Endpoint, ...] = ()
    admin_session_manager: tuple[Endpoint, ...] = ()

    def to_json(self) -> dict[str, str]:
        value = {
            "client": endpoints_to_string(self.client),
            "server": endpoints_to_string(self.server),
            "internal": endpoints_to_string(self.internal),
        }
        for key in _OPTIONAL:
            if getattr(self, key):
                value[key] = endpoints_to_string(getattr(self, key))
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, str]) -> "ReplicaEndpoints":
        def parse(key: str) -> tuple[Endpoint, ...]:
            text = value.get(key) or ""
            return endpoints_from_string(text) if text else ()

        return cls(
            parse("client"),
            parse("server"),
            parse("internal"),
            *(parse(key) for key in _OPTIONAL),
        )


_OPTIONAL = ("session_manager", "admin_session_manager")


def registry_identity(instance: str, replica: str) -> Identity:
    """C{<instance>/Registry} for the master, C{<instance>/Registry-<name>} for a slave."""
    return Identity("Registry" if replica == MASTER else f"Registry-{replica}", instance)


def internal_identity(instance: str, replica: str) -> Identity:
    return Identity(f"InternalRegistry-{replica}", instance)


def builtin_objects(
    instance: str,
    replicas: Mapping[str, ReplicaEndpoints],
    active: Iterable[str],
) -> dict[Identity, ObjectInfo]:
    """
    The registry's own well-known objects.

    @param replicas: every replica known (this one included), by name.
    @param active: the names of the replicas that are up now, this one
        first; their client endpoints make up Locator and Query, their
        server endpoints LocatorRegistry. A slave's own objects
        (C{Registry-<name>}, C{InternalRegistry-<name>}, its session
        managers) are there only while it is up.

    The types are those IceGrid 3.7.8 registers (C{icegridadmin object
    describe}): the Locator as C{::Ice::Locator}, though it answers
    C{::IceGrid::Locator} too.
    """
    client: list[Endpoint] = []
    server: list[Endpoint] = []
    for name in active:
        if name in replicas:
            client.extend(e for e in replicas[name].client if e not in client)
            server.extend(e for e in replicas[name].server if e not in server)
    everyone = tuple(client)

    def info(identity: Identity, endpoints: tuple[Endpoint, ...], type_id: str) -> ObjectInfo:
        return ObjectInfo(Proxy(identity, endpoints=endpoints), type_id)

    objects = {
        Identity("Locator", instance): info(
            Identity("Locator", instance), everyone, "::Ice::Locator"
        ),
        Identity("LocatorRegistry", instance): info(
            Identity("LocatorRegistry", instance), tuple(server), "::Ice::LocatorRegistry"
        ),
        Identity("Query", instance): info(
            Identity("Query", instance), everyone, "::IceGrid::Query"
        ),
    }
    up = set(active)
    for name, endpoints in replicas.items():
        if name != MASTER and name not in up:
            # IceGrid's master removes a slave's objects when it goes down; the
            # master's stay (a slave keeps them while the master is away)
            continue
        registry = registry_identity(instance, name)
        objects[registry] = info(registry, endpoints.client, "::IceGrid::Registry")
        if endpoints.internal:
            internal = internal_identity(instance, name)
            objects[internal] = info(internal, endpoints.internal, "::IceGrid::InternalRegistry")
        for identity, type_id, where in session_manager_objects(instance, name, endpoints):
            objects[identity] = info(identity, where, type_id)
    return objects


SESSION_MANAGER = "::Glacier2::SessionManager"
SSL_SESSION_MANAGER = "::Glacier2::SSLSessionManager"


def session_manager_identities(
    instance: str, replica: str, admin: bool
) -> list[tuple[Identity, str]]:
    """
    The Glacier2 session managers a replica serves on one adapter, as
    IceGrid 3.7.8 names them: C{SessionManager} and C{SSLSessionManager} on
    the master only (a slave listens on its C{SessionManager.Endpoints} and
    serves nothing there); C{AdminSessionManager} and
    C{AdminSSLSessionManager} on the master, suffixed C{-<name>} on a slave.
    """
    if not admin:
        if replica != MASTER:
            return []
        return [
            (Identity("SessionManager", instance), SESSION_MANAGER),
            (Identity("SSLSessionManager", instance), SSL_SESSION_MANAGER),
        ]
    suffix = "" if replica == MASTER else f"-{replica}"
    return [
        (Identity(f"AdminSessionManager{suffix}", instance), SESSION_MANAGER),
        (Identity(f"AdminSSLSessionManager{suffix}", instance), SSL_SESSION_MANAGER),
    ]


def session_manager_objects(
    instance: str, replica: str, endpoints: ReplicaEndpoints
) -> list[tuple[Identity, str, tuple[Endpoint, ...]]]:
    """The well-known session managers of a replica, with the endpoints they are served on."""
    return [
        (identity, type_id, where)
        for admin, where in (
            (False, endpoints.session_manager),
            (True, endpoints.admin_session_manager),
        )
        if where
        for identity, type_id in session_manager_identities(instance, replica, admin)
    ]
