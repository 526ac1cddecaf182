"""C{python3 -m gridreg.demo}: see L{gridreg.demo}."""

from gridreg.demo import main

main()
