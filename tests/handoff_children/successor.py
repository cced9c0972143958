"""A successor with a chosen behaviour, good or bad; writes one JSON line to a file.

Usage: successor.py MODE OUTPUT [EXPECT]   (EXPECT: comma-separated listener names)

Modes:
    report         take over normally; report the descriptor table before
                   ``receive_handoff``, after it, and after the handoff, plus the
                   snapshot received
    verify         decode the line server's snapshot; FAILED if it is corrupt
    fail           receive the snapshot, then report FAILED
    fail-lingering report its pid, then FAILED, then wait (up to 10 s) for OUTPUT.release
                   to exist before exiting, as a server shutting down would
    exit3          exit with status 3 before saying anything
    usr2           die of SIGUSR2 (its default action) before saying anything
    vanish         receive the snapshot, then exit without READY
    hang           receive the snapshot, then never answer
    hang-stubborn  like hang, and ignore SIGTERM
    silent         receive_handoff, then never send HELLO
    bad-hello      send a packet that is not a handoff message instead of HELLO
    inherit-check  only call receive_handoff(); report what happened
    die-after-commit  take over, then die (SIGKILL) after COMMIT, before SERVING
"""

from __future__ import annotations

from _fdtable import fd_table  # first: nothing else may open descriptors before this

START_TABLE = fd_table()

import os  # noqa: E402

NAMED = os.environ.get("STATEMIGRATE_FDS")

import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from lineserver import decode_state  # noqa: E402

from statemigrate.handoff import HandoffError, receive_handoff  # noqa: E402


def emit(**event: object) -> None:
    with open(sys.argv[2], "a") as output:
        output.write(json.dumps(event) + "\n")


def main(mode: str) -> int:
    if mode == "exit3":
        return 3
    if mode == "usr2":
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
        os.kill(os.getpid(), signal.SIGUSR2)
    if mode == "hang-stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "bad-hello":
        named = dict(e.split("=") for e in os.environ["STATEMIGRATE_FDS"].split(":"))
        control = socket.socket(fileno=int(named["control"]))
        control.send(b"GET / HTTP/1.0\r\n\r\n")
        time.sleep(600)
        return 0
    if mode == "inherit-check":
        expect = None if len(sys.argv) < 4 else [n for n in sys.argv[3].split(",") if n]
        try:
            inheritance = receive_handoff(expect=expect)
        except HandoffError as exc:
            emit(error=exc.stage, detail=exc.detail, start=START_TABLE, after=fd_table())
            return 1
        assert inheritance is not None
        emit(
            error=None,
            named=NAMED,
            listeners={name: s.fileno() for name, s in inheritance.listeners.items()},
            strays=inheritance.closed_strays,
            start=START_TABLE,
            after=fd_table(),
            env_left=[k for k in os.environ if k.startswith("STATEMIGRATE_")],
        )
        inheritance.close()
        return 0

    inheritance = receive_handoff()
    if inheritance is None:
        emit(error="not started by a handoff")
        return 2
    after_inherit = fd_table()
    if mode == "silent":
        time.sleep(600)
        return 0
    snapshot = inheritance.hello({"counters": [1]})
    if mode == "fail":
        inheritance.failed("validation failed: the counters do not add up")
        return 1
    if mode == "fail-lingering":
        emit(pid=os.getpid())
        inheritance.failed("validation failed: the counters do not add up")
        release = sys.argv[2] + ".release"
        for _ in range(100):
            if os.path.exists(release):
                break
            time.sleep(0.1)
        return 1
    if mode == "vanish":
        return 0
    if mode in ("hang", "hang-stubborn"):
        time.sleep(600)
        return 0
    if mode == "verify":
        try:
            decode_state(snapshot)
        except ValueError as exc:
            inheritance.failed(str(exc))
            return 1
    data = bytes(snapshot)
    snapshot.release()
    if mode == "die-after-commit":
        inheritance._confirms = False  # reads COMMIT and never confirms
        inheritance.ready()
        os.kill(os.getpid(), signal.SIGKILL)
    inheritance.ready()
    # The old process's HELD, read on a thread that holds a duplicate of the control
    # channel until it came: the table is the one once it did.
    if inheritance.held_watch is not None:
        inheritance.held_watch.join(30)  # only stops a hang
    listeners = {name: s.fileno() for name, s in inheritance.listeners.items()}
    emit(
        named=NAMED,
        start=START_TABLE,
        after_inherit=after_inherit,
        after=fd_table(),
        listeners=listeners,
        inheritable=[fd for fd in listeners.values() if os.get_inheritable(fd)],
        snapshot=data.hex(),
        parent=inheritance.parent_pid,
        strays=inheritance.closed_strays,
    )
    for sock in inheritance.listeners.values():
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
