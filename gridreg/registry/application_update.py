# -*- test-case-name: tests.test_application_update -*-
"""
Application updates as IceGrid sends them: an C{ApplicationUpdateDescriptor}
says what to add, replace and remove. L{apply_update} turns the deployed
descriptor and an update into the whole new descriptor, which is then
written like a sync; L{diff} is the reverse, what observers are told
(C{applicationUpdated}) when a write changed an application.

Both work on unexpanded Slice descriptors (L{gridreg.registry.descriptor_slice}).
A node's servers and server instances are one list of ids, as in IceGrid:
an update's server or instance replaces whichever entry has its id, and
C{removeServers} names either. An instance's id is its template's server
id with the instance's arguments and the node's and application's variables
substituted. Replaced entries keep their place, new ones come last.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, TypeVar

from gridreg.registry import _descriptor_slice_types as S
from gridreg.registry._descriptor_slice_from_xml import xml_to_slice
from gridreg.registry._descriptor_update_types import (
    ApplicationUpdateDescriptor,
    ApplicationUpdateInfo,
    BoxedDistributionDescriptor,
    BoxedString,
    NodeUpdateDescriptor,
)
from gridreg.registry._descriptor_variables import Scope
from gridreg.registry.descriptor_model import DescriptorError

__all__ = ["apply_update", "check_templates", "diff", "instance_id", "instantiate", "update_info"]

#: bound on what computing one instance's id may expand to
_ID_BUDGET = 64 * 1024

_V = TypeVar("_V")


class _Nowhere:
    def fail(self, reason: str) -> DescriptorError:
        return DescriptorError(reason)


def instance_id(
    app: S.ApplicationDescriptor, node: str, instance: S.ServerInstanceDescriptor
) -> Optional[str]:
    """
    The server id of C{instance} on C{node}, or None when it cannot be
    told (an unknown template, an undefined variable): deploying such an
    application fails later with the parser's reason.
    """
    template = app.serverTemplates.get(instance.template)
    if template is None or not isinstance(template.descriptor, S.ServerDescriptor):
        return None
    node_descriptor = app.nodes.get(node, S.NodeDescriptor())
    at = _Nowhere()
    try:
        scope = (
            Scope.root(app.name, _ID_BUDGET)
            .child(variables=app.variables.items())
            .child({"node": node}, node_descriptor.variables.items())
        )
        values = {
            k: scope.sub(instance.parameterValues.get(k, template.parameterDefaults.get(k, "")), at)
            for k in template.parameters
        }
        return scope.child(values).sub(template.descriptor.id, at)
    except DescriptorError:
        return None


# -- applying -------------------------------------------------------------------


def _merge(into: dict[str, _V], add: dict[str, _V], remove: list[str]) -> None:
    for key in remove:
        into.pop(key, None)
    into.update(copy.deepcopy(add))


def apply_update(
    app: S.ApplicationDescriptor, update: ApplicationUpdateDescriptor
) -> S.ApplicationDescriptor:
    """
    The descriptor C{update} makes of C{app} (which is left as it was).
    Removing what is not there is no error, as in IceGrid.
    """
    new = copy.deepcopy(app)
    if update.description is not None:
        new.description = update.description.value
    if update.distrib is not None:
        new.distrib = copy.deepcopy(update.distrib.value)
    _merge(new.variables, update.variables, update.removeVariables)
    _merge(new.propertySets, update.propertySets, update.removePropertySets)
    _merge(new.serverTemplates, update.serverTemplates, update.removeServerTemplates)
    _merge(new.serviceTemplates, update.serviceTemplates, update.removeServiceTemplates)
    removed = set(update.removeReplicaGroups)
    groups = [g for g in new.replicaGroups if g.id not in removed]
    for group in update.replicaGroups:
        at = next((i for i, g in enumerate(groups) if g.id == group.id), None)
        if at is None:
            groups.append(copy.deepcopy(group))
        else:
            groups[at] = copy.deepcopy(group)
    new.replicaGroups = groups
    for name in update.removeNodes:
        new.nodes.pop(name, None)
    for node_update in update.nodes:
        node = new.nodes.setdefault(node_update.name, S.NodeDescriptor())
        _apply_node(new, node_update, node)
    return new


def _apply_node(
    app: S.ApplicationDescriptor, update: NodeUpdateDescriptor, node: S.NodeDescriptor
) -> None:
    if update.description is not None:
        node.description = update.description.value
    if update.loadFactor is not None:
        node.loadFactor = update.loadFactor.value
    _merge(node.variables, update.variables, update.removeVariables)
    _merge(node.propertySets, update.propertySets, update.removePropertySets)
    name = update.name
    gone = set(update.removeServers)
    gone |= {s.id for s in update.servers}
    gone |= {i for i in (instance_id(app, name, x) for x in update.serverInstances) if i}
    kept_servers = [s for s in node.servers if s.id not in gone]
    kept_instances = [x for x in node.serverInstances if instance_id(app, name, x) not in gone]
    node.servers = _in_place(node.servers, kept_servers, update.servers, lambda s: s.id)
    node.serverInstances = _in_place(
        node.serverInstances,
        kept_instances,
        update.serverInstances,
        lambda x: instance_id(app, name, x),
    )


def _in_place(
    old: list[_V], kept: list[_V], updates: list[_V], id_of: Callable[[_V], object]
) -> list[_V]:
    """C{kept}, with each of C{updates} where the old entry of its id was, or last."""
    kept_entries = {id(k) for k in kept}
    result: list[Optional[_V]] = []
    slots: dict[object, int] = {}
    for entry in old:
        if id(entry) in kept_entries:
            result.append(entry)
        else:
            slots.setdefault(id_of(entry), len(result))
            result.append(None)
    for entry in updates:
        slot = slots.pop(id_of(entry), None)
        if slot is None:
            result.append(copy.deepcopy(entry))
        else:
            result[slot] = copy.deepcopy(entry)
    return [e for e in result if e is not None]


def check_templates(app: S.ApplicationDescriptor) -> None:
    """
    @raise DescriptorError: an instance names a template the application
        lacks, with IceGrid's reason (an update may remove a used template).
    """
    for node in app.nodes.values():
        for instance in node.serverInstances:
            if instance.template not in app.serverTemplates:
                raise DescriptorError(f"unknown server template `{instance.template}'")


def instantiate(
    app: S.ApplicationDescriptor, node: str, instance: S.ServerInstanceDescriptor
) -> S.ApplicationDescriptor:
    """
    C{app} with one more server instance on C{node} (C{instantiateServer}):
    added, never replacing a server, with IceGrid's reasons for refusals.

    @raise DescriptorError: unknown template, or the node has a server of that id.
    """
    new = copy.deepcopy(app)
    check_templates(
        S.ApplicationDescriptor(
            serverTemplates=new.serverTemplates,
            nodes={node: S.NodeDescriptor(serverInstances=[instance])},
        )
    )
    target = new.nodes.setdefault(node, S.NodeDescriptor())
    server_id = instance_id(new, node, instance)
    ids: set[Optional[str]] = {s.id for s in target.servers}
    ids |= {instance_id(new, node, x) for x in target.serverInstances}
    if server_id is not None and server_id in ids:
        raise DescriptorError(f"node `{node}':\nduplicate server `{server_id}' in node `{node}'")
    target.serverInstances.append(copy.deepcopy(instance))
    return new


# -- diffing --------------------------------------------------------------------


def _dict_diff(old: dict[str, _V], new: dict[str, _V]) -> tuple[dict[str, _V], list[str]]:
    changed = {k: copy.deepcopy(v) for k, v in new.items() if old.get(k) != v or k not in old}
    return changed, [k for k in old if k not in new]


def _box(old: str, new: str) -> Optional[BoxedString]:
    return None if old == new else BoxedString(new)


def diff(old: S.ApplicationDescriptor, new: S.ApplicationDescriptor) -> ApplicationUpdateDescriptor:
    """
    The update that makes C{new} of C{old}: L{apply_update}C{(old, diff(old,
    new))} equals C{new}, but for the order of a node's servers.
    """
    update = ApplicationUpdateDescriptor(name=new.name)
    update.description = _box(old.description, new.description)
    if old.distrib != new.distrib:
        update.distrib = BoxedDistributionDescriptor(copy.deepcopy(new.distrib))
    update.variables, update.removeVariables = _dict_diff(old.variables, new.variables)
    update.propertySets, update.removePropertySets = _dict_diff(old.propertySets, new.propertySets)
    update.serverTemplates, update.removeServerTemplates = _dict_diff(
        old.serverTemplates, new.serverTemplates
    )
    update.serviceTemplates, update.removeServiceTemplates = _dict_diff(
        old.serviceTemplates, new.serviceTemplates
    )
    old_groups = {g.id: g for g in old.replicaGroups}
    new_ids = {g.id for g in new.replicaGroups}
    update.replicaGroups = [
        copy.deepcopy(g) for g in new.replicaGroups if old_groups.get(g.id) != g
    ]
    update.removeReplicaGroups = [g for g in old_groups if g not in new_ids]
    update.removeNodes = [n for n in old.nodes if n not in new.nodes]
    for name, node in new.nodes.items():
        node_update = _node_diff(old, new, name, old.nodes.get(name), node)
        if node_update is not None:
            update.nodes.append(node_update)
    return update


def _node_diff(
    old_app: S.ApplicationDescriptor,
    new_app: S.ApplicationDescriptor,
    name: str,
    old: Optional[S.NodeDescriptor],
    new: S.NodeDescriptor,
) -> Optional[NodeUpdateDescriptor]:
    if old is None:
        old = S.NodeDescriptor()
        if new == old:
            return NodeUpdateDescriptor(name)  # an empty node is still a node
    if old == new:
        return None
    update = NodeUpdateDescriptor(name)
    update.description = _box(old.description, new.description)
    update.loadFactor = _box(old.loadFactor, new.loadFactor)
    update.variables, update.removeVariables = _dict_diff(old.variables, new.variables)
    update.propertySets, update.removePropertySets = _dict_diff(old.propertySets, new.propertySets)
    old_entries: dict[Optional[str], object] = {s.id: s for s in old.servers}
    old_entries.update((instance_id(old_app, name, x), x) for x in old.serverInstances)
    new_ids: set[Optional[str]] = {s.id for s in new.servers}
    for server in new.servers:
        if old_entries.get(server.id) != server:
            update.servers.append(copy.deepcopy(server))
    for instance in new.serverInstances:
        key = instance_id(new_app, name, instance)
        new_ids.add(key)
        if key is None or old_entries.get(key) != instance:
            update.serverInstances.append(copy.deepcopy(instance))
    update.removeServers = [k for k in old_entries if k is not None and k not in new_ids]
    return update


def update_info(
    old_xml: str, new_xml: str, update_time: int, update_user: str, revision: int
) -> ApplicationUpdateInfo:
    """
    What C{applicationUpdated} tells observers of a write that turned
    stored application C{old_xml} into C{new_xml}.

    @param update_time: milliseconds since the epoch.
    """
    return ApplicationUpdateInfo(
        update_time, update_user, revision, diff(xml_to_slice(old_xml), xml_to_slice(new_xml))
    )
