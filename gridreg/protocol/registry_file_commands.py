# -*- test-case-name: tests.test_log_files -*-
"""
The master reads a slave's own log files (C{registry show SLAVE stderr}
through the master, as IceGrid's master does): over the slave's
replication connection, the same stateless reads as the node's
(L{gridreg.protocol.node_commands.OpenNodeFile}, C{ReadNodeFile}).
"""

from __future__ import annotations

from twisted.protocols import amp

from gridreg.protocol.node_commands import FileUnavailableError

_ERRORS: dict[type[Exception], bytes] = {FileUnavailableError: b"FILE_NOT_AVAILABLE"}


class OpenRegistryFile(amp.Command):
    """
    Where reading the slave's C{file} (C{stdout} or C{stderr}: its
    C{Ice.StdOut} or C{Ice.StdErr}) starts for its last C{count} lines.
    """

    arguments = [(b"file", amp.Unicode()), (b"count", amp.Integer())]
    response = [(b"offset", amp.Integer())]
    errors = _ERRORS


class ReadRegistryFile(amp.Command):
    """At most C{length} bytes of the slave's C{file} from C{offset}, and its size."""

    arguments = [(b"file", amp.Unicode()), (b"offset", amp.Integer()), (b"length", amp.Integer())]
    response = [(b"data", amp.String()), (b"size", amp.Integer())]
    errors = _ERRORS
