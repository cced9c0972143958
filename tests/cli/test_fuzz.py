"""Fuzzing the command line: any bytes given to inspect end in exit 0 or 1, never a raise."""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import math
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgpack
import pytest
from golden import PRODUCER, seal_raw
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from statemigrate._snapshot import _format
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import PREAMBLE_SIZE, open_snapshot
from statemigrate.cli import _source
from statemigrate.cli._dumpjson import dump_json
from statemigrate.cli._main import build_parser, main
from statemigrate.testing._exact import exact_differences

KEY = b"fuzzing key, sixteen bytes or more"
ERROR_PREFIX = "statemigrate: error:"


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    # Module-scoped: hypothesis re-runs a test body many times, and a function-scoped
    # tmp_path would be shared by those runs anyway.
    with tempfile.TemporaryDirectory(prefix="statemigrate-cli-fuzz-") as name:
        path = Path(name)
        (path / "key").write_bytes(KEY)
        yield path


def inspect(folder: Path, data: bytes, *options: str) -> Outcome:
    """Write ``data`` to a file and run ``inspect`` on it in this process."""
    path = folder / "fuzzed.smsnap"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["inspect", str(path), *options], out=out)
    return Outcome(code, out.getvalue(), err.getvalue())


def check_contract(outcome: Outcome) -> None:
    """Exit 0 with output and a silent stderr, or exit 1 with exactly one error line."""
    assert outcome.code in (0, 1), outcome
    if outcome.code == 0:
        assert outcome.err == "" and outcome.out != ""
        return
    lines = outcome.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), outcome.err
    assert outcome.out == ""


def _sound(key: bytes | None) -> bytes:
    data = {
        "entries": {f"k{i}": {"data": "v" * i, "hits": i, "expires_at": None} for i in range(40)}
    }
    sections = [
        SectionInput("kvcache", "default", 3, "fp", data),
        SectionInput("blobs", "default", 1, "", {"b": bytes(range(256)) * 8}),
    ]
    return encode_snapshot(sections, producer=PRODUCER, key=key, chunk_size=1024).to_bytes()


SOUND = _sound(None)
SOUND_KEYED = _sound(KEY)


def _regions(blob: bytes, digest: int) -> dict[str, tuple[int, int]]:
    """Where each part of a sound snapshot lies, so mutations reach every one of them."""
    header_len = struct.unpack_from("<I", blob, 12)[0]
    chunks_at = PREAMBLE_SIZE + header_len + 8
    footer_at = len(blob) - digest - 16
    return {
        "preamble": (0, PREAMBLE_SIZE),
        "header": (PREAMBLE_SIZE, chunks_at),
        "chunks": (chunks_at, footer_at),
        "footer": (footer_at, len(blob) - digest),
        "digest": (len(blob) - digest, len(blob)),
    }


REGIONS = _regions(SOUND, 16)


@st.composite
def mutated(draw: st.DrawFn, blob: bytes = SOUND) -> bytes:
    """A sound snapshot changed in one region: flipped bits, overwritten bytes, a cut
    or an extension. Never equal to the original."""
    data = bytearray(blob)
    how = draw(st.sampled_from(["flip", "overwrite", "truncate", "extend"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "extend":
        return bytes(data + draw(st.binary(min_size=1, max_size=64)))
    start, end = REGIONS[draw(st.sampled_from(sorted(REGIONS)))]
    offset = draw(st.integers(start, end - 1))
    if how == "flip":
        data[offset] ^= 1 << draw(st.integers(0, 7))
    else:
        replacement = draw(st.binary(min_size=1, max_size=min(32, len(data) - offset)))
        data[offset : offset + len(replacement)] = replacement
        if bytes(data) == blob:  # the replacement happened to equal what was there
            data[offset] ^= 0xFF
    return bytes(data)


def _any_bytes() -> st.SearchStrategy[bytes]:
    """Unstructured bytes, bytes behind a valid magic, and mutated sound snapshots."""
    return st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=512).map(lambda tail: _format.MAGIC + tail),
        mutated(),
    )


@given(data=_any_bytes())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_inspect_verify_of_any_bytes_exits_0_or_1(folder: Path, data: bytes) -> None:
    """For all bytes: ``inspect --verify`` returns 0 or 1 and prints one line on failure."""
    check_contract(inspect(folder, data, "--verify"))


@given(data=_any_bytes(), options=st.sampled_from([[], ["--json"], ["--dump", "blobs"]]))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_other_inspect_forms_keep_the_contract(
    folder: Path, data: bytes, options: list[str]
) -> None:
    """For all bytes: plain, ``--json`` and ``--dump`` inspect keep the same contract."""
    check_contract(inspect(folder, data, *options))


@given(data=mutated())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_change_to_a_snapshot_is_refused(folder: Path, data: bytes) -> None:
    """For every mutation of a sound snapshot, ``inspect`` (even without --verify) exits 1."""
    outcome = inspect(folder, data)
    check_contract(outcome)
    assert outcome.code == 1


@given(data=mutated(SOUND_KEYED))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_change_to_an_authenticated_snapshot_is_refused(folder: Path, data: bytes) -> None:
    """With the key, every mutation of an authenticated snapshot is refused too."""
    outcome = inspect(folder, data, "--verify", "--key-file", str(folder / "key"))
    check_contract(outcome)
    assert outcome.code == 1


def test_the_sound_snapshots_pass(folder: Path) -> None:
    """Control for the two properties above: unchanged bytes are accepted."""
    assert inspect(folder, SOUND, "--verify").code == 0
    keyed = inspect(folder, SOUND_KEYED, "--verify", "--key-file", str(folder / "key"))
    assert keyed.code == 0
    assert set(REGIONS) == {"preamble", "header", "chunks", "footer", "digest"}
    assert all(start < end for start, end in REGIONS.values())


# --- --dump: whatever plain data a section holds, JSON shows it -----------------------------

# The dump's own forms, drawn as the data's keys and text too: a state may hold them.
_MARKS = ["$base64", "$float", "$base64:AP8=", "$", "$$", "$$base64", "AP8=", "nan", "inf"]
_keys = st.one_of(st.text(max_size=8), st.sampled_from(_MARKS), st.binary(max_size=8))
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=16),
    st.sampled_from(_MARKS),
    st.binary(max_size=16),
)
_plain = st.recursive(
    _leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=24,
)


def _as_shown(value: Any) -> Any:
    """What --dump promises to print for ``value``, written independently of the code."""
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, float) and value != value:
        return {"$float": "nan"}
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return {"$float": "inf" if value > 0 else "-inf"}
    if isinstance(value, list):
        return [_as_shown(item) for item in value]
    if isinstance(value, dict):
        return {_key_shown(k): _as_shown(v) for k, v in value.items()}
    return value


def _key_shown(key: str | bytes) -> str:
    if isinstance(key, bytes):
        return "$base64:" + base64.b64encode(key).decode()
    return "$" + key if key.startswith("$") else key


@given(value=_plain)
@example(value={"nan": float("nan"), "inf": [float("inf"), float("-inf")]})
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_dump_shows_any_plain_data_as_json(folder: Path, value: Any) -> None:
    """For all plain data: ``--dump`` prints strict JSON that reads back as the data,
    bytes as base64 (values ``{"$base64": ...}``, map keys ``"$base64:..."``), NaN and
    the infinities as ``{"$float": ...}``, the data's own keys that start with ``$``
    with one more ``$``."""
    raw = msgpack.packb(value, use_bin_type=True)
    outcome = inspect(folder, seal_raw([raw]), "--dump", "c0")
    check_contract(outcome)
    assert outcome.code == 0
    shown = json.loads(outcome.out, parse_constant=_not_json)
    assert shown == _as_shown(value)


def _not_json(token: str) -> None:
    raise AssertionError(f"--dump printed {token}, which is not JSON")


@given(value=_plain)
@example(value={b"\x00\xff": 1, "$base64:AP8=": 1})
@example(value=[b"\x00\xff", {"$base64": "AP8="}, float("nan"), {"$float": "nan"}])
def test_a_dump_reads_back_as_the_data_it_shows(value: Any) -> None:
    """For all plain data: reading ``--dump``'s JSON back by the rules docs/cli.md gives
    for it returns the data exactly, types and key order included; so two values that
    differ never dump alike. Before, bytes and the dict ``{"$base64": ...}`` showing
    them, or a bytes key and the text key showing it, were printed alike."""
    shown = json.loads(dump_json(value, section="c0"), object_pairs_hook=_pairs)
    assert exact_differences(value, _read_dump(shown)) == []


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)


def _read_dump(shown: Any) -> Any:
    """--dump's JSON back as plain data, by the table of docs/cli.md, written apart
    from the code."""
    if isinstance(shown, list):
        return [_read_dump(item) for item in shown]
    if not isinstance(shown, dict):
        return shown
    if list(shown) == ["$base64"]:
        return base64.b64decode(shown["$base64"], validate=True)
    if list(shown) == ["$float"]:
        return float(shown["$float"])
    data: dict[Any, Any] = {}
    for key, item in shown.items():
        if key.startswith("$$"):
            data[key[1:]] = _read_dump(item)
        elif key.startswith("$base64:"):
            data[base64.b64decode(key[len("$base64:") :], validate=True)] = _read_dump(item)
        else:
            assert not key.startswith("$"), f"a key {key!r} the table does not describe"
            data[key] = _read_dump(item)
    return data


# --- negative controls: the properties catch the bugs they are about ------------------------


def _naive_open(data: Any, *, key: bytes | None = None, limits: Any = None) -> Any:
    """A reader that unpacks the preamble before checking there is one: on short input it
    raises struct.error, a foreign exception the command line does not translate."""
    struct.unpack_from("<8sHHIQQ", data)
    return open_snapshot(data, key=key, limits=limits)


def test_negative_control_a_leaking_reader_is_caught(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_source, "open_snapshot", _naive_open)

    @given(data=_any_bytes())
    @settings(database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def same_property(data: bytes) -> None:
        check_contract(inspect(folder, data, "--verify"))

    with pytest.raises(struct.error):
        same_property()


def test_negative_control_a_reader_that_skips_the_digest_is_caught(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_format, "_verify_digest", lambda buf, body_end, key: None)

    @given(data=mutated())
    @settings(database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def same_property(data: bytes) -> None:
        assert inspect(folder, data).code == 1

    with pytest.raises(AssertionError):
        same_property()


# --- any command line, any environment: only our errors, one line, exit 0, 1 or 2 -----------

SUBCOMMANDS = [
    "inspect",
    "plan",
    "graph",
    "migrate",
    "verify",
    "schemas",
    "makemigration",
    "check",
    "demo",
]
OPTIONS = [
    "-h",
    "--help",
    "--json",
    "--verify",
    "--dump",
    "--key-file",
    "--from",
    "--to",
    "-o",
    "--output",
    "--allow-lossy",
    "--registry",
    "--migrations",
    "--import",
    "--component",
    "--schemas",
    "--force",
    "--schema",
    "--version",
    "--name",
    "--rename",
    "--dry-run",
    "--max-examples",
    "--entries",
    "--clients",
    "--fresh-connections",
    "freeze",
    "check",
]
VALUES = [
    "kvcache",
    "kvcache/default",
    "blobs",
    "0",
    "1",
    "2",
    "3",
    "-1",
    "99999999999999999999",
    "kvcache=1",
    "kvcache=3",
    "kvcache=\u00b2",
    "kvcache=",
    "=1",
    "fd:0",
    "fd:1",
    "fd:2",
    "fd:-1",
    "fd:2147483648",
    "fd:\u00b2",
    "snap",
    "keyed",
    "key",
    "short",
    "missing",
    "out.smsnap",
    "\udcff.smsnap",
    "dir",
    ".",
    "",
    " ",
    "\udcff",
    "\x1b[2J",
    "a\x00b",
    "statemigrate.reference:build_registry",
    "statemigrate:Service",
    "statemigrate:nothing",
    "statemigrate:__version__",
    "json:loads",
    "no_such_module_q:x",
    "no_colon",
    "statemigrate.reference",
    "no_such_module_q",
    "statemigrate.reference:KVCacheV3",
    "entries.*.value=data",
    "value",
    "schemas",
    "migrations",
]


def _harmless(text: str) -> bool:
    """Free text the fuzzer may use as a path or a module name: nothing outside the
    scratch folder (no absolute path, no ``..``), and nothing importable by chance."""
    if text.startswith(("/", "~")) or ".." in text:
        return False
    parts = text.replace(":", ".").split(".")
    return not all(part.isidentifier() for part in parts)


_token = st.one_of(
    st.sampled_from(SUBCOMMANDS + OPTIONS + VALUES),
    st.text(max_size=12).filter(_harmless),
)
_free = st.text(max_size=12).filter(_harmless)
NUMBERS = ["0", "1", "2", "3", "4", "-1", "99999999999999999999", "1" * 5000, "\u00b2", "x"]
COMPONENTS = ["kvcache", "blobs", "settings", "", "\udcff", "\x1b[2J"]
PATHS = [
    "snap",
    "keyed",
    "key",
    "short",
    "missing",
    "dir",
    ".",
    "",
    "out.smsnap",
    "\udcff.smsnap",
    "dir/out",
    "missing/out",
    "snap/out",
]
# Per option, the values worth trying besides free text.
OPTION_VALUES: dict[str, list[str]] = {
    "--to": [
        "kvcache=1",
        "kvcache=3",
        "kvcache=\u00b2",
        "kvcache=",
        "=1",
        "blobs=1",
        "kvcache=1=2",
        *NUMBERS,
    ],
    "--from": NUMBERS,
    "--version": NUMBERS,
    "--max-examples": NUMBERS,
    "--entries": NUMBERS,
    "--clients": NUMBERS,
    "-o": PATHS,
    "--output": PATHS,
    "--key-file": PATHS,
    "--migrations": PATHS,
    "--schemas": PATHS,
    "--dump": ["kvcache", "kvcache/default", "blobs", "blobs/default", "nosuch", "", "/", "a/b/c"],
    "--registry": [
        "statemigrate.reference:build_registry",
        "statemigrate:Service",
        "statemigrate:nothing",
        "statemigrate:__version__",
        "json:loads",
        "no_such_module_q:x",
        "no_colon",
        ":",
        "a:",
    ],
    "--import": ["statemigrate.reference", "no_such_module_q", "", "."],
    "--component": COMPONENTS,
    "--schema": [
        "statemigrate.reference:KVCacheV3",
        "statemigrate.reference:nothing",
        "statemigrate.reference",
        "no_such_module_q:T",
        "json:loads",
    ],
    "--name": ["slug", "", "a/b", "\udcff"],
    "--rename": ["entries.*.value=data", "value", "=x", "a=b.c", "a="],
}
_value = st.one_of(st.sampled_from(VALUES), _free)


def _value_for(option: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(OPTION_VALUES.get(option, VALUES)), _free)


# What each sub-command needs to get past argparse: positionals, then required options.
REQUIRED: dict[str, list[list[str]]] = {
    "inspect": [["SNAPSHOT"]],
    "migrate": [["SNAPSHOT"], ["-o"], ["--to"]],
    "verify": [["SNAPSHOT"]],
    "plan": [["COMPONENT"], ["--from"], ["--to"]],
    "graph": [["COMPONENT"]],
    "makemigration": [["COMPONENT"]],
    "schemas": [["ACTION"]],
    "check": [],
    "demo": [],
}
_POSITIONALS: dict[str, st.SearchStrategy[str]] = {
    "SNAPSHOT": st.one_of(
        st.sampled_from(
            ["snap", "keyed", "fd:0", "fd:1", "fd:2", "fd:-1", "fd:2147483648", "fd:\u00b2", *PATHS]
        ),
        _free,
    ),
    "COMPONENT": st.one_of(st.sampled_from(COMPONENTS), _free),
    "ACTION": st.sampled_from(["freeze", "check", "thaw"]),
}


def _options_of(parser: argparse.ArgumentParser) -> list[tuple[str, bool]]:
    """Each option a parser accepts, and whether it takes a value."""
    return [
        (name, action.nargs != 0)
        for action in parser._actions
        for name in action.option_strings
        if name not in ("-h", "--help")
    ]


def _command_options() -> dict[str, list[tuple[str, bool]]]:
    """Per sub-command (``schemas`` by action), the options the real parser accepts."""
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    found: dict[str, list[tuple[str, bool]]] = {}
    for name, parser in commands.choices.items():
        found[name] = _options_of(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    found[f"{name} {sub}"] = _options_of(subparser)
    return found


COMMAND_OPTIONS = _command_options()


@st.composite
def _command_line(draw: st.DrawFn) -> list[str]:
    """A sub-command with what it requires, then a few of its own options: close enough
    to real use to get past argparse and into the commands."""
    command = draw(st.sampled_from(SUBCOMMANDS))
    argv = [command]
    for part in REQUIRED[command]:
        if draw(st.integers(0, 19)) == 0:
            continue  # now and then leave out what is required
        name = part[0]
        if name in _POSITIONALS:
            argv.append(draw(_POSITIONALS[name]))
        else:
            argv += [name, draw(_value_for(name))]
    own = COMMAND_OPTIONS.get(" ".join(argv[:2]) if command == "schemas" else command, [])
    for option, takes_value in draw(st.lists(st.sampled_from(own), max_size=4)) if own else []:
        argv.append(option)
        if takes_value:
            argv.append(draw(_value_for(option)))
    if any(option == "--registry" for option, _ in own) and draw(st.booleans()):
        argv += ["--registry", "statemigrate.reference:build_registry"]
    return argv


_argv = st.one_of(
    st.lists(_token, max_size=8),
    st.tuples(st.sampled_from(SUBCOMMANDS), st.lists(_token, max_size=8)).map(
        lambda pair: [pair[0], *pair[1]]
    ),
    _command_line(),
)
# Environment variables the command line reads: its own, and argparse's terminal width.
_env_value = st.one_of(
    st.none(),
    st.sampled_from(["", "key", "short", "missing", "dir", "snap", "0", "-5", "abc", "1" * 40]),
    st.text(max_size=12).filter(lambda text: _harmless(text) and "\x00" not in text),
)
_environment = st.fixed_dictionaries(
    {"STATEMIGRATE_KEY_FILE": _env_value, "COLUMNS": _env_value, "LINES": _env_value}
)


def _scratch(folder: Path) -> None:
    """A working folder with a snapshot, an authenticated one, keys and a directory."""
    (folder / "snap").write_bytes(SOUND)
    (folder / "keyed").write_bytes(SOUND_KEYED)
    (folder / "key").write_bytes(KEY)
    (folder / "short").write_bytes(b"short")
    (folder / "dir").mkdir()


def _without_hypothesis(registry: Any, **options: Any) -> Any:
    """``check_migrations`` that lists the checks but runs none: a hypothesis run
    cannot nest inside this one, and the command line's part is what is fuzzed."""
    from statemigrate.testing._checks import CheckReport, CheckResult, migration_checks

    options.pop("max_examples", None)
    options.pop("raise_on_failure", None)
    checks = migration_checks(registry, **options)
    return CheckReport(tuple(CheckResult(check, 0) for check in checks))


def _no_demo(args: Any, out: Any) -> int:
    return 0  # the demo starts servers and processes; its argument parsing is still fuzzed


@given(argv=_argv, environment=_environment)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_command_line_exits_0_1_or_2_with_at_most_one_error_line(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], environment: dict[str, str | None]
) -> None:
    """For all argv and values of the variables the command line reads, ``main`` returns
    0, 1 or 2 and raises nothing. A non-zero status comes with exactly one line on
    stderr, except that the reporting commands (``check``, ``schemas check``) exit 1
    with their markdown report on stdout and a silent stderr (but for a registry that
    does not load, which has its one line too), and ``verify`` exits 1 with its answer
    on stdout (a section that would not restore) and a silent stderr. Stdout is written
    through a strict UTF-8 encoder, as a terminal's is."""
    import os
    import sys
    from unittest import mock

    import statemigrate.testing
    from statemigrate.cli import _demo

    monkeypatch.setattr(statemigrate.testing, "check_migrations", _without_hypothesis)
    monkeypatch.setattr(_demo, "demo_command", _no_demo)
    env = {name: value for name, value in environment.items() if value is not None}
    cleared = {name: "" for name in environment}
    with (
        tempfile.TemporaryDirectory(prefix="statemigrate-cli-argv-") as name,
        mock.patch.dict(os.environ, cleared),
        mock.patch.object(sys, "path", list(sys.path)),
    ):
        for variable in environment:
            del os.environ[variable]
        os.environ.update(env)
        folder = Path(name)
        _scratch(folder)
        previous = os.getcwd()
        os.chdir(folder)
        try:
            raw_out = io.BytesIO()
            out = io.TextIOWrapper(raw_out, encoding="utf-8", errors="strict")
            help_out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(help_out), contextlib.redirect_stderr(err):
                code = main(argv, out=out)
        finally:
            os.chdir(previous)
    assert code in (0, 1, 2), code
    lines = err.getvalue().splitlines()
    out.flush()
    report = raw_out.getvalue().decode()
    answered = report.startswith("### statemigrate ") or " would NOT restore: " in report
    # A registry that does not load is a failure too: reported, and said on stderr.
    answered = answered and "**Registry failed to load**" not in report
    if code == 0 or (code == 1 and answered):
        assert lines == [], err.getvalue()
    else:
        assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), err.getvalue()


def _naive_targets(action: Any, parser: Any, namespace: Any, value: Any, option: Any) -> None:
    """Reads ``--to COMPONENT=VERSION`` with a bare int(): ValueError on anything else."""
    component, _, version = str(value).partition("=")
    setattr(namespace, action.dest, {component: int(version)})


def test_negative_control_a_command_that_leaks_a_value_error_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from statemigrate.cli._arguments import ComponentVersions

    monkeypatch.setattr(ComponentVersions, "__call__", _naive_targets)
    prop = cast(Any, test_any_command_line_exits_0_1_or_2_with_at_most_one_error_line)
    inner = prop.hypothesis.inner_test

    # The property with its sub-command generator, which reaches ``migrate --to``.
    @given(argv=_command_line(), environment=_environment)
    @settings(
        max_examples=300,
        database=None,
        phases=[Phase.generate],  # finding it is the point; shrinking only costs time
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def same_property(argv: list[str], environment: dict[str, str | None]) -> None:
        inner(monkeypatch, argv, environment)

    with pytest.raises(ValueError):
        same_property()


@given(value=_plain)
def test_a_dump_is_the_text_json_dumps_gives_for_the_data_in_its_forms(value: Any) -> None:
    """For all plain data: the dump, written without recursion, is what Python's json
    writes (indent 2) for the data with its bytes, non-finite floats and `$` keys in
    the forms docs/cli.md gives, as the dump was before it took any depth."""
    assert dump_json(value, section="c0") == json.dumps(_forms(value), indent=2) + "\n"


def _forms(value: Any) -> Any:
    """The data in --dump's forms, written apart from the code, by docs/cli.md."""
    if isinstance(value, dict):
        return {_form_key(key): _forms(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_forms(item) for item in value]
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    return value


def _form_key(key: str | bytes) -> str:
    if isinstance(key, bytes):
        return "$base64:" + base64.b64encode(key).decode()
    return "$" + key if key.startswith("$") else key
