"""
A real ZeroC Ice 3.7 admin program that updates an application through
IceGrid::Admin as scripts written for IceGrid do: an admin session
(Registry.createAdminSession), then ApplicationUpdateDescriptor diffs.

Steps (one JSON line on stdout each, then it exits):

  - C{info}: getApplicationInfo before anything;
  - C{update}: updateApplication with a new description, a new application
    variable, and SERVER's descriptor (as getApplicationInfo gave it) with
    one more property, then getApplicationInfo again;
  - C{no-restart}: updateApplicationWithoutRestart adding an option to
    SERVER, which IceGrid refuses while the server would need stopping;
  - C{unknown}: updateApplication of an application that does not exist.

Run with the system Python that has the Ice binding.
"""

import argparse

import Ice
import IceGrid
from _iceutil import emit, error_result


def info_dict(info):
    return {
        "uuid": info.uuid,
        "createUser": info.createUser,
        "createTime": info.createTime,
        "updateUser": info.updateUser,
        "updateTime": info.updateTime,
        "revision": info.revision,
        "description": info.descriptor.description,
        "variables": dict(info.descriptor.variables),
    }


def node_update(node, servers):
    return IceGrid.NodeUpdateDescriptor(node, None, {}, [], {}, [], [], servers, [], None)


def app_update(name, description=None, variables=None, nodes=()):
    return IceGrid.ApplicationUpdateDescriptor(
        name,
        IceGrid.BoxedString(description) if description is not None else None,
        None,
        variables or {},
        [],
        {},
        [],
        [],
        [],
        {},
        [],
        {},
        [],
        list(nodes),
        [],
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--locator", required=True)
    parser.add_argument("--user", default="scripter")
    parser.add_argument("--application", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--server", required=True)
    args = parser.parse_args()
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    init.properties.setProperty("Ice.Default.Locator", args.locator)
    with Ice.initialize(init) as communicator:
        instance = args.locator.split("/", 1)[0]
        registry = IceGrid.RegistryPrx.checkedCast(
            communicator.stringToProxy(f"{instance}/Registry")
        )
        session = registry.createAdminSession(args.user, "")
        admin = session.getAdmin()
        info = admin.getApplicationInfo(args.application)
        emit({"step": "info", **info_dict(info)})

        (server,) = [s for s in info.descriptor.nodes[args.node].servers if s.id == args.server]
        server.propertySet.properties.append(IceGrid.PropertyDescriptor("Hello.Note", "updated"))
        update = app_update(
            args.application,
            description="updated by a script",
            variables={"added": "yes"},
            nodes=[node_update(args.node, [server])],
        )
        admin.updateApplication(update)
        emit({"step": "update", **info_dict(admin.getApplicationInfo(args.application))})

        server.options.append("--extra")
        try:
            admin.updateApplicationWithoutRestart(
                app_update(args.application, nodes=[node_update(args.node, [server])])
            )
            emit({"step": "no-restart", "ok": True})
        except IceGrid.DeploymentException as e:
            emit({"step": "no-restart", **error_result(e)})

        try:
            admin.updateApplication(app_update("NoSuchApplication"))
            emit({"step": "unknown", "ok": True})
        except IceGrid.ApplicationNotExistException as e:
            emit({"step": "unknown", **error_result(e)})
        session.destroy()


if __name__ == "__main__":
    main()
