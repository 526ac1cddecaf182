# -*- test-case-name: tests.test_admin_cli -*-
"""
C{gridadmin}: administer a gridreg registry, as C{icegridadmin} does IceGrid's.

L{gridreg.admin.session} opens an admin session with one replica (the
master, or a named slave for read-only access); L{gridreg.admin.cli} is the
command line on top of it.
"""

from gridreg.admin.session import (
    AdminConfigError,
    AdminSession,
    AdminSessionError,
    AdminUnreachableError,
    open_admin_session,
)

__all__ = [
    "AdminConfigError",
    "AdminSession",
    "AdminSessionError",
    "AdminUnreachableError",
    "open_admin_session",
]
