"""The writers' hold of an incremental checkpoint's delta, and what its in-place watch costs.

    .venv/bin/python benchmarks/bench_inplace_watch.py [--carts 200000] [--blobs 2000]
        [--big 8] [--rounds 15]

A service holds carts (lists of items, which can change in place, so they are
watched) and blobs (strings, a few of them of 4 MB). Between two checkpoints a
second's writes land: 1,500 carts and 100 blobs, one of them a large one. Each
checkpoint's hold (``CheckpointReport.pause_seconds``) is timed twice, interleaved,
in the same run: with the watch taking the hash of records that cannot change in
place (the library's), and with it digesting every watched record, as it did before. The ratio
is the figure to read; seconds are for context on a shared machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate._model import _inplacewatch
from statemigrate.stores import TmpfsStore


class Shop(TypedDict):
    carts: dict[str, list[int]]
    blobs: dict[str, str]


def _service(carts: int, blobs: int, big: int) -> tuple[sm.Service, Any]:
    registry = sm.Registry()
    registry.add_schema("shop", 1, Shop)

    @registry.migratable("shop", version=1)
    class ShopState:
        def __init__(self) -> None:
            self.carts: sm.TrackedDict[str, list[int]] = sm.TrackedDict()
            self.blobs: sm.TrackedDict[str, str] = sm.TrackedDict()

    service = sm.Service("shop", registry=registry)
    shop = service.register(ShopState())
    shop.carts.update((f"c{i}", [i, 1]) for i in range(carts))
    shop.blobs.update((f"b{i}", "x" * 4_000_000 if i < big else f"v{i}") for i in range(blobs))
    service.start_cold("a benchmark")
    return service, shop


def _holds(digest_all: bool, args: argparse.Namespace) -> list[float]:
    """The hold of each delta checkpoint, in ms."""
    immutable = _inplacewatch._immutable
    if digest_all:  # the watch as it was: every watched record digested
        _inplacewatch._immutable = lambda value, depth: False  # type: ignore[assignment]
    try:
        service, shop = _service(args.carts, args.blobs, args.big)
        rnd = random.Random(7)
        with tempfile.TemporaryDirectory(dir="/dev/shm") as place:
            lock = threading.Lock()
            checkpointer = sm.Checkpointer(
                service, TmpfsStore(place), quiesce=lock, incremental=True, export="inline"
            )
            checkpointer.checkpoint_now()  # the base
            holds = []
            for _ in range(args.rounds):
                for _ in range(1_500):
                    key = f"c{rnd.randrange(args.carts)}"
                    shop.carts[key] = [*shop.carts[key], 1]
                for n in range(100):
                    big = n == 0
                    shop.blobs[f"b{rnd.randrange(args.blobs)}"] = "y" * (4_000_000 if big else 9)
                report = checkpointer.checkpoint_now()
                holds.append(report.pause_seconds * 1000)
            checkpointer.close()
        return holds
    finally:
        _inplacewatch._immutable = immutable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carts", type=int, default=200_000)
    parser.add_argument("--blobs", type=int, default=2_000)
    parser.add_argument("--big", type=int, default=8, help="blobs of 4 MB at the start")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for digest_all in (True, False):
            results[digest_all] += _holds(digest_all, args)
    print(f"{args.carts:,} carts, {args.blobs:,} blobs ({args.big} of 4 MB); a delta a round")
    print("| watch | delta checkpoints | writers held p50 | p90 | max | ratio of p50 |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(results[True])
    for digest_all, label in (
        (True, "every watched record digested (before)"),
        (False, "immutable records watched by hash"),
    ):
        holds = sorted(results[digest_all])
        p50 = statistics.median(holds)
        p90 = holds[int(0.9 * (len(holds) - 1))]
        print(
            f"| {label} | {len(holds)} | {p50:.1f} ms | {p90:.1f} ms | {holds[-1]:.1f} ms"
            f" | {p50 / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
