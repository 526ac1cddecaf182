# -*- test-case-name: tests.test_descriptors -*-
"""
Variables in IceGrid descriptors: where C{${name}} is substituted, which
definitions are visible where, and how far substitution may expand a
descriptor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from gridreg.registry.descriptor_model import DescriptorError

#: Variable names a descriptor may not define.
RESERVED = frozenset({"application", "node", "server", "service"})
#: Prefixes of variables that a node resolves when it starts a server.
_RUNTIME_PREFIXES = ("node.", "server.", "service.", "session.")


class Place(Protocol):
    """Where a substitution happens: what turns a problem into an error naming it."""

    def fail(self, reason: str) -> DescriptorError: ...


class Scope:
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
    def root(cls, application: str, budget: int) -> Scope:
        """
        The application's scope, where only C{${application}} is defined.

        @param budget: how many characters substitution may produce in this
            scope and every scope nested in it, all together.
        """
        return cls({"application": (application, True)}, [budget])

    def child(
        self, literals: Mapping[str, str] = {}, variables: Iterable[tuple[str, str]] = ()
    ) -> Scope:
        """A nested scope whose definitions hide this one's."""
        values = dict(self._values)
        values.update((k, (v, True)) for k, v in literals.items())
        values.update((k, (v, False)) for k, v in variables)
        return Scope(values, self._budget)

    def sub(self, text: str, at: Place) -> str:
        return self._substitute(text, at, ())

    def _substitute(self, text: str, at: Place, resolving: tuple[str, ...]) -> str:
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

    def _lookup(self, name: str, at: Place, resolving: tuple[str, ...]) -> str:
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
