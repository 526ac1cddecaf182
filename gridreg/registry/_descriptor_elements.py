# -*- test-case-name: tests.test_descriptors -*-
"""
Reading IceGrid descriptor XML strictly and safely.

The XML arrives from an administrator over the network, so it is parsed with
C{defusedxml}: no DTD, no entities, nothing external, and a size cap. The
reader is as strict as IceGrid (unknown elements and attributes, stray
text), because a typo silently ignored is a server that never starts:
L{At}, an element in its context, checks what an element may hold, and
every error it raises names the element's path and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from xml.etree.ElementTree import ParseError
from xml.parsers import expat

import attrs
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import DefusedXMLParser  # type: ignore[import-untyped]

from gridreg.registry._descriptor_variables import RESERVED, Scope
from gridreg.registry.descriptor_model import DescriptorError

#: The largest descriptor accepted, in UTF-8 bytes.
MAX_DESCRIPTOR_BYTES = 4 * 1024 * 1024

#: Elements of IceGrid's schema that gridreg refuses.
UNSUPPORTED = frozenset(
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
_INT = re.compile(r"[+-]?[0-9]{1,10}\Z")


@attrs.define
class Element:
    """One XML element, with the line its start tag is on."""

    tag: str
    attrib: dict[str, str]
    line: int
    children: list[Element] = attrs.field(factory=list)
    text: list[str] = attrs.field(factory=list)


class _Builder:
    """A parser target that builds L{Element}s and notes their lines."""

    def __init__(self) -> None:
        self.expat: object = None
        self._stack: list[Element] = []
        self._root: Element | None = None

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        element = Element(tag, dict(attributes), getattr(self.expat, "CurrentLineNumber", 0))
        if self._stack:
            self._stack[-1].children.append(element)
        else:
            self._root = element
        self._stack.append(element)

    def end(self, tag: str) -> None:
        self._stack.pop()

    def data(self, text: str) -> None:
        self._stack[-1].text.append(text)

    def close(self) -> Element | None:
        return self._root


def read_xml(text: str) -> Element:
    """The root element of C{text}, refusing unsafe, malformed or oversized XML."""
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
        root: Element | None = parser.close()
    except ParseError as e:
        line, column = e.position
        reason = expat.errors.messages.get(e.code, str(e))
        raise DescriptorError(f"malformed XML at column {column}: {reason}", line=line) from e
    except DefusedXmlException as e:
        reason = f"forbidden XML ({type(e).__name__}): DTDs and entities are not allowed"
        raise DescriptorError(reason, line=parser.parser.CurrentLineNumber) from e
    assert root is not None  # expat refuses a document without a root element
    return root


@attrs.frozen
class At:
    """
    An element being read, with what errors need (its path and line) and
    the variables in scope there.
    """

    el: Element
    parent: str
    scope: Scope
    label: str = ""

    @property
    def path(self) -> str:
        name = f"{self.el.tag}[{self.label}]" if self.label else self.el.tag
        return f"{self.parent}/{name}" if self.parent else name

    def fail(self, reason: str) -> DescriptorError:
        return DescriptorError(reason, self.path, self.el.line)

    def sub(self, text: str) -> str:
        return self.scope.sub(text, self)

    def named(self, label: str) -> At:
        return attrs.evolve(self, label=label)

    def within(self, scope: Scope) -> At:
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

    def children(self, allowed: Iterable[str], ignored: Iterable[str] = ()) -> Iterator[At]:
        """The allowed children, in order; anything else is an error."""
        if self.text().strip():
            raise self.fail(f"unexpected text in <{self.el.tag}>")
        allowed, ignored = tuple(allowed), tuple(ignored)
        for el in self.el.children:
            child = At(el, self.path, self.scope)
            if el.tag in UNSUPPORTED:
                raise child.fail(f"<{el.tag}> is not supported by gridreg")
            if el.tag not in allowed + ignored:
                raise child.fail(f"unknown element <{el.tag}> in <{self.el.tag}>")
            if el.tag in allowed:
                yield child

    def no_children(self, text: bool = False) -> None:
        """Refuse child elements (and, unless C{text}, character data)."""
        if self.el.children:
            raise At(self.el.children[0], self.path, self.scope).fail(
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

    def picked(self, *tags: str) -> Iterator[At]:
        """The children with one of C{tags}, leaving the others to L{children}."""
        return (At(el, self.path, self.scope) for el in self.el.children if el.tag in tags)

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
            if a["name"] in RESERVED:
                raise child.fail(f"{a['name']!r} is a reserved variable name")
            if a["name"] in found:
                raise child.fail(f"duplicate variable {a['name']!r}")
            found[a["name"]] = a.get("value", "")
        return list(found.items())
