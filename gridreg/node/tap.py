# -*- test-case-name: tests.test_node_tap -*-
"""
The C{gridnode} twistd plugin: command-line options and service wiring.

Configuration is IceGrid's: an Ice property file (C{--config}), then
C{--property KEY=VALUE} overrides in order, then C{--node-name}. Any bad
file, line or value stops start-up with a message naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from gridreg.config.options import PropertyOptions
from gridreg.config.stdio import redirect_stdio
from gridreg.config.properties import PropertyError
from gridreg.node.config import NodeConfig
from gridreg.tls_gate import keep_tls_out

if TYPE_CHECKING:  # imported once the configuration has said whether TLS is used
    from gridreg.registry.security import InternalSecurity

log = Logger()


class Options(PropertyOptions):
    """twistd gridnode [--config FILE] [--node-name NAME] [--property K=V ...]"""

    synopsis = "[--config FILE] [--node-name NAME] [--property KEY=VALUE ...]"
    longdesc = (
        "Run a gridreg node: it keeps a session with every registry replica and starts "
        "the servers deployed on it, as icegridnode does. Properties use IceGrid's names "
        "(IceGrid.Node.Name, IceGrid.Node.Data, IceGrid.Node.Output, Ice.Default.Locator, ...)."
    )
    optParameters = [
        ["node-name", None, None, "IceGrid.Node.Name: this node's name."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.node_config: Optional[NodeConfig] = None
        self.security: Optional[InternalSecurity] = None

    def postOptions(self) -> None:
        try:
            properties = self.read_properties(
                ("IceGrid.Node.Name", self["node-name"], "--node-name")
            )
            self.node_config = NodeConfig.from_properties(properties)
            keep_tls_out(properties)  # before anything imports the reactor
            from gridreg.registry.security import InternalSecurity

            self.security = InternalSecurity.from_properties(properties, needed=True)
        except PropertyError as exc:
            raise usage.UsageError(str(exc)) from None
        self.properties = properties


def makeService(options: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor
    from gridreg.node.service import NodeService

    config = options.node_config
    assert config is not None
    redirect_stdio(options.properties)
    options.log_warnings(log)
    return NodeService(reactor, config, options.security)
