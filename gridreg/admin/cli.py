# -*- test-case-name: tests.test_admin_cli -*-
"""
The C{gridadmin} command: administer a gridreg registry from a shell.

It reads Ice properties like C{icegridadmin} (C{--config}, C{ICE_CONFIG},
C{--property}), opens one admin session, runs one command (or a script:
C{-e}, standard input) and exits with a status a script can act on. Output
is aligned text for people, or JSON with C{--json} for programs.

This is the one place in gridreg with a blocking top level: L{main} runs
the commands over the blocking session of L{gridreg.admin.wire}, without
Twisted, whose import alone took longer than a whole C{icegridadmin}
command; with an injected session (tests) or a locator that is not plain
TCP, over L{gridreg.admin.session} with L{twisted.internet.task.react}.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional, TextIO

# only what every command needs is imported here: the Twisted session, the
# reactor, the descriptor machinery, and even json, datetime or the server
# and node commands cost more than the work of a command; each is imported
# by what uses it
from gridreg.admin.common import AdminConfigError, AdminUnreachableError
from gridreg.admin.results import EXIT_OK, EXIT_REFUSED, Result, format_fields, format_table
from gridreg.config.properties import Properties, PropertyError, load_file, parse_overrides

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from gridreg.admin.session import AdminSession

EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_MASTER = 4
EXIT_NO_QUORUM = 5
EXIT_NODE_UNREACHABLE = 6
DEFAULT_TIMEOUT = 10.0

EPILOG = """\
configuration:
  Ice.Default.Locator (or --locator) names the registry, e.g.
  "DemoIceGrid/Locator:tcp -h 10.0.0.1 -p 4061:tcp -h 10.0.0.2 -p 4061";
  IceSSL.CAs, IceSSL.CertFile and IceSSL.KeyFile name the grid CA and an
  admin certificate (see gridreg-certs). Writes go to the master; use
  --replica NAME to read from a slave while the master is down.
  Server and node commands work through any replica, a slave too: it
  relays them to the node over its own session with that node.

variables:
  application add|update FILE NAME=VALUE ... sets application variables,
  overriding the descriptor's own <variable>s of those names (as
  icegridadmin does); they are written into the uploaded XML.

scripts:
  gridadmin -e 'object list; registry list' runs several commands over one
  session (commands separated by `;' or new lines, quoted as in a shell);
  without a command, gridadmin reads commands from standard input (with a
  `>>> ' prompt on a terminal) until end of file, `exit' or `quit'. A
  failing command is reported and the next one runs; the exit status is
  the last failing command's. A connection the registry closed between
  commands is opened again.

exit status:
  0  success
  1  the registry refused the request (not found, already exists, invalid
     descriptor, not authorized) or a node could not do it (a server failed
     to start, an unknown signal); `registry ping' and `node ping' also exit
     1 when the replica or node is down, `server pid' when the server is
     not running
  2  usage error: bad arguments, configuration or TLS files
  3  the registry is unreachable or did not answer in time
  4  a write was refused because the replica is a read-only slave (or a
     master started with --readonly, or fenced by a newer master)
  5  the write is committed on the master but fewer slaves than
     GridReg.Replication.MinAcks committed it in time
  6  the server's node is unreachable: the replica answering has no session
     with it (the node is down, or not registered with that replica yet)
"""


class UsageError(Exception):
    """The command line or a file it names cannot work; exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, raising instead of exiting so L{main} controls output and status."""

    def error(self, message: str) -> Any:
        context = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        raise UsageError(f"{context}{message} (see {self.prog} --help)")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


SERVER_ACTIONS = {
    "describe": "show a server's descriptor and state",
    "state": "show a server's state",
    "pid": "show a server's process id",
    "start": "start a server and wait until it is active",
    "stop": "stop a server and wait until it has exited",
    "enable": "let a server be started",
    "disable": "never start a server (a running one keeps running)",
}
NODE_ACTIONS = {
    "describe": "show a node",
    "ping": "is a node up?",
    "load": "show a node's load averages",
    "shutdown": "stop a node and its servers",
}


class _Unused:
    """Stands for the parsers of the command groups a command line does not use."""

    def add_parser(self, *args: Any, **kwargs: Any) -> _Unused:
        return self

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass


GROUPS = ("application", "object", "adapter", "server", "node", "registry")


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """
    gridadmin's parser; with C{only}, the actions of that command group
    alone (each of the 37 parsers costs gridadmin's start-up time).
    """
    parser = _Parser(
        prog="gridadmin",
        description=(
            "Administer a gridreg registry "
            "(applications, objects, adapters, servers, nodes, replicas)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="Ice property file (default: $ICE_CONFIG)")
    parser.add_argument(
        "--property",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set an Ice property; repeatable; overrides --config",
    )
    parser.add_argument("--locator", metavar="PROXY", help="set Ice.Default.Locator")
    parser.add_argument(
        "--replica",
        metavar="NAME",
        help="talk to this replica instead of the master (read-only on a slave)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on an unanswered request after this long (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "-e",
        dest="execute",
        metavar="COMMANDS",
        help="run these commands (separated by `;' or new lines) over one session",
    )
    # without a command (or -e), commands are read from standard input
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")

    def group(name: str, help: str) -> Any:
        if only is not None and name != only:
            return _Unused()  # not even the group's parser: parse_args asks the full one then
        sub = groups.add_parser(name, help=help)
        return sub.add_subparsers(dest="action", metavar="ACTION", required=True)

    app = group("application", "deploy and inspect applications (XML descriptors)")
    for verb, help in (
        ("add", "deploy an application"),
        ("update", "replace a deployed application"),
    ):
        deploy = app.add_parser(verb, help=help)
        deploy.add_argument("file", metavar="FILE")
        deploy.add_argument(
            "variables",
            metavar="NAME=VALUE",
            nargs="*",
            help="set an application variable (overrides the descriptor's)",
        )
    app.add_parser("remove", help="remove an application").add_argument("name", metavar="NAME")
    app.add_parser("list", help="list the applications")
    app.add_parser("describe", help="show an application's descriptor").add_argument(
        "name", metavar="NAME"
    )

    obj = group("object", "manage well-known objects")
    add = obj.add_parser("add", help="add a well-known object")
    add.add_argument("proxy", metavar="PROXY")
    add.add_argument("type", metavar="TYPE", nargs="?", default="")
    obj.add_parser("remove", help="remove a well-known object").add_argument(
        "identity", metavar="IDENTITY"
    )
    obj.add_parser("find", help="list the objects of a type").add_argument("type", metavar="TYPE")
    obj.add_parser("list", help="list objects, optionally matching a glob").add_argument(
        "pattern", metavar="PATTERN", nargs="?", default=""
    )
    obj.add_parser("describe", help="show a well-known object").add_argument(
        "identity", metavar="IDENTITY"
    )

    adapter = group("adapter", "inspect and remove adapters and replica groups")
    adapter.add_parser("list", help="list adapters and replica groups")
    adapter.add_parser("endpoints", help="show an adapter's endpoints").add_argument(
        "id", metavar="ID"
    )
    adapter.add_parser("remove", help="remove an adapter").add_argument("id", metavar="ID")

    server = group("server", "inspect and control the servers nodes run")
    server.add_parser("list", help="list servers, optionally matching a glob").add_argument(
        "pattern", metavar="GLOB", nargs="?", default=""
    )
    for action, help in SERVER_ACTIONS.items():
        server.add_parser(action, help=help).add_argument("id", metavar="ID")
    sig = server.add_parser("signal", help="send a signal to a server's process")
    sig.add_argument("id", metavar="ID")
    sig.add_argument("signal", metavar="SIGNAL", help="a name (SIGUSR1, USR1) or a number")

    node = group("node", "inspect and shut down nodes")
    node.add_parser("list", help="list the nodes")
    for action, help in NODE_ACTIONS.items():
        node.add_parser(action, help=help).add_argument("name", metavar="NAME")

    registry = group("registry", "inspect the registry replicas")
    registry.add_parser("list", help="list the replicas")
    registry.add_parser("ping", help="is a replica up?").add_argument("name", metavar="NAME")
    registry.add_parser("describe", help="show a replica").add_argument("name", metavar="NAME")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """
    @raise UsageError: for bad arguments.
    @raise SystemExit: after printing C{--help}.
    """
    argv = list(argv)
    group = next((word for word in argv if word in GROUPS), None)
    if group is not None and "-h" not in argv and "--help" not in argv:
        # the first group word is the command's group unless an option's value
        # is spelt like one: then the full parser answers, as it does every error
        try:
            args = build_parser(only=group).parse_args(argv)
        except UsageError:
            pass
        else:
            if args.group == group:
                return args
    return build_parser().parse_args(argv)


def load_properties(
    args: argparse.Namespace, environ: Optional[dict[str, str]] = None
) -> Properties:
    """
    The properties of C{--config} (else C{$ICE_CONFIG}), then C{--property}
    overrides, then C{--locator}.

    @raise PropertyError: a file or an override is malformed.
    """
    config = args.config or (os.environ if environ is None else environ).get("ICE_CONFIG")
    properties = Properties()
    if config:
        load_file(config, properties)
    properties.apply_overrides(parse_overrides(args.property))
    if args.locator:
        properties.set("Ice.Default.Locator", args.locator)
    if not properties.get("Ice.Default.Locator"):
        raise PropertyError("Ice.Default.Locator is not set: use --locator or --config")
    return properties


def read_descriptor(args: argparse.Namespace) -> None:
    """
    Read C{application add/update}'s file and write its command-line
    variables into it before connecting, so a typo fails fast.
    """
    if args.group == "application" and args.action in ("add", "update"):
        from gridreg.admin.variables import VariableError, parse_assignments, set_variables

        try:
            assignments = parse_assignments(args.variables)
        except VariableError as e:
            raise UsageError(f"application {args.action}: {e}") from None
        try:
            with open(args.file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror or e}") from None
        try:
            args.xml = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{args.file} is not UTF-8 text") from None
        try:
            args.xml = set_variables(args.xml, assignments)
        except VariableError as e:
            raise UsageError(f"cannot set variables in {args.file}: {e}") from None


def signal_name(text: str) -> str:
    """
    C{SIGNAL} as the node takes it: a known name with its C{SIG} prefix, or
    a number; checked here so a typo does not reach the node.

    @raise UsageError: not a signal.
    """
    import signal

    if text.isdigit():
        return text
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in signal.Signals.__members__:
        raise UsageError(f"server signal: unknown signal `{text}'")
    return name


# -- results -----------------------------------------------------------------


OBJECT_COLUMNS = (("IDENTITY", "identity"), ("TYPE", "type"), ("PROXY", "proxy"))
ADAPTER_COLUMNS = (
    ("ID", "id"),
    ("KIND", "kind"),
    ("REPLICA-GROUP", "replica_group"),
    ("APPLICATION", "application"),
    ("ENDPOINTS", "endpoints"),
)
REGISTRY_COLUMNS = (
    ("NAME", "name"),
    ("ROLE", "role"),
    ("SERIAL", "serial"),
    ("LAG", "lag"),
    ("ALIVE", "alive"),
    ("STATE", "state"),
    ("CLIENT", "client"),
    ("REASON", "reason"),
)


def _written(data: dict[str, Any], what: str) -> Result:
    return Result(data, f"{what} (serial {data['serial']})")


async def run_command(session: AdminSession, args: argparse.Namespace) -> Result:
    """Run the command C{args} names over C{session}."""
    command = COMMANDS.get((args.group, args.action))
    if command is None:
        from gridreg.admin.node_commands import NODE_COMMANDS

        command = NODE_COMMANDS[(args.group, args.action)]
    return await command(session, args)


async def _app_add(session: AdminSession, args: argparse.Namespace) -> Result:
    update = args.action == "update"
    name, serial = await session.upload_and_add_application(args.xml, update)
    return _written(
        {"name": name, "serial": serial}, f"application `{name}' {'updated' if update else 'added'}"
    )


async def _app_remove(session: AdminSession, args: argparse.Namespace) -> Result:
    serial = await session.remove_application(args.name)
    return _written({"name": args.name, "serial": serial}, f"application `{args.name}' removed")


async def _app_list(session: AdminSession, args: argparse.Namespace) -> Result:
    items = await session.list("application")
    return Result(items, format_table(items, (("NAME", "name"), ("DESCRIPTION", "description"))))


def _when(ms: Any) -> str:
    """An application time (milliseconds since the epoch) in UTC, as ISO 8601."""
    import datetime

    if not isinstance(ms, int):
        return "?"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(
        timespec="milliseconds"
    )


async def _app_describe(session: AdminSession, args: argparse.Namespace) -> Result:
    app = await session.describe("application", args.name)
    text = f"application `{app['name']}'"
    if app.get("description"):
        text += f"\ndescription: {app['description']}"
    if app.get("uuid"):
        text += f"\nuuid: {app['uuid']}\nrevision: {app.get('revision', 1)}"
        for what, user, when in (
            ("created", app.get("create_user"), app.get("create_time")),
            ("updated", app.get("update_user"), app.get("update_time")),
        ):
            text += f"\n{what}: {_when(when)} by `{user or ''}'"
    return Result(app, text + "\n\n" + app.get("xml", "").rstrip("\n"))


async def _object_add(session: AdminSession, args: argparse.Namespace) -> Result:
    serial = await session.add_object(args.proxy, args.type)
    return _written({"proxy": args.proxy, "type": args.type, "serial": serial}, "object added")


async def _object_remove(session: AdminSession, args: argparse.Namespace) -> Result:
    serial = await session.remove_object(args.identity)
    return _written(
        {"identity": args.identity, "serial": serial}, f"object `{args.identity}' removed"
    )


async def _object_find(session: AdminSession, args: argparse.Namespace) -> Result:
    items = [o for o in await session.list("object") if o.get("type") == args.type]
    return Result(items, format_table(items, OBJECT_COLUMNS))


async def _object_list(session: AdminSession, args: argparse.Namespace) -> Result:
    items = await session.list("object", args.pattern)
    return Result(items, format_table(items, OBJECT_COLUMNS))


async def _object_describe(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.describe("object", args.identity)
    return Result(data, format_fields(data))


async def _adapter_list(session: AdminSession, args: argparse.Namespace) -> Result:
    items = await session.list("adapter")
    return Result(items, format_table(items, ADAPTER_COLUMNS))


async def _adapter_endpoints(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.describe("adapter", args.id)
    if data.get("kind") == "replica-group":
        members = data.get("members", [])
        return Result(data, format_table(members, (("MEMBER", "id"), ("ENDPOINTS", "endpoints"))))
    return Result(data, data.get("endpoints") or "")


async def _adapter_remove(session: AdminSession, args: argparse.Namespace) -> Result:
    serial = await session.remove_adapter(args.id)
    return _written({"id": args.id, "serial": serial}, f"adapter `{args.id}' removed")


async def _registry_list(session: AdminSession, args: argparse.Namespace) -> Result:
    items = await session.list("registry")
    return Result(items, format_table(items, REGISTRY_COLUMNS))


async def _registry_ping(session: AdminSession, args: argparse.Namespace) -> Result:
    alive = await session.ping(args.name)
    return Result(
        {"name": args.name, "alive": alive},
        f"replica `{args.name}' is {'up' if alive else 'down'}",
        EXIT_OK if alive else EXIT_REFUSED,
    )


async def _registry_describe(session: AdminSession, args: argparse.Namespace) -> Result:
    data = await session.describe("registry", args.name)
    return Result(data, format_fields(data))


# -- servers and nodes --------------------------------------------------------


COMMANDS: dict[tuple[str, str], Callable[[AdminSession, argparse.Namespace], Awaitable[Result]]] = {
    ("application", "add"): _app_add,
    ("application", "update"): _app_add,
    ("application", "remove"): _app_remove,
    ("application", "list"): _app_list,
    ("application", "describe"): _app_describe,
    ("object", "add"): _object_add,
    ("object", "remove"): _object_remove,
    ("object", "find"): _object_find,
    ("object", "list"): _object_list,
    ("object", "describe"): _object_describe,
    ("adapter", "list"): _adapter_list,
    ("adapter", "endpoints"): _adapter_endpoints,
    ("adapter", "remove"): _adapter_remove,
    ("registry", "list"): _registry_list,
    ("registry", "ping"): _registry_ping,
    ("registry", "describe"): _registry_describe,
    # the server and node commands: gridreg.admin.node_commands.NODE_COMMANDS
}


def __getattr__(name: str) -> Any:
    """C{server_state_line}, re-exported from where it lives, loaded when asked for."""
    if name == "server_state_line":
        from gridreg.admin import node_commands

        return node_commands.server_state_line
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render(result: Result, as_json: bool) -> str:
    """What to print on stdout for C{result} (with a final newline, or nothing)."""
    if as_json:
        import json

        return json.dumps(result.data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return result.text + "\n" if result.text else ""


# -- errors --------------------------------------------------------------------

#: the exit status of the registry's refusals that are not EXIT_REFUSED, by AMP error code
REFUSAL_EXITS = {
    "NOT_MASTER": EXIT_NOT_MASTER,
    "QUORUM": EXIT_NO_QUORUM,
    "NODE_UNREACHABLE": EXIT_NODE_UNREACHABLE,
}


def _refusal_code(error: BaseException) -> Optional[str]:
    """
    The AMP error code of a registry refusal, from either session: the
    blocking one raises L{gridreg.admin.wire.Refused}, the Twisted one the
    classes of L{gridreg.protocol.errors} (loaded only if that session was).
    """
    wire = sys.modules.get("gridreg.admin.wire")
    if wire is not None and isinstance(error, wire.Refused):
        return error.code  # type: ignore[no-any-return]
    errors = sys.modules.get("gridreg.protocol.errors")
    if errors is not None:
        from gridreg.admin.wire import ERROR_CODES

        for code, name in ERROR_CODES.items():
            if isinstance(error, getattr(errors, name)):
                return code
    return None


def exit_code(error: BaseException) -> int:
    """The exit status documented in L{EPILOG} for a failure."""
    code = _refusal_code(error)
    if code is not None:
        return REFUSAL_EXITS.get(code, EXIT_REFUSED)
    if isinstance(error, (UsageError, AdminConfigError, PropertyError)):
        return EXIT_USAGE
    if isinstance(error, (AdminUnreachableError, TimeoutError, ConnectionError)):
        return EXIT_UNREACHABLE
    return EXIT_REFUSED


def error_line(error: BaseException) -> str:
    """The one line printed on stderr for a failure."""
    from gridreg.admin.wire import ERROR_CODES

    code = _refusal_code(error)
    if code in ERROR_CODES or isinstance(
        error, (UsageError, AdminConfigError, AdminUnreachableError, PropertyError)
    ):
        text = str(error)
    elif code is not None:
        text = f"unexpected error: the registry answered {code}: {error}"
    else:
        text = f"unexpected error: {error!r}"
    if code == "NOT_AUTHORIZED":
        text = f"not authorized: {text}"
    return "gridadmin: " + " ".join(text.split("\n"))


# -- scripts: -e and standard input ----------------------------------------------------


def split_commands(text: str) -> list[list[str]]:
    """
    The commands in C{text}, each as its words: separated by C{;} or new
    lines, with quotes and backslashes as a shell takes them (so a quoted
    C{;} is part of an argument), as C{icegridadmin -e} reads them.

    @raise UsageError: an unterminated quote.
    """
    commands: list[list[str]] = [[]]
    try:
        for token in _tokens(text):
            if token in (";", "\n"):
                commands.append([])
            else:
                commands[-1].append(token)
    except ValueError as e:
        raise UsageError(f"syntax error: {e}") from None
    return [words for words in commands if words]


def _tokens(text: str) -> list[str]:
    """Words and C{;}/new-line separators; quoted separators stay inside words."""
    tokens: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                word.append(c)
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\$`\n':
                i += 1
                word.append(text[i])
            else:
                word.append(c)
        elif c in "'\"":
            quote = c
            in_word = True
        elif c == "\\" and i + 1 < len(text):
            i += 1
            word.append(text[i])
            in_word = True
        elif c in " \t\r" or c in ";\n":
            if in_word:
                tokens.append("".join(word))
                word, in_word = [], False
            if c in ";\n":
                tokens.append(c)
        else:
            word.append(c)
            in_word = True
        i += 1
    if quote:
        raise ValueError(f"no closing quotation ({quote})")
    if in_word:
        tokens.append("".join(word))
    return tokens


EXIT_WORDS = ("exit", "quit")


def parse_command(words: Sequence[str], options: argparse.Namespace) -> argparse.Namespace:
    """
    One command of a script, with the command line's global options.

    @raise UsageError: bad arguments or files (see L{check_command}).
    @raise SystemExit: after printing C{--help}.
    """
    import copy

    args = _script_parser().parse_args(list(words), namespace=copy.copy(options))
    if args.group is None:
        raise UsageError("no command (see gridadmin --help)")
    check_command(args)
    return args


@functools.cache
def _script_parser() -> argparse.ArgumentParser:
    """One parser for every command of a script: building one costs more than a command."""
    return build_parser()


def check_command(args: argparse.Namespace) -> None:
    """What a command needs before it is sent: its descriptor file, its signal."""
    read_descriptor(args)
    if args.group == "server" and args.action == "signal":
        args.signal = signal_name(args.signal)


# -- main ----------------------------------------------------------------------

Opener = Callable[..., Awaitable[Any]]
Runner = Callable[[Callable[[Any], "Deferred[int]"]], int]


class Sessions:
    """
    The one session a script's commands share: opened when the first
    command needs it, opened again when the connection dropped between
    commands (a command that failed with it is not sent again).
    """

    def __init__(self, open: Callable[[], Awaitable[Any]]) -> None:
        self._open = open
        self.session: Any = None
        self.opened = 0

    async def get(self) -> Any:
        session = self.session
        if session is not None and not getattr(session, "is_alive", lambda: True)():
            self.session = None
            await session.close()
        if self.session is None:
            self.session = await self._open()
            self.opened += 1
        return self.session

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()


async def execute(
    sessions: Sessions, args: argparse.Namespace, stdout: TextIO, stderr: TextIO
) -> int:
    """Run one command over the shared session and print its result; its exit status."""
    try:
        session = await sessions.get()
    except Exception as e:
        stderr.write(error_line(e) + "\n")
        return exit_code(e)
    try:
        result = await run_command(session, args)
    except Exception as e:
        stderr.write(error_line(e) + "\n")
        return exit_code(e)
    stdout.write(render(result, args.json))
    if result.error:
        stderr.write(f"gridadmin: {result.error}\n")
    return result.code


async def run_script(
    sessions: Sessions,
    options: argparse.Namespace,
    lines: Callable[[], Optional[str]],
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """
    Run the commands C{lines} gives (C{None} at the end) in order; a failing
    command is reported and the next one runs. The status is the last
    failing command's (0 if none failed); C{exit} or C{quit} stops.
    """
    status = EXIT_OK
    try:
        while True:
            text = lines()
            if text is None:
                return status
            try:
                commands = split_commands(text)
            except UsageError as e:
                stderr.write(error_line(e) + "\n")
                status = EXIT_USAGE
                continue
            for words in commands:
                if words[0] in EXIT_WORDS and len(words) == 1:
                    return status
                try:
                    with contextlib.redirect_stdout(stdout):
                        args = parse_command(words, options)
                except SystemExit:  # help
                    continue
                except (UsageError, PropertyError) as e:
                    stderr.write(error_line(e) + "\n")
                    status = EXIT_USAGE
                    continue
                code = await execute(sessions, args, stdout, stderr)
                if code != EXIT_OK:
                    status = code
                stdout.flush()
    finally:
        await sessions.close()


async def run(
    reactor: Any,
    args: argparse.Namespace,
    properties: Properties,
    stdout: TextIO,
    stderr: TextIO,
    open_session: Optional[Opener] = None,
    lines: Optional[Callable[[], Optional[str]]] = None,
) -> int:
    """
    Open the session, run the command (or the script C{lines} gives),
    print, close; the exit status. Without C{open_session}, the Twisted
    session on C{reactor}.
    """

    def warn(message: str) -> None:
        stderr.write(f"gridadmin: warning: {message}\n")

    if open_session is None:
        from gridreg.admin.session import open_admin_session

        open_session = open_admin_session
    opener = open_session
    sessions = Sessions(lambda: opener(reactor, properties, args.replica, args.timeout, warn=warn))
    if lines is not None:
        return await run_script(sessions, args, lines, stdout, stderr)
    try:
        return await execute(sessions, args, stdout, stderr)
    finally:
        await sessions.close()


def _react(work: Callable[[Any], Deferred[int]]) -> int:
    from twisted.internet import task

    status = [EXIT_UNREACHABLE]  # if the reactor stops before the work is done

    def go(reactor: Any) -> Deferred[None]:
        return work(reactor).addCallback(lambda code: status.__setitem__(0, code))

    try:
        task.react(go)
    except SystemExit:
        pass
    return status[0]


def _blocking_opener(
    reactor: Any, properties: Properties, replica: Any, timeout: float, *, warn: Any
) -> Awaitable[Any]:
    from gridreg.admin.wire import open_blocking_session

    async def opened() -> Any:
        return open_blocking_session(properties, replica, timeout, warn=warn)

    return opened()


def script_lines(
    args: argparse.Namespace, stdin: TextIO, stdout: TextIO
) -> Optional[Callable[[], Optional[str]]]:
    """
    Where a script's commands come from: C{-e}'s text, else standard input
    when no command is given (with a prompt on a terminal); C{None} for a
    single command from the command line.
    """
    if args.execute is not None:
        texts = [args.execute]
        return lambda: texts.pop(0) if texts else None
    if args.group is not None:
        return None
    prompt = stdin.isatty()

    def line() -> Optional[str]:
        if prompt:
            stdout.write(">>> ")
            stdout.flush()
        try:
            text = stdin.readline()
        except KeyboardInterrupt:  # Ctrl-C at the prompt ends the script, as end of file
            text = ""
        if not text:
            if prompt:
                stdout.write("\n")
            return None
        return text

    return line


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
    stdin: Optional[TextIO] = None,
    environ: Optional[dict[str, str]] = None,
    runner: Optional[Runner] = None,
    open_session: Optional[Opener] = None,
) -> int:
    """
    The C{gridadmin} entry point; returns the exit status.

    With neither C{runner} nor C{open_session} given, commands run over the
    blocking session of L{gridreg.admin.wire}, without Twisted, unless the
    locator needs Twisted's (see L{gridreg.admin.wire.supported}).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stdin = stdin or sys.stdin
    argv = sys.argv[1:] if argv is None else argv
    try:
        with contextlib.redirect_stdout(stdout):
            args = parse_args(argv)
        if args.execute is not None and args.group is not None:
            raise UsageError("give either -e COMMANDS or a command, not both")
        properties = load_properties(args, environ)
        if args.group is not None:
            check_command(args)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_OK
    except (UsageError, PropertyError) as e:
        stderr.write(error_line(e) + "\n")
        return EXIT_USAGE
    lines = script_lines(args, stdin, stdout)
    if runner is None and open_session is None:
        from gridreg.admin import wire

        if wire.supported(properties):
            return wire.run_now(
                run(None, args, properties, stdout, stderr, _blocking_opener, lines)
            )
    opener = open_session

    def work(reactor: Any) -> Deferred[int]:
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(run(reactor, args, properties, stdout, stderr, opener, lines))

    return (runner or _react)(work)


if __name__ == "__main__":
    from gridreg.admin import program

    sys.exit(program())
