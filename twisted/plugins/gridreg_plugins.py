"""twistd plugins of gridreg: the registry replica and the node."""

from twisted.application.service import ServiceMaker

gridregistry = ServiceMaker(
    "gridreg registry",
    "gridreg.registry.tap",
    "A replica of a gridreg registry: an IceGrid-compatible locator",
    "gridregistry",
)

gridnode = ServiceMaker(
    "gridreg node",
    "gridreg.node.tap",
    "A gridreg node: runs the servers deployed on it, as icegridnode does",
    "gridnode",
)
