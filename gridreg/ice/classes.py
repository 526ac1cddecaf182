# -*- test-case-name: tests.test_ice_classes -*-
"""
Slice class instances (encoding 1.1) and the typed members they carry.

A Slice class is a Python class deriving from L{Value} that names its type
id (C{ice_id}) and its own data members (C{ice_members}: attribute name and
L{IceType}, in declaration order); base-class members come from the base
Python class, so an instance is marshaled as one slice per class, most
derived first, as the 1.1 encoding lays out.  L{register} makes a class
known to readers.

One L{ValueWriter} or L{ValueReader} serves one encapsulation, because type
id indexes and instance ids are numbered per encapsulation.  Instances are
written inline at their first use and referred to by id afterwards (1.1 has
no pending-values table), in the compact format by default, which is what
Ice 3.7 sends unless an operation asks for C{["format:sliced"]}.  Readers
accept both formats, shared and cyclic references, and slice off derived
types they do not know when the data is in the sliced format.

Every malformed input raises L{MarshalError}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from gridreg.ice.encoding import InputStream, MarshalError, OutputStream

__all__ = [
    "COMPACT",
    "Members",
    "SLICED",
    "ClassRef",
    "DictOf",
    "IceType",
    "SeqOf",
    "StructOf",
    "UnknownSlicedValue",
    "Value",
    "ValueReader",
    "ValueWriter",
    "register",
    "registered",
]

#: A class's or struct's data members: (attribute name, type) in Slice order.
Members = tuple[tuple[str, "IceType"], ...]

COMPACT = "compact"
SLICED = "sliced"

# Slice flags (Ice manual, "Data Encoding for Class Instances").
_TYPE_ID_STRING = 0x01
_TYPE_ID_INDEX = 0x02
_TYPE_ID_COMPACT = 0x03
_TYPE_ID_MASK = 0x03
_HAS_OPTIONAL_MEMBERS = 0x04
_HAS_INDIRECTION_TABLE = 0x08
_HAS_SLICE_SIZE = 0x10
_IS_LAST_SLICE = 0x20

#: Nesting beyond this is refused, so hostile data cannot exhaust the stack.
MAX_DEPTH = 100


class Value:
    """
    Base of the Python classes that stand for Slice classes.

    @cvar ice_id: the Slice type id, e.g. C{"::IceGrid::ServerDescriptor"}.
    @cvar ice_members: this class's own data members, in Slice order.
    @cvar ice_compact_id: the class's compact id, or C{-1}.
    """

    ice_id: ClassVar[str] = ""
    ice_members: ClassVar[Members] = ()
    ice_compact_id: ClassVar[int] = -1

    @classmethod
    def ice_slices(cls) -> list[type[Value]]:
        """The classes whose slices make up an instance, most derived first."""
        return [k for k in cls.__mro__ if issubclass(k, Value) and "ice_id" in vars(k) and k.ice_id]

    @classmethod
    def ice_own_members(cls) -> Members:
        """The members of this class's own slice (not inherited ones)."""
        return vars(cls).get("ice_members", ())  # type: ignore[no-any-return]


class UnknownSlicedValue(Value):
    """
    An instance none of whose slices is of a known type: only its most
    derived type id is kept.  It cannot be written back.
    """

    def __init__(self, type_id: str) -> None:
        self.unknown_type_id = type_id

    def __repr__(self) -> str:
        return f"UnknownSlicedValue({self.unknown_type_id!r})"


_BY_ID: dict[str, type[Value]] = {}
_BY_COMPACT_ID: dict[int, type[Value]] = {}


def register(cls: type[Value]) -> type[Value]:
    """Class decorator: make C{cls} known to L{ValueReader} by its type id."""
    _BY_ID[cls.ice_id] = cls
    if cls.ice_compact_id >= 0:
        _BY_COMPACT_ID[cls.ice_compact_id] = cls
    return cls


def registered(type_id: str) -> type[Value] | None:
    """The class registered for C{type_id}, if any."""
    return _BY_ID.get(type_id)


# -- member types -------------------------------------------------------------


class _Patch:
    """
    A class reference not yet resolved (sliced format: it points into an
    indirection table read after the slice).  Containers give it setters.
    """

    __slots__ = ("setters",)

    def __init__(self) -> None:
        self.setters: list[Callable[[Any], None]] = []

    def resolve(self, value: Any) -> None:
        for setter in self.setters:
            setter(value)


def _set_when_known(value: Any, setter: Callable[[Any], None]) -> Any:
    """Return C{value}, or C{None} and arrange for C{setter} when it is a patch."""
    if isinstance(value, _Patch):
        value.setters.append(setter)
        return None
    return value


def _setter(obj: Any, name: str) -> Callable[[Any], None]:
    def set_attribute(value: Any) -> None:
        setattr(obj, name, value)

    return set_attribute


def _item_setter(container: Any, key: Any) -> Callable[[Any], None]:
    def set_item(value: Any) -> None:
        container[key] = value

    return set_item


class IceType:
    """How one Slice type is marshaled; C{min_size} bounds sequence counts."""

    min_size: int = 1

    def write(self, w: ValueWriter, value: Any) -> None:
        raise NotImplementedError

    def read(self, r: ValueReader) -> Any:
        raise NotImplementedError


class _Prim(IceType):
    def __init__(self, name: str, min_size: int) -> None:
        self.name = name
        self.min_size = min_size

    def write(self, w: ValueWriter, value: Any) -> None:
        getattr(w.out, "write_" + self.name)(value)

    def read(self, r: ValueReader) -> Any:
        return getattr(r.inp, "read_" + self.name)()

    def __repr__(self) -> str:
        return self.name.upper()


BOOL = _Prim("bool", 1)
BYTE = _Prim("byte", 1)
SHORT = _Prim("short", 2)
INT = _Prim("int", 4)
LONG = _Prim("long", 8)
FLOAT = _Prim("float", 4)
DOUBLE = _Prim("double", 8)
STRING = _Prim("string", 1)
IDENTITY = _Prim("identity", 2)


class SeqOf(IceType):
    """C{sequence<T>}, as a Python list."""

    def __init__(self, element: IceType) -> None:
        self.element = element

    def write(self, w: ValueWriter, value: Any) -> None:
        w.out.write_size(len(value))
        for item in value:
            self.element.write(w, item)

    def read(self, r: ValueReader) -> list[Any]:
        result: list[Any] = []
        for i in range(r.inp.read_count(self.element.min_size)):
            result.append(_set_when_known(self.element.read(r), _item_setter(result, i)))
        return result


class DictOf(IceType):
    """C{dictionary<K, V>}, as a Python dict in wire order."""

    def __init__(self, key: IceType, value: IceType) -> None:
        self.key = key
        self.value = value

    def write(self, w: ValueWriter, value: Any) -> None:
        w.out.write_size(len(value))
        for k, v in value.items():
            self.key.write(w, k)
            self.value.write(w, v)

    def read(self, r: ValueReader) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for _ in range(r.inp.read_count(self.key.min_size + self.value.min_size)):
            k = self.key.read(r)
            if k in result:
                raise MarshalError(f"duplicate dictionary key {k!r}")
            result[k] = _set_when_known(self.value.read(r), _item_setter(result, k))
        return result


class StructOf(IceType):
    """
    A Slice struct, as an instance of C{cls} (keyword-constructible and
    mutable, e.g. C{attrs.define}) whose C{ice_members} lists its fields.
    """

    def __init__(self, cls: type) -> None:
        self.cls = cls

    @property
    def members(self) -> tuple[tuple[str, IceType], ...]:
        return self.cls.ice_members  # type: ignore[attr-defined, no-any-return]

    @property
    def min_size(self) -> int:  # type: ignore[override]
        return sum(t.min_size for _, t in self.members)

    def write(self, w: ValueWriter, value: Any) -> None:
        for name, ice_type in self.members:
            ice_type.write(w, getattr(value, name))

    def read(self, r: ValueReader) -> Any:
        fields = {name: ice_type.read(r) for name, ice_type in self.members}
        patches = {k: v for k, v in fields.items() if isinstance(v, _Patch)}
        obj = self.cls(**{k: None if k in patches else v for k, v in fields.items()})
        for name, patch in patches.items():
            patch.setters.append(_setter(obj, name))
        return obj


class ClassRef(IceType):
    """A reference to an instance of C{cls} (or a subclass), or C{None}."""

    def __init__(self, cls: type[Value] = Value) -> None:
        self.cls = cls

    def write(self, w: ValueWriter, value: Any) -> None:
        if value is not None and not isinstance(value, self.cls):
            raise MarshalError(f"expected a {self.cls.ice_id or 'Value'}, not {value!r}")
        w.write_value(value)

    def read(self, r: ValueReader) -> Any:
        value = r.read_value()
        if value is not None and not isinstance(value, (self.cls, _Patch, UnknownSlicedValue)):
            raise MarshalError(f"expected a {self.cls.ice_id}, got a {value.ice_id}")
        return value


# -- writing --------------------------------------------------------------------


class _SliceTable:
    """The indirection table of the slice being written (sliced format)."""

    def __init__(self) -> None:
        self.values: list[Value] = []
        self.index: dict[int, int] = {}


class ValueWriter:
    """
    Writes class references (and the typed members around them) to C{out},
    one encapsulation's worth.

    @param format: L{COMPACT} (Ice's default) or L{SLICED}.
    """

    def __init__(self, out: OutputStream, format: str = COMPACT) -> None:
        if format not in (COMPACT, SLICED):
            raise ValueError(f"unknown class format {format!r}")
        if out.encoding.minor != 1:
            raise MarshalError("classes are only supported in encoding 1.1")
        self.out = out
        self.sliced = format == SLICED
        self._type_ids: dict[str, int] = {}
        self._instances: dict[int, int] = {}
        self._keep: list[Value] = []  # keeps id()s unique while writing
        self._tables: list[_SliceTable] = []
        self._depth = 0

    def write(self, ice_type: IceType, value: Any) -> None:
        """Write C{value} as C{ice_type}."""
        ice_type.write(self, value)

    def write_value(self, value: Value | None) -> None:
        """Write a class reference: null, a back reference, or the instance."""
        if self._tables and self.sliced:
            table = self._tables[-1]
            if value is None:
                self.out.write_size(0)
                return
            index = table.index.get(id(value))
            if index is None:
                table.values.append(value)
                index = table.index[id(value)] = len(table.values)
            self.out.write_size(index)
            return
        if value is None:
            self.out.write_size(0)
        else:
            self._write_instance(value)

    def write_pending(self) -> None:
        """Nothing to do in 1.1, where instances are written at first use."""

    def _write_instance(self, value: Value) -> None:
        known = self._instances.get(id(value))
        if known is not None:
            self.out.write_size(known)
            return
        if isinstance(value, UnknownSlicedValue):
            raise MarshalError(
                f"cannot marshal an instance of unknown type {value.unknown_type_id}"
            )
        self._instances[id(value)] = len(self._instances) + 2
        self._keep.append(value)
        self.out.write_size(1)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise MarshalError(f"class graph nested deeper than {MAX_DEPTH}")
        slices = type(value).ice_slices()
        if not slices:
            raise MarshalError(f"{type(value).__name__} has no Slice type id")
        for n, cls in enumerate(slices):
            self._write_slice(value, cls, n == 0, n == len(slices) - 1)
        self._depth -= 1

    def _write_slice(self, value: Value, cls: type[Value], first: bool, last: bool) -> None:
        out = self.out
        flags = _HAS_SLICE_SIZE if self.sliced else 0
        if last:
            flags |= _IS_LAST_SLICE
        flags_at = len(out._buf)
        out.write_byte(0)
        if self.sliced or first:
            if cls.ice_compact_id >= 0:
                flags |= _TYPE_ID_COMPACT
                out.write_size(cls.ice_compact_id)
            elif cls.ice_id in self._type_ids:
                flags |= _TYPE_ID_INDEX
                out.write_size(self._type_ids[cls.ice_id])
            else:
                flags |= _TYPE_ID_STRING
                self._type_ids[cls.ice_id] = len(self._type_ids) + 1
                out.write_string(cls.ice_id)
        size_at = len(out._buf)
        if self.sliced:
            out.write_int(0)
            self._tables.append(_SliceTable())
        for name, ice_type in cls.ice_own_members():
            ice_type.write(self, getattr(value, name))
        if self.sliced:
            out._buf[size_at : size_at + 4] = (len(out._buf) - size_at).to_bytes(4, "little")
            table = self._tables.pop()
            if table.values:
                flags |= _HAS_INDIRECTION_TABLE
                out.write_size(len(table.values))
                for item in table.values:
                    self._write_instance(item)
        out._buf[flags_at] = flags


# -- reading --------------------------------------------------------------------


class ValueReader:
    """
    Reads class references (and the typed members around them) from C{inp},
    one encapsulation's worth.  Unknown most-derived types are sliced off
    to the first known base when the sender used the sliced format.
    """

    def __init__(self, inp: InputStream) -> None:
        if inp.encoding.minor != 1:
            raise MarshalError("classes are only supported in encoding 1.1")
        self.inp = inp
        self._type_ids: list[str] = []
        self._instances: dict[int, Value] = {}
        self._next_id = 2
        self._tables: list[list[_Patch] | None] = []
        self._depth = 0

    def read(self, ice_type: IceType) -> Any:
        """Read a C{ice_type} value (outside class slices, always resolved)."""
        return ice_type.read(self)

    def read_value(self) -> Any:
        """
        Read a class reference: C{None}, a L{Value}, or (inside a sliced
        slice with an indirection table) a patch its container resolves.
        """
        index = self.inp.read_size()
        if index == 0:
            return None
        table = self._tables[-1] if self._tables else None
        if table is not None:
            # An index into the indirection table that follows the slice;
            # each entry takes a byte at least.
            if index > self.inp.remaining:
                raise MarshalError(f"indirection index {index} exceeds the remaining data")
            while len(table) < index:
                table.append(_Patch())
            return table[index - 1]
        return self._read_instance(index)

    def read_pending(self) -> None:
        """Nothing is pending at the end of 1.1 parameters; kept for symmetry."""

    def _read_instance(self, index: int) -> Value:
        if index > 1:
            try:
                return self._instances[index]
            except KeyError:
                raise MarshalError(f"reference to unknown class instance id {index}") from None
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise MarshalError(f"class graph nested deeper than {MAX_DEPTH}")
        instance_id = self._next_id
        self._next_id += 1
        value = self._read_slices(instance_id)
        self._depth -= 1
        return value

    def _read_slices(self, instance_id: int) -> Value:
        inp = self.inp
        most_derived = ""
        while True:
            flags = inp.read_byte()
            type_id = self._read_type_id(flags, first=True)
            most_derived = most_derived or type_id
            cls = _BY_ID.get(type_id)
            if cls is not None:
                break
            if not flags & _HAS_SLICE_SIZE:
                raise MarshalError(
                    f"no class known for type id {type_id!r} and its slice has no size "
                    "(compact format), so it cannot be sliced off"
                )
            size = inp.read_int()
            if size < 4:
                raise MarshalError(f"slice size {size} < 4")
            inp.skip(size - 4)
            if flags & _HAS_INDIRECTION_TABLE:
                self._skip_table()
            if flags & _IS_LAST_SLICE:
                unknown = UnknownSlicedValue(most_derived)
                self._instances[instance_id] = unknown
                return unknown
        value = cls.__new__(cls)
        self._instances[instance_id] = value
        slices = cls.ice_slices()
        for n, slice_cls in enumerate(slices):
            if n:
                flags = inp.read_byte()
                type_id = self._read_type_id(flags, first=False)
                if type_id and type_id != slice_cls.ice_id:
                    raise MarshalError(f"expected a {slice_cls.ice_id} slice, got {type_id!r}")
            self._read_members(value, slice_cls, flags)
            if bool(flags & _IS_LAST_SLICE) != (n == len(slices) - 1):
                raise MarshalError(f"{cls.ice_id}: slice {n} has the wrong last-slice flag")
        return value

    def _read_type_id(self, flags: int, first: bool) -> str:
        kind = flags & _TYPE_ID_MASK
        inp = self.inp
        if kind == _TYPE_ID_STRING:
            type_id = inp.read_string()
            self._type_ids.append(type_id)
            return type_id
        if kind == _TYPE_ID_INDEX:
            index = inp.read_size()
            if not 1 <= index <= len(self._type_ids):
                raise MarshalError(f"unknown type id index {index}")
            return self._type_ids[index - 1]
        if kind == _TYPE_ID_COMPACT:
            compact = inp.read_size()
            cls = _BY_COMPACT_ID.get(compact)
            return cls.ice_id if cls else f"compact id {compact}"
        if first:
            raise MarshalError("class instance without a type id")
        return ""

    def _read_members(self, value: Value, cls: type[Value], flags: int) -> None:
        inp = self.inp
        end = -1
        if flags & _HAS_SLICE_SIZE:
            start = inp.pos
            size = inp.read_int()
            if size < 4 or size > inp.remaining + 4:
                raise MarshalError(f"bad slice size {size} for {cls.ice_id}")
            end = start + size
        table: list[_Patch] | None = [] if flags & _HAS_INDIRECTION_TABLE else None
        self._tables.append(table)
        try:
            for name, ice_type in cls.ice_own_members():
                setattr(value, name, _set_when_known(ice_type.read(self), _setter(value, name)))
            if flags & _HAS_OPTIONAL_MEMBERS:
                self._skip_tagged()
        finally:
            self._tables.pop()
        if end >= 0 and inp.pos != end:
            raise MarshalError(f"{cls.ice_id} slice ends at {inp.pos}, its size says {end}")
        if table is not None:
            if end < 0:
                raise MarshalError("an indirection table needs a sliced-format slice")
            count = inp.read_count(1)
            if count < len(table) or count == 0:
                raise MarshalError(f"indirection table of {count} for {len(table)} references")
            for i in range(count):
                entry = inp.read_size()
                if entry == 0:
                    raise MarshalError("null entry in an indirection table")
                resolved = self._read_instance(entry)
                if i < len(table):
                    table[i].resolve(resolved)

    def _skip_table(self) -> None:
        """Read (and drop) the instances of a skipped slice, which keep their ids."""
        for _ in range(self.inp.read_count(1)):
            entry = self.inp.read_size()
            if entry == 0:
                raise MarshalError("null entry in an indirection table")
            self._read_instance(entry)

    def _skip_tagged(self) -> None:
        """Skip tagged members up to the end marker, reading class ones."""
        inp = self.inp
        while True:
            tag = inp.read_byte()
            if tag == 0xFF:
                return
            fmt = tag & 0x07
            if tag >> 3 == 30:
                inp.read_size()
            if fmt <= 3:
                inp.skip(1 << fmt)
            elif fmt == 4:
                inp.read_size()
            elif fmt == 5:
                inp.skip(inp.read_size())
            elif fmt == 6:
                inp.skip(inp.read_int())
            else:
                self.read_value()


def walk(value: Any) -> Iterator[Value]:
    """Every L{Value} reachable from C{value}, once each (for tests and checks)."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, Value) and id(item) not in seen:
            seen.add(id(item))
            yield item
            for cls in type(item).ice_slices():
                stack.extend(getattr(item, name, None) for name, _ in cls.ice_own_members())
        elif hasattr(type(item), "ice_members") and not isinstance(item, Value):
            stack.extend(getattr(item, name) for name, _ in type(item).ice_members)
