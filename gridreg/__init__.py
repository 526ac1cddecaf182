"""gridreg: a replicated IceGrid-style service-location registry on Twisted."""

from gridreg._version import __version__

__all__ = ["__version__"]
