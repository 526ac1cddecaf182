"""twistd plugins of gridreg: the registry replica and (later) the node."""

from twisted.application.service import ServiceMaker

gridregistry = ServiceMaker(
    "gridreg registry",
    "gridreg.registry.tap",
    "A replica of a gridreg registry: an IceGrid-compatible locator",
    "gridregistry",
)
