# -*- test-case-name: tests.test_descriptors -*-
"""
The IceGrid XML descriptor parser: IceGrid's elements read into the classes
of L{gridreg.registry.descriptor_model}.

Administrators write applications in IceGrid 3.7's XML so that their existing
files keep working, and the parser is as strict as IceGrid (unknown elements
and attributes, stray text) because a typo silently ignored is a server that
never starts. Every error names the element's path and line.

The XML arrives from an administrator over the network, so it is parsed with
C{defusedxml}: no DTD, no entities, nothing external, a size cap
(L{gridreg.registry._descriptor_elements}), and a cap on how far variable
substitution may expand the text (L{gridreg.registry._descriptor_variables}).

Supported: variables, replica groups and their load balancing, nodes,
servers, adapters, well-known objects, server templates and instances, and
property sets, allocatable objects (C{<allocatable>}, only in an
C{<adapter>}, as in IceGrid) and allocatable servers. IceBox, distributions
and database environments are refused as not supported; C{<log>} is
accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from gridreg.ice.stringify import IdentityParseError, identity_from_string, identity_to_string
from gridreg.ice.types import Identity
from gridreg.registry._descriptor_elements import MAX_DESCRIPTOR_BYTES, At, read_xml
from gridreg.registry._descriptor_variables import RESERVED, Scope
from gridreg.registry.descriptor_model import (
    ACTIVATION_MODES,
    LOAD_BALANCING_TYPES,
    LOAD_SAMPLES,
    AdapterDescriptor,
    ApplicationDescriptor,
    LoadBalancing,
    NodeDescriptor,
    ObjectDescriptor,
    ReplicaGroupDescriptor,
    ServerDescriptor,
)

__all__ = ["MAX_DESCRIPTOR_BYTES", "MAX_EXPANSION", "parse_application_xml"]

#: How much text variable substitution may produce in one parse.
MAX_EXPANSION = 4 * MAX_DESCRIPTOR_BYTES


#: A server template: its parameters with their defaults, and its <server>.
_Template = tuple[dict[str, "str | None"], At]
_PropertySets = Mapping[str, At]


def parse_application_xml(xml_text: str) -> ApplicationDescriptor:
    """
    Parse and validate one C{<icegrid><application>} document.

    @raise DescriptorError: naming the first problem found, with its
        element path and line.
    """
    root = At(read_xml(xml_text), "", Scope.root("", MAX_EXPANSION))
    if root.el.tag != "icegrid":
        raise root.fail("the root element must be <icegrid>")
    root.attributes()
    apps = list(root.children(("application",)))
    if len(apps) != 1:
        raise root.fail(f"<icegrid> must hold exactly one <application>, not {len(apps)}")
    return _ApplicationParser().parse(apps[0], xml_text)


class _ApplicationParser:
    """One parse, with the application-wide tables that validation needs."""

    def __init__(self) -> None:
        self.templates: dict[str, _Template] = {}
        self.groups: dict[str, At] = {}
        self.server_ids: dict[str, At] = {}
        self.adapter_ids: dict[str, At] = {}
        self.identities: dict[Identity, At] = {}

    def _claim(self, table: dict[Any, At], key: object, what: str, at: At, shown: str = "") -> None:
        if first := table.get(key):
            raise at.fail(
                f"duplicate {what} {shown or key!r} (first at line {first.el.line}, {first.path})"
            )
        table[key] = at

    def parse(self, at: At, xml_text: str) -> ApplicationDescriptor:
        name = at.attributes(("name",), ignored=("import-default-templates",))["name"]
        at = at.named(name).within(Scope.root(name, MAX_EXPANSION))
        variables = at.variables()
        at = at.within(at.scope.child(variables=variables))
        description, groups = "", []
        sets: dict[str, At] = {}
        nodes: dict[str, list[At]] = {}
        allowed = (
            "description",
            "variable",
            "properties",
            "server-template",
            "replica-group",
            "node",
        )
        for child in at.children(allowed):
            if child.el.tag == "description":
                description = child.description()
            elif child.el.tag == "properties":
                self._named_set(child, sets)
            elif child.el.tag == "server-template":
                self._template(child)
            elif child.el.tag == "replica-group":
                groups.append(self._replica_group(child))
            elif child.el.tag == "node":
                # IceGrid merges elements that name the same node.
                node_name = child.attributes(("name",), ignored=("load-factor",))["name"]
                nodes.setdefault(node_name, []).append(child.named(node_name))
        return ApplicationDescriptor(
            name,
            description,
            xml_text,
            tuple(variables),
            tuple(groups),
            tuple(self._node(name, parts, sets) for name, parts in nodes.items()),
        )

    def _named_set(self, at: At, sets: dict[str, At]) -> None:
        set_id = at.attributes(required=("id",))["id"]
        if set_id in sets:
            raise at.fail(f"duplicate property set {set_id!r}")
        sets[set_id] = at.named(set_id)

    def _template(self, at: At) -> None:
        template_id = at.attributes(required=("id",))["id"]
        at = at.named(template_id)
        if template_id in self.templates:
            raise at.fail(f"duplicate server template {template_id!r}")
        parameters: dict[str, str | None] = {}
        servers = []
        for child in at.children(("parameter", "server")):
            if child.el.tag == "server":
                servers.append(child)
                continue
            a = child.attributes(required=("name",), optional=("default",))
            child.no_children()
            if a["name"] in RESERVED or a["name"] in parameters:
                raise child.fail(f"parameter name {a['name']!r} is reserved or repeated")
            parameters[a["name"]] = a.get("default")
        if len(servers) != 1:
            raise at.fail("a server template must hold exactly one <server>")
        self.templates[template_id] = (parameters, servers[0])

    def _replica_group(self, at: At) -> ReplicaGroupDescriptor:
        group_id = at.value(
            at.attributes(("id",), ignored=("filter", "proxy-options"))["id"], "replica group id"
        )
        at = at.named(group_id)
        self._claim(self.groups, group_id, "replica group", at)
        policies, objects, description = [], [], ""
        for child in at.children(("description", "load-balancing", "object")):
            if child.el.tag == "description":
                description = child.description()
            elif child.el.tag == "object":
                objects.append(self._object(child, in_adapter=False))
            else:
                policies.append(self._load_balancing(child))
        if len(policies) > 1:
            raise at.fail("a replica group takes at most one <load-balancing>")
        policy = policies[0] if policies else LoadBalancing()
        return ReplicaGroupDescriptor(group_id, policy, tuple(objects), description)

    def _load_balancing(self, at: At) -> LoadBalancing:
        # Like IceGrid, the type is not substituted, and only adaptive
        # takes a load sample.
        kind = at.el.attrib.get("type", "")
        adaptive = ("load-sample",) if kind == "adaptive" else ()
        a = at.attributes(required=("type",), optional=("n-replicas",) + adaptive)
        at.no_children()
        if kind not in LOAD_BALANCING_TYPES:
            raise at.fail(
                f"unknown load-balancing type {kind!r} (expected one of "
                f"{', '.join(LOAD_BALANCING_TYPES)})"
            )
        n_replicas = at.integer(at.sub(a.get("n-replicas", "0")), "n-replicas", minimum=0)
        sample = at.sub(a.get("load-sample", "1"))
        if sample not in LOAD_SAMPLES:
            raise at.fail(f"load-sample must be 1, 5 or 15, not {sample!r}")
        return LoadBalancing(kind, n_replicas, sample)

    def _object(self, at: At, in_adapter: bool) -> ObjectDescriptor:
        optional = ("type", "property") if in_adapter else ("type",)
        a = at.attributes(("identity",), optional, ignored=("proxy-options",))
        at.no_children()
        text = at.sub(a["identity"])
        try:
            identity = identity_from_string(text)
        except IdentityParseError as e:
            raise at.fail(f"invalid object identity {text!r}: {e.reason}") from e
        canonical = identity_to_string(identity)
        at = at.named(canonical)
        self._claim(self.identities, identity, "object identity", at, canonical)
        return ObjectDescriptor(canonical, at.sub(a.get("type", "")), at.sub(a.get("property", "")))

    # -- nodes and servers ----------------------------------------------------

    def _node(self, name: str, parts: list[At], app_sets: _PropertySets) -> NodeDescriptor:
        scope = parts[0].scope.child({"node": name}, [v for p in parts for v in p.variables()])
        parts = [part.within(scope) for part in parts]
        node_sets: dict[str, At] = {}
        for child in (child for part in parts for child in part.picked("properties")):
            self._named_set(child, node_sets)
        sets = {**app_sets, **node_sets}
        servers, description = [], ""
        allowed = ("description", "variable", "properties", "server", "server-instance")
        for child in (child for part in parts for child in part.children(allowed)):
            if child.el.tag == "description":
                description = child.description()
            elif child.el.tag == "server":
                servers.append(self._server(child, sets, []))
            elif child.el.tag == "server-instance":
                servers.append(self._instance(child, sets))
        return NodeDescriptor(name, tuple(servers), description)

    def _instance(self, at: At, sets: _PropertySets) -> ServerDescriptor:
        if not at.el.attrib.get("template"):
            raise at.fail("<server-instance> needs a non-empty 'template' attribute")
        template_id = at.sub(at.el.attrib["template"])
        at = at.named(template_id)
        if template_id not in self.templates:
            raise at.fail(f"unknown server template {template_id!r}")
        declared, body = self.templates[template_id]
        given = {k: v for k, v in at.el.attrib.items() if k != "template"}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise at.fail(f"template {template_id!r} has no parameter {', '.join(unknown)}")
        missing = [k for k, default in declared.items() if k not in given and default is None]
        if missing:
            raise at.fail(f"template {template_id!r} needs parameter {', '.join(missing)}")
        # Arguments and defaults are substituted where the instance is.
        values = {k: at.sub(given.get(k, v or "")) for k, v in declared.items()}
        refs: list[tuple[str, str]] = []
        own: list[tuple[str, str]] = []
        self._properties(at.children(("properties",)), sets, refs, own, inline=True)
        server = attrs.evolve(
            body,
            scope=at.scope.child(values),
            parent=f"{at.path} -> server-template[{template_id}]",
        )
        return self._server(server, sets, refs + own)

    def _server(
        self, at: At, sets: _PropertySets, extra_properties: list[tuple[str, str]]
    ) -> ServerDescriptor:
        a = at.attributes(
            required=("id", "exe"),
            optional=(
                "pwd",
                "activation",
                "activation-timeout",
                "deactivation-timeout",
                "user",
                "allocatable",
            ),
            ignored=("application-distrib", "ice-version"),
        )
        server_id = at.value(a["id"], "server id")
        at = at.named(server_id)
        self._claim(self.server_ids, server_id, "server id", at)
        # ${server.data} is a directory the node provides for each server.
        runtime = {"server": server_id, "server.data": f"${{node.data}}/servers/{server_id}/data"}
        at = at.within(at.scope.child(runtime, at.variables()))
        activation = at.sub(a.get("activation", "manual"))
        if activation not in ACTIVATION_MODES:
            raise at.fail(
                f"unknown activation mode {activation!r} (expected one of "
                f"{', '.join(ACTIVATION_MODES)})"
            )
        allocatable = at.sub(a.get("allocatable", "false"))
        if allocatable not in ("true", "false"):
            raise at.fail(f"allocatable must be 'true' or 'false', not {allocatable!r}")
        timeouts = [
            at.integer(at.sub(a.get(key, "") or "0"), key, minimum=0)
            for key in ("activation-timeout", "deactivation-timeout")
        ]
        options, envs, adapters, names, description = [], [], [], set(), ""
        logs: list[str] = []
        refs: list[tuple[str, str]] = []
        own: list[tuple[str, str]] = []
        allowed = ("description", "variable", "option", "env", "adapter", "log")
        # Property elements are picked out below, in their own order.
        for child in at.children(allowed, ignored=("property", "properties")):
            tag = child.el.tag
            if tag in ("option", "env"):
                child.attributes()
                child.no_children(text=True)
            if tag == "description":
                description = child.description()
            elif tag == "option":
                options.append(child.sub(child.text()))
            elif tag == "env":
                env = child.sub(child.text())
                if "=" not in env or not env.partition("=")[0]:
                    raise child.fail(f"<env> must read NAME=VALUE, not {env!r}")
                envs.append(env)
            elif tag == "adapter":
                adapter = self._adapter(child, server_id)
                if adapter.name in names:
                    raise child.fail(f"duplicate adapter name {adapter.name!r}")
                names.add(adapter.name)
                adapters.append(adapter)
            elif tag == "log":
                path = child.attributes(required=("path",))["path"]
                child.no_children()
                logs.append(child.value(path, "log path"))
        self._properties(at.picked("property", "properties"), sets, refs, own, inline=True)
        return ServerDescriptor(
            server_id,
            at.value(a["exe"], "exe"),
            at.sub(a.get("pwd", "")),
            tuple(options),
            tuple(envs),
            activation,
            timeouts[0],
            timeouts[1],
            tuple(refs + own + extra_properties),
            tuple(adapters),
            description,
            at.sub(a.get("user", "")),
            allocatable == "true",
            tuple(logs),
        )

    def _adapter(self, at: At, server_id: str) -> AdapterDescriptor:
        a = at.attributes(
            required=("name",),
            optional=("id", "endpoints", "replica-group", "priority", "server-lifetime"),
            ignored=("register-process", "proxy-options"),
        )
        if a.get("id") == "":
            raise at.fail("<adapter> has an empty 'id' attribute")
        name = at.value(a["name"], "adapter name")
        at = at.named(name)
        adapter_id = at.sub(a.get("id", "")) or f"{server_id}.{name}"
        self._claim(self.adapter_ids, adapter_id, "adapter id", at)
        if adapter_id in self.groups:
            raise at.fail(f"adapter id {adapter_id!r} is already a replica group id")
        group = at.sub(a.get("replica-group", ""))
        if group and group not in self.groups:
            raise at.fail(f"unknown replica group {group!r}")
        priority = at.integer(at.sub(a.get("priority", "") or "0"), "priority")
        lifetime = a.get("server-lifetime", "true")
        if lifetime not in ("true", "false"):
            raise at.fail(f"server-lifetime must be 'true' or 'false', not {lifetime!r}")
        objects: list[ObjectDescriptor] = []
        allocatables: list[ObjectDescriptor] = []
        for child in at.children(("object", "allocatable", "description")):
            if child.el.tag == "object":
                objects.append(self._object(child, in_adapter=True))
            elif child.el.tag == "allocatable":
                allocatables.append(self._object(child, in_adapter=True))
        return AdapterDescriptor(
            name,
            adapter_id,
            at.sub(a.get("endpoints", "default")),
            group,
            priority,
            lifetime == "true",
            tuple(objects),
            tuple(allocatables),
        )

    # -- property sets --------------------------------------------------------

    def _properties(
        self,
        children: Iterable[At],
        sets: _PropertySets,
        refs: list[tuple[str, str]],
        own: list[tuple[str, str]],
        inline: bool = False,
        seen: frozenset[str] = frozenset(),
    ) -> None:
        """
        Collect properties into C{refs} (from referenced sets) and C{own}
        (in document order); callers put C{refs} first so their own win,
        as a later duplicate overrides in Ice. A named set's values are
        substituted where the set is defined.
        """
        for child in children:
            if child.el.tag == "property":
                a = child.attributes(required=("name",), optional=("value",))
                child.no_children()
                own.append((child.sub(a["name"]), child.sub(a.get("value", ""))))
            elif inline:  # an unnamed set: a plain container
                child.attributes()
                self._properties(
                    child.children(("property", "properties")), sets, refs, own, seen=seen
                )
            else:  # a reference to a named set, whose properties come first
                refid = child.attributes(required=("refid",))["refid"]
                child.no_children()
                if refid in seen or refid not in sets:
                    raise child.fail(f"property set {refid!r} is unknown or refers to itself")
                nested: list[tuple[str, str]] = []
                self._properties(
                    sets[refid].children(("property", "properties")),
                    sets,
                    nested,
                    nested,
                    seen=seen | {refid},
                )
                refs.extend(nested)
