# -*- test-case-name: tests.test_stringify -*-
"""
Ice's escapes in stringified identities, and the identity text form.

Identities are the one part of a proxy string whose characters are escaped
(C{\\/}, C{\\ooo}, C{\\uXXXX}...); the proxy grammar in
L{gridreg.ice.stringify} builds on these.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gridreg.ice.types import Identity

#: What Ice's proxy and endpoint tokenizers treat as white space.
WHITESPACE = " \t\r\n"
TO_STRING_MODES = ("Unicode", "ASCII", "Compat")
_ESCAPE_OR_SLASH = re.compile(r"\\.|/", re.DOTALL)


class ProxyParseError(ValueError):
    """
    Text is not a valid stringified proxy.

    @ivar reason: why the text was rejected.
    @ivar text: the offending text.
    """

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"{reason} in {text!r}")
        self.reason = reason
        self.text = text


class IdentityParseError(ProxyParseError):
    """Text is not a valid stringified identity."""


class EndpointParseError(ProxyParseError):
    """Text is not a valid stringified endpoint."""


# -- escapes -----------------------------------------------------------------

_SIMPLE_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}
_NAMED_CONTROLS = {"\a": "a", "\b": "b", "\t": "t", "\n": "n", "\v": "v", "\f": "f", "\r": "r"}
# Compat mode (Ice < 3.7) predates \a and \v and prints those as octal.
_COMPAT_NAMED = {"\b": "b", "\t": "t", "\n": "n", "\f": "f", "\r": "r"}
_OCTAL_DIGITS = re.compile("[0-7]{1,3}")
_HEX_DIGITS = re.compile("[0-9a-fA-F]{1,2}")
_HEX_DIGITS_EXACT = re.compile(r"[0-9a-fA-F]+\Z")


def _unescape(text: str, special: str, error: Callable[[str], Exception]) -> str:
    """
    Decode Ice's C-style escapes. Octal and hex escapes give bytes, so
    C{\\303\\251} is the UTF-8 encoding of one character; an unknown escape
    keeps its backslash, as Ice does.
    """
    if "\\" not in text and text.isascii():
        return text  # nothing to decode (most names): the loop is a few calls a character
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        e = text[i + 1]
        if e in _SIMPLE_ESCAPES or e in special:
            out += _SIMPLE_ESCAPES.get(e, e).encode("utf-8")
            i += 2
        elif e in "01234567":
            octal = _OCTAL_DIGITS.match(text, i + 1)
            assert octal is not None
            if int(octal.group(), 8) > 255:
                raise error(f"octal escape \\{octal.group()} is out of range")
            out.append(int(octal.group(), 8))
            i = octal.end()
        elif e == "x":
            hexa = _HEX_DIGITS.match(text, i + 2)
            if hexa is None:
                raise error("\\x escape without hex digits")
            out.append(int(hexa.group(), 16))
            i = hexa.end()
        elif e in "uU":
            width = 4 if e == "u" else 8
            digits = text[i + 2 : i + 2 + width]
            if not _HEX_DIGITS_EXACT.match(digits) or len(digits) != width:
                raise error(f"\\{e} escape needs {width} hex digits")
            code = int(digits, 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise error(f"\\{e}{digits} is not a valid character")
            out += chr(code).encode("utf-8")
            i += 2 + width
        else:
            out += b"\\"
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise error("escapes do not form valid UTF-8") from None


def _escape(text: str, special: str, mode: str) -> str:
    """Print C{text} the way Ice.ToStringMode C{mode} does."""
    if mode not in TO_STRING_MODES:
        raise ValueError(f"unknown ToStringMode {mode!r}; expected one of {TO_STRING_MODES}")
    named = _COMPAT_NAMED if mode == "Compat" else _NAMED_CONTROLS
    out = []
    for c in text:
        o = ord(c)
        if c in "\\'\"" or c in special:
            out.append("\\" + c)
        elif c in named:
            out.append("\\" + named[c])
        elif 0x20 <= o < 0x7F or (o >= 0x80 and mode == "Unicode"):
            out.append(c)
        elif mode == "Compat":
            out.extend(f"\\{b:03o}" for b in c.encode("utf-8", "surrogatepass"))
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


# -- identities --------------------------------------------------------------


def identity_from_string(text: str) -> Identity:
    """
    Parse C{category/name} or C{name}.

    @raise IdentityParseError: on a second unescaped C{/}, a bad escape or an
        empty name (Ice refuses identities without a name).
    """
    if "\\" not in text and text.isascii() and text.count("/") < 2:
        # no escape to decode and at most one slash (most identities): split as is
        category, _, name = text.rpartition("/")
        if name:
            return Identity(name=name, category=category)

    def error(reason: str) -> IdentityParseError:
        return IdentityParseError(reason, text)

    slashes = [m.start() for m in _ESCAPE_OR_SLASH.finditer(text) if m.group() == "/"]
    if len(slashes) > 1:
        raise error("more than one unescaped '/' in identity")
    cut = slashes[0] if slashes else -1
    category = _unescape(text[:cut], "/", error) if slashes else ""
    name = _unescape(text[cut + 1 :], "/", error)
    if not name:
        raise error("identity has an empty name")
    return Identity(name=name, category=category)


def identity_to_string(identity: Identity, mode: str = "Unicode") -> str:
    """
    Print an identity; C{mode} is an Ice.ToStringMode: C{"Unicode"}, C{"ASCII"}
    (non-ASCII as C{\\uXXXX}) or C{"Compat"} (non-ASCII as octal UTF-8 bytes).
    """
    name = _escape(identity.name, "/", mode)
    if not identity.category:
        return name
    return _escape(identity.category, "/", mode) + "/" + name


# -- quoting and tokenizing --------------------------------------------------
