"""The cost of checkpoints on the write path: writes/s with and without a Checkpointer,
and a checkpoint's time beside pickle to /dev/shm of the same state, in one run.

For each size (W1: N cache entries), a fresh child process builds the state and
registers it with a Service. A writer thread then replaces random entries as fast as
it can, each write under the lock that the checkpointer takes as its ``quiesce``, for
--seconds: once without checkpoints, then with a Checkpointer to a TmpfsStore every 5 s
and every 1 s; then the same with the entries in a ``TrackedDict`` and incremental
checkpoints (a base, then deltas). The writes/s of each run are printed as a ratio to
the run without checkpoints (of the same kind of dict), with the checkpoints' pauses
(writers held: export + encode of a snapshot or a delta; an incremental run takes
its base before it starts, as a service would at start-up), read from
``statemigrate_checkpoint_pause_seconds`` through a metrics sink. With the writers
stopped, the child then times one full checkpoint (``checkpoint_now``: snapshot +
commit) and pickle protocol 5 committed to /dev/shm (temp file, fsync, rename), best
of --repeat each, one incremental checkpoint after --changed writes, and one after
replacing --large (a share) of the entries at random, on a new base (best of
--repeat): its pause per record changed, beside the full checkpoint's per entry, and
the CPU time of both (the process's, all threads: steadier than the pauses on a
shared machine). The runs with incremental
checkpoints also count the checkpoints taken as new bases (a delta of more than a
quarter of the records, or of a chain grown past max_delta_ratio, is taken as one).
The write runs use the checkpointer's default export (a full snapshot or a base in a
forked child, on Linux); the single checkpoints above are exported inline, so that
their pause and CPU time are the export's. Last, the writers' hold of one full
checkpoint and of one chain's base, exported in a forked child and inline,
interleaved, best of --repeat, as a ratio of the two.

    .venv/bin/python benchmarks/bench_checkpoint.py                  # 100k and 1M entries
    .venv/bin/python benchmarks/bench_checkpoint.py --sizes 10000 --seconds 4   # smoke run
    .venv/bin/python benchmarks/bench_checkpoint.py --sizes 1000000 --seconds 5 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # the benchmarks folder is not a package: found via sys.path
    SHM,
    best_of,
    build_w1,
    pickle_commit,
    run_child,
    table,
    w1_component,
)

INTERVALS = (5.0, 1.0)


class PauseSink:
    """Keeps the checkpoint pauses the library reports, and whether each checkpoint
    wrote a full snapshot (a base, for incremental checkpoints)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.full: list[bool] = []
        self._snapshot = False
        self.forked = True  # a forked export reports its snapshot after the pause

    def clear(self) -> None:
        self.pauses.clear()
        self.full.clear()
        self._snapshot = False

    def record(self, instrument: Any, value: float, labels: Any) -> None:
        if instrument.name == "statemigrate_snapshot_duration_seconds":
            # Emitted for full snapshots only, not for deltas: before the pause when
            # encoded inline, once the child is done (after the pause) when forked.
            if self.forked and self.full:
                self.full[-1] = True
            else:
                self._snapshot = True
        elif instrument.name == "statemigrate_checkpoint_pause_seconds":
            self.pauses.append(value)
            self.full.append(self._snapshot)
            self._snapshot = False


def write_for(entries: Any, lock: threading.Lock, seconds: float) -> int:
    """Replace random entries under ``lock`` for ``seconds``; return the writes made."""
    rnd = random.Random(7)
    keys = list(entries)
    writes = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            key = keys[rnd.randrange(len(keys))]
            entry = {"id": writes, "name": "written", "score": rnd.random(),
                     "tags": ["pro", "eu"], "updated": 1_700_000_000 + writes}
            with lock:
                entries[key] = entry
            writes += 1
    return writes


def write_for_count(entries: Any, count: int, seed: int = 11) -> int:
    """Replace ``count`` random entries, with the writers stopped; return how many
    distinct entries were replaced."""
    rnd = random.Random(seed)
    keys = list(entries)
    written = set()
    for n in range(count):
        key = keys[rnd.randrange(len(keys))]
        written.add(key)
        entries[key] = {
            "id": n, "name": "changed", "score": rnd.random(), "tags": ["team", "ap"],
            "updated": 1_800_000_000 + n,
        }
    return len(written)


def child(
    count: int,
    seconds: float,
    repeat: int,
    rounds: int = 2,
    changed: int = 10_000,
    large: float = 0.2,
) -> dict[str, Any]:
    import statemigrate as sm
    from statemigrate.metrics import use_sink
    from statemigrate.stores import TmpfsStore

    registry = sm.Registry()
    cache = w1_component(registry)
    entries = build_w1(count)
    service = sm.Service("bench", registry=registry)
    service.register(cache(entries))
    tracked = sm.TrackedDict(entries)
    tracked_service = sm.Service("bench", registry=registry)
    tracked_service.register(cache(tracked))
    for started in (service, tracked_service):
        started.start_cold("the benchmark's state")  # checkpoints wait for this
    lock = threading.Lock()
    sink = PauseSink()
    use_sink(sink)
    directory = tempfile.mkdtemp(prefix="bench-checkpoint-", dir=SHM)
    result: dict[str, Any] = {"entries": count}
    try:
        with TmpfsStore(os.path.join(directory, "store")) as store:
            runs: dict[str, Any] = {}
            cases = [(False, every) for every in (None, *INTERVALS)]
            cases += [(True, every) for every in (None, *INTERVALS)]
            for _ in range(rounds):  # interleaved, best of each: a busy machine's noise
                for incremental, every in cases:
                    name = "none" if every is None else f"every {every:g} s"
                    name = f"{'incremental' if incremental else 'full'}, {name}"
                    target, live = (tracked_service, tracked) if incremental else (service, entries)
                    sink.clear()
                    if every is None:
                        writes = write_for(live, lock, seconds)
                    else:
                        checkpointer = sm.Checkpointer(
                            target, store, every=every, quiesce=lock, incremental=incremental
                        )
                        if incremental:
                            # The base, as at the service's start: the run times the deltas.
                            checkpointer.checkpoint_now()
                            sink.clear()
                        with checkpointer:
                            writes = write_for(live, lock, seconds)
                    run = {"writes_per_s": writes / seconds, "checkpoints": len(sink.pauses[:-1]),
                           "pauses": sink.pauses[:-1],  # the last pause is stop()'s, after
                           "bases": sum(sink.full[:-1]) if incremental and every else None}
                    if run["writes_per_s"] > runs.get(name, {"writes_per_s": 0})["writes_per_s"]:
                        runs[name] = run
            result["runs"] = runs
            # A full snapshot encoded in this process: its pause is the export's cost,
            # beside pickle's, and its CPU time is this process's (a child's is not).
            sink.forked = False
            quiet = sm.Checkpointer(service, store, quiesce=lock, export="inline")
            cpu: list[float] = []

            def full_checkpoint() -> Any:
                began = time.process_time()
                try:
                    return quiet.checkpoint_now()
                finally:
                    cpu.append(time.process_time() - began)

            result["checkpoint_s"], report = best_of(repeat, full_checkpoint)
            result["checkpoint_cpu_s"] = min(cpu)
            result["pause_s"] = min(sink.pauses[-repeat:])
            result["snapshot_bytes"] = report.committed.snapshot.size  # type: ignore[attr-defined]
            plain = dict(entries)
            result["pickle_s"], _ = best_of(repeat, lambda: pickle_commit(plain, directory))
            chained = sm.Checkpointer(
                tracked_service, store, quiesce=lock, incremental=True, export="inline"
            )
            chained.checkpoint_now()  # the base
            deltas = []
            for _ in range(repeat):
                write_for_count(tracked, changed)
                report = chained.checkpoint_now()
                deltas.append((report.pause_seconds, report.seconds, report.committed))
            pause, seconds_, committed = min(deltas, key=lambda d: d[0])
            result["delta_pause_s"], result["delta_checkpoint_s"] = pause, seconds_
            result["chain_bytes"] = committed.snapshot.size  # type: ignore[union-attr]
            result["changed"] = changed
            larges = []
            for attempt in range(repeat):
                chained.close()  # the next checkpoint is a new base
                chained.checkpoint_now()
                # Replacing n random entries changes 1 - exp(-n / count) of them.
                records = write_for_count(
                    tracked, round(-count * math.log(1 - large)), seed=13 + attempt
                )
                sink.clear()
                began = time.process_time()
                report = chained.checkpoint_now()
                larges.append((report.pause_seconds, time.process_time() - began, records,
                               sink.full[-1]))
            chained.close()
            (result["large_pause_s"], result["large_cpu_s"], result["large_records"],
             result["large_base"]) = min(larges)
            result["bases"] = hold_of_bases(service, tracked_service, store, lock, repeat)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def hold_of_bases(
    service: Any, tracked_service: Any, store: Any, lock: threading.Lock, repeat: int
) -> dict[str, dict[str, float]]:
    """The writers' hold of a full snapshot exported in a forked child and inline, for
    a full checkpoint and a chain's base, interleaved, best of ``repeat``: the pause
    (writers held) and the whole checkpoint (until committed)."""
    import statemigrate as sm

    found: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for kind, target, incremental in (("full", service, False),
                                          ("base", tracked_service, True)):
            for export in ("fork", "inline"):
                checkpointer = sm.Checkpointer(
                    target, store, quiesce=lock, incremental=incremental, export=export
                )
                report = checkpointer.checkpoint_now()  # a chain's first piece is a base
                checkpointer.close()
                best = found.setdefault(f"{kind} {export}", {"pause_s": math.inf})
                if report.pause_seconds < best["pause_s"]:
                    best.update(pause_s=report.pause_seconds, checkpoint_s=report.seconds)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000",
                        help="entries, comma-separated (default 100000,1000000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="each write run's length")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs of each case")
    parser.add_argument("--changed", type=int, default=10_000,
                        help="entries changed before the timed incremental checkpoint")
    parser.add_argument("--large", type=float, default=0.2,
                        help="share of the entries changed before the large delta (default 0.2)")
    parser.add_argument("--child", nargs=6,
                        metavar=("COUNT", "SECONDS", "REPEAT", "ROUNDS", "CHANGED", "LARGE"))
    args = parser.parse_args()
    if args.child:
        count, seconds, repeat, rounds, changed, large = args.child
        print(json.dumps(child(int(count), float(seconds), int(repeat), int(rounds),
                               int(changed), float(large))))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"writes for {args.seconds:g} s per run, one writer thread; {os.cpu_count()} cores")
    writes = [("entries", "checkpoints", "writes/s", "ratio", "checkpoints taken",
               "of which bases", "pause p50", "pause max")]
    commits = [("entries", "snapshot", "checkpoint (snapshot + commit)", "of which pause",
                "pickle to /dev/shm", "ratio")]
    deltas = [("entries", "changed", "chain committed", "incremental checkpoint",
               "of which pause", "full checkpoint's pause")]
    large = [("entries", "records changed", "taken as", "pause", "per record changed",
              "full checkpoint's pause per entry", "CPU per record changed",
              "full checkpoint's CPU per entry")]
    bases = [("entries", "snapshot of", "forked: writers held", "inline: writers held",
              "ratio", "forked: whole checkpoint", "inline: whole checkpoint")]
    for size in sizes:
        found = run_child(__file__, str(size), str(args.seconds), str(args.repeat),
                          str(args.rounds), str(args.changed), str(args.large))
        for name, run in found["runs"].items():
            base = found["runs"][name.split(",")[0] + ", none"]["writes_per_s"]
            pauses = run["pauses"]
            writes.append((
                f"{size:,}", name, f"{run['writes_per_s']:,.0f}",
                f"{run['writes_per_s'] / base:.2f}x", str(run["checkpoints"]),
                "-" if run["bases"] is None else str(run["bases"]),
                f"{statistics.median(pauses) * 1000:.0f} ms" if pauses else "-",
                f"{max(pauses) * 1000:.0f} ms" if pauses else "-",
            ))
        commits.append((
            f"{size:,}", f"{found['snapshot_bytes'] / (1 << 20):.1f} MiB",
            f"{found['checkpoint_s'] * 1000:.0f} ms", f"{found['pause_s'] * 1000:.0f} ms",
            f"{found['pickle_s'] * 1000:.0f} ms",
            f"{found['checkpoint_s'] / found['pickle_s']:.2f}x",
        ))
        deltas.append((
            f"{size:,}", f"{found['changed']:,}", f"{found['chain_bytes'] / (1 << 20):.1f} MiB",
            f"{found['delta_checkpoint_s'] * 1000:.0f} ms",
            f"{found['delta_pause_s'] * 1000:.0f} ms", f"{found['pause_s'] * 1000:.0f} ms",
        ))
        records = found["large_records"]
        large.append((
            f"{size:,}", f"{records:,} ({records / size:.0%})",
            "base" if found["large_base"] else "delta",
            f"{found['large_pause_s'] * 1000:.0f} ms",
            f"{found['large_pause_s'] / records * 1e6:.1f} us",
            f"{found['pause_s'] / size * 1e6:.1f} us",
            f"{found['large_cpu_s'] / records * 1e6:.1f} us",
            f"{found['checkpoint_cpu_s'] / size * 1e6:.1f} us",
        ))
        for kind, name in (("full", "a full checkpoint"), ("base", "a chain's base")):
            fork, inline = found["bases"][f"{kind} fork"], found["bases"][f"{kind} inline"]
            bases.append((
                f"{size:,}", name, f"{fork['pause_s'] * 1000:.1f} ms",
                f"{inline['pause_s'] * 1000:.0f} ms",
                f"{fork['pause_s'] / inline['pause_s']:.4f}x",
                f"{fork['checkpoint_s'] * 1000:.0f} ms",
                f"{inline['checkpoint_s'] * 1000:.0f} ms",
            ))
    print(table(writes))
    print()
    print(table(commits))
    print()
    print(table(deltas))
    print()
    print(table(large))
    print()
    print(table(bases))


if __name__ == "__main__":
    main()
