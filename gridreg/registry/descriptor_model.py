# -*- test-case-name: tests.test_descriptors -*-
"""
IceGrid application descriptors: the deployed model, its validation, and
what the registry derives from it. Nothing here knows of XML: the reader in
L{gridreg.registry.descriptor_xml} builds these classes, and
L{gridreg.registry.descriptors} is the public face of both.

The registry does not keep the XML's shape; it needs flat indexes to answer
locate requests: which adapter ids exist and which server on which node owns
them, which replica groups exist and how they balance, and which well-known
objects point where. L{derive} builds those indexes, and
L{check_conflicts}/L{check_update} keep different applications from
claiming the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple, TypeVar

import attrs

from gridreg.ice.stringify import IdentityParseError, identity_from_string, identity_to_string
from gridreg.ice.types import Identity, Proxy

#: The load-balancing policies IceGrid defines.
LOAD_BALANCING_TYPES = ("random", "round-robin", "adaptive", "ordered")
#: The load averages (minutes) an adaptive policy may sort by.
LOAD_SAMPLES = ("1", "5", "15")
#: How a node may start a server.
ACTIVATION_MODES = ("manual", "on-demand", "always", "session")


class DescriptorError(Exception):
    """
    A descriptor is malformed, invalid, or conflicts with another application.

    The message is meant for the operator who wrote the XML: it names the
    element (as a path from C{icegrid}) and its line where they are known,
    and says what is wrong.

    @ivar path: the offending element's path, or C{""}.
    @ivar line: its line in the XML document, or L{None}.
    @ivar reason: the bare explanation, without path or line.
    """

    def __init__(self, reason: str, path: str = "", line: int | None = None) -> None:
        where = path
        if line is not None:
            where = f"{where}, line {line}" if where else f"line {line}"
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.path = path
        self.line = line


# -- the descriptor model -----------------------------------------------------


@attrs.frozen
class ObjectDescriptor:
    """
    A well-known object declared by an adapter or a replica group, or an
    allocatable object declared by an adapter (same fields, IceGrid's one
    C{ObjectDescriptor} for both).

    @ivar identity: the stringified identity, in canonical form.
    @ivar property: for an adapter's object, the server property that the
        node sets to this identity (empty if none).
    """

    identity: str
    type: str = ""
    property: str = ""


@attrs.frozen
class LoadBalancing:
    """
    A replica group's policy: how members are ordered, and how many
    (C{n_replicas}, 0 for all) a locate reply carries.
    """

    type: str = "random"
    n_replicas: int = 0
    load_sample: str = "1"


@attrs.frozen
class ReplicaGroupDescriptor:
    """A replica group: an adapter id that resolves to its members' endpoints."""

    id: str
    policy: LoadBalancing = LoadBalancing()
    objects: tuple[ObjectDescriptor, ...] = ()
    description: str = ""


@attrs.frozen
class AdapterDescriptor:
    """
    An object adapter of a deployed server.

    @ivar replica_group_id: the group this adapter is a member of, or C{""}.
    @ivar priority: its rank under the C{ordered} policy (lowest first).
    @ivar server_lifetime: whether the server counts as active only while
        this adapter is.
    @ivar allocatables: objects clients allocate through a session; they
        are not well-known (IceGrid's C{Query} and locator don't find them).
    """

    name: str
    id: str
    endpoints: str = "default"
    replica_group_id: str = ""
    priority: int = 0
    server_lifetime: bool = True
    objects: tuple[ObjectDescriptor, ...] = ()
    allocatables: tuple[ObjectDescriptor, ...] = ()


@attrs.frozen
class ServerDescriptor:
    """
    A server process a node runs, with every variable already substituted.

    @ivar options: command-line arguments after C{exe}.
    @ivar envs: C{NAME=VALUE} environment entries.
    @ivar activation_timeout: seconds, 0 for the node's default.
    @ivar deactivation_timeout: seconds, 0 for the node's default.
    @ivar properties: Ice properties in order; a later duplicate wins.
    @ivar user: the account to run the server as; C{""} for the node's own
        (a node running as root then uses C{nobody}, as IceGrid does).
    @ivar allocatable: a session that allocates one of the server's
        allocatable objects holds the whole server until it releases them
        all, so other sessions cannot allocate its other objects meanwhile.
    @ivar logs: the C{<log path>}s: the only files besides its stdout and
        stderr that admin sessions may read (C{openServerLog}).
    """

    id: str
    exe: str
    pwd: str = ""
    options: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()
    activation: str = "manual"
    activation_timeout: int = 0
    deactivation_timeout: int = 0
    properties: tuple[tuple[str, str], ...] = ()
    adapters: tuple[AdapterDescriptor, ...] = ()
    description: str = ""
    #: the account the node runs the server as ("" for the node's own)
    user: str = ""
    allocatable: bool = False
    logs: tuple[str, ...] = ()


@attrs.frozen
class NodeDescriptor:
    """The servers an application places on one node."""

    name: str
    servers: tuple[ServerDescriptor, ...] = ()
    description: str = ""


@attrs.frozen
class ApplicationDescriptor:
    """
    A parsed application. C{xml} is the text it came from, kept verbatim:
    it is what the registry stores and replicates.

    @ivar variables: the application-level variables as written (values are
        substituted where they are used), in document order.
    """

    name: str
    description: str = ""
    xml: str = ""
    variables: tuple[tuple[str, str], ...] = ()
    replica_groups: tuple[ReplicaGroupDescriptor, ...] = ()
    nodes: tuple[NodeDescriptor, ...] = ()


# -- derivation ---------------------------------------------------------------


@attrs.frozen
class DeployedAdapter:
    """An adapter id the registry accepts because an application deploys it."""

    adapter_id: str
    server_id: str
    node: str
    replica_group_id: str = ""
    priority: int = 0


@attrs.frozen
class DeployedServer:
    """A server together with the node that runs it."""

    node: str
    descriptor: ServerDescriptor

    @property
    def server_id(self) -> str:
        return self.descriptor.id


class DeployedAllocatable(NamedTuple):
    """
    An allocatable object: its indirect proxy (C{identity@adapter-id}), its
    type, the server it belongs to, and whether that server is held whole
    by the session holding any of its objects: an C{allocatable="true"}
    server, and (as IceGrid 3.7.8 does) any C{session}-activation server.
    A tuple, so callers may unpack C{(proxy, type, server_id,
    allocatable_server)}.
    """

    proxy: Proxy
    type: str
    server_id: str
    allocatable_server: bool


@attrs.frozen
class DerivedApplication:
    """
    The registry's view of one application: flat indexes by id.

    @ivar objects: well-known objects: identity to (indirect proxy, type).
    @ivar allocatables: allocatable objects by identity; kept apart from
        C{objects} because they are not well-known.
    """

    name: str
    descriptor: ApplicationDescriptor
    adapters: Mapping[str, DeployedAdapter]
    replica_groups: Mapping[str, ReplicaGroupDescriptor]
    objects: Mapping[Identity, tuple[Proxy, str]]
    servers: Mapping[str, DeployedServer]
    allocatables: Mapping[Identity, DeployedAllocatable] = attrs.field(factory=dict)


_K = TypeVar("_K")
_V = TypeVar("_V")


def _put(index: dict[_K, _V], key: _K, value: _V, what: str, app: str) -> None:
    if key in index:
        raise DescriptorError(f"duplicate {_describe(what, key)}", f"icegrid/application[{app}]")
    index[key] = value


def _object_identity(obj: ObjectDescriptor, app: str) -> Identity:
    try:
        return identity_from_string(obj.identity)
    except IdentityParseError as e:
        raise DescriptorError(f"invalid object identity: {e}", f"icegrid/application[{app}]") from e


def derive(app: ApplicationDescriptor) -> DerivedApplication:
    """
    Build the indexes the registry serves locate requests from.

    An adapter's object resolves through the adapter (C{identity@adapter-id})
    and a replica group's through the group, so a client reaching either one
    gets whichever endpoints are live, balanced by the group's policy.

    @raise DescriptorError: two elements claim the same id (the parser
        rejects this already; hand-built descriptors are checked too).
    """
    name = app.name
    adapters: dict[str, DeployedAdapter] = {}
    groups: dict[str, ReplicaGroupDescriptor] = {}
    objects: dict[Identity, tuple[Proxy, str]] = {}
    servers: dict[str, DeployedServer] = {}
    allocatables: dict[Identity, DeployedAllocatable] = {}
    for group in app.replica_groups:
        _put(groups, group.id, group, "replica group", name)
        for obj in group.objects:
            identity = _object_identity(obj, name)
            proxy = Proxy(identity, adapter_id=group.id)
            _put(objects, identity, (proxy, obj.type), "object identity", name)
    for node in app.nodes:
        for server in node.servers:
            _put(servers, server.id, DeployedServer(node.name, server), "server id", name)
            for adapter in server.adapters:
                if adapter.id in groups:
                    raise DescriptorError(
                        f"adapter id {adapter.id!r} is also a replica group id",
                        f"icegrid/application[{name}]",
                    )
                if adapter.replica_group_id and adapter.replica_group_id not in groups:
                    raise DescriptorError(
                        f"adapter {adapter.id!r} names unknown replica group "
                        f"{adapter.replica_group_id!r}",
                        f"icegrid/application[{name}]",
                    )
                deployed = DeployedAdapter(
                    adapter.id, server.id, node.name, adapter.replica_group_id, adapter.priority
                )
                _put(adapters, adapter.id, deployed, "adapter id", name)
                for obj in adapter.objects:
                    identity = _object_identity(obj, name)
                    proxy = Proxy(identity, adapter_id=adapter.id)
                    _put(objects, identity, (proxy, obj.type), "object identity", name)
                for obj in adapter.allocatables:
                    identity = _object_identity(obj, name)
                    entry = DeployedAllocatable(
                        Proxy(identity, adapter_id=adapter.id),
                        obj.type,
                        server.id,
                        server.allocatable or server.activation == "session",
                    )
                    _put(allocatables, identity, entry, "object identity", name)
    # One identity namespace for both kinds, as in IceGrid.
    for identity in allocatables:
        if identity in objects:
            raise DescriptorError(
                f"duplicate {_describe('object identity', identity)}",
                f"icegrid/application[{name}]",
            )
    return DerivedApplication(name, app, adapters, groups, objects, servers, allocatables)


# -- conflicts between applications -------------------------------------------


def _claims(app: DerivedApplication) -> Iterable[tuple[str, object]]:
    """Every registry-wide name an application claims, as (kind, key)."""
    # Adapters and replica groups share one namespace: both are adapter ids.
    for adapter_id in app.adapters:
        yield "adapter id", adapter_id
    for group_id in app.replica_groups:
        yield "adapter id", group_id
    for server_id in app.servers:
        yield "server id", server_id
    for identity in app.objects:
        yield "object identity", identity
    for identity in app.allocatables:
        yield "object identity", identity


def _describe(kind: str, key: object) -> str:
    shown = identity_to_string(key) if isinstance(key, Identity) else key
    return f"{kind} {shown!r}"


def _check_disjoint(new: DerivedApplication, others: Iterable[DerivedApplication]) -> None:
    claims = set(_claims(new))
    for other in others:
        for claim in _claims(other):
            if claim in claims:
                raise DescriptorError(
                    f"{_describe(*claim)} is already used by application {other.name!r}",
                    f"icegrid/application[{new.name}]",
                )


def check_conflicts(new: DerivedApplication, others: Iterable[DerivedApplication]) -> None:
    """
    Refuse to add C{new} next to the deployed C{others}: its name, adapter
    and replica group ids, server ids and object identities must all be new.

    @raise DescriptorError: naming the first conflict found.
    """
    others = list(others)
    for other in others:
        if other.name == new.name:
            raise DescriptorError(
                f"application {new.name!r} already exists", f"icegrid/application[{new.name}]"
            )
    _check_disjoint(new, others)


def check_update(
    old: DerivedApplication, new: DerivedApplication, others: Iterable[DerivedApplication]
) -> None:
    """
    Refuse to replace C{old} by C{new} if C{new} takes an id that another
    application owns. Ids C{old} held are free for C{new} to keep or drop.

    @param others: the deployed applications; C{old} itself may be among
        them and is skipped.
    @raise DescriptorError: the name changed, or the first conflict found.
    """
    if old.name != new.name:
        raise DescriptorError(
            f"cannot update application {old.name!r} with a descriptor named {new.name!r}",
            f"icegrid/application[{new.name}]",
        )
    _check_disjoint(new, [o for o in others if o.name != new.name])
