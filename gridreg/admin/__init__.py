# -*- test-case-name: tests.test_admin_cli -*-
"""
C{gridadmin}: administer a gridreg registry, as C{icegridadmin} does IceGrid's.

L{gridreg.admin.session} opens an admin session with one replica (the
master, or a named slave for read-only access); L{gridreg.admin.cli} is the
command line on top of it, over the blocking L{gridreg.admin.wire} session.
The names below are loaded when first used, so that the command line does
not import Twisted.
"""

from typing import Any

__all__ = [
    "AdminConfigError",
    "AdminSession",
    "AdminSessionError",
    "AdminUnreachableError",
    "open_admin_session",
]


def program() -> int:
    """
    C{gridadmin} as a program (the console script, C{python -m
    gridreg.admin}): L{gridreg.admin.cli.main}, with the garbage collector
    kept off the objects the imports make. A command is short and its
    imports make most of its objects, none of them garbage: the collector
    traversed them while they were made (about 4 ms here) and again at
    exit (about 14 ms, a tenth of C{registry list}). So it is off during
    the imports, which are then frozen out of its reach, as is everything
    once the command is done (the session is closed by then, and the
    interpreter flushes stdout whatever the collector does). Not in
    C{main}, which tests call in their own process.
    """
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        from gridreg.admin.cli import main
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    try:
        return main()
    finally:
        gc.freeze()


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gridreg.admin import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
