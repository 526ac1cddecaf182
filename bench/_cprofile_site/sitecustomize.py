"""
A deterministic profile of a running gridreg process, for
C{bench.write_breakdown --cprofile}: with this directory on C{PYTHONPATH}
and C{GRIDREG_BENCH_CPROFILE} naming a directory, C{SIGUSR1} starts
C{cProfile} on the main (reactor) thread and on every store thread (a job
submitted to each L{ThreadExecutor}, so it runs in that thread's order),
and C{SIGUSR2} stops them and writes C{PID-THREAD.prof} files. Without the
variable it does nothing. Profiling slows every call: compare call counts,
and times only with each other.
"""

import os

_DIRECTORY = os.environ.get("GRIDREG_BENCH_CPROFILE")

if _DIRECTORY:
    import cProfile
    import signal
    import threading

    _profiles: dict = {}

    def _executors() -> list:
        # by their threads' targets: the registry freezes its start-up objects (gc.freeze),
        # which hides them from gc.get_objects()
        found = []
        for thread in threading.enumerate():
            owner = getattr(getattr(thread, "_target", None), "__self__", None)
            if type(owner).__name__ == "ThreadExecutor":
                found.append(owner)
        return found

    def _start_here() -> None:
        profile = cProfile.Profile()
        _profiles[threading.current_thread().name] = profile
        profile.enable()

    def _stop_here() -> None:
        name = threading.current_thread().name
        profile = _profiles.pop(name, None)
        if profile is not None:
            profile.disable()
            profile.dump_stats(os.path.join(_DIRECTORY, f"{os.getpid()}-{name}.prof"))

    def _note(text: str) -> None:
        with open(os.path.join(_DIRECTORY, f"{os.getpid()}.log"), "a") as log:
            log.write(text + "\n")

    import gc
    import time

    _gc = {"time": 0.0, "runs": [0, 0, 0], "started": None}

    def _gc_timer(phase: str, info: dict) -> None:
        if phase == "start":
            _gc["started"] = time.perf_counter()
        elif _gc["started"] is not None:
            _gc["time"] += time.perf_counter() - _gc["started"]
            _gc["runs"][info["generation"]] += 1

    def _start(signum: int, frame: object) -> None:
        _gc.update(time=0.0, runs=[0, 0, 0], started=None)
        if _gc_timer not in gc.callbacks:
            gc.callbacks.append(_gc_timer)
        _note(f"start: {len(_executors())} store threads")
        for executor in _executors():
            executor._queue.put((_start_here, (), _Ignored()))
        _start_here()

    def _stop(signum: int, frame: object) -> None:
        gc.callbacks.remove(_gc_timer)
        _note(f"gc: {_gc['runs']} collections by generation, {_gc['time'] * 1e3:.3f} ms")
        _stop_here()
        for executor in _executors():
            executor._queue.put((_stop_here, (), _Ignored()))

    class _Ignored:
        """Stands for the job's Deferred: the result is not wanted."""

        def callback(self, result: object) -> None:
            pass

        def errback(self, failure: object) -> None:
            _note(f"failed: {failure}")

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
