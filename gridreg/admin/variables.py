# -*- test-case-name: tests.test_admin_cli_nodes -*-
"""
C{application add|update FILE NAME=VALUE ...}: command-line variables,
written into the descriptor before it is uploaded.

The registry stores the XML it was sent and every replica parses that
copy, so the values must be in the text, not beside it. As with
C{icegridadmin}, a command-line value overrides the application's own
C{<variable>} of that name: the new ones become the first children of
C{<application>} and the old ones are taken out (the registry refuses a
duplicate). Only those bytes change; comments, layout and entity
references elsewhere stay as the author wrote them.
"""

from __future__ import annotations

import xml.parsers.expat
from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

import defusedxml.ElementTree  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]

__all__ = ["VariableError", "parse_assignments", "set_variables"]


class VariableError(ValueError):
    """A malformed assignment, or a descriptor the variables cannot be written into."""


def parse_assignments(words: Sequence[str]) -> list[tuple[str, str]]:
    """
    C{NAME=VALUE} words as pairs, in order (a later one wins).

    @raise VariableError: a word has no C{=} or an empty name.
    """
    pairs = []
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not name.strip():
            raise VariableError(f"bad variable assignment `{word}': use NAME=VALUE")
        pairs.append((name.strip(), value))
    return pairs


def _tag_end(data: bytes, start: int) -> int:
    """The index of the C{>} closing the tag that starts at C{start} (quotes may hold C{>})."""
    quote = None
    for i in range(start, len(data)):
        c = data[i : i + 1]
        if quote:
            if c == quote:
                quote = None
        elif c in (b'"', b"'"):
            quote = c
        elif c == b">":
            return i
    raise VariableError("unterminated tag")


class _Locator:
    """Byte spans of C{<application>}'s start tag and of its C{<variable>} children."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.depth = 0
        self.application: int | None = None
        self.variables: list[tuple[str, int]] = []  # (name, start)
        self.first_child: int | None = None
        self._open: list[tuple[str, int]] = []
        self.ends: dict[int, int] = {}  # start of an element -> expat's index at its end
        self._done = False
        self._parser = xml.parsers.expat.ParserCreate()
        self._parser.StartElementHandler = self.start
        self._parser.EndElementHandler = self.end

    def start(self, name: str, attributes: dict[str, str]) -> None:
        here = self._parser.CurrentByteIndex
        if self.depth == 1 and name == "application" and self.application is None:
            self.application = here
        elif self.depth == 2 and self.application is not None and not self._done:
            if self.first_child is None:
                self.first_child = here
            if name == "variable":
                self.variables.append((attributes.get("name", ""), here))
        self._open.append((name, here))
        self.depth += 1

    def end(self, name: str) -> None:
        self.depth -= 1
        _, started = self._open.pop()
        self.ends[started] = self._parser.CurrentByteIndex
        if self.depth == 1 and started == self.application:
            self._done = True

    def run(self) -> None:
        self._parser.Parse(self.data, True)

    def element_end(self, start: int) -> int:
        """The index just past the element starting at C{start}."""
        head = _tag_end(self.data, start)
        if self.data[head - 1 : head] == b"/":
            return head + 1
        return _tag_end(self.data, self.ends[start]) + 1


def set_variables(xml_text: str, assignments: Sequence[tuple[str, str]]) -> str:
    """
    C{xml_text} with C{<variable name= value=/>} for each assignment as the
    first children of its C{<application>}, replacing any of the same name.

    @raise VariableError: the text is not a well-formed, safe descriptor
        with an C{<application>} under its root.
    """
    if not assignments:
        return xml_text
    data = xml_text.encode("utf-8")
    try:
        # defusedxml vets the document (no entities, nothing external) before
        # plain expat reads it again for the byte positions it reports
        defusedxml.ElementTree.fromstring(data)
        found = _Locator(data)
        found.run()
    except (defusedxml.ElementTree.ParseError, xml.parsers.expat.ExpatError) as e:
        raise VariableError(f"not well-formed XML: {e}") from None
    except DefusedXmlException as e:
        raise VariableError(f"refused XML: {e}") from None
    if found.application is None:
        raise VariableError("no <application> element under the root")
    values = dict(assignments)
    edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement)
    for name, start in found.variables:
        if name in values:
            end = found.element_end(start)
            line = data.rfind(b"\n", 0, start)
            if line >= 0 and not data[line + 1 : start].strip():
                start = line  # with its line's indentation
            edits.append((start, end, b""))
    head = _tag_end(data, found.application)
    indent = b"\n  "
    if found.first_child is not None:
        gap = data[head + 1 : found.first_child]
        if b"\n" in gap and not gap.strip():
            indent = b"\n" + gap.rsplit(b"\n", 1)[1]
    else:
        line = data.rfind(b"\n", 0, found.application)
        own = data[line + 1 : found.application]
        indent = b"\n" + (own if not own.strip() else b"") + b"  "
    new = b"".join(
        indent + f"<variable name={quoteattr(n)} value={quoteattr(v)}/>".encode("utf-8")
        for n, v in values.items()
    )
    if data[head - 1 : head] == b"/":  # <application .../>: open it up
        close = indent[:-2] if indent.endswith(b"  ") else b"\n"
        edits.append((head - 1, head + 1, b">" + new + close + b"</application>"))
    else:
        edits.append((head + 1, head + 1, new))
    for start, end, replacement in sorted(edits, reverse=True):
        data = data[:start] + replacement + data[end:]
    return data.decode("utf-8")
