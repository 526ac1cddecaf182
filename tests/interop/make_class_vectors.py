"""
Class-graph byte vectors from ZeroC Ice 3.7 (IcePy), the oracle for
C{gridreg.ice.classes} and C{gridreg.registry.descriptor_slice}.  Runs under
the system Python (C{/usr/bin/python3}) that has the Ice binding.

IcePy has no public stream API, so the bytes are what an IcePy client sends:
a Blobject servant on a loopback adapter records the parameter
encapsulation of each call.  Two modes:

  make_class_vectors.py generate OUTDIR
      call C{Sink.put} (tests/data/ice-classes/ClassTest.ice) and
      C{IceGrid::Admin.addApplication} with known graphs, in the compact
      (default) and the sliced format, and write one JSON file per vector:
      the operation, the format, the payload hex (after the encapsulation
      header) and C{value}, a canonical dump of the graph that was sent.

  make_class_vectors.py decode
      read JSON lines C{{"op": ..., "hex": ...}} on stdin, return each
      payload as the result of that operation to an IcePy client, and
      print the client's canonical dump of what it decoded (or its error).
"""

import json
import os
import sys
import threading

import Ice

HERE = os.path.dirname(os.path.abspath(__file__))
SLICE = os.path.join(HERE, "..", "data", "ice-classes", "ClassTest.ice")
UPDATE_SLICE = os.path.join(HERE, "..", "data", "ice-classes", "UpdateTest.ice")
Ice.loadSlice(SLICE)
Ice.loadSlice("-I%s %s" % (Ice.getSliceDir(), UPDATE_SLICE))
import GridregTest  # noqa: E402
import GridregUpdateTest  # noqa: E402
import IceGrid  # noqa: E402

ENCAPS_HEADER = 6


class Recorder(Ice.Blobject):
    """Records request parameters; answers with the queued reply, if any."""

    def __init__(self):
        self.requests = []
        self.reply = b""
        self.lock = threading.Lock()

    def ice_invoke(self, in_params, current):
        with self.lock:
            self.requests.append((current.operation, bytes(in_params)))
            return True, self.reply


def dump(value, ids=None):
    """A JSON form of an Ice value that two equal graphs share (refs numbered)."""
    if ids is None:
        ids = {}
    if isinstance(value, Ice.Value):
        if id(value) in ids:
            return {"@ref": ids[id(value)]}
        ids[id(value)] = len(ids) + 1
        out = {"@type": value.ice_id()}
        for key in sorted(vars(value)):
            if not key.startswith("_"):
                out[key] = dump(getattr(value, key), ids)
        return out
    if value is Ice.Unset:
        return {"@unset": True}
    if isinstance(value, (list, tuple)):
        return [dump(v, ids) for v in value]
    if isinstance(value, dict):
        return {"@dict": [[dump(k, ids), dump(v, ids)] for k, v in value.items()]}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    out = {"@struct": type(value).__name__}
    for key in sorted(vars(value)):
        out[key] = dump(getattr(value, key), ids)
    return out


# -- the graphs -----------------------------------------------------------------


def class_graphs():
    t = GridregTest
    a = t.Node("a", None)
    b = t.Node("b", a)
    a.next = b  # a cycle
    self_loop = t.Node("self", None)
    self_loop.next = self_loop
    shared = t.Base(7)
    yield "box_shared_cycle", t.Box([a, b, None, self_loop], {"x": b, "n": None}, shared, shared)
    yield "box_null", t.Box([], {}, None, None)
    more = t.MoreDerived(1, "derived", shared, 1 << 40, "optional", t.Base(9))
    yield "box_unknown_derived", t.Box([], {}, more, shared)
    yield "box_unknown_derived_unset", t.Box([], {}, t.MoreDerived(2, "s", None, 3), None)
    yield "box_compact_id", t.Box([], {}, t.WithCompact(5, "c"), None)


def props(*pairs):
    return [IceGrid.PropertyDescriptor(k, v) for k, v in pairs]


def pset(refs=(), *pairs):
    return IceGrid.PropertySetDescriptor(list(refs), props(*pairs))


def obj(name, type_="", category="", proxy_options=""):
    return IceGrid.ObjectDescriptor(Ice.Identity(name, category), type_, proxy_options)


def adapter(name, id_, group="", priority="", objects=(), allocatables=(), lifetime=True):
    return IceGrid.AdapterDescriptor(
        name, "", id_, group, priority, False, lifetime, list(objects), list(allocatables)
    )


def server(id_, exe, adapters=(), properties=(), refs=(), **kw):
    s = IceGrid.ServerDescriptor()
    s.id, s.exe = id_, exe
    s.adapters = list(adapters)
    s.propertySet = pset(refs, *properties)
    s.dbEnvs, s.logs, s.description = [], [], kw.get("description", "")
    s.iceVersion, s.pwd = "", kw.get("pwd", "")
    s.options, s.envs = list(kw.get("options", [])), list(kw.get("envs", []))
    s.activation = kw.get("activation", "on-demand")
    s.activationTimeout = kw.get("activation_timeout", "")
    s.deactivationTimeout = kw.get("deactivation_timeout", "")
    s.applicationDistrib, s.allocatable, s.user = True, False, kw.get("user", "")
    s.distrib = IceGrid.DistributionDescriptor("", [])
    return s


def full_application():
    lb = IceGrid
    policy = lb.RoundRobinLoadBalancingPolicy("2")
    groups = [
        lb.ReplicaGroupDescriptor("RG-random", lb.RandomLoadBalancingPolicy("0"), "", [], "", ""),
        lb.ReplicaGroupDescriptor(
            "RG-ordered", lb.OrderedLoadBalancingPolicy("1"), "", [], "ordered group", ""
        ),
        lb.ReplicaGroupDescriptor("RG-rr", policy, "", [obj("rrobj", "::Demo::Hello")], "", ""),
        lb.ReplicaGroupDescriptor("RG-rr2", lb.RoundRobinLoadBalancingPolicy("2"), "", [], "", ""),
        lb.ReplicaGroupDescriptor(
            "RG-adaptive", lb.AdaptiveLoadBalancingPolicy("0", "5"), "", [], "", ""
        ),
        lb.ReplicaGroupDescriptor("RG-none", None, "", [obj("noneobj", "", "cat")], "", ""),
    ]
    template_server = server(
        "${name}-${index}",
        "/usr/bin/python3",
        adapters=[
            adapter(
                "Hello",
                "${server}.Hello",
                "RG-rr",
                "${index}",
                [obj("hello-${index}", "::Demo::Hello")],
                [obj("alloc-${index}", "::Demo::Alloc")],
            )
        ],
        properties=[("Hello.Endpoints", "tcp -h 127.0.0.1"), ("Greeting", "${greeting}")],
        refs=["Common"],
        options=["server.py", "--index=${index}"],
        envs=["PYTHONUNBUFFERED=1"],
    )
    templates = {
        "HelloTemplate": IceGrid.TemplateDescriptor(
            template_server, ["index", "name", "greeting"], {"name": "Hello", "greeting": "hi"}
        )
    }
    plain = server(
        "Plain",
        "/bin/sleep",
        adapters=[
            adapter("A", "Plain.A", "RG-ordered", "1", [obj("plain-a")]),
            adapter("B", "Plain.B", lifetime=False),
        ],
        properties=[
            ("A.Endpoints", "default -h 127.0.0.1"),
            ("B.Endpoints", "tcp"),
            ("X", "1"),
            ("X", "2"),
        ],
        options=["1000"],
        activation="manual",
        activation_timeout="5",
        deactivation_timeout="7",
        pwd="/tmp",
        description="a plain server",
    )
    node1 = IceGrid.NodeDescriptor(
        {"nodevar": "n1"},
        [
            IceGrid.ServerInstanceDescriptor(
                "HelloTemplate", {"index": "1"}, pset((), ("Extra", "e")), {}
            ),
            IceGrid.ServerInstanceDescriptor(
                "HelloTemplate", {"index": "2", "greeting": "yo"}, pset(), {}
            ),
        ],
        [plain],
        "",
        "node one",
        {"NodeSet": pset((), ("N", "1"))},
    )
    node2 = IceGrid.NodeDescriptor(
        {},
        [],
        [
            server(
                "Adaptive",
                "/bin/true",
                adapters=[adapter("Ad", "Adaptive.Ad", "RG-adaptive")],
                properties=[("Ad.Endpoints", "tcp")],
                refs=["NodeSet2"],
            )
        ],
        "",
        "",
        {"NodeSet2": pset(("Common",), ("M", "2"))},
    )
    return IceGrid.ApplicationDescriptor(
        "Full",
        {"greeting": "hello", "root": "/srv"},
        groups,
        templates,
        {},
        {"node1": node1, "node2": node2},
        IceGrid.DistributionDescriptor("", []),
        "the full application",
        {"Common": pset((), ("Ice.Trace.Network", "0"), ("Common.Root", "${root}"))},
    )


def minimal_application():
    return IceGrid.ApplicationDescriptor(
        "Minimal", {}, [], {}, {}, {}, IceGrid.DistributionDescriptor("", []), "", {}
    )


def icebox_application():
    box = IceGrid.IceBoxDescriptor()
    base = server("Box", "icebox", properties=[("IceBox.ServiceManager.Endpoints", "tcp")])
    for key, value in vars(base).items():
        setattr(box, key, value)
    service = IceGrid.ServiceDescriptor()
    service.adapters, service.propertySet, service.dbEnvs = [], pset(), []
    service.logs, service.description, service.name, service.entry = [], "", "Svc", "svc:create"
    box.services = [IceGrid.ServiceInstanceDescriptor("", {}, service, pset())]
    node = IceGrid.NodeDescriptor({}, [], [box], "", "", {})
    return IceGrid.ApplicationDescriptor(
        "Boxed", {}, [], {}, {}, {"node1": node}, IceGrid.DistributionDescriptor("", []), "", {}
    )


def descriptor_graphs():
    yield "app_full", full_application()
    yield "app_minimal", minimal_application()
    yield "app_icebox", icebox_application()


# -- plumbing ---------------------------------------------------------------------


def communicator(sliced):
    data = Ice.InitializationData()
    data.properties = Ice.createProperties()
    data.properties.setProperty("Ice.Default.SlicedFormat", "1" if sliced else "0")
    data.properties.setProperty("Ice.Warn.Connections", "0")
    return Ice.initialize(data)


def serve(comm):
    adapter = comm.createObjectAdapterWithEndpoints("Rec", "tcp -h 127.0.0.1")
    recorder = Recorder()
    prx = adapter.add(recorder, Ice.stringToIdentity("rec"))
    adapter.activate()
    return recorder, prx.ice_collocationOptimized(False)


def generate(outdir):
    os.makedirs(outdir, exist_ok=True)
    for sliced in (False, True):
        fmt = "sliced" if sliced else "compact"
        comm = communicator(sliced)
        try:
            recorder, prx = serve(comm)
            sink = GridregTest.SinkPrx.uncheckedCast(prx)
            admin = IceGrid.AdminPrx.uncheckedCast(prx)
            cases = [(n, "put", sink.put, v) for n, v in class_graphs()]
            cases += [
                (n, "addApplication", admin.addApplication, v) for n, v in descriptor_graphs()
            ]
            for name, op, call, value in cases:
                del recorder.requests[:]
                call(value)
                ((got_op, params),) = recorder.requests
                assert got_op == op, got_op
                assert params[4:6] == b"\x01\x01", params[:6]
                record = {
                    "name": name,
                    "op": op,
                    "format": fmt,
                    "hex": params[ENCAPS_HEADER:].hex(),
                    "value": dump(value),
                }
                path = os.path.join(outdir, "%s_%s.json" % (name, fmt))
                with open(path, "w") as f:
                    json.dump(record, f, indent=1, sort_keys=True)
                    f.write("\n")
        finally:
            comm.destroy()


def decode():
    comm = communicator(False)
    try:
        recorder, prx = serve(comm)
        sink = GridregTest.SinkPrx.uncheckedCast(prx)
        admin = IceGrid.AdminPrx.uncheckedCast(prx)
        source = GridregUpdateTest.SourcePrx.uncheckedCast(prx)
        calls = {
            "getUpdateInfo": source.getUpdateInfo,
            "get": sink.get,
            "getApplicationInfo": lambda: admin.getApplicationInfo("x"),
            "getDefaultApplicationDescriptor": admin.getDefaultApplicationDescriptor,
            "getServerInfo": lambda: admin.getServerInfo("x"),
        }
        for line in sys.stdin:
            request = json.loads(line)
            payload = bytes.fromhex(request["hex"])
            size = (len(payload) + ENCAPS_HEADER).to_bytes(4, "little")
            recorder.reply = size + b"\x01\x01" + payload
            try:
                result = {"value": dump(calls[request["op"]]())}
            except Exception as e:  # reported to the test, which asserts on it
                result = {"error": "%s: %s" % (type(e).__name__, e)}
            sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
            sys.stdout.flush()
    finally:
        comm.destroy()


if __name__ == "__main__":
    if sys.argv[1:2] == ["generate"]:
        generate(sys.argv[2])
    elif sys.argv[1:] == ["decode"]:
        decode()
    else:
        sys.exit(__doc__)
