# -*- test-case-name: tests.test_properties -*-
"""
Tests for L{gridreg.config.properties}.

Expected values of the escape and white-space cases were checked against
real Ice 3.7.8 (C{Ice.createProperties().load(path)}); the tests only replay
those outcomes.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gridreg.config.properties import (
    IGNORED_WARNING,
    KNOWN_PROPERTIES,
    IgnoredProperty,
    Properties,
    PropertyError,
    ignored_properties,
    load_file,
    message_size_max_bytes,
    parse_overrides,
    parse_text,
    validate,
)
from gridreg.ice.types import Identity, Proxy, SslEndpoint, TcpEndpoint

REGISTRY_MASTER = """\
IceGrid.InstanceName=DemoIceGrid
IceGrid.Registry.Client.Endpoints=tcp -h 127.0.0.1 -p 12000
IceGrid.Registry.Server.Endpoints=tcp -h 127.0.0.1
IceGrid.Registry.Internal.Endpoints=tcp -h 127.0.0.1
IceGrid.Registry.Data=db/master
IceGrid.Registry.DynamicRegistration=1
"""

#: the same registry as configured for IceGrid 3.7
REGISTRY_MASTER_37 = """\
IceGrid.InstanceName=DemoIceGrid
IceGrid.Registry.Client.Endpoints=tcp -h 127.0.0.1 -p 12000
IceGrid.Registry.Server.Endpoints=tcp -h 127.0.0.1
IceGrid.Registry.Internal.Endpoints=tcp -h 127.0.0.1
IceGrid.Registry.LMDB.Path=db/master
IceGrid.Registry.LMDB.MapSize=10
IceGrid.Registry.DynamicRegistration=1
IceGrid.Registry.PermissionsVerifier=DemoIceGrid/NullPermissionsVerifier
IceGrid.Registry.AdminPermissionsVerifier=DemoIceGrid/NullPermissionsVerifier
IceGrid.Registry.Discovery.Enabled=0
"""


class FileTestsMixin:
    """Write configuration files into a per-test temporary directory."""

    def write(self, content: str | bytes) -> str:
        path: str = self.mktemp()  # type: ignore[attr-defined]
        data = content.encode("utf-8") if isinstance(content, str) else content
        with open(path, "wb") as f:
            f.write(data)
        return path


class SyntaxTests(FileTestsMixin, SynchronousTestCase):
    """The property-file syntax, as Ice reads it."""

    def test_registry_sample(self) -> None:
        """The registry configuration the project ships parses, with sources."""
        path = self.write(REGISTRY_MASTER)
        props = load_file(path)
        self.assertEqual(props["IceGrid.InstanceName"], "DemoIceGrid")
        self.assertEqual(
            props.get_endpoints("IceGrid.Registry.Client.Endpoints"),
            (TcpEndpoint("127.0.0.1", 12000),),
        )
        self.assertEqual(
            props.get_endpoints("IceGrid.Registry.Server.Endpoints"), (TcpEndpoint("127.0.0.1", 0),)
        )
        self.assertTrue(props.get_flag("IceGrid.Registry.DynamicRegistration"))
        self.assertEqual(props.source("IceGrid.Registry.Data"), f"{path}:5")
        self.assertEqual(validate(props), [])

    def test_comments_and_blanks(self) -> None:
        props = parse_text(
            "# a comment\n\n   \n  # indented comment\n"
            "Ice.MessageSizeMax = 2048    # Largest message size is 2MB\n",
            "c.cfg",
        )
        self.assertEqual(dict(props), {"Ice.MessageSizeMax": "2048"})
        self.assertEqual(props.source("Ice.MessageSizeMax"), "c.cfg:5")

    def test_white_space(self) -> None:
        """The manual's white-space examples."""
        cases = {
            "My.Prop = a property   ": "a property",
            "My.Prop =     a     property  ": "a     property",
            "My.Prop = \\ \\ a     property\\ \\   ": "  a     property  ",
            "My.Prop = \\ \\ a  \\ \\  property\\ \\  ": "  a     property  ",
            "My.Prop = a \\\\ property": "a \\ property",
            "\\ My.Prop\\  = v": "v",
            "\tMy.Prop=v": "v",
        }
        for line, value in cases.items():
            self.assertEqual(parse_text(line, "w.cfg").get("My.Prop"), value, line)

    def test_escapes(self) -> None:
        props = parse_text(
            "A.1 = a \\# b\n"
            "A.2 = a \\= b\n"
            "A\\=3 = x\n"
            "A\\#4 = x\n"
            "A.5 = c:\\dir\\file\n"
            "A.6 = a\\\n"
            "A.7 = \\\\#comment\n"
            "A.8 = x=y\n"
            "A.9 == v\n"
            'A.10 = "quoted # value"\n'
            "A .11 = v\n",
            "e.cfg",
        )
        self.assertEqual(
            dict(props),
            {
                "A.1": "a # b",
                "A.2": "a = b",
                "A=3": "x",
                "A#4": "x",
                "A.5": "c:\\dir\\file",
                "A.6": "a\\",
                "A.7": "\\",
                "A.8": "x=y",
                "A.9": "= v",
                "A.10": '"quoted',
                "A .11": "v",
            },
        )

    def test_later_lines_override_and_empty_unsets(self) -> None:
        props = parse_text("A=1\nB=1\nA=2\nB=\n", "o.cfg")
        self.assertEqual(dict(props), {"A": "2"})
        self.assertEqual(props.source("A"), "o.cfg:3")

    def test_crlf_and_bom(self) -> None:
        path = self.write(b"\xef\xbb\xbfA = 1\r\nB = 2 \r\n")
        self.assertEqual(dict(load_file(path)), {"A": "1", "B": "2"})

    def test_files_accumulate(self) -> None:
        """A second file loaded into the same set overrides the first."""
        first = self.write("A=1\nB=1\n")
        second = self.write("B=2\n")
        props = load_file(second, load_file(first))
        self.assertEqual(dict(props), {"A": "1", "B": "2"})
        self.assertEqual(props.source("B"), f"{second}:1")


class FileErrorTests(FileTestsMixin, SynchronousTestCase):
    """Every file error names the file and line."""

    def test_missing_equals(self) -> None:
        path = self.write("A=1\n\nnoequals\n")
        e = self.assertRaises(PropertyError, load_file, path)
        self.assertIn(f"{path}:3", str(e))
        self.assertIn("'noequals'", str(e))

    def test_empty_key(self) -> None:
        e = self.assertRaises(PropertyError, parse_text, "A=1\n  = value\n", "k.cfg")
        self.assertIn("k.cfg:2", str(e))
        self.assertIn("'= value'", str(e))

    def test_not_utf8(self) -> None:
        path = self.write(b"A=1\nB=\xff\xfe\n")
        e = self.assertRaises(PropertyError, load_file, path)
        self.assertIn(f"{path}:2", str(e))
        self.assertIn("UTF-8", str(e))

    def test_missing_file(self) -> None:
        path = self.mktemp()
        e = self.assertRaises(PropertyError, load_file, path)
        self.assertIn(path, str(e))


class OverrideTests(FileTestsMixin, SynchronousTestCase):
    """C{--property KEY=VALUE} overrides from the command line."""

    def test_parse(self) -> None:
        self.assertEqual(
            parse_overrides(["A=1", " B = x y ", "C=", "D=a=b", "E=x\\#y"]),
            [("A", "1"), ("B", "x y"), ("C", ""), ("D", "a=b"), ("E", "x#y")],
        )

    def test_bad_pairs(self) -> None:
        for pair in ("novalue", "=x", "", "# x"):
            e = self.assertRaises(PropertyError, parse_overrides, [pair])
            self.assertIn(repr(pair), str(e))
            self.assertIn("command line", str(e))

    def test_file_then_command_line(self) -> None:
        """Command-line overrides win over the file, and can unset."""
        props = load_file(self.write(REGISTRY_MASTER))
        props.apply_overrides(
            parse_overrides(["IceGrid.InstanceName=Other", "IceGrid.Registry.DynamicRegistration="])
        )
        self.assertEqual(props["IceGrid.InstanceName"], "Other")
        self.assertEqual(props.source("IceGrid.InstanceName"), "command line")
        self.assertNotIn("IceGrid.Registry.DynamicRegistration", props)
        self.assertFalse(props.get_flag("IceGrid.Registry.DynamicRegistration"))


class GetterTests(SynchronousTestCase):
    """Typed getters; errors name the key, value and source."""

    def props(self, text: str) -> Properties:
        return parse_text(text, "g.cfg")

    def test_mapping(self) -> None:
        props = self.props("A.x=1\nA.y=2\nB.z=3\n")
        self.assertEqual(list(props.items()), [("A.x", "1"), ("A.y", "2"), ("B.z", "3")])
        self.assertEqual(props.with_prefix("A."), {"A.x": "1", "A.y": "2"})
        self.assertIsNone(props.get("nope"))
        self.assertRaises(KeyError, props.source, "nope")

    def test_get_int(self) -> None:
        props = self.props("A=42\nB=-3\nC=abc\n")
        self.assertEqual(props.get_int("A", 0), 42)
        self.assertEqual(props.get_int("B", 0), -3)
        self.assertEqual(props.get_int("missing", 7), 7)
        e = self.assertRaises(PropertyError, props.get_int, "C", 0)
        for fragment in ("g.cfg:3", "C", "'abc'"):
            self.assertIn(fragment, str(e))

    def test_known_defaults(self) -> None:
        props = Properties()
        self.assertEqual(props.get_int("Ice.Default.Timeout"), 60000)
        self.assertEqual(props.effective("IceGrid.InstanceName"), "IceGrid")
        self.assertEqual(props.effective("IceGrid.Registry.ReplicaName"), "Master")
        self.assertIsNone(props.effective("Hello.Endpoints"))
        self.assertEqual(KNOWN_PROPERTIES["Ice.MessageSizeMax"].default, "1024")

    def test_get_flag(self) -> None:
        props = self.props("A=1\nB=0\nC=2\n")
        self.assertEqual([props.get_flag(k) for k in "ABC"], [True, False, True])
        self.assertTrue(props.get_flag("missing", True))

    def test_get_proxy(self) -> None:
        props = self.props(
            "Ice.Default.Locator=DemoIceGrid/Locator:default -p 12000\nBad.Proxy=a/b/c\n"
        )
        self.assertEqual(
            props.get_proxy("Ice.Default.Locator"),
            Proxy(Identity("Locator", "DemoIceGrid"), endpoints=(TcpEndpoint(port=12000),)),
        )
        self.assertIsNone(props.get_proxy("Unset.Proxy"))
        e = self.assertRaises(PropertyError, props.get_proxy, "Bad.Proxy")
        for fragment in ("g.cfg:2", "Bad.Proxy", "'a/b/c'"):
            self.assertIn(fragment, str(e))

    def test_endpoint_defaults(self) -> None:
        props = parse_text("Ice.Default.Protocol=ssl\nIce.Default.Timeout=5000\n", "d.cfg")
        self.assertEqual(props.endpoint_defaults(), ("ssl", 5000))
        self.assertEqual(Properties().endpoint_defaults(), ("tcp", 60000))

    def test_ice_defaults_apply(self) -> None:
        """Ice.Default.Protocol/Timeout shape C{default} endpoints, as in Ice."""
        props = self.props(
            "Ice.Default.Protocol=ssl\nIce.Default.Timeout=5000\nX.Endpoints=default -p 4\n"
        )
        self.assertEqual(props.get_endpoints("X.Endpoints"), (SslEndpoint(port=4, timeout=5000),))

    def test_get_endpoints(self) -> None:
        props = self.props(
            'A.Endpoints=tcp -h * -p 1:tcp -h "::1" -p 2\nB.Endpoints=tcp -p 70000\n'
        )
        self.assertEqual(
            props.get_endpoints("A.Endpoints"), (TcpEndpoint("*", 1), TcpEndpoint("::1", 2))
        )
        self.assertRaises(PropertyError, props.get_endpoints, "A.Endpoints", server=False)
        self.assertEqual(props.get_endpoints("Unset"), ())
        e = self.assertRaises(PropertyError, props.get_endpoints, "B.Endpoints")
        for fragment in ("g.cfg:2", "B.Endpoints", "'tcp -p 70000'", "out of range"):
            self.assertIn(fragment, str(e))


class ValidateTests(SynchronousTestCase):
    """Start-up validation: warnings for unknown names, errors for bad values."""

    def test_unknown_icegrid_property_warns(self) -> None:
        props = parse_text("IceGrid.Registry.Foo=1\nIceGrid.InstanceName=X\n", "v.cfg")
        self.assertEqual(
            validate(props), ["unknown property: `IceGrid.Registry.Foo' (set at v.cfg:1)"]
        )

    def test_case_hint(self) -> None:
        """Like Ice, suggest the known name that differs only in case."""
        [warning] = validate(parse_text("Ice.trace.network=1\n", "v.cfg"))
        self.assertIn(
            "unknown property: `Ice.trace.network'; did you mean `Ice.Trace.Network'", warning
        )

    def test_other_prefixes_are_legal(self) -> None:
        props = parse_text(
            "Hello.Endpoints=whatever\nIceStormAdmin.X=1\nIce.Plugin.IceSSL=x:y\n"
            "IceGrid.Registry.Client.Locator.Context.k=v\n",
            "v.cfg",
        )
        self.assertEqual(validate(props), [])

    def test_ice_and_icessl_unknown_warn(self) -> None:
        props = parse_text("Ice.Bogus=1\nIceSSL.Bogus=1\nIceSSL.CAs=ca.pem\n", "v.cfg")
        self.assertEqual(len(validate(props)), 2)

    def test_malformed_known_values(self) -> None:
        cases = [
            ("Ice.MessageSizeMax=big", "'big'"),
            ("IceGrid.Registry.NodeSessionTimeout=1.5", "'1.5'"),
            ("IceGrid.Registry.Client.Endpoints=tcp -p 70000", "'tcp -p 70000'"),
            ("IceGrid.Registry.Client.PublishedEndpoints=tcp -h * -p 1", "-h *"),
            ("Ice.Default.Locator=a/b/c", "'a/b/c'"),
            ("Ice.Default.Protocol=carrier-pigeon", "'carrier-pigeon'"),
        ]
        for line, fragment in cases:
            props = parse_text(f"# header\n{line}\n", "bad.cfg")
            e = self.assertRaises(PropertyError, validate, props)
            key = line.split("=", 1)[0]
            for expected in ("bad.cfg:2", key, fragment):
                self.assertIn(expected, str(e), line)

    def test_command_line_source_in_error(self) -> None:
        props = Properties()
        props.apply_overrides(parse_overrides(["Ice.Default.Timeout=soon"]))
        e = self.assertRaises(PropertyError, validate, props)
        self.assertIn("command line", str(e))


class MessageSizeMaxTests(SynchronousTestCase):
    """Ice.MessageSizeMax is in KiB; 0 or less means no limit."""

    def test_values(self) -> None:
        cases = {
            None: 1024 * 1024,
            "2048": 2048 * 1024,
            "1": 1024,
            "0": None,
            "-1": None,
            "4194304": None,
        }
        for value, expected in cases.items():
            props = Properties()
            if value is not None:
                props.set("Ice.MessageSizeMax", value)
            self.assertEqual(message_size_max_bytes(props), expected, value)

    def test_malformed(self) -> None:
        props = parse_text("Ice.MessageSizeMax=1MB\n", "m.cfg")
        e = self.assertRaises(PropertyError, message_size_max_bytes, props)
        self.assertIn("m.cfg:1", str(e))


class IgnoredPropertiesTests(SynchronousTestCase):
    """Known properties that are set but that gridreg does not act on."""

    def warnings(self, text: str) -> list[str]:
        ignored = ignored_properties(parse_text(text, "i.cfg"))
        return [IGNORED_WARNING.format(**i.fields()) for i in ignored]

    def test_icegrid_37_registry(self) -> None:
        """
        The 3.7 registry configuration: the database directory and the
        session verifiers are honoured, the map size is not,
        Discovery.Enabled=0 asks for what gridreg does anyway.
        """
        self.assertEqual(
            self.warnings(REGISTRY_MASTER_37),
            [
                "property `IceGrid.Registry.LMDB.MapSize' is not supported by gridreg (yet): "
                "gridreg's SQLite database grows as needed; no size limit is applied "
                "(set at i.cfg:6)",
            ],
        )

    def test_older_registry_is_quiet(self) -> None:
        self.assertEqual(self.warnings(REGISTRY_MASTER), [])

    def test_inert_values(self) -> None:
        """A value that asks for what gridreg does anyway is not warned about."""
        quiet = (
            "IceGrid.Registry.Discovery.Enabled=0\n"
            "IceGrid.Registry.Trace.Patch=00\n"
            "IceSSL.VerifyPeer=2\n"
            "Ice.ToStringMode=Unicode\n"
        )
        self.assertEqual(self.warnings(quiet), [])
        loud = self.warnings(
            "IceGrid.Registry.Trace.Admin=1\nIceGrid.Registry.Trace.Patch=1\n"
            "IceSSL.VerifyPeer=0\nIce.ToStringMode=ASCII\n"
        )
        self.assertEqual(len(loud), 4, loud)

    def test_prefix_properties(self) -> None:
        """Names under a known prefix (contexts, plug-ins) are classified too."""
        ignored = ignored_properties(
            parse_text("Ice.Plugin.IceSSL=IceSSL:createIceSSL\nMy.Own=1\n", "i.cfg")
        )
        self.assertEqual(
            ignored,
            [IgnoredProperty("Ice.Plugin.IceSSL", "i.cfg:1", ignored[0].support)],
        )
        self.assertEqual(ignored[0].support.instead, "gridreg loads no Ice plug-ins; ignored")

    def test_unknown_properties_are_left_to_validate(self) -> None:
        props = parse_text("IceGrid.Registry.Bogus=1\n", "i.cfg")
        self.assertEqual(ignored_properties(props), [])
        self.assertEqual(len(validate(props)), 1)

    def test_honoured_properties(self) -> None:
        """ACM (implemented on its own branch) and gridadmin's name are not warned about."""
        self.assertEqual(
            self.warnings(
                "Ice.ACM.Timeout=60\nIceGrid.Registry.Client.ACM.Timeout=60\n"
                "GridReg.Admin.Name=ops\nIce.Default.Locator=IceGrid/Locator:tcp -p 4061\n"
            ),
            [],
        )

    def test_admin_router_is_known(self) -> None:
        """IceGrid 3.7.8 knows IceGrid.AdminRouter.*: it is not an unknown property."""
        props = parse_text("IceGrid.AdminRouter.Endpoints=tcp -h 127.0.0.1\n", "i.cfg")
        self.assertEqual(validate(props), [])
        [warning] = self.warnings("IceGrid.AdminRouter.Endpoints=tcp -h 127.0.0.1\n")
        self.assertIn("routes no calls to servers' admin objects (planned)", warning)
