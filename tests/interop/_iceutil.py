"""
Helpers shared by the interop scripts, which run under the system Python
(C{/usr/bin/python3}) that has the ZeroC Ice 3.7 binding.

These scripts are driven by the trial harness in C{tests/_processes.py}: it
reads their standard output one JSON object per line, so everything here is
about writing such lines reliably and describing Ice exceptions in a way the
tests can assert on (C{"Ice.NotRegisteredException"}) without importing Ice.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO_SLICE = os.path.join(HERE, "Hello.ice")
HELLO_TYPE = "::Demo::Hello"


def emit(obj):
    """
    Write one JSON line to stdout and flush, so the harness sees each event
    as soon as it happens rather than when a pipe buffer fills.
    """
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def exception_name(exc):
    """
    Name an exception the way tests refer to it: C{Ice.NotRegisteredException}
    for Ice (Slice) exceptions, C{module.Class} for everything else.
    """
    ice_id = getattr(exc, "ice_id", None)
    if callable(ice_id):
        return ice_id().lstrip(":").replace("::", ".")
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__name__
    return cls.__module__ + "." + cls.__name__


def exception_details(exc):
    """
    The data members of an Ice exception (e.g. C{kindOfObject} and C{id} of
    a C{NotRegisteredException}) as JSON-friendly values.
    """
    details = {}
    for key, value in vars(exc).items():
        if key.startswith("_"):
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            details[key] = value
        else:
            details[key] = str(value)
    return details


def error_result(exc, **extra):
    """
    The JSON object reporting a failed command or activation.
    """
    result = {
        "ok": False,
        "error": exception_name(exc),
        "message": str(exc).strip(),
        "details": exception_details(exc),
    }
    result.update(extra)
    return result


def parse_properties(pairs):
    """
    Turn C{["K=V", ...]} command-line values into a dict.
    """
    props = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"property must be KEY=VALUE: {pair!r}")
        props[key] = value
    return props


def make_communicator(Ice, locator, properties):
    """
    Create a communicator whose default locator is C{locator} (if given),
    with extra Ice C{properties} applied on top.
    """
    init = Ice.InitializationData()
    init.properties = Ice.createProperties()
    if locator:
        init.properties.setProperty("Ice.Default.Locator", locator)
    for key, value in properties.items():
        init.properties.setProperty(key, value)
    return Ice.initialize(init)
