# -*- test-case-name: tests.test_amp_boxes -*-
"""
AMP boxes read in one loop.

AMP's own reader (C{BinaryBoxProtocol}, an C{Int16StringReceiver}) makes
several Python calls for every key and every value of a box; a replicated
write crosses three to six boxes on each replica, so that was a tenth of a
slave's CPU per write. L{FastBoxReader} reads the same wire format (2-byte
length, key; 2-byte length, value; ...; an empty key ends the box) in one
loop per read and hands each complete box to the box receiver as AMP does.
Keys longer than AMP allows close the connection as AMP does; a protocol
switched to an inner protocol, or paused, falls back to AMP's reader.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols import amp

#: an empty C{AmpBox} without its C{__init__}, which walks the keys to encode
#: str ones (three calls for none)
_new_box = amp.AmpBox.__new__


def empty_box() -> amp.AmpBox:
    """An empty C{AmpBox}, made without AMP's C{__init__}, to be filled with bytes keys."""
    return _new_box(amp.AmpBox)  # type: ignore[no-any-return]


def new_box(fields: dict[bytes, bytes]) -> amp.AmpBox:
    """
    C{amp.AmpBox(fields)} for C{fields} with bytes keys, without AMP's pass
    over the keys (a few Python calls per key, on every box of a write).
    """
    box = empty_box()
    box.update(fields)
    return box


#: AMP's longest key
MAX_KEY_LENGTH = 255


class FastBoxReader:
    """Mix-in for an C{amp.AMP} subclass, before it in the bases."""

    _pending = b""

    def dataReceived(self, data: bytes) -> None:
        this: Any = self
        if this.innerProtocol is not None or this.paused:
            pending, self._pending = self._pending, b""
            return amp.AMP.dataReceived(this, pending + data)  # type: ignore[no-any-return]
        buffer = self._pending + data if self._pending else data
        end = len(buffer)
        start = 0
        while True:
            box = _new_box(amp.AmpBox)
            at = start
            complete = False
            while at + 2 <= end:
                length = (buffer[at] << 8) | buffer[at + 1]
                at += 2
                if length == 0:
                    complete = True
                    break
                if length > MAX_KEY_LENGTH:
                    self._pending = b""
                    this.lengthLimitExceeded(length)
                    return None
                key_end = at + length
                if key_end + 2 > end:
                    break
                value_length = (buffer[key_end] << 8) | buffer[key_end + 1]
                value_end = key_end + 2 + value_length
                if value_end > end:
                    break
                box[buffer[at:key_end]] = buffer[key_end + 2 : value_end]
                at = value_end
            if not complete:
                break
            start = at
            # kept before the box is handled: a handler may raise or close the connection
            self._pending = buffer[start:]
            this.boxReceiver.ampBoxReceived(box)
            if this.transport is None or this.innerProtocol is not None:
                return None
        self._pending = buffer[start:]
        return None
