# -*- test-case-name: tests.test_client_direct -*-
"""
Tests for L{gridreg.client.locator}'s requests on real loopback TCP: a
request leaves in the reactor turn that makes it, and the retry after a
replica's loss leaves in the turn that sees the loss. The replicas are
plain non-blocking sockets, read without waiting (on loopback a sent byte
is in the peer's receive queue as soon as C{send} returns).
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from gridreg.client import LocatorClient
from gridreg.ice.messages import HEADER_SIZE, MAGIC, VALIDATE_CONNECTION

#: how long a test waits for the reactor to get something done
PATIENCE = 10.0


def pending(peer: socket.socket) -> bytes:
    """What the peer can read now, without waiting."""
    try:
        return peer.recv(1 << 20, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


def requests(data: bytes) -> list[int]:
    """The request ids of the Ice requests (message type 0) in C{data}."""
    found = []
    while len(data) >= HEADER_SIZE:
        assert data[:4] == MAGIC, data
        size = struct.unpack_from("<i", data, 10)[0]
        if data[8] == 0:
            found.append(struct.unpack_from("<i", data, HEADER_SIZE)[0])
        data = data[size:]
    return found


async def until(test: Callable[[], Any], what: str) -> Any:
    """Turn the reactor until C{test()} is true; its value."""
    deadline = reactor.seconds() + PATIENCE
    while not (value := test()):
        if reactor.seconds() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await deferLater(reactor, 0.001)
    return value


class Replica:
    """A listening socket that validates what connects and otherwise only reads."""

    def __init__(self, case: TestCase) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.setblocking(False)
        case.addCleanup(self.listener.close)
        self.case = case
        self.port = self.listener.getsockname()[1]
        self.peers: list[socket.socket] = []

    def accept(self) -> bool:
        """Accept and validate whatever is waiting; whether anything was."""
        accepted = False
        while True:
            try:
                peer, _ = self.listener.accept()
            except BlockingIOError:
                return accepted
            peer.setblocking(False)
            self.case.addCleanup(peer.close)
            peer.sendall(VALIDATE_CONNECTION)
            self.peers.append(peer)
            accepted = True

    def reset(self) -> None:
        """Die as a killed process's sockets do when a request is unread: reset them."""
        for peer in self.peers:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
        self.listener.close()


class DirectRequestTests(TestCase):
    def client(self, *replicas: Replica) -> LocatorClient:
        endpoints = ":".join(f"tcp -h 127.0.0.1 -p {r.port}" for r in replicas)
        client = LocatorClient(reactor, f"DemoIceGrid/Locator:{endpoints}", request_timeout=5)
        client.startService()
        self.addCleanup(client.stopService)
        return client

    async def test_a_request_is_on_the_wire_when_it_is_made(self) -> None:
        """On an idle plain TCP connection a request does not wait for the reactor."""
        replica = Replica(self)
        client = self.client(replica)
        await until(replica.accept, "the client's connection")
        await until(lambda: client.connection, "the validation")
        peer = replica.peers[0]
        client.find_adapter_by_id("HelloAdapter").addErrback(lambda _: None)
        first = requests(pending(peer))
        client.find_adapter_by_id("HelloAdapter").addErrback(lambda _: None)
        self.assertEqual((first, requests(pending(peer))), ([1], [2]))

    async def test_the_retry_leaves_in_the_turn_that_sees_the_loss(self) -> None:
        """
        The first replica is reset with a request unread: by the time the
        client's connection to it is gone, the request is on the wire to the
        second replica (the spare kept for hedges), not a reactor turn later.
        """
        first, second = Replica(self), Replica(self)
        client = self.client(first, second)
        await until(first.accept, "the client's connection to the first replica")
        await until(lambda: client.connection, "the validation")
        await until(second.accept, "the spare connection to the second replica")
        await until(lambda: 1 in client._spares, "the spare's validation")
        live = client._live
        assert live is not None
        client.find_adapter_by_id("HelloAdapter").addErrback(lambda _: None)
        self.assertEqual(requests(pending(first.peers[0])), [1])
        seen: list[bytes] = []
        live.when_lost().addCallback(lambda _: seen.append(pending(second.peers[0])))
        first.reset()
        await until(lambda: seen, "the loss")
        self.assertEqual(requests(seen[0]), [1])
