"""The demo end to end: upgrades and a rollback under load lose and refuse nothing."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from statemigrate._cli import main
from statemigrate.demo import DemoReport, run_demo
from statemigrate.demo._run import PLAN, HandoffPhase

BROKEN = Path(__file__).resolve().parent / "demo_children" / "broken_server.py"


def test_demo_command_upgrades_rolls_back_and_loses_nothing() -> None:
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
    # Every handoff happened under load: the clients saw held requests answered 503.
    assert report["retries"] > 0
    assert report["entries_after"] >= report["entries_before"]


def test_demo_with_one_request_per_connection() -> None:
    report = run_demo(entries=200, clients=4, settle=0.5, fresh_connections=True)
    assert report.passed, report.render()
    assert report.refused == 0 and report.reset == 0 and report.lost == 0


def test_negative_control_a_server_acknowledging_during_the_handoff_is_caught() -> None:
    """The same run against a server that does not hold writers must fail the checks."""
    report = run_demo(
        entries=200, clients=4, settle=0.5, server_argv=[sys.executable, str(BROKEN)]
    )
    assert len(report.handoffs) == len(PLAN)  # the handoffs themselves "succeed"
    assert report.lost > 0, report.render()
    assert not report.passed


def test_report_fails_on_any_refusal_reset_loss_or_failed_handoff() -> None:
    def report(**changes: object) -> DemoReport:
        base = DemoReport(entries=1, clients=1)
        base.handoffs = [HandoffPhase(source=s, target=t, ok=True) for s, t, _ in PLAN]
        for name, value in changes.items():
            setattr(base, name, value)
        return base

    assert report().passed
    for name in ("refused", "reset", "timeouts", "errors", "lost", "unexpected"):
        assert not report(**{name: 1}).passed, name
    assert not report(handoffs=[]).passed
    assert not report(problems=["x"]).passed
    failed = report()
    failed.handoffs[1].ok = False
    assert not failed.passed
    assert "FAIL" in failed.render()
