"""C{python -m gridreg.registry}: the lean launcher, L{gridreg.registry.launch}."""

from gridreg.registry.launch import main

main()
