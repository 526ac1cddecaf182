# -*- test-case-name: tests.test_descriptor_slice -*-
"""
Tests for L{gridreg.registry.descriptor_slice}: application descriptors an
IcePy client sent to C{addApplication} become XML that our parser accepts
and that derives what the descriptor says; the XML goes back out as the
same descriptor (C{getApplicationInfo}), which IcePy decodes.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from gridreg.ice.classes import COMPACT, SLICED, StructOf, ValueWriter
from gridreg.ice.encoding import InputStream, MarshalError, OutputStream
from gridreg.registry._descriptor_slice_types import ApplicationDescriptor
from gridreg.registry.application_metadata import ApplicationMetadata
from gridreg.registry.descriptor_slice import (
    read_application_descriptor,
    write_application_descriptor,
    application_info,
    write_application_info,
    write_server_info,
    xml_to_slice,
)
from gridreg.registry.descriptors import DescriptorError, derive, parse_application
from tests._ice_values import dump, icepy_available, icepy_decode, vector

FORMATS = [COMPACT, SLICED]


def xml_of(name: str) -> str:
    return read_application_descriptor(InputStream(bytes.fromhex(vector(name)["hex"])))


class ReadTests(SynchronousTestCase):
    """Descriptors IcePy sent become XML that derives the same deployment."""

    def test_full(self) -> None:
        for fmt in FORMATS:
            app = parse_application(xml_of(f"app_full_{fmt}"))
            derived = derive(app)
            self.assertEqual(app.name, "Full")
            self.assertEqual(app.description, "the full application")
            self.assertEqual(dict(app.variables), {"greeting": "hello", "root": "/srv"})
            self.assertEqual(sorted(derived.servers), ["Adaptive", "Hello-1", "Hello-2", "Plain"])
            self.assertEqual(
                {
                    a.adapter_id: (a.node, a.replica_group_id, a.priority)
                    for a in derived.adapters.values()
                },
                {
                    "Hello-1.Hello": ("node1", "RG-rr", 1),
                    "Hello-2.Hello": ("node1", "RG-rr", 2),
                    "Plain.A": ("node1", "RG-ordered", 1),
                    "Plain.B": ("node1", "", 0),
                    "Adaptive.Ad": ("node2", "RG-adaptive", 0),
                },
            )
            policies = {
                g.id: (g.policy.type, g.policy.n_replicas, g.policy.load_sample)
                for g in derived.replica_groups.values()
            }
            self.assertEqual(
                policies,
                {
                    "RG-random": ("random", 0, "1"),
                    "RG-ordered": ("ordered", 1, "1"),
                    "RG-rr": ("round-robin", 2, "1"),
                    "RG-rr2": ("round-robin", 2, "1"),
                    "RG-adaptive": ("adaptive", 0, "5"),
                    "RG-none": ("random", 0, "1"),
                },
            )
            objects = {
                f"{i.category}/{i.name}": (p.adapter_id, t) for i, (p, t) in derived.objects.items()
            }
            self.assertEqual(
                objects,
                {
                    "/rrobj": ("RG-rr", "::Demo::Hello"),
                    "cat/noneobj": ("RG-none", ""),
                    "/hello-1": ("Hello-1.Hello", "::Demo::Hello"),
                    "/hello-2": ("Hello-2.Hello", "::Demo::Hello"),
                    "/plain-a": ("Plain.A", ""),
                },
            )
            servers = {k: s.descriptor for k, s in derived.servers.items()}
            self.assertEqual(
                servers["Hello-1"].properties,
                (
                    ("Ice.Trace.Network", "0"),
                    ("Common.Root", "/srv"),
                    ("Greeting", "hi"),
                    ("Extra", "e"),
                ),
            )
            self.assertEqual(servers["Hello-2"].properties[-1], ("Greeting", "yo"))
            self.assertEqual(servers["Hello-2"].options, ("server.py", "--index=2"))
            self.assertEqual(servers["Adaptive"].properties[-1], ("M", "2"))
            plain = servers["Plain"]
            self.assertEqual(
                (plain.exe, plain.pwd, plain.activation, plain.activation_timeout),
                ("/bin/sleep", "/tmp", "manual", 5),
            )
            self.assertEqual(plain.properties, (("X", "1"), ("X", "2")))
            self.assertEqual(
                [(a.name, a.endpoints, a.server_lifetime) for a in plain.adapters],
                [("A", "default -h 127.0.0.1", True), ("B", "tcp", False)],
            )

    def test_unexpanded(self) -> None:
        """Templates, instances and variables stay as written."""
        xml = xml_of("app_full_compact")
        self.assertIn('<server-template id="HelloTemplate">', xml)
        self.assertIn('<server-instance template="HelloTemplate" index="2" greeting="yo" />', xml)
        self.assertIn('value="${root}"', xml)

    def test_minimal(self) -> None:
        for fmt in FORMATS:
            app = parse_application(xml_of(f"app_minimal_{fmt}"))
            self.assertEqual((app.name, app.nodes, app.replica_groups), ("Minimal", (), ()))

    def test_icebox_refused(self) -> None:
        for fmt in FORMATS:
            e = self.assertRaises(DescriptorError, xml_of, f"app_icebox_{fmt}")
            self.assertIn("IceBox", str(e))

    def test_truncated(self) -> None:
        payload = bytes.fromhex(vector("app_full_compact")["hex"])
        for end in range(0, len(payload), 7):
            self.assertRaises(MarshalError, read_application_descriptor, InputStream(payload[:end]))


class WriteTests(SynchronousTestCase):
    """Stored XML goes out as the descriptor IcePy sent."""

    def test_round_trip(self) -> None:
        for name in ("app_full", "app_minimal"):
            for fmt in FORMATS:
                v = vector(f"{name}_{fmt}")
                self.assertEqual(dump(xml_to_slice(xml_of(f"{name}_{fmt}"))), v["value"])

    def test_same_bytes(self) -> None:
        for name in ("app_full", "app_minimal"):
            for fmt in FORMATS:
                v = vector(f"{name}_{fmt}")
                out = OutputStream()
                write_application_descriptor(out, xml_of(f"{name}_{fmt}"), fmt)
                self.assertEqual(out.getvalue().hex(), v["hex"])

    def test_name_checked(self) -> None:
        self.assertRaises(
            DescriptorError,
            application_info,
            "Other",
            xml_of("app_minimal_compact"),
            ApplicationMetadata("u", 1, "a", 2, "b", 3),
        )

    def test_icepy_decodes(self) -> None:
        if not icepy_available():
            raise SkipTest("no IcePy under /usr/bin/python3")
        xml = xml_of("app_full_compact")
        info = OutputStream()
        meta = ApplicationMetadata("uuid-1", 1000, "alice", 2000, "bob", 3)
        write_application_info(info, application_info("Full", xml, meta))
        default = OutputStream()
        write_application_descriptor(default, xml)
        app = parse_application(xml)
        plain = derive(app).servers["Plain"]
        server = OutputStream()
        write_server_info(server, "Full", "uuid-1", 3, plain.node, plain.descriptor, "sess")
        results = icepy_decode(
            [
                ("getApplicationInfo", info.getvalue()),
                ("getDefaultApplicationDescriptor", default.getvalue()),
                ("getServerInfo", server.getvalue()),
            ]
        )
        expected = vector("app_full_compact")["value"]
        got: Any = results[0]["value"]
        self.assertEqual(got.pop("descriptor"), expected)
        self.assertEqual(
            got,
            {
                "@struct": "ApplicationInfo",
                "createTime": 1000,
                "createUser": "alice",
                "revision": 3,
                "updateTime": 2000,
                "updateUser": "bob",
                "uuid": "uuid-1",
            },
        )
        self.assertEqual(results[1]["value"], expected)
        info_value = results[2]["value"]
        descriptor = info_value.pop("descriptor")
        self.assertEqual(
            info_value,
            {
                "@struct": "ServerInfo",
                "application": "Full",
                "node": "node1",
                "revision": 3,
                "sessionId": "sess",
                "uuid": "uuid-1",
            },
        )
        self.assertEqual(descriptor["@type"], "::IceGrid::ServerDescriptor")
        self.assertEqual(
            (descriptor["id"], descriptor["exe"], descriptor["activationTimeout"]),
            ("Plain", "/bin/sleep", "5"),
        )
        self.assertEqual(
            [p["name"] for p in descriptor["propertySet"]["properties"]],
            ["A.Endpoints", "B.Endpoints", "X", "X"],
        )
        self.assertEqual([a["id"] for a in descriptor["adapters"]], ["Plain.A", "Plain.B"])


class SlicedWriterTests(SynchronousTestCase):
    def test_struct_param(self) -> None:
        """A descriptor written with a shared writer is the same bytes."""
        v = vector("app_full_sliced")
        out = OutputStream()
        ValueWriter(out, SLICED).write(
            StructOf(ApplicationDescriptor), xml_to_slice(xml_of("app_full_sliced"))
        )
        self.assertEqual(out.getvalue().hex(), v["hex"])
