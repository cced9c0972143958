"""install_signal_trigger: a signal runs the callback in a thread, one run at a time."""

from __future__ import annotations

import logging
import os
import signal
import threading

from handoff_children.harness import wait_for

from statemigrate import HandoffError
from statemigrate.handoff import install_signal_trigger


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


def test_signals_during_a_run_are_ignored():
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


def test_callback_errors_are_logged_not_raised(caplog):
    def failing() -> None:
        raise HandoffError("ready", "successor said no")

    uninstall = install_signal_trigger(failing)
    try:
        with caplog.at_level(logging.WARNING, logger="statemigrate.handoff"):
            os.kill(os.getpid(), signal.SIGUSR2)
            wait_for(lambda: "successor said no" in caplog.text, 30, "the warning")
    finally:
        uninstall()
    assert "handoff triggered by signal" in caplog.text
