# -*- test-case-name: tests.test_demo -*-
"""
The demo's Ice server: one C{::Demo::Hello} object whose C{sayHello}
answers the server's id, so a client sees which replica it reached.

A node starts it as IceGrid starts any server, C{python -m
gridreg.demo.sample_server --Ice.Config=PATH}, with the configuration file
the node wrote: C{<Adapter>.Endpoints}, C{<Adapter>.AdapterId},
C{<Adapter>.ReplicaGroupId} and C{Ice.Default.Locator}. It listens on the
adapter's endpoints (port 0 means any free port), registers the endpoints it
got with the registry, as an Ice object adapter does at activation, and
unregisters when it stops (SIGTERM). It uses gridreg's own Ice server, so
any Python with Twisted runs it; the Ice binding is not needed.

Properties (the descriptor sets the first three): C{Demo.Adapter} (the
adapter's name, default C{Hello}), C{Demo.Identity} (default C{hello}),
C{Demo.ServerId} (what C{sayHello} answers; default C{Ice.Admin.ServerId},
then C{Ice.ProgramName}).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Optional

from twisted.internet import defer, task
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from gridreg.client.locator import LocatorClient
from gridreg.client.registration import AdapterRegistration
from gridreg.config.properties import Properties, PropertyError, load_file, parse_overrides
from gridreg.endpoints import server_endpoint
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import Request
from gridreg.ice.server import IceServerFactory
from gridreg.ice.servant import ObjectAdapter, Servant, operation
from gridreg.ice.stringify import endpoints_from_string
from gridreg.ice.types import Identity, TcpEndpoint

log = Logger("gridreg.demo.sample_server")

HELLO_TYPE = "::Demo::Hello"


class HelloServant(Servant):
    """C{interface Hello { string sayHello(); }} answering with a fixed name."""

    type_id = HELLO_TYPE

    def __init__(self, name: str) -> None:
        self.name = name

    @operation("sayHello")
    def say_hello(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_string(self.name)
        return out.getvalue()


def read_properties(argv: Sequence[str]) -> Properties:
    """
    C{--Ice.Config=PATH} first, then every other C{--Name=Value}, as an Ice
    program reads its command line.

    @raise PropertyError: a file or an argument is malformed.
    """
    properties = Properties()
    overrides = []
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise PropertyError(f"unexpected argument {arg!r}: use --Name=Value")
        if arg.startswith("--Ice.Config="):
            for path in arg.split("=", 1)[1].split(","):
                load_file(path.strip(), properties)
        else:
            overrides.append(arg[2:])
    properties.apply_overrides(parse_overrides(overrides))
    return properties


def server_name(properties: Properties) -> str:
    return (
        properties.get("Demo.ServerId")
        or properties.get("Ice.Admin.ServerId")
        or properties.get("Ice.ProgramName")
        or "sample-server"
    )


async def serve(reactor: Any, properties: Properties) -> None:
    """Listen, register, and serve until the reactor stops."""
    adapter_name = properties.get("Demo.Adapter") or "Hello"
    adapter_id = properties.get(f"{adapter_name}.AdapterId") or ""
    if not adapter_id:
        raise PropertyError(f"{adapter_name}.AdapterId is not set: which adapter am I?")
    text = properties.get(f"{adapter_name}.Endpoints") or "tcp -h 127.0.0.1"
    endpoint = endpoints_from_string(text, server=True)[0]
    if not isinstance(endpoint, TcpEndpoint):
        raise PropertyError(f"{adapter_name}.Endpoints: {text!r} is not a tcp endpoint")
    name = server_name(properties)
    adapter = ObjectAdapter(adapter_name)
    adapter.add(Identity(properties.get("Demo.Identity") or "hello"), HelloServant(name))
    factory = IceServerFactory(adapter, clock=reactor)
    port = await server_endpoint(reactor, endpoint).listen(factory)
    host = endpoint.host if endpoint.host not in ("", "*", "0.0.0.0") else "127.0.0.1"
    locator = LocatorClient.from_properties(reactor, properties)
    registration = AdapterRegistration(
        reactor,
        locator,
        adapter_id,
        [TcpEndpoint(host, port.getHost().port)],
        properties.get(f"{adapter_name}.ReplicaGroupId") or "",
    )

    async def stop() -> None:
        # unregister while the locator connection is still there, then close
        await registration.stopService()
        await locator.stopService()
        factory.close_all()
        await port.stopListening()

    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromCoroutine(stop())
    )
    locator.startService()
    registration.startService()
    await registration.when_registered()
    log.info(
        "{server} serves {adapter_id} on port {port}",
        server=name,
        adapter_id=adapter_id,
        port=port.getHost().port,
    )
    await defer.Deferred()  # until SIGTERM stops the reactor


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    try:
        properties = read_properties(argv)
    except PropertyError as e:
        sys.stderr.write(f"sample_server: {e}\n")
        sys.exit(2)
    task.react(lambda reactor: defer.Deferred.fromCoroutine(serve(reactor, properties)))


if __name__ == "__main__":
    main()
