"""The old process's pause covers what a held request waits: from pause() until the
hook that lets the held requests go (stop_accepting, or resume after a failure)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from statemigrate.handoff import HandoffError, HandoffReport, receive_handoff, send_handoff

# How long the server's stop_accepting() works before it lets the held requests go
# (closing a site, waking threads): long enough to stand out of the messages' timing.
STOPPING = 0.05


class Server:
    """A server control that notes, on the handoff's clock, when it holds the writers
    and when it lets them go, and the order of its hooks."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.held_at: float | None = None
        self.released_at: float | None = None

    def pause(self) -> None:
        self.calls.append("pause")
        self.held_at = time.monotonic()

    def resume(self) -> None:
        self.calls.append("resume")
        self.released_at = time.monotonic()

    def stop_accepting(self) -> None:
        self.calls.append("stop_accepting")
        time.sleep(STOPPING)  # the server's own stopping, before the held requests go
        self.released_at = time.monotonic()

    def held(self) -> float:
        assert self.held_at is not None and self.released_at is not None
        return self.released_at - self.held_at


def _old_side(
    sock: socket.socket, server: Server, outcome: dict[str, HandoffReport | HandoffError]
) -> threading.Thread:
    def run() -> None:
        try:
            outcome["report"] = send_handoff(
                sock, listeners={}, export_state=lambda readable: b"state", control=server
            )
        except HandoffError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_pause_lasts_until_stop_accepting_lets_the_held_requests_go(pair):
    old, new = pair
    server = Server()
    outcome: dict[str, HandoffReport | HandoffError] = {}
    thread = _old_side(old, server, outcome)
    try:
        inheritance = receive_handoff(new)
        with inheritance:
            snapshot = inheritance.hello({"state": [1]})
            snapshot.release()
            inheritance.ready()
    finally:
        thread.join()
    report = outcome["report"]
    assert isinstance(report, HandoffReport) and report.ok
    assert server.calls == ["pause", "stop_accepting"]
    # Measured on the same clock in the same process: the figure holds the whole hold,
    # the server's stopping included (before, it ended at SERVING, ahead of it).
    assert report.pause_seconds >= server.held()
    assert report.pause_seconds <= report.timings["total"]
    # The successor's figure ends as it sends SERVING: it cannot see the stopping.
    assert inheritance.pause_seconds < report.pause_seconds


def test_a_failed_handoff_pauses_until_resume_lets_the_held_requests_go(pair):
    old, new = pair
    server = Server()
    outcome: dict[str, HandoffReport | HandoffError] = {}
    thread = _old_side(old, server, outcome)
    try:
        inheritance = receive_handoff(new)
        with pytest.raises(RuntimeError), inheritance:
            inheritance.hello({"state": [1]}).release()
            raise RuntimeError("the successor cannot use the state")
    finally:
        thread.join()
    error = outcome["error"]
    assert isinstance(error, HandoffError) and error.report is not None
    assert server.calls == ["pause", "resume"]
    assert error.report.pause_seconds >= server.held()


class GivingUp(Server):
    """A server whose pause gives up, as a server adapter's does on the writes still
    running after ``HandoffTimeouts.writes``: it lets the held writes go itself, and
    says why in a ``HandoffError`` of its own stage."""

    def pause(self) -> None:
        super().pause()
        self.released_at = time.monotonic()
        raise HandoffError("writes", "1 write request still running after 0.05 s of the pause")


def test_a_pause_that_gives_up_on_its_writes_fails_the_handoff_at_its_own_stage(pair):
    """The stage and detail are the pause's own, not ``pause() raised ...``; resume()
    is not called (the pause let the writes go), and the writes it held are counted."""
    old, new = pair
    server = GivingUp()
    outcome: dict[str, HandoffReport | HandoffError] = {}
    thread = _old_side(old, server, outcome)
    try:
        inheritance = receive_handoff(new)
        with pytest.raises(HandoffError, match="aborted: writes: 1 write request"), inheritance:
            inheritance.hello({"state": [1]})
    finally:
        thread.join()
    error = outcome["error"]
    assert isinstance(error, HandoffError) and error.report is not None
    assert error.stage == error.report.stage == "writes"
    assert error.detail.startswith("1 write request still running after 0.05 s")
    assert server.calls == ["pause"]
    assert error.report.pause_seconds >= server.held() > 0
