# -*- test-case-name: tests.test_tls_gate,tests.test_startup_imports_processes -*-
"""
Keep the TLS libraries out of a registry or node configured without TLS.

Twisted imports pyOpenSSL as soon as it can: C{twisted.internet.tcp} (for
C{startTLS}), the reactor's C{posixbase} (for C{listenSSL}) and
C{twisted.internet.endpoints} each try it at import time, and pyOpenSSL
brings C{cryptography} and C{service_identity}: about 40 ms of start-up
and 11 MB of memory (an idle registry's peak RSS goes from 56 to 45 MB
without them). The memory costs more than the time: a SIGKILLed process's
sockets close only once the kernel has freed its memory (about 1.5 ms per
10 MB here), which is part of how long a client waits to fail over.

A gridreg process needs these libraries only when C{IceSSL.CAs},
C{IceSSL.CertFile} or C{IceSSL.KeyFile} is set (mutual TLS on internal
sessions, C{ssl} endpoints: without them gridreg refuses both), or when it
serves Glacier2 session managers (their C{SSLSessionManager} reads the
router's client certificates with pyOpenSSL). Otherwise L{keep_tls_out}
makes their import fail, so Twisted's modules take the branches they have
for a Python without pyOpenSSL.

The plugins call it from C{postOptions}, once the configuration is read:
C{twist} and C{twistd} install the reactor, which imports
C{twisted.internet.tcp}, only after the plugin's options are parsed. It
does nothing once pyOpenSSL is imported (a test process, a reactor chosen
with C{--reactor}): the process then works as before, only larger.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Optional

__all__ = ["REFUSED", "is_closed", "keep_tls_out", "tls_needed"]

#: the top-level packages kept out (pyOpenSSL's and what only it pulls in)
REFUSED = ("OpenSSL", "cryptography", "service_identity")

#: IceSSL's certificate properties: any of them means gridreg speaks TLS
_TLS_PROPERTIES = ("IceSSL.CAs", "IceSSL.CertFile", "IceSSL.KeyFile")

#: the adapters that host Glacier2's SSL session managers
_GLACIER2_PROPERTIES = (
    "IceGrid.Registry.SessionManager.Endpoints",
    "IceGrid.Registry.AdminSessionManager.Endpoints",
)


def tls_needed(properties: Mapping[str, str]) -> bool:
    """Whether a process with these properties may ever load the TLS libraries."""
    return any(properties.get(key) for key in (*_TLS_PROPERTIES, *_GLACIER2_PROPERTIES))


class _Refuse(importlib.abc.MetaPathFinder):
    """A finder that fails the import of L{REFUSED} packages, saying why."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Any = None
    ) -> None:
        if fullname.partition(".")[0] in REFUSED:
            raise ImportError(
                f"{fullname} is not loaded in a gridreg process configured without TLS "
                f"(no {', '.join(_TLS_PROPERTIES)}): see gridreg.tls_gate",
                name=fullname,
            )
        return None


def is_closed() -> bool:
    """Whether L{keep_tls_out} has closed this process to the TLS libraries."""
    return any(isinstance(finder, _Refuse) for finder in sys.meta_path)


def keep_tls_out(properties: Mapping[str, str]) -> bool:
    """
    Unless L{tls_needed}, refuse the TLS libraries from now on.

    @return: whether they are refused (also when they already were); False
        when TLS is needed, or when one of them is imported already.
    """
    if tls_needed(properties):
        return False
    if is_closed():
        return True
    if any(name in sys.modules for name in REFUSED):
        return False
    sys.meta_path.insert(0, _Refuse())
    return True
