"""The README's example runs as written and leaves a snapshot that `inspect` reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from statemigrate._cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_its_snapshot_inspects(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    store = tmp_path / "gateway"
    script = tmp_path / "example.py"
    script.write_text(blocks[0].replace("/dev/shm/gateway", str(store)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("restored "), done.stdout
    assert main(["inspect", "--verify", str(store / "current")]) == 0


def test_readme_set_up_commands_match_ci() -> None:
    """The README's test command is the one .ci/run runs."""
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest" in text
    assert ".venv/bin/python -m pytest" in ci
