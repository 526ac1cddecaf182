# -*- test-case-name: tests.test_admin_interactive -*-
"""
gridadmin scripts (C{-e 'cmd; cmd'} and commands on standard input) over one
session, and the blocking session of L{gridreg.admin.wire}: its AMP boxes
are the ones Twisted's AMP reads and writes for the same commands.
"""

from __future__ import annotations

import io
import socket
import sys
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gridreg.admin import cli, wire
from gridreg.admin.wire import COMMANDS, ERROR_CODES, BlockingSession, Refused
from gridreg.protocol import chunking, commands, errors, node_commands
from tests._lineprocess import LineProcess
from tests._processes import REPO_ROOT
from tests.test_admin_cli import LOCATOR, FakeSession
from tests.test_replication_processes import GridProcesses, eventually

KINDS = {
    amp.Unicode: "unicode",
    amp.Integer: "integer",
    amp.Boolean: "boolean",
    amp.String: "string",
}


class ScriptRun:
    """A gridadmin script against fake sessions: status, output, sessions opened."""

    def __init__(
        self,
        testcase: SynchronousTestCase,
        argv: list[str],
        stdin: str = "",
        sessions: Optional[list[FakeSession]] = None,
    ) -> None:
        self.sessions = sessions or [FakeSession()]
        self.opened: list[FakeSession] = []
        out, err = io.StringIO(), io.StringIO()

        async def open_session(*args: Any, **kwargs: Any) -> FakeSession:
            session = self.sessions[len(self.opened)]
            self.opened.append(session)
            return session

        def runner(work: Any) -> int:
            return testcase.successResultOf(work(None))  # type: ignore[no-any-return]

        self.status = cli.main(
            ["--locator", LOCATOR, *argv],
            stdout=out,
            stderr=err,
            stdin=io.StringIO(stdin),
            environ={},
            runner=runner,
            open_session=open_session,
        )
        self.out, self.err = out.getvalue(), err.getvalue()


class SplitTests(SynchronousTestCase):
    def test_separators_and_quotes(self) -> None:
        """C{;} and new lines end commands; quoted, they are part of a word."""
        self.assertEqual(
            cli.split_commands("registry list; object list 'a;b'\nobject describe \"x y\";;"),
            [["registry", "list"], ["object", "list", "a;b"], ["object", "describe", "x y"]],
        )
        self.assertEqual(
            cli.split_commands(r"object describe a\ b"), [["object", "describe", "a b"]]
        )
        self.assertEqual(cli.split_commands(" \n ; "), [])

    def test_unterminated_quote(self) -> None:
        with self.assertRaises(cli.UsageError):
            cli.split_commands("object list 'abc")


class ParserTests(SynchronousTestCase):
    def test_lean_parser_parses_as_the_full_one(self) -> None:
        """Parsing with one command group's actions gives what the whole parser gives."""
        for line in (
            "registry list",
            "--json --timeout 3 object list 'a*'",
            "--replica registry node list",
            "--replica node server signal S USR1",
            "application add f.xml A=1 B=2",
        ):
            argv = cli.split_commands(line)[0]
            self.assertEqual(cli.parse_args(argv), cli.build_parser().parse_args(argv), line)
        for line in ("registry list x", "registry", "node frob", "--timeout 0 registry list"):
            argv = cli.split_commands(line)[0]
            with self.assertRaises(cli.UsageError) as lean:
                cli.parse_args(argv)
            with self.assertRaises(cli.UsageError) as full:
                cli.build_parser().parse_args(argv)
            self.assertEqual(str(lean.exception), str(full.exception), line)


class ScriptTests(SynchronousTestCase):
    def test_one_session_for_every_command(self) -> None:
        """Each command prints as it would alone; they share one session."""
        run = ScriptRun(self, ["-e", "object list; registry ping Master; adapter list"])
        self.assertEqual(run.status, 0, run.err)
        self.assertEqual(len(run.opened), 1)
        alone = [
            ScriptRun(self, args.split()).out
            for args in ("object list", "registry ping Master", "adapter list")
        ]
        self.assertEqual(run.out, "".join(alone))
        self.assertTrue(run.opened[0].closed)

    def test_errors_do_not_end_the_script(self) -> None:
        """
        As icegridadmin, a failing command is reported and the next one
        runs; the status is the last failing command's.
        """
        session = FakeSession()
        run = ScriptRun(
            self, ["-e", "foo; registry ping Master; object list x y"], sessions=[session]
        )
        self.assertEqual(run.status, 2)
        self.assertEqual(run.err.count("gridadmin: "), 2, run.err)
        self.assertIn("replica `Master' is up", run.out)

        refused = FakeSession(error=errors.NotMasterError("read-only slave"))
        run = ScriptRun(self, ["-e", "object remove a; registry list x"], sessions=[refused])
        self.assertEqual(run.status, 2, "the usage error came last")
        run = ScriptRun(self, ["-e", "registry list x; object remove a"], sessions=[refused])
        self.assertEqual(run.status, cli.EXIT_NOT_MASTER)
        self.assertIn("gridadmin: read-only slave\n", run.err)

    def test_exit_stops(self) -> None:
        run = ScriptRun(self, ["-e", "registry ping Master; exit; object list"])
        self.assertEqual(run.status, 0)
        self.assertNotIn("IDENTITY", run.out)
        self.assertEqual(ScriptRun(self, ["-e", "quit; object list"]).out, "")

    def test_standard_input(self) -> None:
        """Without a command, commands are read line by line; no prompt off a terminal."""
        run = ScriptRun(self, ["--json"], stdin="registry ping Master\n\nobject list; quit\nfoo\n")
        self.assertEqual(run.status, 0, run.err)
        self.assertNotIn(">>>", run.out)
        self.assertIn('"alive": true', run.out)
        self.assertIn('"identity": "hello"', run.out)
        self.assertEqual(len(run.opened), 1)

    def test_prompt_on_a_terminal(self) -> None:
        """On a terminal each line is asked for with icegridadmin's prompt."""

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        out = io.StringIO()

        async def open_session(*args: Any, **kwargs: Any) -> FakeSession:
            return FakeSession()

        status = cli.main(
            ["--locator", LOCATOR],
            stdout=out,
            stderr=io.StringIO(),
            stdin=Terminal("registry ping Master\n"),
            environ={},
            runner=lambda work: self.successResultOf(work(None)),
            open_session=open_session,
        )
        self.assertEqual(status, 0)
        self.assertEqual(out.getvalue(), ">>> replica `Master' is up\n>>> \n")

    def test_reconnects_when_the_connection_dropped(self) -> None:
        """A session whose connection went away between commands is opened again."""
        first, second = FakeSession(), FakeSession()
        first.is_alive = lambda: False  # type: ignore[attr-defined]
        run = ScriptRun(self, ["-e", "registry ping A; registry ping B"], sessions=[first, second])
        self.assertEqual(run.status, 0, run.err)
        self.assertEqual(run.opened, [first, second])
        self.assertTrue(first.closed)
        self.assertEqual([c[1] for c in first.calls + second.calls], ["A", "B"])

    def test_e_and_a_command_together(self) -> None:
        run = ScriptRun(self, ["-e", "registry list", "object", "list"])
        self.assertEqual(run.status, 2)
        self.assertEqual(run.opened, [])


# -- the blocking session's wire format ------------------------------------------------


def _declared() -> dict[str, type[amp.Command]]:
    found = {}
    for module in (commands, node_commands, chunking):
        for name in COMMANDS:
            if hasattr(module, name):
                found[name] = getattr(module, name)
    return found


class SchemaTests(SynchronousTestCase):
    def test_commands_match_their_amp_declarations(self) -> None:
        """Every command wire.py sends has the arguments and answer its amp.Command has."""
        declared = _declared()
        self.assertEqual(sorted(declared), sorted(COMMANDS))
        for name, command in declared.items():
            arguments, response = COMMANDS[name]
            self.assertEqual(
                {k.decode(): KINDS[type(v)] for k, v in command.arguments}, arguments, name
            )
            self.assertEqual(
                {k.decode(): KINDS[type(v)] for k, v in command.response}, response, name
            )
            for error, code in command.errors.items():
                self.assertEqual(ERROR_CODES[code.decode()], error.__name__, name)

    def test_refusals_map_as_the_twisted_sessions_errors(self) -> None:
        """A Refused code prints and exits as the exception class it stands for."""
        for code, name in ERROR_CODES.items():
            error = getattr(errors, name)("why\nnot")
            refused = Refused(code, "why\nnot")
            self.assertEqual(cli.exit_code(refused), cli.exit_code(error), code)
            self.assertEqual(cli.error_line(refused), cli.error_line(error), code)


class BlockingSessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.addCleanup(self.theirs.close)
        self.ours.settimeout(5)
        self.session = BlockingSession(self.ours, 5, "Master")
        self.addCleanup(self.ours.close)

    def answer(self, box: dict[bytes, bytes]) -> None:
        self.theirs.sendall(wire.encode_box(box))

    def sent(self) -> list[amp.AmpBox]:
        self.theirs.settimeout(5)
        return amp.parseString(self.theirs.recv(65536))  # type: ignore[no-any-return]

    def test_request_is_what_amp_reads(self) -> None:
        self.answer({b"_answer": b"1", b"alive": b"True"})
        self.assertEqual(self.session.exchange("AdminPing", name="Räplica"), {"alive": True})
        [box] = self.sent()
        self.assertEqual(box[b"_command"], b"AdminPing")
        self.assertEqual(commands.AdminPing.parseArguments(box, None), {"name": "Räplica"})

    def test_answer_as_amp_writes_it(self) -> None:
        """A box Twisted's AMP makes for an AdminList answer decodes to the same values."""
        box = amp.AmpBox(commands.AdminList.makeResponse({"items": "[]", "cursor": "é"}, None))
        box[b"_answer"] = b"1"
        self.theirs.sendall(box.serialize())
        self.assertEqual(
            self.session.exchange("AdminList", what="object", pattern="", cursor="", limit=5),
            {"items": "[]", "cursor": "é"},
        )

    def test_refusal(self) -> None:
        self.answer(
            {b"_error": b"1", b"_error_code": b"NOT_FOUND", b"_error_description": b"no `x'"}
        )
        with self.assertRaises(Refused) as caught:
            self.session.exchange("AdminPing", name="x")
        self.assertEqual((caught.exception.code, str(caught.exception)), ("NOT_FOUND", "no `x'"))
        self.assertTrue(self.session.is_alive())

    def test_closed_connection(self) -> None:
        """A connection the registry closed is seen between commands, and fails a command."""
        self.assertTrue(self.session.is_alive())
        self.theirs.close()
        self.assertFalse(self.session.is_alive())
        with self.assertRaises(wire.AdminUnreachableError):
            self.session.exchange("AdminPing", name="x")

    def test_upload(self) -> None:
        """An application is sent as BeginTransfer and chunks, then added."""
        self.patch(wire, "CHUNK_SIZE", 100)  # what a socket pair buffers without a reader
        xml = "<icegrid>" + "x" * (wire.CHUNK_SIZE + 10) + "</icegrid>"
        for tag in (1, 2, 3):
            self.answer({b"_answer": str(tag).encode()})
        self.answer({b"_answer": b"4", b"name": b"App", b"serial": b"7"})
        result = wire.run_now(self.session.upload_and_add_application(xml, True))
        self.assertEqual(result, ("App", 7))
        boxes = []
        while len(boxes) < 4:
            boxes += self.sent()
        self.assertEqual(
            [b[b"_command"] for b in boxes],
            [b"BeginTransfer", b"TransferChunk", b"TransferChunk", b"AdminApplicationAdd"],
        )
        data = b"".join(chunking.TransferChunk.parseArguments(b, None)["data"] for b in boxes[1:3])
        self.assertEqual(data, xml.encode())


# -- against registry processes -----------------------------------------------------


class ScriptProcessTests(TestCase):
    """gridadmin scripts against a master and a slave, as processes."""

    timeout = 120

    def gridadmin(self, grid: GridProcesses, *args: str) -> LineProcess:
        return LineProcess.spawn(
            reactor,
            "gridadmin",
            [sys.executable, "-m", "gridreg.admin", "--config", str(grid.admin_config()), *args],
            {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
            str(grid.root),
        )

    async def test_e_runs_every_command(self) -> None:
        """
        C{-e} runs each command as it would run alone (the same output), a
        failing one does not stop the rest, and the status is the last
        failure's.
        """
        grid = GridProcesses(self)
        await grid.start("Master")
        await grid.start("Replica1")
        script = (
            "object add 'greeter -t:tcp -h 127.0.0.1 -p 1' ::Demo::Hello; object describe greeter"
            "\nobject describe nope; registry ping Master"
        )
        process = self.gridadmin(grid, "-e", script)
        await process.when_ended()
        self.assertEqual(process.exit_code, 1, process.describe())
        code, alone = await grid.gridadmin("object", "describe", "greeter")
        self.assertEqual(code, 0, alone)
        out = "\n".join(process.lines)
        self.assertIn(alone.rstrip("\n"), out)
        self.assertIn("object added (serial", out)
        self.assertIn("replica `Master' is up", out)
        self.assertIn("object `nope'", bytes(process.stderr).decode())

    async def test_standard_input_reconnects(self) -> None:
        """
        Commands read from standard input share a session; when the master
        restarts between two of them, the next command connects again.
        """
        grid = GridProcesses(self)
        master = await grid.start("Master")
        process = self.gridadmin(grid)
        self.addCleanup(lambda: process.terminate() if process.ended is None else None)
        process.write_line("registry ping Master")
        await eventually(lambda: succeed(process.lines.count("replica `Master' is up") == 1))
        await master.kill("KILL")
        await grid.start("Master")
        process.write_line("registry ping Master; quit")
        await eventually(lambda: succeed(process.lines.count("replica `Master' is up") == 2))
        await process.when_ended()
        self.assertEqual(process.exit_code, 0, process.describe())
        self.assertNotIn(">>>", "\n".join(process.lines), "no prompt off a terminal")
