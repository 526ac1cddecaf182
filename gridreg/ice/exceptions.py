# -*- test-case-name: tests.test_ice_messages -*-
"""
Ice user exceptions and the client-side errors decoded from replies.

User exceptions (L{UserException} subclasses) are the Slice-declared
exceptions a servant raises and a reply with status 1 carries, marshaled as
described in C{docs/ice-protocol.md} section 7.  The L{RequestFailedError}
family is what a client gets for the other non-success reply statuses; they
are plain Python exceptions because they have no wire form of their own.
"""

from __future__ import annotations

from typing import Callable, ClassVar

from gridreg.ice.encoding import (
    InputStream,
    MarshalError,
    OutputStream,
    is_supported_encoding,
)
from gridreg.ice.types import Identity, Version

__all__ = [
    "AccessDeniedException",
    "AllocationException",
    "BadSignalException",
    "CannotCreateSessionException",
    "FileNotAvailableException",
    "Glacier2PermissionDeniedException",
    "NodeNotExistException",
    "NodeUnreachableException",
    "ObserverAlreadyRegisteredException",
    "RegistryNotExistException",
    "RegistryUnreachableException",
    "ServerStartException",
    "ServerStopException",
    "ServerUnreachableException",
    "AdapterAlreadyActiveException",
    "AdapterNotExistException",
    "AdapterNotFoundException",
    "ApplicationNotExistException",
    "DeploymentException",
    "FacetNotExistError",
    "InvalidReplicaGroupIdException",
    "ObjectExistsException",
    "ObjectNotExistError",
    "ObjectNotFoundException",
    "ObjectNotRegisteredException",
    "OperationNotExistError",
    "PermissionDeniedException",
    "RequestFailedError",
    "ServerNotExistException",
    "ServerNotFoundException",
    "UnknownError",
    "UnknownLocalError",
    "UnknownUserError",
    "UnknownUserException",
    "UserException",
    "decode_user_exception",
    "encode_user_exception",
]


class _ValueEquality(Exception):
    """
    Exceptions that compare equal when of the same type with the same
    C{args}, so tests and callers can compare decoded exceptions directly.
    """

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.args == other.args

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class UserException(_ValueEquality):
    """
    Base of the Slice user exceptions this codebase knows.  Subclasses set
    C{type_id} and marshal their data members in declaration order.
    """

    type_id: ClassVar[str] = "::Ice::UserException"

    def write_members(self, out: OutputStream) -> None:
        """Marshal the data members (none by default)."""

    @classmethod
    def read_members(cls, inp: InputStream) -> UserException:
        """Unmarshal the data members and return a new instance."""
        return cls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.args))})"


class UnknownUserException(UserException):
    """
    A user exception whose type id (and hence members) we do not know.  It
    records the most-derived type id and cannot be marshaled again.
    """

    def __init__(self, type_id: str) -> None:
        super().__init__(type_id)
        self.type_id = type_id  # type: ignore[misc]

    def write_members(self, out: OutputStream) -> None:
        raise MarshalError(f"cannot marshal the unknown user exception {self.type_id}")


class AdapterNotFoundException(UserException):
    type_id = "::Ice::AdapterNotFoundException"


class ObjectNotFoundException(UserException):
    type_id = "::Ice::ObjectNotFoundException"


class ServerNotFoundException(UserException):
    type_id = "::Ice::ServerNotFoundException"


class AdapterAlreadyActiveException(UserException):
    type_id = "::Ice::AdapterAlreadyActiveException"


class InvalidReplicaGroupIdException(UserException):
    type_id = "::Ice::InvalidReplicaGroupIdException"


class _IdentityMemberException(UserException):
    """An exception with a single C{Ice::Identity id} member."""

    def __init__(self, id: Identity) -> None:
        super().__init__(id)
        self.id = id

    def write_members(self, out: OutputStream) -> None:
        out.write_identity(self.id)

    @classmethod
    def read_members(cls, inp: InputStream) -> UserException:
        return cls(inp.read_identity())


class ObjectNotRegisteredException(_IdentityMemberException):
    type_id = "::IceGrid::ObjectNotRegisteredException"


class ObjectExistsException(_IdentityMemberException):
    type_id = "::IceGrid::ObjectExistsException"


class _StringMemberException(UserException):
    """An exception with a single string member, named by C{member}."""

    member: ClassVar[str]

    def __init__(self, value: str) -> None:
        super().__init__(value)
        setattr(self, self.member, value)

    def write_members(self, out: OutputStream) -> None:
        out.write_string(self.args[0])

    @classmethod
    def read_members(cls, inp: InputStream) -> UserException:
        return cls(inp.read_string())


class AdapterNotExistException(_StringMemberException):
    type_id = "::IceGrid::AdapterNotExistException"
    member = "id"
    id: str


class ApplicationNotExistException(_StringMemberException):
    type_id = "::IceGrid::ApplicationNotExistException"
    member = "name"
    name: str


class DeploymentException(_StringMemberException):
    type_id = "::IceGrid::DeploymentException"
    member = "reason"
    reason: str


class PermissionDeniedException(_StringMemberException):
    type_id = "::IceGrid::PermissionDeniedException"
    member = "reason"
    reason: str


class ServerNotExistException(_StringMemberException):
    type_id = "::IceGrid::ServerNotExistException"
    member = "id"
    id: str


class NodeNotExistException(_StringMemberException):
    type_id = "::IceGrid::NodeNotExistException"
    member = "name"
    name: str


class RegistryNotExistException(_StringMemberException):
    type_id = "::IceGrid::RegistryNotExistException"
    member = "name"
    name: str


class BadSignalException(_StringMemberException):
    type_id = "::IceGrid::BadSignalException"
    member = "reason"
    reason: str


class AccessDeniedException(_StringMemberException):
    type_id = "::IceGrid::AccessDeniedException"
    member = "lockUserId"
    lockUserId: str


class AllocationException(_StringMemberException):
    type_id = "::IceGrid::AllocationException"
    member = "reason"
    reason: str


class AllocationTimeoutException(AllocationException):
    """
    C{::IceGrid::AllocationTimeoutException}: derived from
    L{AllocationException} and adding no member, so on the wire it is two
    slices: an empty one of its own, then the base's with C{reason}
    (IceGrid 3.7.8 leaves the reason empty).
    """

    type_id = "::IceGrid::AllocationTimeoutException"

    def __init__(self, value: str = "") -> None:
        super().__init__(value)

    def slices(self) -> list[tuple[str, Callable[[OutputStream], None]]]:
        return [(self.type_id, lambda out: None), (AllocationException.type_id, self.write_members)]


class FileNotAvailableException(_StringMemberException):
    type_id = "::IceGrid::FileNotAvailableException"
    member = "reason"
    reason: str


class Glacier2PermissionDeniedException(_StringMemberException):
    """What a C{Glacier2::PermissionsVerifier} may raise instead of answering false."""

    type_id = "::Glacier2::PermissionDeniedException"
    member = "reason"
    reason: str


class CannotCreateSessionException(_StringMemberException):
    """What a C{Glacier2::SessionManager} raises to refuse a router session."""

    type_id = "::Glacier2::CannotCreateSessionException"
    member = "reason"
    reason: str


class ObserverAlreadyRegisteredException(_IdentityMemberException):
    type_id = "::IceGrid::ObserverAlreadyRegisteredException"


class _TwoStringMemberException(UserException):
    """An exception with two string members, named by C{members}, in Slice order."""

    members: ClassVar[tuple[str, str]]

    def __init__(self, first: str, second: str) -> None:
        super().__init__(first, second)
        setattr(self, self.members[0], first)
        setattr(self, self.members[1], second)

    def write_members(self, out: OutputStream) -> None:
        out.write_string(self.args[0])
        out.write_string(self.args[1])

    @classmethod
    def read_members(cls, inp: InputStream) -> UserException:
        return cls(inp.read_string(), inp.read_string())


class ServerStartException(_TwoStringMemberException):
    type_id = "::IceGrid::ServerStartException"
    members = ("id", "reason")


class ServerStopException(_TwoStringMemberException):
    type_id = "::IceGrid::ServerStopException"
    members = ("id", "reason")


class NodeUnreachableException(_TwoStringMemberException):
    type_id = "::IceGrid::NodeUnreachableException"
    members = ("name", "reason")


class ServerUnreachableException(_TwoStringMemberException):
    type_id = "::IceGrid::ServerUnreachableException"
    members = ("name", "reason")


class RegistryUnreachableException(_TwoStringMemberException):
    type_id = "::IceGrid::RegistryUnreachableException"
    members = ("name", "reason")


KNOWN_EXCEPTIONS: dict[str, type[UserException]] = {
    cls.type_id: cls
    for cls in (
        AdapterNotFoundException,
        ObjectNotFoundException,
        ServerNotFoundException,
        AdapterAlreadyActiveException,
        InvalidReplicaGroupIdException,
        ObjectNotRegisteredException,
        ObjectExistsException,
        AdapterNotExistException,
        ApplicationNotExistException,
        DeploymentException,
        PermissionDeniedException,
        ServerNotExistException,
        NodeNotExistException,
        RegistryNotExistException,
        BadSignalException,
        AccessDeniedException,
        AllocationException,
        FileNotAvailableException,
        Glacier2PermissionDeniedException,
        CannotCreateSessionException,
        ObserverAlreadyRegisteredException,
        ServerStartException,
        ServerStopException,
        NodeUnreachableException,
        ServerUnreachableException,
        RegistryUnreachableException,
    )
}

# 1.1 slice flags (ice-protocol.md §7).
_FLAG_HAS_OPTIONAL_MEMBERS = 0x04
_FLAG_HAS_INDIRECTION_TABLE = 0x08
_FLAG_HAS_SLICE_SIZE = 0x10
_FLAG_IS_LAST_SLICE = 0x20


def encode_user_exception(exc: UserException, encoding: Version) -> bytes:
    """
    Marshal C{exc} as the payload of a reply encapsulation of C{encoding}:
    one slice, compact format in 1.1 (flags C{0x20}); in 1.0 the
    C{usesClasses} flag, type id and sized slice.

    @raise MarshalError: for an unsupported encoding or an
        L{UnknownUserException}.
    """
    if not is_supported_encoding(encoding):
        raise MarshalError(f"unsupported encoding {encoding}")
    slices = getattr(exc, "slices", None)
    parts = slices() if slices is not None else [(exc.type_id, exc.write_members)]
    out = OutputStream(encoding)
    if encoding.minor == 0:
        out.write_bool(False)
    for i, (type_id, write) in enumerate(parts):
        members = OutputStream(encoding)
        write(members)
        data = members.getvalue()
        if encoding.minor == 0:
            out.write_string(type_id)
            out.write_int(len(data) + 4)
        else:
            out.write_byte(_FLAG_IS_LAST_SLICE if i == len(parts) - 1 else 0)
            out.write_string(type_id)
        out.write_bytes(data)
    return out.getvalue()


def decode_user_exception(payload: bytes, encoding: Version) -> UserException:
    """
    Unmarshal the user exception in a reply encapsulation's C{payload}.

    Slices of unknown types are skipped while their size is known, so a
    known base exception is found if there is one; otherwise the result is
    an L{UnknownUserException} carrying the most-derived type id.

    @raise MarshalError: for malformed data or an unsupported encoding.
    """
    if not is_supported_encoding(encoding):
        raise MarshalError(f"unsupported encoding {encoding}")
    inp = InputStream(payload, encoding)
    if encoding.minor == 0:
        return _decode_1_0(inp)
    return _decode_1_1(inp)


def _decode_1_1(inp: InputStream) -> UserException:
    most_derived: str | None = None
    while True:
        flags = inp.read_byte()
        type_id = inp.read_string()
        if most_derived is None:
            most_derived = type_id
        slice_size = -1
        if flags & _FLAG_HAS_SLICE_SIZE:
            slice_size = inp.read_int()
            if slice_size < 4:
                raise MarshalError(f"slice size {slice_size} < 4")
        cls = KNOWN_EXCEPTIONS.get(type_id)
        if cls is not None:
            exc = cls.read_members(inp)
            if flags & _FLAG_HAS_OPTIONAL_MEMBERS:
                inp.skip_tagged_members()
            return exc
        if slice_size < 0 or flags & _FLAG_HAS_INDIRECTION_TABLE:
            return UnknownUserException(most_derived)
        inp.skip(slice_size - 4)
        if flags & _FLAG_IS_LAST_SLICE:
            return UnknownUserException(most_derived)


def _decode_1_0(inp: InputStream) -> UserException:
    uses_classes = inp.read_bool()
    most_derived = inp.read_string()
    type_id = most_derived
    while True:
        slice_size = inp.read_int()
        if slice_size < 4:
            raise MarshalError(f"slice size {slice_size} < 4")
        cls = KNOWN_EXCEPTIONS.get(type_id)
        if cls is not None:
            return cls.read_members(inp)
        if uses_classes:
            # Class instances follow the slices; the end of the slices
            # cannot be told from them, so stop here.
            return UnknownUserException(most_derived)
        inp.skip(slice_size - 4)
        if inp.at_end():
            return UnknownUserException(most_derived)
        type_id = inp.read_string()


class RequestFailedError(_ValueEquality):
    """A request failed with a non-success, non-user-exception reply."""


class _NotExistError(RequestFailedError):
    def __init__(self, identity: Identity, facet: str, operation: str) -> None:
        super().__init__(identity, facet, operation)
        self.identity = identity
        self.facet = facet
        self.operation = operation


class ObjectNotExistError(_NotExistError):
    """Reply status 2: the server has no object with that identity."""


class FacetNotExistError(_NotExistError):
    """Reply status 3: the object exists but not the facet."""


class OperationNotExistError(_NotExistError):
    """Reply status 4: the object does not implement the operation."""


class _TextError(RequestFailedError):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class UnknownLocalError(_TextError):
    """Reply status 5: the servant raised an Ice local exception."""


class UnknownUserError(_TextError):
    """Reply status 6: the servant raised an undeclared user exception."""


class UnknownError(_TextError):
    """Reply status 7: the servant raised a non-Ice exception."""
