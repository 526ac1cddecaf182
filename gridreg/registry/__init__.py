"""
A registry replica. L{program} is the C{gridregistry} program (the console
script, C{python -m gridreg.registry}); this module imports nothing, so
that the program can set the garbage collector up before the imports.
"""

from types import ModuleType


def import_launcher() -> ModuleType:
    """
    L{gridreg.registry.launch}, imported out of the garbage collector's
    reach (L{gridreg.uncollected}): its passes over what the imports made
    were time a fresh replica spent before it could answer.
    """
    from gridreg.uncollected import import_uncollected

    return import_uncollected("gridreg.registry.launch")


def program() -> None:
    """Run one replica from the command line (L{gridreg.registry.launch.main})."""
    import_launcher().main()
