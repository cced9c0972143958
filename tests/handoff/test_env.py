"""Naming inherited descriptors in STATEMIGRATE_FDS: format, parse, hand to a child, take once;
receive_handoff() refuses malformed values without touching a descriptor."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemigrate import HandoffError
from statemigrate._runtime import _gate
from statemigrate.handoff import receive_handoff, started_by_handoff
from statemigrate.handoff._env import (
    FDS_VAR,
    PARENT_PID_VAR,
    format_fds,
    parse_fds,
    successor_environ,
    take_environ,
)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789_.-", min_size=1, max_size=64)


@given(st.dictionaries(names, st.integers(min_value=3, max_value=1 << 20), max_size=20))
def test_parse_inverts_format(named):
    """Property: parse_fds(format_fds(m)) == m for valid names and distinct fds >= 3."""
    if len(set(named.values())) != len(named):
        return  # two names for one descriptor are refused, tested below
    assert parse_fds(format_fds(named)) == named


@given(st.text(max_size=40))
def test_parse_raises_only_handoff_error(text):
    """Property: any string parses to a mapping of fds >= 3 or raises HandoffError."""
    try:
        named = parse_fds(text)
    except HandoffError as exc:
        assert exc.stage == "inherit"
    else:
        assert all(fd >= 3 for fd in named.values())


@pytest.mark.parametrize(
    "text",
    [
        "http",
        "http=",
        "http=x",
        "=4",
        "http=2",
        "http=4:http=5",
        "a=4:b=4",
        "bad name=4",
        "a=٣",
        "a=²",
        "a=-1",
        "a=+4",
        "a= 4",
        "a=4_0",
        "a=2147483648",
        "a=99999999999999999999",
        "a=" + "9" * 5000,
        "a=4:",
    ],
)
def test_malformed_values_are_refused(text):
    with pytest.raises(HandoffError, match=FDS_VAR):
        parse_fds(text)


def test_format_refuses_stdio_and_bad_names():
    with pytest.raises(HandoffError, match="0-2 cannot be named"):
        format_fds({"http": 1})
    with pytest.raises(HandoffError, match="must be 1-64 characters"):
        format_fds({"a:b": 5})


def test_successor_environ_drops_stale_descriptor_names():
    base = {
        "PATH": "/bin",
        FDS_VAR: "old=9",
        "LISTEN_FDS": "2",
        "LISTEN_PID": "1",
        "NOTIFY_SOCKET": "/x",
    }
    env = successor_environ(base, {"http": 5, "control": 6}, parent_pid=42)
    assert env == {
        "PATH": "/bin",
        "NOTIFY_SOCKET": "/x",
        FDS_VAR: "http=5:control=6",
        PARENT_PID_VAR: "42",
    }


def test_take_environ_without_handoff_is_none():
    env = {"PATH": "/bin"}
    assert take_environ(env) is None
    assert env == {"PATH": "/bin"}


def test_take_environ_reads_once_and_unsets():
    env = {FDS_VAR: "http=5:control=6", PARENT_PID_VAR: str(os.getppid()), "HOME": "/"}
    named = take_environ(env)
    assert named is not None
    assert named.fds == {"http": 5, "control": 6}
    assert named.parent_pid == os.getppid()
    assert env == {"HOME": "/"}
    assert take_environ(env) is None


def test_started_by_handoff_tells_a_successor_from_a_cold_start(monkeypatch):
    monkeypatch.setattr(_gate, "_descriptors_taken", False)
    monkeypatch.delenv(FDS_VAR, raising=False)
    monkeypatch.delenv(PARENT_PID_VAR, raising=False)
    assert started_by_handoff() is False  # a cold start
    take_environ({FDS_VAR: "http=5", PARENT_PID_VAR: str(os.getppid())})
    assert started_by_handoff() is False  # another environment than this process's
    monkeypatch.setenv(FDS_VAR, "http=5:control=6")
    monkeypatch.setenv(PARENT_PID_VAR, str(os.getppid()))
    assert started_by_handoff() is True  # before the successor's side runs
    assert take_environ() is not None
    assert FDS_VAR not in os.environ
    assert started_by_handoff() is True  # and after it took the descriptors


def test_take_environ_refuses_names_meant_for_another_process():
    # A process that runs and is not our parent: this one.
    env = {FDS_VAR: "http=5", PARENT_PID_VAR: str(os.getpid())}
    with pytest.raises(HandoffError, match="our parent is pid") as caught:
        take_environ(env)
    assert caught.value.stage == "inherit"
    assert env == {}  # unset all the same: they must not reach our children


def test_names_from_a_process_that_died_say_it_died() -> None:
    """The usual reason for a parent that is not ours: the old process was killed
    before the handoff, and this one was handed to another parent."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process now
    env = {FDS_VAR: "http=5", PARENT_PID_VAR: str(child.pid)}
    with pytest.raises(HandoffError, match="which is no longer running") as caught:
        take_environ(env)
    assert f"named by pid {child.pid}, the process that started this one" in str(caught.value)
    assert f"our parent is now pid {os.getppid()}" in str(caught.value)
    assert f"the old process (pid {child.pid}) died during the handoff" in str(caught.value)


def test_names_from_a_process_that_died_unreaped_say_it_died() -> None:
    """Killed under a parent that does not wait for it, the old process lingers as a
    zombie: it answers a signal check, yet it died."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    try:
        env = {FDS_VAR: "http=5", PARENT_PID_VAR: str(child.pid)}
        with pytest.raises(HandoffError, match="which is no longer running") as caught:
            take_environ(env)
        assert f"the old process (pid {child.pid}) died during the handoff" in str(caught.value)
        assert "restart it" in str(caught.value)
    finally:
        child.wait()


def test_take_environ_needs_the_parent_pid():
    with pytest.raises(HandoffError, match=f"{FDS_VAR} is set but {PARENT_PID_VAR} is not"):
        take_environ({FDS_VAR: "http=5"})


@pytest.mark.parametrize(
    "text", ["", "0", "-1", "+5", " 5", "5 ", "²", "٣", "1_0", "0x10", "2147483648", "9" * 5000]
)
def test_a_malformed_parent_pid_is_refused_with_its_value(text):
    env = {FDS_VAR: "http=5", PARENT_PID_VAR: text}
    with pytest.raises(HandoffError) as caught:
        take_environ(env)
    assert caught.value.stage == "inherit"
    message = str(caught.value)
    assert f"{PARENT_PID_VAR}={repr(text)[:20]}" in message and "is not a pid" in message
    assert "\n" not in message and len(message) < 200
    assert env == {}


@pytest.fixture
def own_fds():
    """Two descriptors this process opened itself (close-on-exec, like all of Python's)."""
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(2)]
    yield fds
    for fd in fds:
        os.close(fd)


def still_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "value",
    [
        "control=2147483648",
        "control=99999999999999999999",
        "control=-1",
        "control=" + "7" * 400,
        "http=4:control=" + "1" * 30,
        "control=٣",
    ],
)
def test_receive_handoff_refuses_out_of_range_descriptor_numbers(monkeypatch, value):
    monkeypatch.setenv(FDS_VAR, value)
    monkeypatch.setenv(PARENT_PID_VAR, str(os.getppid()))
    with pytest.raises(HandoffError, match=f"{FDS_VAR}: malformed entry") as caught:
        receive_handoff()
    assert caught.value.stage == "inherit"
    assert len(str(caught.value)) < 200
    assert FDS_VAR not in os.environ and PARENT_PID_VAR not in os.environ


def test_receive_handoff_never_closes_descriptors_that_were_not_passed(monkeypatch, own_fds):
    """Numbers naming this process's own descriptors are refused; they stay open."""
    control, listener = own_fds
    monkeypatch.setenv(FDS_VAR, f"control={control}:http={listener}")
    monkeypatch.setenv(PARENT_PID_VAR, str(os.getppid()))
    with pytest.raises(HandoffError, match=f"names 'control': fd {control} is close-on-exec"):
        receive_handoff()
    assert still_open(control) and still_open(listener)


def test_receive_handoff_refuses_a_descriptor_that_is_not_open(monkeypatch, own_fds):
    closed = max(own_fds) + 1000  # far above anything this process holds
    assert not still_open(closed)
    monkeypatch.setenv(FDS_VAR, f"control={closed}:http={own_fds[0]}")
    monkeypatch.setenv(PARENT_PID_VAR, str(os.getppid()))
    with pytest.raises(HandoffError, match=f"'control': fd {closed} is not open") as caught:
        receive_handoff()
    assert "was not passed to us" in str(caught.value)
    assert all(still_open(fd) for fd in own_fds)
