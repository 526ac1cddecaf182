# -*- test-case-name: tests.test_ice_classes -*-
"""
Tests for L{gridreg.ice.classes}: class graphs IcePy sent (compact and
sliced format) decode to the same graph, are written back byte for byte,
and what we write IcePy decodes to the same graph; unknown derived types
slice off to a known base; malformed graphs raise L{MarshalError}.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import attrs
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from gridreg.ice.classes import (
    COMPACT,
    INT,
    SLICED,
    STRING,
    ClassRef,
    Members,
    DictOf,
    SeqOf,
    Value,
    ValueReader,
    ValueWriter,
    register,
)
from gridreg.ice.encoding import InputStream, MarshalError, OutputStream
from tests._ice_values import dump, icepy_available, icepy_decode, vector


@register
@attrs.define(eq=False)
class Node(Value):
    ice_id = "::GridregTest::Node"
    ice_members: ClassVar[Members] = (("name", STRING), ("next", ClassRef()))
    name: str = ""
    next: Any = None


@register
@attrs.define(eq=False)
class Base(Value):
    ice_id = "::GridregTest::Base"
    ice_members: ClassVar[Members] = (("n", INT),)
    n: int = 0


@register
@attrs.define(eq=False)
class WithCompact(Base):
    ice_id = "::GridregTest::WithCompact"
    ice_compact_id = 7
    ice_members: ClassVar[Members] = (("c", STRING),)
    c: str = ""


@register
@attrs.define(eq=False)
class Box(Value):
    ice_id = "::GridregTest::Box"
    ice_members: ClassVar[Members] = (
        ("seq", SeqOf(ClassRef(Node))),
        ("dict", DictOf(STRING, ClassRef(Node))),
        ("b", ClassRef(Base)),
        ("b2", ClassRef(Base)),
    )
    seq: list[Any] = attrs.Factory(list)
    dict: dict[str, Any] = attrs.Factory(dict)
    b: Any = None
    b2: Any = None


#: Vectors whose graphs the Python side knows entirely.
KNOWN = ["box_shared_cycle", "box_null", "box_compact_id"]
FORMATS = [COMPACT, SLICED]


def decode(payload: bytes) -> Any:
    inp = InputStream(payload)
    reader = ValueReader(inp)
    value = reader.read_value()
    reader.read_pending()
    if not inp.at_end():
        raise MarshalError(f"{inp.remaining} bytes left over")
    return value


def encode(value: Any, format: str) -> bytes:
    out = OutputStream()
    writer = ValueWriter(out, format)
    writer.write_value(value)
    writer.write_pending()
    return out.getvalue()


class DecodeTests(SynchronousTestCase):
    """What IcePy sent decodes to the graph it sent."""

    def test_known_graphs(self) -> None:
        for name in KNOWN:
            for fmt in FORMATS:
                v = vector(f"{name}_{fmt}")
                self.assertEqual(dump(decode(bytes.fromhex(v["hex"]))), v["value"], (name, fmt))

    def test_shared_and_cyclic(self) -> None:
        for fmt in FORMATS:
            box = decode(bytes.fromhex(vector(f"box_shared_cycle_{fmt}")["hex"]))
            a, b, none, loop = box.seq
            self.assertIs(a.next, b)
            self.assertIs(b.next, a)
            self.assertIsNone(none)
            self.assertIs(loop.next, loop)
            self.assertIs(box.dict["x"], b)
            self.assertIs(box.b, box.b2)

    def test_unknown_derived_sliced(self) -> None:
        """
        A MoreDerived (unknown here) in the sliced format becomes its known
        base, Base; its tagged members and the instances its skipped slices
        refer to are read past, keeping the instance ids in step (b2 is a
        back reference after them).
        """
        for name in ("box_unknown_derived", "box_unknown_derived_unset"):
            v = vector(f"{name}_sliced")
            box = decode(bytes.fromhex(v["hex"]))
            self.assertIsInstance(box.b, Base)
            self.assertEqual(box.b.n, v["value"]["b"]["n"])
        box = decode(bytes.fromhex(vector("box_unknown_derived_sliced")["hex"]))
        self.assertEqual(box.b2.n, 7)

    def test_unknown_derived_compact(self) -> None:
        """In the compact format an unknown type cannot be skipped: a clear error."""
        v = vector("box_unknown_derived_compact")
        e = self.assertRaises(MarshalError, decode, bytes.fromhex(v["hex"]))
        self.assertIn("::GridregTest::MoreDerived", str(e))
        self.assertIn("compact format", str(e))


class EncodeTests(SynchronousTestCase):
    """We write what IcePy writes."""

    def test_same_bytes(self) -> None:
        for name in KNOWN:
            for fmt in FORMATS:
                v = vector(f"{name}_{fmt}")
                payload = bytes.fromhex(v["hex"])
                self.assertEqual(encode(decode(payload), fmt).hex(), v["hex"], (name, fmt))

    def test_type_check(self) -> None:
        self.assertRaises(MarshalError, encode, Box(b=Node()), COMPACT)

    def test_icepy_decodes_ours(self) -> None:
        if not icepy_available():
            raise SkipTest("no IcePy under /usr/bin/python3")
        cases = []
        for name in KNOWN + ["box_unknown_derived"]:
            v = vector(f"{name}_sliced")
            cases.append((v, decode(bytes.fromhex(v["hex"]))))
        payloads = [("get", encode(value, fmt)) for _, value in cases for fmt in FORMATS]
        results = icepy_decode(payloads)
        for i, result in enumerate(results):
            self.assertEqual(result, {"value": dump(cases[i // 2][1])})


class MalformedTests(SynchronousTestCase):
    """Bad input raises MarshalError, and only that."""

    def test_truncated(self) -> None:
        for name in KNOWN + ["box_unknown_derived"]:
            for fmt in FORMATS:
                payload = bytes.fromhex(vector(f"{name}_{fmt}")["hex"])
                for end in range(len(payload)):
                    self.assertRaises(MarshalError, decode, payload[:end])

    def test_flipped_bytes(self) -> None:
        """Any single corrupted byte gives a graph or a MarshalError, nothing else."""
        for fmt in FORMATS:
            payload = bytes.fromhex(vector(f"box_shared_cycle_{fmt}")["hex"])
            for i in range(len(payload)):
                for bad in (0x00, 0x01, 0x03, 0x7F, 0xFF):
                    data = bytearray(payload)
                    data[i] = bad
                    try:
                        decode(bytes(data))
                    except MarshalError:
                        pass

    def test_messages(self) -> None:
        cases = {
            "09": "reference to unknown class instance id 9",
            "01 22 05": "unknown type id index 5",
            "01 20": "without a type id",
            "01 21 133a3a47726964726567546573743a3a42617365 07000000 00": "left over",
        }
        for data, message in cases.items():
            e = self.assertRaises(MarshalError, decode, bytes.fromhex(data.replace(" ", "")))
            self.assertIn(message, str(e))

    def test_deep_nesting(self) -> None:
        node = Node("0")
        for i in range(200):
            node = Node(str(i), node)
        self.assertRaises(MarshalError, encode, node, COMPACT)
        payload = bytes.fromhex(
            "0121133a3a47726964726567546573743a3a4e6f64650130" + "0122010130" * 200
        )
        e = self.assertRaises(MarshalError, decode, payload)
        self.assertIn("deeper", str(e))

    def test_unresolved_copy(self) -> None:
        """A graph decoded once can be copied and written again (no patches left)."""
        box = decode(bytes.fromhex(vector("box_shared_cycle_sliced")["hex"]))
        self.assertEqual(dump(copy.deepcopy(box)), dump(box))
