# -*- test-case-name: tests.test_descriptors -*-
"""
Tests for L{gridreg.registry.descriptors} and
L{gridreg.registry.descriptor_xml}.

Where IceGrid's behaviour is not obvious (variables substituted where they
are used, property-set order, which attributes are refused, which run-time
variables are left for the node), the expected outcome was checked against
ZeroC's C{icegridadmin application add} / C{server describe} on Ice 3.7.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity, Proxy
from gridreg.registry.descriptor_xml import MAX_DESCRIPTOR_BYTES
from gridreg.registry.descriptors import (
    AdapterDescriptor,
    ApplicationDescriptor,
    DeployedAdapter,
    DescriptorError,
    LoadBalancing,
    NodeDescriptor,
    ObjectDescriptor,
    ServerDescriptor,
    application_from_json,
    application_to_json,
    check_conflicts,
    check_update,
    derive,
    parse_application,
)

DEMO_APP = os.path.join(os.path.dirname(__file__), os.pardir, "etc", "demo-app.xml")


def app_xml(body: str, name: str = "App") -> str:
    """An application document whose C{body} starts on line 3."""
    return f'<icegrid>\n<application name="{name}">\n{body}\n</application>\n</icegrid>\n'


def parse(body: str, name: str = "App") -> ApplicationDescriptor:
    return parse_application(app_xml(body, name))


def server(body: str = "", attributes: str = 'id="S" exe="run"') -> ServerDescriptor:
    """The one server of an application with one node holding C{body}."""
    app = parse(f'<node name="n1"><server {attributes}>{body}</server></node>')
    return app.nodes[0].servers[0]


GROUP_AND_TWO_SERVERS = """
<replica-group id="G"><object identity="obj" type="::T"/></replica-group>
<node name="n1">
  <server id="A" exe="a"><adapter name="Ad" replica-group="G"/></server>
  <server id="B" exe="b"><adapter name="Ad" id="B-adapter" priority="3"/></server>
</node>
"""


class DemoApplicationTests(SynchronousTestCase):
    """The shipped C{etc/demo-app.xml} deploys what the README promises."""

    def setUp(self) -> None:
        with open(DEMO_APP, encoding="utf-8") as f:
            self.xml = f.read()
        self.app = parse_application(self.xml)
        self.derived = derive(self.app)

    def test_application(self) -> None:
        self.assertEqual(self.app.name, "DemoApp")
        self.assertEqual(self.app.xml, self.xml)
        self.assertEqual([n.name for n in self.app.nodes], ["node1"])

    def test_replica_group(self) -> None:
        group = self.derived.replica_groups["HelloGroup"]
        self.assertEqual(group.policy, LoadBalancing("round-robin", 0, "1"))
        self.assertEqual(group.objects, (ObjectDescriptor("hello", "::Demo::Hello"),))

    def test_adapters(self) -> None:
        self.assertEqual(
            self.derived.adapters,
            {
                "HelloServer-1.Hello": DeployedAdapter(
                    "HelloServer-1.Hello", "HelloServer-1", "node1", "HelloGroup", 0
                ),
                "HelloServer-2.Hello": DeployedAdapter(
                    "HelloServer-2.Hello", "HelloServer-2", "node1", "HelloGroup", 0
                ),
            },
        )

    def test_well_known_object(self) -> None:
        """C{hello} resolves through the replica group."""
        self.assertEqual(
            self.derived.objects,
            {
                Identity("hello"): (
                    Proxy(Identity("hello"), adapter_id="HelloGroup"),
                    "::Demo::Hello",
                ),
            },
        )

    def test_servers(self) -> None:
        """Each template instance is a server with its own substituted values."""
        self.assertEqual(sorted(self.derived.servers), ["HelloServer-1", "HelloServer-2"])
        deployed = self.derived.servers["HelloServer-2"]
        self.assertEqual(deployed.node, "node1")
        s = deployed.descriptor
        self.assertEqual(s.exe, "python3")
        self.assertEqual(s.activation, "on-demand")
        self.assertEqual((s.activation_timeout, s.deactivation_timeout), (10, 5))
        self.assertIn("HelloServer-2.Hello@HelloGroup", s.options)
        self.assertEqual(s.options[s.options.index("--name") + 1], "HelloServer-2")
        self.assertEqual(s.envs, ("PYTHONUNBUFFERED=1",))
        self.assertEqual(s.adapters[0].endpoints, "tcp -h 127.0.0.1")


class ServerTests(SynchronousTestCase):
    """Servers and adapters, with IceGrid's defaults."""

    def test_defaults(self) -> None:
        self.assertEqual(server(), ServerDescriptor("S", "run"))

    def test_adapter_defaults(self) -> None:
        """The id defaults to C{server.adapter}, endpoints to C{default}."""
        s = server('<adapter name="Hello"/>')
        self.assertEqual(s.adapters, (AdapterDescriptor("Hello", "S.Hello", "default"),))

    def test_everything(self) -> None:
        s = server(
            "<description>d</description><option>-v</option><option> two words </option>"
            '<env>A=b=c</env><property name="P" value="1"/>'
            '<adapter name="Ad" id="X" endpoints="tcp" priority="-2" server-lifetime="false">'
            '<description>ignored</description><allocatable identity="cat/a" type="::A" '
            'property="Ad.Allocatable"/>'
            '<object identity="cat/o" type="::T" property="Ad.Identity"/></adapter>'
            '<log path="app.log"/><log path="${server}.trace"/>',
            'id="S" exe="run" pwd="/tmp" activation="always" activation-timeout="7" '
            'deactivation-timeout="8" user="svc"',
        )
        self.assertEqual(
            s,
            ServerDescriptor(
                "S",
                "run",
                "/tmp",
                ("-v", " two words "),
                ("A=b=c",),
                "always",
                7,
                8,
                (("P", "1"),),
                (
                    AdapterDescriptor(
                        "Ad",
                        "X",
                        "tcp",
                        "",
                        -2,
                        False,
                        (ObjectDescriptor("cat/o", "::T", "Ad.Identity"),),
                        (ObjectDescriptor("cat/a", "::A", "Ad.Allocatable"),),
                    ),
                ),
                "d",
                "svc",
                logs=("app.log", "S.trace"),
            ),
        )

    def test_adapter_objects_resolve_through_adapter(self) -> None:
        derived = derive(
            parse(
                '<node name="n"><server id="S" exe="x"><adapter name="A">'
                '<object identity="o1" type="::T"/></adapter></server></node>'
            )
        )
        self.assertEqual(
            derived.objects[Identity("o1")], (Proxy(Identity("o1"), adapter_id="S.A"), "::T")
        )

    def test_same_node_twice(self) -> None:
        """Like IceGrid, two elements naming one node are one node."""
        app = parse(
            '<node name="n"><variable name="v" value="1"/><server id="A" exe="${v}"/>'
            '</node><node name="n"><server id="B" exe="${v}"/></node>'
        )
        self.assertEqual([(s.id, s.exe) for s in app.nodes[0].servers], [("A", "1"), ("B", "1")])


class VariableTests(SynchronousTestCase):
    """C{${name}} substitution, with IceGrid's scoping."""

    def test_levels_and_builtins(self) -> None:
        app = parse(
            '<variable name="a" value="A"/>'
            '<node name="n1"><variable name="b" value="${a}B"/>'
            '<server id="S-${node}" exe="x">'
            '<variable name="c" value="${b}C"/>'
            "<option>${application}/${node}/${server}/${c}</option>"
            "</server></node>"
        )
        s = app.nodes[0].servers[0]
        self.assertEqual((s.id, s.options), ("S-n1", ("App/n1/S-n1/ABC",)))
        self.assertEqual(app.variables, (("a", "A"),))

    def test_substituted_where_used(self) -> None:
        """An application variable may mention C{${server}}."""
        s = (
            parse(
                '<variable name="dir" value="/data/${server}"/>'
                '<node name="n"><server id="S" exe="x" pwd="${dir}"/></node>'
            )
            .nodes[0]
            .servers[0]
        )
        self.assertEqual(s.pwd, "/data/S")

    def test_inner_definition_wins(self) -> None:
        s = (
            parse(
                '<variable name="v" value="app"/><node name="n"><variable name="v" value="node"/>'
                '<server id="S" exe="${v}"/></node>'
            )
            .nodes[0]
            .servers[0]
        )
        self.assertEqual(s.exe, "node")

    def test_escape(self) -> None:
        self.assertEqual(server("<option>$${x} $y $</option>").options, ("${x} $y $",))

    def test_runtime_variables_left_for_the_node(self) -> None:
        s = server("<option>${node.os}</option><option>${server.data}</option>")
        self.assertEqual(s.options, ("${node.os}", "${node.data}/servers/S/data"))

    def test_undefined(self) -> None:
        e = self.assertRaises(DescriptorError, server, "<option>${nope}</option>")
        self.assertIn("undefined variable 'nope'", str(e))
        self.assertIn("server[S]/option", str(e))

    def test_cycle(self) -> None:
        e = self.assertRaises(
            DescriptorError,
            parse,
            '<variable name="a" value="${b}"/><variable name="b" value="${a}"/>'
            '<node name="n"><server id="S" exe="${a}"/></node>',
        )
        self.assertIn("refers to itself", str(e))

    def test_unterminated(self) -> None:
        e = self.assertRaises(DescriptorError, server, "<option>${oops</option>")
        self.assertIn("unterminated", str(e))

    def test_reserved_and_duplicate_names(self) -> None:
        for body in (
            '<variable name="server" value="x"/>',
            '<variable name="v"/><variable name="v"/>',
        ):
            self.assertRaises(DescriptorError, parse, body)

    def test_expansion_cap(self) -> None:
        """Variables that double at each level cannot blow up memory."""
        body = '<variable name="v0" value="xxxxxxxxxxxxxxxx"/>'
        body += "".join(
            f'<variable name="v{i}" value="${{v{i - 1}}}${{v{i - 1}}}"/>' for i in range(1, 40)
        )
        body += '<node name="n"><server id="S" exe="${v39}"/></node>'
        e = self.assertRaises(DescriptorError, parse, body)
        self.assertIn("expands the descriptor too much", str(e))


TEMPLATE = """
<server-template id="T">
  <parameter name="index"/>
  <parameter name="where" default="${node}-default"/>
  <server id="T-${index}" exe="x">
    <option>${where}</option>
    <property name="P" value="template"/>
  </server>
</server-template>
"""


class TemplateTests(SynchronousTestCase):
    """Server templates and their instances."""

    def test_instances(self) -> None:
        app = parse(
            TEMPLATE + '<node name="n"><server-instance template="T" index="1"/>'
            '<server-instance template="T" index="2" where="here">'
            '<properties><property name="P" value="instance"/></properties>'
            "</server-instance></node>"
        )
        one, two = app.nodes[0].servers
        self.assertEqual(
            (one.id, one.options, one.properties), ("T-1", ("n-default",), (("P", "template"),))
        )
        # The instance's properties come last, so they win.
        self.assertEqual(
            (two.id, two.options, two.properties),
            ("T-2", ("here",), (("P", "template"), ("P", "instance"))),
        )

    def test_errors(self) -> None:
        cases = {
            '<server-instance template="Nope"/>': "unknown server template 'Nope'",
            '<server-instance template="T"/>': "needs parameter index",
            '<server-instance template="T" index="1" bad="2"/>': "has no parameter bad",
        }
        for instance, message in cases.items():
            e = self.assertRaises(
                DescriptorError, parse, TEMPLATE + f'<node name="n">{instance}</node>'
            )
            self.assertIn(message, str(e))
            self.assertIn("node[n]/server-instance", str(e))

    def test_error_inside_template_names_instance(self) -> None:
        e = self.assertRaises(
            DescriptorError,
            parse,
            '<server-template id="T"><parameter name="p"/>'
            '<server id="S${p}" exe="x" activation="sometimes"/></server-template>'
            '<node name="n"><server-instance template="T" p="1"/></node>',
        )
        self.assertIn("server-instance[T] -> server-template[T]/server[S1]", str(e))
        self.assertIn("unknown activation mode 'sometimes'", str(e))


class PropertySetTests(SynchronousTestCase):
    """Named property sets and references, in IceGrid's order."""

    def test_references_come_first(self) -> None:
        app = parse(
            '<properties id="base"><property name="A" value="base"/>'
            '<property name="B" value="${application}"/></properties>'
            '<node name="n"><properties id="nb"><properties refid="base"/>'
            '<property name="E" value="${node}"/></properties>'
            '<server id="s1" exe="x"><property name="A" value="own"/>'
            '<properties><properties refid="nb"/><property name="C" value="c"/></properties>'
            '<property name="D" value="d"/></server></node>'
        )
        self.assertEqual(
            app.nodes[0].servers[0].properties,
            (("A", "base"), ("B", "App"), ("E", "n"), ("A", "own"), ("C", "c"), ("D", "d")),
        )

    def test_unknown_reference(self) -> None:
        e = self.assertRaises(
            DescriptorError, server, '<properties><properties refid="nope"/></properties>'
        )
        self.assertIn("property set 'nope'", str(e))


class ReplicaGroupTests(SynchronousTestCase):
    def test_default_policy(self) -> None:
        app = parse('<replica-group id="G"/>')
        self.assertEqual(app.replica_groups[0].policy, LoadBalancing("random", 0, "1"))

    def test_adaptive(self) -> None:
        app = parse(
            '<replica-group id="G"><description>d</description>'
            '<load-balancing type="adaptive" n-replicas="2" load-sample="15"/>'
            "</replica-group>"
        )
        group = app.replica_groups[0]
        self.assertEqual(
            (group.policy, group.description), (LoadBalancing("adaptive", 2, "15"), "d")
        )

    def test_members(self) -> None:
        derived = derive(parse(GROUP_AND_TWO_SERVERS))
        self.assertEqual(derived.adapters["A.Ad"].replica_group_id, "G")
        self.assertEqual(derived.adapters["B-adapter"].priority, 3)
        self.assertEqual(derived.objects[Identity("obj")][0].adapter_id, "G")


class ValidationTests(SynchronousTestCase):
    """Every invalid descriptor is refused with a message saying where and why."""

    def assert_refused(self, xml: str, *fragments: str) -> DescriptorError:
        e = self.assertRaises(DescriptorError, parse_application, xml)
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        return e

    def test_line_and_path(self) -> None:
        e = self.assert_refused(
            app_xml(
                '<node name="n1">\n<server id="S" exe="x">\n<adapter name="A" priority="high"/>'
                "\n</server>\n</node>"
            ),
            "priority must be an integer, not 'high'",
        )
        self.assertEqual(e.line, 5)
        self.assertEqual(e.path, "icegrid/application[App]/node[n1]/server[S]/adapter[A]")
        self.assertEqual(
            str(e),
            "icegrid/application[App]/node[n1]/server[S]/adapter[A], line 5: "
            "priority must be an integer, not 'high'",
        )

    def test_application_name(self) -> None:
        self.assert_refused("<icegrid><application/></icegrid>", "'name'")
        self.assert_refused('<icegrid><application name=""/></icegrid>', "'name'")

    def test_structure(self) -> None:
        self.assert_refused("<grid/>", "root element must be <icegrid>")
        self.assert_refused("<icegrid/>", "exactly one <application>")
        self.assert_refused(app_xml("<nodes/>"), "unknown element <nodes> in <application>")
        self.assert_refused(app_xml('<node name="n" colour="red"/>'), "unknown attribute 'colour'")
        self.assert_refused(
            app_xml('<node name="n"><icebox id="I" exe="x"/></node>'), "<icebox> is not supported"
        )
        self.assert_refused(
            app_xml('<replica-group id="G">text</replica-group>'),
            "unexpected text in <replica-group>",
        )

    def test_duplicates(self) -> None:
        self.assert_refused(
            app_xml(
                '<node name="a"><server id="S" exe="x"/></node>'
                '<node name="b"><server id="S" exe="x"/></node>'
            ),
            "duplicate server id 'S'",
            "node[b]/server[S]",
        )
        self.assert_refused(
            app_xml(
                '<node name="a"><server id="S1" exe="x"><adapter name="A" id="X"/></server>'
                '<server id="S2" exe="x"><adapter name="B" id="X"/></server></node>'
            ),
            "duplicate adapter id 'X'",
            "first at line 3",
        )
        self.assert_refused(
            app_xml(
                '<replica-group id="G"><object identity="o"/></replica-group>'
                '<node name="n"><server id="S" exe="x"><adapter name="A">'
                '<object identity="o"/></adapter></server></node>'
            ),
            "duplicate object identity 'o'",
        )
        self.assert_refused(
            app_xml('<replica-group id="G"/><replica-group id="G"/>'), "duplicate replica group 'G'"
        )
        self.assert_refused(
            app_xml(
                '<node name="n"><server id="S" exe="x"><adapter name="A"/>'
                '<adapter name="A" id="other"/></server></node>'
            ),
            "duplicate adapter name 'A'",
        )

    def test_replica_group_references(self) -> None:
        self.assert_refused(
            app_xml(
                '<node name="n"><server id="S" exe="x"><adapter name="A" '
                'replica-group="Nope"/></server></node>'
            ),
            "unknown replica group 'Nope'",
        )
        self.assert_refused(
            app_xml(
                '<replica-group id="G"/><node name="n"><server id="S" exe="x">'
                '<adapter name="A" id="G"/></server></node>'
            ),
            "adapter id 'G' is already a replica group id",
        )

    def test_bad_values(self) -> None:
        def group(policy: str) -> str:
            return f'<replica-group id="G"><load-balancing {policy}/></replica-group>'

        def node(server: str) -> str:
            return f'<node name="n">{server}</node>'

        cases = [
            (group('type="fastest"'), "unknown load-balancing type 'fastest'"),
            (group('type="Random"'), "unknown load-balancing type 'Random'"),
            (group('type="random" n-replicas="-1"'), "n-replicas must be at least 0"),
            (group('type="random" n-replicas="two"'), "n-replicas must be an integer"),
            (group('type="adaptive" load-sample="2"'), "load-sample must be 1, 5 or 15"),
            (group('type="random" load-sample="5"'), "unknown attribute 'load-sample'"),
            (
                '<replica-group id="G"><object identity="a/b/c"/></replica-group>',
                "invalid object identity 'a/b/c'",
            ),
            (
                node('<server id="S" exe="x" activation="ondemand"/>'),
                "unknown activation mode 'ondemand'",
            ),
            (
                node('<server id="S" exe="x" activation-timeout="soon"/>'),
                "activation-timeout must be an integer",
            ),
            (
                node('<server id="S" exe="x" deactivation-timeout="-1"/>'),
                "deactivation-timeout must be at least 0",
            ),
            (
                node('<server id="S" exe="x"><adapter name="A" server-lifetime="yes"/></server>'),
                "server-lifetime must be 'true' or 'false'",
            ),
            (
                node('<server id="S" exe="x"><adapter name="A" priority="99999999999"/></server>'),
                "priority must be an integer",
            ),
            (
                node('<server id="S" exe="x"><env>NOVALUE</env></server>'),
                "<env> must read NAME=VALUE",
            ),
            (node('<server id="S" exe=""/>'), "non-empty 'exe'"),
        ]
        for body, message in cases:
            self.assert_refused(app_xml(body), message)

    def test_malformed_xml(self) -> None:
        e = self.assert_refused(
            "<icegrid>\n<application name='a'>\n</icegrid>", "malformed XML", "mismatched tag"
        )
        self.assertEqual(e.line, 3)


class HardenedParserTests(SynchronousTestCase):
    """Descriptors come over the network: the parser must not be a weapon."""

    def test_billion_laughs(self) -> None:
        xml = (
            '<?xml version="1.0"?>\n<!DOCTYPE icegrid [\n<!ENTITY a "aaaaaaaaaa">\n'
            + "".join(
                f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(8)
            )
            + ']>\n<icegrid><application name="&i;"/></icegrid>'
        )
        e = self.assertRaises(DescriptorError, parse_application, xml)
        self.assertIn("forbidden XML", str(e))

    def test_any_dtd(self) -> None:
        """A DTD is refused even when it declares nothing dangerous."""
        xml = '<!DOCTYPE x [<!ENTITY e "x">]><icegrid/>'
        self.assertIn(
            "forbidden XML", str(self.assertRaises(DescriptorError, parse_application, xml))
        )

    def test_external_entity(self) -> None:
        xml = (
            '<?xml version="1.0"?>\n<!DOCTYPE icegrid [<!ENTITY x SYSTEM '
            '"file:///etc/passwd">]>\n<icegrid><application name="&x;"/></icegrid>'
        )
        self.assertRaises(DescriptorError, parse_application, xml)

    def test_size_cap(self) -> None:
        padding = "<!-- " + "x" * MAX_DESCRIPTOR_BYTES + " -->"
        e = self.assertRaises(DescriptorError, parse_application, app_xml(padding))
        self.assertIn("larger than", str(e))


class StorageTests(SynchronousTestCase):
    """Applications are stored as their XML and come back identical."""

    def test_round_trip(self) -> None:
        with open(DEMO_APP, encoding="utf-8") as f:
            app = parse_application(f.read())
        record = application_to_json(app)
        self.assertEqual(record, {"name": "DemoApp", "xml": app.xml})
        self.assertEqual(application_from_json(record), app)

    def test_bad_records(self) -> None:
        xml = app_xml("", name="A")
        for record in [{}, {"name": "A"}, {"name": 1, "xml": xml}, {"name": "B", "xml": xml}]:
            self.assertRaises(DescriptorError, application_from_json, record)


class ConflictTests(SynchronousTestCase):
    """Applications may not claim each other's ids."""

    def derived(self, body: str, name: str):  # type: ignore[no-untyped-def]
        return derive(parse(body, name))

    def test_independent(self) -> None:
        first = self.derived(GROUP_AND_TWO_SERVERS, "One")
        other = self.derived('<node name="n1"><server id="C" exe="c"/></node>', "Two")
        check_conflicts(other, [first])

    def test_conflicts(self) -> None:
        first = self.derived(GROUP_AND_TWO_SERVERS, "One")
        cases = {
            '<node name="n"><server id="A" exe="x"/></node>': "server id 'A'",
            '<node name="n"><server id="Z" exe="x"><adapter name="Ad" id="A.Ad"/></server>'
            "</node>": "adapter id 'A.Ad'",
            '<replica-group id="B-adapter"/>': "adapter id 'B-adapter'",
            '<node name="n"><server id="Z" exe="x"><adapter name="G" id="G"/></server></node>': (
                "adapter id 'G'"
            ),
            '<replica-group id="H"><object identity="obj"/></replica-group>': (
                "object identity 'obj'"
            ),
        }
        for body, message in cases.items():
            e = self.assertRaises(
                DescriptorError, check_conflicts, self.derived(body, "Two"), [first]
            )
            self.assertIn(message, str(e))
            self.assertIn("already used by application 'One'", str(e))

    def test_same_name(self) -> None:
        first = self.derived("", "One")
        e = self.assertRaises(DescriptorError, check_conflicts, self.derived("", "One"), [first])
        self.assertIn("already exists", str(e))

    def test_update_keeps_own_ids(self) -> None:
        old = self.derived(GROUP_AND_TWO_SERVERS, "One")
        new = self.derived(GROUP_AND_TWO_SERVERS.replace('exe="a"', 'exe="a2"'), "One")
        other = self.derived('<node name="n"><server id="C" exe="x"/></node>', "Two")
        check_update(old, new, [old, other])

    def test_update_conflict(self) -> None:
        old = self.derived("", "One")
        new = self.derived('<node name="n"><server id="C" exe="x"/></node>', "One")
        other = self.derived('<node name="n"><server id="C" exe="x"/></node>', "Two")
        self.assertRaises(DescriptorError, check_update, old, new, [other])

    def test_update_renamed(self) -> None:
        self.assertRaises(
            DescriptorError, check_update, self.derived("", "One"), self.derived("", "Two"), []
        )


class DeriveTests(SynchronousTestCase):
    """L{derive} checks hand-built descriptors the parser never saw."""

    def test_duplicate_adapter(self) -> None:
        adapter = AdapterDescriptor("A", "X")
        app = ApplicationDescriptor(
            "App",
            nodes=(
                NodeDescriptor(
                    "n",
                    (
                        ServerDescriptor("S1", "x", adapters=(adapter,)),
                        ServerDescriptor("S2", "x", adapters=(adapter,)),
                    ),
                ),
            ),
        )
        self.assertIn(
            "duplicate adapter id 'X'", str(self.assertRaises(DescriptorError, derive, app))
        )

    def test_unknown_group(self) -> None:
        app = ApplicationDescriptor(
            "App",
            nodes=(
                NodeDescriptor(
                    "n",
                    (
                        ServerDescriptor(
                            "S", "x", adapters=(AdapterDescriptor("A", "X", replica_group_id="G"),)
                        ),
                    ),
                ),
            ),
        )
        self.assertIn(
            "unknown replica group 'G'", str(self.assertRaises(DescriptorError, derive, app))
        )


FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def mutated_demo(draw: st.DrawFn) -> str:
    """The demo descriptor with a few characters deleted, replaced or inserted."""
    with open(DEMO_APP, encoding="utf-8") as f:
        text = f.read()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = (
            text[:at]
            + draw(
                st.sampled_from(
                    ["", '"', "<", ">", "/", "$", "${", "}", "&", "x", " ", "\x00", "-1"]
                )
            )
            + text[at + cut :]
        )
    return text


class FuzzTests(SynchronousTestCase):
    """Whatever an administrator uploads, the registry sees only L{DescriptorError}."""

    @FUZZ
    @given(mutated_demo())
    def test_mutated_demo(self, text: str) -> None:
        try:
            derive(parse_application(text))
        except DescriptorError:
            pass

    @FUZZ
    @given(st.text(max_size=200))
    def test_any_text(self, text: str) -> None:
        try:
            parse_application(text)
        except DescriptorError:
            pass


class ServerJsonTests(SynchronousTestCase):
    """What a replica sends a node: a server descriptor survives JSON unchanged."""

    def test_round_trip(self) -> None:
        import json

        from gridreg.registry.descriptors import server_from_json, server_to_json

        s = server(
            '<option>-v</option><env>A=b</env><property name="P" value="1"/>'
            '<adapter name="Ad" endpoints="tcp"><object identity="o" type="::T"/></adapter>',
            'id="S" exe="run" activation="on-demand" user="svc"',
        )
        self.assertEqual(server_from_json(json.loads(json.dumps(server_to_json(s)))), s)

    def test_malformed(self) -> None:
        from gridreg.registry.descriptors import DescriptorError, server_from_json

        with self.assertRaises(DescriptorError):
            server_from_json({"id": "S"})


class AllocatableTests(SynchronousTestCase):
    """
    C{<allocatable>} objects of adapters and C{allocatable="true"} servers,
    which allocation sessions use (L{gridreg.registry.allocation}).
    """

    XML = """
    <replica-group id="G"><object identity="rg" type="::T"/></replica-group>
    <node name="n1">
      <server id="S" exe="s" allocatable="true">
        <adapter name="Ad">
          <allocatable identity="cat/a1" type="::A" property="Ad.A1"/>
          <object identity="wk" type="::A"/>
        </adapter>
      </server>
      <server id="P" exe="p">
        <adapter name="Ad"><allocatable identity="a2" type="::A"/></adapter>
      </server>
    </node>
    """

    def test_parsed(self) -> None:
        s, p = parse(self.XML).nodes[0].servers
        self.assertTrue(s.allocatable)
        self.assertFalse(p.allocatable)
        self.assertEqual(s.adapters[0].allocatables, (ObjectDescriptor("cat/a1", "::A", "Ad.A1"),))
        self.assertEqual(s.adapters[0].objects, (ObjectDescriptor("wk", "::A"),))

    def test_derived_apart_from_well_known_objects(self) -> None:
        """
        Allocatable objects are not well-known: IceGrid's C{findObjectById}
        of one answers null and C{findAllObjectsByType} leaves them out.
        """
        derived = derive(parse(self.XML))
        a1, a2 = Identity("a1", "cat"), Identity("a2", "")
        self.assertEqual(set(derived.objects), {Identity("rg", ""), Identity("wk", "")})
        self.assertEqual(
            derived.allocatables[a1],
            (Proxy(a1, adapter_id="S.Ad"), "::A", "S", True),
        )
        proxy, type_id, server_id, allocatable_server = derived.allocatables[a2]
        self.assertEqual(
            (proxy.adapter_id, type_id, server_id, allocatable_server), ("P.Ad", "::A", "P", False)
        )

    def test_identity_shared_with_well_known_objects(self) -> None:
        e = self.assertRaises(
            DescriptorError,
            parse,
            '<node name="n1"><server id="S" exe="s"><adapter name="Ad">'
            '<object identity="x"/><allocatable identity="x"/></adapter></server></node>',
        )
        self.assertIn("duplicate object identity 'x'", str(e))

    def test_hand_built_duplicate(self) -> None:
        adapter = AdapterDescriptor(
            "A", "X", objects=(ObjectDescriptor("x"),), allocatables=(ObjectDescriptor("x"),)
        )
        app = ApplicationDescriptor(
            "App", nodes=(NodeDescriptor("n", (ServerDescriptor("S", "x", adapters=(adapter,)),)),)
        )
        self.assertIn(
            "duplicate object identity 'x'", str(self.assertRaises(DescriptorError, derive, app))
        )

    def test_conflict_between_applications(self) -> None:
        first = derive(parse(self.XML, "One"))
        second = derive(
            parse(
                '<node name="n2"><server id="Q" exe="q"><adapter name="Ad">'
                '<object identity="a2"/></adapter></server></node>',
                "Two",
            )
        )
        e = self.assertRaises(DescriptorError, check_conflicts, second, [first])
        self.assertIn("object identity 'a2' is already used by application 'One'", str(e))

    def test_not_in_replica_group(self) -> None:
        """IceGrid: "the <allocatable> element can only be a child of an <adapter> element"."""
        e = self.assertRaises(
            DescriptorError,
            parse,
            '<replica-group id="G"><allocatable identity="x"/></replica-group>',
        )
        self.assertIn("unknown element <allocatable> in <replica-group>", str(e))

    def test_allocatable_attribute_is_boolean(self) -> None:
        e = self.assertRaises(DescriptorError, server, "", 'id="S" exe="s" allocatable="yes"')
        self.assertIn("allocatable must be 'true' or 'false'", str(e))

    def test_allocatable_attribute_substituted(self) -> None:
        app = parse(
            '<variable name="alloc" value="true"/>'
            '<node name="n1"><server id="S" exe="s" allocatable="${alloc}"/></node>'
        )
        self.assertTrue(app.nodes[0].servers[0].allocatable)

    def test_json_round_trip(self) -> None:
        """A node gets allocatables too: their C{property} is set on the server."""
        import json

        from gridreg.registry.descriptors import server_from_json, server_to_json

        s = parse(self.XML).nodes[0].servers[0]
        self.assertEqual(server_from_json(json.loads(json.dumps(server_to_json(s)))), s)
