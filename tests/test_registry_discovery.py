"""
The IceLocatorDiscovery lookup of a replica (gridreg.registry.discovery_service):
datagrams in, C{foundLocator} datagrams out, and nothing a datagram holds
can stop the replica.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gridreg.config.properties import Properties, PropertyError
from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import (
    HEADER_SIZE,
    MessageType,
    Request,
    decode_request,
    encode_request,
    parse_header,
)
from gridreg.ice.stringify import proxy_from_string
from gridreg.ice.types import ENCODING_1_0, ENCODING_1_1, Identity, Proxy, Version
from gridreg.registry.config import RegistryConfig
from gridreg.registry.discovery_service import (
    LOOKUP_IDENTITY,
    Discovery,
    LookupProtocol,
    found_locator_datagram,
)

LOCATOR = proxy_from_string(
    "DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061 -t 60000:tcp -h 127.0.0.1 -p 4071 -t 60000"
)
REPLY = proxy_from_string("abc-123 -d:udp -h 127.0.0.1 -p 40000")
SENDER = ("127.0.0.1", 50000)


def find_locator(
    instance: str,
    reply: Optional[Proxy] = REPLY,
    encoding: Version = ENCODING_1_1,
    compression: int = 0,
    identity: Identity = LOOKUP_IDENTITY,
    operation: str = "findLocator",
) -> bytes:
    """The datagram IceLocatorDiscovery's plug-in multicasts."""
    params = OutputStream(encoding)
    params.write_string(instance)
    params.write_proxy(reply)
    request = Request(0, identity, "", operation, 2, {}, encoding, params.getvalue())
    return encode_request(request, compression)


def decode_found(datagram: bytes) -> tuple[Request, Optional[Proxy]]:
    header = parse_header(datagram)
    assert header.message_type == MessageType.REQUEST and header.size == len(datagram)
    request = decode_request(datagram[HEADER_SIZE:])
    return request, InputStream(request.params, request.encoding).read_proxy()


class _Capture:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def __call__(self, datagram: bytes, target: tuple[str, int]) -> None:
        self.sent.append((datagram, target))


class LookupProtocolTests(SynchronousTestCase):
    """One lookup endpoint's protocol, fed datagrams directly."""

    def setUp(self) -> None:
        self.sent = _Capture()
        self.locator: Optional[Proxy] = LOCATOR
        self.protocol = LookupProtocol("DemoIceGrid", lambda: self.locator, self.sent, trace=2)

    def feed(self, datagram: bytes, sender: tuple[str, int] = SENDER) -> None:
        self.protocol.datagramReceived(datagram, sender)

    def test_answers_its_instance(self) -> None:
        """foundLocator(Locator of every active replica), oneway, to the reply proxy."""
        self.feed(find_locator("DemoIceGrid"))
        [(datagram, target)] = self.sent.sent
        self.assertEqual(target, ("127.0.0.1", 40000))
        request, locator = decode_found(datagram)
        self.assertEqual(
            (request.request_id, request.identity, request.facet, request.operation),
            (0, REPLY.identity, "", "foundLocator"),
        )
        self.assertEqual(request.mode, 0)
        self.assertEqual(locator, LOCATOR)

    def test_empty_instance_is_answered(self) -> None:
        """As IceGrid does: a client that names no instance takes the first answer."""
        self.feed(find_locator(""))
        self.assertEqual(len(self.sent.sent), 1)

    def test_other_instance_is_ignored(self) -> None:
        self.feed(find_locator("OtherGrid"))
        self.assertEqual(self.sent.sent, [])

    def test_not_listening_yet(self) -> None:
        """Before the client endpoints listen there is no Locator to give."""
        self.locator = None
        self.feed(find_locator("DemoIceGrid"))
        self.assertEqual(self.sent.sent, [])

    def test_null_reply_proxy(self) -> None:
        self.feed(find_locator("DemoIceGrid", reply=None))
        self.assertEqual(self.sent.sent, [])

    def test_reply_without_udp_endpoint(self) -> None:
        """A tcp-only (or name-only) reply proxy gets no answer, and no crash."""
        for text in ("r:tcp -h 127.0.0.1 -p 4000", "r -d:udp -h localhost -p 4000", "r"):
            self.feed(find_locator("DemoIceGrid", reply=proxy_from_string(text)))
        self.assertEqual(self.sent.sent, [])

    def test_reply_host_empty_means_sender(self) -> None:
        self.feed(find_locator("DemoIceGrid", reply=proxy_from_string("r -d:udp -p 4001")))
        self.assertEqual([t for _, t in self.sent.sent], [("127.0.0.1", 4001)])

    def test_encoding_1_0(self) -> None:
        """The answer is encoded as the reply proxy asks."""
        reply = proxy_from_string("r -d -e 1.0:udp -h 127.0.0.1 -p 4002")
        self.feed(find_locator("DemoIceGrid", reply=reply, encoding=ENCODING_1_0))
        request, locator = decode_found(self.sent.sent[0][0])
        self.assertEqual(request.encoding, ENCODING_1_0)
        self.assertEqual(locator.identity if locator else None, LOCATOR.identity)

    def test_compressed_request(self) -> None:
        self.feed(find_locator("DemoIceGrid", compression=2))
        self.assertEqual(len(self.sent.sent), 1)

    def test_other_requests_dropped(self) -> None:
        self.feed(find_locator("DemoIceGrid", identity=Identity("Locator", "DemoIceGrid")))
        self.feed(find_locator("DemoIceGrid", operation="getLocator"))
        self.assertEqual(self.sent.sent, [])

    def test_send_failure_is_logged(self) -> None:
        def refuse(datagram: bytes, target: tuple[str, int]) -> None:
            raise OSError("Network is unreachable")

        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        LookupProtocol("DemoIceGrid", lambda: LOCATOR, refuse).datagramReceived(
            find_locator("DemoIceGrid"), SENDER
        )
        self.assertTrue(any("cannot answer" in e.get("log_format", "") for e in events))

    def test_fuzz(self) -> None:
        """Random bytes and mutated lookups never raise; only valid ones are answered."""
        rng = random.Random(4061)
        valid = find_locator("DemoIceGrid")
        for _ in range(3000):
            choice = rng.random()
            if choice < 0.3:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
            elif choice < 0.6:
                data = valid[: rng.randrange(len(valid))]
            else:
                mutated = bytearray(valid)
                for _ in range(rng.randrange(1, 4)):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                data = bytes(mutated)
            self.feed(data)
        for datagram, target in self.sent.sent:
            request, _ = decode_found(datagram)
            self.assertEqual(request.operation, "foundLocator")
            self.assertTrue(0 < target[1] < 65536, target)


class _FakePort:
    def __init__(self, join: Any = None) -> None:
        self.join = join
        self.joined: list[tuple[str, str]] = []
        self.stopped = False
        self.written: list[tuple[bytes, Any]] = []

    def joinGroup(self, group: str, interface: str = "") -> Deferred[None]:
        self.joined.append((group, interface))
        return self.join if self.join is not None else succeed(None)

    def stopListening(self) -> None:
        self.stopped = True

    def write(self, datagram: bytes, target: Any) -> None:
        self.written.append((datagram, target))


class _FakeReactor:
    def __init__(self, join: Any = None, refuse: bool = False) -> None:
        self.multicast: list[tuple[int, dict[str, Any], _FakePort]] = []
        self.udp: list[tuple[int, dict[str, Any], _FakePort]] = []
        self.join = join
        self.refuse = refuse

    def listenMulticast(self, port: int, protocol: Any, **kw: Any) -> _FakePort:
        if self.refuse:
            raise CannotListenError(kw.get("interface"), port, OSError("in use"))
        fake = _FakePort(self.join)
        self.multicast.append((port, kw, fake))
        return fake

    def listenUDP(self, port: int, protocol: Any, **kw: Any) -> _FakePort:
        fake = _FakePort()
        self.udp.append((port, kw, fake))
        return fake


def _endpoints(**props: str) -> Any:
    properties = Properties()
    properties.set("IceGrid.Registry.Discovery.Enabled", "1")
    for key, value in props.items():
        properties.set("IceGrid.Registry.Discovery." + key, value)
    return RegistryConfig.from_properties(properties).discovery_endpoints


class DiscoveryListenTests(SynchronousTestCase):
    """Where the lookup listens, and that failing to listen never stops the replica."""

    def test_multicast_on_interface(self) -> None:
        reactor = _FakeReactor()
        Discovery(reactor, "G", _endpoints(Interface="127.0.0.1", Port="14555"), lambda: LOCATOR).start()
        [(port, kw, fake)] = reactor.multicast
        self.assertEqual((port, kw["interface"], kw["listenMultiple"]), (14555, "239.255.0.1", True))
        self.assertEqual(fake.joined, [("239.255.0.1", "127.0.0.1")])

    def test_unicast_endpoint(self) -> None:
        reactor = _FakeReactor()
        Discovery(reactor, "G", _endpoints(Endpoints="udp -h 127.0.0.1 -p 5000"), lambda: None).start()
        self.assertEqual([(p, kw["interface"]) for p, kw, _ in reactor.udp], [(5000, "127.0.0.1")])

    def test_join_failure_is_a_warning(self) -> None:
        reactor = _FakeReactor(join=fail(OSError("No such device")))
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        Discovery(reactor, "G", _endpoints(), lambda: LOCATOR).start()
        self.assertTrue(any("cannot join" in e.get("log_format", "") for e in events))

    def test_listen_failure_is_a_warning(self) -> None:
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        discovery = Discovery(_FakeReactor(refuse=True), "G", _endpoints(), lambda: LOCATOR)
        discovery.start()
        self.assertEqual(discovery.ports, [])
        self.assertTrue(any("cannot listen" in e.get("log_format", "") for e in events))

    def test_stop(self) -> None:
        reactor = _FakeReactor()
        discovery = Discovery(reactor, "G", _endpoints(), lambda: LOCATOR)
        discovery.start()
        self.successResultOf(discovery.stop())
        self.assertTrue(reactor.multicast[0][2].stopped)


class DiscoveryConfigTests(SynchronousTestCase):
    """IceGrid.Registry.Discovery.*: IceGrid's defaults, and bad values named."""

    def test_disabled_by_default(self) -> None:
        self.assertEqual(RegistryConfig.from_properties(Properties()).discovery_endpoints, ())

    def test_icegrid_defaults(self) -> None:
        [endpoint] = _endpoints()
        self.assertEqual((endpoint.host, endpoint.port, endpoint.interface), ("239.255.0.1", 4061, ""))

    def test_address_port_interface(self) -> None:
        [endpoint] = _endpoints(Address="239.1.2.3", Port="5000", Interface="127.0.0.1")
        self.assertEqual(
            (endpoint.host, endpoint.port, endpoint.interface), ("239.1.2.3", 5000, "127.0.0.1")
        )

    def test_endpoints_override(self) -> None:
        [endpoint] = _endpoints(Endpoints="udp -h 239.9.9.9 -p 7000", Port="5000")
        self.assertEqual((endpoint.host, endpoint.port), ("239.9.9.9", 7000))

    def test_bad_values(self) -> None:
        for key, value in (
            ("Enabled", "yes"),
            ("Port", "70000"),
            ("Port", "x"),
            ("Endpoints", "tcp -h 127.0.0.1 -p 4061"),
            ("Endpoints", "udp -h"),
            ("Address", "ff15::1"),
        ):
            props = {key: value}
            with self.assertRaises(PropertyError, msg=f"{key}={value}") as caught:
                _endpoints(**props)
            self.assertIn("IceGrid.Registry.Discovery." + key, str(caught.exception))


class RealSocketTests(TestCase):
    """The lookup on a real unicast UDP socket on loopback (no multicast needed)."""

    async def test_answers_over_udp(self) -> None:
        answers: Deferred[tuple[bytes, Any]] = Deferred()

        class Client(DatagramProtocol):
            def datagramReceived(self, datagram: bytes, addr: Any) -> None:
                if not answers.called:
                    answers.callback((datagram, addr))

        client = global_reactor.listenUDP(0, Client(), interface="127.0.0.1")
        self.addCleanup(client.stopListening)
        probe = global_reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        port = probe.getHost().port
        await probe.stopListening()
        discovery = Discovery(
            global_reactor,
            "DemoIceGrid",
            _endpoints(Endpoints=f"udp -h 127.0.0.1 -p {port}"),
            lambda: LOCATOR,
        )
        discovery.start()
        self.addCleanup(discovery.stop)
        reply = proxy_from_string(f"r -d:udp -h 127.0.0.1 -p {client.getHost().port}")
        client.write(find_locator("DemoIceGrid", reply=reply), ("127.0.0.1", port))
        answers.addTimeout(5, global_reactor)
        datagram, _ = await answers
        self.assertEqual(decode_found(datagram)[1], LOCATOR)


class FoundLocatorTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        request, locator = decode_found(found_locator_datagram(REPLY, LOCATOR))
        self.assertEqual((request.operation, locator), ("foundLocator", LOCATOR))
