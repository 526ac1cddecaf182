"""C{python -m gridreg.registry}: the lean launcher, L{gridreg.registry.program}."""

from gridreg.registry import program

program()
