"""The first checkpoint after a restart: from the call to the commit, on a state of
``--entries`` records (300,000 by default) in a ``TrackedDict``.

A first process checkpoints incrementally (a base, then deltas) into a tmpfs store
and "crashes" (it just stops). Restarted processes then restore the chain with
``start_from(store)``, write ``--writes`` records (1,000 by default), and take their
first checkpoint, timed from ``checkpoint_now()`` to its return (the commit done),
with the default ``export`` (a forked child where the system can), two ways in the
same run:

- ``continued_ms``: checkpointing to the store it restored from, the chain is
  continued: the first checkpoint is a delta appended to it;
- ``new_base_ms``: checkpointing to another directory, it cannot be (as before chain
  continuation, or for a state that is not the chain's): a new full base.

For scale, ``pickle_ms`` is the baseline users would otherwise pick: ``pickle.dump`` of
the same entries to a file in /dev/shm, renamed into place. One JSON line per run, with
``ratio`` = continued_ms / new_base_ms and ``ratio_pickle`` = continued_ms / pickle_ms.

    .venv/bin/python benchmarks/bench_first_checkpoint.py
    .venv/bin/python benchmarks/bench_first_checkpoint.py --entries 30000 --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import tempfile
import threading
import time
from typing import Any

from typing_extensions import TypedDict

from statemigrate import Checkpointer, Registry, Service, TmpfsStore, TrackedDict

REGISTRY = Registry()


class TableV1(TypedDict):
    items: dict[str, int]
    count: int


REGISTRY.add_schema("table", 1, TableV1)


@REGISTRY.migratable("table", version=1)
class Table:
    def __init__(self) -> None:
        self.items: TrackedDict[str, int] = TrackedDict()
        self.count = 0

    def write(self, key: int) -> None:
        self.count += 1
        self.items[f"key-{key:08d}"] = self.count


def service_with_table() -> tuple[Service, Table]:
    service = Service("bench-first-checkpoint", registry=REGISTRY)
    return service, service.register(Table())


def one_run(directory: str, entries: int, writes: int) -> dict[str, Any]:
    lock = threading.Lock()
    with TmpfsStore(os.path.join(directory, "store")) as store:
        service, table = service_with_table()
        service.start_cold("benchmark")
        first = Checkpointer(service, store, quiesce=lock, incremental=True)
        for key in range(entries):
            table.write(key)
        first.checkpoint_now()
        for round_ in range(3):
            for key in range(writes):
                table.write((round_ * writes + key) * 7 % entries)
            first.checkpoint_now()
        first.close()  # the "crash": no final checkpoint
        del first, service, table

        # First, to another directory: the store's chain is left as it is.
        elsewhere = TmpfsStore(os.path.join(directory, "elsewhere"))
        new_base_ms, _, new_base_pieces = restart_and_checkpoint(store, elsewhere, writes, lock)
        continued_ms, restore_ms, pieces = restart_and_checkpoint(store, store, writes, lock)
        assert new_base_pieces == 1 and pieces > 1, (new_base_pieces, pieces)
        pickle_ms = pickle_checkpoint(directory, entries)
    return {
        "entries": entries,
        "continued_ms": round(continued_ms, 1),
        "new_base_ms": round(new_base_ms, 1),
        "pickle_ms": round(pickle_ms, 1),
        "ratio": round(continued_ms / new_base_ms, 4),
        "ratio_pickle": round(continued_ms / pickle_ms, 4),
        "pieces": pieces,
        "restore_ms": round(restore_ms, 1),
    }


def restart_and_checkpoint(
    source: TmpfsStore, target: TmpfsStore, writes: int, lock: threading.Lock
) -> tuple[float, float, int]:
    """A restarted process: restore from ``source``, write, take the first checkpoint
    into ``target``. Returns its milliseconds, the restore's, and the pieces committed."""
    service, table = service_with_table()
    began = time.perf_counter()
    service.start_from(source)
    restore_ms = (time.perf_counter() - began) * 1000
    entries = len(table.items)
    for key in range(writes):
        table.write(key * 13 % entries)
    checkpointer = Checkpointer(service, target, quiesce=lock, incremental=True)
    began = time.perf_counter()
    report = checkpointer.checkpoint_now()
    first_ms = (time.perf_counter() - began) * 1000
    checkpointer.close()
    assert report.committed is not None
    return first_ms, restore_ms, report.committed.snapshot.chain


def pickle_checkpoint(directory: str, entries: int) -> float:
    """Milliseconds to pickle the same entries to /dev/shm and rename them into place."""
    items = {f"key-{key:08d}": key for key in range(entries)}
    path = os.path.join(directory, "state.pickle")
    began = time.perf_counter()
    with open(path + ".tmp", "wb") as file:
        pickle.dump(items, file, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(path + ".tmp", path)
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=300_000)
    parser.add_argument("--writes", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        directory = tempfile.mkdtemp(prefix="bench-first-checkpoint-", dir="/dev/shm")
        try:
            print(json.dumps(one_run(directory, args.entries, args.writes)), flush=True)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
