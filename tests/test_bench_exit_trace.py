"""
L{bench._exit_trace.exit_times} reads, from ftrace's text, when the kernel
closed a killed registry's connection and freed its memory: the figures
C{bench.kill_eof --kernel-times} reports.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench._exit_trace import exit_times

TCP = "family=AF_INET protocol=IPPROTO_TCP saddr=127.0.0.1 daddr=127.0.0.1"


def line(task: str, at: str, event: str) -> str:
    """One event as ftrace writes it: task-pid, CPU, flags, time, event."""
    return f"{task:>24}   [001] ..... {at}: {event}"


#: around a kill of pid 0x4917 (18711), after a kill of another pid
TRACE = "\n".join(
    [
        "# tracer: nop",
        line("python3-19185", "100.000000", "sys_kill(pid: 0x4918, sig: 9)"),
        line("python3-19185", "100.500000", "sys_kill(pid: 0x4917, sig: 9)"),
        line("python3-18754", "100.500100", "sched_process_exit: comm=python3 pid=18754"),
        line("python3-18999", "100.501000", "exit_mmap: mt_mod 0000000044, DESTROY"),
        line(
            "python3-18711",
            "100.501500",
            f"inet_sock_set_state: {TCP} sport=4062 dport=0 oldstate=TCP_LISTEN newstate=TCP_CLOSE",
        ),
        line(
            "python3-18711",
            "100.502000",
            f"inet_sock_set_state: {TCP} sport=4061 dport=3341 oldstate=TCP_ESTABLISHED "
            "newstate=TCP_FIN_WAIT1",
        ),
        line(
            "python3-18711",
            "100.502100",
            f"inet_sock_set_state: {TCP} sport=4061 dport=3342 oldstate=TCP_ESTABLISHED "
            "newstate=TCP_FIN_WAIT1",
        ),
        line("gridreg-keeper-18800", "100.530000", "exit_mmap: mt_mod 0000000099, DESTROY"),
    ]
)


class ExitTimesTests(SynchronousTestCase):
    def test_close_and_free_of_the_killed_process(self) -> None:
        """
        Times run from the kill of the given pid (not another kill); the
        close is the first FIN from the given port; the free is the first
        by a task that shares the memory (not another process's exit).
        """
        times = exit_times(TRACE, 4061, 18711, {18711, 18754, 18800})
        self.assertAlmostEqual(times["close_ms"], 2.0, places=3)
        self.assertAlmostEqual(times["freed_ms"], 30.0, places=3)

    def test_nothing_seen(self) -> None:
        """No kill of that pid, or no close from that port: no figure, not a wrong one."""
        self.assertEqual(exit_times(TRACE, 4061, 1234, {1234}), {})
        self.assertEqual(exit_times(TRACE, 5000, 18711, {4321}), {})
