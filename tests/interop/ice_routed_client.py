"""
A real ZeroC Ice 3.7 client behind a real glacier2router (Ice.Default.Router):
it opens a router session, which the router's Glacier2.SessionManager (an
IceGrid session manager) turns into an IceGrid session, then runs commands
from stdin, one per line, each answered by one JSON line on stdout:

  - C{allocate IDENTITY TIMEOUT_MS}: setAllocationTimeout, allocateObjectById,
    then sayHello on the allocated proxy ({"ok", "result": proxy, "hello"});
  - C{hello}: sayHello again on the last allocated proxy;
  - C{release IDENTITY};
  - C{admin-read}: the admin session's replica name, nodes and applications;
  - C{admin-add-object PROXY TYPE}: Admin.addObjectWithType;
  - C{destroy}: Router.destroySession (ends the script).

The first line is {"event": "ready", "session": ..., "ids": ...}. Failures
print {"ok": false, "error": "IceGrid.AllocationTimeoutException", ...}.
Run with the system Python that has the Ice binding.
"""

import argparse
import sys

import Glacier2
import Ice
import IceGrid
from _iceutil import HELLO_SLICE, emit, error_result

Ice.loadSlice(HELLO_SLICE)
import Demo  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--router", required=True)
    parser.add_argument("--user", default="client")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    init.properties.setProperty("Ice.Default.Router", args.router)
    init.properties.setProperty("Ice.RetryIntervals", "-1")
    with Ice.initialize(init) as communicator:
        router = Glacier2.RouterPrx.checkedCast(communicator.getDefaultRouter())
        session = router.createSession(args.user, args.password)
        emit({"event": "ready", "session": str(session), "ids": session.ice_ids()})
        allocated = None
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            command = words
            try:
                if words[0] == "allocate":
                    client = IceGrid.SessionPrx.uncheckedCast(session)
                    client.setAllocationTimeout(int(words[2]))
                    allocated = client.allocateObjectById(Ice.stringToIdentity(words[1]))
                    hello = Demo.HelloPrx.uncheckedCast(allocated).sayHello()
                    emit({"ok": True, "command": command, "result": str(allocated), "hello": hello})
                elif words[0] == "hello":
                    hello = Demo.HelloPrx.uncheckedCast(allocated).sayHello()
                    emit({"ok": True, "command": command, "hello": hello})
                elif words[0] == "release":
                    client = IceGrid.SessionPrx.uncheckedCast(session)
                    client.releaseObject(Ice.stringToIdentity(words[1]))
                    emit({"ok": True, "command": command})
                elif words[0] == "admin-read":
                    admin_session = IceGrid.AdminSessionPrx.uncheckedCast(session)
                    admin = admin_session.getAdmin()
                    emit(
                        {
                            "ok": True,
                            "command": command,
                            "replica": admin_session.getReplicaName(),
                            "nodes": sorted(admin.getAllNodeNames()),
                            "applications": sorted(admin.getAllApplicationNames()),
                        }
                    )
                elif words[0] == "admin-add-object":
                    admin = IceGrid.AdminSessionPrx.uncheckedCast(session).getAdmin()
                    admin.addObjectWithType(communicator.stringToProxy(words[1]), words[2])
                    emit({"ok": True, "command": command})
                elif words[0] == "destroy":
                    router.destroySession()
                    emit({"ok": True, "command": command})
                    return
            except Exception as exc:  # reported to the test, which asserts on its type
                emit(dict(error_result(exc), ok=False, command=command))


if __name__ == "__main__":
    main()
