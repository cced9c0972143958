"""CPU of exporting a state at an older schema version (a rollback handoff, or
``commit(targets=...)`` to a downgrade) against the native export, in the same run.

W1-like records (nested: a dict and a list in each) at version 2 with one field more
than version 1; a record step drops it. A pre-copy source writes round 0 (a full
snapshot) and a delta of 2,000 changed records, natively and downgraded; each figure
is the best of ``--repeat`` runs of process CPU time, and each ratio is downgraded
over native.

    .venv/bin/python benchmarks/bench_export_older.py            # 300,000 records
    .venv/bin/python benchmarks/bench_export_older.py --quick    # 30,000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from typing_extensions import TypedDict

import statemigrate as sm


class Extra(TypedDict):
    cart: list[str]
    prefs: dict[str, str]


class RecordV1(TypedDict):
    user: str
    token: str
    seq: int
    created: float
    data: Extra
    hits: int


class RecordV2(RecordV1):
    region: str


class StateV1(TypedDict):
    entries: dict[str, RecordV1]
    last_seq: int


class StateV2(TypedDict):
    entries: dict[str, RecordV2]
    last_seq: int


REGISTRY = sm.Registry()
REGISTRY.add_schema("sessions", 1, StateV1)
REGISTRY.add_schema("sessions", 2, StateV2)


@REGISTRY.migration("sessions", 2, 1, records="entries", lossy=("entries.*.region",))
def drop_region(key: str, value: Any) -> Any:
    del value["region"]
    return value


@REGISTRY.migratable("sessions", version=2)
class Sessions:
    def __init__(self) -> None:
        self.entries: sm.TrackedDict[str, Any] = sm.TrackedDict()
        self.last_seq = 0


def record(i: int) -> dict[str, Any]:
    return {
        "user": f"user{i % 5000}", "token": f"t{i}", "seq": i, "created": 1.7e9 + i,
        "data": {"cart": [f"item{i % 97}"] * 2, "prefs": {"lang": "en", "tz": f"tz{i % 24}"}},
        "hits": i % 11, "region": ("eu", "us", "ap", "sa")[i % 4],
    }


def measure(
    service: sm.Service, sessions: Sessions, targets: dict[str, int] | None, changed: int
) -> tuple[float, float]:
    """CPU seconds of round 0 and of one delta of ``changed`` records."""
    rnd = random.Random(1)
    keys = list(sessions.entries)
    with service.precopy_source(targets=targets, allow_lossy=True) as source:
        source.start()
        started = time.process_time()
        source.full()
        full = time.process_time() - started
        for key in rnd.sample(keys, changed):
            value = dict(sessions.entries[key])
            value["token"] = "x"
            sessions.entries[key] = value
        started = time.process_time()
        source.delta(limit=changed)
        delta = time.process_time() - started
    return full, delta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30,000 records")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    records = args.records or (30_000 if args.quick else 300_000)
    service = sm.Service("bench-export-older", registry=REGISTRY)
    sessions = service.register(Sessions())
    for i in range(records):
        sessions.entries[f"k{i}"] = record(i)
    service.start_cold("bench")
    best: dict[str, list[float]] = {"native": [9e9, 9e9], "older": [9e9, 9e9]}
    for _ in range(args.repeat):
        for name, targets in (("native", None), ("older", {"sessions": 1})):
            full, delta = measure(service, sessions, targets, 2_000)
            best[name] = [min(best[name][0], full), min(best[name][1], delta)]
    (nf, nd), (of, od) = best["native"], best["older"]
    print(f"{records:,} records, best of {args.repeat}, process CPU")
    print(f"round 0 (full):      native {nf:.3f} s, version 1 {of:.3f} s, ratio {of / nf:.1f}x")
    print(f"delta of 2,000:      native {nd * 1000:.1f} ms, version 1 {od * 1000:.1f} ms,"
          f" ratio {od / nd:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
