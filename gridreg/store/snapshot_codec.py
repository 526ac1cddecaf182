# -*- test-case-name: tests.test_snapshot_codec -*-
"""
A whole database as a compact binary stream: what a fresh slave is sent.

JSON made the master build, and the slave parse, one document as large as
the database; this format is written and read a block of records at a
time, so both ends hold one block (plus what is in transit) and the work
can run in a thread. Values stay the JSON text the store keeps, so neither
end parses them to pass them on.

Layout (integers little-endian)::

    header   MAGIC, u16 version, u16 + UTF-8 database id, u64 base serial
    block    b"B", u32 count, u32 stored length, u32 body length,
             u32 CRC-32 of the body, the body compressed with zlib
    trailer  b"E", u64 records, u64 final serial

Blocks are compressed because the records of a grid are alike (the same
types, endpoints and JSON keys over and over): about twenty times fewer
bytes to encrypt, frame and acknowledge, for a fraction of a microsecond
per record on either end. A block's body holds C{count} operation bytes (high nibble: put or delete,
low nibble: the kind), C{count} u32 key lengths, C{count} u32 value
lengths, the keys and then the values (UTF-8). Records are applied in
order, so a block of deletes and puts after the base records brings the
database from the base serial to the final one (the master's catch-up of
the changes it committed while the snapshot was read). The SHA-256 of the
whole stream is checked by the chunked channel that carries it.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate, pairwise, repeat
from typing import Optional

import attrs

#: the first bytes of every snapshot; the CR LF catches a text-mode copy
MAGIC = b"GRSNAP\r\n"
#: the layout this module writes and reads
VERSION = 1

PUT = 1
DELETE = 2
#: kind codes on the wire (the low nibble of an operation byte)
KIND_CODES = {"adapter": 1, "object": 2, "application": 3, "replica": 4, "meta": 5}
_KINDS = {code: kind for kind, code in KIND_CODES.items()}
_OPS = {(op << 4) | code: (op, kind) for op in (PUT, DELETE) for code, kind in _KINDS.items()}

_BLOCK = struct.Struct("<cIIII")
#: zlib's fastest level: already about 20 to 1 on a grid's records
_LEVEL = 1
_TRAILER = struct.Struct("<cQQ")
#: a block larger than this is taken for corruption (a value is at most 64 MiB)
MAX_BLOCK_BYTES = 256 * 1024**2

#: one record: kind, key, and its JSON text, or None for a delete
Row = tuple[str, str, Optional[str]]

if array("I").itemsize != 4:  # pragma: no cover - every platform gridreg runs on
    raise ImportError("array('I') is not 32 bits here")
_LITTLE = struct.pack("=I", 1) == struct.pack("<I", 1)


class SnapshotFormatError(ValueError):
    """The bytes are not a complete, intact snapshot; the message says what is wrong."""


@attrs.frozen
class SnapshotInfo:
    """What a snapshot's header and trailer say."""

    database_id: str
    base_serial: int
    serial: int
    records: int


def _u32_array(values: list[int]) -> bytes:
    lengths = array("I", values)
    if not _LITTLE:  # pragma: no cover
        lengths.byteswap()
    return lengths.tobytes()


class SnapshotEncoder:
    """Writes one snapshot, piece by piece: L{header}, L{block}s, L{trailer}."""

    def __init__(self, database_id: str, base_serial: int) -> None:
        self.database_id = database_id
        self.base_serial = base_serial
        self.records = 0

    def header(self) -> bytes:
        ident = self.database_id.encode("utf-8")
        return (
            MAGIC
            + struct.pack("<HH", VERSION, len(ident))
            + ident
            + struct.pack("<Q", self.base_serial)
        )

    def block(self, rows: Iterable[Row]) -> bytes:
        """One block of records (puts, and deletes where the value is None)."""
        rows = list(rows)
        if not rows:
            return b""
        kinds, keys, values = zip(*rows)
        kind = kinds[0]
        if kinds.count(kind) == len(kinds) and None not in values:
            block = self._puts(kind, keys, values)
            if block is not None:
                return block
        ops = bytearray()
        encoded_keys: list[bytes] = []
        encoded_values: list[bytes] = []
        for kind, key, value in rows:
            code = KIND_CODES[kind]
            encoded_keys.append(key.encode("utf-8"))
            if value is None:
                ops.append((DELETE << 4) | code)
                encoded_values.append(b"")
            else:
                ops.append((PUT << 4) | code)
                encoded_values.append(value.encode("utf-8"))
        body = b"".join(
            (
                bytes(ops),
                _u32_array([len(k) for k in encoded_keys]),
                _u32_array([len(v) for v in encoded_values]),
                *encoded_keys,
                *encoded_values,
            )
        )
        return self._pack(len(ops), body)

    def puts(self, kind: str, records: Sequence[tuple[str, str]]) -> bytes:
        """One block of puts of C{kind}, from C{(key, JSON text)} pairs."""
        if not records:
            return b""
        keys, values = zip(*records)
        block = self._puts(kind, keys, values)
        if block is None:
            block = self.block([(kind, key, value) for key, value in records])
        return block

    def _puts(self, kind: str, keys: Sequence[str], values: Sequence[str]) -> Optional[bytes]:
        """
        A block of puts of one kind (a page of the store, the bulk of a
        snapshot) made from the columns joined: the same bytes as record
        by record, in half the time. None unless every key and value is
        ASCII (a character a byte, so the lengths are the strings').
        """
        key_text, value_text = "".join(keys), "".join(values)
        key_bytes, value_bytes = key_text.encode("utf-8"), value_text.encode("utf-8")
        if len(key_bytes) != len(key_text) or len(value_bytes) != len(value_text):
            return None
        count = len(keys)
        body = b"".join(
            (
                bytes([(PUT << 4) | KIND_CODES[kind]]) * count,
                _u32_array(list(map(len, keys))),
                _u32_array(list(map(len, values))),
                key_bytes,
                value_bytes,
            )
        )
        return self._pack(count, body)

    def _pack(self, count: int, body: bytes) -> bytes:
        self.records += count
        stored = zlib.compress(body, _LEVEL)
        return _BLOCK.pack(b"B", count, len(stored), len(body), zlib.crc32(body)) + stored

    def trailer(self, serial: int) -> bytes:
        """The end, naming the serial the records bring the database to."""
        return _TRAILER.pack(b"E", self.records, serial)


class SnapshotDecoder:
    """
    Reads one snapshot from pieces of any size: L{feed} returns the records
    completed so far, L{finish} checks that the snapshot ended.

    @raise SnapshotFormatError: from either, as soon as the bytes cannot be
        a snapshot (bad magic, unknown version, a damaged block, bytes after
        the end), and from L{finish} when it is truncated.
    """

    def __init__(self, max_block_bytes: int = MAX_BLOCK_BYTES) -> None:
        self.max_block_bytes = max_block_bytes
        self._buffer = bytearray()
        self.database_id: Optional[str] = None
        self.base_serial = -1
        self.records = 0
        self.info: Optional[SnapshotInfo] = None

    def feed(self, data: bytes) -> list[Row]:
        return [row for block in self.feed_blocks(data) for row in block.rows]

    def feed_blocks(self, data: bytes) -> list["Block"]:
        """L{feed}, block by block (see L{Block})."""
        if self.info is not None and data:
            raise SnapshotFormatError("corrupt snapshot: bytes after its end")
        self._buffer += data
        blocks: list[Block] = []
        if self.database_id is None and not self._read_header():
            return blocks
        while self.info is None:
            block = self._next_block()
            if block is None:
                break
            if len(block):
                blocks.append(block)
        if self.info is not None and self._buffer:
            raise SnapshotFormatError("corrupt snapshot: bytes after its end")
        return blocks

    def finish(self) -> SnapshotInfo:
        """The snapshot's description, once it was read to its end."""
        if self.info is None:
            where = "in its header" if self.database_id is None else "before its end"
            raise SnapshotFormatError(f"truncated snapshot: it stops {where}")
        return self.info

    def _read_header(self) -> bool:
        buf = self._buffer
        if len(buf) < len(MAGIC) + 4:
            if not MAGIC.startswith(bytes(buf[: len(MAGIC)])):
                raise SnapshotFormatError("not a gridreg snapshot (bad magic)")
            return False
        if bytes(buf[: len(MAGIC)]) != MAGIC:
            raise SnapshotFormatError("not a gridreg snapshot (bad magic)")
        version, ident_len = struct.unpack_from("<HH", buf, len(MAGIC))
        if version != VERSION:
            raise SnapshotFormatError(
                f"snapshot format version {version} is not the one this gridreg reads ({VERSION})"
            )
        end = len(MAGIC) + 4 + ident_len + 8
        if len(buf) < end:
            return False
        try:
            self.database_id = bytes(buf[len(MAGIC) + 4 : end - 8]).decode("utf-8")
        except UnicodeDecodeError:
            raise SnapshotFormatError("corrupt snapshot: the database id is not UTF-8") from None
        (self.base_serial,) = struct.unpack_from("<Q", buf, end - 8)
        del buf[:end]
        return True

    def _next_block(self) -> Optional["Block"]:
        buf = self._buffer
        if not buf:
            return None
        tag = buf[0:1]
        if tag == b"E":
            if len(buf) < _TRAILER.size:
                return None
            _, count, serial = _TRAILER.unpack_from(buf)
            if count != self.records:
                raise SnapshotFormatError(
                    f"corrupt snapshot: its end counts {count} records, {self.records} were read"
                )
            assert self.database_id is not None
            self.info = SnapshotInfo(self.database_id, self.base_serial, serial, count)
            del buf[: _TRAILER.size]
            return Block([])
        if tag != b"B":
            raise SnapshotFormatError(f"corrupt snapshot: unknown section {bytes(tag)!r}")
        if len(buf) < _BLOCK.size:
            return None
        _, count, stored, size, crc = _BLOCK.unpack_from(buf)
        if size > self.max_block_bytes or stored > self.max_block_bytes or count * 9 > size:
            raise SnapshotFormatError(
                f"corrupt snapshot: a block of {count} records in {size} bytes"
            )
        end = _BLOCK.size + stored
        if len(buf) < end:
            return None
        inflate = zlib.decompressobj()
        try:
            with memoryview(buf) as view:
                # never more than announced, whatever the compressed bytes say
                body = inflate.decompress(view[_BLOCK.size : end], size)
        except zlib.error as e:
            raise SnapshotFormatError(f"corrupt snapshot: a block does not inflate: {e}") from None
        del buf[:end]
        if len(body) != size or not inflate.eof or inflate.unconsumed_tail:
            raise SnapshotFormatError("corrupt snapshot: a block is not of its announced size")
        if zlib.crc32(body) != crc:
            raise SnapshotFormatError("corrupt snapshot: a block does not match its CRC-32")
        block = _decode_block(body, count)
        self.records += count
        return block


class Block:
    """
    One decoded block: its records in order, and, for a block of puts of
    one kind (the bulk of a snapshot), that kind with the keys and values
    as columns, so a loader can take them without a loop per record (the
    rows of such a block are made only if asked for).
    """

    __slots__ = ("_rows", "kind", "keys", "values")

    def __init__(
        self,
        rows: Optional[list[Row]],
        kind: Optional[str] = None,
        keys: Sequence[str] = (),
        values: Sequence[str] = (),
    ) -> None:
        self._rows = rows
        #: the kind of every record of a block of puts only, else None
        self.kind = kind
        self.keys = keys
        self.values = values

    @property
    def rows(self) -> list[Row]:
        if self._rows is None:
            assert self.kind is not None
            self._rows = list(zip(repeat(self.kind), self.keys, self.values))
        return self._rows

    def __len__(self) -> int:
        return len(self.keys) if self._rows is None else len(self._rows)


def _decode_block(body: bytes, count: int) -> Block:
    lengths = array("I")
    lengths.frombytes(body[count : count + 8 * count])
    if not _LITTLE:  # pragma: no cover
        lengths.byteswap()
    start = 9 * count
    ends = list(accumulate(lengths, initial=0))
    if start + ends[-1] != len(body):
        raise SnapshotFormatError("corrupt snapshot: a block's lengths do not add up")
    try:
        ops = [_OPS[op] for op in set(body[:count])]
    except KeyError as e:
        raise SnapshotFormatError(f"corrupt snapshot: unknown operation {e.args[0]:#x}") from None
    try:
        text = body[start:].decode("utf-8")
    except UnicodeDecodeError:
        raise SnapshotFormatError("corrupt snapshot: a key or value is not UTF-8") from None
    if len(text) == len(body) - start:
        # ASCII (values always are, keys mostly): byte offsets are character offsets
        strings = [text[a:b] for a, b in pairwise(ends)]
    else:
        try:
            strings = [body[start + a : start + b].decode("utf-8") for a, b in pairwise(ends)]
        except UnicodeDecodeError:
            raise SnapshotFormatError("corrupt snapshot: a key or value is not UTF-8") from None
    # tuples: holding only strings, the collector stops tracking them at its first
    # pass, and never walks them again while they wait for the store
    keys, values = tuple(strings[:count]), tuple(strings[count:])
    if len(ops) == 1:
        op, kind = ops[0]
        if op == PUT:
            return Block(None, kind, keys, values)
        return Block(list(zip(repeat(kind), keys, repeat(None))))
    rows: list[Row] = [
        (kind, key, value if op == PUT else None)
        for (op, kind), key, value in zip(map(_OPS.__getitem__, body[:count]), keys, values)
    ]
    return Block(rows)
