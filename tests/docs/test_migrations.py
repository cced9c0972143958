"""docs/migrations.md's whole modules (its python blocks that begin with imports) run as
written, each in a process of its own; the other blocks continue them and are not run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrations.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
IMPORT = re.compile(r"(?:import|from) \w")


def modules(text: str) -> list[str]:
    """The python blocks whose first line of code is an import: whole modules, which
    define or import every name they use (the others continue one of them)."""
    found = []
    for language, body in FENCE.findall(text):
        code = [line for line in body.splitlines() if line.strip() and not line.startswith("#")]
        if language == "python" and code and IMPORT.match(code[0]):
            found.append(body)
    return found


def run(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    program = folder / "example.py"
    program.write_text(code)
    return subprocess.run(
        [sys.executable, "-W", "error", program.name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_guide_has_a_whole_module() -> None:
    """So that the test below runs something: the schemas example is one."""
    found = modules(GUIDE.read_text())
    assert any('@sm.schema("settings", version=1)' in code for code in found)


@pytest.mark.parametrize("index", range(len(modules(GUIDE.read_text()))))
def test_each_whole_module_runs(index: int, tmp_path: Path) -> None:
    """Before, the schemas example used ``Literal`` without importing it (NameError)."""
    done = run(modules(GUIDE.read_text())[index], tmp_path)
    assert done.returncode == 0, done.stderr


def test_a_module_missing_an_import_fails(tmp_path: Path) -> None:
    """Negative control: the schemas example without its ``Literal`` import fails."""
    code = next(c for c in modules(GUIDE.read_text()) if "Literal[" in c)
    done = run(code.replace("from typing import Literal\n", ""), tmp_path)
    assert done.returncode != 0 and "NameError: name 'Literal'" in done.stderr
