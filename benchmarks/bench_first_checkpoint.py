"""The first checkpoint after a restart: from the call to the commit, on a state of
``--entries`` records (300,000 by default) in a ``TrackedDict``.

A first process checkpoints incrementally (a base, then deltas) into a tmpfs store
and "crashes" (it just stops). A second one restores the chain with
``start_from(store)``, writes ``--writes`` records (1,000 by default), then takes its
first checkpoint, timed from ``checkpoint_now()`` to its return (the commit done),
with the default ``export`` (a forked child where the system can). Where the restored
chain is continued, that checkpoint is a delta appended to it; where it is not (an
older release, or a state that is not the chain's), it is a new full base.

One JSON line per run: ``first_checkpoint_ms``, ``pieces`` (the chain committed),
``child_s`` (the forked base's child, 0 for a delta), ``restore_ms``.

    .venv/bin/python benchmarks/bench_first_checkpoint.py
    .venv/bin/python benchmarks/bench_first_checkpoint.py --entries 30000 --runs 1
"""

from __future__ import annotations

import argparse
import json
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
    with TmpfsStore(directory) as store:
        service, table = service_with_table()
        service.start_cold("benchmark")
        lock = threading.Lock()
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

        service, table = service_with_table()
        began = time.perf_counter()
        service.start_from(store)
        restore_ms = (time.perf_counter() - began) * 1000
        for key in range(writes):
            table.write(key * 13 % entries)
        checkpointer = Checkpointer(service, store, quiesce=lock, incremental=True)
        began = time.perf_counter()
        report = checkpointer.checkpoint_now()
        first_ms = (time.perf_counter() - began) * 1000
        assert report.committed is not None
        return {
            "entries": entries,
            "first_checkpoint_ms": round(first_ms, 1),
            "pieces": report.committed.snapshot.chain,
            "child_s": round(report.child_seconds, 3),
            "restore_ms": round(restore_ms, 1),
        }


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
