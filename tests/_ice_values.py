"""
Helpers for the class-codec tests: the captured IcePy vectors in
C{tests/data/ice-classes/}, a canonical dump of decoded graphs that matches
the one C{tests/interop/make_class_vectors.py} makes on the IcePy side, and
a way to ask IcePy to decode bytes we wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from gridreg.ice.classes import UnknownSlicedValue, Value
from gridreg.ice.types import Identity

DATA = Path(__file__).parent / "data" / "ice-classes"
SCRIPT = Path(__file__).parent / "interop" / "make_class_vectors.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def vector(name: str) -> dict[str, Any]:
    """One captured vector: C{op}, C{format}, C{hex} (payload), C{value}."""
    with open(DATA / f"{name}.json") as f:
        return json.load(f)  # type: ignore[no-any-return]


def dump(value: Any, ids: dict[int, int] | None = None) -> Any:
    """The JSON form IcePy's side gives an equal graph (refs numbered)."""
    if ids is None:
        ids = {}
    if isinstance(value, UnknownSlicedValue):
        return {"@unknown": value.unknown_type_id}
    if isinstance(value, Value):
        if id(value) in ids:
            return {"@ref": ids[id(value)]}
        ids[id(value)] = len(ids) + 1
        out: dict[str, Any] = {"@type": type(value).ice_id}
        names = sorted(n for cls in type(value).ice_slices() for n, _ in cls.ice_own_members())
        for name in names:
            out[name] = dump(getattr(value, name), ids)
        return out
    if isinstance(value, (list, tuple)):
        return [dump(v, ids) for v in value]
    if isinstance(value, dict):
        return {"@dict": [[dump(k, ids), dump(v, ids)] for k, v in value.items()]}
    if isinstance(value, Identity):
        return {"@struct": "Identity", "category": value.category, "name": value.name}
    if hasattr(type(value), "ice_members"):
        out = {"@struct": type(value).__name__}
        for name, _ in sorted(type(value).ice_members):
            out[name] = dump(getattr(value, name), ids)
        return out
    return value


def icepy_available() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import Ice, IceGrid"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def icepy_decode(requests: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """
    Have an IcePy client receive each payload as the result of the named
    operation; return its dump (C{{"value": ...}}) or C{{"error": ...}}.
    """
    lines = "".join(json.dumps({"op": op, "hex": data.hex()}) + "\n" for op, data in requests)
    done = subprocess.run(
        [SYSTEM_PYTHON, str(SCRIPT), "decode"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"IcePy decode failed: {done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines()]
