"""
A real ZeroC Ice 3.7 client that allocates objects through an IceGrid
client session (Registry.createSession), driven by commands on stdin, one
per line, each answered by one JSON line on stdout:

  - C{allocate IDENTITY TIMEOUT_MS}: setAllocationTimeout, allocateObjectById,
    then sayHello on the allocated proxy ({"ok", "result": proxy, "hello"});
  - C{allocate-type TYPE TIMEOUT_MS}: the same by type;
  - C{release IDENTITY}; C{destroy} (ends the session and the script).

Failures print {"ok": false, "error": "IceGrid.AllocationTimeoutException", ...}.
Run with the system Python that has the Ice binding.
"""

import argparse
import sys

import Ice
import IceGrid
from _iceutil import HELLO_SLICE, emit, error_result

Ice.loadSlice(HELLO_SLICE)
import Demo  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--locator", required=True)
    parser.add_argument("--user", default="client")
    args = parser.parse_args()
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    init.properties.setProperty("Ice.Default.Locator", args.locator)
    with Ice.initialize(init) as communicator:
        instance = args.locator.split("/", 1)[0]
        registry = IceGrid.RegistryPrx.checkedCast(
            communicator.stringToProxy(f"{instance}/Registry")
        )
        session = registry.createSession(args.user, "")
        emit({"event": "ready"})
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            command = words
            try:
                if words[0] in ("allocate", "allocate-type"):
                    session.setAllocationTimeout(int(words[2]))
                    if words[0] == "allocate":
                        proxy = session.allocateObjectById(Ice.stringToIdentity(words[1]))
                    else:
                        proxy = session.allocateObjectByType(words[1])
                    hello = Demo.HelloPrx.uncheckedCast(proxy).sayHello()
                    emit({"ok": True, "command": command, "result": str(proxy), "hello": hello})
                elif words[0] == "release":
                    session.releaseObject(Ice.stringToIdentity(words[1]))
                    emit({"ok": True, "command": command})
                elif words[0] == "destroy":
                    session.destroy()
                    emit({"ok": True, "command": command})
                    return
            except Exception as exc:  # reported to the test, which asserts on its type
                emit(dict(error_result(exc), ok=False, command=command))


if __name__ == "__main__":
    main()
