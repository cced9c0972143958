"""``--max-section-size`` and ``$STATEMIGRATE_MAX_SECTION_SIZE``: the reader's limit on
a section's decoded size lowered for files not trusted, in inspect, verify and migrate."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cli_helpers import Result, run
from golden import seal_raw

from statemigrate._snapshot._limits import DecodeLimits
from statemigrate.cli._limits import limits_from, size_value
from statemigrate.cli._main import main

pytestmark = pytest.mark.usefixtures("hermetic")

REGISTRY = ["--registry", "statemigrate.reference:build_registry"]
FLOOD = 100_000
"""Empty lists in the flood's one section: a few hundred sealed bytes, 100,005 decoded."""


@pytest.fixture
def flood(tmp_path: Path) -> Path:
    """A sealed, unauthenticated snapshot whose section is a list of empty lists: the
    decoder builds an object per byte, which the default limits admit."""
    path = tmp_path / "flood.smsnap"
    path.write_bytes(seal_raw([b"\xdd" + FLOOD.to_bytes(4, "big") + b"\x90" * FLOOD]))
    return path


def _refused(result: Result, code: int) -> None:
    assert result.code == code, result
    assert result.out == ""
    (line,) = result.err.splitlines()
    assert line == (
        "statemigrate: error: too_large: section decompresses to more than the reader"
        f" allows: expected {64 << 10}, got {FLOOD + 5} (at section 'c0/main')"
    )


COMMANDS = {
    "inspect --dump": (["inspect", "{snap}", "--dump", "c0"], 1),
    "inspect --verify": (["inspect", "{snap}", "--verify"], 1),
    "verify": (["verify", "{snap}", *REGISTRY], 2),
    "migrate": (["migrate", "{snap}", "-o", "{out}", "--to", "kvcache=3", *REGISTRY], 1),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("how", ["option", "variable"])
def test_a_section_over_the_size_given_is_refused_before_it_is_decoded(
    command: str,
    how: str,
    flood: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv, code = COMMANDS[command]
    out = tmp_path / "out.smsnap"
    argv = [part.format(snap=flood, out=out) for part in argv]
    if command == "inspect --dump":
        assert run(capsys, *argv).code == 0  # the defaults take it
    if how == "option":
        argv.append("--max-section-size=64KiB")
    else:
        monkeypatch.setenv("STATEMIGRATE_MAX_SECTION_SIZE", "64KiB")
    _refused(run(capsys, *argv), code)
    assert not out.exists()


def test_the_option_wins_over_the_variable(
    flood: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEMIGRATE_MAX_SECTION_SIZE", "64KiB")
    result = run(capsys, "inspect", str(flood), "--dump", "c0", "--max-section-size", "1MiB")
    assert result.code == 0, result.err


@pytest.mark.parametrize("value", ["", "x", "1.5MiB", "0", "16 MB", "-1", "9" * 30])
def test_a_size_of_another_form_is_a_usage_error(
    value: str, flood: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(capsys, "inspect", str(flood), "--max-section-size", value)
    assert result.code == 2 and "--max-section-size" in result.err
    if value.strip():
        monkeypatch.setenv("STATEMIGRATE_MAX_SECTION_SIZE", value)
        result = run(capsys, "inspect", str(flood))
        assert result.code == 2 and result.out == ""
        (line,) = result.err.splitlines()
        assert line.startswith("statemigrate: error: $STATEMIGRATE_MAX_SECTION_SIZE: ")


@pytest.mark.parametrize(
    ("text", "size"),
    [("1", 1), ("65536", 65536), ("64KiB", 64 << 10), ("16MiB", 16 << 20), ("2 GiB", 2 << 30),
     ("1TiB", 1 << 40), ("7B", 7)],
)
def test_sizes_are_bytes_or_binary_units(text: str, size: int) -> None:
    assert size_value(text) == size


def test_a_size_above_the_defaults_raises_the_total_with_it() -> None:
    defaults = DecodeLimits()
    above = defaults.max_total_size * 2
    limits = limits_from(argparse.Namespace(max_section_size=above))
    assert (limits.max_section_size, limits.max_total_size) == (above, above)
    below = limits_from(argparse.Namespace(max_section_size=1 << 20))
    assert (below.max_section_size, below.max_total_size) == (1 << 20, defaults.max_total_size)
    assert below.max_snapshot_size == defaults.max_snapshot_size


def test_the_option_is_in_the_help_of_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("inspect", "verify", "migrate"):
        assert main([command, "--help"]) == 0
        assert "--max-section-size SIZE" in capsys.readouterr().out
