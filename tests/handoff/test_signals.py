"""install_signal_trigger: a signal runs the callback in a thread, one run at a time;
install_signal_trigger_async: a signal runs the coroutine as a task on the loop, one at a time."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable

import pytest
from handoff_children.harness import wait_for

from statemigrate import ConfigurationError, HandoffError
from statemigrate.handoff import install_signal_trigger, install_signal_trigger_async
from statemigrate.handoff._report import HandoffReport


def test_signal_runs_the_callback_in_a_thread():
    ran: list[str] = []
    uninstall = install_signal_trigger(lambda: ran.append(threading.current_thread().name))
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        wait_for(lambda: len(ran) == 1, 30, "the callback")
    finally:
        uninstall()
    assert ran == ["statemigrate-handoff"]
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def test_signals_during_a_run_are_ignored(caplog):
    release = threading.Event()
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        release.wait(30)

    uninstall = install_signal_trigger(slow, signum=signal.SIGUSR1)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for(lambda: len(calls) == 1, 30, "the first run")
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGUSR1)  # handled in the main thread, ignored
        release.set()
        wait_for(
            lambda: not any(t.name == "statemigrate-handoff" for t in threading.enumerate()),
            30,
            "the run to end",
        )
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for(lambda: len(calls) == 2, 30, "the second run")
    finally:
        release.set()
        uninstall()
    assert calls == [1, 1]
    said = [r.getMessage() for r in caplog.records if "while that handoff ran" in r.getMessage()]
    assert said == [f"signal {signal.SIGUSR1} came 3 more time(s) while that handoff ran:"
                    " ignored; send it again to start another"]


@pytest.mark.parametrize(
    ("reported", "level"),
    [(False, logging.WARNING), (True, logging.INFO)],
    ids=["unreported", "reported"],
)
def test_callback_errors_are_logged_not_raised(caplog, reported, level):
    """A failed callback is logged, not raised. send_handoff logs its failed attempt's
    report as a WARNING already; the trigger's own line about such a failure (one with
    a report) comes at INFO, so that one failure is not warned of twice."""
    report = HandoffReport(outcome="failed", transport="spawn", stage="ready")

    def failing() -> None:
        raise HandoffError("ready", "successor said no", report=report if reported else None)

    uninstall = install_signal_trigger(failing)
    try:
        with caplog.at_level(logging.INFO, logger="statemigrate.handoff"):
            os.kill(os.getpid(), signal.SIGUSR2)
            wait_for(lambda: "successor said no" in caplog.text, 30, "the line")
    finally:
        uninstall()
    (line,) = [r for r in caplog.records if "handoff triggered by signal" in r.getMessage()]
    assert line.levelno == level


async def _until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(3000):  # a hang guard of about 30 s, not a timing assertion
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def test_async_trigger_runs_the_coroutine_as_a_task_on_the_loop():
    ran: list[tuple[str, str]] = []

    async def callback() -> None:
        task = asyncio.current_task()
        assert task is not None
        ran.append((task.get_name(), threading.current_thread().name))

    async def scenario() -> None:
        uninstall = install_signal_trigger_async(callback)
        try:
            os.kill(os.getpid(), signal.SIGUSR2)
            await _until(lambda: len(ran) == 1, "the callback")
        finally:
            uninstall()

    asyncio.run(scenario())
    assert ran == [("statemigrate-handoff", threading.main_thread().name)]
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # the previous handler is back


def test_async_trigger_ignores_signals_during_a_run(caplog):
    calls: list[int] = []

    async def scenario() -> None:
        release = asyncio.Event()

        async def slow() -> None:
            calls.append(1)
            await release.wait()

        uninstall = install_signal_trigger_async(slow, signum=signal.SIGUSR1)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await _until(lambda: len(calls) == 1, "the first run")
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGUSR1)
                await asyncio.sleep(0.05)  # let the loop handle each one (and ignore it)
            release.set()
            names = lambda: {task.get_name() for task in asyncio.all_tasks()}  # noqa: E731
            await _until(lambda: "statemigrate-handoff" not in names(), "the run to end")
            os.kill(os.getpid(), signal.SIGUSR1)
            await _until(lambda: len(calls) == 2, "the second run")
        finally:
            release.set()
            uninstall()

    asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert len(said) == 3 and said[0] == (
        f"signal {signal.SIGUSR1} ignored: the handoff it started earlier is still running"
    )
    assert calls == [1, 1]


def test_async_trigger_logs_callback_errors(caplog):
    async def failing() -> None:
        raise HandoffError("ready", "successor said no")

    async def scenario() -> None:
        uninstall = install_signal_trigger_async(failing)
        try:
            os.kill(os.getpid(), signal.SIGUSR2)
            await _until(lambda: "successor said no" in caplog.text, "the warning")
        finally:
            uninstall()

    with caplog.at_level(logging.WARNING, logger="statemigrate.handoff"):
        asyncio.run(scenario())
    assert "handoff triggered by signal" in caplog.text


def test_async_trigger_needs_a_running_loop():
    async def callback() -> None: ...

    with pytest.raises(ConfigurationError, match="running loop"):
        install_signal_trigger_async(callback)


def test_stop_signals_wait_for_the_run_to_end():
    """SIGTERM during a run reaches its handler once the run is over, not before."""
    release = threading.Event()
    events: list[str] = []

    def slow() -> None:
        events.append("run")
        release.wait(30)
        events.append("run over")

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: events.append("SIGTERM"))
    uninstall = install_signal_trigger(slow, signum=signal.SIGUSR1)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for(lambda: events == ["run"], 30, "the run")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(20):  # the main thread handles signals between these
            threading.Event().wait(0.01)
        assert events == ["run"]  # held
        release.set()
        wait_for(lambda: "SIGTERM" in events, 30, "the held signal")
        assert events == ["run", "run over", "SIGTERM"]
        os.kill(os.getpid(), signal.SIGTERM)  # no run: handled at once, by the handler
        wait_for(lambda: events.count("SIGTERM") == 2, 30, "the second signal")
    finally:
        release.set()
        uninstall()
        signal.signal(signal.SIGTERM, previous)


def test_hold_can_be_turned_off():
    release = threading.Event()
    events: list[str] = []

    def slow() -> None:
        events.append("run")
        release.wait(30)

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: events.append("SIGTERM"))
    uninstall = install_signal_trigger(slow, signum=signal.SIGUSR1, hold=())
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for(lambda: events == ["run"], 30, "the run")
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(lambda: "SIGTERM" in events, 30, "the signal")
    finally:
        release.set()
        uninstall()
        signal.signal(signal.SIGTERM, previous)
