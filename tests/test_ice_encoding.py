# -*- test-case-name: tests.test_ice_encoding -*-
"""
Tests for L{gridreg.ice.encoding}: the wire forms of sizes, strings,
enums, proxies and endpoints, and that every malformed input is reported
as L{MarshalError} without reading past the data or allocating for sizes
the data cannot hold.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice import encoding as ice_encoding
from gridreg.ice.encoding import InputStream, MarshalError, OutputStream, encaps
from gridreg.ice.types import (
    ENCODING_1_0,
    ENCODING_1_1,
    Identity,
    OpaqueEndpoint,
    Proxy,
    ProxyMode,
    SslEndpoint,
    TcpEndpoint,
    UdpEndpoint,
    Version,
    WsEndpoint,
    WssEndpoint,
)

# From ice-protocol.md §6 (vectors 07, 36, 10).
TCP_24081 = TcpEndpoint("127.0.0.1", 24081, 60000, False)
DUMMY_1_1_HEX = (
    "0564756d6d79 00 00 0000 0100 0101 01"
    "0100 19000000 0101 093132372e302e302e31 115e0000 60ea0000 00"
)
DUMMY_1_0_HEX = (
    "0564756d6d79 00 00 0000 010100 19000000 0100 093132372e302e302e31 115e0000 60ea0000 00"
)
INDIRECT_HEX = "0568656c6c6f 00 00 0000 0100 0101 00 0c48656c6c6f41646170746572"

EXOTIC = Proxy(
    identity=Identity("we/ird", "cat"),
    facet="fac",
    mode=ProxyMode.ONEWAY,
    secure=True,
    endpoints=(
        TcpEndpoint("127.0.0.1", 1, 2500, True),
        UdpEndpoint("239.1.2.3", 2),
        WsEndpoint("h", 3, 60000, False, "/res"),
        SslEndpoint("127.0.0.1", 1, -1),
        WssEndpoint("w", 4, 5, True, "/x"),
        OpaqueEndpoint(99, ENCODING_1_0, b"\x01\x02\x03"),
    ),
)


def write(encoding: Version = ENCODING_1_1, **calls: object) -> bytes:
    """Call one writer, e.g. C{write(string="x")}, and return the bytes."""
    out = OutputStream(encoding)
    for name, value in calls.items():
        getattr(out, "write_" + name)(value)
    return out.getvalue()


def inp(hex_data: str, encoding: Version = ENCODING_1_1) -> InputStream:
    return InputStream(bytes.fromhex(hex_data), encoding)


class HexTestCase(SynchronousTestCase):
    def assertHex(self, data: bytes, expected: str, msg: object = None) -> None:
        """Compare C{data} with hex text in which spaces only separate fields."""
        self.assertEqual(data.hex(), expected.replace(" ", ""), msg)


class SizeTests(HexTestCase):
    def test_small_sizes_are_one_byte(self) -> None:
        """Sizes below 255 take a single byte, 254 included."""
        self.assertEqual(write(size=0), b"\x00")
        self.assertEqual(write(size=254), b"\xfe")
        self.assertEqual(inp("fe").read_size(), 254)

    def test_255_and_above_use_ff_and_int(self) -> None:
        """255 is the first size written as C{FF} plus an int32."""
        self.assertHex(write(size=255), "ffff000000")
        self.assertHex(write(size=300), "ff2c010000")
        self.assertEqual(inp("ffff000000").read_size(), 255)
        self.assertEqual(inp("ff2c010000").read_size(), 300)

    def test_negative_size_rejected(self) -> None:
        self.assertRaises(MarshalError, inp("ffffffffff").read_size)
        self.assertRaises(MarshalError, OutputStream().write_size, -1)

    def test_truncated_size(self) -> None:
        self.assertRaises(MarshalError, inp("").read_size)
        self.assertRaises(MarshalError, inp("ff2c01").read_size)

    def test_count_larger_than_remaining_data(self) -> None:
        """
        A sequence count that the remaining bytes cannot hold is rejected
        before any element is read (no allocation from garbage sizes).
        """
        self.assertRaises(MarshalError, inp("ffffffff7f").read_string_seq)
        self.assertRaises(MarshalError, inp("0500000000").read_string_seq)
        self.assertRaises(MarshalError, inp("03 00 00 00 00").read_string_dict)
        self.assertRaises(MarshalError, inp("ff00000010 0000").read_proxy_seq)


class PrimitiveTests(HexTestCase):
    def test_round_trip(self) -> None:
        """Every primitive reads back as written, little-endian."""
        out = OutputStream()
        out.write_byte(0xFE)
        out.write_bool(True)
        out.write_bool(False)
        out.write_short(-2)
        out.write_int(24081)
        out.write_long(-(2**40))
        out.write_float(1.5)
        out.write_double(-0.25)
        data = out.getvalue()
        self.assertHex(data[:5], "fe0100feff")
        self.assertHex(data[5:9], "115e0000")
        stream = InputStream(data)
        self.assertEqual(stream.read_byte(), 0xFE)
        self.assertIs(stream.read_bool(), True)
        self.assertIs(stream.read_bool(), False)
        self.assertEqual(stream.read_short(), -2)
        self.assertEqual(stream.read_int(), 24081)
        self.assertEqual(stream.read_long(), -(2**40))
        self.assertEqual(stream.read_float(), 1.5)
        self.assertEqual(stream.read_double(), -0.25)
        self.assertTrue(stream.at_end())

    def test_out_of_range_values(self) -> None:
        out = OutputStream()
        self.assertRaises(MarshalError, out.write_byte, 256)
        self.assertRaises(MarshalError, out.write_short, 40000)
        self.assertRaises(MarshalError, out.write_int, 2**31)
        self.assertRaises(MarshalError, out.write_long, 2**63)
        self.assertEqual(out.getvalue(), b"")

    def test_truncated_primitives(self) -> None:
        for reader, hex_data in [
            ("read_byte", ""),
            ("read_bool", ""),
            ("read_short", "01"),
            ("read_int", "010203"),
            ("read_long", "01020304050607"),
            ("read_float", "000000"),
            ("read_double", "00000000000000"),
            ("read_version", "01"),
        ]:
            self.assertRaises(MarshalError, getattr(inp(hex_data), reader))

    def test_position_helpers(self) -> None:
        stream = InputStream(b"abcdef", pos=1)
        self.assertEqual(stream.remaining, 5)
        stream.skip(2)
        self.assertEqual(stream.pos, 3)
        self.assertEqual(stream.read_bytes(3), b"def")
        self.assertTrue(stream.at_end())
        self.assertRaises(MarshalError, stream.skip, 1)
        self.assertRaises(MarshalError, InputStream(b"ab").read_bytes, -1)

    def test_bytes_like_input(self) -> None:
        """Streams read from bytearray and memoryview as from bytes."""
        self.assertEqual(InputStream(bytearray(b"\x01x")).read_string(), "x")
        self.assertEqual(InputStream(memoryview(b"\x01x")).read_string(), "x")

    def test_unsupported_encoding(self) -> None:
        self.assertRaises(MarshalError, InputStream, b"", Version(2, 0))
        self.assertRaises(MarshalError, OutputStream, Version(1, 2))


class StringTests(HexTestCase):
    def test_empty_and_utf8(self) -> None:
        """The size counts UTF-8 bytes, not characters."""
        self.assertEqual(write(string=""), b"\x00")
        self.assertHex(write(string="é€"), "05c3a9e282ac")
        self.assertEqual(inp("05c3a9e282ac").read_string(), "é€")

    def test_long_string(self) -> None:
        text = "x" * 300
        data = write(string=text)
        self.assertHex(data[:5], "ff2c010000")
        self.assertEqual(InputStream(data).read_string(), text)

    def test_invalid_utf8(self) -> None:
        self.assertRaises(MarshalError, inp("02c328").read_string)

    def test_unencodable_string(self) -> None:
        self.assertRaises(MarshalError, OutputStream().write_string, "\ud800")

    def test_size_beyond_data(self) -> None:
        self.assertRaises(MarshalError, inp("0561").read_string)
        self.assertRaises(MarshalError, inp("ffffffff7f61").read_string)
        self.assertRaises(MarshalError, inp("fffeffffff").read_string)

    def test_sequences_and_dictionaries(self) -> None:
        self.assertHex(write(string_seq=["a", "bc"]), "02 0161 026263")
        self.assertEqual(inp("02 0161 026263").read_string_seq(), ["a", "bc"])
        self.assertHex(write(string_dict={"k": "v"}), "01016b0176")
        self.assertEqual(inp("01016b0176").read_string_dict(), {"k": "v"})

    def test_identity_name_first(self) -> None:
        data = write(identity=Identity("Locator", "DemoIceGrid"))
        self.assertHex(data, "074c6f6361746f72 0b44656d6f49636547726964")
        self.assertEqual(InputStream(data).read_identity(), Identity("Locator", "DemoIceGrid"))

    def test_facet(self) -> None:
        """A facet is a sequence of zero or one strings."""
        self.assertEqual(write(facet=""), b"\x00")
        self.assertHex(write(facet="fac"), "0103666163")
        self.assertEqual(inp("0103666163").read_facet(), "fac")
        self.assertEqual(inp("00").read_facet(), "")
        self.assertEqual(inp("0100").read_facet(), "")
        self.assertRaises(MarshalError, inp("0201610162").read_facet)


class EnumTests(HexTestCase):
    def test_1_1_enum_is_a_size(self) -> None:
        out = OutputStream(ENCODING_1_1)
        out.write_enum(2, 2)
        out.write_enum(300, 40000)
        self.assertHex(out.getvalue(), "02 ff2c010000")
        stream = InputStream(out.getvalue(), ENCODING_1_1)
        self.assertEqual(stream.read_enum(2), 2)
        self.assertEqual(stream.read_enum(40000), 300)

    def test_1_0_enum_width_follows_max_value(self) -> None:
        """1.0 uses a byte below 127, a short below 32767, else an int."""
        for max_value, expected in [
            (126, "05"),
            (127, "0500"),
            (32766, "0500"),
            (32767, "05000000"),
        ]:
            out = OutputStream(ENCODING_1_0)
            out.write_enum(5, max_value)
            self.assertHex(out.getvalue(), expected, max_value)
            stream = InputStream(out.getvalue(), ENCODING_1_0)
            self.assertEqual(stream.read_enum(max_value), 5)
            self.assertTrue(stream.at_end())

    def test_out_of_range(self) -> None:
        self.assertRaises(MarshalError, OutputStream().write_enum, 3, 2)
        self.assertRaises(MarshalError, OutputStream().write_enum, -1, 2)
        self.assertRaises(MarshalError, inp("03").read_enum, 2)
        self.assertRaises(MarshalError, inp("ffff", ENCODING_1_0).read_enum, 200)


class EncapsulationTests(HexTestCase):
    def test_empty(self) -> None:
        self.assertHex(encaps(ENCODING_1_1, b""), "060000000101")
        self.assertHex(encaps(ENCODING_1_0, b""), "060000000100")
        self.assertEqual(inp("060000000101").read_encaps(), (ENCODING_1_1, b""))

    def test_payload_and_position(self) -> None:
        stream = inp("0800000001000102ff")
        self.assertEqual(stream.read_encaps(), (ENCODING_1_0, b"\x01\x02"))
        self.assertEqual(stream.read_byte(), 0xFF)

    def test_write_encaps(self) -> None:
        out = OutputStream()
        out.write_encaps(ENCODING_1_0, b"ab")
        self.assertEqual(out.getvalue(), encaps(ENCODING_1_0, b"ab"))

    def test_bad_sizes(self) -> None:
        """Sizes below the header or beyond the data are rejected."""
        self.assertRaises(MarshalError, inp("050000000101").read_encaps)
        self.assertRaises(MarshalError, inp("ffffffff0101").read_encaps)
        self.assertRaises(MarshalError, inp("070000000101").read_encaps)
        self.assertRaises(MarshalError, inp("0600000001").read_encaps)

    def test_skip_tagged_members(self) -> None:
        """Tagged members of every fixed and sized format are skipped."""
        data = (
            "08 aa"  # tag 1, F1
            "11 aabb"  # tag 2, F2
            "1a aabbccdd"  # tag 3, F4
            "23 0102030405060708"  # tag 4, F8
            "2c ff2c010000"  # tag 5, Size
            "35 02aabb"  # tag 6, VSize
            "3e 02000000aabb"  # tag 7, FSize
            "f0 1e aa"  # tag 30 (size follows), F1
            "ff 99"
        )
        stream = inp(data)
        stream.skip_tagged_members()
        self.assertEqual(stream.read_byte(), 0x99)
        self.assertRaises(MarshalError, inp("07").skip_tagged_members)
        self.assertRaises(MarshalError, inp("08").skip_tagged_members)


class ProxyTests(HexTestCase):
    def test_direct_proxy_1_1(self) -> None:
        """The 1.1 layout carries protocol and encoding bytes."""
        proxy = Proxy(Identity("dummy"), endpoints=(TCP_24081,))
        self.assertHex(write(proxy=proxy), DUMMY_1_1_HEX)
        self.assertEqual(inp(DUMMY_1_1_HEX).read_proxy(), proxy)

    def test_direct_proxy_1_0(self) -> None:
        """
        The 1.0 layout has no version bytes; the endpoint encapsulation is
        1.0, and the proxy read back gets protocol and encoding 1.0.
        """
        proxy = Proxy(Identity("dummy"), endpoints=(TCP_24081,))
        self.assertHex(write(ENCODING_1_0, proxy=proxy), DUMMY_1_0_HEX)
        self.assertEqual(
            inp(DUMMY_1_0_HEX, ENCODING_1_0).read_proxy(),
            Proxy(Identity("dummy"), encoding=ENCODING_1_0, endpoints=(TCP_24081,)),
        )

    def test_indirect_and_well_known(self) -> None:
        indirect = Proxy(Identity("hello"), adapter_id="HelloAdapter")
        self.assertHex(write(proxy=indirect), INDIRECT_HEX)
        self.assertEqual(inp(INDIRECT_HEX).read_proxy(), indirect)
        well_known = Proxy(Identity("hello"))
        data = write(proxy=well_known)
        self.assertEqual(data[-2:], b"\x00\x00")  # no endpoints, empty adapter id
        self.assertTrue(InputStream(data).read_proxy().is_well_known)  # type: ignore[union-attr]

    def test_datagram_proxy_keeps_its_encoding(self) -> None:
        """Vector 22: C{x -d -e 1.0@SomeAdapter} inside 1.1 data."""
        proxy = Proxy(
            Identity("x"), mode=ProxyMode.DATAGRAM, encoding=ENCODING_1_0, adapter_id="SomeAdapter"
        )
        expected = "0178 00 00 0300 0100 0100 00 0b536f6d6541646170746572"
        self.assertHex(write(proxy=proxy), expected)
        self.assertEqual(inp(expected).read_proxy(), proxy)

    def test_null_proxy(self) -> None:
        """A null proxy is an empty identity; the category is not looked at."""
        self.assertEqual(write(proxy=None), b"\x00\x00")
        self.assertIsNone(inp("0000").read_proxy())
        self.assertIsNone(inp("0003636174").read_proxy())
        self.assertRaises(MarshalError, OutputStream().write_proxy, Proxy(Identity("", "cat")))

    def test_exotic_round_trip(self) -> None:
        """Facet, mode, secure and every endpoint kind survive both encodings."""
        for encoding in (ENCODING_1_1, ENCODING_1_0):
            data = write(encoding, proxy=EXOTIC)
            stream = InputStream(data, encoding)
            decoded = stream.read_proxy()
            self.assertTrue(stream.at_end())
            expected = EXOTIC
            if encoding == ENCODING_1_0:
                expected = attrs.evolve(EXOTIC, encoding=ENCODING_1_0)
            self.assertEqual(decoded, expected)

    def test_proxy_sequence(self) -> None:
        proxies = [Proxy(Identity("a")), None, EXOTIC]
        data = write(proxy_seq=proxies)
        self.assertEqual(InputStream(data).read_proxy_seq(), proxies)

    def test_bad_mode_and_facet(self) -> None:
        self.assertRaises(MarshalError, inp("0161 00 00 0500 0100 0101 0000").read_proxy)
        self.assertRaises(MarshalError, inp("0161 00 020162 0163 0000 0100 0101 0000").read_proxy)

    def test_truncated_at_every_position(self) -> None:
        """Every strict prefix of a valid proxy fails with L{MarshalError}."""
        for encoding in (ENCODING_1_1, ENCODING_1_0):
            data = write(encoding, proxy=EXOTIC)
            for cut in range(len(data)):
                stream = InputStream(data[:cut], encoding)
                self.assertRaises(MarshalError, stream.read_proxy)

    def test_endpoint_count_larger_than_data(self) -> None:
        self.assertRaises(MarshalError, inp("0161 00 00 0000 0100 0101 ff00000001").read_proxy)


class EndpointTests(HexTestCase):
    def test_tcp_in_1_1(self) -> None:
        """ice-protocol.md §6: C{tcp -h 127.0.0.1 -p 24081 -t 60000}."""
        expected = "0100 19000000 0101 093132372e302e302e31 115e0000 60ea0000 00"
        self.assertHex(write(endpoint=TCP_24081), expected)
        self.assertEqual(inp(expected).read_endpoint(), TCP_24081)

    def test_encapsulation_follows_the_stream(self) -> None:
        """Modelled endpoints are encapsulated in the stream's encoding."""
        self.assertEqual(write(ENCODING_1_0, endpoint=TCP_24081)[6:8], b"\x01\x00")
        self.assertEqual(write(ENCODING_1_1, endpoint=TCP_24081)[6:8], b"\x01\x01")

    def test_udp_1_0_versus_1_1(self) -> None:
        """Only a 1.0 UDP encapsulation carries protocol/encoding 1.0."""
        udp = UdpEndpoint("239.1.2.3", 2, False)
        v11 = "0300 15000000 0101 093233392e312e322e33 02000000 00"
        v10 = "0300 19000000 0100 093233392e312e322e33 02000000 01000100 00"
        self.assertHex(write(ENCODING_1_1, endpoint=udp), v11)
        self.assertHex(write(ENCODING_1_0, endpoint=udp), v10)
        self.assertEqual(inp(v11).read_endpoint(), udp)
        self.assertEqual(inp(v10, ENCODING_1_0).read_endpoint(), udp)
        # The body is read with the encapsulation's encoding, not the stream's.
        self.assertEqual(inp(v10, ENCODING_1_1).read_endpoint(), udp)

    def test_ws_and_ssl(self) -> None:
        for endpoint in (
            SslEndpoint("h", 1, -1, True),
            WsEndpoint("h", 3, 60000, False, "/res"),
            WssEndpoint("h", 4, 1, True, "/"),
        ):
            data = write(endpoint=endpoint)
            self.assertEqual(data[:2], bytes([endpoint.TYPE, 0]))
            self.assertEqual(InputStream(data).read_endpoint(), endpoint)

    def test_opaque_round_trip(self) -> None:
        """
        An unknown type keeps its own encapsulation encoding and body, in
        either stream encoding (vector 21's type 99).
        """
        opaque = OpaqueEndpoint(99, ENCODING_1_0, b"\x01\x02\x03")
        for encoding in (ENCODING_1_1, ENCODING_1_0):
            data = write(encoding, endpoint=opaque)
            self.assertHex(data, "6300 09000000 0100 010203")
            self.assertEqual(InputStream(data, encoding).read_endpoint(), opaque)

    def test_known_type_with_unknown_encoding_is_opaque(self) -> None:
        """A TCP body in an encoding we cannot read is kept verbatim."""
        data = "0100 08000000 0205 abcd"
        self.assertEqual(inp(data).read_endpoint(), OpaqueEndpoint(1, Version(2, 5), b"\xab\xcd"))
        self.assertHex(write(endpoint=OpaqueEndpoint(1, Version(2, 5), b"\xab\xcd")), data)

    def test_trailing_endpoint_data_skipped(self) -> None:
        """Extra (e.g. tagged) data at the end of an endpoint body is ignored."""
        data = "0100 13000000 0101 0168 01000000 ffffffff 00 aa bb"
        stream = inp(data + "77")
        self.assertEqual(stream.read_endpoint(), TcpEndpoint("h", 1, -1, False))
        self.assertEqual(stream.read_byte(), 0x77)

    def test_truncated_body(self) -> None:
        """A body shorter than its fields is an error even if the encapsulation is sound."""
        self.assertRaises(MarshalError, inp("0100 0b000000 0101 0168 010000").read_endpoint)


class EndpointBytesKeptTests(HexTestCase):
    """
    L{OutputStream.write_endpoint} keeps each endpoint's bytes per encoding:
    what it writes is what the field-by-field marshaling writes.
    """

    def setUp(self) -> None:
        self.patch(ice_encoding, "_endpoint_bytes", {})

    def test_kept_bytes_are_the_marshaled_ones(self) -> None:
        expected = "0100 19000000 0101 093132372e302e302e31 115e0000 60ea0000 00"
        self.assertHex(write(endpoint=TCP_24081), expected)
        self.assertHex(write(endpoint=attrs.evolve(TCP_24081)), expected)  # equal, not the same
        self.assertEqual(len(ice_encoding._endpoint_bytes), 1)

    def test_per_encoding(self) -> None:
        """A 1.1 endpoint's kept bytes are not written in a 1.0 stream, nor the reverse."""
        udp = UdpEndpoint("239.1.2.3", 2, False)
        for _ in range(2):
            self.assertHex(
                write(ENCODING_1_1, endpoint=udp),
                "0300 15000000 0101 093233392e312e322e33 02000000 00",
            )
            self.assertHex(
                write(ENCODING_1_0, endpoint=udp),
                "0300 19000000 0100 093233392e312e322e33 02000000 01000100 00",
            )

    def test_an_endpoint_that_does_not_marshal_is_refused_every_time(self) -> None:
        bad = TcpEndpoint("h", 1 << 40)
        for _ in range(2):
            self.assertRaises(MarshalError, OutputStream().write_endpoint, bad)
        self.assertEqual(ice_encoding._endpoint_bytes, {})

    def test_bounded(self) -> None:
        self.patch(ice_encoding, "_ENDPOINTS_KEPT", 3)
        for port in range(10):
            endpoint = TcpEndpoint("h", port)
            self.assertEqual(InputStream(write(endpoint=endpoint)).read_endpoint(), endpoint)
            self.assertLessEqual(len(ice_encoding._endpoint_bytes), 3)

    def test_a_body_that_cannot_be_hashed_is_written_unkept(self) -> None:
        opaque = OpaqueEndpoint(99, ENCODING_1_0, bytearray(b"\x01\x02\x03"))  # type: ignore[arg-type]
        self.assertHex(write(endpoint=opaque), "6300 09000000 0100 010203")
        self.assertEqual(ice_encoding._endpoint_bytes, {})


class ProxyTailKeptTests(HexTestCase):
    """
    L{OutputStream.write_proxy} keeps a proxy's bytes after its identity, by
    those fields and the encoding: what it writes is what the field-by-field
    marshaling writes, for every identity that shares them.
    """

    def setUp(self) -> None:
        self.patch(ice_encoding, "_proxy_tails", {})

    def field_by_field(self, proxy: Proxy, encoding: Version = ENCODING_1_1) -> bytes:
        out = OutputStream(encoding)
        out.write_identity(proxy.identity)
        out._write_proxy_tail(proxy)
        return out.getvalue()

    def test_kept_bytes_are_the_marshaled_ones(self) -> None:
        first = Proxy(Identity("dummy"), endpoints=(TCP_24081,))
        self.assertHex(write(proxy=first), DUMMY_1_1_HEX)
        self.assertHex(write(proxy=first), DUMMY_1_1_HEX)
        self.assertEqual(len(ice_encoding._proxy_tails), 1)
        other = attrs.evolve(first, identity=Identity("other", "cat"))
        self.assertEqual(write(proxy=other), self.field_by_field(other))
        self.assertEqual(len(ice_encoding._proxy_tails), 1)  # the same tail for both

    def test_every_field_and_encoding(self) -> None:
        """Proxies differing in any one field after the identity get their own bytes."""
        base = Proxy(Identity("x", "c"), endpoints=(TCP_24081,))
        variants = [
            base,
            EXOTIC,
            attrs.evolve(base, facet="f"),
            attrs.evolve(base, mode=ProxyMode.ONEWAY),
            attrs.evolve(base, secure=True),
            attrs.evolve(base, protocol=Version(1, 1)),
            attrs.evolve(base, encoding=ENCODING_1_0),
            attrs.evolve(base, endpoints=(TCP_24081, UdpEndpoint("239.1.2.3", 2))),
            attrs.evolve(base, endpoints=(SslEndpoint("127.0.0.1", 24081, 60000),)),
            Proxy(Identity("x"), adapter_id="A"),
            Proxy(Identity("x"), adapter_id="B"),
            Proxy(Identity("x")),
        ]
        for _ in range(2):
            for proxy in variants:
                for encoding in (ENCODING_1_1, ENCODING_1_0):
                    self.assertEqual(
                        write(encoding, proxy=proxy), self.field_by_field(proxy, encoding)
                    )
                    stream = InputStream(write(encoding, proxy=proxy), encoding)
                    self.assertEqual(stream.read_proxy().identity, proxy.identity)  # type: ignore[union-attr]

    def test_a_long_identity(self) -> None:
        """Sizes of 255 and more take five bytes, as write_string writes them."""
        proxy = Proxy(Identity("n" * 300, "c" * 255), endpoints=(TCP_24081,))
        self.assertEqual(write(proxy=proxy), self.field_by_field(proxy))
        self.assertEqual(InputStream(write(proxy=proxy)).read_proxy(), proxy)

    def test_a_proxy_that_does_not_marshal_is_refused_every_time(self) -> None:
        bad = Proxy(Identity("x"), mode=7)  # type: ignore[arg-type]
        for _ in range(2):
            self.assertRaises(MarshalError, OutputStream().write_proxy, bad)
        self.assertRaises(
            MarshalError, OutputStream().write_proxy, Proxy(Identity("\ud800", "\udc00"))
        )
        self.assertRaises(MarshalError, OutputStream().write_proxy, Proxy(Identity("\ud800")))
        self.assertEqual(ice_encoding._proxy_tails, {})

    def test_bounded(self) -> None:
        self.patch(ice_encoding, "_PROXY_TAILS_KEPT", 3)
        for port in range(10):
            proxy = Proxy(Identity("x"), endpoints=(TcpEndpoint("h", port),))
            self.assertEqual(InputStream(write(proxy=proxy)).read_proxy(), proxy)
            self.assertLessEqual(len(ice_encoding._proxy_tails), 3)

    def test_a_field_that_cannot_be_hashed_is_written_unkept(self) -> None:
        opaque = OpaqueEndpoint(99, ENCODING_1_0, bytearray(b"\x01\x02\x03"))  # type: ignore[arg-type]
        proxy = Proxy(Identity("x"), endpoints=(opaque,))
        self.assertEqual(write(proxy=proxy), self.field_by_field(proxy))
        self.assertEqual(ice_encoding._proxy_tails, {})


def assert_count_refused(testcase: SynchronousTestCase, stream: InputStream, read: str) -> None:
    """The read fails on the count itself, before reading any element."""
    with testcase.assertRaises(MarshalError) as raised:
        getattr(stream, read)()
    testcase.assertIn("exceeds the remaining data", str(raised.exception))


class BoundaryTests(HexTestCase):
    """The edges of each check: the largest value accepted, the first refused."""

    def test_largest_size(self) -> None:
        self.assertHex(write(size=0x7FFFFFFF), "ffffffff7f")
        self.assertRaises(MarshalError, OutputStream().write_size, 0x80000000)
        self.assertRaises(MarshalError, OutputStream().write_string_seq, range(0x80000000))

    def test_non_canonical_zero_size(self) -> None:
        """Ice accepts a size of 0 written as C{FF} plus an int32, and so do we."""
        self.assertEqual(inp("ff00000000").read_size(), 0)
        self.assertEqual(inp("ff00000000").read_string(), "")

    def test_versions_decode_as_written(self) -> None:
        """Versions other than 1.0 and 1.1 are reported as themselves, not as a known one."""
        for major, minor in [(1, 0), (1, 1), (1, 2), (2, 1), (2, 0), (0, 1), (0, 0), (255, 255)]:
            stream = InputStream(bytes([major, minor]))
            self.assertEqual(stream.read_version(), Version(major, minor))

    def test_opaque_endpoint_of_unknown_encoding_kept(self) -> None:
        """An endpoint encapsulated with an encoding we do not speak is kept byte for byte."""
        for version in (Version(1, 2), Version(2, 1), Version(2, 0), Version(0, 1)):
            data = bytes.fromhex("0100") + encaps(version, b"\x01\x61")
            endpoint = InputStream(data).read_endpoint()
            self.assertEqual(endpoint, OpaqueEndpoint(1, version, b"\x01\x61"))
            self.assertEqual(write(endpoint=endpoint), data)

    def test_bad_version_refused(self) -> None:
        self.assertRaises(MarshalError, OutputStream().write_version, Version(256, 0))
        self.assertRaises(MarshalError, OutputStream().write_version, Version(1, -1))

    def test_unsupported_input_encoding(self) -> None:
        for version in (Version(1, 2), Version(2, 0), Version(0, 1)):
            self.assertRaises(MarshalError, InputStream, b"", version)
            self.assertRaises(MarshalError, OutputStream, version)

    def test_enum_zero_and_negative(self) -> None:
        for encoding in (ENCODING_1_0, ENCODING_1_1):
            out = OutputStream(encoding)
            out.write_enum(0, 5)
            self.assertEqual(out.getvalue(), b"\x00")
            self.assertEqual(InputStream(out.getvalue(), encoding).read_enum(5), 0)
            self.assertRaises(MarshalError, OutputStream(encoding).write_enum, -1, 5)
            self.assertRaises(MarshalError, OutputStream(encoding).write_enum, 6, 5)

    def test_every_proxy_mode(self) -> None:
        """All five modes, batch datagram included, marshal and decode; others are refused."""
        for mode in ProxyMode:
            for encoding in (ENCODING_1_0, ENCODING_1_1):
                proxy = Proxy(
                    Identity("o"),
                    mode=mode,
                    protocol=encoding,
                    encoding=encoding,
                    adapter_id="A",
                )
                data = write(encoding, proxy=proxy)
                self.assertEqual(InputStream(data, encoding).read_proxy(), proxy)
        for bad in (-1, 5):
            proxy = Proxy(Identity("o"), mode=bad)  # type: ignore[arg-type]
            self.assertRaises(MarshalError, OutputStream().write_proxy, proxy)
        self.assertRaises(MarshalError, inp("016f 00 00 0500 0100 0101 00 00").read_proxy)

    def test_sequences_of_smallest_elements(self) -> None:
        """Counts are checked against the smallest element, so the smallest ones fit."""
        values = ["", "", ""]
        self.assertEqual(inp(write(string_seq=values).hex()).read_string_seq(), values)
        pairs = {"": "", "a": ""}
        self.assertEqual(inp(write(string_dict=pairs).hex()).read_string_dict(), pairs)
        nulls = [None, None, None]
        self.assertEqual(inp(write(proxy_seq=nulls).hex()).read_proxy_seq(), nulls)

    def test_proxy_with_smallest_endpoints(self) -> None:
        """An opaque endpoint with an empty body takes 8 bytes; a count of them fits."""
        empty = OpaqueEndpoint(99, ENCODING_1_1, b"")
        proxy = Proxy(Identity("o"), endpoints=(empty, empty))
        self.assertEqual(inp(write(proxy=proxy).hex()).read_proxy(), proxy)

    def test_counts_refused_before_reading(self) -> None:
        """A count that cannot fit what is left is refused before any element is read."""
        assert_count_refused(self, inp("05 00000000"), "read_string_seq")
        assert_count_refused(self, inp("03 000000 00"), "read_string_dict")
        assert_count_refused(self, inp("03 0000 0000"), "read_proxy_seq")
        # one 27-byte TCP endpoint and 2 more bytes claiming to be four endpoints
        proxy = write(proxy=Proxy(Identity("o"), endpoints=(TCP_24081,)))
        self.assertEqual(proxy[10], 1)
        claims_four = proxy[:10] + b"\x04" + proxy[11:] + b"\x00\x00"
        assert_count_refused(self, InputStream(claims_four), "read_proxy")

    def test_counts_checked_against_what_is_left(self) -> None:
        """The check uses the bytes after the read position, not the buffer's length."""
        padding = b"\x00" * 64
        for read, data in [
            ("read_string_seq", "05 00000000"),
            ("read_string_dict", "03 000000 00"),
            ("read_proxy_seq", "03 0000 0000"),
        ]:
            stream = InputStream(padding + bytes.fromhex(data), pos=len(padding))
            assert_count_refused(self, stream, read)

    def test_truncation_message(self) -> None:
        """A truncated read says how many bytes it needed, where, and how many were left."""
        stream = inp("01020304 05")
        stream.skip(2)
        with self.assertRaises(MarshalError) as raised:
            stream.read_int()
        self.assertEqual(str(raised.exception), "need 4 bytes at offset 2, 3 left")

    def test_tagged_size_member_last(self) -> None:
        stream = inp("0c 05 ff")  # tag 1, Size, then the end marker
        stream.skip_tagged_members()
        self.assertTrue(stream.at_end())

    def test_udp_1_0_compress_flag(self) -> None:
        """In 1.0 the compress flag comes after the four version bytes."""
        for compress in (True, False):
            endpoint = UdpEndpoint("239.1.2.3", 2, compress)
            data = write(ENCODING_1_0, endpoint=endpoint)
            self.assertEqual(InputStream(data, ENCODING_1_0).read_endpoint(), endpoint)

    def test_tagged_fsize_member_last(self) -> None:
        stream = inp("3e 02000000 aabb ff")  # tag 7, FSize of 2 bytes, then the end marker
        stream.skip_tagged_members()
        self.assertTrue(stream.at_end())

    def test_tagged_class_member_refused(self) -> None:
        """A tagged class member cannot be skipped safely, so it is refused, not ignored."""
        with self.assertRaises(MarshalError) as raised:
            inp("0f ff").skip_tagged_members()
        self.assertIn("not supported", str(raised.exception))

    def test_unknown_endpoint_object_refused(self) -> None:
        self.assertRaises(MarshalError, OutputStream().write_endpoint, "tcp -p 1")  # type: ignore
