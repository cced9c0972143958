"""One generation of a service that checkpoints while it is handed over.

    ckpt_server.py DIRECTORY [--generation N] [--every SECONDS] [--fail-restore]

Counters in a ``@migratable`` component (a ``TrackedDict``), changed under a lock
that a :class:`Checkpointer` thread takes to commit them every ``--every`` seconds
to the TmpfsStore in DIRECTORY/store. A cold start is generation 1; a successor
takes the state over (its restore raises with ``--fail-restore``). Each generation
answers one command per connection on the Unix socket DIRECTORY/gN.sock:

    INC name      -> OK value | RETRY (paused by a handoff, or handed over)
    CHECKPOINT    -> a checkpoint now (forced): COMMITTED | SKIPPED
    COMMITTED     -> the counters of this process's last committed checkpoint (JSON)
    HOLD [ms]     -> the next checkpoint's store commit waits, once begun, until a
                     handoff holds the checkpoints back or pauses the writers (and
                     then ``ms`` milliseconds more, as a slow store would)
    HANDOFF [fail|hasty]
                  -> hand over to generation N+1 (whose restore fails with ``fail``;
                     with ``hasty``, the successor waits 0.5 s for the snapshot, and
                     so does the handoff for a checkpoint's commit under way):
                     HANDED_OVER | FAILED stage
    EXIT          -> stop the checkpointer (a final checkpoint, as a clean stop takes)
                     and exit: FINAL | NONE

Events on stdout, one JSON line each with ``generation`` and ``pid``: ``ready``,
``commit_started`` and ``commit_done`` (a held commit), ``paused``, ``failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate.handoff import (
    ControlCallbacks,
    HandoffError,
    HandoffTimeouts,
    Spawn,
    hand_over,
    receive_handoff,
    take_over,
)


class CountersV1(TypedDict):
    entries: dict[str, int]


registry = sm.Registry()
registry.add_schema("counters", 1, CountersV1)


@registry.migratable("counters", version=1)
class Counters:
    """Counters by name; a ``TrackedDict``, so that pre-copy sends deltas."""

    def __init__(self) -> None:
        self.entries: sm.TrackedDict[str, int] = sm.TrackedDict()


def service_of(counters: Counters, *, fail_restore: bool = False) -> sm.Service:
    service = FailingService("ckpt", registry=registry) if fail_restore else sm.Service(
        "ckpt", registry=registry
    )
    service.register(counters)
    return service


class FailingService(sm.Service):
    """A successor whose restore fails: the handoff fails, the old process keeps the state."""

    def restore(self, source: Any, **options: Any) -> Any:
        raise ValueError("this successor refuses every restore")


class Generation:
    def __init__(self, args: argparse.Namespace, service: sm.Service, counters: Counters) -> None:
        self.args = args
        self.generation: int = args.generation
        self.service = service
        self.counters = counters
        self.lock = threading.Lock()  # every change takes it; so do the checkpoints
        self.paused = False
        self.moved = False
        self.hold = False
        self.hold_more = 0.0
        self.committed: dict[str, int] | None = None
        self.store = sm.TmpfsStore(os.path.join(args.directory, "store"))
        self.checkpointer = sm.Checkpointer(
            service, Announcing(self.store, self), every=args.every, quiesce=self.lock
        )
        self.done = threading.Event()

    def emit(self, event: str, **fields: object) -> None:
        line = {"event": event, "generation": self.generation, "pid": os.getpid(), **fields}
        os.write(1, json.dumps(line).encode() + b"\n")

    # --- the handoff's hooks --------------------------------------------------------

    def pause(self) -> None:
        with self.lock:
            self.paused = True
        self.emit("paused")

    def resume(self) -> None:
        with self.lock:
            self.paused = False

    def stop_accepting(self) -> None:
        with self.lock:
            self.moved = True

    def held_back(self) -> bool:
        """Whether a handoff holds this service's checkpoints back (or its writers)."""
        gate = getattr(self.service, "_checkpoints", None)  # absent before it existed
        return self.paused or (gate is not None and not gate.open)

    # --- commands -------------------------------------------------------------------

    def answer(self, line: str) -> str:
        verb, _, arg = line.partition(" ")
        if verb == "INC":
            with self.lock:
                if self.paused or self.moved:
                    return "RETRY"
                value = self.counters.entries.get(arg, 0) + 1
                self.counters.entries[arg] = value
                return f"OK {value}"
        if verb == "CHECKPOINT":
            report = self.checkpointer.checkpoint_now(force=True)
            return "SKIPPED" if report.skipped else "COMMITTED"
        if verb == "COMMITTED":
            return json.dumps(self.committed)
        if verb == "HOLD":
            self.hold = True
            self.hold_more = float(arg or 0) / 1000
            return "HOLDING"
        if verb == "HANDOFF":
            return self.hand_over(fail=arg == "fail", hasty=arg == "hasty")
        if verb == "EXIT":
            final = self.checkpointer.stop()
            self.done.set()
            return "NONE" if final is None or final.skipped else "FINAL"
        return f"UNKNOWN {verb}"

    def hand_over(self, *, fail: bool, hasty: bool) -> str:
        argv = [sys.executable, os.path.abspath(__file__), self.args.directory]
        argv += ["--generation", str(self.generation + 1), "--every", str(self.args.every)]
        argv += ["--fail-restore"] if fail else []
        control = ControlCallbacks(
            pause=self.pause, resume=self.resume, stop_accepting=self.stop_accepting
        )
        try:
            timeouts = HandoffTimeouts(snapshot=0.5) if hasty else HandoffTimeouts()
            report = hand_over(
                self.service, Spawn(argv), listeners={}, control=control, timeouts=timeouts
            )
        except HandoffError as exc:
            return f"FAILED {exc.stage}"
        self.emit("handed_over", at=time.monotonic(), pause=report.pause_seconds)
        return "HANDED_OVER"

    def serve(self) -> None:
        path = os.path.join(self.args.directory, f"g{self.generation}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(16)
        listener.settimeout(0.05)
        self.checkpointer.start()
        self.emit("ready")
        while not self.done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.converse, args=(conn,), daemon=True).start()
        listener.close()

    def converse(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rw") as stream:
            line = stream.readline().strip()
            stream.write(self.answer(line) + "\n")
            stream.flush()


class Announcing:
    """The TmpfsStore, remembering what each commit held; the commit after ``HOLD``
    says when it begins and ends, and waits in between until a handoff holds the
    checkpoints back (or pauses the writers)."""

    def __init__(self, store: sm.TmpfsStore, owner: Generation) -> None:
        self._store = store
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def commit(self, data: Any) -> Any:
        owner = self._owner
        held, owner.hold = owner.hold, False
        if held:
            owner.emit("commit_started")
            while not owner.held_back():
                time.sleep(0.005)
            time.sleep(owner.hold_more)
        ref = self._store.commit(data)
        owner.committed = _entries(self._store)
        if held:
            owner.emit("commit_done", at=time.monotonic())
        return ref


def _entries(store: sm.TmpfsStore) -> dict[str, int]:
    """The counters of the store's latest snapshot."""
    counters = Counters()
    service_of(counters).start_from(store)
    return dict(counters.entries)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--generation", type=int, default=1)
    parser.add_argument("--every", type=float, default=0.05)
    parser.add_argument("--fail-restore", action="store_true")
    args = parser.parse_args()

    counters = Counters()
    service = service_of(counters, fail_restore=args.fail_restore)
    inheritance = receive_handoff(expect=set())
    if inheritance is None:
        service.start_cold("the first generation")
    else:
        try:
            with inheritance:
                take_over(service, inheritance)
        except Exception as exc:  # the --fail-restore successor's ValueError among them
            line = {"event": "failed", "generation": args.generation, "pid": os.getpid(),
                    "detail": str(exc)}
            os.write(1, json.dumps(line).encode() + b"\n")
            return 1
    Generation(args, service, counters).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
