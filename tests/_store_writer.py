# -*- test-case-name: tests.test_store_durability -*-
"""
A process that commits to an L{SQLiteStore} until it is killed, for
L{tests.test_store_durability}.

Usage: C{python _store_writer.py DATA_DIR}.  It writes C{READY <database id>}
once open, then C{ACK <serial>} after each commit's Deferred has fired: an
acknowledged serial is one the store promised is durable.  Each commit puts
C{object/obj-<serial>} = C{{"serial": <serial>}}.
"""

from __future__ import annotations

import os
import sys

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore
from twisted.internet.task import react

from gridreg.store.records import Mutation
from gridreg.store.sqlite import SQLiteStore

MAX_COMMITS = 100000


def say(line: str) -> None:
    """Write one protocol line straight to the pipe, unbuffered."""
    os.write(sys.stdout.fileno(), (line + "\n").encode("ascii"))


async def write_until_killed(path: str) -> None:
    store = SQLiteStore(path)
    state = await store.open()
    say(f"READY {state.database_id}")
    for serial in range(state.serial + 1, state.serial + 1 + MAX_COMMITS):
        change = await store.commit([Mutation("object", f"obj-{serial}", {"serial": serial})])
        say(f"ACK {change.serial}")
    await store.close()


def main(reactor: IReactorCore, path: str) -> Deferred[None]:
    return Deferred.fromCoroutine(write_until_killed(path))


if __name__ == "__main__":
    react(main, sys.argv[1:])
