# -*- test-case-name: tests.test_early_close -*-
"""
Close a killed registry's connections before the kernel frees its memory,
so that its clients fail over to a slave sooner (C{GridReg.EarlyClose},
on by default).

When a process dies, the kernel frees its address space before it closes
its files (C{do_exit}: C{exit_mm} before C{exit_files}), and it frees
anonymous memory page by page: 0.06-0.16 ms per MiB of 4 KiB pages on
this virtual machine, depending on the moment (bench/README.rst, "Issue 9,
eighth session"). An idle registry holds 29 MiB of anonymous memory, so a
SIGKILLed master's clients saw their connection close 4-8 ms after the
signal, against IceGrid's 1-3 ms.

The address space is freed only when its last user goes. So the registry
starts, once it runs, a keeper: a process that shares its address space
(C{clone(CLONE_VM)}) and nothing else. Its whole program is a few
instructions that this module writes into a page of its own (x86-64
Linux only): close every file descriptor it got a copy of but the read
end of a pipe, then wait on that pipe. The registry holds the pipe's
write end in its file table, so when the registry dies, by any signal or
by a normal exit, its threads leave the address space to the keeper, its
files close at once (each client's connection among them, with the write
end), the keeper reads EOF and exits, and only then, in the keeper, does
the kernel free the memory, under C{SCHED_IDLE}: after the clients have
been told, and when nothing else wants the CPU.

What an operator sees: a second process named C{gridreg-keeper}, a child
of the registry, with the registry's command line and memory (it shares
it: do not add the two RSS up), that sleeps and never runs Python. It
holds none of the registry's files, locks or sockets (only its own pipe),
so a restart of the registry finds none of them held. It goes 20 ms after
the registry, plus the time it takes to free the memory (longer when every
core is busy: it frees it under C{SCHED_IDLE}). Killed on its own, it stays a
zombie child of the registry (which does not reap it), and the registry's
connections close late again. C{GridReg.EarlyClose=0} starts none; a kernel
older than 5.9 (no C{close_range}), another architecture or a policy that
forbids executable memory (SELinux C{execmem}, systemd's
C{MemoryDenyWriteExecute}) leaves the registry as it was, and says so.
"""

from __future__ import annotations

import ctypes
import os
import platform
import select
import signal
import struct
import sys
import time
from typing import Any, Optional

from twisted.application.service import Service
from twisted.logger import Logger

__all__ = ["EarlyClose", "Keeper", "available", "keeper_program", "start_keeper"]

log = Logger("gridreg.early_close")

#: GridReg.EarlyClose: 1 (default) starts the keeper, 0 does not
PROPERTY = "GridReg.EarlyClose"
#: the keeper's name in ps and /proc/PID/comm (15 bytes at most)
NAME = b"gridreg-keeper"
CLONE_VM = 0x00000100
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
#: the keeper's code page and its stack (it uses a few bytes of the stack)
CODE_SIZE = 4096
STACK_SIZE = 16384
#: x86-64 Linux system call numbers
SYS_READ, SYS_NANOSLEEP, SYS_EXIT, SYS_PRCTL, SYS_CLOSE_RANGE = 0, 35, 60, 157, 436
#: how long the keeper waits after the registry's death before it exits and the
#: kernel frees the memory (nanoseconds): the clients, woken by their connections'
#: close, run first (the kernel does not preempt a task freeing memory for a task
#: woken before it started, so freeing at once delayed a client by up to a tick, 4 ms)
EXIT_DELAY_NS = 20_000_000
PR_SET_NAME = 15
#: how long a registry waits for its new keeper to close its copies of the descriptors
CLOSE_WAIT_MS = 1000


def available() -> Optional[str]:
    """Why this process cannot have a keeper, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the keeper's program is written for x86-64, not {platform.machine()}"
    release = platform.release().split(".")
    try:
        if (int(release[0]), int(release[1].split("-")[0])) < (5, 9):
            return f"Linux {platform.release()} has no close_range (5.9)"
    except (IndexError, ValueError):
        return f"unknown kernel release {platform.release()!r}"
    return None


def _mov_imm32(opcode: int, value: int) -> bytes:
    """C{mov r32, imm32} (C{opcode} is C{0xb8} plus the register)."""
    return bytes([opcode]) + struct.pack("<I", value & 0xFFFFFFFF)


def keeper_program(read_fd: int) -> bytes:
    """
    The keeper's machine code (x86-64, System V), entered as C{fn(arg)} by
    glibc's C{clone}: close every descriptor but C{read_fd}, take its name,
    read C{read_fd} until EOF or an error, wait L{EXIT_DELAY_NS}, exit. It
    calls no library function and touches no memory but its own stack, so
    it never meets the registry's threads in the memory they share.
    """
    if read_fd < 1:
        raise ValueError("the pipe's read end must not be descriptor 0")
    syscall = b"\x0f\x05"
    eax, edi, esi, edx = 0xB8, 0xBF, 0xBE, 0xBA
    test_rax = b"\x48\x85\xc0"
    body = b""
    exits = []  # offsets of the rel8 of each jump to the exit
    # close_range(0, read_fd - 1, 0) and close_range(read_fd + 1, ~0U, 0)
    for first, last in ((0, read_fd - 1), (read_fd + 1, 0xFFFFFFFF)):
        body += _mov_imm32(edi, first) + _mov_imm32(esi, last) + b"\x31\xd2"  # xor edx, edx
        body += _mov_imm32(eax, SYS_CLOSE_RANGE) + syscall + test_rax + b"\x75\x00"  # jnz exit
        exits.append(len(body) - 1)
    # prctl(PR_SET_NAME, name): rsi = the name, placed after the code (lea rsi, [rip + d])
    body += _mov_imm32(edi, PR_SET_NAME)
    name_lea = len(body)
    body += b"\x48\x8d\x35\x00\x00\x00\x00" + _mov_imm32(eax, SYS_PRCTL) + syscall
    # loop: read(read_fd, rsp - 64, 1); again while it returned a byte
    loop = len(body)
    body += _mov_imm32(edi, read_fd) + b"\x48\x8d\x74\x24\xc0"  # lea rsi, [rsp - 64]
    body += _mov_imm32(edx, 1) + b"\x31\xc0" + syscall + test_rax  # xor eax, eax (read)
    body += b"\x7f" + bytes([(loop - (len(body) + 2)) & 0xFF])  # jg loop
    # nanosleep({0, EXIT_DELAY_NS}, NULL), the timespec at rsp - 32, then exit(0)
    body += b"\x48\xc7\x44\x24\xe0" + struct.pack("<i", 0)  # mov qword [rsp - 32], 0
    body += b"\x48\xc7\x44\x24\xe8" + struct.pack("<i", EXIT_DELAY_NS)  # [rsp - 24]
    body += b"\x48\x8d\x7c\x24\xe0\x31\xf6"  # lea rdi, [rsp - 32]; xor esi, esi
    body += _mov_imm32(eax, SYS_NANOSLEEP) + syscall
    exit_at = len(body)
    body += b"\x31\xff" + _mov_imm32(eax, SYS_EXIT) + syscall
    name_at = len(body)
    body += NAME + b"\x00"
    code = bytearray(body)
    for at in exits:
        code[at] = (exit_at - (at + 1)) & 0xFF
    code[name_lea + 3 : name_lea + 7] = struct.pack("<i", name_at - (name_lea + 7))
    return bytes(code)


class Keeper:
    """A started keeper: its PID, and the pipe's write end that ends it."""

    def __init__(self, pid: int, write_fd: int) -> None:
        self.pid = pid
        #: held (never closed) until this process ends; its close ends the keeper
        self.write_fd = write_fd


def _wait_for_eof(fd: int, timeout_ms: int) -> bool:
    """Wait until every write end of the pipe C{fd} reads is closed; whether they were."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        left = max(0, int((deadline - time.monotonic()) * 1000))
        if poller.poll(left):  # PEP 475: retried by Python on EINTR
            return os.read(fd, 1) == b""
        if left == 0:
            return False


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.clone.restype = ctypes.c_int
    libc.clone.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    return libc


def _map(libc: Any, size: int) -> int:
    address = libc.mmap(None, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    return int(address)


def start_keeper(idle: bool = True) -> Keeper:
    """
    Start this process's keeper (L{available} said it can); C{idle} puts it
    under C{SCHED_IDLE}. Its code page and stack are never unmapped: the
    keeper runs on them until this process is gone. Returns once the keeper
    holds none of this process's descriptors. Raises L{OSError} when the
    kernel refuses a step (executable memory forbidden, no C{clone}).
    """
    libc = _libc()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    # the keeper closes its copy of closed_w with the rest: closed_r then reads EOF
    closed_r, closed_w = os.pipe2(os.O_CLOEXEC)
    pid = -1
    try:
        program = keeper_program(read_fd)
        code = _map(libc, CODE_SIZE)
        ctypes.memmove(code, program, len(program))
        if libc.mprotect(code, CODE_SIZE, PROT_READ | PROT_EXEC) != 0:
            raise OSError(ctypes.get_errno(), "mprotect(PROT_EXEC)")
        stack_top = (_map(libc, STACK_SIZE) + STACK_SIZE - 64) & ~0xF
        # the keeper starts with every signal blocked (it inherits this thread's mask):
        # no handler of the registry's ever runs on it; SIGKILL and SIGSTOP still act
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = libc.clone(code, stack_top, CLONE_VM, None)  # no exit signal: no SIGCHLD
            error = ctypes.get_errno()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if pid < 0:
            raise OSError(error, "clone(CLONE_VM)")
    finally:
        os.close(read_fd)  # the keeper has its own copy
        os.close(closed_w)
        if pid < 0:  # no keeper: nothing to end (its two pages stay mapped, unused)
            os.close(write_fd)
            os.close(closed_r)
    # Until it has run its first instructions the keeper holds a copy of every
    # descriptor of this process, its listening sockets among them (a restarted
    # registry could not bind them again while the killed one's keeper waited
    # for a CPU under SCHED_IDLE). So it keeps this process's priority until
    # then, and this process waits for it (microseconds) before it goes on.
    try:
        if not _wait_for_eof(closed_r, CLOSE_WAIT_MS):
            log.warn(
                "Keeper {pid} has not closed its copies of the registry's descriptors "
                "after {ms} ms",
                pid=pid,
                ms=CLOSE_WAIT_MS,
            )
    finally:
        os.close(closed_r)
    if idle:
        try:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        except OSError as e:
            log.info("The keeper keeps the registry's scheduling policy ({error})", error=e)
    return Keeper(pid, write_fd)


class EarlyClose(Service):
    """Starts the keeper when the registry starts (after any daemonizing fork)."""

    def __init__(self) -> None:
        self.keeper: Optional[Keeper] = None

    def startService(self) -> None:
        super().startService()
        if self.keeper is not None:
            return
        try:
            self.keeper = start_keeper()
        except OSError as e:
            log.warn(
                "GridReg.EarlyClose: cannot start the keeper ({error}); a killed registry's "
                "connections close only once its memory is freed",
                error=e,
            )
            return
        log.info(
            "Keeper {pid} shares this process's memory, so that a killed registry's "
            "connections close before the memory is freed (GridReg.EarlyClose=0 turns it off)",
            pid=self.keeper.pid,
        )
