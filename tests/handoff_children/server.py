"""One generation of the line server: cold start or successor; SIGUSR2 hands it over.

Prints one JSON event per line on stdout: ``ready`` (serving), ``handoff_failed``,
``exit`` (with the drain figures). ``--mode rebind`` is the deliberately wrong
variant of the load test: the old generation closes its listener and the successor
binds the port again, which is what the real handoff must never do.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading

from lineserver import LineServer, Stopping, decode_state

from statemigrate.handoff import (
    ControlCallbacks,
    HandoffError,
    HandoffTimeouts,
    Spawn,
    install_signal_trigger,
    receive_handoff,
    send_handoff,
)


def emit(**event: object) -> None:
    # One write(2) per line: every generation shares the pipe, and a short write to a
    # pipe is atomic, where print() may split the text and the newline.
    os.write(1, json.dumps(event).encode() + b"\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["handoff", "rebind"], default="handoff")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--ready-timeout", type=float, default=30.0)
    args = parser.parse_args()

    expect = {"tcp"} if args.mode == "handoff" else set()
    inheritance = receive_handoff(expect=expect)
    if inheritance is None:
        generation, counters = 1, {}
    else:
        with inheritance:
            snapshot = inheritance.hello({"counters": [1]})
            try:
                previous, counters = decode_state(snapshot)
            finally:
                snapshot.release()
            inheritance.ready()
        generation = previous + 1
    if inheritance is not None and args.mode == "handoff":
        listener = inheritance.listeners["tcp"]
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", args.port))
        listener.listen(1024)
    port = listener.getsockname()[1]

    server = LineServer(listener, generation=generation, counters=counters)
    server.start()
    done = threading.Event()
    outcome: dict[str, object] = {}

    def hand_over() -> None:
        argv = [sys.executable, os.path.abspath(__file__), "--mode", args.mode]
        argv += ["--port", str(port), "--drain", str(args.drain)]
        pause = server.pause
        listeners = {"tcp": listener}
        if args.mode == "rebind":

            def pause() -> None:
                server.pause()
                server.stop_accepting()
                listener.close()

            listeners = {}
        try:
            report = send_handoff(
                Spawn(argv),
                listeners=listeners,
                export_state=server.export_state,
                control=ControlCallbacks(
                    pause=pause, resume=server.resume, stop_accepting=server.stop_accepting
                ),
                timeouts=HandoffTimeouts(ready=args.ready_timeout),
            )
        except HandoffError as exc:
            emit(event="handoff_failed", generation=generation, stage=exc.stage, detail=exc.detail)
            return
        drained = server.drain(args.drain)
        outcome.update(
            successor=report.successor_pid,
            timings=dict(report.timings),
            finished=drained.finished,
            cut=drained.cut,
        )
        done.set()

    install_signal_trigger(hand_over)
    stopping = Stopping(done)
    signal.signal(signal.SIGTERM, stopping)
    emit(event="ready", generation=generation, pid=os.getpid(), port=port)
    while not stopping.wait():
        pass
    if not outcome:  # stopped by SIGTERM rather than by a handoff
        server.close()
    listener.close()
    emit(event="exit", generation=generation, pid=os.getpid(), **outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
