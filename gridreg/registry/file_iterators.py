# -*- test-case-name: tests.test_log_files -*-
"""
C{IceGrid::FileIterator}: what an admin session's C{openServerStdOut},
C{openNodeStdErr}, C{openRegistryStdErr}, ... return, so C{icegridadmin}'s
C{server show}, C{node show} and C{registry show} print log files.

As in IceGrid 3.7.8, an iterator is an object of the replica the session is
on, under C{<instance>/<UUID>} on the same endpoints, ended with its session
or by C{destroy}. It keeps the offset; the bytes come from the node
(L{gridreg.protocol.node_commands.ReadNodeFile}: servers' files through
their node), from this replica's own files, or, on the master, from a
slave's (L{gridreg.protocol.registry_file_commands}); each C{read(size)}
answer is cut to C{size} as IceGrid cuts it (L{gridreg.log_files.split_lines}).
Reads of one iterator are served one at a time, in order.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from twisted.internet.defer import Deferred, DeferredLock, fail
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    FileNotAvailableException,
    NodeNotExistException,
    NodeUnreachableException,
    RegistryNotExistException,
    ServerNotExistException,
    UserException,
)
from gridreg.ice.messages import Request
from gridreg.ice.servant import Servant, operation
from gridreg.ice.types import Identity, Proxy
from gridreg.log_files import OVERHEAD, TOO_LOW, open_at, read_at, split_lines, stdio_path
from gridreg.protocol.errors import failure_reason
from gridreg.protocol.node_commands import FileUnavailableError, OpenNodeFile, ReadNodeFile
from gridreg.protocol.registry_file_commands import OpenRegistryFile, ReadRegistryFile
from gridreg.registry.admin_model import NODE_NOT_ACTIVE

if TYPE_CHECKING:
    from gridreg.registry.ice_sessions import AdminSessionServant

#: what IceGrid 3.7.8 keeps of Ice.MessageSizeMax for the rest of a reply: with
#: 1 KiB, read(1000000) and read(2000) both got 768 bytes' worth of lines
REPLY_OVERHEAD = 256


class FileSource(Protocol):
    """Where an iterator's bytes come from."""

    def open(self, count: int) -> Deferred[int]: ...

    def read(self, offset: int, length: int) -> Deferred[tuple[bytes, int]]: ...


class LocalFile:
    """A file of this replica (its own Ice.StdOut or Ice.StdErr)."""

    def __init__(self, reactor: Any, path: str) -> None:
        self.reactor = reactor
        self.path = path

    def open(self, count: int) -> Deferred[int]:
        return open_at(self.reactor, self.path, count).addErrback(_unavailable)

    def read(self, offset: int, length: int) -> Deferred[tuple[bytes, int]]:
        return read_at(self.reactor, self.path, offset, length).addErrback(_unavailable)


def _unavailable(failure: Failure) -> Failure:
    failure.trap(FileUnavailableError)
    return Failure(FileNotAvailableException(failure.getErrorMessage()))


class RemoteFile:
    """
    A file another process reads for us over an AMP connection: a node's
    (L{OpenNodeFile}) or, on the master, a slave's (L{OpenRegistryFile}).
    The reader's reasons are kept; any other failure is given in words.
    """

    def __init__(
        self,
        protocol: Any,
        clock: Any,
        timeout: float,
        commands: tuple[type[amp.Command], type[amp.Command]],
        **names: str,
    ) -> None:
        self.protocol = protocol
        self.clock = clock
        self.timeout = timeout
        self.commands = commands
        self.names = names

    def open(self, count: int) -> Deferred[int]:
        d = self._call(self.commands[0], count=count)
        return d.addCallback(lambda answer: int(answer["offset"]))

    def read(self, offset: int, length: int) -> Deferred[tuple[bytes, int]]:
        d = self._call(self.commands[1], offset=offset, length=length)
        return d.addCallback(lambda a: (bytes(a["data"]), int(a["size"])))

    def _call(self, command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
        d = self.protocol.callRemote(command, **self.names, **kwargs)
        d.addTimeout(self.timeout, self.clock)

        def failed(failure: Failure) -> Failure:
            return Failure(FileNotAvailableException(failure_reason(failure, self.timeout)))

        return d.addErrback(failed)


def node_file(nodes: Any, node: str, server: str, name: str) -> RemoteFile:
    """
    A file node C{node} reads: its own (C{server} "") or a server's.

    @raise NodeUnreachableException: the node has no session with this
        replica (IceGrid 3.7.8: "the node is not active").
    """
    session = nodes.sessions.get(node)
    if session is None or session.closed:
        raise NodeUnreachableException(node, NODE_NOT_ACTIVE)
    return RemoteFile(
        session.protocol,
        nodes.replica.reactor,
        nodes.timeout,
        (OpenNodeFile, ReadNodeFile),
        server=server,
        file=name,
    )


def slave_file(registry: Any, replica: str, name: str) -> RemoteFile:
    """
    A slave's own file, which the master reads over the slave's replication
    connection, as IceGrid's master relays to the slave.

    @raise RegistryNotExistException: asked of a slave, or the slave is not
        connected: an IceGrid 3.7.8 slave knows no other registry, and its
        master forgets a slave that stopped.
    """
    master = registry.master
    session = master.sessions.get(replica) if master is not None else None
    if session is None or session.closed or not session.live:
        raise RegistryNotExistException(replica)
    return RemoteFile(
        session.protocol,
        registry.reactor,
        session.timeout,
        (OpenRegistryFile, ReadRegistryFile),
        file=name,
    )


class FileIteratorServant(Servant):
    """One open file of an admin session, read from its offset on."""

    type_id = "::IceGrid::FileIterator"
    type_ids = ("::IceGrid::FileIterator",)
    log = Logger()

    def __init__(
        self,
        session: "AdminSessionServant",
        identity: Identity,
        source: Any,
        offset: int,
        max_size: Optional[int] = None,
    ) -> None:
        """
        @param max_size: C{Ice.MessageSizeMax} in bytes (None: no limit): a
            larger C{size} is cut to what a reply may carry.
        """
        self.max_size = None if max_size is None else max_size - REPLY_OVERHEAD
        self.session = session
        self.identity = identity
        self.source = source
        self.offset = offset
        self._lock = DeferredLock()

    @operation("read")
    def read_op(self, request: Request, params: InputStream) -> Deferred[bytes]:
        size = params.read_int()
        if self.max_size is not None:
            size = min(size, self.max_size)
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
        node = found[1].node
        return self._open(lambda: node_file(self._registry.nodes, node, server_id, name), count)

    def node(self, node: str, name: str, count: int) -> Deferred[Proxy]:
        if not self.session.model.node_known(node):
            return fail(NodeNotExistException(node))
        return self._open(lambda: node_file(self._registry.nodes, node, "", name), count)

    def registry(self, replica: str, name: str, count: int) -> Deferred[Proxy]:
        self.session.model.replica(replica)  # RegistryNotExistException for a stranger
        registry = self._registry
        if replica == registry.config.replica_name:
            return self._open(
                lambda: LocalFile(
                    registry.reactor, stdio_path(registry.config.properties, name, os.getcwd())
                ),
                count,
            )
        return self._open(lambda: slave_file(registry, replica, name), count)

    def _open(self, make_source: Callable[[], FileSource], count: int) -> Deferred[Proxy]:
        try:
            source = make_source()
        except FileUnavailableError as e:
            return fail(FileNotAvailableException(str(e)))
        except UserException as e:
            return fail(e)

        def opened(offset: int) -> Proxy:
            sessions = self.session.sessions
            if self.session.destroyed:
                raise FileNotAvailableException("the session was destroyed")
            identity = Identity(str(uuid.uuid4()).upper(), self._registry.config.instance_name)
            servant = FileIteratorServant(
                self.session, identity, source, offset, self._registry.config.message_size_max
            )
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
