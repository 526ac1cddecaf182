# -*- test-case-name: tests.test_replication -*-
"""
The AMP commands spoken on a registry's internal endpoints.

This module is the protocol's specification, imported by both sides. Every
internal connection starts with L{Hello}. Then, by role:

  - replica sessions (slave to master): L{RegisterReplica}, after which the
    master pushes L{PushChanges} (the missed and then every new change) or a
    streamed snapshot (L{BeginSnapshot}, chunks, L{InstallSnapshot}), and
    L{ReplicaSetChanged} whenever a replica joins or leaves; a slave forwards
    registrations that reach it with L{ForwardAdapterRegistration};
  - any replica to any other, over a connection of its own (role
    C{registry}): L{ReplicaAdminRequest};
  - admin sessions (gridadmin to any replica): the C{Admin*} commands; the
    writes are refused by slaves with L{NotMasterError}.

AMP values are limited to 65,535 bytes, so whatever grows travels in pages
(a cursor and a limit) or, for blobs (snapshots, large changes, uploaded
descriptors), in one chunked channel: L{gridreg.protocol.chunking}.
Wire names are the Python keyword names.
"""

from __future__ import annotations

from twisted.protocols import amp

from gridreg.protocol import chunking
from gridreg.protocol.errors import (
    ApplicationError,
    DivergedError,
    DuplicateReplicaError,
    NotAuthorizedError,
    NotFoundError,
    NotMasterError,
    QuorumError,
    RegistryUserError,
    SyncError,
    TransferError,
)
from gridreg.protocol.node_commands import ICE_REQUEST_ARGUMENTS

from gridreg.protocol.version import PROTOCOL_VERSION  # noqa: F401 (re-exported)

#: a description is answered in slices of at most this many characters, the
#: chunk size of the blob channel (well below AMP's 65,535 per value)
CHUNK_SIZE = chunking.CHUNK_SIZE

_COMMON_ERRORS = {
    QuorumError: b"QUORUM",
    NotAuthorizedError: b"NOT_AUTHORIZED",
    NotMasterError: b"NOT_MASTER",
    NotFoundError: b"NOT_FOUND",
    RegistryUserError: b"USER_ERROR",
    ApplicationError: b"APPLICATION_ERROR",
}


class Hello(amp.Command):
    """
    The first command on every internal connection: who is calling. The
    responder checks the claim against the peer's certificate.
    """

    arguments = [
        (b"version", amp.Integer()),
        (b"role", amp.Unicode()),  # "registry", "node" or "admin"
        (b"name", amp.Unicode()),
    ]
    response = [
        (b"version", amp.Integer()),
        (b"instance", amp.Unicode()),
        (b"replica", amp.Unicode()),
        (b"master", amp.Boolean()),
        # the newest replication epoch the replica holds (number:token)
        (b"epoch", amp.Unicode()),
    ]
    errors = _COMMON_ERRORS


# -- replica sessions ---------------------------------------------------------


class RegisterReplica(amp.Command):
    """
    A slave registers with the master, saying what it holds: database,
    serial, and the epoch of its last change. The master answers how it
    will catch it up ("changes" or "snapshot") and then pushes the data;
    C{endpoints} is JSON: client, server and internal endpoint strings. A
    slave whose database holds changes the master lacks is refused with
    L{DivergedError}, and nothing is overwritten.
    """

    arguments = [
        (b"name", amp.Unicode()),
        (b"endpoints", amp.Unicode()),
        (b"database_id", amp.Unicode()),
        (b"serial", amp.Integer()),
        (b"epoch", amp.Unicode()),
    ]
    response = [
        (b"database_id", amp.Unicode()),
        (b"serial", amp.Integer()),
        (b"sync", amp.Unicode()),
        (b"epoch", amp.Unicode()),
    ]
    errors = {
        DuplicateReplicaError: b"DUPLICATE_REPLICA",
        DivergedError: b"DIVERGED",
        **_COMMON_ERRORS,
    }


class PushChanges(amp.Command):
    """
    The master sends committed changes (a JSON list of changes, consecutive
    serials), inline in C{changes} or, when larger than an AMP value, as the
    chunked C{transfer} sent just before; the slave answers once they are
    durable in its store.
    """

    arguments = [
        (b"database_id", amp.Unicode()),
        (b"changes", amp.Unicode()),
        (b"transfer", amp.Unicode()),
    ]
    response = [(b"serial", amp.Integer())]
    errors = {SyncError: b"SYNC_ERROR", TransferError: b"TRANSFER_ERROR"}


class BeginSnapshot(amp.Command):
    """
    A snapshot of database C{database_id}, read from serial C{serial} on,
    follows as stream C{transfer} (L{gridreg.protocol.chunking.send_stream},
    in the format of L{gridreg.store.snapshot_codec}); the slave installs it
    as it arrives, and keeps it only once L{InstallSnapshot} ends it.
    """

    arguments = [
        (b"transfer", amp.Unicode()),
        (b"database_id", amp.Unicode()),
        (b"serial", amp.Integer()),
    ]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = {SyncError: b"SYNC_ERROR", TransferError: b"TRANSFER_ERROR"}


class InstallSnapshot(amp.Command):
    """
    End stream C{transfer} (C{size} bytes of SHA-256 C{sha256}): the slave's
    database becomes the snapshot, C{database_id} at C{serial}; the slave
    answers with the serial it now holds. Anything wrong installs nothing.
    """

    arguments = [
        (b"transfer", amp.Unicode()),
        (b"database_id", amp.Unicode()),
        (b"serial", amp.Integer()),
        (b"size", amp.Integer()),
        (b"sha256", amp.Unicode()),
    ]
    response = [(b"serial", amp.Integer())]
    errors = {SyncError: b"SYNC_ERROR", TransferError: b"TRANSFER_ERROR"}


class FetchDatabase(amp.Command):
    """
    A replica started with C{--initdb-from-replica} asks the answering one
    for a copy of its database: it is sent back over the same connection
    as a chunked transfer, named in the answer.
    """

    arguments: list[tuple[bytes, amp.Argument]] = []
    response = [
        (b"transfer", amp.Unicode()),
        (b"database_id", amp.Unicode()),
        (b"serial", amp.Integer()),
    ]
    errors = {TransferError: b"TRANSFER_ERROR", **_COMMON_ERRORS}


class ReplicaSetChanged(amp.Command):
    """
    The master tells a slave which replicas are active now (JSON: name to
    endpoints), so every replica publishes the same Locator and Query, and
    its last committed serial: every write it acknowledged without a slave
    newly listed is at or below it (absent from an older master).
    """

    arguments = [(b"replicas", amp.Unicode()), (b"serial", amp.Integer(optional=True))]
    response: list = []


class ReplicaKeepAlive(amp.Command):
    """
    A slave tells its master it is alive, a few times per
    C{ReplicaSessionTimeout}. A master that hears nothing from a slave for
    that long drops it; a slave whose keepalive goes unanswered that long
    drops the connection and looks for the master again, so a connection
    cut without a reset (a partition) never leaves either side waiting.
    """

    arguments = [(b"serial", amp.Integer())]
    response = [(b"epoch", amp.Unicode())]
    errors = _COMMON_ERRORS


class ForwardAdapterRegistration(amp.Command):
    """
    A registration that reached a slave's LocatorRegistry, forwarded to the
    master. C{proxy} is the base64 of the proxy's 1.1 marshaling, empty to
    unregister. When the master refuses it with an Ice user exception, the
    answer names the exception's type id in C{exception} (empty: done), so
    the slave raises the same one to the Ice server.
    """

    arguments = [
        (b"adapter_id", amp.Unicode()),
        (b"replica_group_id", amp.Unicode()),
        (b"proxy", amp.Unicode()),
    ]
    response = [(b"exception", amp.Unicode()), (b"reason", amp.Unicode())]
    errors = _COMMON_ERRORS


class ReplicaAdminRequest(amp.Command):
    """
    An Ice request for the admin object of the called replica (IceGrid's
    C{<instance>-RegistryReplicaAdminRouter/<name>}, reached through another
    replica). C{reply} is the reply body, status byte onward.
    """

    arguments = ICE_REQUEST_ARGUMENTS
    response = [(b"reply", chunking.BigBytes())]
    errors = _COMMON_ERRORS


# -- admin sessions -----------------------------------------------------------


class AdminApplicationAdd(amp.Command):
    """
    Add (or with C{update}, replace) an application from the XML descriptor
    sent as the chunked C{transfer}.
    """

    arguments = [(b"transfer", amp.Unicode()), (b"update", amp.Boolean())]
    response = [(b"name", amp.Unicode()), (b"serial", amp.Integer())]
    errors = {TransferError: b"TRANSFER_ERROR", **_COMMON_ERRORS}


class AdminApplicationRemove(amp.Command):
    arguments = [(b"name", amp.Unicode())]
    response = [(b"serial", amp.Integer())]
    errors = _COMMON_ERRORS


class AdminList(amp.Command):
    """
    One page of a listing: C{what} is "application", "object", "adapter" or
    "registry"; items are JSON; C{cursor} continues where the page ended.
    """

    arguments = [
        (b"what", amp.Unicode()),
        (b"pattern", amp.Unicode()),
        (b"cursor", amp.Unicode()),
        (b"limit", amp.Integer()),
    ]
    response = [(b"items", amp.Unicode()), (b"cursor", amp.Unicode())]
    errors = _COMMON_ERRORS


class AdminDescribe(amp.Command):
    """
    One thing in detail (JSON), in pages of C{CHUNK_SIZE} characters when
    large (an application's descriptor): fetch C{offset} until C{more} is false.
    """

    arguments = [(b"what", amp.Unicode()), (b"key", amp.Unicode()), (b"offset", amp.Integer())]
    response = [(b"data", amp.Unicode()), (b"more", amp.Boolean())]
    errors = _COMMON_ERRORS


class AdminObjectAdd(amp.Command):
    arguments = [(b"proxy", amp.Unicode()), (b"type", amp.Unicode())]
    response = [(b"serial", amp.Integer())]
    errors = _COMMON_ERRORS


class AdminObjectRemove(amp.Command):
    arguments = [(b"identity", amp.Unicode())]
    response = [(b"serial", amp.Integer())]
    errors = _COMMON_ERRORS


class AdminAdapterRemove(amp.Command):
    arguments = [(b"adapter_id", amp.Unicode())]
    response = [(b"serial", amp.Integer())]
    errors = _COMMON_ERRORS


class AdminPing(amp.Command):
    """Is replica C{name} alive, as seen by the replica answering?"""

    arguments = [(b"name", amp.Unicode())]
    response = [(b"alive", amp.Boolean())]
    errors = _COMMON_ERRORS
