"""Adapters that give a web framework's server hot restarts, one module per engine.

Each adapter imports its engine only when used and is installed with an extra named
after it (``pip install statemigrate[aiohttp]``); the rest of the library never
imports one.

The option they share, ``trial=Trial(directory=...)``, puts each successor on trial
(docs/trials.md).
"""

from statemigrate.integrations._trial import Trial

__all__ = ["Trial"]
