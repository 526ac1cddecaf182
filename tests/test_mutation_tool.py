"""
Tests for C{bench/mutation.py}'s configuration: that a rerun finds every
module, test module and equivalent it names (the run itself is too slow
for the suite).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from bench import mutation


class ConfigurationTests(SynchronousTestCase):
    def test_modules_and_tests_exist(self) -> None:
        for module, tests in mutation.MODULES.items():
            self.assertTrue((mutation.ROOT / module).is_file(), module)
            for name in tests:
                importlib.import_module(name)

    def test_equivalents_name_real_lines(self) -> None:
        """Every listed equivalent names a configured module and one of its source lines."""
        equivalents = mutation.read_equivalents()
        self.assertNotEqual(equivalents, [])
        for e in equivalents:
            self.assertIn(e.module, mutation.MODULES)
            text = (mutation.ROOT / e.module).read_text()
            line = e.line
            if line.startswith("["):
                function, _, line = line[1:].partition("] ")
                self.assertIn(function, mutation.enclosing_functions(text).values())
            self.assertIn(line, [line.strip() for line in text.splitlines()], e)
            self.assertTrue(e.operator.startswith(("core/", "gridreg/")), e.operator)

    def test_malformed_equivalent_refused(self) -> None:
        path = Path(self.mktemp())
        path.write_text("# comment\n\ngridreg/x.py | core/AddNot | if x: | reason\n")
        with self.assertRaises(SystemExit) as raised:
            mutation.read_equivalents(path)
        self.assertIn(":3:", str(raised.exception))

    def test_curated_operators(self) -> None:
        """The natural counterpart of each operator is kept; the rest of the cross product not."""
        self.assertTrue(mutation.operator_kept("core/ReplaceBinaryOperator_Add_Sub"))
        self.assertFalse(mutation.operator_kept("core/ReplaceBinaryOperator_Add_Pow"))
        self.assertTrue(mutation.operator_kept("core/ReplaceComparisonOperator_Lt_LtE"))
        self.assertFalse(mutation.operator_kept("core/ReplaceComparisonOperator_Lt_Is"))
        self.assertTrue(mutation.operator_kept("core/NumberReplacer"))
        self.assertTrue(mutation.operator_kept("core/AddNot"))

    def test_annotations_only_with_future_import(self) -> None:
        """Mutants in annotations are skipped only where annotations are never evaluated."""
        source = "def f(x: int | None) -> int | None:\n    return x | 1\n"
        self.assertEqual(mutation.annotation_spans(source), [])
        spans = mutation.annotation_spans("from __future__ import annotations\n" + source)
        self.assertTrue(mutation.in_spans((2, 13), spans))  # the first "|"
        self.assertTrue(mutation.in_spans((2, 28), spans))  # the return annotation's
        self.assertFalse(mutation.in_spans((3, 13), spans))  # "x | 1" in the body

    def test_equivalent_matching(self) -> None:
        any_number = mutation.Equivalent("m.py", "core/NumberReplacer", "x = 0", "*", "why")
        self.assertTrue(any_number.matches("core/NumberReplacer", "x = 0", "x = 1", "f"))
        self.assertFalse(any_number.matches("core/AddNot", "x = 0", "x = 1", "f"))
        one = mutation.Equivalent("m.py", "core/NumberReplacer", "x = 0", "x = -1", "why")
        self.assertTrue(one.matches("core/NumberReplacer", "x = 0", "x = -1", "f"))
        self.assertFalse(one.matches("core/NumberReplacer", "x = 0", "x = 1", "f"))
        in_g = mutation.Equivalent("m.py", "core/AddNot", "[g] if x:", "*", "why")
        self.assertTrue(in_g.matches("core/AddNot", "if x:", "if not x:", "g"))
        self.assertFalse(in_g.matches("core/AddNot", "if x:", "if not x:", "f"))
        source = "def f():\n    def g():\n        pass\n    return g\n"
        self.assertEqual(mutation.enclosing_functions(source), {1: "f", 2: "g", 3: "g", 4: "f"})
        diff = "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 0\n+    x = -1\n"
        self.assertEqual(mutation.mutated_line(diff), "x = -1")


class OperatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        try:
            from cosmic_ray.mutating import MutationVisitor
        except ImportError:
            raise SkipTest("cosmic-ray is not installed (pip install -e .[dev])")
        from bench import _mutation_operators

        self.visitor = MutationVisitor
        self.operators = _mutation_operators

    def mutants(self, operator: type, source: str) -> list[str]:
        result = []
        while True:
            mutated = self.visitor.mutate_code(source, operator(), len(result))
            if mutated is None:
                return result
            result.append(mutated)

    def test_examples(self) -> None:
        for operator in (self.operators.DeleteStatement, self.operators.ReturnNone):
            for example in operator.examples():
                mutated = self.visitor.mutate_code(
                    example.pre_mutation_code, operator(), example.occurrence
                )
                self.assertEqual(mutated, example.post_mutation_code)

    def test_delete_statement_only_in_blocks_of_functions(self) -> None:
        source = (
            "X = 1\n"
            "def f(d):\n"
            '    """doc"""\n'
            "    y = 2\n"
            "    if d:\n"
            "        d.pop(1)  # why\n"
            "        return y\n"
            "    try:\n"
            "        del d[0]\n"
            "    except KeyError:\n"
            "        raise ValueError()\n"
            "class C:\n"
            "    if X:\n"
            "        z = 3\n"
        )
        mutants = self.mutants(self.operators.DeleteStatement, source)
        self.assertEqual(len(mutants), 3)
        self.assertIn("        pass  # why\n", mutants[0])
        self.assertIn("    try:\n        pass\n", mutants[1])
        self.assertIn("    except KeyError:\n        pass\n", mutants[2])

    def test_return_none(self) -> None:
        source = "def f(x):\n    if x:\n        return\n    return None if x else x\n"
        mutants = self.mutants(self.operators.ReturnNone, source)
        self.assertEqual(mutants, ["def f(x):\n    if x:\n        return\n    return None\n"])
