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

    .venv/bin/python benchmarks/bench_handoff.py            # full size
    .venv/bin/python benchmarks/bench_handoff.py --quick    # 100,000 entries
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from typing import Any

from typing_extensions import TypedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import SHM, build_w1, pickle_commit, pickle_load, run_child, table

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


class EntryW1(TypedDict):
    id: int
    name: str
    score: float
    tags: list[str]
    updated: int


class StateW1(TypedDict):
    entries: dict[str, EntryW1]


REGISTRY = sm.Registry()
REGISTRY.add_schema("w1", 1, StateW1)


@REGISTRY.migratable("w1", version=1)
class W1Cache:
    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}


def _service(kind: str, *, filled: int = 0) -> sm.Service:
    """The benchmark's service: W1, or the demo's cache at release 1 or 3."""
    if kind == "w1":
        service = sm.Service("bench", registry=REGISTRY)
        cache = W1Cache()
        cache.entries = build_w1(filled) if filled else {}
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
    inheritance = receive_handoff(expect={"bench"}, timeouts=HandoffTimeouts(snapshot=600.0))
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


# --- the parent ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 entries instead of 1M")
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--successor")
    args = parser.parse_args()
    if args.successor:
        return child_successor(args.successor)
    if args.child:
        kind, *rest = args.child
        if kind == "handoff":
            result = child_handoff(rest[0], int(rest[1]))
        elif kind == "restart-old":
            result = child_restart_old(int(rest[0]), rest[1])
        else:
            result = child_restart_new(rest[0], float(rest[1]))
        print(json.dumps(result))
        return 0

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
