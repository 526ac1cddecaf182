# -*- test-case-name: tests.test_log_files -*-
"""
C{IceGrid::FileIterator}: what an admin session's C{openServerStdOut},
C{openNodeStdErr}, C{openRegistryStdErr}, ... return, so C{icegridadmin}'s
C{server show}, C{node show} and C{registry show} print log files.

As in IceGrid 3.7.8, an iterator is an object of the replica the session is
on, under C{<instance>/<UUID>} on the same endpoints, ended with its session
or by C{destroy}. It keeps the offset; the bytes come from the node
(L{gridreg.protocol.node_commands.ReadNodeFile}: servers' files through
their node) or from this replica's own files, and each C{read(size)} answer
is cut to C{size} as IceGrid cuts it (L{gridreg.log_files.split_lines}).
Reads of one iterator are served one at a time, in order.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, DeferredLock, fail
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    FileNotAvailableException,
    NodeNotExistException,
    NodeUnreachableException,
    ServerNotExistException,
)
from gridreg.ice.messages import Request
from gridreg.ice.servant import Servant, operation
from gridreg.ice.types import Identity, Proxy
from gridreg.log_files import (
    OVERHEAD,
    TOO_LOW,
    failed_to_open,
    not_set,
    offset_from_end,
    read_chunk,
    run_blocking,
    split_lines,
)
from gridreg.protocol.errors import failure_reason
from gridreg.protocol.node_commands import OpenNodeFile, ReadNodeFile
from gridreg.registry.admin_model import NODE_NOT_ACTIVE

if TYPE_CHECKING:
    from gridreg.registry.ice_sessions import AdminSessionServant

_STREAMS = {"stdout": "Ice.StdOut", "stderr": "Ice.StdErr"}


def other_replica(name: str) -> str:
    """Why gridreg does not read another replica's files (IceGrid relays to it)."""
    return (
        f"gridreg reads only the files of the registry the admin session is on: "
        f"open the session with registry `{name}' to read its files"
    )


class FileSource(Protocol):
    """Where an iterator's bytes come from."""

    def read(self, offset: int, length: int) -> Deferred[tuple[bytes, int]]: ...


class LocalFile:
    """A file of this replica (its own Ice.StdOut or Ice.StdErr)."""

    def __init__(self, reactor: Any, path: str) -> None:
        self.reactor = reactor
        self.path = path

    def open(self, count: int) -> Deferred[int]:
        return run_blocking(self.reactor, offset_from_end, self.path, count).addErrback(
            self._unavailable
        )

    def read(self, offset: int, length: int) -> Deferred[tuple[bytes, int]]:
        return run_blocking(self.reactor, read_chunk, self.path, offset, length).addErrback(
            self._unavailable
        )

    def _unavailable(self, failure: Failure) -> Failure:
        failure.trap(OSError)
        return Failure(FileNotAvailableException(failed_to_open(self.path)))


class NodeFile:
    """A file a node serves: its own, or one of a server it runs."""

    def __init__(self, nodes: Any, node: str, server: str, name: str) -> None:
        self.nodes = nodes
        self.node = node
        self.server = server
        self.name = name

    def open(self, count: int) -> Deferred[int]:
        d = self._call(OpenNodeFile, server=self.server, file=self.name, count=count)
        return d.addCallback(lambda answer: int(answer["offset"]))

    def read(self, offset: int, length: int) -> Deferred[tuple[bytes, int]]:
        d = self._call(
            ReadNodeFile, server=self.server, file=self.name, offset=offset, length=length
        )
        return d.addCallback(lambda a: (bytes(a["data"]), int(a["size"])))

    def _call(self, command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
        """
        Over the node's session with this replica; the node's reasons kept
        (FileUnavailableError), any other failure in words.
        """
        session = self.nodes.sessions.get(self.node)
        if session is None or session.closed:
            return fail(NodeUnreachableException(self.node, NODE_NOT_ACTIVE))
        timeout = self.nodes.timeout
        d = session.protocol.callRemote(command, **kwargs)
        d.addTimeout(timeout, self.nodes.replica.reactor)

        def failed(failure: Failure) -> Failure:
            return Failure(FileNotAvailableException(failure_reason(failure, timeout)))

        return d.addErrback(failed)


class FileIteratorServant(Servant):
    """One open file of an admin session, read from its offset on."""

    type_id = "::IceGrid::FileIterator"
    type_ids = ("::IceGrid::FileIterator",)
    log = Logger()

    def __init__(
        self, session: "AdminSessionServant", identity: Identity, source: Any, offset: int
    ) -> None:
        self.session = session
        self.identity = identity
        self.source = source
        self.offset = offset
        self._lock = DeferredLock()

    @operation("read")
    def read_op(self, request: Request, params: InputStream) -> Deferred[bytes]:
        size = params.read_int()
        if size <= OVERHEAD:
            return fail(FileNotAvailableException(TOO_LOW))
        return self._lock.run(self._read, size).addCallback(self._encode, request)

    def _read(self, size: int) -> Deferred[tuple[bool, list[str]]]:
        def got(answer: tuple[bytes, int]) -> tuple[bool, list[str]]:
            data, file_size = answer
            lines, used = split_lines(data, size)
            self.offset += used
            return used == len(data) and self.offset >= file_size, lines

        return self.source.read(self.offset, size).addCallback(got)

    @staticmethod
    def _encode(result: tuple[bool, list[str]], request: Request) -> bytes:
        eof, lines = result
        out = OutputStream(request.encoding)
        out.write_string_seq(lines)
        out.write_bool(eof)
        return out.getvalue()

    @operation("destroy")
    def destroy_op(self, request: Request, params: InputStream) -> bytes:
        self.session.file_iterators.forget(self)
        return b""


class SessionFiles:
    """The iterators of one admin session, and opening them."""

    def __init__(self, session: "AdminSessionServant") -> None:
        self.session = session
        self.iterators: dict[Identity, FileIteratorServant] = {}

    @property
    def _registry(self) -> Any:
        return self.session.sessions.registry

    def server(self, server_id: str, name: str, count: int) -> Deferred[Proxy]:
        found = self._registry.nodes.server(server_id)
        if found is None:
            return fail(ServerNotExistException(server_id))
        return self._open(NodeFile(self._registry.nodes, found[1].node, server_id, name), count)

    def node(self, node: str, name: str, count: int) -> Deferred[Proxy]:
        if not self.session.model.node_known(node):
            return fail(NodeNotExistException(node))
        return self._open(NodeFile(self._registry.nodes, node, "", name), count)

    def registry(self, replica: str, name: str, count: int) -> Deferred[Proxy]:
        self.session.model.replica(replica)  # RegistryNotExistException for a stranger
        config = self._registry.config
        if replica != config.replica_name:
            return fail(FileNotAvailableException(other_replica(replica)))
        prop = _STREAMS[name]
        path = config.properties.get(prop) if config.properties is not None else None
        if not path:
            return fail(FileNotAvailableException(not_set(prop)))
        return self._open(LocalFile(self._registry.reactor, path), count)

    def _open(self, source: Any, count: int) -> Deferred[Proxy]:
        def opened(offset: int) -> Proxy:
            sessions = self.session.sessions
            if self.session.destroyed:
                raise FileNotAvailableException("the session was destroyed")
            identity = Identity(str(uuid.uuid4()).upper(), self._registry.config.instance_name)
            servant = FileIteratorServant(self.session, identity, source, offset)
            self.iterators[identity] = servant
            sessions.adapter_of(self.session).add(identity, servant)
            return sessions.proxy_for(identity, self.session)

        return source.open(count).addCallback(opened)

    def forget(self, iterator: FileIteratorServant) -> None:
        if self.iterators.pop(iterator.identity, None) is not None:
            self.session.sessions.adapter_of(self.session).remove(iterator.identity)

    def close(self) -> None:
        """The session ended: its iterators are gone (ObjectNotExistException), as IceGrid's."""
        for iterator in list(self.iterators.values()):
            self.forget(iterator)
