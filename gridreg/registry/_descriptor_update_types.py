# -*- test-case-name: tests.test_application_update -*-
"""
The Slice types of an application update (C{IceGrid/Descriptor.ice}'s
C{ApplicationUpdateDescriptor}, C{NodeUpdateDescriptor} and their boxes,
C{Admin.ice}'s C{ApplicationUpdateInfo}), as the class codec marshals them.

A box (C{BoxedString}, C{BoxedDistributionDescriptor}) is a class so that
null can say "unchanged"; every other member says what to add or replace
and its C{remove*} twin what to drop.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from gridreg.ice.classes import (
    INT,
    LONG,
    STRING,
    ClassRef,
    DictOf,
    Members,
    SeqOf,
    StructOf,
    Value,
    register,
)
from gridreg.registry import _descriptor_slice_types as S

_STRINGS = SeqOf(STRING)
_DICT = DictOf(STRING, STRING)
_PSETS = DictOf(STRING, StructOf(S.PropertySetDescriptor))
_TEMPLATES = DictOf(STRING, StructOf(S.TemplateDescriptor))
_list: Any = attrs.Factory(list)
_dict: Any = attrs.Factory(dict)


@register
@attrs.define
class BoxedString(Value):
    ice_id = "::IceGrid::BoxedString"
    ice_members: ClassVar[Members] = (("value", STRING),)
    value: str = ""


@register
@attrs.define
class BoxedDistributionDescriptor(Value):
    ice_id = "::IceGrid::BoxedDistributionDescriptor"
    ice_members: ClassVar[Members] = (("value", StructOf(S.DistributionDescriptor)),)
    value: S.DistributionDescriptor = attrs.Factory(S.DistributionDescriptor)


@attrs.define
class NodeUpdateDescriptor:
    ice_members: ClassVar[Members] = (
        ("name", STRING),
        ("description", ClassRef(BoxedString)),
        ("variables", _DICT),
        ("removeVariables", _STRINGS),
        ("propertySets", _PSETS),
        ("removePropertySets", _STRINGS),
        ("serverInstances", SeqOf(StructOf(S.ServerInstanceDescriptor))),
        ("servers", SeqOf(ClassRef(S.ServerDescriptor))),
        ("removeServers", _STRINGS),
        ("loadFactor", ClassRef(BoxedString)),
    )
    name: str = ""
    description: BoxedString | None = None
    variables: dict[str, str] = _dict
    removeVariables: list[str] = _list
    propertySets: dict[str, S.PropertySetDescriptor] = _dict
    removePropertySets: list[str] = _list
    serverInstances: list[S.ServerInstanceDescriptor] = _list
    servers: list[S.ServerDescriptor] = _list
    removeServers: list[str] = _list
    loadFactor: BoxedString | None = None


@attrs.define
class ApplicationUpdateDescriptor:
    ice_members: ClassVar[Members] = (
        ("name", STRING),
        ("description", ClassRef(BoxedString)),
        ("distrib", ClassRef(BoxedDistributionDescriptor)),
        ("variables", _DICT),
        ("removeVariables", _STRINGS),
        ("propertySets", _PSETS),
        ("removePropertySets", _STRINGS),
        ("replicaGroups", SeqOf(StructOf(S.ReplicaGroupDescriptor))),
        ("removeReplicaGroups", _STRINGS),
        ("serverTemplates", _TEMPLATES),
        ("removeServerTemplates", _STRINGS),
        ("serviceTemplates", _TEMPLATES),
        ("removeServiceTemplates", _STRINGS),
        ("nodes", SeqOf(StructOf(NodeUpdateDescriptor))),
        ("removeNodes", _STRINGS),
    )
    name: str = ""
    description: BoxedString | None = None
    distrib: BoxedDistributionDescriptor | None = None
    variables: dict[str, str] = _dict
    removeVariables: list[str] = _list
    propertySets: dict[str, S.PropertySetDescriptor] = _dict
    removePropertySets: list[str] = _list
    replicaGroups: list[S.ReplicaGroupDescriptor] = _list
    removeReplicaGroups: list[str] = _list
    serverTemplates: dict[str, S.TemplateDescriptor] = _dict
    removeServerTemplates: list[str] = _list
    serviceTemplates: dict[str, S.TemplateDescriptor] = _dict
    removeServiceTemplates: list[str] = _list
    nodes: list[NodeUpdateDescriptor] = _list
    removeNodes: list[str] = _list


@attrs.define
class ApplicationUpdateInfo:
    ice_members: ClassVar[Members] = (
        ("updateTime", LONG),
        ("updateUser", STRING),
        ("revision", INT),
        ("descriptor", StructOf(ApplicationUpdateDescriptor)),
    )
    updateTime: int = 0
    updateUser: str = ""
    revision: int = 0
    descriptor: ApplicationUpdateDescriptor = attrs.Factory(ApplicationUpdateDescriptor)
