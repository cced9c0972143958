"""The handoff's configuration and results: HandoffTimeouts, Spawn, the server controls and
their adapters, arguments refused before anything starts, and both sides' reports."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import threading
import time

import pytest

import statemigrate as sm
from statemigrate.handoff import (
    AsyncControlCallbacks,
    ControlCallbacks,
    HandoffError,
    HandoffReport,
    HandoffTimeouts,
    Spawn,
    SuccessorFailedError,
    TakeOverReport,
    hand_over_async,
    receive_handoff,
    send_handoff,
    send_handoff_async,
    take_over,
    take_over_async,
)
from statemigrate.handoff._drive import run_blocking, wait_readable
from statemigrate.handoff._fdcheck import open_fds
from statemigrate.reference import KVCacheV1, build_registry

# -- HandoffTimeouts -------------------------------------------------------------------


def test_timeouts_have_safe_defaults_and_are_frozen():
    timeouts = HandoffTimeouts()
    assert (timeouts.hello, timeouts.snapshot, timeouts.ready, timeouts.commit) == (30, 60, 30, 30)
    assert timeouts.kill_grace == 5
    assert HandoffTimeouts(ready=120).ready == 120 and HandoffTimeouts(ready=120).hello == 30
    with pytest.raises(AttributeError):
        timeouts.ready = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hello", 0),
        ("ready", -1.0),
        ("snapshot", math.nan),
        ("commit", math.inf),
        ("kill_grace", True),
        ("hello", "30"),
        ("ready", None),
    ],
)
def test_timeouts_refuse_what_is_not_a_positive_finite_number(field, value):
    with pytest.raises(sm.ConfigurationError) as caught:
        HandoffTimeouts(**{field: value})
    assert caught.value.option == f"timeouts.{field}"
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value) and repr(value) in str(caught.value)


def test_a_wait_far_longer_than_poll_can_express_still_works():
    """A deadline 10^9 s away exceeds poll(2)'s int milliseconds (OverflowError once)."""
    r, w = os.pipe()
    try:
        os.write(w, b"!")
        assert run_blocking(wait_readable([r], time.monotonic() + 1e9), None) == r
    finally:
        os.close(r)
        os.close(w)


# -- Spawn -----------------------------------------------------------------------------


def test_spawn_keeps_its_command_line_as_a_tuple():
    spawn = Spawn(["python", "-m", "svc"], env={"A": "1"}, cwd="/tmp")
    assert spawn.argv == ("python", "-m", "svc") and spawn.env == {"A": "1"}
    assert spawn.cwd == "/tmp"


@pytest.mark.parametrize("argv", ["python -m svc", b"python", [], ["python", 3], None])
def test_spawn_refuses_what_is_not_a_command_line(argv):
    with pytest.raises(sm.ConfigurationError) as caught:
        Spawn(argv)
    assert caught.value.option == "argv"


# -- server controls -------------------------------------------------------------------


def test_control_callbacks_call_only_what_was_given():
    calls: list[str] = []
    control = ControlCallbacks(pause=lambda: calls.append("pause"))
    control.pause()
    control.resume()
    control.stop_accepting()
    assert calls == ["pause"]
    assert repr(control) == "ControlCallbacks(pause)"
    with pytest.raises(sm.ConfigurationError, match="resume: must be a function"):
        ControlCallbacks(resume="later")  # type: ignore[arg-type]


def test_async_control_callbacks_await_only_what_was_given():
    calls: list[str] = []

    async def resume() -> None:
        calls.append("resume")

    async def run() -> None:
        control = AsyncControlCallbacks(resume=resume)
        await control.pause()
        await control.resume()
        await control.stop_accepting()

    asyncio.run(run())
    assert calls == ["resume"]


class AsyncServer:
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def stop_accepting(self) -> None: ...


class BlockingServer:
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop_accepting(self) -> None: ...


def test_each_flavour_refuses_the_other_flavours_control_before_starting_anything():
    """An async control in the blocking flavour would never be paused (its coroutines
    never run), and the other way round: both are refused before any process starts."""
    missing = Spawn(["/nonexistent/successor"])  # starting it would fail at stage spawn
    with pytest.raises(sm.ConfigurationError, match="is a coroutine function") as caught:
        send_handoff(missing, listeners={}, export_state=lambda r: b"", control=AsyncServer())  # type: ignore[arg-type]
    assert caught.value.option == "control"
    with pytest.raises(sm.ConfigurationError, match="not a coroutine function"):
        asyncio.run(
            send_handoff_async(
                missing,
                listeners={},
                export_state=lambda r: b"",
                control=BlockingServer(),  # type: ignore[arg-type]
            )
        )
    service = sm.Service("api", registry=build_registry())
    with pytest.raises(sm.ConfigurationError, match="not a coroutine function"):
        asyncio.run(
            hand_over_async(
                service, missing, listeners={}, control=BlockingServer()  # type: ignore[arg-type]
            )
        )
    half = ControlCallbacks()
    half.stop_accepting = None  # type: ignore[assignment,method-assign]
    with pytest.raises(sm.ConfigurationError, match=r"has no stop_accepting\(\) method"):
        send_handoff(missing, listeners={}, export_state=lambda r: b"", control=half)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"successor": ["python", "-m", "svc"]}, "successor"),
        ({"timeouts": 30}, "timeouts"),
        ({"export_state": b"state"}, "export_state"),
    ],
)
def test_arguments_of_the_wrong_kind_are_refused_in_one_line(kwargs, option):
    call = {"successor": Spawn(["/bin/true"]), "listeners": {}, "export_state": lambda r: b""}
    call.update(kwargs)
    successor = call.pop("successor")
    with pytest.raises(sm.ConfigurationError) as caught:
        send_handoff(successor, **call)  # type: ignore[arg-type]
    assert caught.value.option == option
    assert "\n" not in str(caught.value)


def test_receive_handoff_refuses_timeouts_of_the_wrong_kind():
    with pytest.raises(sm.ConfigurationError):
        receive_handoff(timeouts={"snapshot": 5})  # type: ignore[call-overload]


# -- errors and reports ----------------------------------------------------------------


def test_successor_failed_error_is_a_handoff_error_with_its_facts():
    error = SuccessorFailedError(
        "ready", "the successor failed: no", reason="no", exit_status=1
    )
    assert isinstance(error, HandoffError) and isinstance(error, sm.StateMigrateError)
    assert (error.stage, error.reason, error.exit_status, error.report) == ("ready", "no", 1, None)
    assert str(error) == "handoff failed at ready: the successor failed: no"
    assert sm.HandoffError is HandoffError


def test_a_failed_report_summarises_in_one_line_and_is_plain_data():
    report = HandoffReport(
        outcome="failed",
        transport="spawn",
        stage="ready",
        reason="the successor failed: bad\nstate",
        successor_pid=42,
        successor_exit=-9,
        listeners=("http",),
        readable={"kvcache": (1, 2)},
        timings={"spawn": 0.001, "total": 0.5},
        problems=("resume() raised RuntimeError()",),
    )
    assert report.summary().startswith("handoff failed at ready: the successor failed: bad")
    plain = report.to_plain()
    assert json.loads(json.dumps(plain)) == plain
    assert plain["readable"] == {"kvcache": [1, 2]} and plain["successor_exit"] == -9
    assert plain["problems"] == ["resume() raised RuntimeError()"] and not report.ok


def _service(entries: dict[str, str]) -> sm.Service:
    cache = KVCacheV1()
    for key, value in entries.items():
        cache.set(key, value)
    service = sm.Service("api", registry=build_registry())
    service.register(cache)
    return service


@pytest.mark.parametrize("flavour", ["blocking", "asyncio"])
def test_take_over_returns_the_successors_report(flavour, caplog):
    """Both flavours of take_over, over a socket pair: the state arrives, and the report
    says from whom, what was announced, the restore's own report and the waits; its
    summary is the take-over's one log line."""
    caplog.set_level(logging.INFO, logger="statemigrate.handoff")
    entries = {f"k{i}": f"v{i}" for i in range(50)}
    old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    source = _service(entries)
    outcome: dict[str, HandoffReport] = {}

    def old_side() -> None:
        outcome["report"] = send_handoff(
            old, listeners={}, export_state=lambda readable: source.snapshot()[0].to_bytes()
        )

    thread = threading.Thread(target=old_side)
    thread.start()
    target = _service({})
    try:
        baseline = open_fds()
        inheritance = receive_handoff(new)
        with inheritance:
            if flavour == "blocking":
                report = take_over(target, inheritance)
            else:
                report = asyncio.run(take_over_async(target, inheritance))
    finally:
        thread.join(timeout=60)
        old.close()
    if inheritance.held_watch is not None:  # it closes the channel once HELD came
        inheritance.held_watch.join(30)  # only stops a hang
    assert open_fds() <= baseline  # the channel was closed, nothing received kept
    assert isinstance(report, TakeOverReport)
    assert target.components[0].obj.entries == entries  # type: ignore[attr-defined]
    assert report.parent_pid == os.getpid() and report.transport == "socket"
    assert report.readable == {"kvcache": (1,)}
    assert report.snapshot_size == outcome["report"].snapshot_size > 0
    assert [c.component for c in report.restore.components] == ["kvcache"]
    assert set(report.timings) == {"snapshot_wait", "restore", "commit_wait", "total"}
    assert report.summary().startswith(f"took over from pid {os.getpid()} (socket):")
    assert "\n" not in report.summary()
    took_over = [r.getMessage() for r in caplog.records if "took over" in r.getMessage()]
    assert took_over == [f"handoff: {report.summary()}"]
    plain = report.to_plain()
    assert json.loads(json.dumps(plain))["readable"] == {"kvcache": [1]}
    assert plain["restore"]["snapshot_id"] == report.restore.snapshot_id
