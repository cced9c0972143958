"""One side of a socket handoff that ends at a chosen point (used by test_owner.py).

Usage: peer.py ROLE SOCKET_PATH

As the old process it listens on SOCKET_PATH, accepts one successor and speaks the
protocol by hand, so it can stop where no library call would:

    old-dies-at-once          accept the successor, then SIGKILL itself
    old-dies-before-snapshot  read HELLO, then SIGKILL itself
    old-dies-after-ready      send the snapshot, read READY, then SIGKILL itself
    old-dies-after-snapshot   send the snapshot, then SIGKILL itself
    old-dies-leaving-ready    send the snapshot, let READY arrive, SIGKILL itself unread
    old-closes-and-lives      send the snapshot, read READY, close the channel, sleep
    old-aborts-and-dies       send the snapshot, read READY, send ABORT, SIGKILL itself

As a successor it connects to SOCKET_PATH and uses the library:

    new-dies-after-commit     take over but never confirm: SIGKILL itself after COMMIT
    new-legacy                announce no SERVING in HELLO (a release before it)
    new-legacy-dies           like new-legacy, then SIGKILL itself after COMMIT
    new-normal                take over and confirm
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time

from lineserver import decode_state, encode_state

from statemigrate.handoff import receive_handoff
from statemigrate.handoff._drive import run_blocking
from statemigrate.handoff._protocol import (
    Abort,
    Channel,
    Hello,
    Ready,
    Received,
    SnapshotOffer,
)
from statemigrate.stores import MemfdStore

STATE = encode_state(7, {"a": 3, "b": 5})


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def old(role: str, path: str) -> int:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen(1)
    os.write(1, b"listening\n")
    conn, _ = server.accept()
    if role == "old-dies-at-once":
        die()
    channel = Channel(conn)
    deadline = time.monotonic() + 60

    def receive() -> Received:
        got = run_blocking(channel.receive(stage="test", deadline=deadline), None)
        assert isinstance(got, Received), got
        return got

    hello = receive().message
    assert isinstance(hello, Hello), hello
    if role == "old-dies-before-snapshot":
        die()
    with MemfdStore(name="peer") as store:
        ref = store.commit(STATE)
        channel.send(SnapshotOffer(size=ref.size, listeners=()), [ref.fd], stage="test")
    if role == "old-dies-after-snapshot":
        die()
    if role == "old-dies-leaving-ready":
        select.select([conn], [], [], 60)  # READY is there; dying with it unread resets
        die()
    assert isinstance(receive().message, Ready)
    if role == "old-dies-after-ready":
        die()
    if role == "old-aborts-and-dies":
        channel.send(Abort(reason="changed my mind"), stage="test")
        die()
    conn.close()
    time.sleep(600)  # old-closes-and-lives: the test kills us
    return 0


def new(role: str, path: str) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(path)
    inheritance = receive_handoff(sock)
    if role.startswith("new-legacy"):
        inheritance._confirms = False
    snapshot = inheritance.hello({"counters": [1]})
    decode_state(snapshot)
    snapshot.release()
    if role == "new-dies-after-commit":
        inheritance._confirms = False  # reads COMMIT, and dies before SERVING
    inheritance.ready()
    if role in ("new-dies-after-commit", "new-legacy-dies"):
        die()
    inheritance.close()
    return 0


def main() -> int:
    role, path = sys.argv[1], sys.argv[2]
    return old(role, path) if role.startswith("old-") else new(role, path)


if __name__ == "__main__":
    sys.exit(main())
