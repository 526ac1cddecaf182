# -*- test-case-name: tests.test_huge_pages -*-
"""
Tests for L{gridreg.huge_pages}: when a registry starts itself again with
its heap on transparent huge pages, and what its environment holds before
and after.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from gridreg import huge_pages
from gridreg.huge_pages import (
    MARKER,
    huge_page_environment,
    restore_environment,
    thp_available,
    wanted,
)


class WantedTests(TestCase):
    def test_default_linux_machine(self) -> None:
        self.assertTrue(wanted(True, {"PATH": "/bin"}, platform="linux", thp=True))

    def test_turned_off(self) -> None:
        """GridReg.HugePages=0."""
        self.assertFalse(wanted(False, {}, platform="linux", thp=True))

    def test_not_linux(self) -> None:
        self.assertFalse(wanted(True, {}, platform="darwin", thp=True))

    def test_no_transparent_huge_pages(self) -> None:
        self.assertFalse(wanted(True, {}, platform="linux", thp=False))

    def test_operator_chose_an_allocator(self) -> None:
        self.assertFalse(wanted(True, {"PYTHONMALLOC": "debug"}, platform="linux", thp=True))

    def test_started_again_already(self) -> None:
        """The marker stops a second start (no loop, whatever else the environment holds)."""
        self.assertFalse(wanted(True, {MARKER: ""}, platform="linux", thp=True))


class EnvironmentTests(TestCase):
    def test_added(self) -> None:
        env = huge_page_environment({"PATH": "/bin"})
        self.assertEqual(env["PYTHONMALLOC"], "malloc")
        self.assertEqual(env["GLIBC_TUNABLES"], "glibc.malloc.hugetlb=1")
        self.assertEqual(env["PATH"], "/bin")

    def test_operator_tunables_kept(self) -> None:
        env = huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
        self.assertEqual(env["GLIBC_TUNABLES"], "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")

    def test_restored(self) -> None:
        """The started-again process gives its children the environment it was started with."""
        for before in (
            {"PATH": "/bin"},
            {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
        ):
            env = huge_page_environment(before)
            self.assertTrue(restore_environment(env))
            self.assertEqual(env, before)

    def test_not_started_again(self) -> None:
        env = {"PYTHONMALLOC": "malloc"}
        self.assertFalse(restore_environment(env))
        self.assertEqual(env, {"PYTHONMALLOC": "malloc"})


class ThpAvailableTests(TestCase):
    def setting(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_madvise(self) -> None:
        self.assertTrue(thp_available(self.setting("always [madvise] never\n")))

    def test_always(self) -> None:
        self.assertTrue(thp_available(self.setting("[always] madvise never\n")))

    def test_never(self) -> None:
        self.assertFalse(thp_available(self.setting("always madvise [never]\n")))

    def test_no_such_file(self) -> None:
        """A kernel built without transparent huge pages."""
        self.assertFalse(thp_available(self.mktemp()))


class StartAgainTests(TestCase):
    def test_started_again_process_restores(self) -> None:
        """In the started-again process it only cleans up, and says so."""
        environ = huge_page_environment({"PATH": "/bin"})
        self.patch(huge_pages.os, "environ", environ)
        self.patch(huge_pages.os, "execve", lambda *a: self.fail("started again twice"))
        self.assertIs(huge_pages.start_again_with_huge_pages(True), True)
        self.assertEqual(environ, {"PATH": "/bin"})

    def test_turned_off(self) -> None:
        self.patch(huge_pages.os, "environ", {"PATH": "/bin"})
        self.patch(huge_pages.os, "execve", lambda *a: self.fail("started again"))
        self.assertIs(huge_pages.start_again_with_huge_pages(False), False)

    def test_starts_again_with_the_same_command(self) -> None:
        calls = []
        self.patch(huge_pages.os, "environ", {"PATH": "/bin"})
        self.patch(huge_pages.os, "execve", lambda *a: calls.append(a))
        self.patch(huge_pages, "thp_available", lambda: True)
        self.patch(huge_pages.sys, "platform", "linux")
        self.patch(huge_pages.sys, "orig_argv", ["python3", "-m", "twisted", "gridregistry"])
        huge_pages.start_again_with_huge_pages(True)
        [(executable, argv, env)] = calls
        self.assertEqual(executable, huge_pages.sys.executable)
        self.assertEqual(argv, ["python3", "-m", "twisted", "gridregistry"])
        self.assertEqual(env["PYTHONMALLOC"], "malloc")

    def test_exec_failure_goes_on(self) -> None:
        """A registry whose interpreter cannot be run again starts as it is."""

        def refuse(*args: object) -> None:
            raise PermissionError("noexec")

        self.patch(huge_pages.os, "environ", {"PATH": "/bin"})
        self.patch(huge_pages.os, "execve", refuse)
        self.patch(huge_pages, "thp_available", lambda: True)
        self.patch(huge_pages.sys, "platform", "linux")
        self.assertIs(huge_pages.start_again_with_huge_pages(True), False)
