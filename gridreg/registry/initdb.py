# -*- test-case-name: tests.test_initdb -*-
"""
C{--initdb-from-replica NAME}: start from a copy of another replica's
database, as C{icegridregistry} does.

This is how an operator settles a refused session (see L{epochs}): restart
the master from the slave that holds more, or the slave from the master to
drop what only it had. The copy replaces this replica's database whole
(lineage, serial, epoch history and records) before anything is loaded.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from gridreg.protocol.chunking import TransferReceiver, TransferResponder
from gridreg.protocol.commands import PROTOCOL_VERSION, FetchDatabase, Hello
from gridreg.registry.discovery import ReplicaEndpoints
from gridreg.registry.peers import Peers
from gridreg.registry.slave import MAX_REPLICATION_BYTES
from gridreg.registry.snapshots import snapshot_from_json
from gridreg.store.records import StoreState

log = Logger()


class InitdbError(Exception):
    """The named replica's database could not be copied; the message says why."""


class _Receiving(TransferResponder, amp.AMP):
    def __init__(self) -> None:
        super().__init__()
        self.transfers = TransferReceiver(MAX_REPLICATION_BYTES, max_transfers=1)


class _Factory(Factory):
    noisy = False
    protocol = _Receiving


async def fetch_database(
    peers: Peers, name: str, stored: dict[str, Any], timeout: float
) -> StoreState:
    """
    A copy of replica C{name}'s database.

    @param stored: the replica endpoints this replica's own database holds.
    @raise InitdbError: nobody answers as C{name}, or the copy failed.
    """
    endpoints = await peers.internal_endpoints(
        name, None, ReplicaEndpoints.from_json(stored[name]) if name in stored else None
    )
    if not endpoints:
        raise InitdbError(
            f"--initdb-from-replica {name}: no endpoints for replica `{name}' "
            "(set Ice.Default.Locator to a replica that knows it)"
        )
    reasons = []
    for endpoint in endpoints:
        try:
            protocol = (
                await peers.connect(endpoint, name)
                .connect(_Factory())
                .addTimeout(timeout, peers.reactor)
            )
        except Exception as exc:  # not there: try its next endpoint
            reasons.append(str(exc))
            continue
        try:
            await protocol.callRemote(
                Hello, version=PROTOCOL_VERSION, role="registry", name=peers.config.replica_name
            ).addTimeout(timeout, peers.reactor)
            peers.security.check_server(protocol.transport, name)
            answer = await protocol.callRemote(FetchDatabase).addTimeout(timeout, peers.reactor)
            state = snapshot_from_json(protocol.transfers.take(answer["transfer"]))
        except Exception as exc:  # refused, cut or malformed: say so, try the next endpoint
            reasons.append(f"{type(exc).__name__}: {exc}")
            continue
        finally:
            protocol.transport.loseConnection()
        log.info(
            "Copied the database of replica {replica} (database {database_id}, serial {serial})",
            replica=name,
            database_id=state.database_id,
            serial=state.serial,
        )
        return state
    raise InitdbError(
        f"--initdb-from-replica {name}: could not copy its database: " + "; ".join(reasons)
    )
