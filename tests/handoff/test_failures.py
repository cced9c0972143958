"""F3: a failed handoff leaves the old process serving under load; nothing refused, cause named."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Iterator

import pytest
from handoff_children.harness import HERE, Clients, script, wait_for
from handoff_children.lineserver import LineServer, encode_state

from statemigrate.handoff import (
    ControlCallbacks,
    HandoffError,
    HandoffTimeouts,
    Spawn,
    SuccessorFailedError,
    send_handoff,
)

SUCCESSOR = script("successor.py")


@pytest.fixture
def old_server() -> Iterator[LineServer]:
    """Generation 1 of the line server, in this process, as the old process of the handoff."""
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as listener:
        server = LineServer(listener, generation=1)
        server.start()
        try:
            yield server
        finally:
            server.close()


def corrupt(server: LineServer):
    def export_state(readable):
        data = bytearray(server.export_state(readable))
        data[-1] ^= 0x01  # one flipped bit, after the digest was computed
        return bytes(data)

    return export_state


def refuse(readable):
    raise ValueError("cannot write counters in any version the successor reads")


# mode, export_state factory, stage, detail pattern, expected exit status of the successor,
# and whether the successor itself gave up (SuccessorFailedError) rather than the handoff
CASES = [
    ("fail", None, "ready", "the successor failed: validation failed", 1, True),
    ("exit3", None, "handshake", r"exited before sending HELLO \(exit status 3\)", 3, True),
    ("usr2", None, "handshake", r"exited before sending HELLO \(killed by SIGUSR2\)", -12, True),
    ("vanish", None, "ready", r"exited before sending READY \(exit status 0\)", 0, True),
    ("hang", None, "ready", r"no READY from the successor within 1 s", -15, False),
    ("hang-stubborn", None, "ready", r"no READY from the successor within 1 s", -9, False),
    ("silent", None, "handshake", r"no HELLO from the successor within 1 s", -15, False),
    ("bad-hello", None, "handshake", "protocol error: not a handoff message", -15, False),
    ("verify", corrupt, "ready", "the successor failed: corrupt snapshot: digest", 1, True),
    ("report", lambda server: refuse, "export", "export_state.. raised ValueError", 1, False),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "exporter", "stage", "pattern", "exit_status", "gave_up"), CASES
)
def test_failed_handoff_keeps_serving(
    old_server, tmp_path, mode, exporter, stage, pattern, exit_status, gave_up
):
    server = old_server
    address = server.listener.getsockname()
    clients = Clients(address, threads=4).start()
    try:
        wait_for(lambda: clients.ok >= 200, 60, "load before the attempt")
        with pytest.raises(HandoffError) as caught:
            send_handoff(
                Spawn([sys.executable, SUCCESSOR, mode, str(tmp_path / "out")], cwd=HERE),
                listeners={"tcp": server.listener},
                export_state=(exporter or (lambda s: s.export_state))(server),
                control=server,
                timeouts=HandoffTimeouts(
                    ready=1.0,
                    hello=1.0 if mode == "silent" else 30.0,
                    # Short only where SIGKILL is the point, so slow exits are not cut.
                    kill_grace=0.5 if mode == "hang-stubborn" else 20.0,
                ),
            )
        during = clients.ok
        wait_for(lambda: clients.ok >= during + 200, 60, "load after the failed attempt")
    finally:
        clients.stop()

    error = caught.value
    assert error.stage == stage
    assert re.search(pattern, error.detail), error.detail
    # The successor's own failure is told apart by type, never by its message.
    assert isinstance(error, SuccessorFailedError) == gave_up
    if gave_up:
        assert isinstance(error, SuccessorFailedError)
        assert error.exit_status == exit_status
        assert error.reason is None or error.reason in error.detail
    report = error.report
    assert report is not None
    assert report.outcome == "failed" and report.stage == stage and report.reason == error.detail
    assert report.successor_exit == exit_status and report.successor_pid is not None
    with pytest.raises(ChildProcessError):  # already reaped: no zombie left behind
        os.waitpid(report.successor_pid, os.WNOHANG)

    summary = clients.summary()
    assert summary["refused"] == summary["reset"] == summary["timeouts"] == 0, summary
    assert summary["out_of_order"] == 0 and summary["retries"] == 0, summary
    assert summary["other"] == [], summary
    assert {g for s in clients.stats.values() for g in s.generations} == {1}
    # Every acknowledged increment is in the state the old process kept.
    assert {name: s.acked for name, s in clients.stats.items()} == {
        name: server.counters[name] for name in clients.names
    }


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_writers_resume_before_a_failed_successor_has_exited(old_server, tmp_path):
    """A successor that reported FAILED never got COMMIT, so it cannot serve: the old
    process resumes its writers at once, not once the successor has exited (a server
    shutting down takes seconds, and every write waits meanwhile)."""
    out = tmp_path / "out"
    running_at_resume: list[bool] = []

    def resume() -> None:
        old_server.resume()
        pid = json.loads(out.read_text().splitlines()[0])["pid"]
        running_at_resume.append(running(pid))
        (tmp_path / "out.release").touch()  # now it may exit

    with pytest.raises(SuccessorFailedError) as caught:
        send_handoff(
            Spawn([sys.executable, SUCCESSOR, "fail-lingering", str(out)], cwd=HERE),
            listeners={"tcp": old_server.listener},
            export_state=old_server.export_state,
            control=ControlCallbacks(pause=old_server.pause, resume=resume),
            timeouts=HandoffTimeouts(kill_grace=20.0),
        )
    assert caught.value.stage == "ready" and caught.value.exit_status == 1
    assert running_at_resume == [True]
    report = caught.value.report
    assert report is not None and report.successor_pid is not None
    with pytest.raises(ChildProcessError):  # reaped all the same
        os.waitpid(report.successor_pid, os.WNOHANG)


def test_export_refusal_skips_the_snapshot(old_server, tmp_path):
    calls: list[str] = []
    with pytest.raises(HandoffError) as caught:
        send_handoff(
            Spawn([sys.executable, SUCCESSOR, "report", str(tmp_path / "out")], cwd=HERE),
            listeners={"tcp": old_server.listener},
            export_state=refuse,
            control=ControlCallbacks(
                pause=lambda: calls.append("pause"),
                resume=lambda: calls.append("resume"),
                stop_accepting=lambda: calls.append("stop"),
            ),
        )
    assert calls == ["pause", "resume"]
    report = caught.value.report
    assert report is not None and report.snapshot_size == 0
    assert "transfer" not in report.timings
    assert isinstance(caught.value.__cause__, HandoffError)
    assert isinstance(caught.value.__cause__.__cause__, ValueError)


def test_resume_failure_is_reported_too(old_server, tmp_path):
    def bad_resume():
        raise RuntimeError("resume broke")

    with pytest.raises(HandoffError, match="resume.. also raised RuntimeError") as caught:
        send_handoff(
            Spawn([sys.executable, SUCCESSOR, "fail", str(tmp_path / "out")], cwd=HERE),
            listeners={"tcp": old_server.listener},
            export_state=lambda readable: encode_state(1, {}),
            control=ControlCallbacks(pause=old_server.pause, resume=bad_resume),
        )
    old_server.resume()
    assert isinstance(caught.value, SuccessorFailedError)  # still typed, with the extra note
    assert caught.value.reason == "validation failed: the counters do not add up"
    assert caught.value.report is not None
    assert any("resume() raised" in p for p in caught.value.report.problems)
