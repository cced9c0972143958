"""One generation of the chaos test's pre-copy server; SIGUSR2 hands it over.

The line server of chaos.py, its counters held by a ``Service`` in a ``@migratable``
component's ``TrackedDict``: the handoff is ``hand_over(..., precopy="fork")`` on
the old side and ``take_over`` on the new one, so round 0 is exported by a forked
child while this process serves, delta rounds follow, and only the last delta
travels in the pause. Events (one JSON line each on stdout, with ``pid``, ``ppid``
and ``t`` as in chaos.py) tell the phases apart:

* a cold start or a generation that resumed: ``ready`` (serving, with the port);
* round 0's forked child: ``round0_forked`` (exporting) and ``round0_written``;
* the old process: ``delta`` (a delta exported; ``paused`` for the last one),
  ``paused`` (writers held), then ``handed_over`` or ``handoff_failed``, ``exit``;
* a successor: ``started`` (descriptors taken, HELLO next), ``restoring`` and
  ``restored`` for every piece it applies (``piece`` counts from 0; the piece
  restored after the old process's ``paused`` is the last one, READY follows at
  once), ``serving`` (confirmed; accepting now), or ``failed``.

``FDS`` and ``ZOMBIES`` answer as in chaos.py (here a zombie may also be a round-0
child that was not reaped).

With ``--store DIRECTORY`` every generation runs a :class:`Checkpointer` (every
``--every`` seconds) to the TmpfsStore there, which the whole chain shares, and says
``checkpoint_taken`` (with the counters, while the writers are held) before each
commit and ``checkpointed`` (the same counters) once it committed. ``--restore``
starts the first generation from that store (``start_from``): ``restored_from_store``
with the counters it serves, or ``restore_failed``. A clean stop (SIGTERM) takes a
final checkpoint, as the checkpoints recipe does. ``--stale-checkpoints`` is the
deliberately broken variant: every checkpoint commits the bytes of the process's
first one, as a stale checkpoint landing after newer ones would.

``--delay`` slows round 0's export, every delta and every restore down, so that a
signal at a random instant lands in each phase often enough.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from _fdtable import unexpected_fds, zombies  # first, as in chain.py
from ckpt_server import Counters, registry  # the same counters component
from lineserver import LineServer, Stopping

import statemigrate as sm
from statemigrate.handoff import (
    HandoffError,
    HandoffTimeouts,
    Spawn,
    _rounds,
    hand_over,
    install_signal_trigger,
    receive_handoff,
    take_over,
)

TIMEOUTS = HandoffTimeouts(kill_grace=2.0)
# A delta round for any write at all: the chaos test aims signals at them.
_rounds.MIN_FINAL = 0


def emit(event: str, **fields: object) -> None:
    line = {"event": event, "pid": os.getpid(), "ppid": os.getppid(), "t": time.monotonic()}
    line.update(fields)
    os.write(1, json.dumps(line).encode() + b"\n")  # one write: generations share the pipe


class Observed:
    """A pre-copy source that reports (and slows down) round 0 and every delta."""

    def __init__(self, source: Any, *, delay: float, paused: threading.Event) -> None:
        self._source = source
        self._delay = delay
        self._paused = paused

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def full(self) -> Any:
        emit("round0_forked")  # in the forked child: its pid is the one to kill
        time.sleep(self._delay)
        encoded = self._source.full()
        emit("round0_written")
        return encoded

    def delta(self, **options: Any) -> Any:
        time.sleep(self._delay)
        encoded = self._source.delta(**options)
        emit("delta", paused=self._paused.is_set())
        return encoded


class ChaosService(sm.Service):
    """A service whose pre-copy pieces and restores say when they happen."""

    def __init__(self, *, delay: float) -> None:
        super().__init__("chaos", registry=registry)
        self.delay = delay
        self.paused = threading.Event()
        self.pieces = 0

    def precopy_source(self, **options: Any) -> Any:
        source = super().precopy_source(**options)
        return Observed(source, delay=self.delay, paused=self.paused)

    def restore(self, source: Any, **options: Any) -> Any:
        number, self.pieces = self.pieces, self.pieces + 1
        emit("restoring", piece=number)
        time.sleep(self.delay)
        report = super().restore(source, **options)
        emit("restored", piece=number, delta=report.delta)
        return report


class PreCopyServer(LineServer):  # type: ignore[misc]
    """The line server on the component's counters (a restore replaces the dict)."""

    def __init__(self, listener: socket.socket, *, generation: int, component: Counters,
                 service: ChaosService) -> None:
        super().__init__(listener, generation=generation)
        self.component = component
        self.service = service
        self.store = ""  # the directory of this process's checkpoints, if any

    def handle(self, line: str) -> str:
        verb, _, arg = line.partition(" ")
        if verb == "FDS":
            allowed = {0, 1, 2, self.listener.fileno()}
            # This process's own checkpoints: the store's directory, a commit's file.
            own = f":{self.store}" if self.store else None
            found = [fd for fd in unexpected_fds(allowed) if own is None or own not in fd]
            return "FDS " + json.dumps(found)
        if verb == "ZOMBIES":
            return "ZOMBIES " + json.dumps(zombies())
        if verb == "GET":
            with self._lock:
                return f"VAL {self.component.entries.get(arg, 0)} {self.generation}"
        if verb == "INC":
            with self._changed:
                self._changed.wait_for(lambda: not self._paused or self._moved)
                if self._moved:
                    return f"RETRY {self.generation}"
                value = self.component.entries.get(arg, 0) + 1
                self.component.entries[arg] = value
                return f"OK {value} {self.generation}"
        return str(super().handle(line))

    def pause(self) -> None:
        super().pause()
        self.service.paused.set()
        emit("paused")

    def resume(self) -> None:
        self.service.paused.clear()
        super().resume()


class Holding:
    """The checkpoints' hold of the writers: the server's lock, and a record of the
    counters the snapshot holds, said while they are still held."""

    def __init__(self, server: PreCopyServer) -> None:
        self.server = server
        self.taken: dict[str, int] = {}

    def __enter__(self) -> None:
        self.server._changed.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self.taken = dict(self.server.component.entries)
            emit("checkpoint_taken", values=self.taken)
        finally:
            self.server._changed.__exit__(*exc)


class Announcing:
    """The chain's store: says ``checkpointed`` once a commit is done."""

    def __init__(self, store: sm.TmpfsStore, holding: Holding, *, stale: bool) -> None:
        self.store = store
        self.holding = holding
        self.stale = stale
        self.first: bytes | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def commit(self, data: Any) -> Any:
        if self.stale:
            if self.first is None:
                self.first = b"".join(bytes(part) for part in data)
            data = self.first
        ref = self.store.commit(data)
        emit("checkpointed", values=self.holding.taken)
        return ref


def checkpointer_of(server: PreCopyServer, args: argparse.Namespace) -> sm.Checkpointer:
    holding = Holding(server)
    store = Announcing(sm.TmpfsStore(args.store), holding, stale=args.stale_checkpoints)
    # Exported in this process: the chaos test counts every process of its session as
    # a generation, and every descriptor beyond the listener as a leak, which a
    # checkpoint's forked child and its memfd would be for a moment.
    return sm.Checkpointer(
        server.service, store, every=args.every, quiesce=holding, export="inline"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--drain", type=float, default=0.2)
    parser.add_argument("--generation", type=int, default=1)
    parser.add_argument("--store", default="")
    parser.add_argument("--every", type=float, default=0.1)
    parser.add_argument("--restore", action="store_true")
    parser.add_argument("--stale-checkpoints", action="store_true")
    args = parser.parse_args()

    service = ChaosService(delay=args.delay)
    component = Counters()
    service.register(component)
    try:
        inheritance = receive_handoff(expect={"tcp"}, timeouts=TIMEOUTS)
    except HandoffError as exc:  # the old process died before we started
        emit("failed", stage=exc.stage, detail=exc.detail)
        return 1
    generation = args.generation
    if inheritance is None:
        if args.restore:
            try:
                with sm.TmpfsStore(args.store) as store:
                    restored = service.start_from(store)
            except sm.StateMigrateError as exc:
                emit("restore_failed", error=type(exc).__name__, detail=str(exc))
                return 1
            emit("restored_from_store", values=dict(component.entries),
                 snapshot=restored.snapshot_id if restored is not None else None)
        else:
            service.start_cold("the first generation")
        listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    else:
        emit("started")
        try:
            with inheritance:
                report = take_over(service, inheritance)
        except sm.StateMigrateError as exc:
            emit("failed", error=type(exc).__name__, detail=str(exc))
            return 1
        listener = inheritance.listeners["tcp"]
        emit("serving", generation=generation, predecessor_died=report.predecessor_died,
             rounds=[r.kind for r in report.rounds])
    server = PreCopyServer(listener, generation=generation, component=component, service=service)
    server.start()
    checkpointer = None
    if args.store:
        server.store = os.path.realpath(args.store)
        checkpointer = checkpointer_of(server, args)
    if checkpointer is not None:
        checkpointer.start()
    done = threading.Event()
    outcome: dict[str, object] = {}

    def hand_over_now() -> None:
        argv = [sys.executable, os.path.abspath(__file__), "--delay", str(args.delay)]
        argv += ["--drain", str(args.drain), "--generation", str(generation + 1)]
        argv += ["--store", args.store, "--every", str(args.every)] if args.store else []
        argv += ["--stale-checkpoints"] if args.stale_checkpoints else []
        try:
            report = hand_over(service, Spawn(argv), listeners={"tcp": listener}, control=server,
                               timeouts=TIMEOUTS, precopy="fork")
        except HandoffError as exc:
            emit("handoff_failed", generation=generation, stage=exc.stage, detail=exc.detail)
            return
        emit("handed_over", generation=generation, final=report.final,
             rounds=[r.kind for r in report.rounds])
        server.drain(args.drain)
        outcome["handed_over"] = True
        done.set()

    stopping = Stopping(done)
    install_signal_trigger(hand_over_now, hold=(signal.SIGTERM, signal.SIGINT))
    signal.signal(signal.SIGTERM, stopping)
    emit("ready", generation=generation, port=listener.getsockname()[1])
    while not stopping.wait():
        pass
    if not outcome:
        server.close()
    if checkpointer is not None:
        checkpointer.stop()  # no final checkpoint once the state is handed over
    listener.close()
    emit("exit", generation=generation, **outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
