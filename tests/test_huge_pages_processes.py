"""
A real C{python -m twisted gridregistry} process starts itself again with
its Python heap on transparent huge pages (L{gridreg.huge_pages}), keeps its
PID and serves real Ice clients; C{GridReg.HugePages=0} keeps CPython's
allocator. With C{GridReg.HugePages.Collapse} it moves its dense memory
onto huge pages once it runs (L{gridreg.huge_page_collapse}).

Read from outside: C{/proc/PID/environ} holds the environment the running
program image started with, and C{/proc/PID/smaps_rollup} counts the
anonymous memory on huge pages.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from gridreg.huge_page_collapse import available
from gridreg.huge_pages import thp_available
from tests._processes import (
    RunningRegistry,
    assert_query_answers,
    ice_missing,
    start_gridregistry,
)


def started_with(registry: RunningRegistry) -> dict[str, str]:
    pid = registry.process.pid
    assert pid is not None
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().partition("=")[::2] for e in entries if e)


def anon_huge_kib(registry: RunningRegistry) -> int:
    pid = registry.process.pid
    assert pid is not None
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    raise AssertionError("no AnonHugePages in smaps_rollup")


class HugePagesProcessTests(TestCase):
    skip = ice_missing()
    timeout = 60

    async def test_heap_on_huge_pages(self) -> None:
        """
        GridReg.HugePages=1: the registry runs with glibc's malloc on huge
        pages (on a machine whose kernel gives them), and answers.
        """
        registry = await start_gridregistry(reactor, self.mktemp(), {"GridReg.HugePages": "1"})
        self.addCleanup(registry.stop)
        await assert_query_answers(reactor, registry)
        environ = started_with(registry)
        if thp_available():
            self.assertEqual(environ.get("PYTHONMALLOC"), "malloc")
            self.assertIn("glibc.malloc.hugetlb=1", environ.get("GLIBC_TUNABLES", ""))
            # most of an idle registry's ~30 MiB of anonymous memory
            self.assertGreaterEqual(anon_huge_kib(registry), 8 * 1024)
        else:
            self.assertNotIn("PYTHONMALLOC", environ)

    async def test_memory_collapsed_when_asked(self) -> None:
        """
        With GridReg.HugePages.Collapse, a second after start-up the
        registry's dense anonymous memory (its C heap at least) is on huge
        pages, says so, and the registry answers; where it cannot, it says why.
        """
        registry = await start_gridregistry(
            reactor, self.mktemp(), {"GridReg.HugePages.Collapse": "30"}
        )
        self.addCleanup(registry.stop)

        def said(event: dict[str, object]) -> bool:
            return event.get(
                "log_namespace"
            ) == "gridreg.huge_page_collapse" or "GridReg.HugePages.Collapse:" in str(
                event.get("log_format", "")
            )

        event = await registry.process.next_event(said, timeout=30)
        await assert_query_answers(reactor, registry)
        if available() is None and "MADV_COLLAPSE" not in str(event.get("log_format")):
            self.assertEqual(event["log_namespace"], "gridreg.huge_page_collapse")
            self.assertGreaterEqual(event["huge_mib"], 2)
            # what it said is what the kernel shows (later passes may only add)
            self.assertGreaterEqual(anon_huge_kib(registry), event["huge_mib"] * 1024)
        else:
            self.assertEqual(anon_huge_kib(registry), 0)

    async def test_off_by_default(self) -> None:
        """By default (GridReg.HugePages=0): CPython's allocator, started once."""
        registry = await start_gridregistry(reactor, self.mktemp())
        self.addCleanup(registry.stop)
        await assert_query_answers(reactor, registry)
        environ = started_with(registry)
        self.assertNotIn("PYTHONMALLOC", environ)
        self.assertNotIn("GRIDREG_HUGE_PAGES", environ)
