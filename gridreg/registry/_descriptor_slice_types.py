# -*- test-case-name: tests.test_descriptor_slice -*-
"""
The IceGrid descriptor types of C{IceGrid/Descriptor.ice} and the structs
of C{Admin.ice} that carry them, as the class codec marshals them.

Attribute names are the Slice member names (as IcePy's are), so that a
reader can hold these next to the Slice definitions; strings stay strings
(C{priority}, C{nReplicas}, timeouts) because descriptors travel
unexpanded, with their C{${variables}}.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from gridreg.ice.classes import (
    BOOL,
    IDENTITY,
    INT,
    LONG,
    STRING,
    ClassRef,
    DictOf,
    SeqOf,
    StructOf,
    Members,
    Value,
    register,
)
from gridreg.ice.types import Identity

_STRINGS = SeqOf(STRING)
_DICT = DictOf(STRING, STRING)
_list: Any = attrs.Factory(list)
_dict: Any = attrs.Factory(dict)


@attrs.define
class PropertyDescriptor:
    ice_members: ClassVar[Members] = (("name", STRING), ("value", STRING))
    name: str = ""
    value: str = ""


_PROPERTIES = SeqOf(StructOf(PropertyDescriptor))


@attrs.define
class PropertySetDescriptor:
    ice_members: ClassVar[Members] = (("references", _STRINGS), ("properties", _PROPERTIES))
    references: list[str] = _list
    properties: list[PropertyDescriptor] = _list


_PSET = StructOf(PropertySetDescriptor)
_PSETS = DictOf(STRING, _PSET)


@attrs.define
class ObjectDescriptor:
    ice_members: ClassVar[Members] = (("id", IDENTITY), ("type", STRING), ("proxyOptions", STRING))
    id: Identity = Identity("")
    type: str = ""
    proxyOptions: str = ""


_OBJECTS = SeqOf(StructOf(ObjectDescriptor))


@attrs.define
class AdapterDescriptor:
    ice_members: ClassVar[Members] = (
        ("name", STRING),
        ("description", STRING),
        ("id", STRING),
        ("replicaGroupId", STRING),
        ("priority", STRING),
        ("registerProcess", BOOL),
        ("serverLifetime", BOOL),
        ("objects", _OBJECTS),
        ("allocatables", _OBJECTS),
    )
    name: str = ""
    description: str = ""
    id: str = ""
    replicaGroupId: str = ""
    priority: str = ""
    registerProcess: bool = False
    serverLifetime: bool = True
    objects: list[ObjectDescriptor] = _list
    allocatables: list[ObjectDescriptor] = _list


@attrs.define
class DbEnvDescriptor:
    ice_members: ClassVar[Members] = (
        ("name", STRING),
        ("description", STRING),
        ("dbHome", STRING),
        ("properties", _PROPERTIES),
    )
    name: str = ""
    description: str = ""
    dbHome: str = ""
    properties: list[PropertyDescriptor] = _list


@attrs.define
class DistributionDescriptor:
    ice_members: ClassVar[Members] = (("icepatch", STRING), ("directories", _STRINGS))
    icepatch: str = ""
    directories: list[str] = _list


@register
@attrs.define
class CommunicatorDescriptor(Value):
    ice_id = "::IceGrid::CommunicatorDescriptor"
    ice_members: ClassVar[Members] = (
        ("adapters", SeqOf(StructOf(AdapterDescriptor))),
        ("propertySet", _PSET),
        ("dbEnvs", SeqOf(StructOf(DbEnvDescriptor))),
        ("logs", _STRINGS),
        ("description", STRING),
    )
    adapters: list[AdapterDescriptor] = _list
    propertySet: PropertySetDescriptor = attrs.Factory(PropertySetDescriptor)
    dbEnvs: list[DbEnvDescriptor] = _list
    logs: list[str] = _list
    description: str = ""


@register
@attrs.define
class ServerDescriptor(CommunicatorDescriptor):
    ice_id = "::IceGrid::ServerDescriptor"
    ice_members: ClassVar[Members] = (
        ("id", STRING),
        ("exe", STRING),
        ("iceVersion", STRING),
        ("pwd", STRING),
        ("options", _STRINGS),
        ("envs", _STRINGS),
        ("activation", STRING),
        ("activationTimeout", STRING),
        ("deactivationTimeout", STRING),
        ("applicationDistrib", BOOL),
        ("distrib", StructOf(DistributionDescriptor)),
        ("allocatable", BOOL),
        ("user", STRING),
    )
    id: str = ""
    exe: str = ""
    iceVersion: str = ""
    pwd: str = ""
    options: list[str] = _list
    envs: list[str] = _list
    activation: str = ""
    activationTimeout: str = ""
    deactivationTimeout: str = ""
    applicationDistrib: bool = True
    distrib: DistributionDescriptor = attrs.Factory(DistributionDescriptor)
    allocatable: bool = False
    user: str = ""


@register
@attrs.define
class ServiceDescriptor(CommunicatorDescriptor):
    ice_id = "::IceGrid::ServiceDescriptor"
    ice_members: ClassVar[Members] = (("name", STRING), ("entry", STRING))
    name: str = ""
    entry: str = ""


@attrs.define
class ServiceInstanceDescriptor:
    ice_members: ClassVar[Members] = (
        ("template", STRING),
        ("parameterValues", _DICT),
        ("descriptor", ClassRef(ServiceDescriptor)),
        ("propertySet", _PSET),
    )
    template: str = ""
    parameterValues: dict[str, str] = _dict
    descriptor: ServiceDescriptor | None = None
    propertySet: PropertySetDescriptor = attrs.Factory(PropertySetDescriptor)


@register
@attrs.define
class IceBoxDescriptor(ServerDescriptor):
    ice_id = "::IceGrid::IceBoxDescriptor"
    ice_members: ClassVar[Members] = (("services", SeqOf(StructOf(ServiceInstanceDescriptor))),)
    services: list[ServiceInstanceDescriptor] = _list


@attrs.define
class ServerInstanceDescriptor:
    ice_members: ClassVar[Members] = (
        ("template", STRING),
        ("parameterValues", _DICT),
        ("propertySet", _PSET),
        ("servicePropertySets", _PSETS),
    )
    template: str = ""
    parameterValues: dict[str, str] = _dict
    propertySet: PropertySetDescriptor = attrs.Factory(PropertySetDescriptor)
    servicePropertySets: dict[str, PropertySetDescriptor] = _dict


@attrs.define
class TemplateDescriptor:
    ice_members: ClassVar[Members] = (
        ("descriptor", ClassRef(CommunicatorDescriptor)),
        ("parameters", _STRINGS),
        ("parameterDefaults", _DICT),
    )
    descriptor: CommunicatorDescriptor | None = None
    parameters: list[str] = _list
    parameterDefaults: dict[str, str] = _dict


_TEMPLATES = DictOf(STRING, StructOf(TemplateDescriptor))


@attrs.define
class NodeDescriptor:
    ice_members: ClassVar[Members] = (
        ("variables", _DICT),
        ("serverInstances", SeqOf(StructOf(ServerInstanceDescriptor))),
        ("servers", SeqOf(ClassRef(ServerDescriptor))),
        ("loadFactor", STRING),
        ("description", STRING),
        ("propertySets", _PSETS),
    )
    variables: dict[str, str] = _dict
    serverInstances: list[ServerInstanceDescriptor] = _list
    servers: list[ServerDescriptor] = _list
    loadFactor: str = ""
    description: str = ""
    propertySets: dict[str, PropertySetDescriptor] = _dict


@register
@attrs.define
class LoadBalancingPolicy(Value):
    ice_id = "::IceGrid::LoadBalancingPolicy"
    ice_members: ClassVar[Members] = (("nReplicas", STRING),)
    nReplicas: str = ""


@register
@attrs.define
class RandomLoadBalancingPolicy(LoadBalancingPolicy):
    ice_id = "::IceGrid::RandomLoadBalancingPolicy"


@register
@attrs.define
class OrderedLoadBalancingPolicy(LoadBalancingPolicy):
    ice_id = "::IceGrid::OrderedLoadBalancingPolicy"


@register
@attrs.define
class RoundRobinLoadBalancingPolicy(LoadBalancingPolicy):
    ice_id = "::IceGrid::RoundRobinLoadBalancingPolicy"


@register
@attrs.define
class AdaptiveLoadBalancingPolicy(LoadBalancingPolicy):
    ice_id = "::IceGrid::AdaptiveLoadBalancingPolicy"
    ice_members: ClassVar[Members] = (("loadSample", STRING),)
    loadSample: str = ""


#: The XML C{type} of each policy class, and back.
POLICY_TYPES: dict[type[LoadBalancingPolicy], str] = {
    RandomLoadBalancingPolicy: "random",
    OrderedLoadBalancingPolicy: "ordered",
    RoundRobinLoadBalancingPolicy: "round-robin",
    AdaptiveLoadBalancingPolicy: "adaptive",
}
POLICY_CLASSES = {v: k for k, v in POLICY_TYPES.items()}


@attrs.define
class ReplicaGroupDescriptor:
    ice_members: ClassVar[Members] = (
        ("id", STRING),
        ("loadBalancing", ClassRef(LoadBalancingPolicy)),
        ("proxyOptions", STRING),
        ("objects", _OBJECTS),
        ("description", STRING),
        ("filter", STRING),
    )
    id: str = ""
    loadBalancing: LoadBalancingPolicy | None = None
    proxyOptions: str = ""
    objects: list[ObjectDescriptor] = _list
    description: str = ""
    filter: str = ""


@attrs.define
class ApplicationDescriptor:
    ice_members: ClassVar[Members] = (
        ("name", STRING),
        ("variables", _DICT),
        ("replicaGroups", SeqOf(StructOf(ReplicaGroupDescriptor))),
        ("serverTemplates", _TEMPLATES),
        ("serviceTemplates", _TEMPLATES),
        ("nodes", DictOf(STRING, StructOf(NodeDescriptor))),
        ("distrib", StructOf(DistributionDescriptor)),
        ("description", STRING),
        ("propertySets", _PSETS),
    )
    name: str = ""
    variables: dict[str, str] = _dict
    replicaGroups: list[ReplicaGroupDescriptor] = _list
    serverTemplates: dict[str, TemplateDescriptor] = _dict
    serviceTemplates: dict[str, TemplateDescriptor] = _dict
    nodes: dict[str, NodeDescriptor] = _dict
    distrib: DistributionDescriptor = attrs.Factory(DistributionDescriptor)
    description: str = ""
    propertySets: dict[str, PropertySetDescriptor] = _dict


@attrs.define
class ApplicationInfo:
    ice_members: ClassVar[Members] = (
        ("uuid", STRING),
        ("createTime", LONG),
        ("createUser", STRING),
        ("updateTime", LONG),
        ("updateUser", STRING),
        ("revision", INT),
        ("descriptor", StructOf(ApplicationDescriptor)),
    )
    uuid: str = ""
    createTime: int = 0
    createUser: str = ""
    updateTime: int = 0
    updateUser: str = ""
    revision: int = 0
    descriptor: ApplicationDescriptor = attrs.Factory(ApplicationDescriptor)


@attrs.define
class ServerInfo:
    ice_members: ClassVar[Members] = (
        ("application", STRING),
        ("uuid", STRING),
        ("revision", INT),
        ("node", STRING),
        ("descriptor", ClassRef(ServerDescriptor)),
        ("sessionId", STRING),
    )
    application: str = ""
    uuid: str = ""
    revision: int = 0
    node: str = ""
    descriptor: ServerDescriptor | None = None
    sessionId: str = ""
