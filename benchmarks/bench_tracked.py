"""TrackedDict against dict: reads, writes, and the cost of a delta.

    .venv/bin/python benchmarks/bench_tracked.py [--entries 1000000] [--json]

Reads must cost what they cost on a dict (no method is overridden); a write pays a
Python-level method call, and while a change mark is open the log entry too. Each
figure is a ratio to a plain dict measured in the same run. The last rows time a
pre-copy delta of a cache of ``--entries`` entries after 2,000 writes (what one
second of a steady load of 2,000 writes/s leaves to send in the pause): taking the
changes and encoding them on the serving side, and applying them on the successor.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from typing_extensions import TypedDict

import statemigrate as sm

N = 200_000
KEYS = [f"user:{i}" for i in range(N)]


def _per_op(stmt: str, setup: str, namespace: dict[str, Any], number: int) -> float:
    """Best of five, in nanoseconds per operation."""
    timer = timeit.Timer(stmt, setup, globals=namespace)
    return min(timer.repeat(5, number)) / N / number * 1e9


def micro() -> list[dict[str, Any]]:
    rows = []
    ns: dict[str, Any] = {"KEYS": KEYS, "TrackedDict": sm.TrackedDict}
    cases = {
        "read d[k]": ("for k in KEYS: d[k]", 1),
        "read d.get(k)": ("for k in KEYS: d.get(k)", 1),
        "write d[k] = v": ("for k in KEYS: d[k] = 1", 1),
        "delete + insert": ("for k in KEYS: d.pop(k); d[k] = 2", 1),
    }
    for name, (stmt, number) in cases.items():
        plain = _per_op(stmt, "d = dict.fromkeys(KEYS, 0)", ns, number)
        idle = _per_op(stmt, "d = TrackedDict(dict.fromkeys(KEYS, 0))", ns, number)
        marked = _per_op(
            stmt, "d = TrackedDict(dict.fromkeys(KEYS, 0)); m = d.mark()", ns, number
        )
        two = _per_op(
            stmt, "d = TrackedDict(dict.fromkeys(KEYS, 0)); m = d.mark(); n = d.mark()",
            ns, number,
        )
        rows.append(
            {
                "op": name,
                "dict_ns": round(plain, 1),
                "tracked_idle_ns": round(idle, 1),
                "tracked_marked_ns": round(marked, 1),
                "tracked_two_marks_ns": round(two, 1),
                "ratio_idle": round(idle / plain, 2),
                "ratio_marked": round(marked / plain, 2),
            }
        )
    return rows


class Entry(TypedDict):
    value: str
    hits: int


class State(TypedDict):
    entries: dict[str, Entry]


REGISTRY = sm.Registry()
REGISTRY.add_schema("cache", 1, State)


@REGISTRY.migratable("cache", version=1)
class Cache:
    def __init__(self) -> None:
        self.entries: sm.TrackedDict[str, Entry] = sm.TrackedDict()


def delta_cost(entries: int, writes: int = 2000) -> dict[str, Any]:

    source = sm.Service("bench", registry=REGISTRY)
    cache = source.register(Cache())
    cache.entries.update({f"k{i}": {"value": f"v{i}", "hits": 0} for i in range(entries)})
    target = sm.Service("bench", registry=REGISTRY)
    target.register(Cache())
    pieces = source.precopy_source()
    pieces.start()
    started = time.perf_counter()
    full = pieces.full()
    full_s = time.perf_counter() - started
    target.restore(full.to_bytes())
    # A long-running service's state is old: the collector has moved it to its oldest
    # generation long ago. Without this, the first full collection over the million
    # entries just built would land in what is timed next.
    gc.collect()
    for i in range(writes):
        cache.entries[f"k{(i * 7919) % entries}"] = {"value": "new", "hits": i}
    started = time.perf_counter()
    delta = pieces.delta()
    delta_s = time.perf_counter() - started
    blob = delta.to_bytes()
    started = time.perf_counter()
    report = target.restore(blob)
    apply_s = time.perf_counter() - started
    pieces.close()
    return {
        "entries": entries,
        "writes": writes,
        "records": report.records,
        "full_ms": round(full_s * 1000, 1),
        "delta_ms": round(delta_s * 1000, 2),
        "delta_bytes": len(blob),
        "apply_ms": round(apply_s * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    rows = micro()
    cost = delta_cost(args.entries)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        print(json.dumps(cost))
        return
    print(f"{'op':<18}{'dict ns':>9}{'idle ns':>9}{'marked ns':>11}{'2 marks':>9}"
          f"{'idle x':>8}{'marked x':>10}")
    for row in rows:
        print(
            f"{row['op']:<18}{row['dict_ns']:>9}{row['tracked_idle_ns']:>9}"
            f"{row['tracked_marked_ns']:>11}{row['tracked_two_marks_ns']:>9}"
            f"{row['ratio_idle']:>8}{row['ratio_marked']:>10}"
        )
    print(
        f"\ndelta of {cost['records']} records over {cost['entries']:,} entries:"
        f" taken and encoded in {cost['delta_ms']} ms ({cost['delta_bytes']:,} bytes),"
        f" applied in {cost['apply_ms']} ms; round 0 took {cost['full_ms']} ms"
    )


if __name__ == "__main__":
    main()
