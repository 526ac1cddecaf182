# -*- test-case-name: tests.test_ice_fuzz -*-
"""
Fuzz targets: what the registry does with bytes from the network and XML
from an administrator, driven by the coverage-guided fuzzer in
C{bench/fuzz.py} (atheris) and replayed by C{tests/test_ice_fuzz.py}.

Each target takes one input and raises L{FuzzFinding} (or lets an
unexpected exception escape) when the code under test misbehaves: an
exception other than the documented ones, or a failure logged with a
traceback, which on a live connection is an unhandled error. A clear error
and a closed connection are the right answer to bad input.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterator
from typing import Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, capturedLogs
from twisted.protocols import amp
from twisted.python.failure import Failure

from gridreg.config.properties import Properties
from gridreg.ice.encoding import MarshalError
from gridreg.ice.messages import (
    ProtocolError,
    decode_batch_request,
    decode_reply,
    decode_request,
    decompress_message,
    parse_header,
)
from gridreg.ice.server import IceServerProtocol
from gridreg.protocol.commands import PROTOCOL_VERSION
from gridreg.registry import descriptor_xml  # noqa: F401 - imported here to be instrumented
from gridreg.registry.config import RegistryConfig
from gridreg.registry.descriptors import DescriptorError, derive, parse_application
from gridreg.registry.service import RegistryService
from gridreg.store.memory import MemoryStore

HERE = os.path.dirname(os.path.abspath(__file__))
VECTOR_DIR = os.path.join(HERE, "data", "ice-vectors")
#: inputs that once broke a target, kept as regression tests (one file each)
REGRESSION_DIR = os.path.join(HERE, "data", "fuzz-regressions")
DEMO_APP = os.path.join(HERE, os.pardir, "etc", "demo-app.xml")


class FuzzFinding(Exception):
    """The code under test misbehaved on this input."""


def _check_logs(events: list[LogEvent]) -> None:
    for event in events:
        failure = event.get("log_failure")
        if failure is not None:
            raise FuzzFinding(f"logged failure: {failure.getTraceback()}")


_registry: Optional[RegistryService] = None


def registry() -> RegistryService:
    """One in-memory registry (master, dynamic registration) shared by the targets."""
    global _registry
    if _registry is None:
        properties = Properties()
        properties.set("IceGrid.InstanceName", "DemoIceGrid")
        properties.set("IceGrid.Registry.DynamicRegistration", "1")
        properties.set("IceGrid.Registry.Internal.Endpoints", "tcp -h 127.0.0.1 -p 4063")
        service = RegistryService(
            MemoryReactorClock(), RegistryConfig.from_properties(properties), MemoryStore()
        )
        service.privilegedStartService()
        service.startService()
        _registry = service
    return _registry


def _split(data: bytes) -> Iterator[bytes]:
    """Deliver the input in segments whose sizes come from its first byte."""
    if not data:
        return
    step = (data[0] % 17) or len(data)
    for i in range(1, len(data), step):
        yield data[i : i + step]


# -- Ice ---------------------------------------------------------------------


def ice_target(data: bytes) -> None:
    """
    The Ice decoders on the raw input, then an accepted connection of the
    registry's client or server adapter (by the input's parity) fed with it.
    """
    for decoder in (decode_request, decode_batch_request, decode_reply):
        try:
            decoder(data)
        except MarshalError:
            pass
    try:
        parse_header(data[:14].ljust(14, b"\0"), 1 << 20)
        decompress_message(data, 1 << 16)
    except ProtocolError:
        pass
    service = registry()
    adapter = service.client_adapter if len(data) % 2 else service.server_adapter
    protocol = IceServerProtocol(adapter, 1 << 16)
    transport = StringTransport()
    with capturedLogs() as events:
        protocol.makeConnection(transport)
        for segment in _split(data):
            protocol.dataReceived(segment)
            if transport.disconnecting:
                break
        protocol.connectionLost(Failure(ConnectionDone()))
    _check_logs(events)


def ice_seeds() -> list[bytes]:
    """Every message a client or server sent in the captured vectors."""
    seeds = []
    for path in sorted(glob.glob(os.path.join(VECTOR_DIR, "[0-9]*.json"))):
        with open(path) as f:
            for message in json.load(f)["messages"]:
                if message["direction"] == "client->server":
                    seeds.append(b"\x00" + bytes.fromhex(message["hex"]))
    return seeds


# -- AMP -----------------------------------------------------------------------


def _box(command: bytes, tag: bytes, **arguments: bytes) -> bytes:
    box = amp.Box({b"_command": command, b"_ask": tag})
    box.update({k.encode(): v for k, v in arguments.items()})
    return box.serialize()


HELLO_ADMIN = _box(
    b"Hello", b"1", version=str(PROTOCOL_VERSION).encode(), role=b"admin", name=b"fuzz"
)


def amp_target(data: bytes) -> None:
    """
    An internal (AMP) connection of the registry, past an admin C{Hello},
    fed with the input: box parsing, argument decoding and the responders.
    """
    protocol = registry().internal_factory.buildProtocol(None)
    transport = StringTransport()
    with capturedLogs() as events:
        protocol.makeConnection(transport)
        protocol.dataReceived(HELLO_ADMIN)
        for segment in _split(data):
            protocol.dataReceived(segment)
            if transport.disconnecting:
                break
        protocol.connectionLost(Failure(ConnectionDone()))
    _check_logs(events)


def amp_seeds() -> list[bytes]:
    xml = b'<icegrid><application name="A"></application></icegrid>'
    boxes = [
        _box(b"AdminList", b"2", what=b"object", pattern=b"*", cursor=b"", limit=b"10"),
        _box(b"AdminList", b"3", what=b"adapter", pattern=b"", cursor=b"x", limit=b"-1"),
        _box(b"AdminDescribe", b"4", what=b"application", key=b"A", offset=b"0"),
        _box(b"AdminObjectAdd", b"5", proxy=b"o:tcp -h 127.0.0.1 -p 5", type=b"::X"),
        _box(b"AdminObjectRemove", b"6", identity=b"o"),
        _box(b"AdminAdapterRemove", b"7", adapter_id=b"A"),
        _box(b"AdminPing", b"8", name=b"Master"),
        _box(b"UploadChunk", b"9", transfer=b"t", seq=b"0", data=xml)
        + _box(b"AdminApplicationAdd", b"10", transfer=b"t", update=b"False"),
        _box(b"AdminApplicationRemove", b"11", name=b"A"),
        _box(b"RegisterReplica", b"12", name=b"R", endpoints=b"{}", database_id=b"d", serial=b"0"),
        _box(
            b"ForwardAdapterRegistration", b"13", adapter_id=b"A", replica_group_id=b"", proxy=b""
        ),
    ]
    return [b"\x00" + box for box in boxes]


# -- XML descriptors -------------------------------------------------------------


def xml_target(data: bytes) -> None:
    """An application descriptor through the parser and the derivation."""
    text = data.decode("utf-8", "replace")
    try:
        derive(parse_application(text))
    except DescriptorError:
        pass


def xml_seeds() -> list[bytes]:
    with open(DEMO_APP, "rb") as f:
        demo = f.read()
    return [
        demo,
        b'<icegrid><application name="A"><replica-group id="G"><load-balancing '
        b'type="round-robin" n-replicas="2"/></replica-group></application></icegrid>',
        b'<icegrid><application name="V"><variable name="x" value="${y}"/>'
        b'<node name="n"><server id="s${x}" exe="e"><adapter name="a" endpoints="tcp"/>'
        b"</server></node></application></icegrid>",
    ]


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "ice": (ice_target, ice_seeds),
    "amp": (amp_target, amp_seeds),
    "xml": (xml_target, xml_seeds),
}


def regressions(target: str) -> list[tuple[str, bytes]]:
    """The kept inputs of C{target}: C{tests/data/fuzz-regressions/<target>-*}."""
    found = []
    for path in sorted(glob.glob(os.path.join(REGRESSION_DIR, f"{target}-*"))):
        with open(path, "rb") as f:
            found.append((os.path.basename(path), f.read()))
    return found
