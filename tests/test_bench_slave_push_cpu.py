"""bench.slave_push_cpu: pushes in the master's form, each applied and answered."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench import slave_push_cpu
from gridreg.registry.pushed_changes import decode_changes


class SlavePushCpuTests(SynchronousTestCase):
    def test_the_pushes_are_the_masters_form_with_consecutive_serials(self) -> None:
        boxes = slave_push_cpu.push_boxes("db", 3)
        self.assertEqual(len(boxes), 3)
        for serial, data in enumerate(boxes, 1):
            self.assertIn(b"PushChanges", data)
            start = data.index(b'[{"serial":')
            end = data.index(b"]}]", start) + 3
            changes = decode_changes(data[start:end].decode())
            self.assertEqual([c.serial for c in changes], [serial])
            self.assertIsNotNone(changes[0].text)  # walked as the master's form

    def test_a_run_applies_and_answers_every_push(self) -> None:
        self.assertGreater(slave_push_cpu.one_run(20), 0)
