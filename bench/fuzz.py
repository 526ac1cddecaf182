# -*- test-case-name: tests.test_ice_fuzz -*-
"""
Coverage-guided fuzzing (atheris, i.e. libFuzzer) of what reaches the
registry from outside: the Ice decoder and an accepted Ice connection, the
internal AMP protocol up to the responders, and the XML descriptor parser.
The targets live in C{tests/fuzz_targets.py}.

    python -m bench.fuzz [--targets ice,amp,xml] [--seconds 60] [--workdir DIR]

Each target runs in its own process (libFuzzer fuzzes once per process), all
at once, for C{--seconds}, starting from the targets' seeds and the corpus
kept in C{DIR/corpus-<target>}. A crashing input is written to
C{DIR/<target>-crash-*}; keep it as C{tests/data/fuzz-regressions/<target>-<name>}
once fixed. One JSON line per target reports runs, coverage and crashes;
the exit status is 1 if any target crashed.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

TARGET_NAMES = ("ice", "amp", "xml")
_DONE = re.compile(rb"Done (\d+) runs in (\d+) second")
_COVERAGE = re.compile(rb"cov: (\d+)")


def _run_one(target: str, seconds: int, workdir: str) -> None:
    """In the child: fuzz C{target} until libFuzzer stops (it exits the process)."""
    import atheris

    with atheris.instrument_imports(include=["gridreg"]):
        from tests import fuzz_targets

    function, seeds = fuzz_targets.TARGETS[target]
    corpus = os.path.join(workdir, f"corpus-{target}")
    os.makedirs(corpus, exist_ok=True)
    for data in seeds() + [data for _, data in fuzz_targets.regressions(target)]:
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
    fuzz_targets.registry()  # built before fuzzing, not counted as a slow input
    atheris.Setup(
        [
            sys.argv[0],
            corpus,
            f"-max_total_time={seconds}",
            f"-artifact_prefix={os.path.join(workdir, target)}-",
            "-rss_limit_mb=2048",
            "-timeout=20",
            "-max_len=4096",
            "-print_final_stats=1",
        ],
        function,
    )
    atheris.Fuzz()


def _summary(target: str, workdir: str, code: int, stderr: bytes) -> dict[str, object]:
    done = _DONE.findall(stderr)
    coverage = _COVERAGE.findall(stderr)
    crashes = sorted(glob.glob(os.path.join(workdir, f"{target}-crash-*")))
    crashes += sorted(glob.glob(os.path.join(workdir, f"{target}-timeout-*")))
    return {
        "target": target,
        "exit_code": code,
        "runs": int(done[-1][0]) if done else None,
        "coverage": int(coverage[-1]) if coverage else None,
        "crashes": crashes,
        "ok": code == 0 and not crashes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGET_NAMES))
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--run", choices=TARGET_NAMES, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    workdir = options.workdir or tempfile.mkdtemp(prefix="gridreg-fuzz-")
    os.makedirs(workdir, exist_ok=True)
    if options.run:
        _run_one(options.run, options.seconds, workdir)
        return 0
    targets = [t for t in options.targets.split(",") if t]
    for target in targets:
        if target not in TARGET_NAMES:
            parser.error(f"unknown target {target!r}; targets: {', '.join(TARGET_NAMES)}")
    children = {
        target: subprocess.Popen(
            [sys.executable, "-m", "bench.fuzz", "--run", target]
            + [f"--seconds={options.seconds}", f"--workdir={workdir}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for target in targets
    }
    failed = False
    for target, child in children.items():
        _, stderr = child.communicate(timeout=options.seconds + 120)
        summary = _summary(target, workdir, child.returncode, stderr)
        if not summary["ok"]:
            failed = True
            summary["stderr_tail"] = stderr[-3000:].decode("utf-8", "replace")
        sys.stdout.write(json.dumps(summary) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
