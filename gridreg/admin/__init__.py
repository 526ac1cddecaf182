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


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gridreg.admin import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
