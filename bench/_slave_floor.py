"""
The floor of a fresh Twisted replica's start-up (L{bench.slave_startup}'s
C{--floor}): a Python process that imports only what any Twisted registry
speaking gridreg's internal protocol cannot do without (an epoll reactor,
C{defer}, C{protocol}, C{twisted.protocols.amp}), with the TLS libraries
kept out as gridreg keeps them out (L{gridreg.tls_gate}, copied here so
that nothing of gridreg is imported), connects to the master's port, waits
for the master's first bytes (Ice's validate-connection message: the
master has answered) and exits::

    python bench/_slave_floor.py HOST PORT [MODULE ...]

It writes one line to standard output once the master has answered, C{ready
CPU_MS} (its own CPU time so far), so the benchmark times launch to answer
as it times a slave's launch to its first locate answer. C{MODULE}s are
imported too, after Twisted's (what a registry built on Twisted's services
adds: C{twisted.application.internet}, whose C{ClientService} brings
C{automat}).
"""

import importlib
import importlib.abc
import sys
import time


class _Refuse(importlib.abc.MetaPathFinder):
    """Fail the import of pyOpenSSL and what only it pulls in, as gridreg's gate does."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] in ("OpenSSL", "cryptography", "service_identity"):
            raise ImportError(f"{fullname} is kept out (no TLS configured)")
        return None


def main(host: str, port: int, modules: list[str]) -> None:
    sys.meta_path.insert(0, _Refuse())
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, protocol, reactor
    from twisted.protocols import amp  # noqa: F401  (the internal protocol's)

    for name in modules:
        importlib.import_module(name)

    answered: defer.Deferred[None] = defer.Deferred()

    class FirstBytes(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            if not answered.called:
                answered.callback(None)

        def connectionLost(self, reason: object) -> None:
            if not answered.called:
                answered.errback(reason)

    def ready(_: object) -> None:
        sys.stdout.write(f"ready {time.process_time() * 1000.0:.1f}\n")
        sys.stdout.flush()
        reactor.stop()

    failures: list[object] = []

    def failed(reason: object) -> None:
        if not failures:
            failures.append(reason)
            sys.stderr.write(f"floor: {reason}\n")
            reactor.stop()

    protocol.ClientCreator(reactor, FirstBytes).connectTCP(host, port).addErrback(failed)
    answered.addCallbacks(ready, failed)
    reactor.run()
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
