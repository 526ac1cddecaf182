# -*- test-case-name: tests.test_interop_acm -*-
"""
A real ZeroC Ice 3.7 client that shows what happens to its idle locator
connection: it calls the locator, waits (at most C{--wait} seconds) for that
connection to be closed by the other side, then calls the locator again.

Prints one JSON line: C{{"first_port": P, "closed_after": SECONDS or null,
"close_reason": "Ice.CloseConnectionException", "second_ok": true,
"second_port": P2}}. Run with the system Python that has the Ice binding::

    /usr/bin/python3 tests/interop/ice_acm_client.py --locator PROXY [--wait 10] \\
        [--property KEY=VALUE ...]
"""

import argparse
import threading
import time

import Ice

from _iceutil import emit, exception_name


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--locator", required=True)
    parser.add_argument("--wait", type=float, default=10.0)
    parser.add_argument("--property", action="append", default=[], help="KEY=VALUE")
    options = parser.parse_args()
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    init.properties.setProperty("Ice.Default.Locator", options.locator)
    for pair in options.property:
        key, _, value = pair.partition("=")
        init.properties.setProperty(key, value)
    with Ice.initialize(init) as communicator:
        locator = communicator.getDefaultLocator()
        locator.getRegistry()
        connection = locator.ice_getCachedConnection()
        first_port = connection.getInfo().localPort
        closed = threading.Event()
        reason = []

        def on_close(con):
            try:
                con.throwException()
            except Exception as exc:
                reason.append(exception_name(exc))
            closed.set()

        started = time.monotonic()
        connection.setCloseCallback(on_close)
        closed_after = round(time.monotonic() - started, 2) if closed.wait(options.wait) else None
        result = {"first_port": first_port, "closed_after": closed_after}
        result["close_reason"] = reason[0] if reason else None
        try:
            locator.getRegistry()
            result["second_ok"] = True
            result["second_port"] = locator.ice_getCachedConnection().getInfo().localPort
        except Ice.Exception as exc:
            result["second_ok"] = False
            result["second_error"] = exception_name(exc)
        emit(result)


if __name__ == "__main__":
    main()
