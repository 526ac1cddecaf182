"""
A real ZeroC Ice 3.7 admin client reading admin objects through IceGrid's
admin routers, as the IceGrid GUI does: it opens an admin session with
C{<registry>.createAdminSession} and, for each target C{registry:NAME},
C{node:NAME} or C{server:ID}, takes the proxy from C{getRegistryAdmin},
C{getNodeAdmin} or C{getServerAdmin} and prints one JSON line:

  C{{"target", "proxy", "BuildId", "prefix": {...getPropertiesForPrefix(PREFIX)},
  "set": value read back after setProperties, "facets": {facet: ids or error}}}

with C{"error"} instead when a call fails. A second connection's call
(C{"other_connection"}) shows the routers serve the session's connection only.
Run with the system Python that has the Ice binding.
"""

import argparse

import Ice
import IceGrid
from _iceutil import emit, error_result, make_communicator

FACETS = ("Properties", "Process", "Logger", "Metrics", "Bogus")


def _try(call):
    try:
        return call()
    except Ice.Exception as exc:
        return error_result(exc)


def read(admin, kind, name, prefix):
    getter = {
        "registry": admin.getRegistryAdmin,
        "node": admin.getNodeAdmin,
        "server": admin.getServerAdmin,
    }[kind]
    proxy = getter(name)
    properties = Ice.PropertiesAdminPrx.uncheckedCast(proxy, "Properties")
    result = {"target": f"{kind}:{name}", "proxy": proxy.ice_toString()}
    result["BuildId"] = _try(lambda: properties.getProperty("BuildId"))
    result["prefix"] = _try(lambda: properties.getPropertiesForPrefix(prefix))
    result["facets"] = {
        facet: _try(lambda facet=facet: sorted(proxy.ice_facet(facet).ice_ids()))
        for facet in FACETS
    }
    result["set"] = _try(
        lambda: (
            properties.setProperties({"Router.Test": "1"}),
            properties.getProperty("Router.Test"),
        )[1]
    )
    result["other_connection"] = _try(
        lambda: properties.ice_connectionId("other").getProperty("BuildId")
    )
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--locator", required=True)
    parser.add_argument("--registry", required=True, help="e.g. DemoIceGrid/Registry")
    parser.add_argument("--prefix", default="IceGrid.")
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args()
    with make_communicator(Ice, args.locator, {}) as communicator:
        registry = IceGrid.RegistryPrx.checkedCast(communicator.stringToProxy(args.registry))
        session = registry.createAdminSession("admin", "secret")
        admin = session.getAdmin()
        for target in args.targets:
            kind, _, name = target.partition(":")
            try:
                emit(read(admin, kind, name, args.prefix))
            except Ice.Exception as exc:
                emit(error_result(exc, target=target))
        session.destroy()


if __name__ == "__main__":
    main()
