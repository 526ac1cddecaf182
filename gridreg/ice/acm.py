# -*- test-case-name: tests.test_ice_acm -*-
"""
Active connection management (ACM) of accepted Ice connections.

Ice 3.7 servers check their connections every half ACM timeout: they send a
heartbeat (a ValidateConnection message) when the C{Heartbeat} setting asks
for one, and close a connection that has been idle (no message read or
written) for the timeout when the C{Close} setting says so, gracefully with
CloseConnection unless it is C{CloseOnIdleForceful}. A connection with a
dispatch in progress is not closed gracefully. Observed with Ice 3.7.8 and
icegridregistry on 127.0.0.1: with a 2 s timeout, an idle connection gets
CloseConnection 2 s after its last message; C{Heartbeat=3} sends a
heartbeat every second; C{Close=4} drops the socket without a message.

On top of ACM, a connection stuck in the middle of a message (a partial
header, a half-sent request) is dropped after L{READ_TIMEOUT} seconds
without progress, as Ice's endpoint timeout does for a read that stalls.
"""

from __future__ import annotations

import enum
from typing import Optional, Protocol

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gridreg.config.properties import Properties, PropertyError

#: Ice.Default.Timeout: how long a read in progress may stall, in seconds.
READ_TIMEOUT = 60.0


class AcmClose(enum.IntEnum):
    """C{ACM.Close}."""

    OFF = 0
    ON_IDLE = 1
    ON_INVOCATION = 2
    ON_INVOCATION_AND_IDLE = 3
    ON_IDLE_FORCEFUL = 4


class AcmHeartbeat(enum.IntEnum):
    """C{ACM.Heartbeat}."""

    OFF = 0
    ON_DISPATCH = 1
    ON_IDLE = 2
    ALWAYS = 3


@attrs.frozen
class AcmConfig:
    """
    One object adapter's ACM settings.

    @ivar timeout: seconds; 0 turns ACM off.
    """

    timeout: float = 30.0
    close: AcmClose = AcmClose.ON_INVOCATION_AND_IDLE
    heartbeat: AcmHeartbeat = AcmHeartbeat.ON_DISPATCH

    @property
    def enabled(self) -> bool:
        return self.timeout > 0 and (
            self.close != AcmClose.OFF or self.heartbeat != AcmHeartbeat.OFF
        )

    @classmethod
    def from_properties(
        cls, properties: Properties, adapter: str, default_timeout: int
    ) -> "AcmConfig":
        """
        Read C{<adapter>.ACM.*} as icegridregistry does for its adapters.

        The timeout is C{<adapter>.ACM.Timeout} or C{default_timeout} (IceGrid
        sets the adapter property itself, so C{Ice.ACM.Server.Timeout} does not
        apply). C{Close} falls back to C{Ice.ACM.Server.Close}, then to
        C{CloseOnInvocationAndIdle} (observed: C{Ice.ACM.Close=0} leaves
        icegridregistry closing idle connections). C{Heartbeat} falls back to
        C{Ice.ACM.Server.Heartbeat}, C{Ice.ACM.Heartbeat}, then C{HeartbeatOnDispatch}.

        @raise PropertyError: a negative timeout or an unknown setting.
        """
        timeout_key = f"{adapter}.ACM.Timeout"
        timeout = properties.get_int(timeout_key, default_timeout)
        if timeout < 0:
            raise PropertyError(
                f"{timeout_key} ({properties.source(timeout_key)}): negative timeout {timeout}"
            )
        close = _setting(
            properties,
            AcmClose,
            (f"{adapter}.ACM.Close", "Ice.ACM.Server.Close"),
            AcmClose.ON_INVOCATION_AND_IDLE,
        )
        heartbeat = _setting(
            properties,
            AcmHeartbeat,
            (f"{adapter}.ACM.Heartbeat", "Ice.ACM.Server.Heartbeat", "Ice.ACM.Heartbeat"),
            AcmHeartbeat.ON_DISPATCH,
        )
        return cls(float(timeout), close, heartbeat)


def _setting(properties: Properties, kind: type, keys: tuple[str, ...], default: int) -> object:
    for key in keys:
        if properties.get(key):
            value = properties.get_int(key)
            try:
                return kind(value)
            except ValueError:
                raise PropertyError(
                    f"{key} ({properties.source(key)}): {value} is not one of "
                    f"{', '.join(str(int(v)) for v in kind)}"
                ) from None
    return kind(default)


class MonitoredConnection(Protocol):
    """What L{AcmMonitor} needs of a connection."""

    #: clock time of the last message read or written in full
    last_activity: float
    #: clock time of the last progress on an incomplete message, or None
    partial_since: Optional[float]
    #: requests being dispatched (answers not sent yet)
    dispatching: int

    def send_heartbeat(self) -> None: ...

    def close_idle(self) -> None: ...

    def abort(self, reason: str) -> None: ...


class AcmMonitor:
    """
    One timer for all of a factory's connections, running only while there
    are connections, every half ACM timeout (or half L{READ_TIMEOUT}).
    """

    log = Logger()

    def __init__(
        self, config: AcmConfig, clock: IReactorTime, read_timeout: float = READ_TIMEOUT
    ) -> None:
        self.config = config
        self.clock = clock
        self.read_timeout = read_timeout
        self.period = min(config.timeout, read_timeout) / 2 if config.enabled else read_timeout / 2
        self._connections: set[MonitoredConnection] = set()
        self._timer: Optional[LoopingCall] = None

    def add(self, connection: MonitoredConnection) -> None:
        self._connections.add(connection)
        if self._timer is None:
            self._timer = LoopingCall(self._check_all)
            self._timer.clock = self.clock
            self._timer.start(self.period, now=False).addErrback(self._timer_failed)

    def remove(self, connection: MonitoredConnection) -> None:
        self._connections.discard(connection)
        if not self._connections and self._timer is not None:
            timer, self._timer = self._timer, None
            timer.stop()

    def _timer_failed(self, failure: Failure) -> None:
        self.log.failure("ACM monitor stopped", failure)

    def _check_all(self) -> None:
        now = self.clock.seconds()
        for connection in list(self._connections):
            try:
                self.check(connection, now)
            except Exception:
                self.log.failure("ACM check of a connection failed")

    def check(self, connection: MonitoredConnection, now: float) -> None:
        """Heartbeat, close or drop C{connection} as its idleness calls for."""
        config = self.config
        partial_since = connection.partial_since
        if partial_since is not None and now >= partial_since + self.read_timeout:
            connection.abort(f"no progress on an incomplete message for {self.read_timeout:g} s")
            return
        if not config.enabled:
            return
        idle_for = now - connection.last_activity
        heartbeat = config.heartbeat
        if heartbeat == AcmHeartbeat.ALWAYS or (
            heartbeat != AcmHeartbeat.OFF
            and idle_for >= config.timeout / 4
            and (heartbeat != AcmHeartbeat.ON_DISPATCH or connection.dispatching)
        ):
            connection.send_heartbeat()
            return
        if idle_for < config.timeout:
            return
        close = config.close
        if close == AcmClose.ON_IDLE_FORCEFUL:
            connection.abort(f"idle for {config.timeout:g} s (ACM CloseOnIdleForceful)")
        elif (
            close in (AcmClose.ON_IDLE, AcmClose.ON_INVOCATION_AND_IDLE)
            and not connection.dispatching
        ):
            connection.close_idle()
