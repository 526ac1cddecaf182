# -*- test-case-name: tests.test_demo -*-
"""
A demo grid on one machine: a master and a slave registry replica and two
nodes over mutual TLS, with the sample application deployed: two
C{on-demand} Hello servers in a round-robin replica group.

Run C{python3 -m gridreg.demo} (or C{gridreg-demo}); stop it with Ctrl-C.
C{python3 -m gridreg.demo call} then says hello through the locator and
prints which server answered (the first call starts it). Everything lives
under C{--dir} (default C{demo-grid/}): certificates, configuration files,
databases, node data and logs; a second run reuses them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from twisted.internet import defer, task
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from gridreg.demo.grid import DemoGrid

log = Logger("gridreg.demo")

__all__ = ["DemoGrid", "main"]

TRY = """\
The demo grid is up.
  Ice clients:  Ice.Default.Locator={locator}
  say hello:    {python} -m gridreg.demo call --dir {root}
                (the first call starts both servers; calls then take them in turn)
  servers:      gridadmin --config {root}/admin.cfg server list
  nodes:        gridadmin --config {root}/admin.cfg node list
  stop one:     gridadmin --config {root}/admin.cfg server stop HelloServer-1
  logs:         {root}/logs/ (servers' output in {root}/logs/servers/)
Ctrl-C stops it."""


def main(argv: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["call"]:
        from gridreg.demo.call import main as call

        sys.exit(call(argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dir", default="demo-grid", help="where the grid keeps its files")
    parser.add_argument("--base-port", type=int, default=4061, help="Master's client port")
    parser.add_argument("--exit-after-start", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])

    async def run(reactor: Any) -> None:
        grid = DemoGrid(reactor, Path(options.dir).resolve(), options.base_port)
        # Ctrl-C or SIGTERM stops the reactor; the children are stopped first
        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: defer.Deferred.fromCoroutine(grid.stop())
        )
        await grid.start()
        log.info(
            "{message}",
            message=TRY.format(locator=grid.locator, root=grid.root, python=sys.executable),
        )
        if not options.exit_after_start:
            await defer.Deferred()  # until the reactor is stopped by a signal

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
