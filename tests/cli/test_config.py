"""Reading [tool.statemigrate] from pyproject.toml: every malformed file is one error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import Result, run

from statemigrate.evolution._config import ConfigError, find_config

pytestmark = pytest.mark.usefixtures("hermetic")

ERROR_PREFIX = "statemigrate: error:"

# Every command that reads pyproject.toml, with arguments that would otherwise run it.
CONFIG_COMMANDS = [
    ["graph", "kvcache"],
    ["plan", "kvcache", "--from", "1", "--to", "2"],
    ["migrate", "snap", "-o", "out", "--to", "kvcache=1"],
    ["schemas", "check"],
    ["schemas", "freeze"],
    ["makemigration", "kvcache", "--dry-run"],
    ["check", "--max-examples", "1"],
]

BAD_FILES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    # name: (contents of pyproject.toml, fragments the error line must hold)
    "latin-1": (b'[project]\nname = "caf\xe9"\n', ("not UTF-8", "0xe9", "offset 21")),
    "not toml": (b"[tool.statemigrate\n", ("not valid TOML",)),
    "tool is an integer": (b"tool = 5\n", ("tool must be a table, not an integer",)),
    "tool is a string": (b'tool = "x"\n', ("tool must be a table, not a string",)),
    "table is an integer": (
        b"[tool]\nstatemigrate = 3\n",
        ("tool.statemigrate must be a table, not an integer",),
    ),
    "table is an array": (
        b"[tool]\nstatemigrate = [1]\n",
        ("tool.statemigrate must be a table, not an array",),
    ),
    "registry is an integer": (
        b"[tool.statemigrate]\nregistry = 7\n",
        ("tool.statemigrate.registry must be a string, not an integer",),
    ),
    "migrations is a table": (
        b"[tool.statemigrate]\nmigrations = {a = 1}\n",
        ("tool.statemigrate.migrations must be a string, not a table",),
    ),
    "schemas is a date": (
        b"[tool.statemigrate]\nschemas = 2024-01-01\n",
        ("tool.statemigrate.schemas must be a string, not a date or time",),
    ),
    "schemas holds NUL": (
        b'[tool.statemigrate]\nschemas = "a\\u0000b"\n',
        ("tool.statemigrate.schemas holds a NUL character",),
    ),
    "imports is a string": (
        b'[tool.statemigrate]\nimports = "x"\n',
        ("tool.statemigrate.imports must be an array of strings",),
    ),
    "imports holds a number": (
        b"[tool.statemigrate]\nimports = [1]\n",
        ("tool.statemigrate.imports must be an array of strings",),
    ),
    "nested too deeply": (
        b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
        ("not valid TOML", "nest too deeply"),
    ),
}


def assert_one_error_line(result: Result, *fragments: str) -> None:
    assert result.code == 1, (result.code, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.out == ""


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_malformed_pyproject_is_one_line_naming_the_file(
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contents, fragments = BAD_FILES[name]
    path = tmp_path / "pyproject.toml"
    path.write_bytes(contents)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # found from a sub-folder, as the commands look
    for argv in CONFIG_COMMANDS:
        assert_one_error_line(run(capsys, *argv), f"{path}: ", *fragments)


def test_the_error_keeps_the_file_and_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(b"tool = 5\n")
    with pytest.raises(ConfigError) as caught:
        find_config(tmp_path)
    assert caught.value.path == path
    assert caught.value.detail == "tool must be a table, not an integer"
    assert caught.value.__cause__ is None  # nothing foreign to chain


def test_a_non_utf8_file_chains_the_decoding_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError) as caught:
        find_config(tmp_path)
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


def test_a_pyproject_that_cannot_be_read_names_the_file_and_the_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(b"[tool.statemigrate]\n")
    monkeypatch.chdir(tmp_path)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert_one_error_line(
        run(capsys, "graph", "kvcache"), f"{path}: read failed: Permission denied"
    )


def test_a_well_formed_table_still_reads(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.statemigrate]\n"
        'registry = "pkg.mod:build"\n'
        'imports = ["pkg.a", "pkg.b"]\n'
        'migrations = "m"\n'
        'schemas = "s"\n'
        "other = 1\n"
    )
    config = find_config(tmp_path)
    assert config.root == tmp_path.resolve()
    assert config.registry == "pkg.mod:build"
    assert config.imports == ("pkg.a", "pkg.b")
    assert config.migrations == tmp_path.resolve() / "m"
    assert config.schemas == tmp_path.resolve() / "s"
    assert config.extra == {"other": 1}
