"""
The server an IceGrid (or gridreg) node activates in the node benchmarks
and in docs/icegrid-node-facts.md: a real ZeroC Ice 3.7 Python server.

Run by the node as C{/usr/bin/python3 bench/hello_node_server.py
--Ice.Config=...}: it creates object adapter C{Hello} from its properties
(C{Hello.Endpoints}, C{Hello.AdapterId}, set by the node's generated
configuration file), adds a C{::Demo::Hello} servant under identity
C{hello}, activates the adapter (which registers its endpoints with the
locator) and waits for shutdown. It prints, one line each on stdout (the
node's C{IceGrid.Node.Output} file):

  - C{started <t>}: C{time.monotonic()} when the interpreter began
    running this file (before C{import Ice});
  - C{registering <t>}: just before C{adapter.activate()} (which
    registers the adapter's endpoints with the locator: a round trip to
    the registry, and for IceGrid from the registry to the node);
  - C{activated <t>}: right after C{adapter.activate()} returned.

With C{--startup-probe} (the benchmark's measure of exec and interpreter
start-up) it prints C{started <t>} and exits before importing Ice.

C{time.monotonic()} is C{CLOCK_MONOTONIC}, the same clock in every process
of the machine, so a client can compare these with its own times. The exec
itself (interpreter start-up before this file) is measured apart by the
benchmark: C{/proc/<pid>/stat} start time.
"""

import time

STARTED = time.monotonic()

import os  # noqa: E402
import sys  # noqa: E402

if "--startup-probe" in sys.argv:
    print(f"started {STARTED:.6f}", flush=True)
    sys.exit(0)

import Ice  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
Ice.loadSlice(os.path.join(HERE, "..", "tests", "interop", "Hello.ice"))
import Demo  # noqa: E402


class HelloI(Demo.Hello):
    def __init__(self, name):
        self._name = name

    def sayHello(self, current=None):
        return self._name


def main():
    with Ice.initialize(sys.argv) as communicator:
        properties = communicator.getProperties()
        adapter = communicator.createObjectAdapter("Hello")
        name = properties.getPropertyWithDefault("Ice.ProgramName", "hello")
        adapter.add(HelloI(name), Ice.stringToIdentity("hello"))
        print(f"started {STARTED:.6f}", flush=True)
        if properties.getPropertyAsInt("Hello.NeverActivate") > 0:
            print("not activating", flush=True)
        else:
            print(f"registering {time.monotonic():.6f}", flush=True)
            adapter.activate()
            print(f"activated {time.monotonic():.6f}", flush=True)
        communicator.waitForShutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
