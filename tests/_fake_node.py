"""
A fake gridnode for registry tests: an AMP client on a memory network that
says Hello as a node, registers, and answers the replica's node commands
itself, recording what it was sent.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import ClientFactory
from twisted.internet.testing import StringTransport
from twisted.protocols import amp

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.messages import Request, ReplyStatus, decode_reply, encode_request
from gridreg.ice.types import Identity, OperationMode, Proxy, TcpEndpoint
from gridreg.protocol.chunking import TransferReceiver, TransferResponder
from gridreg.protocol.commands import PROTOCOL_VERSION, Hello
from gridreg.protocol.errors import NodeError
from gridreg.protocol.node_commands import (
    ActivateServer,
    AdapterRegistered,
    DeployServers,
    EnableServer,
    NodeKeepAlive,
    NodeLiveState,
    ProcessRegistered,
    RegisterNode,
    ReplicasChanged,
    ShutdownNode,
    SignalServer,
    StopServer,
)
from gridreg.registry.node_relay import proxy_field
from gridreg.registry.service import RegistryService

HOST = "127.0.0.1"


def direct(port: int) -> Proxy:
    return Proxy(Identity("dummy"), endpoints=(TcpEndpoint(HOST, port),))


class FakeNode(amp.AMP, TransferResponder):
    """
    A node that runs nothing: C{ports} says which port each server's
    adapters get when it is activated; a server in C{failing} fails to
    start with that reason; one in C{hanging} never answers.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.transfers = TransferReceiver(10_000_000)
        self.deployments: list[tuple[int, list[dict[str, Any]]]] = []
        self.activations: list[str] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.replicas: list[list[dict[str, str]]] = []
        self.ports: dict[str, int] = {}
        self.failing: dict[str, str] = {}
        self.hanging: set[str] = set()
        self.servers: dict[str, dict[str, Any]] = {}
        self.lost = False
        self.answer: Optional[dict[str, Any]] = None

    def connectionLost(self, reason: Any) -> None:
        self.lost = True
        super().connectionLost(reason)

    # -- what a node sends -----------------------------------------------------------

    def register(self, info: Optional[dict[str, Any]] = None) -> Deferred[dict[str, Any]]:
        d = self.callRemote(Hello, version=PROTOCOL_VERSION, role="node", name=self.name)
        d.addCallback(
            lambda _: self.callRemote(
                RegisterNode,
                name=self.name,
                info=json.dumps(info or {"hostname": f"{self.name}.example", "os": "Linux"}),
                epoch="",
            )
        )

        def registered(answer: dict[str, Any]) -> dict[str, Any]:
            self.answer = answer
            return answer

        return d.addCallback(registered)

    def keepalive(self, load1: float = 0.0, load5: float = 0.0, load15: float = 0.0) -> Any:
        return self.callRemote(NodeKeepAlive, load1=load1, load5=load5, load15=load15)

    def live(
        self,
        servers: Optional[dict[str, Any]] = None,
        adapters: Optional[dict[str, Any]] = None,
        full: bool = False,
    ) -> Deferred[Any]:
        return self.callRemote(
            NodeLiveState,
            servers=json.dumps(servers or {}),
            adapters=json.dumps(adapters or {}),
            full=full,
        )

    def adapter_up(self, adapter_id: str, port: int, group: str = "") -> Deferred[Any]:
        return self.live(
            adapters={adapter_id: {"proxy": proxy_field(direct(port)), "replica_group": group}}
        )

    # -- what a replica asks -----------------------------------------------------------

    def deployed_servers(self) -> dict[str, dict[str, Any]]:
        """The servers of the newest deployment, by id."""
        serial, servers = self.deployments[-1]
        return {s["descriptor"]["id"]: s for s in servers}

    @DeployServers.responder
    def deploy(self, transfer: str, serial: int) -> dict[str, Any]:
        self.deployments.append((serial, json.loads(self.transfers.take(transfer))))
        return {"applied": True}

    def _adapters_of(self, server: str) -> list[str]:
        servers = self.deployed_servers()
        return [a["id"] for a in servers[server]["descriptor"]["adapters"]]

    @ActivateServer.responder
    def activate(self, server: str) -> Deferred[dict[str, Any]]:
        self.activations.append(server)
        if server in self.hanging:
            return Deferred()
        if server in self.failing:
            return fail(NodeError(f"server `{server}': {self.failing[server]}"))
        port = self.ports.get(server, 7000)
        self.servers[server] = {"state": "active", "pid": port, "enabled": True}
        adapters = {
            a: {"proxy": proxy_field(direct(port)), "replica_group": ""}
            for a in self._adapters_of(server)
        }
        # the live state first, on the same connection, then the answer
        d = self.live(servers={server: self.servers[server]}, adapters=adapters)
        return d.addCallback(lambda _: {"pid": port})

    def _record(self, command: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((command, kwargs))
        return {}

    @StopServer.responder
    def stop(self, server: str) -> Deferred[dict[str, Any]]:
        self.calls.append(("stop", {"server": server}))
        self.servers[server] = {"state": "inactive", "pid": None, "enabled": True}
        adapters = {a: {"proxy": "", "replica_group": ""} for a in self._adapters_of(server)}
        d = self.live(servers={server: self.servers[server]}, adapters=adapters)
        return d.addCallback(lambda _: {})

    @EnableServer.responder
    def enable(self, server: str, enabled: bool) -> Deferred[dict[str, Any]]:
        self.calls.append(("enable", {"server": server, "enabled": enabled}))
        value = self.servers.setdefault(server, {"state": "inactive", "pid": None})
        value["enabled"] = enabled
        return self.live(servers={server: value}).addCallback(lambda _: {})

    @SignalServer.responder
    def signal(self, server: str, signal: str) -> dict[str, Any]:
        return self._record("signal", server=server, signal=signal)

    @AdapterRegistered.responder
    def adapter_registered(self, adapter: str, replica_group: str, proxy: str) -> Deferred[Any]:
        self.calls.append(("adapter", {"adapter": adapter, "replica_group": replica_group}))
        d = self.live(adapters={adapter: {"proxy": proxy, "replica_group": replica_group}})
        return d.addCallback(lambda _: {})

    @ProcessRegistered.responder
    def process_registered(self, server: str, proxy: str) -> dict[str, Any]:
        return self._record("process", server=server, proxy=proxy)

    @ReplicasChanged.responder
    def replicas_changed(self, replicas: str) -> dict[str, Any]:
        self.replicas.append(json.loads(replicas))
        return {}

    @ShutdownNode.responder
    def shutdown(self) -> dict[str, Any]:
        return self._record("shutdown")


class _Factory(ClientFactory):
    def __init__(self, node: FakeNode) -> None:
        self.node = node

    def buildProtocol(self, addr: Any) -> FakeNode:
        return self.node


def connect(network: Any, port: int, node: FakeNode) -> FakeNode:
    """Connect C{node} to the internal endpoint at C{port}."""
    network.reactor.connectTCP(HOST, port, _Factory(node))
    network.flush()
    return node


class Locate:
    """One C{findAdapterById} sent to a replica's Locator, as an Ice client does."""

    def __init__(self, service: RegistryService, adapter_id: str, request_id: int = 1) -> None:
        self.protocol = service.client_factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.transport.clear()
        out = OutputStream()
        out.write_string(adapter_id)
        request = Request(
            request_id,
            Identity("Locator", "DemoIceGrid"),
            "",
            "findAdapterById",
            OperationMode.NONMUTATING,
            {},
            params=out.getvalue(),
        )
        self.protocol.dataReceived(encode_request(request))

    @property
    def answered(self) -> bool:
        return len(self.transport.value()) > 14

    def ports(self) -> Optional[list[int]]:
        """The ports answered (None for a null proxy); raises on an exception."""
        reply = decode_reply(self.transport.value()[14:])
        if reply.status != ReplyStatus.SUCCESS:
            raise AssertionError(f"locate failed: {reply.status!r}")
        proxy = InputStream(reply.payload, reply.encoding).read_proxy()
        return None if proxy is None else [e.port for e in proxy.endpoints]

    def status(self) -> ReplyStatus:
        return decode_reply(self.transport.value()[14:]).status


def call_servant(
    service: RegistryService,
    identity: Identity,
    operation: str,
    write: Callable[[OutputStream], None],
    adapter: str = "client",
    mode: OperationMode = OperationMode.NONMUTATING,
) -> StringTransport:
    """Send one request to the client (or server) adapter; the transport gets the reply."""
    factory = service.client_factory if adapter == "client" else service.server_factory
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    transport.clear()
    out = OutputStream()
    write(out)
    protocol.dataReceived(
        encode_request(Request(1, identity, "", operation, mode, {}, params=out.getvalue()))
    )
    return transport
