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
    traversed them while they were made and again at exit (a tenth of
    C{registry list}). So the imports are L{gridreg.uncollected}, and
    everything is frozen out of its reach once the command is done (the
    session is closed by then, and the interpreter flushes stdout whatever
    the collector does). Not in
    C{main}, which tests call in their own process.
    """
    import gc

    from gridreg.uncollected import import_uncollected

    main = import_uncollected("gridreg.admin.cli").main
    try:
        return main()
    finally:
        gc.freeze()


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gridreg.admin import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
