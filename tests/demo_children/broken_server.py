"""A deliberately broken demo server: it goes on acknowledging writes during a handoff.

Its ``pause`` holds nothing back and its ``stop_accepting`` waits a moment before
marking the state as moved, so writes acknowledged between the snapshot and that
moment never reach the successor. The demo's checks must report them as lost.
"""

from __future__ import annotations

import sys
import time

from statemigrate.demo import _server


class BrokenServer(_server.CacheServer):
    def pause(self) -> None:
        pass  # the bug: writers are not held while the snapshot is taken and sent

    def stop_accepting(self) -> None:
        time.sleep(0.3)  # widen the window in which acknowledged writes are lost
        super().stop_accepting()


if __name__ == "__main__":
    _server.CacheServer = BrokenServer  # type: ignore[misc]
    sys.exit(_server.main())
