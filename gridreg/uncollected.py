"""
Modules imported out of the garbage collector's reach, for programs that
start often and live with what they import (C{gridadmin}, a replica).

A program's imports make most of its objects, none of them garbage; the
collector walked them while they were made and again in every full pass
after (about 4 ms during C{gridadmin}'s imports and 14 ms at its exit;
15 ms of a fresh slave's start-up: C{bench/README.rst}, "Issue 9, ninth
session"). So the collector is off while they are imported, and what they
made is then frozen (C{gc.freeze}) out of its reach.
"""

from __future__ import annotations

import gc
import importlib
from types import ModuleType

__all__ = ["import_uncollected"]


def import_uncollected(name: str) -> ModuleType:
    """Import module C{name} with the collector off, freeze what it made, restore the collector."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
