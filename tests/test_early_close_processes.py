"""
A real C{python -m twisted gridregistry} starts a keeper that shares its
memory (L{gridreg.early_close}), answers real Ice clients with it, and
leaves no process behind when it is SIGKILLed; C{GridReg.EarlyClose=0}
starts none. Read from outside, in C{/proc}.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gridreg.early_close import available
from tests._processes import (
    RunningRegistry,
    assert_query_answers,
    ice_missing,
    start_gridregistry,
)
from tests.test_early_close import alive, named, same_memory, status


def children(registry: RunningRegistry) -> list[int]:
    """The registry's child processes (it starts none but its keeper)."""
    pid = registry.process.pid
    assert pid is not None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if status(int(entry)).get("PPid") == str(pid):
                found.append(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


class EarlyCloseProcessTests(TestCase):
    skip = ice_missing()
    timeout = 60

    async def test_keeper_started_and_gone_after_kill(self) -> None:
        """
        By default the registry has one child, its keeper: it shares the
        registry's memory, is named gridreg-keeper, holds only its pipe, and
        the registry answers; SIGKILLed, the registry's keeper goes too.
        Where this system cannot have one, the registry says why and answers.
        """
        registry = await start_gridregistry(reactor, self.mktemp())
        self.addCleanup(registry.stop)
        await assert_query_answers(reactor, registry)
        why_not = available()
        if why_not is not None:
            self.assertEqual(children(registry), [])
            await registry.process.next_event(
                lambda e: (
                    e.get("log_namespace") == "gridreg.registry.tap"
                    and str(e.get("log_format", "")).startswith("GridReg.EarlyClose:")
                )
            )
            return
        [keeper] = children(registry)
        self.assertTrue(same_memory(keeper, registry.process.pid or 0))
        await named(self, keeper)
        [fd] = os.listdir(f"/proc/{keeper}/fd")
        self.assertTrue(os.readlink(f"/proc/{keeper}/fd/{fd}").startswith("pipe:"))
        await registry.kill("KILL")
        for _ in range(200):
            if not alive(keeper):
                break
            await deferLater(reactor, 0.05)
        else:
            self.fail(f"keeper {keeper} outlived its killed registry: {status(keeper)}")

    async def test_turned_off(self) -> None:
        """GridReg.EarlyClose=0: the registry starts no keeper, and answers."""
        registry = await start_gridregistry(reactor, self.mktemp(), {"GridReg.EarlyClose": "0"})
        self.addCleanup(registry.stop)
        await assert_query_answers(reactor, registry)
        self.assertEqual(children(registry), [])
