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
    absolute,
    failed_to_open,
    not_set,
    offset_from_end,
    read_chunk,
    run_blocking,
    unknown_log,
)
from gridreg.node.config import NodeConfig
from gridreg.node.server_config import config_lines
from gridreg.protocol.errors import NotFoundError
from gridreg.protocol.node_commands import FileUnavailableError

_STREAMS = {"stdout": "Ice.StdOut", "stderr": "Ice.StdErr"}


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
        prop = _STREAMS.get(name)
        if not server:
            if prop is None:
                raise FileUnavailableError(f"unknown file `{name}'")
            value = self.config.properties.get(prop) if self.config.properties else None
            if not value:
                raise FileUnavailableError(not_set(prop))
            return absolute(value, self._cwd())
        descriptor = self.servers.effective_descriptor(server)
        if prop is not None:
            values = dict(config_lines(descriptor, self.config))
            if not values.get(prop):
                raise FileUnavailableError(not_set(prop))
            return absolute(values[prop], self._cwd())
        cwd = self._cwd()
        wanted = absolute(name, cwd)
        declared = {absolute(p, cwd) for p in descriptor.logs}
        if wanted not in declared:
            raise FileUnavailableError(unknown_log(wanted))
        return wanted

    def open(self, server: str, name: str, count: int) -> Deferred[int]:
        try:
            path = self.path(server, name)
        except (FileUnavailableError, NotFoundError) as e:
            return fail(e)
        return run_blocking(self.reactor, _opened, path, count)

    def read(self, server: str, name: str, offset: int, length: int) -> Deferred[tuple[bytes, int]]:
        try:
            path = self.path(server, name)
        except (FileUnavailableError, NotFoundError) as e:
            return fail(e)
        return run_blocking(self.reactor, _read, path, offset, length)


def _opened(path: str, count: int) -> int:
    try:
        return offset_from_end(path, count)
    except OSError:
        raise FileUnavailableError(failed_to_open(path)) from None


def _read(path: str, offset: int, length: int) -> tuple[bytes, int]:
    try:
        return read_chunk(path, offset, length)
    except OSError:
        raise FileUnavailableError(failed_to_open(path)) from None
