"""How long a successor's event loop stalls right after a take-over, with its first
checkpoint and without.

A handoff's successor owns a state no checkpoint of its release holds, so its
checkpointer takes a full base at once, forked with the writers held. Forking copies
the process's page tables: with a large state that holds the event loop exactly when
the requests held in the pause arrive, forwarded, and their clients reconnect.

This script restores a state of ``--entries`` W1 records (1,000,000 by default) into
a ``TrackedDict`` component from a snapshot, as a successor does, marks it taken over,
then runs an event loop for ``--seconds`` with a probe task that sleeps 1 ms at a
time and records how late each wake-up is, three ways:

- ``none``: no checkpointer (the floor);
- ``at_once``: an incremental checkpointer on the loop, started at "SERVING", whose
  first base comes at once (``first_after_takeover=0``);
- ``delayed``: the same with its first base ``--delay`` seconds after "SERVING"
  (the default).

One JSON line per way and run: the worst wake-up delay in the first 0.3 s after
"SERVING" (``early_max_ms``, when forwarded requests and reconnections arrive), the
worst over the whole run (``max_ms``) and when it came (``max_at_ms``, from "SERVING").

    .venv/bin/python benchmarks/bench_takeover_stall.py --runs 3
    .venv/bin/python benchmarks/bench_takeover_stall.py --entries 100000 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import build_w1

from statemigrate import Checkpointer, Registry, Service, TmpfsStore, TrackedDict

#: Seconds after "SERVING" in which forwarded requests and reconnections arrive.
EARLY = 0.3

REGISTRY = Registry()
REGISTRY.add_schema("table", 1, dict[str, dict[str, Any]])


@REGISTRY.migratable("table", version=1)
class Table:
    def __init__(self, items: dict[str, Any] | None = None) -> None:
        self.items: TrackedDict[str, Any] = TrackedDict(items or {})

    def export_state(self) -> Any:
        return self.items

    def import_state(self, state: Any) -> None:
        self.items = TrackedDict(state)


def successor(blob: bytes) -> Service:
    """A service restored from ``blob``, as a handoff's successor's is."""
    service = Service("stall")
    service.register(Table())
    service.restore(blob)
    return service


async def probe(seconds: float, lags: list[tuple[float, float]]) -> None:
    began = time.monotonic()
    while (now := time.monotonic()) - began < seconds:
        await asyncio.sleep(0.001)
        late = time.monotonic() - now - 0.001
        lags.append((now - began, late))


async def run_once(blob: bytes, way: str, *, seconds: float, delay: float) -> dict[str, Any]:
    service = successor(blob)
    gc.collect()
    directory = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    lags: list[tuple[float, float]] = []
    task: asyncio.Task[None] | None = None
    try:
        store = TmpfsStore(directory)
        service._tracker.took_over()  # "SERVING": as take_over does once it serves
        if way != "none":
            options: dict[str, Any] = {}
            if "first_after_takeover" in inspect.signature(Checkpointer).parameters:
                options["first_after_takeover"] = 0.0 if way == "at_once" else delay
            checkpointer = Checkpointer(service, store, every=30, incremental=True, **options)
            task = asyncio.create_task(checkpointer.run())
        await probe(seconds, lags)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    early = [late for at, late in lags if at < EARLY]
    worst = max(lags, key=lambda pair: pair[1])
    return {
        "way": way,
        "early_max_ms": round(max(early) * 1000, 1),
        "max_ms": round(worst[1] * 1000, 1),
        "max_at_ms": round(worst[0] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--ways", default="none,at_once,delayed")
    args = parser.parse_args()
    writer = Service("stall")
    writer.register(Table(build_w1(args.entries)))
    blob = writer.snapshot()[0].to_bytes()
    del writer
    gc.collect()
    for _ in range(args.runs):
        for way in args.ways.split(","):
            result = asyncio.run(run_once(blob, way, seconds=args.seconds, delay=args.delay))
            result["entries"] = args.entries
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
