# -*- test-case-name: tests.test_log_files -*-
"""
Log files as IceGrid's C{FileIterator} serves them: the line cutting of
C{read(size)} and the offset of the last lines (against what IceGrid 3.7.8
answered, docs/icegrid-node-facts.md "Log files"), the files a node serves,
and admin sessions' iterators on a registry in memory: the registry's own
files, and servers' and nodes' files relayed from a node over its session.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import Properties
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import (
    FileNotAvailableException,
    NodeNotExistException,
    NodeUnreachableException,
    ObjectNotExistError,
    RegistryNotExistException,
    ServerNotExistException,
)
from gridreg.ice.messages import HEADER_SIZE, Request, decode_reply, encode_request, reply_error
from gridreg.ice.types import Identity, OperationMode, Proxy
from gridreg.log_files import TOO_LOW, offset_from_end, read_chunk, split_lines
from gridreg.node.config import NodeConfig
from gridreg.node.files import NodeFiles
from gridreg.protocol.errors import NotFoundError
from gridreg.protocol.node_commands import FileUnavailableError, OpenNodeFile, ReadNodeFile
from gridreg.registry.descriptor_model import ServerDescriptor
from gridreg.registry.service import RegistryService
from tests._fake_node import FakeNode, connect
from tests.test_fencing import PORTS
from tests.test_ice_admin import Client, make_registry, strings
from tests.test_registry_nodes import APP, NodeGrid, NodeTestCase

NORMAL = OperationMode.NORMAL
#: the stderr and stdout the test server of the IceGrid check wrote
ERR = b"err line 0\nerr line 1\nerr line 2\nerr line 3\n"
OUT = b"".join(b"out line %d of S1\n" % i for i in range(5)) + b"partial"

#: IceGrid 3.7.8's first three answers to read(size) repeated on ERR / OUT
#: from the start (a selection of the sizes 6 to 59 that were checked)
ICEGRID_ERR = {
    6: [["e"], ["r"], ["r"]],
    9: [["err "], ["line"], [" 0", ""]],
    13: [["err line"], [" 0", "e"], ["rr line "]],
    14: [["err line "], ["0", "err"], [" line 1", ""]],
    15: [["err line 0", ""], ["err line 1", ""], ["err line 2", ""]],
    20: [["err line 0", ""], ["err line 1", ""], ["err line 2", ""]],
    21: [["err line 0", "e"], ["rr line 1", "er"], ["r line 2", "err"]],
    29: [["err line 0", "err line "], ["1", "err line 2", "err"], [" line 3", "err line 0", ""]],
    30: [
        ["err line 0", "err line 1", ""],
        ["err line 2", "err line 3", ""],
        ["err line 0", "err line 1", ""],
    ],
    44: [
        ["err line 0", "err line 1", "err line "],
        ["2", "err line 3", "err line 0", "err"],
        [" line 1", "err line 2", "err line 3", ""],
    ],
}
ICEGRID_OUT = {
    11: [["out li"], ["ne 0 o"], ["f S1", ""]],
    21: [["out line 0 of S1", ""], ["out line 1 of S1", ""], ["out line 2 of S1", ""]],
    36: [
        ["out line 0 of S1", "out line 1"],
        [" of S1", "out line 2 of S1", ""],
        ["out line 3 of S1", "out line 4"],
    ],
}


def read_all(data: bytes, size: int, reads: int = 3) -> list[list[str]]:
    """Repeated answers of read(size) over C{data}, as an iterator moves on."""
    answers, offset = [], 0
    for _ in range(reads):
        lines, used = split_lines(data[offset:], size)
        if not lines:
            break
        answers.append(lines)
        offset += used
    return answers


class SplitLinesTests(SynchronousTestCase):
    def test_answers_cut_as_icegrid_cuts_them(self) -> None:
        # the server's file grew by another run's lines: repeat ERR for the third reads
        for size, expected in ICEGRID_ERR.items():
            self.assertEqual(read_all(ERR + ERR, size), expected, f"size {size}")
        for size, expected in ICEGRID_OUT.items():
            self.assertEqual(read_all(OUT, size), expected, f"size {size}")

    def test_whole_file_and_end(self) -> None:
        self.assertEqual(
            split_lines(OUT, 1000),
            ([f"out line {i} of S1" for i in range(5)] + ["partial"], len(OUT)),
        )
        self.assertEqual(split_lines(b"", 1000), ([], 0))

    def test_size_too_low(self) -> None:
        for size in (-1, 0, 5):
            with self.assertRaises(ValueError) as raised:
                split_lines(ERR, size)
            self.assertEqual(str(raised.exception), TOO_LOW)

    def test_bytes_that_are_not_utf8_are_replaced(self) -> None:
        self.assertEqual(split_lines(b"a\xffb\n", 100), (["a\ufffdb", ""], 4))


class OffsetTests(SynchronousTestCase):
    def write(self, data: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def tail(self, data: bytes, count: int) -> bytes:
        path = self.write(data)
        return data[offset_from_end(path, count) :]

    def test_last_lines(self) -> None:
        """IceGrid: count 2 on OUT gives its last line and the unfinished one."""
        self.assertEqual(self.tail(OUT, 2), b"out line 4 of S1\npartial")
        self.assertEqual(self.tail(ERR, 1), b"err line 3\n")
        self.assertEqual(self.tail(ERR, 10), ERR)
        self.assertEqual(self.tail(ERR, -1), ERR)
        self.assertEqual(self.tail(ERR, 0), b"")
        self.assertEqual(self.tail(b"", 3), b"")

    def test_across_blocks(self) -> None:
        data = b"".join(b"%05d %s\n" % (i, b"x" * 100) for i in range(400))
        self.assertEqual(self.tail(data, 150), b"".join(data.splitlines(True)[-150:]))

    def test_chunks_are_bounded(self) -> None:
        path = self.write(b"y" * 100_000)
        data, size = read_chunk(path, 10, 1_000_000)
        self.assertEqual((len(data), size), (60_000, 100_000))
        self.assertEqual(read_chunk(path, 200_000, 10), (b"", 100_000))


class FakeServers:
    def __init__(self, *descriptors: ServerDescriptor) -> None:
        self.descriptors = {d.id: d for d in descriptors}

    def effective_descriptor(self, server_id: str) -> ServerDescriptor:
        if server_id not in self.descriptors:
            raise NotFoundError(f"server `{server_id}' is not deployed on node `node1'")
        return self.descriptors[server_id]


def node_files(root: str, output: Optional[str] = "out", **props: str) -> NodeFiles:
    properties = Properties()
    for key, value in props.items():
        properties.set(key, value)
    config = NodeConfig(
        name="node1",
        data_dir=os.path.join(root, "data"),
        locator=Proxy(Identity("Locator", "TG")),
        output_dir=os.path.join(root, output) if output else None,
        properties=properties,
    )
    servers = FakeServers(
        ServerDescriptor("S1", "/bin/s1", logs=("/var/log/s1.log", "rel.log")),
        ServerDescriptor("S3", "/bin/s3", properties=(("Ice.StdErr", "own.err"),)),
    )
    return NodeFiles(None, config, servers, cwd=lambda: root)


class NodeFilesTests(SynchronousTestCase):
    def test_paths(self) -> None:
        files = node_files("/n", **{"Ice.StdOut": "node.out"})
        self.assertEqual(files.path("S1", "stdout"), "/n/out/S1.out")
        self.assertEqual(files.path("S1", "stderr"), "/n/out/S1.err")
        self.assertEqual(files.path("", "stdout"), "/n/node.out")
        with self.assertRaises(NotFoundError):
            files.path("S9", "stdout")

    def test_declared_logs_against_the_nodes_directory(self) -> None:
        files = node_files("/n")
        self.assertEqual(files.path("S1", "/var/log/s1.log"), "/var/log/s1.log")
        self.assertEqual(files.path("S1", "rel.log"), "/n/rel.log")
        self.assertEqual(files.path("S1", "/n/rel.log"), "/n/rel.log")

    def test_logs_reach_the_node_substituted(self) -> None:
        from gridreg.node.server_config import substitute_node_variables
        from gridreg.registry.descriptors import server_from_json, server_to_json

        sent = ServerDescriptor("S1", "/bin/s1", logs=("${node.data}/s1.log", "x.log"))
        received = server_from_json(json.loads(json.dumps(server_to_json(sent))))
        self.assertEqual(received, sent)
        effective = substitute_node_variables(received, {"node.data": "/d"}, "/d")
        self.assertEqual(effective.logs, ("/d/s1.log", "x.log"))

    def test_refusals_say_what_icegrid_says(self) -> None:
        files = node_files("/n", output=None)
        for server, name, reason in [
            ("S1", "stdout", "Ice.StdOut configuration property is not set"),
            ("", "stderr", "Ice.StdErr configuration property is not set"),
            ("S1", "app.log", "unknown log file `/n/app.log'"),
            ("S1", "/n/../n/rel.log", "unknown log file `/n/../n/rel.log'"),
            ("S1", "../x.log", "unknown log file `/n/../x.log'"),
        ]:
            with self.assertRaises(FileUnavailableError) as raised:
                files.path(server, name)
            self.assertEqual(str(raised.exception), reason)

    def test_what_the_server_is_configured_with(self) -> None:
        """A descriptor's own Ice.StdErr wins over Output, as IceGrid's (S3 in the facts)."""
        self.assertEqual(node_files("/n").path("S3", "stderr"), "/n/own.err")
        self.assertEqual(node_files("/n").path("S3", "stdout"), "/n/out/S3.out")
        self.assertEqual(node_files("/n", output=None).path("S3", "stderr"), "/n/own.err")

    def test_open_and_read(self) -> None:
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "out"))
        with open(os.path.join(root, "out", "S1.out"), "wb") as f:
            f.write(OUT)
        files = node_files(root)
        offset = self.successResultOf(files.open("S1", "stdout", 2))
        self.assertEqual(
            self.successResultOf(files.read("S1", "stdout", offset, 1000)),
            (b"out line 4 of S1\npartial", len(OUT)),
        )
        failure = self.failureResultOf(files.open("S1", "stderr", -1), FileUnavailableError)
        self.assertEqual(
            failure.getErrorMessage(), f"failed to open file `{root}/out/S1.err'"
        )


# -- admin sessions in memory ------------------------------------------------------


def open_params(name: str, count: int, *more: str) -> bytes:
    out = OutputStream()
    out.write_string(name)
    for value in more:
        out.write_string(value)
    out.write_int(count)
    return out.getvalue()


def read_params(size: int) -> bytes:
    out = OutputStream()
    out.write_int(size)
    return out.getvalue()


def decode_read(result: InputStream) -> tuple[bool, list[str]]:
    lines = result.read_string_seq()
    return result.read_bool(), lines


class RegistryFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stderr = os.path.abspath(self.mktemp())
        with open(self.stderr, "wb") as f:
            f.write(ERR)
        self.service = make_registry(
            self,
            **{
                "IceGrid.Registry.AdminPermissionsVerifier": "TG/NullPermissionsVerifier",
                "Ice.StdErr": self.stderr,
            },
        )
        self.client = Client(self, self.service)
        result = self.client.invoke(
            Identity("Registry", "TG"), "createAdminSession", NORMAL, strings("u", "p")
        )
        self.session = result.read_proxy()

    def open(self, operation: str, *args: Any) -> Any:
        return self.client.invoke(self.session.identity, operation, NORMAL, open_params(*args))

    def iterator(self, operation: str, *args: Any) -> Proxy:
        proxy = self.open(operation, *args).read_proxy()
        assert proxy is not None
        return proxy

    def read(self, iterator: Proxy, size: int) -> Any:
        result = self.client.invoke(iterator.identity, "read", NORMAL, read_params(size))
        return result if not isinstance(result, InputStream) else decode_read(result)

    def test_iterator_proxy_as_icegrids(self) -> None:
        """<instance>/<UUID> on the session's endpoints."""
        iterator = self.iterator("openRegistryStdErr", "Master", -1)
        self.assertEqual(iterator.identity.category, "TG")
        self.assertRegex(iterator.identity.name, r"^[0-9A-F-]{36}$")
        self.assertEqual(iterator.endpoints, self.session.endpoints)

    def test_read_whole_file_tail_and_follow(self) -> None:
        whole = self.iterator("openRegistryStdErr", "Master", -1)
        self.assertEqual(self.read(whole, 25), (False, ["err line 0", "err l"]))
        self.assertEqual(
            self.read(whole, 1000), (True, ["ine 1", "err line 2", "err line 3", ""])
        )
        self.assertEqual(self.read(whole, 1000), (True, []))
        tail = self.iterator("openRegistryStdErr", "Master", 2)
        self.assertEqual(self.read(tail, 1000), (True, ["err line 2", "err line 3", ""]))
        with open(self.stderr, "ab") as f:
            f.write(b"later\n")
        # what was written since (icegridadmin's -f polls like this)
        self.assertEqual(self.read(whole, 1000), (True, ["later", ""]))
        self.assertEqual(self.read(tail, 1000), (True, ["later", ""]))

    def test_size_too_low(self) -> None:
        iterator = self.iterator("openRegistryStdErr", "Master", -1)
        self.assertEqual(self.read(iterator, 5), FileNotAvailableException(TOO_LOW))

    def test_destroyed_with_the_session_or_alone(self) -> None:
        one = self.iterator("openRegistryStdErr", "Master", -1)
        two = self.iterator("openRegistryStdErr", "Master", -1)
        self.assertIsInstance(self.client.invoke(one.identity, "destroy"), InputStream)
        self.assertIsInstance(self.read(one, 100), ObjectNotExistError)
        self.assertEqual(self.read(two, 15), (False, ["err line 0", ""]))
        self.client.invoke(self.session.identity, "destroy")
        self.assertIsInstance(self.read(two, 100), ObjectNotExistError)

    def test_refusals(self) -> None:
        self.assertEqual(
            self.open("openRegistryStdOut", "Master", -1),
            FileNotAvailableException("Ice.StdOut configuration property is not set"),
        )
        self.assertEqual(
            self.open("openRegistryStdErr", "Nope", -1), RegistryNotExistException("Nope")
        )
        self.assertEqual(self.open("openNodeStdErr", "nope", -1), NodeNotExistException("nope"))
        self.assertEqual(self.open("openServerStdOut", "S9", -1), ServerNotExistException("S9"))
        self.assertEqual(
            self.open("openServerLog", "S9", -1, "x.log"), ServerNotExistException("S9")
        )
        os.remove(self.stderr)
        self.assertEqual(
            self.open("openRegistryStdErr", "Master", -1),
            FileNotAvailableException(f"failed to open file `{self.stderr}'"),
        )


class FileNode(FakeNode):
    """A fake node serving its files with the node's own L{NodeFiles}."""

    files: NodeFiles

    @OpenNodeFile.responder
    def open_file(self, server: str, file: str, count: int) -> Deferred[dict[str, Any]]:
        return self.files.open(server, file, count).addCallback(lambda o: {"offset": o})

    @ReadNodeFile.responder
    def read_file(self, server: str, file: str, offset: int, length: int) -> Any:
        self.calls.append(("read", {"server": server, "offset": offset, "length": length}))
        d = self.files.read(server, file, offset, length)
        return d.addCallback(lambda r: {"data": r[0], "size": r[1]})


class AsyncClient:
    """An Ice connection to a replica of the memory grid: replies come once the grid has run."""

    def __init__(self, grid: Any, service: RegistryService) -> None:
        self.grid = grid
        self.protocol = service.client_factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.transport.clear()
        self.next_id = 1

    def invoke(self, identity: Identity, operation: str, params: bytes = b"") -> Any:
        request_id, self.next_id = self.next_id, self.next_id + 1
        self.protocol.dataReceived(
            encode_request(Request(request_id, identity, "", operation, 0, {}, params=params))
        )
        self.grid.run_until(lambda: len(self.transport.value()) > HEADER_SIZE)
        reply = decode_reply(self.transport.value()[HEADER_SIZE:])
        self.transport.clear()
        error = reply_error(reply)
        return error if error is not None else InputStream(reply.payload, reply.encoding)


class RelayedFileTests(NodeTestCase):
    """Servers' and nodes' files, read on the node over its session with the replica."""

    def setUp(self) -> None:
        self.grid = NodeGrid(self)
        self.master = self.grid.start(
            "Master",
            **{"IceGrid.Registry.AdminPermissionsVerifier": "DemoIceGrid/NullPermissionsVerifier"},
        )
        self.grid.run_until(lambda: self.master.role.opened)
        self.grid.wait(self.master.database.add_application(APP))
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "out"))
        with open(os.path.join(root, "out", "S1.out"), "wb") as f:
            f.write(OUT)
        with open(os.path.join(root, "node.err"), "wb") as f:
            f.write(ERR)
        with open(os.path.join(root, "rel.log"), "wb") as f:
            f.write(b"a log line\n")
        self.node = connect(self.grid.network, PORTS["Master"][2], FileNode("node1"))
        self.node.files = node_files(root, **{"Ice.StdErr": "node.err"})
        self.grid.wait(self.node.register())
        self.client = AsyncClient(self.grid, self.master)
        result = self.client.invoke(
            Identity("Registry", "DemoIceGrid"), "createAdminSession", strings("u", "p")
        )
        self.session = result.read_proxy()

    def open(self, operation: str, *args: Any) -> Any:
        return self.client.invoke(self.session.identity, operation, open_params(*args))

    def read(self, iterator: Proxy, size: int) -> Any:
        result = self.client.invoke(iterator.identity, "read", read_params(size))
        return result if not isinstance(result, InputStream) else decode_read(result)

    def test_server_stdout_through_its_node(self) -> None:
        iterator = self.open("openServerStdOut", "S1", 2).read_proxy()
        self.assertEqual(self.read(iterator, 1000), (True, ["out line 4 of S1", "partial"]))
        whole = self.open("openServerStdOut", "S1", -1).read_proxy()
        self.assertEqual(self.read(whole, 21), (False, ["out line 0 of S1", ""]))
        self.assertEqual(
            self.node.calls[-1], ("read", {"server": "S1", "offset": 0, "length": 21})
        )
        self.assertEqual(self.read(whole, 21), (False, ["out line 1 of S1", ""]))
        self.assertEqual(self.node.calls[-1][1]["offset"], 17)

    def test_node_stderr_and_refusals_from_the_node(self) -> None:
        iterator = self.open("openNodeStdErr", "node1", 1).read_proxy()
        self.assertEqual(self.read(iterator, 1000), (True, ["err line 3", ""]))
        self.assertEqual(
            self.open("openNodeStdOut", "node1", -1),
            FileNotAvailableException("Ice.StdOut configuration property is not set"),
        )
        self.assertEqual(
            self.open("openServerLog", "S1", -1, "/var/log/x.log"),
            FileNotAvailableException("unknown log file `/var/log/x.log'"),
        )
        self.assertEqual(
            self.open("openServerLog", "S1", -1, "/var/log/s1.log"),
            FileNotAvailableException("failed to open file `/var/log/s1.log'"),
        )

    def test_declared_log_through_the_node(self) -> None:
        iterator = self.open("openServerLog", "S1", -1, "rel.log").read_proxy()
        self.assertEqual(self.read(iterator, 1000), (True, ["a log line", ""]))

    def test_node_without_session(self) -> None:
        """S2's node2 never registered: unreachable, as IceGrid says of a node not active."""
        self.assertEqual(
            self.open("openServerStdErr", "S2", -1),
            NodeUnreachableException("node2", "the node is not active"),
        )


class RedirectTests(SynchronousTestCase):
    """Ice.StdOut and Ice.StdErr reopen the process's output, as Ice programs do."""

    def properties(self, **values: str) -> Properties:
        properties = Properties()
        for key, value in values.items():
            properties.set(key, value)
        return properties

    def test_reopened_appending(self) -> None:
        from gridreg.config.stdio import redirect_stdio

        out, err = os.path.abspath(self.mktemp()), os.path.abspath(self.mktemp())
        with open(out, "wb") as f:
            f.write(b"before\n")
        moved: list[tuple[int, int]] = []

        def dup2(opened: int, fd: int) -> None:
            os.write(opened, b"from fd %d\n" % fd)
            moved.append((opened, fd))

        redirect_stdio(self.properties(**{"Ice.StdOut": out, "Ice.StdErr": err}), dup2)
        self.assertEqual([fd for _, fd in moved], [1, 2])
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"before\nfrom fd 1\n")
        with open(err, "rb") as f:
            self.assertEqual(f.read(), b"from fd 2\n")
        redirect_stdio(self.properties(), dup2)
        self.assertEqual(len(moved), 2, "nothing set, nothing moved")

    def test_a_file_that_cannot_be_opened_stops_start_up(self) -> None:
        from gridreg.config.stdio import redirect_stdio

        with self.assertRaises(SystemExit) as raised:
            redirect_stdio(self.properties(**{"Ice.StdErr": "/nonexistent/dir/err"}))
        self.assertIn("Ice.StdErr", str(raised.exception))
        self.assertIn("cannot open /nonexistent/dir/err", str(raised.exception))


class ReplicaFileTests(SynchronousTestCase):
    """The master reads a slave's own files over its replication connection, as IceGrid's."""

    def setUp(self) -> None:
        self.grid = NodeGrid(self)
        verifier = {
            "IceGrid.Registry.AdminPermissionsVerifier": "DemoIceGrid/NullPermissionsVerifier"
        }
        self.slave_err = os.path.abspath(self.mktemp())
        with open(self.slave_err, "wb") as f:
            f.write(ERR)
        self.master = self.grid.start("Master", **verifier)
        self.grid.run_until(lambda: self.master.role.opened)
        self.slave = self.grid.start("Replica1", **verifier, **{"Ice.StdErr": self.slave_err})
        self.grid.run_until(lambda: self.grid.live(self.master, "Replica1"))

    def session(self, registry: RegistryService, name: str) -> tuple[AsyncClient, Proxy]:
        client = AsyncClient(self.grid, registry)
        proxy = client.invoke(
            Identity(name, "DemoIceGrid"), "createAdminSession", strings("u", "p")
        ).read_proxy()
        return client, proxy

    def test_master_reads_the_slaves_stderr(self) -> None:
        client, session = self.session(self.master, "Registry")
        iterator = client.invoke(
            session.identity, "openRegistryStdErr", open_params("Replica1", 1)
        ).read_proxy()
        self.assertEqual(iterator.endpoints, session.endpoints, "an object of the master")
        answer = decode_read(client.invoke(iterator.identity, "read", read_params(1000)))
        self.assertEqual(answer, (True, ["err line 3", ""]))
        self.assertEqual(
            client.invoke(session.identity, "openRegistryStdOut", open_params("Replica1", -1)),
            FileNotAvailableException("Ice.StdOut configuration property is not set"),
        )

    def test_a_slave_knows_no_other_registrys_files(self) -> None:
        """IceGrid 3.7.8: RegistryNotExistException from a slave, even for the master."""
        client, session = self.session(self.slave, "Registry-Replica1")
        self.assertEqual(
            client.invoke(session.identity, "openRegistryStdErr", open_params("Master", -1)),
            RegistryNotExistException("Master"),
        )
        iterator = client.invoke(
            session.identity, "openRegistryStdErr", open_params("Replica1", 2)
        ).read_proxy()
        answer = decode_read(client.invoke(iterator.identity, "read", read_params(1000)))
        self.assertEqual(answer, (True, ["err line 2", "err line 3", ""]))

    def test_a_stopped_slave_is_not_read(self) -> None:
        """IceGrid's master forgets a stopped slave: RegistryNotExistException."""
        self.grid.kill("Replica1")
        self.grid.run_until(lambda: not self.grid.live(self.master, "Replica1"))
        client, session = self.session(self.master, "Registry")
        self.assertEqual(
            client.invoke(session.identity, "openRegistryStdErr", open_params("Replica1", -1)),
            RegistryNotExistException("Replica1"),
        )


class MessageSizeTests(SynchronousTestCase):
    def test_reads_fit_in_ice_message_size_max(self) -> None:
        """
        With Ice.MessageSizeMax=1 (KiB), read(1000000) answers what IceGrid
        3.7.8 did: 768 bytes' worth of lines (54 lines and the start of one).
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"".join(b"line %04d\n" % i for i in range(500)))
        service = make_registry(
            self,
            **{
                "IceGrid.Registry.AdminPermissionsVerifier": "TG/NullPermissionsVerifier",
                "Ice.StdErr": path,
                "Ice.MessageSizeMax": "1",
            },
        )
        client = Client(self, service)
        session = client.invoke(
            Identity("Registry", "TG"), "createAdminSession", NORMAL, strings("u", "p")
        ).read_proxy()
        iterator = client.invoke(
            session.identity, "openRegistryStdErr", NORMAL, open_params("Master", -1)
        ).read_proxy()
        client.protocol.dataReceived(
            encode_request(
                Request(99, iterator.identity, "", "read", 0, {}, params=read_params(1000000))
            )
        )
        reply = client.transport.value()
        self.assertLessEqual(len(reply), 1024)
        eof, lines = decode_read(InputStream(decode_reply(reply[HEADER_SIZE:]).payload))
        self.assertFalse(eof)
        self.assertEqual(lines, [f"line {i:04d}" for i in range(54)] + ["line 00"])
