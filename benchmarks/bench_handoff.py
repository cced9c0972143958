"""Pause of a hot-restart handoff of W1 (1,000,000 entries) against a plain pickle restart.

Handoff: the old process holds W1 in a registered component and calls
``statemigrate.handoff.hand_over``; the successor (a fresh interpreter) inherits the
listener, restores the snapshot and reports ready. The *pause* is the time writers are
held: from ``pause()`` to the moment the old process learns that the successor owns
the state. The successor's start-up and imports happen before that, while the old
process still serves, so they are shown but not counted in the pause.

Plain restart (the baseline): the old process stops, pickles W1 to /dev/shm (temp
file, fsync, rename) and exits; the supervisor starts a new interpreter that loads
the pickle and is ready to serve. Its pause runs from "old process stops" to "new
process ready", measured with CLOCK_MONOTONIC, which is shared by every process.

Also shown: the pause of the demo's state (20,000 reference-cache entries, release 1
handing over to release 3, which upgrades it on restore).

With ``--json``, a pre-copy handoff for each of ``--sizes`` (W1 held in a
``TrackedDict``) under a steady write load (``--rate``, 2,500 writes/s by default)
in the old process: round 0 exported by a forked child while the load goes on,
deltas, and the last delta in the pause. One JSON object per line: ``entries``,
``write_rate`` (writes/s the old process completed from the start of the handoff
to the pause), ``pause_ms``, ``rounds`` (pieces sent while serving: round 0 and
the deltas), ``delta_bytes`` (the last delta, sent in the pause), ``precopy_ms``,
``pickle_restart_ms`` (the plain restart above, same size), and more: ``fork_ms``
(how long the fork held the old process), the request latency (``latency_ms``:
p50/p99/max of the load's writes in steady state, during the pre-copy rounds and
during round 0 alone, from each write's scheduled time, so a stall counts in full).

    .venv/bin/python benchmarks/bench_handoff.py            # full size
    .venv/bin/python benchmarks/bench_handoff.py --quick    # 100,000 entries
    .venv/bin/python benchmarks/bench_handoff.py --json --sizes 10000,100000,1000000,3000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import SHM, W1State, build_w1, pickle_commit, pickle_load, run_child, table

import statemigrate as sm
from statemigrate.handoff import (
    ControlCallbacks,
    HandoffTimeouts,
    Spawn,
    hand_over,
    receive_handoff,
    take_over,
)

SCRIPT = os.path.abspath(__file__)
DEMO_ENTRIES = 20_000
SIZES = (10_000, 100_000, 1_000_000, 3_000_000)
#: Generous: the successor restores millions of entries while the old one serves.
LONG = HandoffTimeouts(hello=120.0, snapshot=900.0, precopy=900.0, ready=900.0)


REGISTRY = sm.Registry()
REGISTRY.add_schema("w1", 1, W1State)


@REGISTRY.migratable("w1", version=1)
class W1Cache:
    def __init__(self) -> None:
        # Tracked, so a pre-copy handoff can send what changed since round 0.
        self.entries: sm.TrackedDict[str, Any] = sm.TrackedDict()


def _service(kind: str, *, filled: int = 0) -> sm.Service:
    """The benchmark's service: W1, or the demo's cache at release 1 or 3."""
    if kind == "w1":
        service = sm.Service("bench", registry=REGISTRY)
        cache = W1Cache()
        if filled:
            cache.entries.update(build_w1(filled))
        service.register(cache)
        return service
    from statemigrate.demo._load import fill_value
    from statemigrate.demo._server import build_service

    service = build_service(1 if kind == "kv1" else 3)
    table_ = service.components[0].obj
    for i in range(filled):
        table_.set(f"fill:{i}", fill_value(i))  # type: ignore[attr-defined]
    return service


# --- children ------------------------------------------------------------------------------


def child_handoff(kind: str, entries: int) -> dict[str, Any]:
    """Old side: hold the state, hand it over, report the pause."""
    service = _service(kind, filled=entries)
    marks: dict[str, float] = {}
    successor_kind = "kv3" if kind == "kv1" else kind
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as listener:
        report = hand_over(
            service,
            Spawn([sys.executable, SCRIPT, "--successor", successor_kind]),
            listeners={"bench": listener},
            control=ControlCallbacks(
                pause=lambda: marks.setdefault("paused", time.perf_counter()),
                stop_accepting=lambda: marks.setdefault("moved", time.perf_counter()),
            ),
            timeouts=HandoffTimeouts(ready=600.0),
        )
    assert report.successor_pid is not None
    _pid, status = os.waitpid(report.successor_pid, 0)
    return {
        "pause": marks["moved"] - marks["paused"],
        "timings": dict(report.timings),
        "snapshot_size": report.snapshot_size,
        "successor_status": os.waitstatus_to_exitcode(status),
    }


def child_successor(kind: str) -> int:
    inheritance = receive_handoff(expect={"bench"}, timeouts=LONG)
    if inheritance is None:
        print("not started by a handoff", file=sys.stderr)
        return 2
    service = _service(kind)
    with inheritance:
        take_over(service, inheritance)
    for sock in inheritance.listeners.values():
        sock.close()
    return 0


def child_restart_old(entries: int, directory: str) -> dict[str, Any]:
    """Old side of a plain restart: stop, pickle, exit (the parent starts the new one)."""
    state = build_w1(entries)
    stopped = time.monotonic()
    size = pickle_commit(state, directory)
    return {"stopped": stopped, "dump": time.monotonic() - stopped, "size": size}


def child_restart_new(directory: str, stopped: float) -> dict[str, Any]:
    """New side of a plain restart: load the pickle; ready to serve."""
    began = time.monotonic()
    state = pickle_load(directory)
    ready = time.monotonic()
    assert isinstance(state, dict)
    return {"pause": ready - stopped, "load": ready - began, "entries": len(state)}


class Load:
    """A steady stream of writes to W1 at ``rate`` per second, held while paused.

    Open loop: each write has a scheduled time, and its latency runs from then to
    its completion, so a write that waited on a stall (the fork, the GIL, the
    pause) counts all of it. The writes stop once the successor owns the state.
    """

    def __init__(self, entries: Any, rate: float, size: int) -> None:
        self.entries = entries
        self.rate = rate
        self.size = size
        self.gate = threading.Condition()
        self.paused = False
        self.done = False
        # (scheduled, finished) per write, on the time.monotonic() clock.
        self.samples: list[tuple[float, float]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rnd = random.Random(7)
        interval = 1.0 / self.rate
        due = time.monotonic()
        n = 0
        while True:
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.gate:
                self.gate.wait_for(lambda: not self.paused or self.done)
                if self.done:
                    return
                key = f"user:{rnd.randrange(self.size + self.size // 10 + 1)}"
                self.entries[key] = {
                    "id": n,
                    "name": "written",
                    "score": float(n),
                    "tags": ["pro", "eu"],
                    "updated": 1_800_000_000 + n,
                }
            self.samples.append((due, time.monotonic()))
            n += 1
            due += interval

    def pause(self) -> None:
        with self.gate:
            self.paused = True

    def stop(self) -> None:
        with self.gate:
            self.done = True
            self.gate.notify_all()


def _percentiles(samples: list[tuple[float, float]], begin: float, end: float) -> dict[str, Any]:
    latencies = sorted(done - due for due, done in samples if begin <= due < end)
    if not latencies:
        return {"requests": 0}

    def at(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    return {
        "requests": len(latencies),
        "p50": at(0.50),
        "p99": at(0.99),
        "max": round(latencies[-1] * 1000, 2),
    }


def child_precopy(entries: int, rate: float, mode: str) -> dict[str, Any]:
    """Old side of a pre-copy handoff of W1 under a steady write load."""
    service = _service("w1", filled=entries)
    cache = service.components[0].obj
    load = Load(cache.entries, rate, entries)  # type: ignore[attr-defined]
    marks: dict[str, float] = {}

    def pause() -> None:
        marks["paused"] = time.monotonic()
        load.pause()

    def moved() -> None:
        marks.setdefault("moved", time.monotonic())
        load.stop()

    load.thread.start()
    time.sleep(2.0)  # steady state first
    began = time.monotonic()
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as listener:
        report = hand_over(
            service,
            Spawn([sys.executable, SCRIPT, "--successor", "w1"]),
            listeners={"bench": listener},
            control=ControlCallbacks(pause=pause, stop_accepting=moved),
            timeouts=LONG,
            precopy=False if mode == "off" else mode,  # type: ignore[arg-type]
        )
    load.stop()
    load.thread.join()
    assert report.successor_pid is not None
    _pid, status = os.waitpid(report.successor_pid, 0)
    paused = marks["paused"]
    precopy_began = paused - report.timings.get("precopy", 0.0) - report.timings.get("export", 0.0)
    written = sum(1 for due, done in load.samples if began <= done < paused)
    # Round 0: from the fork until the successor applied the full snapshot.
    round0_ended = precopy_began + (report.rounds[0].seconds if report.rounds else 0.0)
    last = report.rounds[-1] if report.rounds else None
    return {
        "entries": entries,
        "mode": mode,
        "write_rate": round(written / (paused - began), 1),
        "pause_ms": round((marks["moved"] - paused) * 1000, 2),
        "rounds": len(report.rounds),
        "delta_bytes": report.snapshot_size if report.final == "delta" else 0,
        "precopy_ms": round(report.precopy_seconds * 1000, 1),
        "final": report.final,
        "fallback": report.fallback,
        "fork_ms": round(report.fork_seconds * 1000, 2),
        "round0_bytes": report.rounds[0].size if report.rounds else 0,
        "deltas": [
            {"bytes": r.size, "records": r.records, "ms": round(r.seconds * 1000, 1)}
            for r in report.rounds[1:]
        ],
        "last_round_records": last.records if last is not None else 0,
        "latency_ms": {
            "steady": _percentiles(load.samples, began - 1.5, began),
            "precopy": _percentiles(load.samples, precopy_began, paused),
            "round0": _percentiles(load.samples, precopy_began, round0_ended),
        },
        "timings_ms": {k: round(v * 1000, 1) for k, v in report.timings.items()},
        "successor_status": os.waitstatus_to_exitcode(status),
    }


def _pickle_restart(entries: int) -> float:
    directory = tempfile.mkdtemp(prefix="bench-handoff-", dir=SHM)
    try:
        old = run_child(SCRIPT, "restart-old", str(entries), directory)
        new = run_child(SCRIPT, "restart-new", directory, repr(old["stopped"]))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return float(new["pause"])


def main_json(sizes: list[int], rate: float, mode: str, pickle: bool) -> int:
    for entries in sizes:
        result = run_child(SCRIPT, "precopy", str(entries), repr(rate), mode)
        result["pickle_restart_ms"] = round(_pickle_restart(entries) * 1000, 1) if pickle else None
        print(json.dumps(result), flush=True)
    return 0


# --- the parent ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 entries instead of 1M")
    parser.add_argument(
        "--json", action="store_true", help="pre-copy under load, one JSON line per size"
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(size) for size in SIZES),
        help="entries per run, comma-separated (with --json)",
    )
    parser.add_argument("--rate", type=float, default=2500.0, help="writes/s during the handoff")
    parser.add_argument(
        "--precopy", choices=("fork", "inline", "off"), default="fork", help="with --json"
    )
    parser.add_argument(
        "--no-pickle", action="store_true", help="with --json: skip the plain restart"
    )
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--successor")
    args = parser.parse_args()
    if args.successor:
        return child_successor(args.successor)
    if args.child:
        kind, *rest = args.child
        if kind == "precopy":
            result = child_precopy(int(rest[0]), float(rest[1]), rest[2])
        elif kind == "handoff":
            result = child_handoff(rest[0], int(rest[1]))
        elif kind == "restart-old":
            result = child_restart_old(int(rest[0]), rest[1])
        else:
            result = child_restart_new(rest[0], float(rest[1]))
        print(json.dumps(result))
        return 0
    if args.json:
        sizes = [int(size.replace("_", "")) for size in args.sizes.split(",") if size]
        return main_json(sizes, args.rate, args.precopy, not args.no_pickle)

    entries = 100_000 if args.quick else 1_000_000
    print(f"W1: {entries:,} entries; each measurement in fresh processes", flush=True)
    handoff = run_child(SCRIPT, "handoff", "w1", str(entries))
    directory = tempfile.mkdtemp(prefix="bench-handoff-", dir=SHM)
    try:
        old = run_child(SCRIPT, "restart-old", str(entries), directory)
        new = run_child(SCRIPT, "restart-new", directory, repr(old["stopped"]))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    demo = run_child(SCRIPT, "handoff", "kv1", str(DEMO_ENTRIES))

    t = handoff["timings"]
    rows = [
        ("", "pause (ms)", "detail"),
        (
            "handoff",
            f"{handoff['pause'] * 1000:.1f}",
            f"export {t['export'] * 1000:.0f} ms, transfer {t['transfer'] * 1000:.0f} ms,"
            f" successor restore {t['ready'] * 1000:.0f} ms;"
            f" snapshot {handoff['snapshot_size'] / 2**20:.1f} MiB",
        ),
        (
            "plain restart (pickle)",
            f"{new['pause'] * 1000:.1f}",
            f"dump {old['dump'] * 1000:.0f} ms,"
            f" exit + start + load {(new['pause'] - old['dump']) * 1000:.0f} ms"
            f" (load {new['load'] * 1000:.0f} ms); pickle {old['size'] / 2**20:.1f} MiB",
        ),
    ]
    print(table(rows))
    print(f"ratio: handoff pause / restart pause = {handoff['pause'] / new['pause']:.2f}x")
    print(
        f"not in the pause: successor start-up and imports (spawn + handshake)"
        f" {(t['spawn'] + t['handshake']) * 1000:.0f} ms, while the old process serves"
    )
    print(
        f"demo state ({DEMO_ENTRIES:,} entries, release 1 -> 3):"
        f" pause {demo['pause'] * 1000:.1f} ms, snapshot {demo['snapshot_size'] / 1024:.0f} KiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
