# -*- test-case-name: tests.test_admin_cli -*-
"""
What a gridadmin command gives back (L{Result}) and how it is laid out for
people: aligned tables and C{key: value} fields. C{--json} prints the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

#: exit codes shared by every command (gridreg.admin.cli lists them all)
EXIT_OK = 0
EXIT_REFUSED = 1


@attrs.frozen
class Result:
    """What a command produced: C{data} for C{--json}, C{text} for people."""

    data: Any
    text: str
    code: int = EXIT_OK
    #: a line for stderr, when the command did not get what it asked for
    error: str = ""


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows under upper-case headers, columns aligned; the last one is not padded."""
    if not rows:
        return ""
    table = [[title for title, _ in columns]]
    table.extend([_cell(row.get(key)) for _, key in columns] for row in rows)
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table
    )


def format_fields(data: dict[str, Any], skip: Sequence[str] = ()) -> str:
    """C{key: value} lines, keys aligned."""
    keys = [k for k in data if k not in skip and not isinstance(data[k], (list, dict))]
    width = max((len(k) for k in keys), default=0)
    return "\n".join(f"{(k + ':').ljust(width + 1)} {_cell(data[k])}" for k in keys)
