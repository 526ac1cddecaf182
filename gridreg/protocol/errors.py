# -*- test-case-name: tests.test_replication -*-
"""
Errors that cross an internal AMP connection.

Each is declared in the C{errors} of the commands that raise it, so the
caller gets the same exception class back instead of a dropped connection.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import TimeoutError
from twisted.protocols import amp
from twisted.python.failure import Failure


class NotAuthorizedError(Exception):
    """The peer's certificate or claimed role does not allow this."""


class NotMasterError(Exception):
    """A write reached a slave: slaves are read-only. The message names the master."""


class NotFoundError(Exception):
    """No such application, object, adapter or replica."""


class RegistryUserError(Exception):
    """
    The registry refused the request with an Ice user exception; the message
    starts with its type id (C{::Ice::AdapterNotFoundException: ...}).
    """


class ApplicationError(Exception):
    """A descriptor is malformed or invalid; the message says where and why."""


class DuplicateReplicaError(Exception):
    """Another active replica already has this name (or is a second master)."""


class SyncError(Exception):
    """A replication message could not be applied (gap, wrong database, bad chunk)."""


class TransferError(Exception):
    """A chunked transfer was malformed, incomplete, too large or did not match its hash."""


class QuorumError(Exception):
    """
    A write was committed on the master but fewer slaves than
    C{GridReg.Replication.MinAcks} committed it in time; the message says how many.
    """


class DivergedError(Exception):
    """
    The master refused a slave's session: the slave's database holds changes
    the master does not have (or the other way round, a stale master). The
    message says which; an operator decides (C{--initdb-from-replica}).
    """


def failure_reason(failure: Failure, timeout: Optional[float] = None) -> str:
    """
    A failed call in words for logs and C{registry list}: a timeout says how
    long it waited (when known) instead of showing C{TimeoutError}'s arguments.
    """
    if failure.check(TimeoutError):
        return f"no answer within {timeout:g} s" if timeout is not None else "no answer in time"
    return failure.getErrorMessage()


class NodeError(Exception):
    """
    A node could not do what a replica asked of a server: start it (the
    process failed, or its adapters did not register within the activation
    timeout), stop it, or signal it. The message says which server and why.
    """


class NodeUnreachableError(Exception):
    """
    The replica that got the request has no session with the server's node
    (never registered, timed out, or gone). The message names the node.
    """


def declared_error(failure: Failure, command: Any) -> Failure:
    """
    C{failure}, a declared error of the AMP C{command}, as AMP's own
    responder sends it (for responders that answer from the raw box); any
    other failure passes on.
    """
    error = failure.trap(*command.allErrors)
    return Failure(
        amp.RemoteAmpError(
            command.allErrors[error],
            str(failure.value),
            error in command.fatalErrors,
            local=failure,
        )
    )
