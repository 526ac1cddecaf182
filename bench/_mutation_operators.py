# -*- test-case-name: tests.test_mutation_tool -*-
"""
Two mutation operators that cosmic-ray's core set lacks, registered as
provider C{gridreg} (so C{gridreg/DeleteStatement}, C{gridreg/ReturnNone}):

  - C{DeleteStatement}: one simple statement inside a block of a function
    (the body of an C{if}, C{else}, C{for}, C{while}, C{with}, C{try},
    C{except} or C{finally}) becomes C{pass}: a forgotten rollback, a
    missed index update, a dropped check;
  - C{ReturnNone}: C{return X} becomes C{return None}.

Run cosmic-ray through this module (C{python3 -m bench._mutation_operators
init|exec CONFIG SESSION}) so that both processes know the provider.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from parso.python.tree import Keyword

from cosmic_ray.operators.operator import Example, Operator

#: Compound statements whose blocks DeleteStatement mutates.
_BLOCKS = {"if_stmt", "for_stmt", "while_stmt", "with_stmt", "try_stmt"}
#: Statements DeleteStatement leaves alone: deleting them changes nothing,
#: or is ReturnNone's business.
_KEPT = {"keyword", "return_stmt", "import_name", "import_from", "global_stmt", "nonlocal_stmt"}

Position = tuple[tuple[int, int], tuple[int, int]]


def _in_block_of_function(node: Any) -> bool:
    parent = node.parent
    if parent is not None and parent.type == "suite":
        parent = parent.parent
    if parent is None or parent.type not in _BLOCKS:
        return False
    while parent is not None and parent.type not in ("funcdef", "classdef", "file_input"):
        parent = parent.parent
    return parent is not None and parent.type == "funcdef"


def _leaf(value: str, like: Any, prefix: str) -> Keyword:
    return Keyword(value, like.start_pos, prefix=prefix)


class DeleteStatement(Operator):
    """Replace one statement in a block of a function with C{pass}."""

    def mutation_positions(self, node: Any) -> Iterator[Position]:
        if node.type != "simple_stmt" or len(node.children) != 2:
            return
        statement = node.children[0]
        if statement.type in _KEPT or statement.type in ("string", "assert_stmt"):
            return
        if _in_block_of_function(node):
            yield (statement.start_pos, statement.end_pos)

    def mutate(self, node: Any, index: int) -> Any:
        assert index == 0
        statement = node.children[0]
        node.children[0] = _leaf("pass", statement, statement.get_first_leaf().prefix)
        return node

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (
            Example(
                "def f(x):\n    if x:\n        x.rollback()\n",
                "def f(x):\n    if x:\n        pass\n",
            ),
        )


class ReturnNone(Operator):
    """Replace the value of a C{return} with C{None}."""

    def mutation_positions(self, node: Any) -> Iterator[Position]:
        if node.type == "return_stmt" and len(node.children) == 2:
            value = node.children[1]
            if not (value.type == "keyword" and value.value == "None"):
                yield (value.start_pos, value.end_pos)

    def mutate(self, node: Any, index: int) -> Any:
        assert index == 0
        node.children[1] = _leaf("None", node.children[1], " ")
        return node

    @classmethod
    def examples(cls) -> tuple[Example, ...]:
        return (Example("def f(x):\n    return x + 1\n", "def f(x):\n    return None\n"),)


_OPERATORS = {"DeleteStatement": DeleteStatement, "ReturnNone": ReturnNone}


class OperatorProvider:
    """The C{gridreg} operator provider."""

    def __iter__(self) -> Iterator[str]:
        return iter(_OPERATORS)

    def __getitem__(self, name: str) -> type[Operator]:
        return _OPERATORS[name]


def main(argv: list[str]) -> int:
    import cosmic_ray.plugins
    from cosmic_ray.cli import main as cosmic_ray_main

    cosmic_ray.plugins.OPERATOR_PROVIDERS["gridreg"] = OperatorProvider()
    return int(cosmic_ray_main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
