"""The README's example runs as written and leaves a snapshot that `inspect` reads."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import statemigrate.stores
from statemigrate.cli._main import build_parser, main

README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_readme_facts_match_the_package() -> None:
    """Platform, Python version, stores, extras and commands as the package has them."""
    text = README.read_text()
    with (README.parent / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    assert project["requires-python"] == ">=3.11" and "Python 3.11+" in text
    assert "Linux only" in text
    stores = {n for n in statemigrate.stores.__all__ if n.endswith("Store") and n != "Store"}
    assert stores == {"MemfdStore", "MemoryStore", "ObjectStore", "TmpfsStore"}
    assert all(f"| `{store}` |" in text for store in stores)
    extras = set(re.findall(r"statemigrate\[(\w+)\]", text))
    # Every extra a user installs is named, and nothing else: dev and docs build this.
    assert extras == set(project["optional-dependencies"]) - {"dev", "docs"}
    assert "obstore" in " ".join(project["optional-dependencies"]["objectstore"])
    assert ".venv/bin/statemigrate demo" in text
    parser = build_parser()
    assert parser.parse_args(["demo"]).func.__name__ == "demo_command"
