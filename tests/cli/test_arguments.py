"""Values several commands share: positive counts, and output files checked up front."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run

ERROR_PREFIX = "statemigrate: error:"


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    return lines[0]


@pytest.fixture
def demo_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The demo's runs, recorded instead of started."""
    from statemigrate.demo import _run

    runs: list[dict[str, Any]] = []

    def record(**options: Any) -> Any:
        runs.append(options)
        raise RuntimeError("the demo must not start in these tests")

    monkeypatch.setattr(_run, "run_demo", record)
    return runs


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["check", "--max-examples", "abc"],
            "argument --max-examples: invalid positive integer: 'abc'",
        ),
        (
            ["check", "--max-examples", "0"],
            "argument --max-examples: must be at least 1, not 0",
        ),
        (["demo", "--entries", "abc"], "argument --entries: invalid positive integer: 'abc'"),
        (["demo", "--clients", "-3"], "argument --clients: must be at least 1, not -3"),
        (["demo", "--entries", "9" * 5000], "invalid positive integer: '" + "9" * 40 + "'"),
    ],
)
def test_counts_are_refused_in_users_words(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str], demo_runs: list[Any]
) -> None:
    result = run(capsys, *argv)
    assert result.code == 2
    line = _one_line(result.err)
    assert fragment in line, line
    assert "_positive" not in line
    assert demo_runs == []


@pytest.mark.parametrize(
    ("plot", "fragments"),
    [
        ("/nonexistent-folder/x.svg", ("'/nonexistent-folder' does not exist",)),
        ("", ("--plot needs a file name",)),
        ("{tmp}", ("is a directory", "--plot replaces only a regular file")),
        ("{tmp}/fifo", ("is a FIFO",)),
        ("{tmp}/link.svg", ("is a symbolic link",)),
        ("{tmp}/file/x.svg", ("is not a directory",)),
    ],
)
def test_demo_checks_where_the_plot_goes_before_it_starts(
    plot: str,
    fragments: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    demo_runs: list[Any],
) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "link.svg").symlink_to(tmp_path / "file")
    result = run(capsys, "demo", "--entries", "10", "--plot", plot.format(tmp=tmp_path))
    assert result.code == 1
    assert result.out == ""
    line = _one_line(result.err)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert demo_runs == []


def test_demo_refuses_a_plot_in_a_folder_it_cannot_write(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    demo_runs: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The folder's permissions as access(2) sees them (faked: root may write anywhere)."""
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    real_access = os.access
    monkeypatch.setattr(
        "statemigrate.cli._arguments.os.access",
        lambda path, mode: Path(path) != folder and real_access(path, mode),
    )
    result = run(capsys, "demo", "--plot", str(folder / "x.svg"))
    assert result.code == 1
    assert f"its folder {str(folder)!r} is not writable" in _one_line(result.err)
    assert demo_runs == []


def test_demo_starts_with_a_plot_it_can_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], demo_runs: list[Any]
) -> None:
    """The checks' positive control: a new file in a writable folder, and an existing
    regular file, are passed on to the demo."""
    for plot in (tmp_path / "new.svg", tmp_path / "old.html"):
        if plot.suffix == ".html":
            plot.write_text("an older picture")
        with pytest.raises(RuntimeError, match="must not start"):
            run(capsys, "demo", "--entries", "10", "--plot", str(plot))
    assert [run["plot"] for run in demo_runs] == [tmp_path / "new.svg", tmp_path / "old.html"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["migrate", "s.smsnap", "-o", "out", "--to", "book=abc"], "expected COMPONENT=VERSION"),
        (["migrate", "s.smsnap", "-o", "out", "--to", "book"], "expected COMPONENT=VERSION"),
        (["migrate", "s.smsnap", "-o", "out", "--to", "b=1", "--to", "b=2"], "'b' twice"),
        (["migrate", "fd:x", "-o", "out", "--to", "book=1"], "expected fd:N"),
        (["inspect", "fd:-1"], "open fd:-1: expected fd:N"),
        (["inspect", "fd:seven"], "open fd:seven: expected fd:N"),
        (["inspect", "fd:2147483648"], "descriptor number out of range"),
        (["makemigration", "book", "--rename", "garbage"], "expected OLD.PATH=NEW_NAME"),
        (["makemigration", "book", "--rename", "a=b.c"], "expected OLD.PATH=NEW_NAME"),
        (["makemigration", "book", "--schema", "types"], "'package.module:name'"),
        (["graph", "book", "--registry", "app"], "'package.module:name'"),
    ],
)
def test_a_value_of_the_wrong_form_is_a_usage_error(
    argv: list[str],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A value whose form is wrong exits with status 2, as docs/cli.md says, before the
    command does any work (nothing is read, imported or written)."""
    monkeypatch.chdir(tmp_path)
    result = run(capsys, *argv)
    assert result.code == 2, result
    line = _one_line(result.err)
    assert fragment in line and "argument " in line, line
    assert result.out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["migrate", "s.smsnap", "-o", "out", "--to", "kvcache=1", "--to", "kvcache=2"],
            "argument --to: names component 'kvcache' twice: give one version per component",
        ),
        (
            ["migrate", "s.smsnap", "-o", "out", "--to", "kvcache=3", "--to", "kvcache=3"],
            "argument --to: names component 'kvcache' twice",
        ),
        (
            ["makemigration", "book", "--rename", "a.b=c", "--rename", "a.b=d"],
            "argument --rename: names path 'a.b' twice: give one new name per path",
        ),
        (
            ["makemigration", "book", "--rename", "a.b=c", "--rename", "a.b=c"],
            "argument --rename: names path 'a.b' twice",
        ),
    ],
)
def test_a_name_given_twice_is_refused_by_every_name_value_option(
    argv: list[str],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--to`` and ``--rename`` share one rule: a repeated name is a usage error naming
    the option and the name, even with the same value, before any work is done."""
    monkeypatch.chdir(tmp_path)
    result = run(capsys, *argv)
    assert result.code == 2, result
    assert fragment in _one_line(result.err)
    assert result.out == "" and list(tmp_path.iterdir()) == []


def test_distinct_names_are_all_kept() -> None:
    """The refusal of repeats is by name: different names are collected, in order."""
    from statemigrate.cli._main import build_parser

    parser = build_parser()
    make = parser.parse_args(["makemigration", "book", "--rename", "a.b=c", "--rename", "a.d=e"])
    assert make.rename == {"a.b": "c", "a.d": "e"}
    migrate = parser.parse_args(
        ["migrate", "s", "-o", "out", "--to", "kvcache=1", "--to", "blobs=2"]
    )
    assert migrate.targets == {"kvcache": 1, "blobs": 2}
    # The default is shared by parses; collecting into it would leak between them.
    again = parser.parse_args(["makemigration", "book"])
    assert again.rename == {}
