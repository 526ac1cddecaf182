"""
The binary snapshot format: what the master writes, the slave reads back
exactly, from pieces of any size; damaged or truncated input is refused
with a message that says so.
"""

from __future__ import annotations

import gc
import json
import struct
import zlib

from twisted.trial.unittest import SynchronousTestCase

from gridreg.store.snapshot_codec import (
    MAGIC,
    Row,
    SnapshotDecoder,
    SnapshotEncoder,
    SnapshotFormatError,
    SnapshotInfo,
)

ROWS: list[Row] = [
    ("adapter", "A", json.dumps({"proxy": "AAEC", "replica_group": ""})),
    ("object", json.dumps(["cat", "n\u00e9e\x00"]), json.dumps({"proxy": "AQ==", "type": "::X"})),
    ("application", "App", json.dumps({"xml": "<icegrid/>" * 1000})),
    ("replica", "Replica1", json.dumps({"client": "tcp -p 1"})),
    ("meta", "epochs", json.dumps({"history": [[1, "a"]]})),
]


def encode(rows: list[list[Row]], serial: int = 7, base: int = 5) -> bytes:
    encoder = SnapshotEncoder("db-1", base)
    return b"".join([encoder.header(), *(encoder.block(b) for b in rows), encoder.trailer(serial)])


def decode(data: bytes, piece: int) -> tuple[list[Row], SnapshotInfo]:
    decoder = SnapshotDecoder()
    rows: list[Row] = []
    for i in range(0, len(data), piece):
        rows.extend(decoder.feed(data[i : i + piece]))
    return rows, decoder.finish()


class RoundTripTests(SynchronousTestCase):
    def test_records_come_back_in_order_whatever_the_piece_size(self) -> None:
        rows = ROWS + [("object", "gone", None)]
        data = encode([rows[:2], rows[2:]])
        for piece in (1, 7, 100, len(data)):
            decoded, info = decode(data, piece)
            self.assertEqual(decoded, rows, f"pieces of {piece} bytes")
            self.assertEqual(info, SnapshotInfo("db-1", 5, 7, len(rows)))

    def test_an_empty_database(self) -> None:
        decoded, info = decode(encode([[]], serial=0, base=0), 3)
        self.assertEqual((decoded, info.records, info.serial), ([], 0, 0))

    def test_many_alike_records_are_compact(self) -> None:
        rows = [
            (
                "object",
                json.dumps(["sync", f"obj{i}"]),
                json.dumps({"proxy": "A" * 60, "type": "::T"}),
            )
            for i in range(2000)
        ]
        data = encode([rows[i : i + 500] for i in range(0, 2000, 500)])
        as_json = len(json.dumps(rows))
        self.assertLess(len(data), as_json / 5)
        self.assertEqual(decode(data, 60_000)[0], rows)

    def test_a_block_of_puts_of_one_kind_comes_as_columns(self) -> None:
        """What a loader takes without a loop per record: the kind, keys and values."""
        puts = [
            ("object", json.dumps(["c", f"o{i}"]), '{"proxy":"AQ==","type":"::T"}')
            for i in range(3)
        ]
        mixed = [puts[0], ("object", "gone", None), ROWS[1]]
        decoder = SnapshotDecoder()
        blocks = decoder.feed_blocks(encode([puts, mixed, ROWS[1:2]]))
        self.assertEqual([b.rows for b in blocks], [puts, mixed, ROWS[1:2]])
        self.assertEqual(
            [(b.kind, list(b.keys), list(b.values)) for b in blocks],
            [
                ("object", [k for _, k, _ in puts], [v for _, _, v in puts]),
                (None, [], []),
                ("object", [ROWS[1][1]], [ROWS[1][2]]),
            ],
        )

    def test_columns_waiting_for_the_store_are_out_of_the_collectors_walks(self) -> None:
        """
        A block's keys and values (a fresh slave holds a whole snapshot's
        of them until its store takes them) are not walked by the garbage
        collector once it has passed over them.
        """
        puts = [("object", f"k{i}", f'{{"proxy":"{i}"}}') for i in range(100)]
        [block] = SnapshotDecoder().feed_blocks(encode([puts]))
        gc.collect()
        self.assertFalse(gc.is_tracked(block.keys))
        self.assertFalse(gc.is_tracked(block.values))

    def test_a_page_of_puts_is_laid_out_as_every_block(self) -> None:
        """
        The master's pages are encoded from their joined columns when every
        key and value is ASCII, record by record otherwise (UTF-8 lengths
        are not the strings'): the layout is the module's either way.
        """
        ascii_page = [
            (json.dumps(["c", f"o{i}"]), '{"proxy":"AQ==","type":"::T"}') for i in range(5)
        ]
        other_page = ascii_page[:2] + [(json.dumps(["c", "n\u00e9e"]), '{"type":"\u00c9t\u00e9"}')]
        for page in (ascii_page, other_page):
            block = SnapshotEncoder("db-1", 5).puts("object", page)
            count, _, size, crc = struct.unpack_from("<IIII", block, 1)
            body = zlib.decompress(block[17:])
            keys = [key.encode("utf-8") for key, _ in page]
            values = [value.encode("utf-8") for _, value in page]
            expected = b"".join(
                (
                    bytes([0x12]) * len(page),  # put, object
                    struct.pack(f"<{len(page)}I", *map(len, keys)),
                    struct.pack(f"<{len(page)}I", *map(len, values)),
                    *keys,
                    *values,
                )
            )
            self.assertEqual(
                (count, size, body, crc), (len(page), len(body), expected, zlib.crc32(expected))
            )
        self.assertEqual(SnapshotEncoder("db-1", 5).puts("object", []), b"")


class DamagedInputTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = encode([ROWS])

    def assert_refused(self, data: bytes, message: str) -> None:
        decoder = SnapshotDecoder()
        with self.assertRaises(SnapshotFormatError) as caught:
            decoder.feed(data)
            decoder.finish()
        self.assertIn(message, str(caught.exception))

    def test_truncated_anywhere_is_refused_at_the_end(self) -> None:
        for cut in (0, 3, len(MAGIC) + 2, 30, len(self.data) // 2, len(self.data) - 1):
            self.assert_refused(self.data[:cut], "truncated snapshot")

    def test_a_flipped_byte_in_a_block_is_caught(self) -> None:
        header = len(SnapshotEncoder("db-1", 5).header())
        for offset in (header + 21, header + 40, len(self.data) - 30):
            damaged = bytearray(self.data)
            damaged[offset] ^= 0x40
            self.assert_refused(bytes(damaged), "corrupt snapshot")

    def test_another_format_or_version_is_named(self) -> None:
        self.assert_refused(b'{"database_id": "x"}', "not a gridreg snapshot")
        newer = MAGIC + struct.pack("<H", 2) + self.data[len(MAGIC) + 2 :]
        self.assert_refused(newer, "snapshot format version 2")

    def test_a_wrong_record_count_is_caught(self) -> None:
        damaged = self.data[:-16] + struct.pack("<QQ", len(ROWS) + 1, 7)
        self.assert_refused(damaged, "counts 6 records, 5 were read")

    def test_bytes_after_the_end_are_refused(self) -> None:
        self.assert_refused(self.data + b"B", "bytes after its end")

    def test_an_absurd_block_size_is_refused_before_buffering_it(self) -> None:
        decoder = SnapshotDecoder(max_block_bytes=1000)
        header = SnapshotEncoder("db-1", 5).header()
        with self.assertRaises(SnapshotFormatError):
            decoder.feed(header + struct.pack("<cIIII", b"B", 1, 10, 10**6, 0))
