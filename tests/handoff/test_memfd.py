"""E7: a sent snapshot memfd cannot be changed by its sender; the receiver maps it safely."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from handoff_children.harness import HERE, script

ROUNDS = 10_000 if os.environ.get("STATEMIGRATE_SOAK") else 1_000


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script("memfd_rounds.py"), *args],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_sealed_memfd_resists_every_change_after_sending():
    done = run("sealed", str(ROUNDS))
    assert done.returncode == 0, done.stderr  # in particular, not killed by SIGBUS
    result = json.loads(done.stdout)
    print(f"E7: {result}")
    assert result["rounds"] == ROUNDS
    assert result["matched"] == ROUNDS
    assert result["other"] == []
    assert result["eperm"] == {
        "write": ROUNDS,
        "pwrite": ROUNDS,
        "shrink": ROUNDS,
        "grow": ROUNDS,
        "fallocate": ROUNDS,
        "add_seal": ROUNDS,
        "reopen_write": ROUNDS,
        "mmap_shared_write": ROUNDS,
    }


def test_negative_control_unsealed_memfd_truncated_under_a_mapping_kills_the_reader():
    """Why the seals matter: without them the same reader dies of SIGBUS."""
    done = run("unsealed")
    assert done.returncode == -signal.SIGBUS
