# -*- test-case-name: tests.test_application_update -*-
"""
Application updates (C{ApplicationUpdateDescriptor} applied and diffed),
the restarts an update without restart refuses, and the application
metadata (uuid, revision, who and when) kept with every write, over the
Ice admin and replicated to slaves.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.classes import COMPACT, SLICED, StructOf, ValueReader, ValueWriter
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import ApplicationNotExistException, DeploymentException
from gridreg.ice.types import Identity
from gridreg.registry import _descriptor_slice_types as S
from gridreg.registry._descriptor_update_types import (
    ApplicationUpdateDescriptor,
    ApplicationUpdateInfo,
    BoxedString,
    NodeUpdateDescriptor,
)
from gridreg.registry.application_metadata import ApplicationMetadata, legacy_uuid
from gridreg.registry.application_update import (
    apply_update,
    diff,
    instance_id,
    instantiate,
    update_info,
)
from gridreg.registry.applications import APPLICATION
from gridreg.registry.descriptor_slice import (
    read_application_update,
    slice_to_xml,
    write_application_update_info,
    xml_to_slice,
)
from gridreg.registry.descriptors import DescriptorError, derive, parse_application
from gridreg.registry.update_restarts import servers_to_stop
from gridreg.store.records import Mutation
from tests._ice_values import dump, icepy_available, icepy_decode
from tests.test_ice_admin import IDEMPOTENT, NORMAL, Client, make_registry, strings
from tests.test_replication import Grid

SERVER = "<server id='{id}' exe='/bin/sleep' activation='manual'>{body}</server>"

OLD = (
    "<icegrid><application name='App'>"
    "<description>first</description>"
    "<variable name='port' value='9'/><variable name='gone' value='x'/>"
    "<properties id='Shared'><property name='A' value='1'/></properties>"
    "<server-template id='T'><parameter name='n'/><parameter name='tag' default='t'/>"
    "<server id='t-${n}' exe='/bin/sleep' activation='manual'>"
    "<property name='Tag' value='${tag}'/></server></server-template>"
    "<replica-group id='RG'><load-balancing type='random'/></replica-group>"
    "<replica-group id='Old'/>"
    "<node name='n1'><variable name='where' value='here'/>"
    "<server-instance template='T' n='1'/><server-instance template='T' n='2'/>"
    + SERVER.format(id="a", body="<property name='P' value='1'/>")
    + SERVER.format(id="b", body="<option>x</option>")
    + "</node><node name='n2'>"
    + SERVER.format(id="c", body="")
    + "</node></application></icegrid>"
)

NEW = (
    "<icegrid><application name='App'>"
    "<description>second</description>"
    "<variable name='port' value='10'/><variable name='added' value='y'/>"
    "<properties id='Shared'><property name='A' value='2'/></properties>"
    "<server-template id='T'><parameter name='n'/><parameter name='tag' default='t'/>"
    "<server id='t-${n}' exe='/bin/sleep' activation='manual'>"
    "<property name='Tag' value='${tag}'/></server></server-template>"
    "<replica-group id='RG'><load-balancing type='round-robin'/></replica-group>"
    "<replica-group id='New'/>"
    "<node name='n1' load-factor='2'><description>node one</description>"
    "<server-instance template='T' n='1' tag='u'/>"
    + SERVER.format(id="a", body="<property name='P' value='2'/>")
    + SERVER.format(id="b", body="<option>x</option>")
    + SERVER.format(id="d", body="")
    + "</node><node name='n3'>"
    + SERVER.format(id="e", body="")
    + "</node></application></icegrid>"
)


def server(app: S.ApplicationDescriptor, node: str, server_id: str) -> S.ServerDescriptor:
    (found,) = [s for s in app.nodes[node].servers if s.id == server_id]
    return found


class ApplyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.old = xml_to_slice(OLD)

    def test_application_level(self) -> None:
        update = ApplicationUpdateDescriptor(
            name="App",
            description=BoxedString("changed"),
            variables={"port": "11", "more": "z"},
            removeVariables=["gone"],
            removePropertySets=["Shared"],
            replicaGroups=[S.ReplicaGroupDescriptor("RG", S.OrderedLoadBalancingPolicy("1"))],
            removeReplicaGroups=["Old", "NotThere"],
            removeNodes=["n2", "NotThere"],
        )
        new = apply_update(self.old, update)
        self.assertEqual(new.description, "changed")
        self.assertEqual(new.variables, {"port": "11", "more": "z"})
        self.assertEqual(new.propertySets, {})
        self.assertEqual([g.id for g in new.replicaGroups], ["RG"])
        self.assertIsInstance(new.replicaGroups[0].loadBalancing, S.OrderedLoadBalancingPolicy)
        self.assertEqual(list(new.nodes), ["n1"])
        # the deployed descriptor is left as it was
        self.assertEqual(self.old, xml_to_slice(OLD))

    def test_unboxed_members_are_unchanged(self) -> None:
        new = apply_update(self.old, ApplicationUpdateDescriptor(name="App"))
        self.assertEqual(new, self.old)

    def test_node_servers_by_id(self) -> None:
        """A server or instance replaces whichever entry has its id; removeServers names either."""
        replacement = copy.deepcopy(server(self.old, "n1", "b"))
        replacement.options = ["y"]
        instance_as_server = S.ServerDescriptor(id="t-2", exe="/bin/true", activation="manual")
        update = ApplicationUpdateDescriptor(
            name="App",
            nodes=[
                NodeUpdateDescriptor(
                    "n1",
                    description=BoxedString("one"),
                    loadFactor=BoxedString("3"),
                    variables={"extra": "e"},
                    removeVariables=["where"],
                    servers=[replacement, instance_as_server],
                    serverInstances=[S.ServerInstanceDescriptor("T", {"n": "1", "tag": "v"})],
                    removeServers=["a"],
                ),
                NodeUpdateDescriptor("n9", servers=[S.ServerDescriptor(id="z", exe="/bin/true")]),
            ],
        )
        new = apply_update(self.old, update)
        n1 = new.nodes["n1"]
        self.assertEqual((n1.description, n1.loadFactor), ("one", "3"))
        self.assertEqual(n1.variables, {"extra": "e"})
        self.assertEqual([s.id for s in n1.servers], ["b", "t-2"])
        self.assertEqual(server(new, "n1", "b").options, ["y"])
        self.assertEqual([x.parameterValues for x in n1.serverInstances], [{"n": "1", "tag": "v"}])
        self.assertEqual([s.id for s in new.nodes["n9"].servers], ["z"])
        derived = derive(parse_application(slice_to_xml(new)))
        self.assertEqual(sorted(derived.servers), ["b", "c", "t-1", "t-2", "z"])
        self.assertEqual(derived.servers["t-2"].descriptor.exe, "/bin/true")

    def test_instance_id(self) -> None:
        instance = S.ServerInstanceDescriptor("T", {"n": "${where}-1"})
        self.assertEqual(instance_id(self.old, "n1", instance), "t-here-1")
        self.assertIsNone(instance_id(self.old, "n1", S.ServerInstanceDescriptor("Nope")))

    def test_instantiate(self) -> None:
        new = instantiate(self.old, "n2", S.ServerInstanceDescriptor("T", {"n": "3"}))
        self.assertIn("t-3", derive(parse_application(slice_to_xml(new))).servers)
        with self.assertRaises(DescriptorError) as e:
            instantiate(self.old, "n1", S.ServerInstanceDescriptor("T", {"n": "2"}))
        self.assertEqual(str(e.exception), "node `n1':\nduplicate server `t-2' in node `n1'")
        with self.assertRaises(DescriptorError) as e:
            instantiate(self.old, "n1", S.ServerInstanceDescriptor("X"))
        self.assertEqual(str(e.exception), "unknown server template `X'")


class DiffTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        old, new = xml_to_slice(OLD), xml_to_slice(NEW)
        update = diff(old, new)
        self.assertEqual(apply_update(old, update), new)
        self.assertEqual(diff(new, old).name, "App")
        self.assertEqual(apply_update(new, diff(new, old)), old)

    def test_only_changes(self) -> None:
        update = diff(xml_to_slice(OLD), xml_to_slice(NEW))
        self.assertEqual(update.description, BoxedString("second"))
        self.assertIsNone(update.distrib)
        self.assertEqual(update.variables, {"port": "10", "added": "y"})
        self.assertEqual(update.removeVariables, ["gone"])
        self.assertEqual(list(update.propertySets), ["Shared"])
        self.assertEqual(update.serverTemplates, {})
        self.assertEqual([g.id for g in update.replicaGroups], ["RG", "New"])
        self.assertEqual(update.removeReplicaGroups, ["Old"])
        self.assertEqual(update.removeNodes, ["n2"])
        n1, n3 = update.nodes
        self.assertEqual((n1.name, n3.name), ("n1", "n3"))
        self.assertEqual([s.id for s in n1.servers], ["a", "d"])  # b is unchanged
        self.assertEqual([x.parameterValues["tag"] for x in n1.serverInstances], ["u"])
        self.assertEqual(n1.removeServers, ["t-2"])
        self.assertEqual(n1.removeVariables, ["where"])
        self.assertEqual(
            (n1.loadFactor, n1.description), (BoxedString("2"), BoxedString("node one"))
        )

    def test_nothing_changed(self) -> None:
        self.assertEqual(
            diff(xml_to_slice(OLD), xml_to_slice(OLD)), ApplicationUpdateDescriptor(name="App")
        )

    def test_update_info_on_the_wire(self) -> None:
        """What observers get: written and read back through the class codec, both formats."""
        info = update_info(OLD, NEW, 1234, "alice", 7)
        self.assertEqual((info.updateTime, info.updateUser, info.revision), (1234, "alice", 7))
        for format in (COMPACT, SLICED):
            out = OutputStream()
            write_application_update_info(out, info, format)
            reader = ValueReader(InputStream(out.getvalue()))
            back = reader.read(StructOf(ApplicationUpdateInfo))
            reader.read_pending()
            self.assertEqual(back, info)
            self.assertEqual(apply_update(xml_to_slice(OLD), back.descriptor), xml_to_slice(NEW))


class RestartTests(SynchronousTestCase):
    """What IceGrid 3.7.8 refuses without restart (docs/icegrid-node-facts.md)."""

    def servers(self, new_xml: str, running: set[str]) -> list[str]:
        old = derive(parse_application(OLD))
        new = derive(parse_application(new_xml))
        return servers_to_stop(old, new, lambda server_id, node: server_id in running)

    def test_changes(self) -> None:
        option = OLD.replace("<option>x</option>", "<option>y</option>")
        prop = OLD.replace("name='P' value='1'", "name='P' value='2'")
        removed = OLD.replace(SERVER.format(id="c", body=""), "")
        self.assertEqual(self.servers(OLD, {"a", "b", "c"}), [])
        # anything but properties: refused, running or not
        self.assertEqual(self.servers(option, set()), ["b"])
        # properties only: the node gives them to a running server, nothing stops
        self.assertEqual(self.servers(prop, set()), [])
        self.assertEqual(self.servers(prop, {"a"}), [])
        # removal: refused only while it runs
        self.assertEqual(self.servers(removed, set()), [])
        self.assertEqual(self.servers(removed, {"c"}), ["c"])


class MetadataTests(SynchronousTestCase):
    def test_json(self) -> None:
        meta = ApplicationMetadata("U", 1, "a", 2, "b", 3)
        self.assertEqual(ApplicationMetadata.from_json(meta.to_json(), "App"), meta)
        self.assertEqual(meta.updated("c", 5), ApplicationMetadata("U", 1, "a", 5, "c", 4))
        self.assertEqual(
            ApplicationMetadata.from_json(None, "App"), ApplicationMetadata(legacy_uuid("App"))
        )
        self.assertEqual(
            ApplicationMetadata.from_json({"uuid": "U", "revision": "x"}, "App"),
            ApplicationMetadata("U"),
        )
        live = meta.updated("c", 5, live_update=True)
        self.assertEqual(ApplicationMetadata.from_json(live.to_json(), "App"), live)

    def test_kept_by_the_database(self) -> None:
        service = make_registry(self)
        service.reactor.advance(1000.5)
        model = service.admin_model
        self.successResultOf(model.add_application(OLD, user="alice"))
        first = model.application_metadata("App")
        self.assertEqual(len(first.uuid), 36)
        self.assertEqual(first.uuid, first.uuid.upper())
        self.assertEqual(
            (first.create_time, first.create_user, first.update_time, first.update_user),
            (1000500, "alice", 1000500, "alice"),
        )
        self.assertEqual(first.revision, 1)
        service.reactor.advance(1)
        self.successResultOf(model.add_application(NEW, update=True, user="bob"))
        second = model.application_metadata("App")
        self.assertEqual(
            second, ApplicationMetadata(first.uuid, 1000500, "alice", 1001500, "bob", 2)
        )
        self.successResultOf(model.remove_application("App"))
        self.successResultOf(model.add_application(OLD, user="carol"))
        self.assertNotEqual(model.application_metadata("App").uuid, first.uuid)

    def test_without_restart_deploys_live(self) -> None:
        """
        A write without restart is marked so in the replicated metadata, and
        every replica's deployment tells the nodes to give running servers
        their new properties at run time; the next write with restart clears it.
        """
        service = make_registry(self)
        model = service.admin_model
        self.successResultOf(model.add_application(OLD))
        prop = OLD.replace("name='P' value='1'", "name='P' value='2'")
        self.successResultOf(model.add_application(prop, update=True, restart=False))
        self.assertTrue(model.application_metadata("App").live_update)
        plan = service.nodes.plan()
        self.assertTrue(
            plan and all(live for servers in plan.values() for *_, live in servers.values())
        )
        self.successResultOf(model.add_application(OLD, update=True))
        self.assertFalse(model.application_metadata("App").live_update)
        plan = service.nodes.plan()
        self.assertFalse(any(live for servers in plan.values() for *_, live in servers.values()))

    def test_record_without_metadata_loads(self) -> None:
        """A database written before metadata existed: revision 1, a stable uuid, kept."""
        service = make_registry(self)
        old_record = {"name": "App", "xml": OLD}
        self.successResultOf(service.database.commit([Mutation(APPLICATION, "App", old_record)]))
        meta = service.admin_model.application_metadata("App")
        self.assertEqual(meta, ApplicationMetadata(legacy_uuid("App")))
        self.successResultOf(service.admin_model.add_application(NEW, True, "bob"))
        after = service.admin_model.application_metadata("App")
        self.assertEqual((after.uuid, after.revision), (legacy_uuid("App"), 2))

    def test_replicated_to_slaves(self) -> None:
        grid = Grid(self)
        master = grid.start("Master")
        slave = grid.start("Replica1")
        grid.run_until(lambda: "Replica1" in master.master.live_slaves())
        d = master.admin_model.add_application(OLD, user="alice")
        grid.run_until(d)
        d = master.admin_model.add_application(NEW, True, "bob")
        grid.run_until(d)
        meta = master.state.deployed.metadata["App"]
        self.assertEqual(meta.revision, 2)
        self.assertEqual(slave.state.deployed.metadata["App"], meta)
        # a slave that joins later gets it with the snapshot
        late = grid.start("Replica2")
        grid.run_until(lambda: "Replica2" in master.master.live_slaves())
        self.assertEqual(late.state.deployed.metadata["App"], meta)


def encoded_update(update: ApplicationUpdateDescriptor, format: str = COMPACT) -> bytes:
    out = OutputStream()
    writer = ValueWriter(out, format)
    writer.write(StructOf(ApplicationUpdateDescriptor), update)
    writer.write_pending()
    return out.getvalue()


def decoded_info(result: InputStream) -> S.ApplicationInfo:
    reader = ValueReader(result)
    info: S.ApplicationInfo = reader.read(StructOf(S.ApplicationInfo))
    reader.read_pending()
    return info


class IceAdminTests(SynchronousTestCase):
    """C{updateApplication} and friends over the Ice wire, as icegridadmin calls them."""

    def setUp(self) -> None:
        self.service = make_registry(
            self, **{"IceGrid.Registry.AdminPermissionsVerifier": "TG/NullPermissionsVerifier"}
        )
        self.client = Client(self, self.service)
        session = self.client.invoke(
            Identity("Registry", "TG"), "createAdminSession", NORMAL, strings("dave", "p")
        ).read_proxy()
        self.admin = (
            self.client.invoke(session.identity, "getAdmin", IDEMPOTENT).read_proxy().identity
        )
        self.successResultOf(self.service.admin_model.add_application(OLD, user="alice"))

    def call(self, operation: str, params: bytes) -> Any:
        return self.client.invoke(self.admin, operation, NORMAL, params)

    def info(self) -> S.ApplicationInfo:
        return decoded_info(
            self.client.invoke(self.admin, "getApplicationInfo", IDEMPOTENT, strings("App"))
        )

    def test_update(self) -> None:
        self.service.reactor.advance(5)  # within the session and ACM timeouts
        update = diff(xml_to_slice(OLD), xml_to_slice(NEW))
        for format in (COMPACT, SLICED):
            self.assertIsInstance(
                self.call("updateApplication", encoded_update(update, format)), InputStream
            )
        info = self.info()
        self.assertEqual(info.descriptor, xml_to_slice(NEW))
        self.assertEqual((info.createUser, info.updateUser), ("alice", "dave"))
        self.assertEqual((info.updateTime, info.revision), (5000, 3))
        servers = derive(parse_application(self.service.state.applications["App"].xml)).servers
        self.assertEqual(sorted(servers), ["a", "b", "d", "e", "t-1"])

    def test_unknown_application(self) -> None:
        self.assertEqual(
            self.call("updateApplication", encoded_update(ApplicationUpdateDescriptor("Nope"))),
            ApplicationNotExistException("Nope"),
        )

    def test_invalid_result(self) -> None:
        """IceGrid 3.7.8's reason for removing a template an instance uses."""
        update = ApplicationUpdateDescriptor("App", removeServerTemplates=["T"])
        self.assertEqual(
            self.call("updateApplication", encoded_update(update)),
            DeploymentException("unknown server template `T'"),
        )
        self.assertEqual(self.info().revision, 1)

    def test_without_restart(self) -> None:
        """No server runs here: a property change passes, any other change is refused."""
        old = xml_to_slice(OLD)
        props = xml_to_slice(OLD.replace("name='P' value='1'", "name='P' value='3'"))
        self.assertIsInstance(
            self.call("updateApplicationWithoutRestart", encoded_update(diff(old, props))),
            InputStream,
        )
        options = xml_to_slice(OLD.replace("<option>x</option>", "<option>y</option>"))
        self.assertEqual(
            self.call("updateApplicationWithoutRestart", encoded_update(diff(props, options))),
            DeploymentException(
                "check for application `App' update failed:\n"
                "the server `b' would need to be stopped"
            ),
        )
        self.assertEqual(self.info().revision, 2)

    def test_read_only(self) -> None:
        """At a replica that refuses writes, updates are refused as IceGrid refuses them."""
        self.service.role.write_refusal = lambda: "read-only"  # type: ignore[method-assign]
        update = encoded_update(ApplicationUpdateDescriptor("App", BoxedString("x")))
        for operation in ("updateApplication", "updateApplicationWithoutRestart"):
            self.assertEqual(
                self.call(operation, update),
                DeploymentException(
                    "this operation is not allowed on a slave or read-only master registry."
                ),
            )
        self.assertEqual(self.info().revision, 1)

    def test_instantiate_server(self) -> None:
        out = OutputStream()
        out.write_string("App")
        out.write_string("n2")
        writer = ValueWriter(out, COMPACT)
        writer.write(
            StructOf(S.ServerInstanceDescriptor), S.ServerInstanceDescriptor("T", {"n": "7"})
        )
        writer.write_pending()
        self.assertIsInstance(self.call("instantiateServer", out.getvalue()), InputStream)
        info = self.info()
        self.assertEqual(
            [x.parameterValues for x in info.descriptor.nodes["n2"].serverInstances], [{"n": "7"}]
        )
        self.assertEqual((info.revision, info.updateUser), (2, ""))  # as IceGrid 3.7.8

    def test_sync_leaves_the_updater_empty(self) -> None:
        """IceGrid 3.7.8 records no user for syncApplication (measured)."""
        from gridreg.registry.descriptor_slice import write_application_descriptor

        out = OutputStream()
        write_application_descriptor(out, NEW)
        self.assertIsInstance(self.call("syncApplication", out.getvalue()), InputStream)
        info = self.info()
        self.assertEqual((info.revision, info.createUser, info.updateUser), (2, "alice", ""))
        out = OutputStream()
        write_application_descriptor(out, NEW.replace("App", "Nope"))
        self.assertEqual(
            self.call("syncApplication", out.getvalue()), ApplicationNotExistException("Nope")
        )


class WireTests(SynchronousTestCase):
    def test_icepy_decodes_update_info(self) -> None:
        """What observers will be sent, read by a real IcePy client, both formats."""
        if not icepy_available():
            self.fail("no IcePy under /usr/bin/python3")
        info = update_info(OLD, NEW, 1234, "alice", 7)
        payloads = []
        for format in (COMPACT, SLICED):
            out = OutputStream()
            write_application_update_info(out, info, format)
            payloads.append(("getUpdateInfo", out.getvalue()))
        results = icepy_decode(payloads)
        self.assertEqual([r.get("value") for r in results], [dump(info), dump(info)], results)

    def test_read_update(self) -> None:
        update = diff(xml_to_slice(OLD), xml_to_slice(NEW))
        self.assertEqual(read_application_update(InputStream(encoded_update(update))), update)
