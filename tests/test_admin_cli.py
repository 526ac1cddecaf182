# -*- test-case-name: tests.test_admin_cli -*-
"""
The C{gridadmin} command line: arguments, output and exit statuses, with a
fake session (no network).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gridreg.admin import cli
from gridreg.admin.session import AdminConfigError, AdminUnreachableError
from gridreg.config.properties import PropertyError
from gridreg.protocol.errors import (
    ApplicationError,
    NotAuthorizedError,
    NotFoundError,
    NotMasterError,
    QuorumError,
    RegistryUserError,
    TransferError,
)

LOCATOR = "DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061"

OBJECTS = [
    {
        "identity": "DemoIceGrid/Locator",
        "proxy": "DemoIceGrid/Locator -t -e 1.1:tcp -p 4061",
        "type": "::Ice::Locator",
    },
    {"identity": "hello", "proxy": "hello -t -e 1.1 @ HelloGroup", "type": "::Demo::Hello"},
]
ADAPTERS = [
    {
        "id": "HelloGroup",
        "kind": "replica-group",
        "replica_group": "",
        "application": "DemoApp",
        "endpoints": "tcp -h 127.0.0.1 -p 1:tcp -h 127.0.0.1 -p 2",
    },
    {
        "id": "Solo",
        "kind": "adapter",
        "replica_group": "",
        "application": "",
        "endpoints": "tcp -h 127.0.0.1 -p 3",
    },
]
REPLICAS = [
    {
        "name": "Master",
        "role": "master",
        "serial": 12,
        "lag": None,
        "alive": True,
        "state": "live",
        "reason": "",
        "client": "tcp -p 4061",
    },
    {
        "name": "Replica1",
        "role": "slave",
        "serial": 11,
        "lag": 1,
        "alive": False,
        "state": "failed",
        "reason": "no acknowledgement: timed out",
        "client": "tcp -p 5061",
    },
]


class FakeSession:
    """An admin session that answers from canned data, or raises C{error}."""

    def __init__(self, error: Optional[Exception] = None) -> None:
        self.error = error
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False
        self.alive = True

    async def _answer(self, value: Any, *call: Any) -> Any:
        self.calls.append(call)
        if self.error is not None:
            raise self.error
        return value

    async def upload_and_add_application(self, xml: str, update: bool) -> tuple[str, int]:
        return await self._answer(("DemoApp", 7), "add", xml, update)

    async def remove_application(self, name: str) -> int:
        return await self._answer(8, "remove_application", name)

    async def list(self, what: str, pattern: str = "") -> list[dict[str, Any]]:
        data = {
            "application": [{"name": "DemoApp", "description": "Two servers"}],
            "object": OBJECTS,
            "adapter": ADAPTERS,
            "registry": REPLICAS,
        }[what]
        return await self._answer(data, "list", what, pattern)

    async def describe(self, what: str, key: str) -> dict[str, Any]:
        data = {
            "application": {
                "name": key,
                "description": "Two servers",
                "uuid": "U-1",
                "revision": 2,
                "create_time": 1796134001646,
                "create_user": "alice",
                "update_time": 1796134074422,
                "update_user": "",
                "xml": "<icegrid/>\n",
            },
            "object": OBJECTS[1],
            "adapter": {
                **ADAPTERS[0],
                "members": [
                    {"id": "HelloServer-1.Hello", "endpoints": "tcp -h 127.0.0.1 -p 1"},
                    {"id": "HelloServer-2.Hello", "endpoints": "tcp -h 127.0.0.1 -p 2"},
                ],
            }
            if key == "HelloGroup"
            else ADAPTERS[1],
            "registry": {**REPLICAS[0], "internal": "tcp -p 4063"},
        }[what]
        return await self._answer(data, "describe", what, key)

    async def ping(self, name: str) -> bool:
        return await self._answer(self.alive, "ping", name)

    async def add_object(self, proxy: str, type: str = "") -> int:
        return await self._answer(9, "add_object", proxy, type)

    async def remove_object(self, identity: str) -> int:
        return await self._answer(10, "remove_object", identity)

    async def remove_adapter(self, adapter_id: str) -> int:
        return await self._answer(11, "remove_adapter", adapter_id)

    def close(self) -> Deferred[None]:
        self.closed = True
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


class Run:
    """One C{gridadmin} invocation against a fake session: status and output."""

    def __init__(
        self,
        testcase: SynchronousTestCase,
        argv: list[str],
        session: Optional[FakeSession] = None,
        open_error: Optional[Exception] = None,
        environ: Optional[dict[str, str]] = None,
    ) -> None:
        self.session = session or FakeSession()
        self.opened: list[tuple[Any, ...]] = []
        out, err = io.StringIO(), io.StringIO()

        async def open_session(
            reactor: Any,
            properties: Any,
            replica: Optional[str],
            timeout: float,
            warn: Callable[[str], None],
        ) -> FakeSession:
            self.opened.append((properties, replica, timeout))
            if open_error is not None:
                raise open_error
            return self.session

        def runner(work: Callable[[Any], Deferred[int]]) -> int:
            return testcase.successResultOf(work(None))  # type: ignore[no-any-return]

        self.status = cli.main(
            argv,
            stdout=out,
            stderr=err,
            environ=environ or {},
            runner=runner,
            open_session=open_session,
        )
        self.out, self.err = out.getvalue(), err.getvalue()


def run(testcase: SynchronousTestCase, *argv: str, **kwargs: Any) -> Run:
    return Run(testcase, ["--locator", LOCATOR, *argv], **kwargs)


class ArgumentTests(SynchronousTestCase):
    def test_help_documents_exit_statuses(self) -> None:
        result = Run(self, ["--help"])
        self.assertEqual(result.status, 0)
        for line in (
            "0  success",
            "1  the registry refused",
            "2  usage error",
            "3  the registry is unreachable",
            "4  a write was refused",
        ):
            self.assertIn(line, result.out)

    def test_usage_errors_exit_2_with_one_line(self) -> None:
        for argv in (
            ["object", "add"],
            ["frobnicate"],
            ["object"],
            ["--timeout", "-1", "registry", "list"],
            ["application", "list", "extra"],
        ):
            result = run(self, *argv)
            self.assertEqual(result.status, cli.EXIT_USAGE, argv)
            self.assertEqual(result.out, "")
            self.assertTrue(result.err.startswith("gridadmin: "), result.err)
            self.assertEqual(result.err.count("\n"), 1, result.err)
            self.assertEqual(result.opened, [])

    def test_global_options(self) -> None:
        args = cli.parse_args(
            [
                "--replica",
                "Replica1",
                "--json",
                "--timeout",
                "2.5",
                "--property",
                "A=1",
                "--property",
                "B=2",
                "object",
                "add",
                "hello@A",
                "::Demo::Hello",
            ]
        )
        self.assertEqual(
            (args.replica, args.json, args.timeout, args.property),
            ("Replica1", True, 2.5, ["A=1", "B=2"]),
        )
        self.assertEqual(
            (args.group, args.action, args.proxy, args.type),
            ("object", "add", "hello@A", "::Demo::Hello"),
        )
        args = cli.parse_args(["object", "add", "hello@A"])
        self.assertEqual((args.type, args.timeout, args.replica), ("", cli.DEFAULT_TIMEOUT, None))

    def test_every_command_parses(self) -> None:
        for argv in (
            ["application", "add", "f.xml"],
            ["application", "update", "f.xml"],
            ["application", "remove", "A"],
            ["application", "list"],
            ["application", "describe", "A"],
            ["object", "remove", "x"],
            ["object", "find", "::T"],
            ["object", "list"],
            ["object", "list", "h*"],
            ["object", "describe", "x"],
            ["adapter", "list"],
            ["adapter", "endpoints", "A"],
            ["adapter", "remove", "A"],
            ["registry", "list"],
            ["registry", "ping", "M"],
            ["registry", "describe", "M"],
        ):
            args = cli.parse_args(argv)
            self.assertIn((args.group, args.action), cli.COMMANDS)

    def test_properties_precedence(self) -> None:
        """--config, then --property, then --locator: the last one wins."""
        config = self.mktemp()
        with open(config, "w") as f:
            f.write("Ice.Default.Locator=From/Locator:tcp -p 1\nA=file\nB=file\n")
        args = cli.parse_args(["--config", config, "--property", "A=override", "registry", "list"])
        properties = cli.load_properties(args, {})
        self.assertEqual((properties["A"], properties["B"]), ("override", "file"))
        self.assertEqual(properties["Ice.Default.Locator"], "From/Locator:tcp -p 1")
        args = cli.parse_args(["--config", config, "--locator", LOCATOR, "registry", "list"])
        self.assertEqual(cli.load_properties(args, {})["Ice.Default.Locator"], LOCATOR)

    def test_ice_config_environment(self) -> None:
        config = self.mktemp()
        with open(config, "w") as f:
            f.write(f"Ice.Default.Locator={LOCATOR}\n")
        result = Run(self, ["registry", "list"], environ={"ICE_CONFIG": config})
        self.assertEqual(result.status, 0)
        self.assertEqual(result.opened[0][0]["Ice.Default.Locator"], LOCATOR)

    def test_configuration_errors_exit_2(self) -> None:
        result = Run(self, ["registry", "list"])
        self.assertEqual(result.status, cli.EXIT_USAGE)
        self.assertIn("Ice.Default.Locator", result.err)
        result = Run(
            self, ["--config", os.path.join(self.mktemp(), "missing.cfg"), "registry", "list"]
        )
        self.assertEqual(result.status, cli.EXIT_USAGE)
        result = run(self, "application", "add", os.path.join(self.mktemp(), "missing.xml"))
        self.assertEqual(result.status, cli.EXIT_USAGE)
        self.assertIn("cannot read", result.err)
        self.assertEqual(result.opened, [])  # no connection for a typo


class OutputTests(SynchronousTestCase):
    def test_table_is_aligned(self) -> None:
        text = cli.format_table(ADAPTERS, cli.ADAPTER_COLUMNS)
        lines = text.split("\n")
        self.assertEqual(len(lines), 3)
        self.assertTrue(
            lines[0].startswith("ID          KIND           REPLICA-GROUP  APPLICATION")
        )
        self.assertEqual(lines[2].index("adapter"), lines[0].index("KIND"))
        self.assertEqual(lines[2].index("tcp"), lines[0].index("ENDPOINTS"))
        self.assertEqual(cli.format_table([], cli.ADAPTER_COLUMNS), "")

    def test_object_list(self) -> None:
        result = run(self, "object", "list", "h*")
        self.assertEqual(result.status, 0)
        self.assertEqual(result.session.calls, [("list", "object", "h*")])
        self.assertIn("hello                ::Demo::Hello", result.out)
        self.assertTrue(result.session.closed)

    def test_json_output(self) -> None:
        result = run(self, "--json", "registry", "list")
        self.assertEqual(json.loads(result.out), REPLICAS)
        result = run(self, "--json", "object", "add", "hello@A", "::Demo::Hello")
        self.assertEqual(
            json.loads(result.out), {"proxy": "hello@A", "type": "::Demo::Hello", "serial": 9}
        )

    def test_registry_list_cells(self) -> None:
        result = run(self, "registry", "list")
        master, replica = result.out.splitlines()[1:]
        self.assertEqual(
            master.split(), ["Master", "master", "12", "-", "yes", "live", "tcp", "-p", "4061"]
        )
        self.assertEqual(replica.split()[:6], ["Replica1", "slave", "11", "1", "no", "failed"])
        self.assertTrue(replica.endswith("no acknowledgement: timed out"))

    def test_object_find_filters_by_type(self) -> None:
        result = run(self, "--json", "object", "find", "::Demo::Hello")
        self.assertEqual([o["identity"] for o in json.loads(result.out)], ["hello"])

    def test_application_add_reads_the_file(self) -> None:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("<icegrid>\u00e9</icegrid>")
        result = run(self, "application", "update", path)
        self.assertEqual(result.session.calls, [("add", "<icegrid>\u00e9</icegrid>", True)])
        self.assertEqual(result.out, "application `DemoApp' updated (serial 7)\n")

    def test_application_describe(self) -> None:
        result = run(self, "application", "describe", "DemoApp")
        self.assertEqual(
            result.out,
            "application `DemoApp'\ndescription: Two servers\nuuid: U-1\nrevision: 2\n"
            "created: 2026-12-01T14:06:41.646+00:00 by `alice'\n"
            "updated: 2026-12-01T14:07:54.422+00:00 by `'\n\n<icegrid/>\n",
        )

    def test_adapter_endpoints(self) -> None:
        result = run(self, "adapter", "endpoints", "Solo")
        self.assertEqual(result.out, "tcp -h 127.0.0.1 -p 3\n")
        result = run(self, "adapter", "endpoints", "HelloGroup")
        self.assertEqual(
            result.out.splitlines(),
            [
                "MEMBER               ENDPOINTS",
                "HelloServer-1.Hello  tcp -h 127.0.0.1 -p 1",
                "HelloServer-2.Hello  tcp -h 127.0.0.1 -p 2",
            ],
        )

    def test_registry_describe(self) -> None:
        result = run(self, "registry", "describe", "Master")
        self.assertIn("internal: tcp -p 4063\n", result.out)
        self.assertIn("lag:      -\n", result.out)

    def test_writes(self) -> None:
        for argv, call, line in (
            (
                ["application", "remove", "DemoApp"],
                ("remove_application", "DemoApp"),
                "application `DemoApp' removed (serial 8)",
            ),
            (
                ["object", "remove", "hello"],
                ("remove_object", "hello"),
                "object `hello' removed (serial 10)",
            ),
            (
                ["adapter", "remove", "Solo"],
                ("remove_adapter", "Solo"),
                "adapter `Solo' removed (serial 11)",
            ),
        ):
            result = run(self, *argv)
            self.assertEqual(
                (result.status, result.session.calls, result.out), (0, [call], line + "\n")
            )


class ExitStatusTests(SynchronousTestCase):
    def test_mapping(self) -> None:
        for error, status in (
            (NotFoundError("x"), cli.EXIT_REFUSED),
            (RegistryUserError("x"), cli.EXIT_REFUSED),
            (ApplicationError("x"), cli.EXIT_REFUSED),
            (NotAuthorizedError("x"), cli.EXIT_REFUSED),
            (cli.UsageError("x"), cli.EXIT_USAGE),
            (AdminConfigError("x"), cli.EXIT_USAGE),
            (PropertyError("x"), cli.EXIT_USAGE),
            (AdminUnreachableError("x"), cli.EXIT_UNREACHABLE),
            (NotMasterError("x"), cli.EXIT_NOT_MASTER),
            (QuorumError("x"), cli.EXIT_NO_QUORUM),
            (TransferError("x"), cli.EXIT_REFUSED),
        ):
            self.assertEqual(cli.exit_code(error), status, error)
            self.assertTrue(cli.error_line(error).endswith(": x"), cli.error_line(error))

    def test_refusal_from_the_registry(self) -> None:
        result = run(
            self,
            "object",
            "remove",
            "nope",
            session=FakeSession(NotFoundError("object `nope' is not registered")),
        )
        self.assertEqual((result.status, result.out), (cli.EXIT_REFUSED, ""))
        self.assertEqual(result.err, "gridadmin: object `nope' is not registered\n")
        self.assertTrue(result.session.closed)

    def test_slave_refuses_writes(self) -> None:
        message = "this replica `Replica1' is a read-only slave; writes go to the master"
        result = run(
            self,
            "--replica",
            "Replica1",
            "object",
            "add",
            "x@A",
            session=FakeSession(NotMasterError(message)),
        )
        self.assertEqual(result.status, cli.EXIT_NOT_MASTER)
        self.assertEqual(result.err, f"gridadmin: {message}\n")
        self.assertEqual(result.opened[0][1], "Replica1")

    def test_unreachable(self) -> None:
        result = run(
            self,
            "--timeout",
            "2",
            "registry",
            "list",
            open_error=AdminUnreachableError("no registry replica answered"),
        )
        self.assertEqual(result.status, cli.EXIT_UNREACHABLE)
        self.assertEqual(result.err, "gridadmin: no registry replica answered\n")
        self.assertEqual(result.opened[0][2], 2.0)

    def test_invalid_descriptor(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("<icegrid/>")
        result = run(
            self,
            "application",
            "add",
            path,
            session=FakeSession(ApplicationError("icegrid, line 1: no application\nat all")),
        )
        self.assertEqual(result.status, cli.EXIT_REFUSED)
        self.assertEqual(result.err, "gridadmin: icegrid, line 1: no application at all\n")

    def test_ping(self) -> None:
        result = run(self, "registry", "ping", "Master")
        self.assertEqual((result.status, result.out), (0, "replica `Master' is up\n"))
        session = FakeSession()
        session.alive = False
        result = run(self, "registry", "ping", "Replica1", session=session)
        self.assertEqual((result.status, result.out), (1, "replica `Replica1' is down\n"))
