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


def one_error_line(result: Result, code: int = 1) -> str:
    """The contract of every failure: the status, nothing on stdout, one stderr line
    (no traceback); returns that line."""
    assert result.code == code, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("statemigrate: error: "), result.err
    return lines[0]
