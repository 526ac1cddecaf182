"""
A real ZeroC Ice 3.7 admin client that registers the five IceGrid observers
of an admin session and prints, one JSON line each, every call they get:
C{{"event": "objectAdded", ...}} with the arguments as plain values.

By default the observers are registered with C{setObserversByIdentity} and
live on the session's own connection (C{Connection.setAdapter}), as the
IceGrid GUI does; with C{--direct} they listen on a loopback endpoint and
are registered as proxies with C{setObservers}.

Commands on stdin, one per line, each answered by {"command": ..., "ok": ...}:
  - C{add-object PROXY TYPE}, C{remove-object IDENTITY} (through IceGrid::Admin);
  - C{start SERVER}, C{stop SERVER};
  - C{fail KIND}: the observer KIND (registry, node, application, adapter,
    object) raises on its next call and every later one;
  - C{destroy}: destroy the session and exit.
Run with the system Python that has the Ice binding.
"""

import argparse
import sys
import uuid

import Ice
import IceGrid
from _iceutil import emit, error_result

KINDS = ("registry", "node", "application", "adapter", "object")
STATES = {str(s): str(s) for s in IceGrid.ServerState._enumerators.values()}


def _proxy(proxy):
    return None if proxy is None else proxy.ice_toString()


def _object(info):
    return {"proxy": _proxy(info.proxy), "type": info.type}


def _adapter(info):
    return {"id": info.id, "proxy": _proxy(info.proxy), "replicaGroupId": info.replicaGroupId}


def _server(info):
    return {"id": info.id, "state": str(info.state), "pid": info.pid, "enabled": info.enabled}


def _node(info):
    return {
        "name": info.info.name,
        "hostname": info.info.hostname,
        "servers": sorted((_server(s) for s in info.servers), key=lambda s: s["id"]),
        "adapters": sorted(
            ({"id": a.id, "proxy": _proxy(a.proxy)} for a in info.adapters),
            key=lambda a: a["id"],
        ),
    }


def _application(info):
    descriptor = info.descriptor
    return {
        "name": descriptor.name,
        "revision": info.revision,
        "nodes": sorted(descriptor.nodes),
        "servers": sorted(
            s.id for n in descriptor.nodes.values() for s in n.servers if hasattr(s, "id")
        ),
    }


class Failing:
    """Which observers were told to fail."""

    kinds = set()

    @classmethod
    def check(cls, kind):
        if kind in cls.kinds:
            raise Ice.ObjectNotExistException()


class RegistryObserver(IceGrid.RegistryObserver):
    def registryInit(self, registries, current=None):
        Failing.check("registry")
        emit({"event": "registryInit", "registries": sorted(r.name for r in registries)})

    def registryUp(self, info, current=None):
        Failing.check("registry")
        emit({"event": "registryUp", "name": info.name})

    def registryDown(self, name, current=None):
        Failing.check("registry")
        emit({"event": "registryDown", "name": name})


class NodeObserver(IceGrid.NodeObserver):
    def nodeInit(self, nodes, current=None):
        Failing.check("node")
        emit({"event": "nodeInit", "nodes": sorted((_node(n) for n in nodes), key=str)})

    def nodeUp(self, node, current=None):
        Failing.check("node")
        emit({"event": "nodeUp", "node": _node(node)})

    def nodeDown(self, name, current=None):
        Failing.check("node")
        emit({"event": "nodeDown", "name": name})

    def updateServer(self, node, info, current=None):
        Failing.check("node")
        emit({"event": "updateServer", "node": node, "server": _server(info)})

    def updateAdapter(self, node, info, current=None):
        Failing.check("node")
        emit(
            {
                "event": "updateAdapter",
                "node": node,
                "adapter": {"id": info.id, "proxy": _proxy(info.proxy)},
            }
        )


class ApplicationObserver(IceGrid.ApplicationObserver):
    def applicationInit(self, serial, applications, current=None):
        Failing.check("application")
        emit(
            {
                "event": "applicationInit",
                "serial": serial,
                "applications": [_application(a) for a in applications],
            }
        )

    def applicationAdded(self, serial, info, current=None):
        Failing.check("application")
        emit({"event": "applicationAdded", "serial": serial, "application": _application(info)})

    def applicationRemoved(self, serial, name, current=None):
        Failing.check("application")
        emit({"event": "applicationRemoved", "serial": serial, "name": name})

    def applicationUpdated(self, serial, info, current=None):
        Failing.check("application")
        emit({"event": "applicationUpdated", "serial": serial, "name": info.descriptor.name})


class AdapterObserver(IceGrid.AdapterObserver):
    def adapterInit(self, adapters, current=None):
        Failing.check("adapter")
        emit({"event": "adapterInit", "adapters": sorted((_adapter(a) for a in adapters), key=str)})

    def adapterAdded(self, info, current=None):
        Failing.check("adapter")
        emit({"event": "adapterAdded", "adapter": _adapter(info)})

    def adapterUpdated(self, info, current=None):
        Failing.check("adapter")
        emit({"event": "adapterUpdated", "adapter": _adapter(info)})

    def adapterRemoved(self, id, current=None):
        Failing.check("adapter")
        emit({"event": "adapterRemoved", "id": id})


class ObjectObserver(IceGrid.ObjectObserver):
    def objectInit(self, objects, current=None):
        Failing.check("object")
        emit({"event": "objectInit", "objects": sorted((_object(o) for o in objects), key=str)})

    def objectAdded(self, info, current=None):
        Failing.check("object")
        emit({"event": "objectAdded", "object": _object(info)})

    def objectUpdated(self, info, current=None):
        Failing.check("object")
        emit({"event": "objectUpdated", "object": _object(info)})

    def objectRemoved(self, id, current=None):
        Failing.check("object")
        emit({"event": "objectRemoved", "id": Ice.identityToString(id)})


SERVANTS = (RegistryObserver, NodeObserver, ApplicationObserver, AdapterObserver, ObjectObserver)
PROXIES = (
    IceGrid.RegistryObserverPrx,
    IceGrid.NodeObserverPrx,
    IceGrid.ApplicationObserverPrx,
    IceGrid.AdapterObserverPrx,
    IceGrid.ObjectObserverPrx,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--locator", required=True)
    parser.add_argument("--replica", default="Master")
    parser.add_argument("--direct", action="store_true")
    args = parser.parse_args()
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    init.properties.setProperty("Ice.Default.Locator", args.locator)
    init.properties.setProperty("Ice.ACM.Client.Heartbeat", "3")  # HeartbeatAlways
    if args.direct:
        init.properties.setProperty("Observers.Endpoints", "tcp -h 127.0.0.1")
    with Ice.initialize(init) as communicator:
        instance = args.locator.split("/", 1)[0]
        name = "Registry" if args.replica == "Master" else f"Registry-{args.replica}"
        registry = IceGrid.RegistryPrx.checkedCast(communicator.stringToProxy(f"{instance}/{name}"))
        session = registry.createAdminSession("admin", "")
        admin = session.getAdmin()
        category = str(uuid.uuid4())
        identities = [Ice.Identity(kind, category) for kind in KINDS]
        if args.direct:
            adapter = communicator.createObjectAdapter("Observers")
        else:
            adapter = communicator.createObjectAdapter("")
        for identity, servant in zip(identities, SERVANTS):
            adapter.add(servant(), identity)
        adapter.activate()
        if args.direct:
            session.setObservers(
                *[prx.uncheckedCast(adapter.createProxy(i)) for prx, i in zip(PROXIES, identities)]
            )
        else:
            session.ice_getConnection().setAdapter(adapter)
            session.setObserversByIdentity(*identities)
        emit({"event": "ready"})
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            try:
                if words[0] == "add-object":
                    admin.addObjectWithType(communicator.stringToProxy(words[1]), words[2])
                elif words[0] == "remove-object":
                    admin.removeObject(Ice.stringToIdentity(words[1]))
                elif words[0] == "start":
                    admin.startServer(words[1])
                elif words[0] == "stop":
                    admin.stopServer(words[1])
                elif words[0] == "fail":
                    Failing.kinds.add(words[1])
                elif words[0] == "destroy":
                    session.destroy()
                    emit({"ok": True, "command": words})
                    return
                emit({"ok": True, "command": words})
            except Exception as exc:  # reported to the test, which asserts on its type
                emit(dict(error_result(exc), ok=False, command=words))


if __name__ == "__main__":
    main()
