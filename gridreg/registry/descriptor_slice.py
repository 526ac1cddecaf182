# -*- test-case-name: tests.test_descriptor_slice -*-
"""
IceGrid descriptors as C{IceGrid::Admin} sends and returns them: Slice
class graphs (L{gridreg.registry._descriptor_slice_types}), converted to
and from the IceGrid XML that gridreg stores for an application.

Both directions keep the descriptor unexpanded (variables, templates and
server instances as written), which is what C{addApplication} receives and
what C{icegridadmin application describe} prints.  Adapter endpoints are
the one reshaping: Slice carries them as a C{<adapter>.Endpoints} property
of the server, XML as the adapter's C{endpoints} attribute.

Features the XML parser refuses (IceBox, service templates, distributions,
database environments) raise L{DescriptorError} here too, naming them.
"""

from __future__ import annotations

from typing import Any, Sequence
from xml.etree import ElementTree as ET

from gridreg.ice.classes import COMPACT, SeqOf, StructOf, ValueReader, ValueWriter
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.stringify import identity_from_string, identity_to_string
from gridreg.registry import _descriptor_slice_types as S
from gridreg.registry._descriptor_update_types import (
    ApplicationUpdateDescriptor,
    ApplicationUpdateInfo,
)
from gridreg.registry._descriptor_slice_from_xml import xml_to_slice
from gridreg.registry.descriptor_model import DescriptorError
from gridreg.registry.descriptor_model import ServerDescriptor as ModelServer

__all__ = [
    "application_info",
    "read_application_descriptor",
    "write_application_infos",
    "read_application_update",
    "read_server_instance",
    "write_application_update_info",
    "slice_to_xml",
    "write_application_descriptor",
    "write_application_info",
    "write_server_info",
    "xml_to_slice",
]

_APPLICATION = StructOf(S.ApplicationDescriptor)


def read_application_descriptor(params: InputStream) -> str:
    """
    Read an C{ApplicationDescriptor} parameter (C{addApplication},
    C{syncApplication}) and return it as IceGrid XML.

    @raise MarshalError: the class graph is malformed.
    @raise DescriptorError: it uses a feature gridreg does not support.
    """
    reader = ValueReader(params)
    descriptor = reader.read(_APPLICATION)
    reader.read_pending()
    return slice_to_xml(descriptor)


def read_application_update(params: InputStream) -> ApplicationUpdateDescriptor:
    """
    Read an C{ApplicationUpdateDescriptor} parameter (C{updateApplication}).

    @raise MarshalError: the class graph is malformed.
    """
    reader = ValueReader(params)
    update: ApplicationUpdateDescriptor = reader.read(StructOf(ApplicationUpdateDescriptor))
    reader.read_pending()
    return update


def read_server_instance(params: InputStream) -> S.ServerInstanceDescriptor:
    """Read a C{ServerInstanceDescriptor} parameter (C{instantiateServer})."""
    reader = ValueReader(params)
    instance: S.ServerInstanceDescriptor = reader.read(StructOf(S.ServerInstanceDescriptor))
    reader.read_pending()
    return instance


def write_application_update_info(
    out: OutputStream, info: ApplicationUpdateInfo, format: str = COMPACT
) -> None:
    """Write an C{ApplicationUpdateInfo} (C{ApplicationObserver.applicationUpdated})."""
    writer = ValueWriter(out, format)
    writer.write(StructOf(ApplicationUpdateInfo), info)
    writer.write_pending()


def write_application_descriptor(out: OutputStream, xml: str, format: str = COMPACT) -> None:
    """Write the C{ApplicationDescriptor} of stored application C{xml}."""
    writer = ValueWriter(out, format)
    writer.write(_APPLICATION, xml_to_slice(xml))
    writer.write_pending()


def application_info(name: str, xml: str, meta: Any) -> Any:
    """
    The C{IceGrid::ApplicationInfo} of stored application C{name} (its
    C{xml} and L{ApplicationMetadata} C{meta}); C{name} must be the name in
    C{xml} (it is checked).
    """
    descriptor = xml_to_slice(xml)
    if descriptor.name != name:
        raise DescriptorError(f"stored application {name!r} holds {descriptor.name!r}")
    return S.ApplicationInfo(
        meta.uuid,
        meta.create_time,
        meta.create_user,
        meta.update_time,
        meta.update_user,
        meta.revision,
        descriptor,
    )


def write_application_infos(out: OutputStream, infos: Sequence[Any], format: str = COMPACT) -> None:
    """Write a sequence of L{application_info}s as one class graph (C{applicationInit})."""
    writer = ValueWriter(out, format)
    writer.write(SeqOf(StructOf(S.ApplicationInfo)), list(infos))
    writer.write_pending()


def write_application_info(out: OutputStream, info: Any, format: str = COMPACT) -> None:
    """Write one L{application_info} (C{getApplicationInfo}, C{applicationAdded})."""
    writer = ValueWriter(out, format)
    writer.write(StructOf(S.ApplicationInfo), info)
    writer.write_pending()


def write_server_info(
    out: OutputStream,
    application: str,
    uuid: str,
    revision: int,
    node: str,
    server: ModelServer,
    session_id: str,
    format: str = COMPACT,
) -> None:
    """Write a C{ServerInfo} for C{getServerInfo}, from the expanded C{server}."""
    info = S.ServerInfo(application, uuid, revision, node, _model_server(server), session_id)
    writer = ValueWriter(out, format)
    writer.write(StructOf(S.ServerInfo), info)
    writer.write_pending()


def _model_server(server: ModelServer) -> S.ServerDescriptor:
    properties = [S.PropertyDescriptor(f"{a.name}.Endpoints", a.endpoints) for a in server.adapters]
    properties += [S.PropertyDescriptor(k, v) for k, v in server.properties]
    adapters = [
        S.AdapterDescriptor(
            a.name,
            "",
            a.id,
            a.replica_group_id,
            str(a.priority) if a.priority else "",
            False,
            a.server_lifetime,
            [S.ObjectDescriptor(identity_from_string(o.identity), o.type) for o in a.objects],
        )
        for a in server.adapters
    ]
    return S.ServerDescriptor(
        adapters=adapters,
        propertySet=S.PropertySetDescriptor([], properties),
        description=server.description,
        id=server.id,
        exe=server.exe,
        pwd=server.pwd,
        options=list(server.options),
        envs=list(server.envs),
        activation=server.activation,
        activationTimeout=str(server.activation_timeout) if server.activation_timeout else "",
        deactivationTimeout=(
            str(server.deactivation_timeout) if server.deactivation_timeout else ""
        ),
        user=server.user,
    )


# -- Slice to XML ---------------------------------------------------------------


def _unsupported(what: str) -> DescriptorError:
    return DescriptorError(f"{what} are not supported by gridreg")


def _sub(parent: ET.Element, tag: str, **attributes: str) -> ET.Element:
    return ET.SubElement(parent, tag, {k.replace("_", "-"): v for k, v in attributes.items()})


def _description(parent: ET.Element, text: str) -> None:
    if text:
        _sub(parent, "description").text = text


def _variables(parent: ET.Element, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        _sub(parent, "variable", name=name, value=value)


def _property_set(parent: ET.Element, pset: S.PropertySetDescriptor, **attributes: str) -> None:
    if not (pset.references or pset.properties or attributes):
        return
    element = _sub(parent, "properties", **attributes)
    for refid in pset.references:
        _sub(element, "properties", refid=refid)
    for prop in pset.properties:
        _sub(element, "property", name=prop.name, value=prop.value)


def _object(parent: ET.Element, tag: str, obj: S.ObjectDescriptor) -> None:
    a = {"identity": identity_to_string(obj.id)}
    if obj.type:
        a["type"] = obj.type
    if obj.proxyOptions:
        a["proxy-options"] = obj.proxyOptions
    _sub(parent, tag, **a)


def _distrib(d: S.DistributionDescriptor) -> None:
    if d.icepatch or d.directories:
        raise _unsupported("distributions (<distrib>)")


def _server(parent: ET.Element, server: S.CommunicatorDescriptor | None) -> None:
    if isinstance(server, S.IceBoxDescriptor):
        raise _unsupported("IceBox servers (<icebox>)")
    if not isinstance(server, S.ServerDescriptor):
        raise DescriptorError(f"expected a server descriptor, not {server!r}")
    if server.dbEnvs:
        raise _unsupported("database environments (<dbenv>)")
    _distrib(server.distrib)
    a = {"id": server.id, "exe": server.exe}
    for key, value in (
        ("ice-version", server.iceVersion),
        ("pwd", server.pwd),
        ("activation", server.activation),
        ("activation-timeout", server.activationTimeout),
        ("deactivation-timeout", server.deactivationTimeout),
        ("user", server.user),
    ):
        if value:
            a[key] = value
    if not server.applicationDistrib:
        a["application-distrib"] = "false"
    if server.allocatable:
        a["allocatable"] = "true"
    element = _sub(parent, "server", **a)
    _description(element, server.description)
    for option in server.options:
        _sub(element, "option").text = option
    for env in server.envs:
        _sub(element, "env").text = env
    properties = list(server.propertySet.properties)
    for adapter in server.adapters:
        _adapter(element, adapter, properties)
    for log in server.logs:
        _sub(element, "log", path=log)
    _property_set(element, S.PropertySetDescriptor(server.propertySet.references, properties))


def _adapter(
    parent: ET.Element, adapter: S.AdapterDescriptor, props: list[S.PropertyDescriptor]
) -> None:
    a = {"name": adapter.name}
    key = f"{adapter.name}.Endpoints"
    found = [p for p in props if p.name == key]
    if found:
        a["endpoints"] = found[-1].value
        props[:] = [p for p in props if p.name != key]
    for attr, value in (
        ("id", adapter.id),
        ("replica-group", adapter.replicaGroupId),
        ("priority", adapter.priority),
    ):
        if value:
            a[attr] = value
    if adapter.registerProcess:
        a["register-process"] = "true"
    if not adapter.serverLifetime:
        a["server-lifetime"] = "false"
    element = _sub(parent, "adapter", **a)
    _description(element, adapter.description)
    for obj in adapter.objects:
        _object(element, "object", obj)
    for obj in adapter.allocatables:
        _object(element, "allocatable", obj)


def _replica_group(parent: ET.Element, group: S.ReplicaGroupDescriptor) -> None:
    a = {"id": group.id}
    if group.proxyOptions:
        a["proxy-options"] = group.proxyOptions
    if group.filter:
        a["filter"] = group.filter
    element = _sub(parent, "replica-group", **a)
    _description(element, group.description)
    policy = group.loadBalancing
    if policy is not None:
        kind = S.POLICY_TYPES.get(type(policy))
        if kind is None:
            raise DescriptorError(f"unknown load-balancing policy {policy!r}")
        lb = {"type": kind}
        if policy.nReplicas:
            lb["n-replicas"] = policy.nReplicas
        if isinstance(policy, S.AdaptiveLoadBalancingPolicy) and policy.loadSample:
            lb["load-sample"] = policy.loadSample
        _sub(element, "load-balancing", **lb)
    for obj in group.objects:
        _object(element, "object", obj)


def slice_to_xml(app: S.ApplicationDescriptor) -> str:
    """
    The IceGrid XML of a Slice C{ApplicationDescriptor}.

    @raise DescriptorError: it uses a feature gridreg does not support.
    """
    if app.serviceTemplates:
        raise _unsupported("service templates (<service-template>)")
    _distrib(app.distrib)
    root = ET.Element("icegrid")
    element = _sub(root, "application", name=app.name)
    _description(element, app.description)
    _variables(element, app.variables)
    for set_id, pset in app.propertySets.items():
        _property_set(element, pset, id=set_id)
    for template_id, template in app.serverTemplates.items():
        t = _sub(element, "server-template", id=template_id)
        for parameter in template.parameters:
            p = {"name": parameter}
            if parameter in template.parameterDefaults:
                p["default"] = template.parameterDefaults[parameter]
            _sub(t, "parameter", **p)
        _server(t, template.descriptor)
    for group in app.replicaGroups:
        _replica_group(element, group)
    for node_name, node in app.nodes.items():
        n = {"name": node_name}
        if node.loadFactor:
            n["load-factor"] = node.loadFactor
        ne = _sub(element, "node", **n)
        _description(ne, node.description)
        _variables(ne, node.variables)
        for set_id, pset in node.propertySets.items():
            _property_set(ne, pset, id=set_id)
        for instance in node.serverInstances:
            if instance.servicePropertySets:
                raise _unsupported("IceBox service property sets")
            ie = _sub(ne, "server-instance", template=instance.template)
            ie.attrib.update(instance.parameterValues)
            _property_set(ie, instance.propertySet)
        for server in node.servers:
            _server(ne, server)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
