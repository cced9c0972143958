"""No window without an owner: a ready successor takes over from a dead predecessor,
and the old process takes its state back from a successor that dies before SERVING."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from handoff_children.harness import HERE, Clients, script, wait_for
from handoff_children.lineserver import LineServer, decode_state

from statemigrate.handoff import (
    HandoffError,
    HandoffTimeouts,
    Spawn,
    SuccessorFailedError,
    _sendsuccessor,
    receive_handoff,
    send_handoff,
)

PEER = script("peer.py")
FAST = HandoffTimeouts(kill_grace=2.0)


def start_peer(role: str, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, PEER, role, str(path)], cwd=HERE, stdout=subprocess.PIPE
    )


def connect_to_old(role: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start a hand-written old process and connect to it, as a successor does."""
    path = tmp_path / "handoff.sock"
    proc = start_peer(role, path)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"listening\n"
    proc.stdout.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(str(path))
    return proc, sock


@pytest.mark.parametrize(
    "role", ["old-dies-after-ready", "old-dies-after-snapshot", "old-dies-leaving-ready"]
)
def test_a_ready_successor_takes_over_when_the_old_process_dies(tmp_path, role):
    proc, sock = connect_to_old(role, tmp_path)
    inheritance = receive_handoff(sock, timeouts=FAST)
    snapshot = inheritance.hello({"counters": [1]})
    state = decode_state(snapshot)
    snapshot.release()
    if role == "old-dies-after-snapshot":
        proc.wait(timeout=60)  # it died while we restored: READY finds nobody
    inheritance.ready()
    assert inheritance.predecessor_died
    assert state == (7, {"a": 3, "b": 5})
    assert proc.wait(timeout=60) == -signal.SIGKILL


@pytest.mark.parametrize("role", ["old-dies-before-snapshot", "old-dies-at-once"])
def test_an_old_process_dead_before_the_snapshot_is_named_plainly(tmp_path, role):
    """The channel closes while the successor waits (or refuses its HELLO): it says the
    old process died before its state was sent, nothing serves, and how to restart,
    instead of the bare channel error. The dead process is left unreaped (a zombie), as
    under a parent that does not wait."""
    proc, sock = connect_to_old(role, tmp_path)
    inheritance = receive_handoff(sock, timeouts=FAST)
    if role == "old-dies-at-once":
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, HELLO not sent
    with pytest.raises(HandoffError) as caught:
        inheritance.hello({"counters": [1]})
    error = caught.value
    assert error.stage == "receive"
    assert error.detail.startswith(
        f"the old process (pid {proc.pid}) died during the handoff before its state was sent:"
        " nothing serves the service now; restart it"
    ), error.detail
    assert "start_from" in error.detail
    assert proc.wait(timeout=60) == -signal.SIGKILL


def test_a_successor_does_not_take_over_from_a_live_old_process(tmp_path):
    """A closed channel alone is not a death: the old process may go on serving."""
    proc, sock = connect_to_old("old-closes-and-lives", tmp_path)
    try:
        inheritance = receive_handoff(sock, timeouts=HandoffTimeouts(kill_grace=0.5))
        inheritance.hello({"counters": [1]}).release()
        with pytest.raises(HandoffError, match=r"no COMMIT from the old process \(closed\)"):
            inheritance.ready()
        assert not inheritance.predecessor_died
    finally:
        proc.kill()
        proc.wait(timeout=60)


def test_an_abort_sent_before_dying_still_counts(tmp_path):
    proc, sock = connect_to_old("old-aborts-and-dies", tmp_path)
    inheritance = receive_handoff(sock, timeouts=FAST)
    inheritance.hello({"counters": [1]}).release()
    with pytest.raises(HandoffError, match="the old process aborted: changed my mind"):
        inheritance.ready()
    assert proc.wait(timeout=60) == -signal.SIGKILL


@pytest.fixture
def old_server() -> Iterator[LineServer]:
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as listener:
        server = LineServer(listener, generation=1, counters={"x": 41})
        server.start()
        try:
            yield server
        finally:
            server.close()


class Recorder:
    """The line server's control, recording which hooks ran."""

    def __init__(self, server: LineServer) -> None:
        self.server = server
        self.calls: list[str] = []

    def pause(self) -> None:
        self.calls.append("pause")
        self.server.pause()

    def resume(self) -> None:
        self.calls.append("resume")
        self.server.resume()

    def stop_accepting(self) -> None:
        self.calls.append("stop_accepting")
        self.server.stop_accepting()


def hand_over_to_peer(server: LineServer, role: str, tmp_path: Path) -> tuple[Recorder, object]:
    """The old process in this test, a successor peer connecting over a socket."""
    path = tmp_path / "handoff.sock"
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listening.bind(str(path))
    listening.listen(1)
    proc = subprocess.Popen([sys.executable, PEER, role, str(path)], cwd=HERE)
    control = Recorder(server)
    try:
        conn, _ = listening.accept()
        with conn:
            try:
                outcome: object = send_handoff(
                    conn,
                    listeners={"tcp": server.listener},
                    export_state=server.export_state,
                    control=control,
                    timeouts=FAST,
                )
            except HandoffError as exc:
                outcome = exc
    finally:
        listening.close()
        proc.wait(timeout=60)
    return control, outcome


def test_the_old_process_takes_its_state_back_from_a_successor_dying_before_serving(
    old_server, tmp_path, monkeypatch
):
    forgotten: list[bool] = []
    monkeypatch.setattr(_sendsuccessor, "forget_commits", lambda: forgotten.append(True))
    address = old_server.listener.getsockname()
    clients = Clients(address, threads=2).start()
    try:
        wait_for(lambda: clients.ok >= 50, 60, "load before the handoff")
        control, outcome = hand_over_to_peer(old_server, "new-dies-after-commit", tmp_path)
        before = clients.ok
        wait_for(lambda: clients.ok >= before + 50, 60, "load after the handoff")
    finally:
        clients.stop()
    assert isinstance(outcome, SuccessorFailedError), outcome
    assert outcome.stage == "serving"
    assert "took its state back" in outcome.detail
    assert control.calls == ["pause", "resume"]  # never stop_accepting
    # The successor may have checkpointed the state it owned: this process's next
    # checkpoint is the one writer's again, not refused as a second writer's.
    assert forgotten == [True]
    summary = clients.summary()
    assert summary["out_of_order"] == 0, summary
    assert summary["retries"] == 0, summary  # no write was ever turned away


@pytest.mark.parametrize("role", ["new-normal", "new-legacy"])
def test_a_confirmed_or_older_successor_gets_the_state(old_server, tmp_path, role):
    control, outcome = hand_over_to_peer(old_server, role, tmp_path)
    assert not isinstance(outcome, HandoffError), outcome
    assert control.calls == ["pause", "stop_accepting"]
    assert ("serving" in outcome.timings) == (role == "new-normal")  # type: ignore[attr-defined]


def test_negative_control_an_older_successor_dying_after_commit_leaves_no_owner(
    old_server, tmp_path
):
    """Without SERVING (a successor that does not announce it), COMMIT is the end."""
    control, outcome = hand_over_to_peer(old_server, "new-legacy-dies", tmp_path)
    assert not isinstance(outcome, HandoffError), outcome
    assert control.calls == ["pause", "stop_accepting"]


def test_a_spawned_successor_dying_before_serving_gives_the_state_back(old_server, tmp_path):
    output = tmp_path / "successor.jsonl"
    control = Recorder(old_server)
    with pytest.raises(SuccessorFailedError) as caught:
        send_handoff(
            Spawn([sys.executable, script("successor.py"), "die-after-commit", str(output)],
                  cwd=HERE),
            listeners={"tcp": old_server.listener},
            export_state=old_server.export_state,
            control=control,
            timeouts=FAST,
        )
    assert caught.value.stage == "serving"
    assert caught.value.exit_status == -signal.SIGKILL
    assert control.calls == ["pause", "resume"]
    reply: list[str] = []
    thread = threading.Thread(
        target=lambda: reply.append(query_inc(old_server.listener.getsockname()))
    )
    thread.start()
    thread.join(timeout=60)
    assert reply == ["OK 42 1"]  # the old generation serves writes again, on its own state


def query_inc(address: tuple[str, int]) -> str:
    with socket.create_connection(address, timeout=20) as sock:
        sock.sendall(b"INC x\n")
        return sock.recv(100).decode().strip()
