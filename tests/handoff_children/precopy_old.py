"""An old process that hands its counters over with pre-copy, and stalls in round 0.

Usage: precopy_old.py DIRECTORY

Round 0's forked child writes its pid to DIRECTORY/round0 and then sleeps, so a test
can kill this process while the successor waits for its first piece. The successor
(``precopy.py ok``) writes DIRECTORY/successor.json if it ever takes over.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for its helpers

from handoff_children.precopy import build_service

from statemigrate._runtime._precopy import PreCopySource
from statemigrate.handoff import Spawn, hand_over


def stalled_full(self: PreCopySource) -> Any:
    Path(sys.argv[1], "round0").write_text(str(os.getpid()))
    time.sleep(3600)


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    directory = Path(sys.argv[1])
    service, obj = build_service(1)
    for i in range(1000):
        obj.entries[f"fill:{i}"] = i
    PreCopySource.full = stalled_full  # type: ignore[method-assign]
    here = Path(__file__).resolve().parent
    successor = [sys.executable, str(here / "precopy.py"), "ok", "2"]
    hand_over(service, Spawn([*successor, str(directory / "successor.json")]), listeners={})
    return 0


if __name__ == "__main__":
    sys.exit(main())
