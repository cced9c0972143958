"""send_handoff(Spawn) and receive_handoff(): a spawn handoff, the successor's fd table (E2),
and the checks of what the successor inherits."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from handoff_children.harness import HERE, read_json_lines, reap, runtime_fds, script, wait_for

from statemigrate.handoff import (
    ControlCallbacks,
    HandoffError,
    HandoffTimeouts,
    Spawn,
    SuccessorFailedError,
    receive_handoff,
    send_handoff,
)
from statemigrate.handoff._drive import run_blocking
from statemigrate.handoff._env import successor_environ
from statemigrate.handoff._protocol import Channel, Failed, Received
from statemigrate.handoff._send import _in_progress

SUCCESSOR = script("successor.py")


@pytest.fixture(scope="module")
def runtime() -> set[int]:
    return runtime_fds()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def named_fds(text: str) -> dict[str, int]:
    return {name: int(fd) for name, fd in (entry.split("=") for entry in text.split(":"))}


class Calls:
    def __init__(self) -> None:
        self.log: list[str] = []

    def pause(self) -> None:
        self.log.append("pause")

    def resume(self) -> None:
        self.log.append("resume")

    def stop_accepting(self) -> None:
        self.log.append("stop_accepting")


def test_successful_spawn_handoff_hands_over_listener_and_snapshot(listener, tmp_path, runtime):
    calls = Calls()
    output = tmp_path / "out.jsonl"
    seen: list[dict[str, tuple[int, ...]]] = []

    def export_state(readable):
        seen.append({k: tuple(v) for k, v in readable.items()})
        calls.log.append("export")
        return b"state \x00\xff" * 1000

    report = send_handoff(
        Spawn([sys.executable, SUCCESSOR, "report", str(output)], cwd=HERE),
        listeners={"tcp": listener},
        export_state=export_state,
        control=calls,
    )
    assert reap(report.successor_pid) == 0
    assert calls.log == ["pause", "export", "stop_accepting"]
    assert seen == [{"counters": (1,)}]
    assert report.ok and report.outcome == "ready" and report.stage is None
    assert report.transport == "spawn"
    assert report.listeners == ("tcp",)
    assert report.snapshot_size == len(b"state \x00\xff" * 1000)
    phases = {"spawn", "handshake", "export", "transfer", "ready", "serving", "total"}
    assert set(report.timings) == phases
    assert report.summary().startswith(f"handoff ready: successor pid {report.successor_pid}")

    [result] = read_json_lines(output)
    assert bytes.fromhex(result["snapshot"]) == b"state \x00\xff" * 1000
    assert result["parent"] == os.getpid()
    named = named_fds(result["named"])
    assert set(named) == {"tcp", "control"}
    assert named["tcp"] == listener.fileno()  # pass_fds keeps the number
    assert result["listeners"] == {"tcp": listener.fileno()}
    assert result["inheritable"] == []
    assert result["strays"] == 0
    base = {0, 1, 2} | runtime
    assert set(result["start"]) == base | set(named.values())
    assert set(result["after_inherit"]) == base | set(named.values())
    assert set(result["after"]) == base | {named["tcp"]}  # control closed, memfd released


@pytest.mark.slow
def test_successor_fd_table_is_exactly_what_was_passed(listener, tmp_path, runtime):
    """E2: with inheritable strays in the old process, each successor starts with
    exactly {0,1,2} + runtime + the named descriptors."""
    strays = []
    for _ in range(3):
        r, w = os.pipe()
        os.set_inheritable(r, True)
        os.set_inheritable(w, True)
        strays += [r, w]
    output = tmp_path / "out.jsonl"
    rounds = 10
    try:
        for _ in range(rounds):
            report = send_handoff(
                Spawn([sys.executable, SUCCESSOR, "report", str(output)], cwd=HERE),
                listeners={"tcp": listener},
                export_state=lambda readable: b"x",
            )
            assert reap(report.successor_pid) == 0
    finally:
        for fd in strays:
            os.close(fd)
    results = read_json_lines(output)
    assert len(results) == rounds
    extra = [
        sorted(set(r["start"]) - ({0, 1, 2} | runtime | set(named_fds(r["named"]).values())))
        for r in results
    ]
    missing = [sorted(set(named_fds(r["named"]).values()) - set(r["start"])) for r in results]
    assert extra == [[]] * rounds
    assert missing == [[]] * rounds


def spawn_inherit_check(
    tmp_path: Path, named: dict[str, int], *, expect: str | None = None, extra: tuple[int, ...] = ()
) -> tuple[dict[str, Any], int]:
    """Start successor.py inherit-check by hand, with exactly the descriptors given."""
    output = tmp_path / "check.jsonl"
    argv = [sys.executable, SUCCESSOR, "inherit-check", str(output)]
    if expect is not None:
        argv.append(expect)
    env = successor_environ(os.environ, named, parent_pid=os.getpid())
    proc = subprocess.Popen(
        argv, cwd=HERE, env=env, close_fds=True, pass_fds=sorted({*named.values(), *extra})
    )
    try:
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [result] = read_json_lines(output)
    return result, status


@pytest.mark.slow
def test_inherit_closes_unnamed_inheritable_strays(listener, tmp_path, runtime):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        named = {"tcp": listener.fileno(), "control": theirs.fileno()}
        result, status = spawn_inherit_check(tmp_path, named, expect="tcp", extra=(r, w))
    finally:
        for fd in (r, w):
            os.close(fd)
        ours.close()
        theirs.close()
    assert status == 0, result
    assert result["strays"] == 2
    assert set(result["start"]) == {0, 1, 2} | runtime | set(named.values()) | {r, w}
    assert set(result["after"]) == {0, 1, 2} | runtime | set(named.values())
    assert result["listeners"] == {"tcp": listener.fileno()}
    assert result["env_left"] == []


def test_inherit_closes_an_unexpected_listener(listener, tmp_path, runtime):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs, socket.create_server(("127.0.0.1", 0)) as admin:
        named = {"tcp": listener.fileno(), "admin": admin.fileno(), "control": theirs.fileno()}
        result, status = spawn_inherit_check(tmp_path, named, expect="tcp")
    assert status == 0, result
    assert result["listeners"] == {"tcp": listener.fileno()}
    assert admin.fileno() not in result["after"]


def make_offender(kind: str) -> tuple[int, list[socket.socket | int]]:
    """Return an fd of the given kind (and the objects to close afterwards)."""
    if kind == "pipe":
        r, w = os.pipe()
        return r, [r, w]
    if kind == "regular file":
        fd = os.open(__file__, os.O_RDONLY)
        return fd, [fd]
    if kind == "udp socket":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        return sock.fileno(), [sock]
    if kind == "connected socket":
        a, b = socket.socketpair()
        return a.fileno(), [a, b]
    if kind == "unlistened socket":
        sock = socket.socket()
        return sock.fileno(), [sock]
    raise AssertionError(kind)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", ["pipe", "regular file", "udp socket", "connected socket", "unlistened socket"]
)
def test_inherit_refuses_a_bad_listener_and_closes_everything(kind, listener, tmp_path, runtime):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fd, keep = make_offender(kind)
    try:
        named = {"tcp": listener.fileno(), "bad": fd, "control": theirs.fileno()}
        result, status = spawn_inherit_check(tmp_path, named)
        theirs.close()
        got = run_blocking(Channel(ours).receive(stage="t", deadline=time.monotonic() + 30), None)
    finally:
        for item in keep:
            item.close() if isinstance(item, socket.socket) else os.close(item)
        ours.close()
        theirs.close()
    assert status == 1
    assert result["error"] == "inherit"
    assert "listener 'bad'" in result["detail"]
    assert set(result["after"]) == {0, 1, 2} | runtime  # every named fd closed
    assert isinstance(got, Received) and isinstance(got.message, Failed)
    assert "listener 'bad'" in got.message.reason


def test_inherit_refuses_a_control_channel_that_is_not_a_seqpacket_pair(
    listener, tmp_path, runtime
):
    r, w = os.pipe()
    try:
        result, status = spawn_inherit_check(tmp_path, {"tcp": listener.fileno(), "control": r})
    finally:
        os.close(r)
        os.close(w)
    assert status == 1
    assert result["error"] == "inherit"
    assert "control channel" in result["detail"]
    assert set(result["after"]) == {0, 1, 2} | runtime


def test_inherit_refuses_a_missing_listener(listener, tmp_path, runtime):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        named = {"tcp": listener.fileno(), "control": theirs.fileno()}
        result, status = spawn_inherit_check(tmp_path, named, expect="tcp,admin")
    assert status == 1
    assert "expected listeners not inherited: ['admin']" in result["detail"]
    assert set(result["after"]) == {0, 1, 2} | runtime


def test_receive_handoff_without_a_handoff_returns_none(monkeypatch):
    monkeypatch.delenv("STATEMIGRATE_FDS", raising=False)
    assert receive_handoff() is None


@pytest.mark.slow
def test_second_concurrent_handoff_is_refused(listener, tmp_path):
    errors: list[HandoffError] = []

    def first() -> None:
        try:
            send_handoff(
                Spawn([sys.executable, SUCCESSOR, "silent", str(tmp_path / "x")], cwd=HERE),
                listeners={"tcp": listener},
                export_state=lambda readable: b"",
                timeouts=HandoffTimeouts(hello=1.0, kill_grace=0.5),
            )
        except HandoffError as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        wait_for(_in_progress.locked, 30, "the first handoff to start")
        with pytest.raises(HandoffError, match="already in progress") as caught:
            send_handoff(Spawn(["/bin/true"]), listeners={}, export_state=lambda readable: b"")
        assert caught.value.stage == "start"
        assert caught.value.report is None
    finally:
        thread.join(timeout=60)
    [error] = errors
    assert error.stage == "handshake"
    assert not _in_progress.locked()


def test_spawn_failure_is_reported(listener):
    with pytest.raises(HandoffError, match="cannot start") as caught:
        send_handoff(
            Spawn(["/nonexistent/successor"]),
            listeners={"tcp": listener},
            export_state=lambda r: b"",
        )
    assert caught.value.stage == "spawn"
    assert caught.value.report is not None
    assert caught.value.report.outcome == "failed"


def test_listeners_are_checked_before_anything_starts():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(HandoffError, match="not SOCK_STREAM") as caught:
            send_handoff(Spawn(["/bin/true"]), listeners={"tcp": udp}, export_state=lambda r: b"")
    assert caught.value.stage == "start"
    with socket.create_server(("127.0.0.1", 0)) as sock:
        with pytest.raises(HandoffError, match="reserved"):
            send_handoff(
                Spawn(["/bin/true"]), listeners={"control": sock}, export_state=lambda r: b""
            )


@pytest.mark.slow
def test_report_is_plain_data(listener, tmp_path):
    report = send_handoff(
        Spawn([sys.executable, SUCCESSOR, "report", str(tmp_path / "o")], cwd=HERE),
        listeners={"tcp": listener},
        export_state=lambda readable: b"abc",
    )
    assert reap(report.successor_pid) == 0
    plain = report.to_plain()
    assert json.loads(json.dumps(plain)) == plain
    assert plain["outcome"] == "ready" and plain["listeners"] == ["tcp"]
    assert plain["readable"] == {"counters": [1]}
    assert all(seconds >= 0 for seconds in report.timings.values())
    assert "\n" not in report.summary()


# A successor that reports READY under its parent's pid instead of its own.
WRONG_READY = r"""
import os
from statemigrate.handoff import HandoffError, HandoffTimeouts, receive_handoff
inheritance = receive_handoff(timeouts=HandoffTimeouts(commit=60))
inheritance.hello({}).release()
os.getpid = os.getppid
try:
    inheritance.ready()
except HandoffError as exc:
    print(exc, flush=True)
    raise SystemExit(4)
print("took over", flush=True)
"""


def test_spawn_handoff_refuses_a_ready_naming_another_pid(listener):
    calls = Calls()
    with pytest.raises(HandoffError) as caught:
        send_handoff(
            Spawn([sys.executable, "-c", WRONG_READY]),
            listeners={"tcp": listener},
            export_state=lambda readable: b"state",
            control=calls,
            timeouts=HandoffTimeouts(kill_grace=30.0),
        )
    error = caught.value
    assert not isinstance(error, SuccessorFailedError)  # it misbehaved; it did not give up
    assert error.stage == "ready"
    assert f"READY names pid {os.getpid()}, the successor is pid" in error.detail
    assert calls.log == ["pause", "resume"]  # never committed; we go on serving
    assert error.report is not None and error.report.successor_exit is not None
    assert error.report.successor_pid is not None
    with pytest.raises(ChildProcessError):  # stopped and reaped
        os.waitpid(error.report.successor_pid, os.WNOHANG)
    listener.settimeout(0)
    with socket.create_connection(listener.getsockname()):
        listener.accept()[0].close()  # the listener still works in the old process


class Interrupted(BaseException):
    """Stands in for KeyboardInterrupt (or a cancelled task) arriving in stop_accepting()."""


def test_an_interruption_after_commit_never_resumes_the_old_server(listener, tmp_path, caplog):
    """Once COMMIT is sent the successor owns the state: even a BaseException from
    stop_accepting() must not resume the old server's writers (two owners)."""
    calls = Calls()

    def stop_accepting() -> None:
        calls.log.append("stop_accepting")
        raise Interrupted

    control = ControlCallbacks(
        pause=calls.pause, resume=calls.resume, stop_accepting=stop_accepting
    )
    with caplog.at_level(logging.INFO, logger="statemigrate.handoff"):
        with pytest.raises(Interrupted):
            send_handoff(
                Spawn([sys.executable, SUCCESSOR, "report", str(tmp_path / "out")], cwd=HERE),
                listeners={"tcp": listener},
                export_state=lambda readable: b"state",
                control=control,
            )
    [pid] = [int(p) for p in re.findall(r"started successor pid (\d+)", caplog.text)]
    assert reap(pid) == 0
    [result] = read_json_lines(tmp_path / "out")
    assert bytes.fromhex(result["snapshot"]) == b"state"  # the successor took over
    assert calls.log == ["pause", "stop_accepting"]  # and the old server stayed paused
