"""The demo end to end: upgrades and a rollback under load lose and refuse nothing."""

from __future__ import annotations

import functools
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from statemigrate.cli._main import main
from statemigrate.demo import DemoReport, _run, run_demo
from statemigrate.demo._procs import ChildExited, ChildGroup
from statemigrate.demo._run import PLAN, HandoffPhase

CHILDREN = Path(__file__).resolve().parents[1] / "demo_children"
BROKEN = CHILDREN / "broken_server.py"
REFUSING = CHILDREN / "refusing_server.py"
CRASHING = CHILDREN / "crashing_server.py"


@pytest.mark.slow
def test_demo_command_upgrades_rolls_back_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Half a second of load a phase, as the other runs here: the command's 1.5 s are for
    # a person watching, and each phase also waits for its minimum of requests.
    monkeypatch.setattr(_run, "run_demo", functools.partial(run_demo, settle=0.5))
    out = io.StringIO()
    status = main(["demo", "--entries", "500", "--clients", "4", "--json"], out=out)
    report = json.loads(out.getvalue())
    assert status == 0, report
    assert report["passed"] is True
    assert report["lost"] == 0 and report["unexpected"] == 0
    assert report["refused"] == 0 and report["reset"] == 0
    assert report["timeouts"] == 0 and report["errors"] == 0
    assert report["problems"] == []
    handoffs = report["handoffs"]
    assert [(h["source"], h["target"], h["ok"]) for h in handoffs] == [
        (1, 3, True),
        (3, 1, True),
        (1, 3, True),
    ]
    assert handoffs[1]["steps"] == ["kvcache 3 -> 1 (downgrade_3_to_1)"]  # the rollback
    assert all(h["pause_ms"] > 0 and h["snapshot_size"] > 0 for h in handoffs)
    assert report["entries_before"] == 500
    assert report["writes_acked"] > 0 and report["ok"] > report["writes_acked"]
    # Every handoff happened under load, and no client saw a 5xx answer.
    assert all(h["latency"]["requests"] > 0 for h in handoffs)
    assert report["server_errors"] == 0
    assert report["latency"]["requests"] == report["ok"] + report["server_errors"]
    assert report["entries_after"] >= report["entries_before"]


@pytest.mark.slow
def test_demo_with_one_request_per_connection() -> None:
    report = run_demo(entries=200, clients=4, settle=0.5, fresh_connections=True)
    assert report.passed, report.render()
    assert report.refused == 0 and report.reset == 0 and report.lost == 0


@pytest.mark.slow
def test_negative_control_a_server_acknowledging_during_the_handoff_is_caught() -> None:
    """The same run against a server that does not hold writers must fail the checks."""
    report = run_demo(
        entries=200, clients=4, settle=0.5, server_argv=[sys.executable, str(BROKEN)]
    )
    assert len(report.handoffs) == len(PLAN)  # the handoffs themselves "succeed"
    assert report.lost > 0, report.render()
    assert not report.passed


@pytest.mark.slow
def test_negative_control_a_server_refusing_held_requests_with_503_is_caught() -> None:
    """The 503s of a server that does not forward after the move fail the run."""
    report = run_demo(
        entries=200, clients=4, settle=0.5, server_argv=[sys.executable, str(REFUSING)]
    )
    assert len(report.handoffs) == len(PLAN)
    assert report.server_errors > 0, report.render()
    assert report.lost == 0  # refused writes were never acknowledged
    assert not report.passed


@pytest.mark.slow
def test_the_plot_marks_every_handoff(tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    report = run_demo(entries=200, clients=2, settle=0.3, plot=page)
    assert report.passed, report.render()
    text = page.read_text()
    assert text.count("<svg") == 1
    for h in report.handoffs:
        assert f"v{h.source}-&gt;v{h.target} pause" in text
    assert "result: PASS" in text


def test_report_fails_on_any_refusal_reset_loss_or_failed_handoff() -> None:
    def report(**changes: object) -> DemoReport:
        base = DemoReport(entries=1, clients=1)
        base.handoffs = [HandoffPhase(source=s, target=t, ok=True) for s, t, _ in PLAN]
        for name, value in changes.items():
            setattr(base, name, value)
        return base

    assert report().passed
    for name in ("server_errors", "refused", "reset", "timeouts", "errors", "lost", "unexpected"):
        assert not report(**{name: 1}).passed, name
    assert not report(handoffs=[]).passed
    assert not report(problems=["x"]).passed
    failed = report()
    failed.handoffs[1].ok = False
    assert not failed.passed
    assert "FAIL" in failed.render()


@pytest.mark.slow
def test_a_server_dying_at_start_up_ends_the_demo_with_its_error_last(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The child's end, not the 60 s hang guard, stops the wait; its error is the last line."""
    monkeypatch.setattr(_run, "SERVER", (str(CRASHING), "start"))
    status = main(["demo", "--entries", "100", "--clients", "2"])
    captured = capfd.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert status == 1
    assert last.startswith(
        "statemigrate: error: the demo server exited with status 1 before its 'ready' event: "
        "RegistrationError: migrations directory "
    ), last
    assert "no-such-migrations" in last
    assert "Traceback" not in captured.err
    assert "stopped: the demo server exited" in captured.out
    assert "result: FAIL" in captured.out


@pytest.mark.slow
def test_a_server_dying_mid_run_is_named_as_the_cause() -> None:
    """The failed request is the echo; the report names the dead server and its error."""
    report = run_demo(
        entries=100, clients=2, settle=0.2, server_argv=[sys.executable, str(CRASHING), "upgrade"]
    )
    assert not report.passed
    assert report.error == (
        "the demo server exited with status 3 during the run:"
        " FatalError: the exporter ran out of memory"
    ), report.render()
    assert report.render().splitlines()[-2] == f"  stopped: {report.error}"


@pytest.mark.parametrize("reaper", [False, True], ids=["plain", "reaped"])
def test_waiting_on_a_child_that_exits_raises_with_its_status_and_last_words(
    reaper: bool,
) -> None:
    code = "import sys; sys.stderr.write('starting\\nValueError: bad port\\n\\n'); sys.exit(3)"
    group = ChildGroup([sys.executable, "-c", code], reaper=reaper, name="the child")
    try:
        with pytest.raises(ChildExited) as caught:
            group.wait_event("ready", timeout=60.0)
    finally:
        group.kill()
    assert caught.value.status == 3
    assert caught.value.last_words == "ValueError: bad port"
    assert str(caught.value) == (
        "the child exited with status 3 before its 'ready' event: ValueError: bad port"
    )


def test_a_child_killed_by_a_signal_says_so() -> None:
    group = ChildGroup([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"])
    try:
        with pytest.raises(ChildExited, match="was killed by signal 9 before its 'done' event$"):
            group.wait_event("done", timeout=60.0)
    finally:
        group.kill()


def test_settling_stops_when_the_load_generator_dies() -> None:
    load = ChildGroup([sys.executable, "-c", "raise SystemExit('load: cannot connect')"],
                      name="the load generator")
    server = ChildGroup([sys.executable, "-c", "import sys; sys.stdin.read()"],
                        stdin=subprocess.PIPE, name="the server")
    notes: list[str] = []
    try:
        with pytest.raises(ChildExited, match="during the run: load: cannot connect$"):
            _run._settle(load, server, 0.0, 1, notes.append)
    finally:
        load.kill()
        server.kill()
    assert notes == []
