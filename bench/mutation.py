# -*- test-case-name: tests.test_mutation_tool -*-
"""
Mutation testing of one gridreg module with cosmic-ray: how many small,
deliberate bugs (mutants) in the module make its own tests fail.

Usage, from the repository root (see bench/README.rst, "Mutation testing")::

    python3 -m bench.mutation gridreg/store/sqlite.py [--timeout 20] [--keep]
    python3 -m bench.mutation --list

The working tree (committed or not, less ignored files) is copied to a
temporary directory outside the repository; cosmic-ray mutates the copy one
mutant at a time and runs only the trial modules that cover the module
(L{MODULES}), stopping at the first failure, with a timeout per mutant.
The run lowers its own priority (C{nice 10}).

Operators: cosmic-ray's core set, less most of its binary and comparison
operator cross product (L{operator_kept}), plus gridreg's C{DeleteStatement}
and C{ReturnNone} (C{bench/_mutation_operators.py}).  Mutants inside
annotations are skipped (never evaluated here).  It prints killed /
survived / percent and every surviving mutant, except those listed as
equivalent in C{bench/mutation-equivalents.txt}; a timeout counts as killed.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).resolve().parent / "mutation-equivalents.txt"

#: cosmic-ray's command line, with gridreg's own operators (DeleteStatement,
#: ReturnNone) registered.
COSMIC_RAY = [sys.executable, "-m", "bench._mutation_operators"]

#: module -> the trial modules that cover it (and only those: the run is per
#: module, so it must be fast).
MODULES: dict[str, list[str]] = {
    "gridreg/store/sqlite.py": ["tests.test_store", "tests.test_store_durability"],
    "gridreg/store/memory.py": ["tests.test_store"],
    "gridreg/store/_serial.py": ["tests.test_store"],
    "gridreg/store/records.py": ["tests.test_store"],
    "gridreg/registry/state.py": ["tests.test_registry_state"],
    "gridreg/registry/object_table.py": ["tests.test_object_table", "tests.test_registry_state"],
    "gridreg/registry/loadbalancing.py": ["tests.test_loadbalancing"],
    "gridreg/ice/encoding.py": ["tests.test_ice_encoding", "tests.test_ice_vectors"],
    "gridreg/ice/messages.py": [
        "tests.test_ice_messages",
        "tests.test_ice_messages_mutants",
        "tests.test_ice_vectors",
    ],
    "gridreg/registry/master.py": [
        "tests.test_master_fanout",
        "tests.test_replication",
        "tests.test_fencing",
        "tests.test_initdb",
    ],
    "gridreg/registry/slave.py": [
        "tests.test_slave_sync",
        "tests.test_replication",
        "tests.test_fencing",
        "tests.test_initdb",
    ],
    "gridreg/registry/master_role.py": [
        "tests.test_master_role",
        "tests.test_fencing",
        "tests.test_initdb",
        "tests.test_replication",
    ],
    "gridreg/registry/slave_role.py": [
        "tests.test_slave_role",
        "tests.test_replication",
        "tests.test_fencing",
        "tests.test_initdb",
    ],
    "gridreg/registry/epochs.py": [
        "tests.test_epoch_display",
        "tests.test_epochs",
        "tests.test_fencing",
        "tests.test_initdb",
    ],
    "gridreg/protocol/chunking.py": [
        "tests.test_chunking_defaults",
        "tests.test_chunking",
        "tests.test_admin",
    ],
    "gridreg/registry/database.py": [
        "tests.test_registry_database",
        "tests.test_admin",
        "tests.test_applications",
        "tests.test_client_registration",
        "tests.test_registry_vectors",
        "tests.test_query_by_type",
        "tests.test_replication",
    ],
    "gridreg/registry/_slave_session_machine.py": [
        "tests.test_slave_session_transitions",
        "tests.test_slave_session_machine",
        "tests.test_replication",
    ],
}

#: Binary operator replacements kept: each operator's natural counterpart.
#: cosmic-ray's full cross product (11 replacements of every operator) mostly
#: adds mutants that die with the first one and makes a run 5 times longer;
#: C{--all-operators} restores it.
_BINARY_KEPT = {
    "Add_Sub",
    "Sub_Add",
    "Mul_Div",
    "Div_Mul",
    "FloorDiv_Mul",
    "Mod_FloorDiv",
    "Pow_Mul",
    "LShift_RShift",
    "RShift_LShift",
    "BitOr_BitAnd",
    "BitAnd_BitOr",
    "BitXor_BitOr",
}
#: Comparison replacements kept: the negation and the off-by-one boundary.
_COMPARISON_KEPT = {
    "Eq_NotEq",
    "NotEq_Eq",
    "Lt_LtE",
    "Lt_GtE",
    "LtE_Lt",
    "LtE_Gt",
    "Gt_GtE",
    "Gt_LtE",
    "GtE_Gt",
    "GtE_Lt",
    "Is_IsNot",
    "IsNot_Is",
}


def operator_kept(name: str) -> bool:
    """Whether the default (curated) run includes cosmic-ray operator C{name}."""
    for prefix, kept in (
        ("core/ReplaceBinaryOperator_", _BINARY_KEPT),
        ("core/ReplaceComparisonOperator_", _COMPARISON_KEPT),
    ):
        if name.startswith(prefix):
            return name[len(prefix) :] in kept
    return True


@dataclass(frozen=True)
class Equivalent:
    """
    One line of the equivalents file: C{module | operator | source line |
    mutated line | reason}, C{*} as the mutated line standing for every
    mutation of that operator on that line.
    """

    module: str
    operator: str
    line: str
    mutated: str
    reason: str

    def matches(self, operator: str, line: str, mutated: str, function: str) -> bool:
        """
        Whether a mutant is this one.  A source line written C{[name] line}
        matches only inside function C{name}, for lines that occur twice.
        """
        expected = self.line
        if expected.startswith("["):
            name, _, expected = expected[1:].partition("] ")
            if name != function:
                return False
        return (self.operator, expected) == (operator, line) and self.mutated in ("*", mutated)


def read_equivalents(path: Path = EQUIVALENTS) -> list[Equivalent]:
    """The equivalent mutants listed in C{path}; C{#} lines and blank lines are ignored."""
    result = []
    if not path.exists():
        return result
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in text.split(" | ")]
        if len(parts) != 5 or not all(parts):
            raise SystemExit(
                f"{path}:{number}: expected 'module | operator | line | mutated line | reason'"
            )
        result.append(Equivalent(*parts))
    return result


Span = tuple[tuple[int, int], tuple[int, int]]


def annotation_spans(source: str) -> list[Span]:
    """
    Where C{source}'s annotations are, as C{((line, column), (end_line,
    end_column))}, if the module has C{from __future__ import annotations}
    (so they are never evaluated, and mutants inside them are equivalent).
    """
    tree = ast.parse(source)
    future = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    if not future:
        return []
    spans = []
    for node in ast.walk(tree):
        found: list[ast.expr | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node.returns)
        elif isinstance(node, ast.arg):
            found.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        for annotation in filter(None, found):
            assert annotation.end_lineno is not None and annotation.end_col_offset is not None
            spans.append(
                (
                    (annotation.lineno, annotation.col_offset),
                    (annotation.end_lineno, annotation.end_col_offset),
                )
            )
    return spans


def enclosing_functions(source: str) -> dict[int, str]:
    """Line number -> the name of the innermost function around it."""
    result: dict[int, str] = {}
    functions = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for node in sorted(functions, key=lambda n: n.lineno):  # inner ones come later
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            result[line] = node.name
    return result


def in_spans(position: tuple[int, int], spans: list[Span]) -> bool:
    return any(start <= position < end for start, end in spans)


def copy_tree(destination: Path) -> None:
    """
    Copy the working tree's tracked and untracked, not ignored, files (every
    file but caches and trial's temporary files outside a git checkout).
    """
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
    )
    if listing.returncode == 0:
        names = listing.stdout.decode("utf-8").split("\0")
    else:
        names = [
            str(path.relative_to(ROOT))
            for path in ROOT.rglob("*")
            if not {"__pycache__", "_trial_temp", ".git"} & set(path.relative_to(ROOT).parts)
        ]
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file() and not name.startswith(("demo-grid/", "_trial_temp")):
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_command(copy: Path, tests: list[str]) -> str:
    temp = copy / "_trial_temp"
    return f"{sys.executable} -m twisted.trial -x --temp-directory={temp} " + " ".join(tests)


def write_config(copy: Path, module: str, tests: list[str], timeout: float) -> Path:
    config = copy / "mutation.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{copy / module}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{test_command(copy, tests)}"\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n',
        encoding="utf-8",
    )
    return config


def run(argv: list[str], cwd: Path) -> None:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(cwd))
    subprocess.run(argv, cwd=cwd, env=env, check=True)


@dataclass
class Result:
    killed: int
    survived: list[tuple[int, str, str]]  # line, operator, diff
    equivalent: int
    stale_equivalents: list[Equivalent]
    skipped: int


def mutate(
    module: str, tests: list[str], timeout: float, all_operators: bool, keep: bool
) -> Result:
    """Run cosmic-ray on C{module} in a copy of the tree; return the outcome."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    copy = Path(tempfile.mkdtemp(prefix="gridreg-mutation-"))
    try:
        copy_tree(copy)
        print(f"copy: {copy}", flush=True)
        baseline = subprocess.run(
            test_command(copy, tests).split(),
            cwd=copy,
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(copy)),
            capture_output=True,
        )
        if baseline.returncode != 0:
            sys.stdout.write(baseline.stdout.decode("utf-8", "replace")[-3000:])
            raise SystemExit(f"the unmutated tests fail: {' '.join(tests)}")
        config = write_config(copy, module, tests, timeout)
        session = copy / "session.sqlite"
        run([*COSMIC_RAY, "init", str(config), str(session)], copy)
        text = (copy / module).read_text(encoding="utf-8")
        source = text.splitlines()
        functions = enclosing_functions(text)
        annotations = annotation_spans((copy / module).read_text(encoding="utf-8"))
        skipped = 0
        in_annotations = 0
        with use_db(str(session), WorkDB.Mode.open) as db:
            for item in list(db.pending_work_items):
                mutation = item.mutations[0]
                if in_spans(tuple(mutation.start_pos), annotations):
                    reason = "in an annotation, which is never evaluated"
                    in_annotations += 1
                elif not all_operators and not operator_kept(mutation.operator_name):
                    reason = "operator not in the curated set"
                    skipped += 1
                else:
                    continue
                db.set_result(
                    item.job_id, WorkResult(output=reason, worker_outcome=WorkerOutcome.SKIPPED)
                )
            pending = db.num_work_items - db.num_results
        print(
            f"{module}: {pending} mutants ({skipped} of other operators and "
            f"{in_annotations} in annotations skipped), tests: {' '.join(tests)}",
            flush=True,
        )
        run([*COSMIC_RAY, "exec", str(config), str(session)], copy)

        equivalents = [e for e in read_equivalents() if e.module == module]
        used: set[Equivalent] = set()
        killed = 0
        equivalent = 0
        survived = []
        with use_db(str(session), WorkDB.Mode.open) as db:
            for item, result in db.completed_work_items:
                if result.worker_outcome in (WorkerOutcome.SKIPPED, WorkerOutcome.NO_TEST):
                    continue
                mutation = item.mutations[0]
                line_number = mutation.start_pos[0]
                line = source[line_number - 1].strip()
                mutated = mutated_line(result.diff or "")
                function = functions.get(line_number, "")
                match = [
                    e
                    for e in equivalents
                    if e.matches(mutation.operator_name, line, mutated, function)
                ]
                if result.test_outcome == TestOutcome.SURVIVED and (
                    result.worker_outcome == WorkerOutcome.NORMAL
                ):
                    if match:
                        equivalent += 1
                        used.update(match)
                    else:
                        survived.append((line_number, mutation.operator_name, result.diff or ""))
                else:
                    killed += 1
        stale = [e for e in equivalents if e not in used]
        return Result(killed, sorted(survived), equivalent, stale, skipped)
    finally:
        if keep:
            print(f"kept: {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)


def mutated_line(diff: str) -> str:
    """The first line a mutant's diff adds, stripped."""
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            return line[1:].strip()
    return ""


def _changed_lines(diff: str) -> str:
    lines = [line for line in diff.splitlines() if re.match(r"^[-+](?![-+]{2} )", line)]
    return "\n".join("      " + line for line in lines)


def report(module: str, result: Result) -> float:
    scored = result.killed + len(result.survived)
    percent = 100.0 * result.killed / scored if scored else 100.0
    for line, operator, diff in result.survived:
        print(f"  survived: {module}:{line} {operator}")
        print(_changed_lines(diff))
    for e in result.stale_equivalents:
        print(f"  listed as equivalent but no longer surviving: {e.operator} | {e.line}")
    counts = Counter(op for _, op, _ in result.survived)
    if counts:
        print("  survivors by operator: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(
        f"{module}: killed {result.killed}, survived {len(result.survived)}, "
        f"equivalent {result.equivalent}: {percent:.1f}% killed"
    )
    return percent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="e.g. gridreg/store/sqlite.py")
    parser.add_argument("--list", action="store_true", help="list configured modules and tests")
    parser.add_argument("--all", action="store_true", help="every configured module, in turn")
    parser.add_argument("--tests", nargs="+", help="trial modules to run instead of MODULES'")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per mutant")
    parser.add_argument(
        "--all-operators",
        action="store_true",
        help="cosmic-ray's full operator set, not the curated one",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    parser.add_argument("--fail-under", type=float, help="exit 1 if a module scores lower")
    args = parser.parse_args(argv)
    if args.list:
        for module, tests in MODULES.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    modules = list(MODULES) if args.all else args.modules
    if not modules:
        parser.error("name a module, or --all or --list")
    os.nice(10)
    status = 0
    for module in modules:
        module = os.path.relpath(os.path.abspath(module), ROOT)
        tests = args.tests or MODULES.get(module)
        if not tests:
            parser.error(f"{module}: not in MODULES; name its tests with --tests")
        result = mutate(module, tests, args.timeout, args.all_operators, args.keep)
        percent = report(module, result)
        if args.fail_under is not None and percent < args.fail_under:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
