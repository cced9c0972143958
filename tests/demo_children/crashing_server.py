"""A demo server that dies: ``start`` (its migrations are missing) or ``upgrade`` (mid-run).

``start`` fails the way a server without its reference migrations fails, before it
is ready; ``upgrade`` serves, then dies with an error on stderr when asked to hand
itself over. The demo must stop at once and quote the error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import statemigrate.reference
from statemigrate.demo import _server


class DyingServer(_server.CacheServer):
    def upgrade(self, release: int, *, allow_lossy: bool) -> tuple[int, dict[str, object]]:
        sys.stderr.write("FatalError: the exporter ran out of memory\n")
        sys.stderr.flush()
        os._exit(3)


if __name__ == "__main__":
    mode = sys.argv.pop(1)
    if mode == "start":
        statemigrate.reference.MIGRATIONS_DIR = Path(__file__).parent / "no-such-migrations"
    else:
        _server.CacheServer = DyingServer  # type: ignore[misc]
    sys.exit(_server.main())
