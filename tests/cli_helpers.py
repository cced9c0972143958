"""Running the command line in this process from a test, and what it printed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from statemigrate.cli._main import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """Call main() in this process, as a test calls any plain function."""
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
