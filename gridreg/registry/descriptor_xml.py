# -*- test-case-name: tests.test_descriptors -*-
"""
The IceGrid XML descriptor parser.

Administrators write applications in IceGrid 3.7's XML so that their existing
files keep working, and the parser is as strict as IceGrid (unknown elements
and attributes, stray text) because a typo silently ignored is a server that
never starts. Every error names the element's path and line.

The XML arrives from an administrator over the network, so it is parsed with
C{defusedxml}: no DTD, no entities, nothing external, a size cap, and a cap
on how far variable substitution may expand the text.

Supported: variables, replica groups and their load balancing, nodes,
servers, adapters, well-known objects, server templates and instances, and
property sets. IceBox, distributions and database environments are refused
as not supported; C{<allocatable>} and C{<log>} are accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from xml.etree.ElementTree import ParseError
from xml.parsers import expat

import attrs
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import DefusedXMLParser  # type: ignore[import-untyped]

from gridreg.ice.stringify import IdentityParseError, identity_from_string, identity_to_string
from gridreg.ice.types import Identity
from gridreg.registry.descriptors import (
    ACTIVATION_MODES,
    LOAD_BALANCING_TYPES,
    LOAD_SAMPLES,
    AdapterDescriptor,
    ApplicationDescriptor,
    DescriptorError,
    LoadBalancing,
    NodeDescriptor,
    ObjectDescriptor,
    ReplicaGroupDescriptor,
    ServerDescriptor,
)

#: The largest descriptor accepted, in UTF-8 bytes.
MAX_DESCRIPTOR_BYTES = 4 * 1024 * 1024
#: How much text variable substitution may produce in one parse.
MAX_EXPANSION = 4 * MAX_DESCRIPTOR_BYTES

_UNSUPPORTED = frozenset(
    {
        "icebox",
        "service",
        "service-template",
        "service-instance",
        "distrib",
        "dbenv",
        "dbproperty",
        "directory",
        "target",
    }
)
_RESERVED = frozenset({"application", "node", "server", "service"})
#: Prefixes of variables that a node resolves when it starts a server.
_RUNTIME_PREFIXES = ("node.", "server.", "service.", "session.")
_INT = re.compile(r"[+-]?[0-9]{1,10}\Z")


# -- reading the XML ----------------------------------------------------------


@attrs.define
class _Element:
    """One XML element, with the line its start tag is on."""

    tag: str
    attrib: dict[str, str]
    line: int
    children: list[_Element] = attrs.field(factory=list)
    text: list[str] = attrs.field(factory=list)


class _Builder:
    """A parser target that builds L{_Element}s and notes their lines."""

    def __init__(self) -> None:
        self.expat: object = None
        self._stack: list[_Element] = []
        self._root: _Element | None = None

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        element = _Element(tag, dict(attributes), getattr(self.expat, "CurrentLineNumber", 0))
        if self._stack:
            self._stack[-1].children.append(element)
        else:
            self._root = element
        self._stack.append(element)

    def end(self, tag: str) -> None:
        self._stack.pop()

    def data(self, text: str) -> None:
        self._stack[-1].text.append(text)

    def close(self) -> _Element | None:
        return self._root


def _read_xml(text: str) -> _Element:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise DescriptorError(f"the descriptor is not valid Unicode: {e.reason}") from e
    if size > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(f"the descriptor is larger than {MAX_DESCRIPTOR_BYTES} bytes")
    builder = _Builder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    builder.expat = parser.parser
    try:
        parser.feed(text)
        root: _Element | None = parser.close()
    except ParseError as e:
        line, column = e.position
        reason = expat.errors.messages.get(e.code, str(e))
        raise DescriptorError(f"malformed XML at column {column}: {reason}", line=line) from e
    except DefusedXmlException as e:
        reason = f"forbidden XML ({type(e).__name__}): DTDs and entities are not allowed"
        raise DescriptorError(reason, line=parser.parser.CurrentLineNumber) from e
    assert root is not None  # expat refuses a document without a root element
    return root


# -- variables ----------------------------------------------------------------


class _Scope:
    """
    The variables visible at one place in the descriptor.

    As in IceGrid, a variable's value is substituted where it is used: an
    application variable C{/data/${server}} names each server's own
    directory. Built-ins and template arguments are literal, C{$${} stands
    for a literal C{${}, and C{${node.*}}-style run-time variables are left
    for the node.
    """

    def __init__(self, values: dict[str, tuple[str, bool]], budget: list[int]) -> None:
        self._values = values
        self._budget = budget
        self._cache: dict[str, str] = {}

    @classmethod
    def root(cls, application: str) -> _Scope:
        return cls({"application": (application, True)}, [MAX_EXPANSION])

    def child(
        self, literals: Mapping[str, str] = {}, variables: Iterable[tuple[str, str]] = ()
    ) -> _Scope:
        """A nested scope whose definitions hide this one's."""
        values = dict(self._values)
        values.update((k, (v, True)) for k, v in literals.items())
        values.update((k, (v, False)) for k, v in variables)
        return _Scope(values, self._budget)

    def sub(self, text: str, at: _At) -> str:
        return self._substitute(text, at, ())

    def _substitute(self, text: str, at: _At, resolving: tuple[str, ...]) -> str:
        out = []
        i = 0
        while (j := text.find("$", i)) >= 0:
            out.append(text[i:j])
            if text.startswith("$${", j):
                out.append("${")
                i = j + 3
            elif text.startswith("${", j):
                end = text.find("}", j)
                if end < 0:
                    raise at.fail(f"unterminated variable reference in {text!r}")
                out.append(self._lookup(text[j + 2 : end], at, resolving))
                i = end + 1
            else:
                out.append("$")
                i = j + 1
        out.append(text[i:])
        result = "".join(out)
        self._budget[0] -= len(result)
        if self._budget[0] < 0:
            raise at.fail("variable substitution expands the descriptor too much")
        return result

    def _lookup(self, name: str, at: _At, resolving: tuple[str, ...]) -> str:
        if name in self._cache:
            return self._cache[name]
        if name not in self._values:
            if name.startswith(_RUNTIME_PREFIXES):
                return "${" + name + "}"
            raise at.fail(f"undefined variable {name!r}")
        if name in resolving:
            raise at.fail(
                f"variable {name!r} refers to itself ({' -> '.join(resolving + (name,))})"
            )
        value, literal = self._values[name]
        if not literal:
            value = self._substitute(value, at, resolving + (name,))
        self._cache[name] = value
        return value


# -- one element in context ---------------------------------------------------


@attrs.frozen
class _At:
    """
    An element being read, with what errors need (its path and line) and
    the variables in scope there.
    """

    el: _Element
    parent: str
    scope: _Scope
    label: str = ""

    @property
    def path(self) -> str:
        name = f"{self.el.tag}[{self.label}]" if self.label else self.el.tag
        return f"{self.parent}/{name}" if self.parent else name

    def fail(self, reason: str) -> DescriptorError:
        return DescriptorError(reason, self.path, self.el.line)

    def sub(self, text: str) -> str:
        return self.scope.sub(text, self)

    def named(self, label: str) -> _At:
        return attrs.evolve(self, label=label)

    def within(self, scope: _Scope) -> _At:
        return attrs.evolve(self, scope=scope)

    def text(self) -> str:
        return "".join(self.el.text)

    def attributes(
        self,
        required: Iterable[str] = (),
        optional: Iterable[str] = (),
        ignored: Iterable[str] = (),
    ) -> dict[str, str]:
        """The attributes the caller uses; unknown ones are errors."""
        required, optional, ignored = tuple(required), tuple(optional), tuple(ignored)
        for name in self.el.attrib:
            if name not in required + optional + ignored:
                raise self.fail(f"unknown attribute {name!r} on <{self.el.tag}>")
        for name in required:
            if not self.el.attrib.get(name):
                raise self.fail(f"<{self.el.tag}> needs a non-empty {name!r} attribute")
        return {k: v for k, v in self.el.attrib.items() if k not in ignored}

    def children(self, allowed: Iterable[str], ignored: Iterable[str] = ()) -> Iterator[_At]:
        """The allowed children, in order; anything else is an error."""
        if self.text().strip():
            raise self.fail(f"unexpected text in <{self.el.tag}>")
        allowed, ignored = tuple(allowed), tuple(ignored)
        for el in self.el.children:
            child = _At(el, self.path, self.scope)
            if el.tag in _UNSUPPORTED:
                raise child.fail(f"<{el.tag}> is not supported by gridreg")
            if el.tag not in allowed + ignored:
                raise child.fail(f"unknown element <{el.tag}> in <{self.el.tag}>")
            if el.tag in allowed:
                yield child

    def no_children(self, text: bool = False) -> None:
        """Refuse child elements (and, unless C{text}, character data)."""
        if self.el.children:
            raise _At(self.el.children[0], self.path, self.scope).fail(
                f"<{self.el.tag}> takes no child elements"
            )
        if not text and self.text().strip():
            raise self.fail(f"unexpected text in <{self.el.tag}>")

    def value(self, text: str, what: str) -> str:
        """C{text} substituted, which must not come out empty."""
        if value := self.sub(text):
            return value
        raise self.fail(f"the {what} must not be empty")

    def integer(self, text: str, what: str, minimum: int | None = None) -> int:
        if not _INT.match(text) or not -(2**31) <= int(text) < 2**31:
            raise self.fail(f"{what} must be an integer, not {text!r}")
        if minimum is not None and int(text) < minimum:
            raise self.fail(f"{what} must be at least {minimum}, not {text}")
        return int(text)

    def picked(self, *tags: str) -> Iterator[_At]:
        """The children with one of C{tags}, leaving the others to L{children}."""
        return (_At(el, self.path, self.scope) for el in self.el.children if el.tag in tags)

    def description(self) -> str:
        self.attributes()
        self.no_children(text=True)
        return self.sub(self.text().strip())

    def variables(self) -> list[tuple[str, str]]:
        """This element's C{<variable>}s, unsubstituted (they are used lazily)."""
        found: dict[str, str] = {}
        for child in self.picked("variable"):
            a = child.attributes(required=("name",), optional=("value",))
            child.no_children()
            if a["name"] in _RESERVED:
                raise child.fail(f"{a['name']!r} is a reserved variable name")
            if a["name"] in found:
                raise child.fail(f"duplicate variable {a['name']!r}")
            found[a["name"]] = a.get("value", "")
        return list(found.items())


#: A server template: its parameters with their defaults, and its <server>.
_Template = tuple[dict[str, "str | None"], _At]
_PropertySets = Mapping[str, _At]


def parse_application_xml(xml_text: str) -> ApplicationDescriptor:
    """
    Parse and validate one C{<icegrid><application>} document.

    @raise DescriptorError: naming the first problem found, with its
        element path and line.
    """
    root = _At(_read_xml(xml_text), "", _Scope.root(""))
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
        self.groups: dict[str, _At] = {}
        self.server_ids: dict[str, _At] = {}
        self.adapter_ids: dict[str, _At] = {}
        self.identities: dict[Identity, _At] = {}

    def _claim(
        self, table: dict[Any, _At], key: object, what: str, at: _At, shown: str = ""
    ) -> None:
        if first := table.get(key):
            raise at.fail(
                f"duplicate {what} {shown or key!r} (first at line {first.el.line}, {first.path})"
            )
        table[key] = at

    def parse(self, at: _At, xml_text: str) -> ApplicationDescriptor:
        name = at.attributes(("name",), ignored=("import-default-templates",))["name"]
        at = at.named(name).within(_Scope.root(name))
        variables = at.variables()
        at = at.within(at.scope.child(variables=variables))
        description, groups = "", []
        sets: dict[str, _At] = {}
        nodes: dict[str, list[_At]] = {}
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

    def _named_set(self, at: _At, sets: dict[str, _At]) -> None:
        set_id = at.attributes(required=("id",))["id"]
        if set_id in sets:
            raise at.fail(f"duplicate property set {set_id!r}")
        sets[set_id] = at.named(set_id)

    def _template(self, at: _At) -> None:
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
            if a["name"] in _RESERVED or a["name"] in parameters:
                raise child.fail(f"parameter name {a['name']!r} is reserved or repeated")
            parameters[a["name"]] = a.get("default")
        if len(servers) != 1:
            raise at.fail("a server template must hold exactly one <server>")
        self.templates[template_id] = (parameters, servers[0])

    def _replica_group(self, at: _At) -> ReplicaGroupDescriptor:
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

    def _load_balancing(self, at: _At) -> LoadBalancing:
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

    def _object(self, at: _At, in_adapter: bool) -> ObjectDescriptor:
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

    def _node(self, name: str, parts: list[_At], app_sets: _PropertySets) -> NodeDescriptor:
        scope = parts[0].scope.child({"node": name}, [v for p in parts for v in p.variables()])
        parts = [part.within(scope) for part in parts]
        node_sets: dict[str, _At] = {}
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

    def _instance(self, at: _At, sets: _PropertySets) -> ServerDescriptor:
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
        self, at: _At, sets: _PropertySets, extra_properties: list[tuple[str, str]]
    ) -> ServerDescriptor:
        a = at.attributes(
            required=("id", "exe"),
            optional=("pwd", "activation", "activation-timeout", "deactivation-timeout"),
            ignored=("application-distrib", "allocatable", "user", "ice-version"),
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
        timeouts = [
            at.integer(at.sub(a.get(key, "") or "0"), key, minimum=0)
            for key in ("activation-timeout", "deactivation-timeout")
        ]
        options, envs, adapters, names, description = [], [], [], set(), ""
        refs: list[tuple[str, str]] = []
        own: list[tuple[str, str]] = []
        allowed = ("description", "variable", "option", "env", "adapter")
        # Property elements are picked out below, in their own order.
        for child in at.children(allowed, ignored=("log", "property", "properties")):
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
        )

    def _adapter(self, at: _At, server_id: str) -> AdapterDescriptor:
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
        objects = tuple(
            self._object(child, in_adapter=True)
            for child in at.children(("object", "description"), ignored=("allocatable",))
            if child.el.tag == "object"
        )
        return AdapterDescriptor(
            name,
            adapter_id,
            at.sub(a.get("endpoints", "default")),
            group,
            priority,
            lifetime == "true",
            objects,
        )

    # -- property sets --------------------------------------------------------

    def _properties(
        self,
        children: Iterable[_At],
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
