"""A process started as a successor whose predecessor died before the handoff: the
adapters' ``run`` ends it with one ERROR line and exit status 1, not a traceback
(``serve`` raises, for callers of their own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("crash_after_serving.py")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
@pytest.mark.parametrize("server", ["aiohttp", "uvicorn", "hypercorn"])
def test_a_successor_orphaned_before_the_handoff_exits_1_with_one_line(
    server: str, tmp_path: Path
) -> None:
    env = dict(os.environ)
    env["STATEMIGRATE_FDS"] = "control=0"
    env["STATEMIGRATE_PARENT_PID"] = str(_dead_pid())
    run = subprocess.run(
        [sys.executable, str(CHILD), server, "0", str(tmp_path)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, run.stderr
    assert "handoff failed at inherit" in errors[0]
    assert "no longer running" in errors[0] and errors[0].endswith("this process exits")
