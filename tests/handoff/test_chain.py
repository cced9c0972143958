"""E1: a chain of spawn handoffs (100 in CI, 1,000 with STATEMIGRATE_SOAK=1) leaks no descriptor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from handoff_children.harness import HERE, script

SOAK = bool(os.environ.get("STATEMIGRATE_SOAK"))
GENERATIONS = 1000 if SOAK else 100


def run_chain(generations: int, *, leak: bool = False) -> list[dict[str, object]]:
    """Run the chain under a subreaper; return each generation's report, by generation."""
    argv = [sys.executable, script("reaper.py"), sys.executable, script("chain.py")]
    argv += [str(generations)] + (["--leak"] if leak else [])
    proc = subprocess.Popen(
        argv, cwd=HERE, stdout=subprocess.PIPE, close_fds=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=60 + generations * 3)  # a hang guard, not a figure
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the reaper's session: only our chain
            proc.communicate()
    assert proc.returncode == 0
    reports = [json.loads(line) for line in out.decode().splitlines()]
    return sorted(reports, key=lambda r: int(r["generation"]))


def leaks(reports: list[dict[str, object]]) -> dict[str, int]:
    counts = {"at_start": 0, "after_takeover": 0, "after_handoff": 0}
    for report in reports:
        for key in counts:
            counts[key] += len(report[key])  # type: ignore[arg-type]
    return counts


@pytest.mark.slow
def test_chain_of_handoffs_leaks_no_descriptor():
    reports = run_chain(GENERATIONS)
    counts = leaks(reports)
    print(f"E1: {len(reports)} generations, leaked descriptors: {counts}")
    assert [r["generation"] for r in reports] == list(range(GENERATIONS))
    # Each generation is a new process. Pids may come round again over a long chain
    # (pid_max is 32768 on many machines), but never from one generation to the next.
    pids = [r["pid"] for r in reports]
    assert all(before != after for before, after in zip(pids, pids[1:], strict=False))
    assert counts == {"at_start": 0, "after_takeover": 0, "after_handoff": 0}


@pytest.mark.slow
def test_negative_control_a_forgotten_descriptor_is_caught():
    """The same check, against generations that each keep a stray copy of a received fd."""
    reports = run_chain(4, leak=True)
    assert [r["generation"] for r in reports] == [0, 1, 2, 3]
    assert [len(r["after_takeover"]) for r in reports] == [1, 1, 1, 1]  # type: ignore[arg-type]
    assert [len(r["at_start"]) for r in reports] == [0, 0, 0, 0]  # type: ignore[arg-type]
