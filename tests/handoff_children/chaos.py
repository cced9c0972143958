"""One generation of the line server for the chaos test; SIGUSR2 hands it over.

Prints one JSON event per line on stdout, each with ``pid``, ``ppid`` and ``t``
(``time.monotonic()``, one clock for every process on the machine), so the test
can tell which phase of the handoff a signal hit:

* a cold start or a generation that resumed: ``ready`` (serving, with the port);
* the old process: ``handed_over`` or ``handoff_failed``, then ``exit``;
* a successor: ``started`` (descriptors taken), ``snapshot`` (state received),
  ``restored`` (about to report READY), ``serving`` (confirmed; accepting now),
  or ``failed``.

Besides the line server's requests, ``FDS`` answers with the descriptors this
process should not hold: anything but 0, 1, 2, the listener and TCP connections
(a control channel, a memfd, a pidfd left behind), and ``ZOMBIES`` with the pids of
its children that ended and were not reaped (a successor that failed).

``--delay`` slows the export and the restore down, so that a signal at a random
instant lands in each phase often enough. ``--legacy`` is the negative control:
a successor of before SERVING (it does not announce it, so the old process lets
go at COMMIT, and it exits when the old process dies before COMMIT, as it did),
and an old process that stops at once on SIGTERM, abandoning the handoff.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
import types

from _fdtable import unexpected_fds, zombies  # first, as in chain.py


def load_handoff_layer_only() -> None:
    """Skip ``statemigrate/__init__`` (pydantic and all): see chain.py."""
    spec = importlib.util.find_spec("statemigrate")
    assert spec is not None and spec.submodule_search_locations is not None
    package = types.ModuleType("statemigrate")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["statemigrate"] = package


load_handoff_layer_only()

from lineserver import LineServer, Stopping, decode_state  # noqa: E402

from statemigrate.handoff import (  # noqa: E402
    ControlCallbacks,
    HandoffError,
    HandoffTimeouts,
    Spawn,
    install_signal_trigger,
    receive_handoff,
    send_handoff,
)

TIMEOUTS = HandoffTimeouts(kill_grace=2.0)


def emit(event: str, **fields: object) -> None:
    line = {"event": event, "pid": os.getpid(), "ppid": os.getppid(), "t": time.monotonic()}
    line.update(fields)
    os.write(1, json.dumps(line).encode() + b"\n")  # one write: generations share the pipe


class ChaosServer(LineServer):  # type: ignore[misc]
    def handle(self, line: str) -> str:
        if line == "FDS":
            allowed = {0, 1, 2, self.listener.fileno()}
            return "FDS " + json.dumps(unexpected_fds(allowed))
        if line == "ZOMBIES":
            return "ZOMBIES " + json.dumps(zombies())
        return super().handle(line)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--drain", type=float, default=0.2)
    parser.add_argument("--legacy", action="store_true")
    args = parser.parse_args()

    try:
        inheritance = receive_handoff(expect={"tcp"}, timeouts=TIMEOUTS)
    except HandoffError as exc:  # the old process died before we started
        emit("failed", stage=exc.stage, detail=exc.detail)
        return 1
    if inheritance is None:
        generation, counters = 1, {}
        listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    else:
        emit("started")
        if args.legacy:
            inheritance._confirms = False
        try:
            with inheritance:
                snapshot = inheritance.hello({"counters": [1]})
                emit("snapshot")
                try:
                    previous, counters = decode_state(snapshot)
                finally:
                    snapshot.release()
                time.sleep(args.delay)
                emit("restored")
                inheritance.ready()
        except HandoffError as exc:
            emit("failed", stage=exc.stage, detail=exc.detail)
            return 1
        if args.legacy and inheritance.predecessor_died:
            emit("failed", stage="commit", detail="no COMMIT (as before SERVING)")
            return 1
        generation = previous + 1
        listener = inheritance.listeners["tcp"]
        emit("serving", generation=generation, predecessor_died=inheritance.predecessor_died)
    server = ChaosServer(listener, generation=generation, counters=counters)
    server.start()
    done = threading.Event()
    outcome: dict[str, object] = {}

    def export_state(readable: object) -> bytes:
        data = server.export_state(readable)
        time.sleep(args.delay)
        return data

    def hand_over() -> None:
        argv = [sys.executable, os.path.abspath(__file__), "--delay", str(args.delay)]
        argv += ["--drain", str(args.drain)] + (["--legacy"] if args.legacy else [])
        try:
            send_handoff(
                Spawn(argv),
                listeners={"tcp": listener},
                export_state=export_state,
                control=ControlCallbacks(
                    pause=server.pause, resume=server.resume, stop_accepting=server.stop_accepting
                ),
                timeouts=TIMEOUTS,
            )
        except HandoffError as exc:
            emit("handoff_failed", generation=generation, stage=exc.stage, detail=exc.detail)
            return
        emit("handed_over", generation=generation)
        server.drain(args.drain)
        outcome["handed_over"] = True
        done.set()

    stopping = Stopping(done)

    def stop(signum: int, frame: object) -> None:
        if args.legacy:  # stops at once, whatever a handoff is doing
            emit("exit", generation=generation, signal=signum)
            os._exit(0)
        stopping(signum, None)

    install_signal_trigger(hand_over, hold=() if args.legacy else (signal.SIGTERM, signal.SIGINT))
    signal.signal(signal.SIGTERM, stop)
    emit("ready", generation=generation, port=listener.getsockname()[1])
    while not stopping.wait():
        pass
    if not outcome:
        server.close()
    listener.close()
    emit("exit", generation=generation, **outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
