"""
Run the registry with its Python heap on transparent huge pages, so that a
SIGKILLed registry's connections close sooner and its clients fail over
sooner.

A killed process's sockets see EOF only after the kernel has freed its
memory (C{exit_mm} runs before C{exit_files}), page by page: an idle
registry holds about 30 MiB of anonymous memory, 7,500 4 KiB pages, and its
clients saw EOF 3-4 ms after SIGKILL against IceGrid's 1.3 ms
(C{bench/README.rst}, "Failover after SIGKILL"). CPython's own allocator
takes 1 MiB arenas, too small for a 2 MiB page; with glibc's malloc instead
(C{PYTHONMALLOC=malloc}) and glibc asked to advise its heap for transparent
huge pages (C{GLIBC_TUNABLES=glibc.malloc.hugetlb=1}, glibc 2.35 or later),
most of it is 2 MiB pages and the EOF comes after about 1.5 ms.

Both settings are read only when a process starts, so the registry starts
itself again once, with the same command line and the two variables added,
before it builds its service. That second start costs about 0.2 s (the
interpreter, Twisted and the plugins again), which is why it is off by
default: C{GridReg.HugePages=1} turns it on, or an operator sets both
variables in the service's environment and pays nothing. It does not when
C{GridReg.HugePages=0} (the default), when
the machine has transparent huge pages off (C{never}), off Linux, or when
C{PYTHONMALLOC} is set already (the operator's choice wins). The started
process takes the variables out of its environment again, so that nothing
it may run inherits them.

Since L{gridreg.early_close} (on by default), a killed registry's
connections close before its memory is freed, whatever pages it is on:
huge pages now only make the freeing itself cheaper.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, MutableMapping, Optional

#: the switch, C{0} (off) by default
PROPERTY = "GridReg.HugePages"
#: set in the started-again process: the GLIBC_TUNABLES it had before (maybe empty)
MARKER = "GRIDREG_HUGE_PAGES"
TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_available(setting_file: str = THP_SETTING) -> bool:
    """Whether the kernel gives transparent huge pages to a region that asks."""
    try:
        with open(setting_file) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def wanted(
    enabled: bool, environ: Mapping[str, str], platform: Optional[str] = None, thp: bool = True
) -> bool:
    """Whether this process should start itself again with huge pages."""
    return (
        enabled
        and (platform or sys.platform).startswith("linux")
        and thp
        and MARKER not in environ
        and "PYTHONMALLOC" not in environ
    )


def huge_page_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """C{environ} with the allocator settings added, and the marker."""
    env = dict(environ)
    tunables = environ.get("GLIBC_TUNABLES", "")
    env[MARKER] = tunables
    env["PYTHONMALLOC"] = "malloc"
    env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    return env


def restore_environment(environ: MutableMapping[str, str]) -> bool:
    """
    In the started-again process: take the added variables out of
    C{environ} (for the programs it runs); whether this process is one.
    """
    if MARKER not in environ:
        return False
    tunables = environ.pop(MARKER)
    environ.pop("PYTHONMALLOC", None)
    if tunables:
        environ["GLIBC_TUNABLES"] = tunables
    else:
        environ.pop("GLIBC_TUNABLES", None)
    return True


def start_again_with_huge_pages(enabled: bool) -> Optional[bool]:
    """
    Replace this process (same PID, same command line) by one with huge
    pages, if L{wanted}; returns only when it does not: C{True} when this
    process is the started-again one, C{False} when it runs without.
    """
    if restore_environment(os.environ):
        return True
    if not wanted(enabled, os.environ, thp=thp_available()):
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, huge_page_environment(os.environ))
    except OSError:
        return False  # the interpreter cannot be run again: go on as we are
    return None  # not reached
