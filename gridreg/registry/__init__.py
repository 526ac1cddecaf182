"""
A registry replica. L{program} is the C{gridregistry} program (the console
script, C{python -m gridreg.registry}); this module imports nothing, so
that the program can set the garbage collector up before the imports.
"""

from types import ModuleType


def import_launcher() -> ModuleType:
    """
    L{gridreg.registry.launch}, imported with the garbage collector off,
    then frozen out of its reach: the imports make most of a replica's
    objects, none of them garbage, and the collector's passes over them
    as they were made, and later its full passes over all of them, were
    time a fresh replica spent before it could answer.
    """
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        from gridreg.registry import launch
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return launch


def program() -> None:
    """Run one replica from the command line (L{gridreg.registry.launch.main})."""
    import_launcher().main()
