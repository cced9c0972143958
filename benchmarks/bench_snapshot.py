"""Encode + commit of the reference workloads, against pickle to /dev/shm in the same run.

W1: 1,000,000 cache entries; W2: 200 incompressible 512 KiB blobs. For each, and for
both statemigrate (snapshot through a Service, committed to a TmpfsStore) and the
baseline (pickle protocol 5, temp file + fsync + rename), a fresh child process builds
the state, then times the save (best of --repeat) and records its peak RSS relative to
the RSS with the state built.

    .venv/bin/python benchmarks/bench_snapshot.py            # full size
    .venv/bin/python benchmarks/bench_snapshot.py --quick    # 1/10 size, for a smoke run

Targets: W1 time <= 0.25x pickle, W1 peak RSS <= 1.3x the state's RSS; W2 <= 1.2x pickle.
The targets are for a schema of ``dict[str, object]`` entries. The row
``statemigrate-typed`` commits the same entries under their TypedDict schema
(``W1State``), which a commit walks record by record first: it shows that check's cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # the benchmarks folder is not a package: found via sys.path
    SHM,
    W1State,
    best_of,
    build_w1,
    build_w2,
    peak_rss_bytes,
    pickle_commit,
    reset_peak_rss,
    rss_bytes,
    run_child,
    table,
)


def _statemigrate_saver(state: dict[str, object], directory: str, *, typed: bool) -> object:
    from typing_extensions import TypedDict

    import statemigrate as sm
    from statemigrate.stores import TmpfsStore

    registry = sm.Registry()

    class BenchState(TypedDict):
        entries: dict[str, object]

    # Typed, the commit checks every record before writing it (docs/schemas.md); with
    # entries of ``object`` there is nothing to check.
    registry.add_schema("bench", 1, W1State if typed else BenchState)

    @registry.migratable("bench", version=1)
    class Holder:
        def __init__(self, entries: dict[str, object]) -> None:
            self.entries = entries

    service = sm.Service("bench")
    service.register(Holder(state))
    store = TmpfsStore(os.path.join(directory, "store"))

    def save() -> int:
        return service.commit(store).snapshot.size

    return save


def child(workload: str, method: str, count: int, repeat: int) -> dict[str, object]:
    before = rss_bytes()
    state: dict[str, object] = dict(build_w1(count) if workload == "W1" else build_w2(count))
    with_state = rss_bytes()
    directory = tempfile.mkdtemp(prefix="sm-bench-", dir=SHM)
    try:
        if method == "pickle":
            def save() -> int:
                return pickle_commit(state, directory)
        else:
            save = _statemigrate_saver(  # type: ignore[assignment]
                state, directory, typed=method == "statemigrate-typed"
            )
        # The baseline is the RSS once the state is built and the library is loaded, so
        # the ratio measures what the save itself adds.
        with_state = rss_bytes()
        measured_peak = reset_peak_rss()
        first_peak_base = peak_rss_bytes()
        seconds, size = best_of(repeat, save)
        peak = peak_rss_bytes()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "seconds": seconds,
        "size": size,
        "state_rss": with_state - before,
        "rss_with_state": with_state,
        "peak_rss": peak if measured_peak else first_peak_base,
        "peak_measured": measured_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("WORKLOAD", "METHOD", "COUNT", "REPEAT"))
    args = parser.parse_args()
    if args.child:
        workload, method, count, repeat = args.child
        print(json.dumps(child(workload, method, int(count), int(repeat))))
        return
    scale = 10 if args.quick else 1
    workloads = {"W1": 1_000_000 // scale, "W2": 200 // scale}
    rows = [("workload", "method", "seconds", "ratio", "size", "peak RSS / RSS with state")]
    targets = {"W1": 0.25, "W2": 1.2}
    verdicts = []
    for workload, count in workloads.items():
        methods = ["pickle", "statemigrate"] + (["statemigrate-typed"] if workload == "W1" else [])
        results = {
            method: run_child(__file__, workload, method, str(count), str(args.repeat))
            for method in methods
        }
        base = results["pickle"]["seconds"]
        for method, result in results.items():
            ratio = result["seconds"] / base
            rows.append(
                (
                    f"{workload} ({count})",
                    method,
                    f"{result['seconds']:.3f}",
                    f"{ratio:.2f}x",
                    f"{result['size'] / 2**20:.1f} MiB",
                    f"{result['peak_rss'] / result['rss_with_state']:.2f}x",
                )
            )
        ratio = results["statemigrate"]["seconds"] / base
        verdicts.append(
            f"{workload}: time {ratio:.2f}x pickle (target <= {targets[workload]}x)"
            f" {'OK' if ratio <= targets[workload] else 'MISSED'}"
        )
        if workload == "W1":
            memory = results["statemigrate"]["peak_rss"] / results["statemigrate"]["rss_with_state"]
            verdicts.append(
                f"W1: peak RSS {memory:.2f}x the RSS with state (target <= 1.3x)"
                f" {'OK' if memory <= 1.3 else 'MISSED'}"
            )
    print(table(rows))
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
