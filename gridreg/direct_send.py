# -*- test-case-name: tests.test_prompt_write,tests.test_ice_server -*-
"""
Sending on a TCP socket now instead of at the reactor's next writable event.

Twisted's TCP transport sends what it is given on the next writable event,
after another C{epoll_wait}, and its buffer's write costs two C{epoll_ctl}
calls (registering the socket for writable events, then unregistering it).
On a plain TCP connection with nothing queued, data can go to the socket's
C{send} at once: AMP boxes (L{gridreg.protocol.prompt}) and the Ice
server's replies do.

Only the system call moves: what is buffered, its order and the
transport's error handling stay Twisted's. A send that fails or would block
leaves the data in the transport's buffer, and the reactor goes on as it
would have on the next writable event (a failed socket is then closed by
it, with its reason). A transport that is closing, has a producer, or is
not a file descriptor (memory transports in tests) is left to the reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

__all__ = ["PLAIN_TCP", "idle_socket", "send_direct", "send_now", "socket_transport"]

#: the transports data may bypass: Twisted's TCP connections, as accepted and as dialled
PLAIN_TCP = (tcp.Server, tcp.Client)


def socket_transport(transport: Any) -> Any:
    """The file descriptor under C{transport} (a TLS wrapper's own transport), or None."""
    while transport is not None and not hasattr(transport, "doWrite"):
        transport = getattr(transport, "transport", None)
    return transport


def send_now(transport: Any) -> None:
    """Hand what C{transport} holds to its socket now, if that is safe (see the module)."""
    socket = socket_transport(transport)
    if (
        socket is None
        or not getattr(socket, "connected", False)
        or socket.disconnecting
        or socket.producer is not None
        or not (socket.dataBuffer or socket._tempDataBuffer)
    ):
        return
    socket.doWrite()  # a failure stays in the transport, for the reactor to act on


def idle_socket(transport: Any) -> Any:
    """
    C{transport} itself if it is a plain TCP connection (not a TLS one, nor
    a wrapper such as TLS's, which passes attribute reads through to the
    connection under it) with nothing buffered and nothing in the way of a
    direct send (see L{send_now}), else None.
    """
    if (
        type(transport) not in PLAIN_TCP
        or transport.TLS
        or not transport.connected
        or transport.disconnecting
        or transport._aborting
        or transport._writeDisconnected
        or transport.producer is not None
        or transport.dataBuffer
        or transport._tempDataBuffer
    ):
        return None
    return transport


def send_direct(transport: Any, data: bytes) -> None:
    """
    Send C{data} on an idle socket transport (L{idle_socket}): what the
    socket does not take now, or all of it on an error, goes to the
    transport's buffer, for the reactor to send or fail as it would have.
    """
    try:
        sent = transport.socket.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        sent = 0  # the reactor meets the error again on its write, and closes
    if sent < len(data):
        transport.write(data[sent:] if sent else data)
