# -*- test-case-name: tests.test_fencing -*-
"""
Finding and asking the other replicas: where the master is (through
C{Ice.Default.Locator} and the endpoints this replica stored), and what
each replica says it is (its C{Hello}: master or slave, and its epoch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import attrs

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from gridreg.ice.types import Endpoint
from gridreg.protocol.commands import PROTOCOL_VERSION, Hello
from gridreg.registry.config import RegistryConfig
from gridreg.registry.discovery import MASTER, ReplicaEndpoints, internal_identity
from gridreg.registry.epochs import Epoch
from gridreg.registry.security import InternalSecurity

#: how long a probe of another replica may take, at most
PROBE_TIMEOUT = 5.0


@attrs.frozen
class PeerAnswer:
    """What a replica said about itself."""

    name: str
    where: str
    master: bool
    epoch: Epoch


class _HelloFactory(Factory):
    noisy = False
    protocol = amp.AMP


class Peers:
    """This replica's view of the others, for finding the master and for fencing."""

    log = Logger()

    def __init__(self, reactor: Any, config: RegistryConfig, security: InternalSecurity) -> None:
        self.reactor = reactor
        self.config = config
        self.security = security
        self._locators: Optional[list[Any]] = None

    def locator_clients(self, own_client: Sequence[Endpoint]) -> list[Any]:
        """One locator client per replica listed in Ice.Default.Locator (but this one)."""
        if self._locators is None:
            from gridreg.client.late_loss import LOSS_NOTICE_DELAY
            from gridreg.client.locator import LocatorClient

            locator = self.config.locator
            self._locators = []
            if locator is not None:
                for endpoint in locator.endpoints:
                    if endpoint in own_client:
                        continue
                    client = LocatorClient(
                        self.reactor,
                        attrs.evolve(locator, endpoints=(endpoint,)),
                        cache_timeout=0,
                        max_attempts=1,
                        # its loss, the master's, is when this replica's clients need it most
                        loss_notice_delay=LOSS_NOTICE_DELAY,
                    )
                    client.startService()
                    self._locators.append(client)
        return self._locators

    def stop(self) -> Deferred[Any]:
        clients, self._locators = self._locators or [], None
        return DeferredList([c.stopService() for c in clients], consumeErrors=True)

    async def master_endpoints(
        self, own: Optional[ReplicaEndpoints], stored: Optional[ReplicaEndpoints]
    ) -> list[Endpoint]:
        """
        The master's internal endpoints, as every replica named in
        C{Ice.Default.Locator} sees them, then as this replica stored them.
        Asking each one (not just the first that answers) matters after a
        promotion, when some replicas still name the old master.
        """
        return await self.internal_endpoints(MASTER, own, stored)

    async def internal_endpoints(
        self, name: str, own: Optional[ReplicaEndpoints], stored: Optional[ReplicaEndpoints]
    ) -> list[Endpoint]:
        """
        Replica C{name}'s internal endpoints: those of its
        C{InternalRegistry-<name>} as every replica in C{Ice.Default.Locator}
        answers it (all asked at once), then C{stored}; never C{own}'s.
        """

        async def ask(client: Any) -> tuple[Endpoint, ...]:
            proxy = await client.find_object_by_id(
                internal_identity(self.config.instance_name, name)
            )
            return tuple(proxy.endpoints)

        endpoints: list[Endpoint] = []
        answers = await DeferredList(
            [
                Deferred.fromCoroutine(ask(c))
                for c in self.locator_clients(own.client if own else ())
            ],
            consumeErrors=True,
        )
        for ok, found in answers:
            if ok:
                endpoints.extend(e for e in found if e not in endpoints)
        if stored is not None:
            endpoints.extend(e for e in stored.internal if e not in endpoints)
        mine = own.internal if own else ()
        return [e for e in endpoints if e not in mine]

    def connect(self, endpoint: Endpoint, name: str) -> IStreamClientEndpoint:
        return self.security.client_endpoint(self.reactor, endpoint, name)

    async def ask(self, name: str, endpoint: Endpoint) -> Optional[PeerAnswer]:
        """
        Say hello to replica C{name} at C{endpoint}; None when nobody (or
        not that replica) answers in time.
        """
        try:
            # bounded as a whole: a hung peer accepts TCP but never finishes TLS
            protocol = (
                await self.connect(endpoint, name)
                .connect(_HelloFactory())
                .addTimeout(PROBE_TIMEOUT, self.reactor)
            )
        except Exception:
            return None  # a stale address, or a hung replica: no answer
        try:
            answer = await protocol.callRemote(
                Hello, version=PROTOCOL_VERSION, role="registry", name=self.config.replica_name
            ).addTimeout(PROBE_TIMEOUT, self.reactor)
            self.security.check_server(protocol.transport, answer["replica"])
            return PeerAnswer(
                answer["replica"],
                str(protocol.transport.getPeer()),
                answer["master"],
                Epoch.from_wire(answer["epoch"]),
            )
        except Exception as exc:  # refused, timed out, another version: no answer
            self.log.debug(
                "No usable answer from replica {replica}: {reason}", replica=name, reason=exc
            )
            return None
        finally:
            protocol.transport.loseConnection()

    async def survey(self, targets: Mapping[str, Sequence[Endpoint]]) -> list[PeerAnswer]:
        """Ask every target at once: C{targets} maps a replica name to its endpoints."""
        calls = [
            Deferred.fromCoroutine(self.ask(name, endpoint))
            for name, endpoints in targets.items()
            for endpoint in endpoints
        ]
        results = await DeferredList(calls, consumeErrors=True)
        return [answer for ok, answer in results if ok and answer is not None]
