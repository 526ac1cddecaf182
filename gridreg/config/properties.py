# -*- test-case-name: tests.test_properties -*-
"""
Ice property files and command-line overrides.

Operators configure IceGrid with Ice property files, so the registry reads
the same syntax with the same escapes and precedence. Every value remembers
where it came from, because a bad value is only fixable if the error says
which file and line set it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping

import attrs

from gridreg.config.known import (
    KNOWN_PREFIXES,
    KNOWN_PROPERTIES,
    PropertyKind,
    PropertySpec,
    PropertySupport,
    property_support,
)
from gridreg.ice.stringify import (
    ProxyParseError,
    endpoints_from_string,
    proxy_from_string,
)
from gridreg.ice.types import DEFAULT_TIMEOUT, Endpoint, Proxy

COMMAND_LINE = "command line"
_INT = re.compile(r"[+-]?[0-9]+\Z")
_SPACE = " \t"


class PropertyError(ValueError):
    """A property file, override or value is malformed; the message says where."""


# -- parsing -----------------------------------------------------------------


def _parse_line(line: str) -> tuple[str, str] | None:
    """
    Parse one C{key = value} line the way Ice does; C{None} for a blank or
    comment line.

    An unescaped C{#} starts a comment. C{\\#}, C{\\=} and C{\\\\} are
    literal; in values C{\\ } keeps a blank that trimming would drop. Any
    other backslash is kept as written, so Windows paths need no doubling.
    Leading and trailing blanks of the key are dropped even when escaped.

    @raise ValueError: for a line without C{=} or with an empty key.
    """
    key: list[str] = []
    value: list[str] = []
    pending: list[str] = []  # unescaped blanks, kept only if more text follows
    in_value = False
    i = 0
    while i < len(line):
        c = line[i]
        escaped = c == "\\" and i + 1 < len(line) and line[i + 1] in "#=\\" + _SPACE
        if escaped:
            c = line[i + 1]
            i += 2
        else:
            i += 1
            if c == "#":
                break
            if c == "=" and not in_value:
                in_value = True
                continue
        if not in_value:
            key.append(c)
        elif c in _SPACE and not escaped:
            if value:
                pending.append(c)
        else:
            value.extend(pending)
            pending.clear()
            value.append(c)
    name = "".join(key).strip(_SPACE)
    if not in_value:
        if name:
            raise ValueError("missing '=' in property line")
        return None
    if not name:
        raise ValueError("empty property name")
    return name, "".join(value)


def parse_text(text: str, source_name: str, properties: Properties | None = None) -> Properties:
    """
    Apply Ice property-file C{text} to C{properties} (or a new set); later
    lines override earlier ones and an empty value unsets the property.

    @param source_name: the file name used in sources and error messages.
    @raise PropertyError: naming C{source_name:line} and the offending text.
    """
    if properties is None:
        properties = Properties()
    text = text.removeprefix("\ufeff")
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        try:
            parsed = _parse_line(line)
        except ValueError as e:
            raise PropertyError(f"{source_name}:{number}: {e}: {line.strip()!r}") from None
        if parsed is not None:
            properties.set(parsed[0], parsed[1], source=f"{source_name}:{number}")
    return properties


def load_file(path: str | os.PathLike[str], properties: Properties | None = None) -> Properties:
    """
    Read an Ice property file (UTF-8) into C{properties} (or a new set).

    @raise PropertyError: if the file cannot be read, is not UTF-8 or has a
        malformed line.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PropertyError(f"{name}: cannot read configuration file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PropertyError(
            f"{name}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x})"
        ) from None
    return parse_text(text, name, properties)


def parse_overrides(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """
    Parse the C{KEY=VALUE} arguments of repeated C{--property} options with
    the property-file syntax (as Ice parses C{--Key=Value}); C{KEY=} unsets.

    @raise PropertyError: naming the bad pair.
    """
    result = []
    for pair in pairs:
        try:
            parsed = _parse_line(pair)
        except ValueError as e:
            raise PropertyError(f"{COMMAND_LINE}: invalid --property {pair!r}: {e}") from None
        if parsed is None:
            raise PropertyError(f"{COMMAND_LINE}: invalid --property {pair!r}: expected KEY=VALUE")
        result.append(parsed)
    return result


# -- the property set ----------------------------------------------------------


class Properties(Mapping[str, str]):
    """
    A set of Ice properties that remembers where each value came from.

    Reading it as a mapping gives raw strings; the typed getters raise
    L{PropertyError} naming the key, the value and its source.
    """

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, str]] = {}

    def __getitem__(self, key: str) -> str:
        return self._values[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Properties({dict(self)!r})"

    def set(self, key: str, value: str, source: str = COMMAND_LINE) -> None:
        """Set C{key}; an empty C{value} unsets it, as in Ice."""
        if value:
            self._values[key] = (value, source)
        else:
            self._values.pop(key, None)

    def apply_overrides(self, pairs: Iterable[tuple[str, str]], source: str = COMMAND_LINE) -> None:
        """Apply L{parse_overrides} results after the files, so they win."""
        for key, value in pairs:
            self.set(key, value, source)

    def source(self, key: str) -> str:
        """
        Where C{key}'s value came from: C{"file:line"} or C{"command line"}.

        @raise KeyError: if C{key} is not set.
        """
        return self._values[key][1]

    def effective(self, key: str) -> str | None:
        """The value of C{key}, or its default from L{KNOWN_PROPERTIES}."""
        if key in self._values:
            return self._values[key][0]
        spec = KNOWN_PROPERTIES.get(key)
        return spec.default if spec is not None else None

    def with_prefix(self, prefix: str) -> dict[str, str]:
        """Every property whose key starts with C{prefix} (full keys)."""
        return {k: v for k, (v, _) in self._values.items() if k.startswith(prefix)}

    def _invalid(self, key: str, why: str) -> PropertyError:
        return PropertyError(f"{self.source(key)}: invalid value for {key}: {self[key]!r}: {why}")

    def get_int(self, key: str, default: int | None = None) -> int:
        """
        C{key} as an integer; unset gives C{default}, else the documented
        default, else 0.
        """
        value = self.get(key)
        if value is None:
            if default is not None:
                return default
            known = self.effective(key)
            return int(known) if known is not None else 0
        if not _INT.match(value.strip()):
            raise self._invalid(key, "not an integer")
        return int(value)

    def get_flag(self, key: str, default: bool = False) -> bool:
        """C{key} as a flag: Ice treats an integer > 0 as true."""
        return self.get_int(key, 1 if default else 0) > 0

    def endpoint_defaults(self) -> tuple[str, int]:
        """C{Ice.Default.Protocol} and C{Ice.Default.Timeout}, for endpoints that omit them."""
        protocol = self.get("Ice.Default.Protocol", "tcp")
        return protocol, self.get_int("Ice.Default.Timeout", DEFAULT_TIMEOUT)

    def get_proxy(self, key: str) -> Proxy | None:
        """C{key} parsed as a stringified proxy, or C{None} if unset."""
        value = self.get(key)
        if value is None:
            return None
        try:
            return proxy_from_string(value, *self.endpoint_defaults())
        except ProxyParseError as e:
            raise self._invalid(key, e.reason) from None

    def get_endpoints(self, key: str, *, server: bool = True) -> tuple[Endpoint, ...]:
        """
        C{key} parsed as C{:}-separated endpoints; C{()} if unset.

        @param server: whether these are listening endpoints, which may use
            C{-h *}; C{*.Endpoints} properties are, published ones are not.
        """
        value = self.get(key)
        if value is None:
            return ()
        try:
            return endpoints_from_string(value, *self.endpoint_defaults(), server=server)
        except ProxyParseError as e:
            raise self._invalid(key, e.reason) from None


def message_size_max_bytes(properties: Properties) -> int | None:
    """
    Ice.MessageSizeMax in bytes (the property is in KiB, default 1024), or
    C{None} for no limit: Ice treats 0, negative and over-2-GiB values so.
    """
    kib = properties.get_int("Ice.MessageSizeMax")
    if kib <= 0 or kib > 0x7FFFFFFF // 1024:
        return None
    return kib * 1024


# -- known properties and validation ------------------------------------------


#: Reserved prefixes whose unknown properties deserve a warning.
VALIDATED_PREFIXES = ("Ice.", "IceGrid.", "IceSSL.", "GridReg.")
_BY_LOWER = {name.lower(): name for name in KNOWN_PROPERTIES}


def _check(properties: Properties, key: str, spec: PropertySpec) -> None:
    kind = spec.kind
    if kind is PropertyKind.INT:
        properties.get_int(key)
    elif kind is PropertyKind.ENDPOINTS or kind is PropertyKind.PUBLISHED_ENDPOINTS:
        properties.get_endpoints(key, server=kind is PropertyKind.ENDPOINTS)
    elif kind is PropertyKind.PROXY:
        properties.get_proxy(key)
    elif kind is PropertyKind.CHOICE and properties[key] not in spec.choices:
        raise properties._invalid(key, "expected one of " + ", ".join(spec.choices))


def validate(properties: Properties) -> list[str]:
    """
    Check the properties Ice would check at start-up.

    @return: a warning per unknown C{Ice.*}, C{IceGrid.*} or C{IceSSL.*}
        property, worded like Ice's (C{unknown property: `IceGrid.Foo'}),
        followed by where it was set. Other prefixes belong to applications.
    @raise PropertyError: for a known property with a malformed value,
        naming the key, the value and its source.
    """
    warnings = []
    for key in properties:
        spec = KNOWN_PROPERTIES.get(key)
        if spec is not None:
            _check(properties, key, spec)
        elif key.startswith(VALIDATED_PREFIXES) and not key.startswith(KNOWN_PREFIXES):
            hint = _BY_LOWER.get(key.lower())
            message = f"unknown property: `{key}'"
            if hint is not None:
                message += f"; did you mean `{hint}'"
            warnings.append(f"{message} (set at {properties.source(key)})")
    return warnings


# -- properties gridreg knows but does not act on ------------------------------

#: The start-up warning for a set property that gridreg ignores.
IGNORED_WARNING = (
    "property `{property}' is not supported by gridreg (yet): {instead} (set at {source})"
)


@attrs.frozen
class IgnoredProperty:
    """A known property that is set, but that gridreg does not act on."""

    key: str
    source: str
    support: PropertySupport

    def fields(self) -> dict[str, str]:
        """The fields of L{IGNORED_WARNING}."""
        return {"property": self.key, "instead": self.support.instead, "source": self.source}


def _inert(properties: Properties, key: str, support: PropertySupport) -> bool:
    spec = KNOWN_PROPERTIES.get(key)
    value = properties[key].strip()
    if spec is not None and spec.kind is PropertyKind.INT and _INT.match(value):
        return int(value) in {int(v) for v in support.inert}
    return value in support.inert


def ignored_properties(properties: Properties) -> list[IgnoredProperty]:
    """
    The known properties that are set but not honoured, as
    L{gridreg.config.known.PROPERTY_SUPPORT} says, in the order they were
    set; values that ask for what gridreg does anyway are left out.
    """
    ignored = []
    for key in properties:
        if key not in KNOWN_PROPERTIES and not key.startswith(KNOWN_PREFIXES):
            continue
        support = property_support(key)
        if support is None or support.honoured or _inert(properties, key, support):
            continue
        ignored.append(IgnoredProperty(key, properties.source(key), support))
    return ignored
