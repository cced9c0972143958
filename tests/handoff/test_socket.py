"""send_handoff/receive_handoff over a Unix socket; bad fds (E5), other uids (E6) and
hostile messages refused on both sides."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemigrate.handoff import (
    ControlCallbacks,
    HandoffError,
    HandoffReport,
    receive_handoff,
    send_handoff,
)
from statemigrate.handoff._drive import run_blocking
from statemigrate.handoff._fdcheck import open_fds
from statemigrate.handoff._protocol import (
    MAGIC,
    PROTOCOL_VERSION,
    Abort,
    Applied,
    Channel,
    Failed,
    Hello,
    Message,
    Piece,
    Ready,
    Received,
    SnapshotOffer,
    encode_message,
)
from statemigrate.stores import MemfdStore

NOBODY = 65534


def test_handoff_over_a_unix_socket_path(tmp_path):
    path = str(tmp_path / "handoff.sock")
    calls: list[str] = []
    outcome: dict[str, HandoffReport] = {}
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server,
    ):
        server.bind(path)
        server.listen(1)

        def old_side() -> None:
            conn, _ = server.accept()
            with conn:
                outcome["report"] = send_handoff(
                    conn,
                    listeners={"tcp": listener},
                    export_state=lambda readable: json.dumps(readable).encode(),
                    control=recorder(calls),
                )

        thread = threading.Thread(target=old_side)
        thread.start()
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.connect(path)
            inheritance = receive_handoff(sock, expect={"tcp"})
            assert inheritance.listeners == {}  # they come with the snapshot
            with inheritance:
                snapshot = inheritance.hello({"sessions": [2, 3]})
                assert json.loads(bytes(snapshot)) == {"sessions": [2, 3]}
                inheritance.ready()
            received = inheritance.listeners["tcp"]
        finally:
            thread.join(timeout=60)
        try:
            assert os.fstat(received.fileno()).st_ino == os.fstat(listener.fileno()).st_ino
            assert received.fileno() != listener.fileno()
            assert not os.get_inheritable(received.fileno())
            assert received.getsockname() == listener.getsockname()
        finally:
            received.close()
    report = outcome["report"]
    assert report.ok and report.transport == "socket" and report.successor_pid == os.getpid()
    assert report.readable == {"sessions": (2, 3)}
    assert calls == ["pause", "stop_accepting"]


def recorder(calls: list[str]) -> ControlCallbacks:
    """A server control that records which of its methods were called, in order."""
    return ControlCallbacks(
        pause=lambda: calls.append("pause"),
        resume=lambda: calls.append("resume"),
        stop_accepting=lambda: calls.append("stop_accepting"),
    )


def receive_now(sock: socket.socket, *, max_fds: int = 0) -> Received:
    """The next message on ``sock``, waited for (blocking) up to 10 s."""
    steps = Channel(sock).receive(stage="t", max_fds=max_fds, deadline=time.monotonic() + 10)
    got = run_blocking(steps, None)
    assert isinstance(got, Received), got
    return got


def offer(kind: str) -> tuple[str, int, list[socket.socket | int]]:
    """Return (role, fd, things to close) for one kind of bad descriptor."""
    if kind == "unsealed memfd":
        fd = os.memfd_create("x", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.write(fd, b"state")
        return "snapshot", fd, [fd]
    if kind == "regular file":
        fd = os.open(__file__, os.O_RDONLY)
        return "snapshot", fd, [fd]
    if kind == "pipe as snapshot":
        r, w = os.pipe()
        os.write(w, b"state")
        return "snapshot", r, [r, w]
    if kind == "pipe":
        r, w = os.pipe()
        return "listener", r, [r, w]
    if kind == "connected socket":
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        return "listener", accepted.fileno(), [accepted, client, server]
    if kind == "udp socket":
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        return "listener", udp.fileno(), [udp]
    if kind == "unix listener (wrong family)":
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind("")  # autobind: an abstract address
        unix.listen(1)
        return "listener", unix.fileno(), [unix]
    if kind == "seqpacket listener":
        seq = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        seq.bind("")
        seq.listen(1)
        return "listener", seq.fileno(), [seq]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        ("unsealed memfd", "is not sealed"),
        ("regular file", "not a memfd"),
        ("pipe as snapshot", "pipe or FIFO, not a memfd"),
        ("pipe", "is not a socket"),
        ("connected socket", "not listening"),
        ("udp socket", "SOCK_DGRAM socket, not SOCK_STREAM"),
        ("unix listener (wrong family)", "family AF_UNIX, expected AF_INET, AF_INET6"),
        ("seqpacket listener", "SOCK_SEQPACKET socket, not SOCK_STREAM"),
    ],
)
def test_bad_descriptors_are_refused_and_closed(pair, kind, pattern):
    """E5: each bad descriptor is refused, FAILED names it, and nothing received stays open."""
    old, new = pair
    role, bad, keep = offer(kind)
    store = MemfdStore()
    good_snapshot = store.commit(b"state").fd
    good = socket.create_server(("127.0.0.1", 0))
    try:
        names: tuple[str, ...]
        if role == "snapshot":
            fds, names = [bad, good.fileno()], ("tcp",)
        else:
            fds, names = [good_snapshot, good.fileno(), bad], ("tcp", "bad")
        size = os.fstat(fds[0]).st_size
        Channel(old).send(SnapshotOffer(size=size, listeners=names), fds, stage="test")
        baseline = open_fds() - {new.fileno()}  # the inheritance closes the channel too
        inheritance = receive_handoff(new, families={socket.AF_INET, socket.AF_INET6})
        with pytest.raises(HandoffError, match=pattern) as caught:
            inheritance.hello({"c": [1]})
        assert caught.value.stage == "receive"
        assert open_fds() == baseline  # every received descriptor closed
        assert inheritance.listeners == {}
        hello = receive_now(old).message
        failed = receive_now(old).message
        assert isinstance(hello, Hello)
        assert isinstance(failed, Failed)
        assert pattern.split(",")[0] in failed.reason
    finally:
        good.close()
        store.close()
        for item in keep:
            item.close() if isinstance(item, socket.socket) else os.close(item)


def test_snapshot_size_must_match_the_declaration(pair):
    old, new = pair
    with MemfdStore() as store:
        ref = store.commit(b"12345")
        Channel(old).send(SnapshotOffer(size=4), [ref.fd], stage="test")
        with pytest.raises(HandoffError, match="memfd holds 5 bytes, 4 declared"):
            receive_handoff(new).hello({})


def test_listener_count_must_match_the_names(pair):
    old, new = pair
    with MemfdStore() as store, socket.create_server(("127.0.0.1", 0)) as listener:
        ref = store.commit(b"x")
        Channel(old).send(SnapshotOffer(size=1), [ref.fd, listener.fileno()], stage="test")
        baseline = open_fds() - {new.fileno()}
        with pytest.raises(HandoffError, match="names 0 listeners but carried 2"):
            receive_handoff(new).hello({})
        assert open_fds() == baseline


def test_unexpected_listener_names_are_refused(pair):
    old, new = pair
    with MemfdStore() as store, socket.create_server(("127.0.0.1", 0)) as listener:
        ref = store.commit(b"x")
        offer_ = SnapshotOffer(size=1, listeners=("admin",))
        Channel(old).send(offer_, [ref.fd, listener.fileno()], stage="test")
        with pytest.raises(HandoffError, match="unexpected listener 'admin'"):
            receive_handoff(new, expect={"tcp"}).hello({})


# -- E6: peers running as another user ----------------------------------------------------

PEER = r"""
import os, socket, sys, time
role, path = sys.argv[1], sys.argv[2]
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
if role == "connect":
    sock.connect(path)
    try:
        sock.send(b'SMHO\x01\x01{"pid": %d, "readable": {}}' % os.getpid())
        print(repr(sock.recv(65536)), flush=True)
    except (BrokenPipeError, ConnectionResetError):  # closed before or after our HELLO
        print("reset", flush=True)
else:
    sock.bind(path)
    sock.listen(1)
    print("listening", flush=True)
    conn, _ = sock.accept()
    print(repr(conn.recv(65536)), flush=True)
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another uid can use (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="statemigrate-handoff-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def start_peer(role: str, path: Path) -> subprocess.Popen[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to start a peer under another uid")
    # The interpreter starts as root, then drops to uid 65534 before touching the socket.
    return subprocess.Popen(
        [sys.executable, "-I", "-c", PEER, role, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        close_fds=True,
    )


def test_old_side_refuses_a_successor_of_another_uid(shared_dir):
    path = shared_dir / "handoff.sock"
    exported: list[object] = []

    def export(readable: object) -> bytes:
        exported.append(readable)
        return b""

    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(str(path))
        path.chmod(0o777)
        server.listen(1)
        server.settimeout(30)
        peer = start_peer("connect", path)
        try:
            conn, _ = server.accept()
            with conn, socket.create_server(("127.0.0.1", 0)) as listener:
                with pytest.raises(HandoffError, match=f"runs as uid {NOBODY}") as caught:
                    send_handoff(conn, listeners={"tcp": listener}, export_state=export)
            out, _ = peer.communicate(timeout=30)
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.communicate()
    assert caught.value.stage == "peer"
    assert exported == []  # nothing was exported, nothing sent
    assert out.strip() in ("b''", "reset")  # closed on it, with no data sent


def test_successor_side_refuses_an_old_process_of_another_uid(shared_dir):
    path = shared_dir / "handoff.sock"
    peer = start_peer("listen", path)
    try:
        assert peer.stdout is not None
        assert peer.stdout.readline().strip() == "listening"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with sock:
            sock.connect(str(path))
            baseline = open_fds()
            with pytest.raises(HandoffError, match=f"runs as uid {NOBODY}") as caught:
                receive_handoff(sock)
            assert open_fds() == baseline
        out, _ = peer.communicate(timeout=30)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.communicate()
    assert caught.value.stage == "peer"
    assert out.strip() == "b''"  # we never sent HELLO to it


@pytest.mark.parametrize("data", [b"", b"\x00" * 5000])
def test_snapshot_arrives_as_a_read_only_view(pair, data):
    old, new = pair
    outcome: dict[str, HandoffReport] = {}

    def old_side() -> None:
        outcome["report"] = send_handoff(old, listeners={}, export_state=lambda readable: data)

    thread = threading.Thread(target=old_side)
    thread.start()
    try:
        with receive_handoff(new) as inheritance:
            snapshot = inheritance.hello({})
            assert isinstance(snapshot, memoryview) and snapshot.readonly
            assert bytes(snapshot) == data
            snapshot.release()
            inheritance.ready()
    finally:
        thread.join(timeout=60)
    assert outcome["report"].snapshot_size == len(data)


# -- hostile messages: a protocol error on either side, and the usual failure path ---------

DEEP = b"[" * 30_000 + b"]" * 30_000  # fits in one message (64 KiB)


def raw(kind: int, body: bytes) -> bytes:
    return MAGIC + bytes([PROTOCOL_VERSION, kind]) + body


def next_message(sock: socket.socket) -> Message:
    """The next message waiting on ``sock``; descriptors that came with it are closed."""
    got = receive_now(sock, max_fds=1)
    for fd in got.fds:
        os.close(fd)
    return got.message


def test_old_side_refuses_a_deeply_nested_hello(pair):
    old, new = pair
    calls: list[str] = []
    new.send(raw(1, b'{"pid": 1, "readable": {"a": ' + DEEP + b"}}"))
    with pytest.raises(HandoffError, match="protocol error: bad HELLO body: nested") as caught:
        send_handoff(
            old,
            listeners={},
            export_state=lambda readable: b"state",
            control=recorder(calls),
        )
    assert caught.value.stage == "handshake"
    assert caught.value.report is not None and caught.value.report.stage == "handshake"
    assert calls == []  # turned away before anything was paused
    abort = next_message(new)
    assert isinstance(abort, Abort) and "nested more than" in abort.reason


def test_old_side_refuses_a_deeply_nested_ready_and_resumes(pair):
    old, new = pair
    calls: list[str] = []
    new.send(encode_message(Hello(pid=os.getpid())))
    new.send(raw(3, DEEP))
    with pytest.raises(HandoffError, match="protocol error: bad READY body: nested") as caught:
        send_handoff(
            old,
            listeners={},
            export_state=lambda readable: b"state",
            control=recorder(calls),
        )
    assert caught.value.stage == "ready"
    assert calls == ["pause", "resume"]  # the old process goes on serving
    assert isinstance(next_message(new), SnapshotOffer)
    abort = next_message(new)
    assert isinstance(abort, Abort) and "bad READY body" in abort.reason


def test_successor_side_refuses_a_deeply_nested_snapshot_offer(pair):
    old, new = pair
    old.send(raw(2, b'{"size": 1, "listeners": ' + DEEP + b"}"))
    baseline = open_fds() - {new.fileno()}
    with pytest.raises(HandoffError, match="protocol error: bad SNAPSHOT body: nested") as caught:
        receive_handoff(new).hello({"c": [1]})
    assert caught.value.stage == "receive"
    assert open_fds() == baseline
    assert isinstance(next_message(old), Hello)
    failed = next_message(old)
    assert isinstance(failed, Failed) and "bad SNAPSHOT body" in failed.reason


def test_successor_side_refuses_a_deeply_nested_commit(pair):
    old, new = pair
    with MemfdStore() as store:
        ref = store.commit(b"state")
        Channel(old).send(SnapshotOffer(size=ref.size), [ref.fd], stage="test")
    old.send(raw(4, b'{"x": ' + DEEP + b"}"))
    inheritance = receive_handoff(new)
    snapshot = inheritance.hello({"c": [1]})
    assert bytes(snapshot) == b"state"
    snapshot.release()
    with pytest.raises(HandoffError, match="protocol error: bad COMMIT body: nested") as caught:
        inheritance.ready()
    assert caught.value.stage == "commit"
    assert isinstance(next_message(old), Hello)
    assert next_message(old) == Ready(pid=os.getpid())


def test_old_side_refuses_a_ready_naming_another_pid(pair):
    old, new = pair
    calls: list[str] = []
    other = os.getppid()  # a live process, but not the one at the other end
    new.send(encode_message(Hello(pid=os.getpid())))
    new.send(encode_message(Ready(pid=other)))
    pattern = f"READY names pid {other}, the successor is pid {os.getpid()}"
    with pytest.raises(HandoffError, match=pattern) as caught:
        send_handoff(
            old,
            listeners={},
            export_state=lambda readable: b"state",
            control=recorder(calls),
        )
    assert caught.value.stage == "ready"
    assert caught.value.report is not None and caught.value.report.outcome == "failed"
    assert calls == ["pause", "resume"]  # no COMMIT: the old process keeps the state
    assert isinstance(next_message(new), SnapshotOffer)
    abort = next_message(new)
    assert isinstance(abort, Abort) and f"READY names pid {other}" in abort.reason


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        ((1,), "PIECE of round 1, round 0 expected"),  # a delta before any round 0
        ((0, 0), "PIECE of round 0, round 1 expected"),  # round 0 twice
        ((0, 2), "PIECE of round 2, round 1 expected"),  # a round skipped
    ],
)
def test_a_piece_out_of_turn_is_a_protocol_error(pair, rounds, expected):
    """The successor applies pieces in order only: one out of turn fails the take-over
    before it is applied, and the old process is told."""
    old, new = pair
    applied: list[int] = []

    def on_piece(piece: Piece, view: memoryview) -> Applied:
        applied.append(piece.round)
        return Applied(piece.round, deltas=True)

    with MemfdStore() as store:
        for number in rounds:
            piece = Piece(round=number, kind="full" if number == 0 else "delta", size=5)
            Channel(old).send(piece, [store.commit(b"state").fd], stage="test")
    inheritance = receive_handoff(new)
    with pytest.raises(HandoffError, match=expected):
        run_blocking(inheritance._hello_steps({}, max_size=1 << 20, on_piece=on_piece), None)
    assert applied == list(rounds[:-1])
    assert isinstance(next_message(old), Hello)
    told = [next_message(old) for _ in rounds]  # an APPLIED per piece applied, then FAILED
    assert [type(m) for m in told] == [Applied] * len(applied) + [Failed]
    failed = told[-1]
    assert isinstance(failed, Failed) and expected in failed.reason
