"""C{python -m gridreg.admin}: the C{gridadmin} command."""

import sys

from gridreg.admin import program

sys.exit(program())
