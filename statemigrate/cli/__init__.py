"""The ``statemigrate`` command: a thin argparse layer over the library's functions.

:func:`main` runs it (the console script and ``python -m statemigrate`` call it); see
``docs/cli.md``.
"""

from statemigrate.cli._main import main

__all__ = ["main"]
