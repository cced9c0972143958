"""A line server over the reference cache whose handoffs put the successor on trial.

Usage: trial_server.py --release R --dir DIR [--upgrade-to R2] [--permanent-after S]
       [--healthy-file PATH] [--checkpoints DIR] [--release-file PATH]

Requests, one a line: ``SET key value`` -> ``OK``, ``GET key`` -> ``VAL value`` or
``NONE``, ``INFO`` -> a JSON object (release, pid), ``CHECKPOINT`` -> ``OK`` once a
checkpoint is committed to ``--checkpoints``, ``CHAIN`` -> ``OK`` once an incremental
checkpoint is (its base the first time, a delta after). Writes held by a handoff's pause are
answered ``RETRY`` once the state moved.

A cold start restores through ``start_generation`` (the permanent state after a
crash during a trial); a successor takes over. ``SIGUSR2`` hands over to
``--upgrade-to`` and begins a trial; the watcher reverts through a hot handoff to the
permanent generation's argv. ``--healthy-file``: the health check passes while that
file exists. ``--refuse-file`` (not passed on to the release it upgrades to): a
successor started with it fails its take-over while that file exists.
``--release-file`` (not passed on either): the release is the one the file names,
``--release`` is ignored, as a deployment whose command line reads it. Events, one
JSON line each on stdout: ``ready``, ``handed_over``, ``handoff_failed``, ``exit``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence

from lineserver import Stopping

from statemigrate import Checkpointer, Service
from statemigrate.handoff import (
    HandoffError,
    HandoffReport,
    Spawn,
    begin_trial,
    hand_over,
    install_signal_trigger,
    receive_handoff,
    start_generation,
    take_over,
    watch_trial,
)
from statemigrate.reference import KVCacheV1, KVCacheV3, build_registry
from statemigrate.stores import TmpfsStore


def emit(**event: object) -> None:
    os.write(1, json.dumps(event).encode() + b"\n")  # one write: generations share stdout


class Server:
    def __init__(self, listener: socket.socket, service: Service, release: int) -> None:
        self.listener = listener
        self.service = service
        self.release = release
        self.cache: KVCacheV1 | KVCacheV3 = service.components[0].obj  # type: ignore[assignment]
        self.gate = threading.Condition()
        self.paused = False
        self.moved = False
        self.accepting = threading.Event()
        self.acceptor: threading.Thread | None = None
        self.checkpoints: TmpfsStore | None = None
        self.chain: Checkpointer | None = None

    def start(self) -> None:
        self.listener.settimeout(0.05)  # the blocking flag is shared with the other generation
        self.accepting.set()
        self.acceptor = threading.Thread(target=self.accept_loop, daemon=True)
        self.acceptor.start()

    def accept_loop(self) -> None:
        while self.accepting.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30.0)
            pending = b""
            try:
                while chunk := conn.recv(4096):
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        conn.sendall(self.handle(line.decode()).encode() + b"\n")
            except OSError:
                pass

    def handle(self, line: str) -> str:
        verb, _, rest = line.partition(" ")
        if verb == "INFO":
            return json.dumps({"release": self.release, "pid": os.getpid()})
        with self.gate:
            self.gate.wait_for(lambda: not self.paused or self.moved)
            if self.moved:
                return "RETRY"
            if verb == "SET":
                key, _, value = rest.partition(" ")
                self.cache.set(key, value)
                return "OK"
            if verb == "GET":
                found = self.cache.get(rest)
                return "NONE" if found is None else f"VAL {found}"
            if verb == "CHECKPOINT" and self.checkpoints is not None:
                self.service.commit(self.checkpoints)
                return "OK"
            if verb == "CHAIN" and self.checkpoints is not None:
                # An incremental checkpoint: the base the first time, a delta after.
                if self.chain is None:
                    self.chain = Checkpointer(
                        self.service, self.checkpoints, every=3600.0, incremental=True,
                        quiesce=self.gate,
                    )
                report = self.chain.checkpoint_now(force=True)
                return "OK" if not report.skipped else f"ERR {report.reason}"
        return f"ERR {verb}"

    def pause(self) -> None:
        with self.gate:
            self.paused = True

    def resume(self) -> None:
        with self.gate:
            self.paused = False
            self.gate.notify_all()

    def stop_accepting(self) -> None:
        self.accepting.clear()
        if self.acceptor is not None:
            self.acceptor.join(timeout=10.0)
        with self.gate:
            self.moved = True
            self.gate.notify_all()


def build_service(release: int) -> Service:
    service = Service("trial-cache", code_version=f"release-{release}", registry=build_registry())
    service.register(KVCacheV3() if release == 3 else KVCacheV1())
    return service


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--release", type=int, choices=(1, 3), required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--upgrade-to", type=int, choices=(1, 3), default=3)
    parser.add_argument("--permanent-after", type=float, default=None)
    parser.add_argument("--healthy-file", default=None)
    parser.add_argument("--checkpoints", default=None)
    parser.add_argument("--refuse-file", default=None)
    parser.add_argument("--release-file", default=None)
    args = parser.parse_args()
    if args.release_file is not None:
        with open(args.release_file) as chosen:
            args.release = int(chosen.read())

    own_argv = [sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    inheritance = receive_handoff(expect={"tcp"})
    service = build_service(args.release)
    checkpoints = TmpfsStore(args.checkpoints) if args.checkpoints else None
    start: dict[str, object] = {}
    if inheritance is None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        began = start_generation(args.dir, service, checkpoints=checkpoints)
        start = {"after_crash": began.after_crash, "source": began.source}
    else:
        with inheritance:
            if args.refuse_file is not None and os.path.exists(args.refuse_file):
                raise SystemExit(f"refusing to take over: {args.refuse_file} exists")
            take_over(service, inheritance)
        listener = inheritance.listeners["tcp"]
        start = {"source": "handoff"}
    server = Server(listener, service, args.release)
    server.checkpoints = checkpoints
    server.start()
    done = threading.Event()

    def hand_to(argv: Sequence[str], *, allow_lossy: bool) -> HandoffReport:
        report = hand_over(
            service, Spawn(list(argv)), listeners={"tcp": listener}, control=server,
            allow_lossy=allow_lossy,
        )
        emit(event="handed_over", pid=os.getpid(), successor=report.successor_pid)
        return report

    def upgrade() -> None:
        argv = [sys.executable, os.path.abspath(__file__), "--release", str(args.upgrade_to)]
        argv += ["--dir", args.dir, "--upgrade-to", str(args.release)]
        for option, value in (
            ("--healthy-file", args.healthy_file), ("--checkpoints", args.checkpoints),
        ):
            if value is not None:
                argv += [option, value]
        try:
            report = hand_to(argv, allow_lossy=False)
        except HandoffError as exc:
            emit(event="handoff_failed", pid=os.getpid(), detail=str(exc))
            return
        begin_trial(args.dir, service, report, argv=own_argv,
                    permanent_after=args.permanent_after)
        done.set()

    def revert(argv: tuple[str, ...]) -> HandoffReport:
        try:
            return hand_to(argv, allow_lossy=True)  # the permanent release reads older versions
        except HandoffError as exc:
            emit(event="handoff_failed", pid=os.getpid(), detail=str(exc))
            raise

    def healthy() -> bool:
        return args.healthy_file is None or os.path.exists(args.healthy_file)

    watch = watch_trial(args.dir, service, revert=revert, health=healthy, poll=0.05)
    install_signal_trigger(upgrade)
    stopping = Stopping(done, poll=0.05)
    signal.signal(signal.SIGTERM, stopping)
    emit(event="ready", release=args.release, pid=os.getpid(), port=listener.getsockname()[1],
         **start)
    while not stopping.wait():
        if watch.outcome == "reverted":
            break
    watch.stop()
    emit(event="exit", pid=os.getpid(), outcome=watch.outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
