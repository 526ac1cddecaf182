# -*- test-case-name: tests.test_registry_launch -*-
"""
C{gridregistry} (also C{python -m gridreg.registry}): one registry replica
without C{twist}, as C{icegridregistry} is one program.

It parses the very options of the C{gridregistry} plugin
(L{gridreg.registry.tap.Options}), builds the very service
(L{gridreg.registry.tap.makeService}) and runs it as C{twist} does: logs
on standard output (JSON unless it is a terminal, as C{twist}), the service
stopped before the reactor shuts down, and a process stopped by a signal
ends by that signal. What it leaves out is C{twist}'s own start-up:
C{twisted.application.app} (C{pdb}, the reactor table), C{twist}'s options
(C{twisted.trial.itrial}, which imports C{unittest}) and the discovery of
every installed Twisted plugin: about 40 ms of CPU and 2.3 MiB of
anonymous memory per replica (C{bench/README.rst}, "Issue 9: a lean
launcher and the start-up diet").
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import IO, Any, Callable, NoReturn, Optional, Sequence

from twisted.application.service import Application, IService
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    InvalidLogLevelError,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import usage

from gridreg.registry import tap

log = Logger()


class Options(tap.Options):
    """gridregistry [--log-level L] [--log-format F] [--log-file F] <gridregistry options>"""

    synopsis = "[--log-level LEVEL] [--log-format text|json] [--log-file FILE] " + (
        tap.Options.synopsis
    )
    optParameters = tap.Options.optParameters + [
        ["log-level", None, "info", "Lowest level logged (twist's --log-level)."],
        [
            "log-format",
            None,
            None,
            "text or json (default: text on a terminal, otherwise json, as twist).",
        ],
        ["log-file", None, "-", 'Log to this file ("-" standard output, "+" standard error).'],
    ]

    def postOptions(self) -> None:
        try:
            self["log-level"] = LogLevel.levelWithName(self["log-level"])
        except InvalidLogLevelError:
            raise usage.UsageError(f"Invalid log level: {self['log-level']}") from None
        if self["log-format"] not in (None, "text", "json"):
            raise usage.UsageError(f"Invalid log format: {self['log-format']}")
        super().postOptions()


def _log_file(name: str) -> IO[str]:
    if name == "-":
        return sys.stdout
    if name == "+":
        return sys.stderr
    return open(name, "a")


def _observer_factory(format: Optional[str], file: IO[str]) -> Callable[[IO[str]], FileLogObserver]:
    if format is None:  # twist's default
        format = "text" if file.isatty() else "json"
    return textFileLogObserver if format == "text" else jsonFileLogObserver


def _exit_with_signal(number: int) -> NoReturn:
    """End as the signal that stopped the reactor would have ended us."""
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    raise SystemExit(128 + number)  # not reached: the signal's default ends the process


def start(options: Options, reactor: Any, collecting: Optional[bool] = None) -> IService:
    """
    Build the replica's service and start it, the garbage collector off
    until C{reactor} runs: what is made until then (the modules the
    service imports, the service itself) lives as long as the process, and
    the collector's passes over it as it grew were a fresh replica's time
    (C{bench/README.rst}, "Issue 9, ninth session: fresh slave start-up").
    Once the reactor runs, everything made so far is frozen out of the
    collector's reach, and the collector is on again if it was on before
    (C{collecting}; default: whether it is on now).
    """
    if collecting is None:
        collecting = gc.isenabled()
    gc.disable()
    try:
        application = Application("gridregistry")  # the same parent twist gives it
        tap.makeService(options).setServiceParent(application)
        service = IService(application)
        service.startService()
    except BaseException:
        if collecting:
            gc.enable()
        raise
    reactor.callWhenRunning(_collect_again, collecting)
    return service


def _collect_again(collecting: bool) -> None:
    gc.freeze()
    if collecting:
        gc.enable()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Parse C{argv} (default: the command line), run the replica until stopped."""
    collecting = gc.isenabled()
    gc.disable()  # until the reactor runs (L{start})
    options = Options()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as exc:
        sys.stderr.write(f"{options}\nError: {exc}\n")
        raise SystemExit(64) from None  # twist's EX_USAGE
    file = _log_file(options["log-file"])
    factory = _observer_factory(options["log-format"], file)
    from twisted.internet import reactor  # the plugin's options have installed it

    service = start(options, reactor, collecting)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    predicate = LogLevelFilterPredicate(defaultLogLevel=options["log-level"])
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(factory(file), [predicate])])
    log.info("Starting reactor...")
    reactor.run()
    exit_signal: Any = getattr(reactor, "_exitSignal", None)
    if exit_signal is not None:
        _exit_with_signal(exit_signal)


if __name__ == "__main__":
    main()
