# -*- test-case-name: tests.test_descriptor_slice -*-
"""
Stored IceGrid XML read back into the unexpanded Slice descriptor that
C{getApplicationInfo} returns.  The XML was validated by the parser when it
was deployed, so this reader is lenient: it maps what it finds.
"""

from __future__ import annotations

from gridreg.ice.stringify import IdentityParseError, identity_from_string
from gridreg.ice.types import Identity
from gridreg.registry import _descriptor_slice_types as S
from gridreg.registry._descriptor_elements import Element, read_xml
from gridreg.registry.descriptor_model import DescriptorError

__all__ = ["xml_to_slice"]


def _kids(el: Element, tag: str) -> list[Element]:
    return [c for c in el.children if c.tag == tag]


def _description(el: Element) -> str:
    return "\n".join("".join(d.text).strip() for d in _kids(el, "description"))


def _variables(el: Element) -> dict[str, str]:
    return {v.attrib["name"]: v.attrib.get("value", "") for v in _kids(el, "variable")}


def _property_set(el: Element) -> S.PropertySetDescriptor:
    """A named set, or the container a server or an instance holds."""
    pset = S.PropertySetDescriptor()
    for child in el.children:
        if child.tag == "property":
            pset.properties.append(
                S.PropertyDescriptor(child.attrib["name"], child.attrib.get("value", ""))
            )
        elif child.tag == "properties":
            if "refid" in child.attrib:
                pset.references.append(child.attrib["refid"])
            else:
                inner = _property_set(child)
                pset.references += inner.references
                pset.properties += inner.properties
    return pset


def _property_sets(el: Element) -> dict[str, S.PropertySetDescriptor]:
    return {p.attrib["id"]: _property_set(p) for p in _kids(el, "properties") if "id" in p.attrib}


def _identity(text: str) -> Identity:
    try:
        return identity_from_string(text)
    except IdentityParseError:
        return Identity(text)


def _object(el: Element, into: list[S.PropertyDescriptor] | None = None) -> S.ObjectDescriptor:
    a = el.attrib
    if into is not None and a.get("property"):
        into.append(S.PropertyDescriptor(a["property"], a["identity"]))
    return S.ObjectDescriptor(
        _identity(a["identity"]), a.get("type", ""), a.get("proxy-options", "")
    )


def _adapter(el: Element, props: list[S.PropertyDescriptor]) -> S.AdapterDescriptor:
    a = el.attrib
    name = a["name"]
    if "endpoints" in a:
        props.append(S.PropertyDescriptor(f"{name}.Endpoints", a["endpoints"]))
    return S.AdapterDescriptor(
        name,
        _description(el),
        a.get("id", "${server}." + name),
        a.get("replica-group", ""),
        a.get("priority", ""),
        a.get("register-process") == "true",
        a.get("server-lifetime", "true") == "true",
        [_object(o, props) for o in _kids(el, "object")],
        [_object(o, props) for o in _kids(el, "allocatable")],
    )


def _server(el: Element) -> S.ServerDescriptor:
    a = el.attrib
    props: list[S.PropertyDescriptor] = []
    refs: list[str] = []
    adapters = []
    for child in el.children:
        if child.tag == "adapter":
            adapters.append(_adapter(child, props))
        elif child.tag in ("property", "properties"):
            inner = _property_set(_as_container(child))
            refs += inner.references
            props += inner.properties
    return S.ServerDescriptor(
        adapters=adapters,
        propertySet=S.PropertySetDescriptor(refs, props),
        logs=[log.attrib.get("path", "") for log in _kids(el, "log")],
        description=_description(el),
        id=a["id"],
        exe=a.get("exe", ""),
        iceVersion=a.get("ice-version", ""),
        pwd=a.get("pwd", ""),
        options=["".join(o.text) for o in _kids(el, "option")],
        envs=["".join(e.text) for e in _kids(el, "env")],
        activation=a.get("activation", "manual"),
        activationTimeout=a.get("activation-timeout", ""),
        deactivationTimeout=a.get("deactivation-timeout", ""),
        applicationDistrib=a.get("application-distrib", "true") == "true",
        allocatable=a.get("allocatable") == "true",
        user=a.get("user", ""),
    )


def _as_container(child: Element) -> Element:
    """Treat one element directly under a server as a one-element container."""
    return Element("properties", {}, child.line, [child])


def _replica_group(el: Element) -> S.ReplicaGroupDescriptor:
    policy: S.LoadBalancingPolicy | None = None
    for lb in _kids(el, "load-balancing"):
        cls = S.POLICY_CLASSES.get(lb.attrib.get("type", ""))
        if cls is None:
            raise DescriptorError(f"unknown load-balancing type {lb.attrib.get('type')!r}")
        policy = cls(lb.attrib.get("n-replicas", "0"))
        if isinstance(policy, S.AdaptiveLoadBalancingPolicy):
            policy.loadSample = lb.attrib.get("load-sample", "1")
    return S.ReplicaGroupDescriptor(
        el.attrib["id"],
        policy,
        el.attrib.get("proxy-options", ""),
        [_object(o) for o in _kids(el, "object")],
        _description(el),
        el.attrib.get("filter", ""),
    )


def _template(el: Element) -> S.TemplateDescriptor:
    parameters = _kids(el, "parameter")
    servers = _kids(el, "server")
    if len(servers) != 1:
        raise DescriptorError(f"server template {el.attrib.get('id')!r} needs one <server>")
    return S.TemplateDescriptor(
        _server(servers[0]),
        [p.attrib["name"] for p in parameters],
        {p.attrib["name"]: p.attrib["default"] for p in parameters if "default" in p.attrib},
    )


def _merge_node(node: S.NodeDescriptor, el: Element) -> None:
    node.loadFactor = el.attrib.get("load-factor", node.loadFactor)
    node.description = _description(el) or node.description
    node.variables.update(_variables(el))
    node.propertySets.update(_property_sets(el))
    for child in el.children:
        if child.tag == "server":
            node.servers.append(_server(child))
        elif child.tag == "server-instance":
            values = {k: v for k, v in child.attrib.items() if k != "template"}
            sets = _kids(child, "properties")
            pset = _property_set(sets[0]) if sets else S.PropertySetDescriptor()
            node.serverInstances.append(
                S.ServerInstanceDescriptor(child.attrib["template"], values, pset)
            )


def xml_to_slice(xml: str) -> S.ApplicationDescriptor:
    """
    The Slice C{ApplicationDescriptor} of stored application C{xml}.

    @raise DescriptorError: the XML is malformed.
    """
    try:
        root = read_xml(xml)
        (app_el,) = _kids(root, "application")
        app = S.ApplicationDescriptor(
            name=app_el.attrib["name"],
            variables=_variables(app_el),
            replicaGroups=[_replica_group(g) for g in _kids(app_el, "replica-group")],
            serverTemplates={
                t.attrib["id"]: _template(t) for t in _kids(app_el, "server-template")
            },
            description=_description(app_el),
            propertySets=_property_sets(app_el),
        )
        for node_el in _kids(app_el, "node"):
            node = app.nodes.setdefault(node_el.attrib["name"], S.NodeDescriptor())
            _merge_node(node, node_el)
    except (KeyError, ValueError) as e:
        raise DescriptorError(f"stored application XML is not a valid descriptor: {e}") from e
    return app
