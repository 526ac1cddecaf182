# -*- test-case-name: tests.test_log_files -*-
"""
The files a node serves to the registry's C{FileIterator}s: its own
C{Ice.StdOut} / C{Ice.StdErr} and its servers' (the values in the
configuration file the node writes for them, so what the server really
writes), and the log files a server's descriptor declares.

Paths are resolved as icegridnode 3.7.8 resolves them: a relative one is
joined to the node's working directory, unnormalised, on both the declared
and the asked side. Reads run in the reactor's thread pool.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail

from gridreg.log_files import (
    STREAMS,
    absolute,
    not_set,
    open_at,
    read_at,
    stdio_path,
    unknown_log,
)
from gridreg.node.config import NodeConfig
from gridreg.node.server_config import config_lines
from gridreg.protocol.errors import NotFoundError
from gridreg.protocol.node_commands import FileUnavailableError


class NodeFiles:
    """Resolves and reads the node's files for L{OpenNodeFile} and L{ReadNodeFile}."""

    def __init__(
        self,
        reactor: Any,
        config: NodeConfig,
        servers: Any,
        cwd: Callable[[], str] = os.getcwd,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.servers = servers
        self._cwd = cwd

    def path(self, server: str, name: str) -> str:
        """
        @raise FileUnavailableError: with IceGrid's reason.
        @raise NotFoundError: C{server} is not deployed on this node.
        """
        if not server:
            return stdio_path(self.config.properties, name, self._cwd())
        descriptor = self.servers.effective_descriptor(server)
        prop = STREAMS.get(name)
        if prop is not None:
            values = dict(config_lines(descriptor, self.config))
            if not values.get(prop):
                raise FileUnavailableError(not_set(prop))
            return absolute(values[prop], self._cwd())
        cwd = self._cwd()
        wanted = absolute(name, cwd)
        if wanted not in {absolute(p, cwd) for p in descriptor.logs}:
            raise FileUnavailableError(unknown_log(wanted))
        return wanted

    def open(self, server: str, name: str, count: int) -> Deferred[int]:
        try:
            path = self.path(server, name)
        except (FileUnavailableError, NotFoundError) as e:
            return fail(e)
        return open_at(self.reactor, path, count)

    def read(self, server: str, name: str, offset: int, length: int) -> Deferred[tuple[bytes, int]]:
        try:
            path = self.path(server, name)
        except (FileUnavailableError, NotFoundError) as e:
            return fail(e)
        return read_at(self.reactor, path, offset, length)
