"""The command line: inspect, plan, graph and migrate; their output, exit codes and errors."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cli_helpers import Result, run
from golden import DATA, GOLDEN_KEY, SUFFIX, load_golden, seal_raw, split
from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate._model import _registry
from statemigrate._model._plaindata import MAX_NESTING
from statemigrate._runtime._chain import chain_frame
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import FORMAT_VERSION, MAGIC, assemble, open_snapshot
from statemigrate._snapshot._header import Producer
from statemigrate.cli._inspect import human_size
from statemigrate.cli._main import build_parser
from statemigrate.reference import (
    MIGRATIONS_DIR,
    KVCacheV1,
    KVCacheV3,
    build_registry,
)
from statemigrate.stores import MemfdStore, ObjectStore

REPO = Path(__file__).resolve().parents[2]
REGISTRY = ["--registry", "statemigrate.reference:build_registry"]
KEY = b"a key of at least sixteen bytes, for tests"
CHILD_TIMEOUT = 120  # seconds; a bound on a hang, never a measurement
ERROR_PREFIX = "statemigrate: error:"


def _now() -> float:
    return 1_700_000_000.0  # a fixed clock keeps expiry deadlines reproducible


class BlobsV1(TypedDict):
    """A second component whose state holds bytes, as values and as map keys."""

    blobs: dict[str, bytes]
    by_key: dict[bytes, int]


@sm.migratable("blobs", version=1)
class Blobs:
    def __init__(self) -> None:
        self.blobs = {"small": b"\x00\x01\xfe\xff", "empty": b""}
        self.by_key = {b"\xffkey": 1, b"plain": 2}


def _registry_with_blobs() -> sm.Registry:
    registry = build_registry()
    registry.add_schema("blobs", 1, BlobsV1)
    return registry


# --- running the command line ---------------------------------------------------------


def run_child(
    *argv: str,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
    isolated: bool = False,
    key_file: str | None = None,
) -> Result:
    """Run ``python -m statemigrate`` in a child process, as a terminal user would;
    ``$STATEMIGRATE_KEY_FILE`` is ``key_file`` when given, else unset."""
    env = {k: v for k, v in os.environ.items() if k != "STATEMIGRATE_KEY_FILE"}
    if key_file is not None:
        env["STATEMIGRATE_KEY_FILE"] = key_file
    flags = ["-I"] if isolated else []
    proc = subprocess.run(
        [sys.executable, *flags, "-m", "statemigrate", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        pass_fds=pass_fds,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_error_line(result: Result, *fragments: str, code: int = 1) -> str:
    """The failure contract: the exit status, one line on stderr, no traceback."""
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def _elsewhere(hermetic: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from a folder with no stray pyproject.toml, beside the hermetic set-up."""
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "pyproject.toml").write_text('[project]\nname = "elsewhere"\n')
    monkeypatch.chdir(work)


# --- snapshots made by a real service -------------------------------------------------


@dataclass
class Made:
    """Snapshots committed by a Service holding the reference cache, and what they hold."""

    plain: Path
    authenticated: Path
    key_file: Path
    v1: Path
    report: sm.SnapshotReport
    states: dict[str, Any]
    v1_states: dict[str, Any]
    registry: sm.Registry

    def data(self) -> bytes:
        return self.plain.read_bytes()


def _filled_v3() -> tuple[KVCacheV3, KVCacheV3]:
    small = KVCacheV3(clock=_now)
    small.set("alpha", "one")
    small.set("beta", "two", ttl=60)
    small.get("alpha")
    small.get("alpha")
    big = KVCacheV3(clock=_now)
    for i in range(80):  # about 5.6 MiB: more than one 4 MiB chunk
        big.set(f"key{i:03d}", f"{i:03d}" * 23_000, ttl=None if i % 2 else 3600)
    return small, big


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    base = tmp_path_factory.mktemp("snapshots")
    registry = _registry_with_blobs()
    small, big = _filled_v3()
    service = sm.Service("cli-test", code_version="r42", registry=registry)
    service.register(small)
    service.register(big, instance="big")
    service.register(Blobs())
    store = sm.TmpfsStore(base / "store")
    try:
        committed = service.commit(store, meta={"site": "lab"})
    finally:
        store.close()
    plain = base / "store" / "current"
    states = {
        "kvcache/default": small.export_state(),
        "kvcache/big": big.export_state(),
        "blobs/default": {"blobs": Blobs().blobs, "by_key": Blobs().by_key},
    }

    keyed = sm.Service("cli-test", key=KEY, registry=registry)
    keyed.register(small)
    encoded, _ = keyed.snapshot()
    authenticated = base / "authenticated.smsnap"
    authenticated.write_bytes(encoded.to_bytes())
    key_file = base / "key"
    key_file.write_bytes(KEY + b"\n")

    old = KVCacheV1()
    old.set("alpha", "one")
    old.set("gamma", "three")
    old_service = sm.Service("cli-test", registry=registry)
    old_service.register(old)
    encoded, _ = old_service.snapshot()
    v1 = base / "v1.smsnap"
    v1.write_bytes(encoded.to_bytes())
    return Made(
        plain=plain,
        authenticated=authenticated,
        key_file=key_file,
        v1=v1,
        report=committed.snapshot,
        states=states,
        v1_states={"kvcache/default": {"entries": dict(old.entries)}},
        registry=registry,
    )


def _section(report: sm.SnapshotReport, key: str) -> sm.SectionReport:
    return next(s for s in report.sections if f"{s.component}/{s.instance}" == key)


# --- inspect ------------------------------------------------------------------------------


def test_human_sizes() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 5 << 20, 3 << 30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


def test_inspect_prints_the_header_and_every_column(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "inspect", str(made.plain))
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert lines[0].split() == ["snapshot", made.report.snapshot_id]
    assert f"v{FORMAT_VERSION}, {human_size(made.report.size)}, xxh3-128" in lines[1]
    assert f"generation {made.report.generation}" in lines[2]
    assert "cli-test r42" in lines[3] and f"pid {os.getpid()}" in lines[3]
    assert "meta       site=lab" in lines
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == [
        "COMPONENT",
        "INSTANCE",
        "VERSION",
        "RAW",
        "STORED",
        "RATIO",
        "CHUNKS",
        "STATUS",
    ]
    assert len(table) == 1 + len(made.report.sections) == 4
    for row, section in zip(table[1:], made.report.sections, strict=True):
        ratio = round(section.raw_size / section.stored_size, 2)
        assert row.split() == [
            section.component,
            section.instance,
            str(section.version),
            *human_size(section.raw_size).split(),
            *human_size(section.stored_size).split(),
            f"{ratio:.2f}x",
            str(section.chunks),
            "digest",
            "ok",
        ]
    assert _section(made.report, "kvcache/big").chunks == 2  # the table shows a real count


@pytest.mark.parametrize(
    "name", ["v1-small", "v1-mac", "v2-small", "v2-mac", "v3-small", "v3-mac", "v3-delta"]
)
def test_inspect_reads_every_format_version(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, expected = load_golden(name)
    args = ["inspect", str(DATA / f"{name}{SUFFIX}"), "--json"]
    if expected["key"] is not None:
        key_file = tmp_path / "key"
        key_file.write_bytes(GOLDEN_KEY)
        args += ["--key-file", str(key_file)]
    result = run(capsys, *args)
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["format_version"] == expected["format_version"] == int(name[1])
    assert info["size"] == expected["size"]


def test_inspect_json_has_every_field(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "inspect", str(made.plain), "--json")
    assert result.code == 0 and result.err == ""
    info = json.loads(result.out)
    assert info["snapshot_id"] == made.report.snapshot_id
    assert info["generation"] == made.report.generation
    assert info["size"] == made.report.size == made.plain.stat().st_size
    assert info["format_version"] == FORMAT_VERSION == 3 and info["authenticated"] is False
    assert info["meta"] == {"site": "lab"}
    assert info["producer"]["service"] == "cli-test"
    assert info["producer"]["code_version"] == "r42"
    assert info["producer"]["pid"] == os.getpid()
    assert info["created"].endswith("Z")
    assert len(info["sections"]) == len(made.report.sections)
    for shown, section in zip(info["sections"], made.report.sections, strict=True):
        schema = made.registry.schema_for(section.component, section.version)
        assert shown == {
            "component": section.component,
            "instance": section.instance,
            "version": section.version,
            "fingerprint": schema.fingerprint,
            "raw_size": section.raw_size,
            "stored_size": section.stored_size,
            "ratio": round(section.raw_size / section.stored_size, 2),
            "chunks": section.chunks,
            "status": "digest ok",
        }


HOSTILE = "\x1b]0;owned\x07\x1b[2J\rok\nfake line\u202etxt.exe\x00\t\x7f\u2028"


def _hostile_snapshot(tmp_path: Path) -> Path:
    """A sound snapshot whose every string field holds control characters."""
    producer = Producer(
        service=f"svc{HOSTILE}",
        code_version=f"1.0{HOSTILE}",
        python=f"3.11{HOSTILE}",
        host=f"host{HOSTILE}",
        pid=7,
        library=f"lib{HOSTILE}",
    )
    sections = [SectionInput(f"comp{HOSTILE}", f"inst{HOSTILE}", 1, "fp", {"a": 1})]
    encoded = encode_snapshot(
        sections, producer=producer, meta={f"key{HOSTILE}": f"value{HOSTILE}"}
    )
    path = tmp_path / "hostile.smsnap"
    path.write_bytes(encoded.to_bytes())
    return path


def test_inspect_escapes_control_characters_from_the_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _hostile_snapshot(tmp_path)
    result = run(capsys, "inspect", str(path), "--verify")
    assert result.code == 0 and result.err == ""
    lines = result.out.split("\n")
    assert lines[-1] == "" and all(line.isprintable() for line in lines), result.out
    assert len(lines) == 9  # 4 header lines, 1 meta, a blank, the table's 2 rows, the end
    escaped = "\\x1b]0;owned\\x07\\x1b[2J\\rok\\nfake line\\u202etxt.exe\\x00\\t\\x7f\\u2028"
    for shown in ("svc", "1.0", "host", "3.11", "lib", "key", "value", "comp", "inst"):
        assert f"{shown}{escaped}" in result.out, shown
    # JSON output stays exact: the same strings come back.
    info = json.loads(run(capsys, "inspect", str(path), "--json").out)
    assert info["producer"]["service"] == f"svc{HOSTILE}"
    assert info["meta"] == {f"key{HOSTILE}": f"value{HOSTILE}"}
    assert info["sections"][0]["component"] == f"comp{HOSTILE}"


def test_an_error_quoting_snapshot_strings_is_one_printable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _hostile_snapshot(tmp_path)
    line = assert_one_error_line(run(capsys, "inspect", str(path), "--dump", "nosuch"))
    assert line.isprintable() and "comp\\x1b]0;owned" in line


def test_inspect_verify_checks_every_section(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "inspect", str(made.plain), "--verify", "--json")
    assert result.code == 0 and result.err == ""
    statuses = [s["status"] for s in json.loads(result.out)["sections"]]
    assert statuses == ["verified"] * 3
    human = run(capsys, "inspect", str(made.plain), "--verify")
    assert human.code == 0
    assert sum(line.endswith("verified") for line in human.out.splitlines()) == 3


def test_inspect_authenticated_snapshot_with_key_file(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "inspect", str(made.authenticated), "--key-file", str(made.key_file))
    assert result.code == 0 and result.err == ""
    assert "HMAC-SHA256" in result.out.splitlines()[1]
    verified = run(
        capsys,
        "inspect",
        str(made.authenticated),
        "--verify",
        "--json",
        "--key-file",
        str(made.key_file),
    )
    info = json.loads(verified.out)
    assert verified.code == 0 and info["authenticated"] is True
    assert [s["status"] for s in info["sections"]] == ["verified"]


def test_key_file_from_the_environment(
    made: Made, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEMIGRATE_KEY_FILE", str(made.key_file))
    result = run(capsys, "inspect", str(made.authenticated), "--json")
    assert result.code == 0 and json.loads(result.out)["authenticated"] is True


NO_KEY_HINT = "no key was given; pass --key-file PATH or set $STATEMIGRATE_KEY_FILE"


@pytest.mark.parametrize("command", ["inspect", "migrate", "verify"])
@pytest.mark.parametrize("where", ["file", "fd", "chain", "url"])
def test_an_authenticated_snapshot_without_a_key_says_how_to_give_it(
    command: str, where: str, made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command that takes --key-file says how to give a key it was not given:
    once it said only `no key was given`."""
    data = made.authenticated.read_bytes()
    path = tmp_path / "signed"
    path.write_bytes(data)
    source = str(path)
    if where == "chain":
        path.write_bytes(chain_frame([len(data)]) + data)
    elif where == "url":
        store = ObjectStore(f"file://{tmp_path}/store")
        store.commit([data])
        source = f"file://{tmp_path}/store"
    rest = {
        "inspect": [],
        "migrate": ["-o", str(tmp_path / "out"), "--to", "kvcache=3", *REGISTRY],
        "verify": REGISTRY,
    }[command]
    fd = os.open(path, os.O_RDONLY) if where == "fd" else None
    try:
        result = run(capsys, command, f"fd:{fd}" if fd is not None else source, *rest)
    finally:
        if fd is not None:
            os.close(fd)
    piece = "checkpoint chain piece 0: " if where == "chain" else ""
    line = assert_one_error_line(
        result,
        f"auth: {piece}snapshot is authenticated but {NO_KEY_HINT}",
        code=2 if command == "verify" else 1,
    )
    assert line.endswith(NO_KEY_HINT)
    assert not (tmp_path / "out").exists()


def test_a_wrong_or_unwanted_key_gets_no_hint(
    made: Made, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"another key, also long enough")
    for snapshot, key in ((made.authenticated, wrong), (made.plain, made.key_file)):
        line = assert_one_error_line(
            run(capsys, "inspect", str(snapshot), "--key-file", str(key)), "auth:"
        )
        assert "--key-file" not in line


@pytest.mark.parametrize("command", ["inspect", "migrate"])
def test_a_bad_key_file_from_the_environment_names_the_variable(
    command: str,
    made: Made,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"too short\n")
    out = tmp_path / "out.smsnap"
    rest = ["-o", str(out), "--to", "kvcache=3", *REGISTRY] if command == "migrate" else []
    for path, reason in (
        ("/nonexistent/key", "No such file"),
        (str(short), "an authentication key needs at least 16 bytes"),
    ):
        monkeypatch.setenv("STATEMIGRATE_KEY_FILE", path)
        result = run(capsys, command, str(made.authenticated), *rest)
        assert_one_error_line(result, f"read {path} (named by $STATEMIGRATE_KEY_FILE): {reason}")
        # The flag wins over the variable, and its errors name only the flag's path.
        flagged = run(capsys, command, str(made.authenticated), "--key-file", path, *rest)
        line = assert_one_error_line(flagged, f"read {path}: {reason}")
        assert "STATEMIGRATE_KEY_FILE" not in line
    assert not out.exists()


def test_dump_prints_the_state(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("kvcache/default", "kvcache/big"):
        result = run(capsys, "inspect", str(made.plain), "--dump", key)
        assert result.code == 0 and result.err == ""
        assert json.loads(result.out) == made.states[key]
    assert made.states["kvcache/default"]["entries"]["alpha"]["hits"] == 2  # not a default


@pytest.mark.parametrize(
    ("module", "registry", "said"),
    [
        (None, "nomodule:x", "cannot import 'nomodule'"),
        ("raise RuntimeError('boom on import')\n", "raiser_mod:x", "RuntimeError: boom on import"),
        ("import sys\nsys.exit(7)\n", "exiter_mod:x", "it raised SystemExit(7)"),
    ],
    ids=["missing", "raises", "exits"],
)
def test_dump_of_a_plain_snapshot_refuses_a_registry_that_does_not_load(
    module: str | None,
    registry: str,
    said: str,
    made: Made,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plain snapshot's section decodes without a registry, but one named that does
    not load fails the command in one line, as for a chain's: it was passed over and
    the command exited 0."""
    if module is not None:
        (tmp_path / f"{registry.partition(':')[0]}.py").write_text(module)
        monkeypatch.syspath_prepend(str(tmp_path))
    result = run(capsys, "inspect", str(made.plain), "--dump", "kvcache", "--registry", registry)
    assert said in assert_one_error_line(result)


def test_dump_keeps_the_stored_order_of_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dict's order is part of the state a snapshot keeps (an LRU's eviction order):
    --dump shows the keys as stored, not sorted."""
    service = sm.Service("cli-test", registry=build_registry())
    cache = service.register(KVCacheV3())
    for key in ("zulu", "alpha", "mike"):
        cache.set(key, key.upper())
    path = tmp_path / "ordered.smsnap"
    path.write_bytes(service.snapshot()[0].to_bytes())
    result = run(capsys, "inspect", str(path), "--dump", "kvcache")
    assert result.code == 0 and result.err == ""
    ((field, entries),) = json.loads(result.out, object_pairs_hook=list)
    assert field == "entries"
    assert [key for key, _ in entries] == ["zulu", "alpha", "mike"]


def test_dump_shows_bytes_as_base64(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "inspect", str(made.plain), "--dump", "blobs")  # unique: no /INSTANCE
    assert result.code == 0 and result.err == ""
    assert json.loads(result.out) == {
        "blobs": {"empty": {"$base64": ""}, "small": {"$base64": "AAH+/w=="}},
        "by_key": {"$base64:/2tleQ==": 1, "$base64:cGxhaW4=": 2},
    }


def test_dump_shows_the_data_own_dollar_keys_apart_from_its_forms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, the bytes key and the text key, and the bytes and the dict, were printed
    alike: ``{"$base64:AP8=": 1}`` twice, ``{"$base64": "AP8="}`` twice."""
    raw = msgpack.packb(
        {
            "by_bytes": {b"\x00\xff": 1},
            "by_str": {"$base64:AP8=": 1},
            "raw": b"\x00\xff",
            "fake": {"$base64": "AP8="},
            "plain": {"$": 1, "a$": 2},
        },
        use_bin_type=True,
    )
    path = tmp_path / "dollars.smsnap"
    path.write_bytes(seal_raw([raw]))
    result = run(capsys, "inspect", str(path), "--dump", "c0")
    assert result.code == 0 and result.err == ""
    assert json.loads(result.out) == {
        "by_bytes": {"$base64:AP8=": 1},
        "by_str": {"$$base64:AP8=": 1},
        "raw": {"$base64": "AP8="},
        "fake": {"$$base64": "AP8="},
        "plain": {"$$": 1, "a$": 2},
    }


def test_dump_shows_floats_json_has_no_number_for_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, NaN, Infinity and -Infinity: no JSON parser but Python's takes them, and
    jq turns them into null and 1.79e308."""
    raw = msgpack.packb(
        {"width": float("nan"), "height": float("inf"), "depth": float("-inf"), "ok": 1.5}
    )
    path = tmp_path / "floats.smsnap"
    path.write_bytes(seal_raw([raw]))
    result = run(capsys, "inspect", str(path), "--dump", "c0")
    assert result.code == 0 and result.err == ""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} is not JSON")

    assert json.loads(result.out, parse_constant=refuse) == {
        "width": {"$float": "nan"},
        "height": {"$float": "inf"},
        "depth": {"$float": "-inf"},
        "ok": 1.5,
    }


@pytest.mark.parametrize("value", ["", "/", "/default"])
def test_dump_of_an_empty_name_is_a_usage_error(
    value: str, made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "inspect", str(made.plain), "--dump", value)
    assert_one_error_line(
        result, "argument --dump: expected COMPONENT or COMPONENT/INSTANCE", repr(value), code=2
    )
    assert result.out == ""


def test_version(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The version, and whether a restore's checks run in C: the one place a user can
    see whether the install built them."""
    from statemigrate._model import _accel

    result = run(capsys, "--version")
    in_use = "C checks in use" if _accel.ACCELERATED else "C checks not built"
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(f"statemigrate {sm.__version__} ({in_use}")
    monkeypatch.setattr(_accel, "ACCELERATED", False)
    monkeypatch.setattr(_accel, "_c", None)
    result = run(capsys, "--version")
    assert result.out == (
        f"statemigrate {sm.__version__} (C checks not built: restores check in Python)\n"
    )


def test_dump_of_an_ambiguous_component_names_the_matches(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "inspect", str(made.plain), "--dump", "kvcache")
    line = assert_one_error_line(result, "kvcache/default", "kvcache/big", "/INSTANCE")
    assert "blobs" not in line
    assert result.out == ""


@pytest.mark.parametrize("depth", [1000, MAX_NESTING])
def test_dump_shows_data_as_deep_as_the_reader_takes(
    depth: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Data nested 1,024 levels, which the reader accepts, was refused as nesting "too
    deeply to show as JSON" (Python's json follows fewer under its recursion limit)."""
    deep = tmp_path / "deep.smsnap"
    deep.write_bytes(seal_raw([b"\x91" * depth + b"\xc0"]))  # nested one-item arrays
    assert run(capsys, "inspect", str(deep), "--verify").code == 0
    result = run(capsys, "inspect", str(deep), "--dump", "c0")
    assert result.code == 0 and result.err == "", result.err
    # Python's json cannot read it back either: the text, line by line.
    opening = [f"{'  ' * level}[" for level in range(depth)]
    closing = [f"{'  ' * level}]" for level in reversed(range(depth))]
    assert result.out.splitlines() == [*opening, f"{'  ' * depth}null", *closing]


# --- inspect: descriptors -------------------------------------------------------------------


def test_fd_of_a_sealed_memfd(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    store = MemfdStore()
    try:
        ref = store.commit(made.data())
        result = run(capsys, "inspect", f"fd:{ref.fd}", "--verify", "--json")
        assert result.code == 0, result.err
        assert json.loads(result.out)["snapshot_id"] == made.report.snapshot_id
        child = run_child("inspect", f"fd:{ref.fd}", "--verify", pass_fds=[ref.fd])
        assert child.code == 0, child.err
        assert made.report.snapshot_id in child.out and "verified" in child.out
    finally:
        store.close()


def test_fd_of_an_unsealed_memfd_is_refused(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    fd = os.memfd_create("unsealed", os.MFD_CLOEXEC)
    try:
        os.write(fd, made.data())
        result = run(capsys, "inspect", f"fd:{fd}")
    finally:
        os.close(fd)
    assert_one_error_line(result, f"memfd:{fd}", "not sealed")


def test_fd_of_a_regular_file(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    fd = os.open(made.plain, os.O_RDONLY | os.O_CLOEXEC)
    try:
        result = run(capsys, "inspect", f"fd:{fd}", "--json")
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # read with pread: the offset is the caller's
    finally:
        os.close(fd)
    assert result.code == 0 and json.loads(result.out)["snapshot_id"] == made.report.snapshot_id


def test_fd_of_a_pipe_is_refused_without_blocking() -> None:
    # The write end stays open, so a reader that tried to read would wait forever.
    read_end, write_end = os.pipe()
    try:
        result = run_child("inspect", f"fd:{read_end}", pass_fds=[read_end])
    finally:
        os.close(read_end)
        os.close(write_end)
    assert_one_error_line(result, f"fd:{read_end}", "not a regular file")


def test_fd_that_is_not_open(capsys: pytest.CaptureFixture[str]) -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)  # now a number that names nothing
    assert_one_error_line(run(capsys, "inspect", f"fd:{fd}"), f"fd:{fd}", "not an open")


# --- inspect: bad input -----------------------------------------------------------------------


def _flip(data: bytes, offset: int, bit: int = 0x10) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= bit
    return bytes(damaged)


BAD_FILES: dict[str, tuple[Any, tuple[str, ...]]] = {
    # name: (make bytes from a sound snapshot, fragments the error line must hold)
    "empty": (lambda sound: b"", ("truncated",)),
    "random": (lambda sound: bytes(range(7, 250)) * 3, ("not_snapshot",)),
    "magic only": (lambda sound: MAGIC, ("truncated", "preamble")),
    "truncated": (lambda sound: sound[: len(sound) // 2], ("truncated", "cut short")),
    "one byte short": (lambda sound: sound[:-1], ("truncated",)),
    "trailing bytes": (lambda sound: sound + b"\x00", ("trailing_data", "offset")),
    # The header's last byte: the header ends before its check, the footer and the digest.
    "header bit": (
        lambda sound: _flip(sound, len(sound) - 16 - 32 - 8 - 1),
        ("corrupt", "header checksum"),
    ),
    "digest bit": (lambda sound: _flip(sound, len(sound) - 1), ("corrupt", "digest")),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_snapshot_bytes(
    name: str, made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, fragments = BAD_FILES[name]
    path = tmp_path / "bad.smsnap"
    path.write_bytes(make(made.data()))
    for extra in ([], ["--verify"], ["--json"], ["--dump", "blobs"]):
        result = run(capsys, "inspect", str(path), *extra)
        assert_one_error_line(result, *fragments)
        assert result.out == ""


def test_flipped_bit_in_a_chunk_names_section_chunk_and_offset(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sound = made.data()
    snapshot = open_snapshot(sound)
    index = [s.key for s in snapshot.header.sections].index("kvcache/big")
    chunk_start = snapshot.section_offsets(index)[1]
    path = tmp_path / "flipped.smsnap"
    path.write_bytes(_flip(sound, chunk_start + 17))
    result = run(capsys, "inspect", str(path), "--verify")
    assert_one_error_line(
        result, "corrupt", "chunk checksum", "'kvcache/big'", "chunk 1", f"offset {chunk_start}"
    )


def _with_wrong_section_checksum(sound: bytes, section: int) -> bytes:
    """Every stored checksum holds, but one section's raw checksum is wrong."""
    header, chunks = split(sound)
    header["sections"][section]["checksum"] ^= 1
    return b"".join(assemble(header, chunks))


def test_verify_decompresses_what_the_digest_alone_cannot_check(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "forged.smsnap"
    path.write_bytes(_with_wrong_section_checksum(made.data(), 1))
    plain = run(capsys, "inspect", str(path))
    assert plain.code == 0 and plain.out.count("digest ok") == 3  # negative control
    result = run(capsys, "inspect", str(path), "--verify")
    assert_one_error_line(result, "section checksum", "'kvcache/big'")
    assert result.out == ""


def test_dump_of_a_payload_that_is_not_plain_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "payload.smsnap"
    path.write_bytes(seal_raw([b"\xc1 never valid msgpack"]))
    assert_one_error_line(run(capsys, "inspect", str(path), "--dump", "c0"), "invalid_data")


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["/nonexistent/snapshot"], ("/nonexistent/snapshot", "No such file")),
        (["."], ("not a regular file",)),
        (["{plain}", "--dump", "nosuch"], ("no section 'nosuch'", "kvcache/default")),
        (["{plain}", "--dump", "kvcache/nosuch"], ("no section 'kvcache/nosuch'",)),
        (["{plain}", "--key-file", "{key}"], ("auth", "not authenticated")),
        (["{authenticated}"], ("auth", "no key was given")),
        (["{authenticated}", "--key-file", "{wrong_key}"], ("auth", "mismatch")),
        (["{authenticated}", "--key-file", "{short_key}"], ("at least 16 bytes",)),
        (["{authenticated}", "--key-file", "/nonexistent/key"], ("/nonexistent/key",)),
    ],
)
def test_bad_inspect_arguments(
    argv: list[str],
    fragments: tuple[str, ...],
    made: Made,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong_key, short_key = tmp_path / "wrong", tmp_path / "short"
    wrong_key.write_bytes(b"another key, also long enough")
    short_key.write_bytes(b"too short\n")
    names = {
        "plain": made.plain,
        "authenticated": made.authenticated,
        "key": made.key_file,
        "wrong_key": wrong_key,
        "short_key": short_key,
    }
    filled = [arg.format(**names) for arg in argv]
    result = run(capsys, "inspect", *filled)
    assert_one_error_line(result, *fragments)
    assert result.out == ""


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["inspect"],
        ["inspect", "a", "b"],
        ["inspect", "snap", "--no-such-flag"],
        ["plan", "kvcache", "--from", "one", "--to", "3"],
        ["plan", "kvcache", "--to", "3"],
        ["migrate", "snap", "--to", "kvcache=1"],
        ["migrate", "snap", "-o", "out"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_error_line(run(capsys, *argv), code=2)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: opening it for a plain read would wait forever
    assert_one_error_line(run_child("inspect", str(fifo)), str(fifo), "not a regular file")


@pytest.mark.parametrize("how", ["--key-file", "$STATEMIGRATE_KEY_FILE"])
def test_a_key_file_that_is_a_fifo_is_refused_without_blocking(
    how: str, made: Made, tmp_path: Path
) -> None:
    """As SNAPSHOT is: a FIFO without a writer once made the command wait forever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if how == "--key-file":
        result = run_child("inspect", str(made.authenticated), "--key-file", str(fifo))
        assert_one_error_line(result, f"read {fifo}: not a regular file")
    else:
        result = run_child("inspect", str(made.authenticated), key_file=str(fifo))
        assert_one_error_line(
            result, f"read {fifo} (named by $STATEMIGRATE_KEY_FILE): not a regular file"
        )


@pytest.mark.parametrize("command", ["inspect", "migrate", "verify"])
def test_a_key_file_that_is_not_a_regular_file_is_refused(
    command: str, made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A device or a directory is no key file: /dev/null once read as a key too short,
    a directory as EISDIR."""
    rest = {
        "inspect": [],
        "migrate": ["-o", str(tmp_path / "out"), "--to", "kvcache=3", *REGISTRY],
        "verify": REGISTRY,
    }[command]
    failure = 2 if command == "verify" else 1  # verify's 1 is "would not restore"
    for path in (os.devnull, str(tmp_path)):
        result = run(capsys, command, str(made.authenticated), "--key-file", path, *rest)
        assert_one_error_line(result, f"read {path}: not a regular file", code=failure)
    assert not (tmp_path / "out").exists()


def test_a_key_file_longer_than_a_key_is_refused_not_cut(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the first 4096 bytes were read: a longer key became another key, refused as
    an authentication mismatch that named no cause."""
    long_key = tmp_path / "long.key"
    long_key.write_bytes(b"k" * 5000)
    result = run(capsys, "inspect", str(made.authenticated), "--key-file", str(long_key))
    assert_one_error_line(result, "a key file holds at most 4096 bytes", code=1)
    exact = tmp_path / "exact.key"
    exact.write_bytes(b"k" * 4096)
    result = run(capsys, "inspect", str(made.authenticated), "--key-file", str(exact))
    assert "at most 4096 bytes" not in result.err


@pytest.mark.slow
def test_errors_reach_the_terminal_without_traceback(made: Made, tmp_path: Path) -> None:
    """The same contract through ``python -m statemigrate``, where a traceback would show."""
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(300))
    assert_one_error_line(run_child("inspect", str(garbage), "--verify"), "not_snapshot")
    assert_one_error_line(run_child("inspect", str(tmp_path)), "not a regular file")
    assert_one_error_line(run_child("inspect", str(made.authenticated)), "no key was given")
    assert_one_error_line(run_child("inspect"), code=2)
    assert_one_error_line(
        run_child("graph", "kvcache", "--registry", "statemigrate:Service"), "Service"
    )
    assert_one_error_line(
        run_child("migrate", str(made.plain), "-o", str(tmp_path / "out"), "--to", "kvcache=x"),
        "kvcache=x",
        code=2,
    )


# --- plan and graph --------------------------------------------------------------------------


def test_plan_up(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "plan", "kvcache", "--from", "1", "--to", "3", *REGISTRY)
    assert result.code == 0 and result.err == ""
    expected = build_registry().plan("kvcache", 1, 3)
    assert [str(s) for s in expected.steps] == ["kvcache 1 -> 3 (upgrade_1_to_3)"]
    assert result.out.splitlines() == ["kvcache: 1 -> 3", "  kvcache 1 -> 3 (upgrade_1_to_3)"]


def test_plan_down_lists_the_lossy_steps(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "plan", "kvcache", "--from", "3", "--to", "1", *REGISTRY)
    assert result.code == 0
    assert result.out.splitlines() == [
        "kvcache: 3 -> 1",
        "  kvcache 3 -> 1 (downgrade_3_to_1)  [lossy: drops entries.*.expires_at, entries.*.hits]",
        "1 lossy step(s): restoring along this path needs allow_lossy={'kvcache'} or True",
    ]


def test_plan_to_the_same_version(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "plan", "kvcache", "--from", "2", "--to", "2", *REGISTRY)
    assert result.code == 0 and "nothing to do" in result.out


def test_graph_lists_versions_fingerprints_and_steps(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "graph", "kvcache", *REGISTRY)
    assert result.code == 0 and result.err == ""
    registry = build_registry()
    lines = result.out.splitlines()
    assert lines[0] == "kvcache: 3 version(s)"
    assert lines[1:4] == [
        f"  v{v}  {registry.schema_for('kvcache', v).fingerprint}" for v in (1, 2, 3)
    ]
    assert lines[4] == "steps: 6"
    assert lines[5:] == [
        f"  {step}{'  [lossy]' if step.lossy else ''}" for step in registry.steps("kvcache")
    ]
    assert sum(line.endswith("[lossy]") for line in lines) == 3


def test_plan_and_graph_from_the_configured_migrations(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repository's pyproject.toml names ``migrations/``; no flag is needed."""
    monkeypatch.chdir(REPO)
    before = _registry.default_registry.components()
    for _ in range(2):  # twice in one process: nothing is registered twice
        result = run(capsys, "plan", "kvcache", "--from", "3", "--to", "2")
        assert result.code == 0, result.err
        assert "kvcache 3 -> 2 (drop_hits)" in result.out
    graph = run(capsys, "graph", "kvcache")
    assert graph.code == 0, graph.err
    assert "steps: 6" in graph.out and "  v2  " in graph.out
    assert _registry.default_registry.components() == before  # the CLI loaded into a copy
    monkeypatch.chdir(REPO / "docs")  # found from a sub-folder too, as git finds .git
    assert run(capsys, "plan", "kvcache", "--from", "1", "--to", "2").code == 0


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["plan", "nosuch", "--from", "1", "--to", "2", *REGISTRY], ("unknown component",)),
        (["graph", "nosuch", *REGISTRY], ("unknown component 'nosuch'", "kvcache")),
        (["plan", "kvcache", "--from", "1", "--to", "9", *REGISTRY], ("no migration path",)),
        # Before, an unregistered version read 'registered steps: ...', naming neither.
        (
            ["plan", "kvcache", "--from", "1", "--to", "9", *REGISTRY],
            ("version 9 is not registered; registered versions: 1, 2, 3",),
        ),
        (
            ["plan", "kvcache", "--from", "0", "--to", "2", *REGISTRY],
            ("version 0 is not registered; registered versions: 1, 2, 3",),
        ),
        (
            ["plan", "kvcache", "--from", "1", "--to", "2"],
            ("no component is registered", "--registry MODULE:NAME", "[tool.statemigrate]"),
        ),
        # The reference module builds a Registry of its own: importing it registers
        # nothing in the default one, and the error says which argument reaches it.
        (
            ["graph", "kvcache", "--import", "statemigrate.reference"],
            ("importing statemigrate.reference registered no component", "--registry"),
        ),
        (["graph", "kvcache", "--registry", "no_such_module_x:r"], ("cannot import",)),
        (["graph", "kvcache", "--registry", "statemigrate:nothing"], ("no attribute",)),
        (["graph", "kvcache", "--registry", "statemigrate:__version__"], ("not a Registry",)),
        (["graph", "kvcache", "--registry", "statemigrate:Service"], ("calling", "TypeError")),
        (["graph", "kvcache", "--migrations", "/nonexistent/m"], ("/nonexistent/m",)),
        (["graph", "kvcache", "--import", "no_such_module_y"], ("no_such_module_y",)),
        (["graph", "kvcache", *REGISTRY, "--migrations", str(MIGRATIONS_DIR)], ("already",)),
    ],
)
def test_bad_registry_arguments(
    argv: list[str], fragments: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, *argv)
    assert_one_error_line(result, *fragments)
    assert result.out == ""


def test_a_migrations_path_that_is_no_directory_says_what_it_is(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot file, a FIFO or a symbolic link loop given to --migrations was said
    not to exist."""
    fifo, loop = tmp_path / "fifo", tmp_path / "loop"
    os.mkfifo(fifo)
    loop.symlink_to(loop)
    for path, says in (
        (made.plain, "is a regular file, not a directory"),
        (fifo, "is a FIFO, not a directory"),
        (loop, "is a loop of symbolic links"),
    ):
        result = run(capsys, "graph", "kvcache", "--migrations", str(path))
        line = assert_one_error_line(result, f"migrations directory {str(path)!r} {says}")
        assert "does not exist" not in line


def test_a_registry_module_that_fails_to_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"broken_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run(capsys, "graph", "kvcache", "--registry", f"{name}:registry")
    assert_one_error_line(result, name, "RuntimeError", "boom", "second line")


def test_a_schema_whose_default_json_cannot_hold_leaves_the_output_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, every command that loaded such a registry printed pydantic's two-line
    PydanticJsonSchemaWarning (the default is left out of the schema's JSON Schema)."""
    name = f"binary_default_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "import pydantic, statemigrate\n"
        "class Settings(pydantic.BaseModel):\n"
        "    blob: bytes = b'\\xff\\x00'\n"
        "registry = statemigrate.Registry()\n"
        "registry.add_schema('settings', 1, Settings)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")  # each one a terminal would show, even if seen before
        result = run(capsys, "graph", "settings", "--registry", f"{name}:registry")
    assert [str(warning.message) for warning in warned] == []
    assert result.code == 0 and result.err == ""
    assert result.out.startswith("settings: 1 version(s)")


@pytest.mark.parametrize("how", ["--import", "--registry", "--registry factory", "--migrations"])
def test_a_registry_module_that_exits_on_import_is_one_line(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sys.exit(3)`` while importing once ended the command with status 3 and no word."""
    name = f"exiting_{uuid.uuid4().hex}"
    folder = tmp_path / "modules"
    folder.mkdir()
    if how == "--registry factory":
        (folder / f"{name}.py").write_text("def build():\n    raise SystemExit(3)\n")
    else:
        (folder / f"{name}.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(folder))
    argv, fragment = {
        "--import": (["--import", name], f"importing {name!r} failed: it raised SystemExit(3)"),
        "--registry": (
            ["--registry", f"{name}:registry"],
            f"importing {name!r} failed: it raised SystemExit(3)",
        ),
        "--registry factory": (
            ["--registry", f"{name}:build"],
            f"calling '{name}:build' failed: it raised SystemExit(3)",
        ),
        "--migrations": (
            ["--migrations", str(folder)],
            f"{name}.py' failed to load: it raised SystemExit(3)",
        ),
    }[how]
    assert_one_error_line(run(capsys, "graph", "kvcache", *argv), fragment)
    sys.modules.pop(name, None)


def test_an_interrupt_while_importing_a_registry_module_is_not_a_failure_to_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"interrupted_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run(capsys, "graph", "kvcache", "--import", name)
    assert (result.code, result.err) == (130, "statemigrate: interrupted\n")


USER_MODULE = """
import statemigrate as sm
from typing_extensions import TypedDict


class Notes(TypedDict):
    notes: dict[str, str]


sm.schema("notes", version=1)(Notes)


def build() -> sm.Registry:
    registry = sm.Registry()
    registry.add_schema("notes", 1, Notes)
    return registry
"""


@pytest.mark.parametrize("how", ["--import", "--registry"])
def test_user_modules_are_imported_from_the_current_folder(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the ``statemigrate`` script runs: no pyproject.toml, and the current folder is
    not on ``sys.path`` (the script's own folder is)."""
    project = tmp_path / "service"
    project.mkdir()
    name = f"notes_{uuid.uuid4().hex}"
    (project / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(project))])
    monkeypatch.setattr(_registry, "default_registry", sm.Registry())
    argv = ["--import", name] if how == "--import" else ["--registry", f"{name}:build"]
    result = run(capsys, "graph", "notes", *argv)
    assert result.code == 0, result.err
    assert result.out.startswith("notes: 1 version(s)\n")
    assert sys.path[0] == str(project)
    sys.modules.pop(name, None)


# --- migrate ----------------------------------------------------------------------------------


def _restore(path: Path, *instances: tuple[str, object], key: bytes | None = None) -> None:
    service = sm.Service("cli-test", key=key, registry=_registry_with_blobs())
    for name, obj in instances:
        service.register(obj, instance=name)
    report = service.restore(path.read_bytes())
    assert not report.missing and not report.unknown and not report.skipped


def test_migrate_down_with_allow_lossy(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v1.smsnap"
    result = run(
        capsys,
        "migrate",
        str(made.plain),
        "-o",
        str(out),
        "--to",
        "kvcache=1",
        "--allow-lossy",
        *REGISTRY,
    )
    assert result.code == 0 and result.err == ""
    assert result.out.splitlines() == [
        "kvcache/default: kvcache 3 -> 1 (downgrade_3_to_1 [lossy])",
        "kvcache/big: kvcache 3 -> 1 (downgrade_3_to_1 [lossy])",
        f"wrote {out} ({out.stat().st_size} bytes, 3 sections)",
    ]
    snapshot = open_snapshot(out.read_bytes())
    v1 = made.registry.schema_for("kvcache", 1)
    assert [(s.key, s.version) for s in snapshot.header.sections] == [
        ("kvcache/default", 1),
        ("kvcache/big", 1),
        ("blobs/default", 1),
    ]
    assert snapshot.header.sections[0].fingerprint == v1.fingerprint
    assert snapshot.header.meta == {"site": "lab", "migrated_from": made.report.snapshot_id}
    assert snapshot.read_section(2) == made.states["blobs/default"]  # untouched section

    small, big, blobs = KVCacheV1(), KVCacheV1(), Blobs()
    blobs.blobs = {}
    _restore(out, ("default", small), ("big", big), ("default", blobs))
    for cache, key in ((small, "kvcache/default"), (big, "kvcache/big")):
        expected = {k: e["data"] for k, e in made.states[key]["entries"].items()}
        assert cache.entries == expected
    assert len(big.entries) == 80 and blobs.blobs == made.states["blobs/default"]["blobs"]


def test_migrate_refuses_a_lossy_step_and_leaves_no_file(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out"
    target.mkdir()
    out = target / "v1.smsnap"
    result = run(capsys, "migrate", str(made.plain), "-o", str(out), "--to", "kvcache=1", *REGISTRY)
    assert_one_error_line(result, "downgrade_3_to_1", "--allow-lossy", "loses data")
    assert list(target.iterdir()) == []
    assert result.out == ""


def test_migrate_to_an_unregistered_version_names_it_and_leaves_no_file(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: 'no migration path ...; registered steps: 1->2, ...', the version unnamed."""
    out = tmp_path / "v7.smsnap"
    result = run(capsys, "migrate", str(made.plain), "-o", str(out), "--to", "kvcache=7", *REGISTRY)
    line = assert_one_error_line(result, "kvcache")
    assert line.endswith(
        "no migration path for 'kvcache' from version 3 to 7: version 7 is not registered;"
        " registered versions: 1, 2, 3"
    )
    assert not out.exists() and result.out == ""


def test_inspect_shows_a_delta_and_its_base(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(DATA / f"v3-delta{SUFFIX}")
    result = run(capsys, "inspect", path, "--json")
    info = json.loads(result.out)
    assert info["kind"] == "delta"
    assert info["base"] == {"snapshot_id": "5b1d2a07c0ffee00d15ea5e0000b45e1", "generation": 8}
    text = run(capsys, "inspect", path).out.splitlines()
    assert text[3] == (
        "delta of   5b1d2a07c0ffee00d15ea5e0000b45e1  generation 8"
        " (applies on top of that snapshot)"
    )
    full = json.loads(run(capsys, "inspect", str(DATA / f"v3-small{SUFFIX}"), "--json").out)
    assert (full["kind"], full["base"]) == ("full", None)


def test_migrate_refuses_a_delta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.smsnap"
    result = run(
        capsys,
        "migrate",
        str(DATA / f"v3-delta{SUFFIX}"),
        "-o",
        str(out),
        "--to",
        "cache=2",
        *REGISTRY,
    )
    assert_one_error_line(result, "is a delta of 5b1d2a07c0ff", "only full snapshots")
    assert not out.exists()


def test_migrate_up(made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v3.smsnap"
    result = run(capsys, "migrate", str(made.v1), "-o", str(out), "--to", "kvcache=3", *REGISTRY)
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "kvcache/default: kvcache 1 -> 3 (upgrade_1_to_3)"
    cache = KVCacheV3()
    _restore(out, ("default", cache))
    expected = {
        key: {"data": value, "expires_at": None, "hits": 0}
        for key, value in made.v1_states["kvcache/default"]["entries"].items()
    }
    assert cache.export_state() == {"entries": expected}
    assert len(expected) == 2


def test_migrate_to_the_same_version_changes_no_data(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "same.smsnap"
    result = run(capsys, "migrate", str(made.plain), "-o", str(out), "--to", "kvcache=3", *REGISTRY)
    assert result.code == 0 and result.out.splitlines() == [
        f"wrote {out} ({out.stat().st_size} bytes, 3 sections)"
    ]
    migrated = open_snapshot(out.read_bytes())
    assert [migrated.read_section(i) for i in range(3)] == list(made.states.values())


def test_migrate_an_authenticated_snapshot(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v2.smsnap"
    result = run(
        capsys,
        "migrate",
        str(made.authenticated),
        "-o",
        str(out),
        "--to",
        "kvcache=2",
        "--allow-lossy",
        "--key-file",
        str(made.key_file),
        *REGISTRY,
    )
    assert result.code == 0, result.err
    assert open_snapshot(out.read_bytes(), key=KEY).authenticated  # still signed, same key
    assert_one_error_line(run(capsys, "inspect", str(out)), "no key was given")
    without_key = run(
        capsys,
        "migrate",
        str(made.authenticated),
        "-o",
        str(tmp_path / "x"),
        "--to",
        "kvcache=2",
        "--allow-lossy",
        *REGISTRY,
    )
    assert_one_error_line(without_key, "auth")


@pytest.mark.parametrize(
    ("target", "fragments", "code"),
    [
        # A value of the wrong form is a usage error (status 2), found before any work.
        ("kvcache=x", ("'kvcache=x'", "COMPONENT=VERSION"), 2),
        ("kvcache", ("COMPONENT=VERSION",), 2),
        ("=3", ("COMPONENT=VERSION",), 2),
        ("kvcache=-1", ("COMPONENT=VERSION",), 2),
        ("kvcache=\u00b2", ("COMPONENT=VERSION",), 2),  # a digit to isdigit(), not to int()
        ("kvcache=" + "1" * 5000, ("COMPONENT=VERSION",), 2),  # past int()'s 4300 digits
        ("nosuch=1", ("no section for nosuch",), 1),
        ("kvcache=9", ("no migration path", "3 to 9"), 1),
    ],
)
def test_bad_migrate_targets(
    target: str,
    fragments: tuple[str, ...],
    code: int,
    made: Made,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.smsnap"
    result = run(capsys, "migrate", str(made.plain), "-o", str(out), "--to", target, *REGISTRY)
    assert_one_error_line(result, *fragments, code=code)
    assert not out.exists()


def test_migrate_refuses_a_component_named_twice(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.smsnap"
    for targets in (["kvcache=1", "kvcache=2"], ["kvcache=3", "kvcache=3"]):
        argv = [arg for target in targets for arg in ("--to", target)]
        result = run(capsys, "migrate", str(made.plain), "-o", str(out), *argv, *REGISTRY)
        assert_one_error_line(result, "--to: names component 'kvcache' twice", code=2)
        assert not out.exists()


def test_migrate_data_that_breaks_a_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A section that claims version 3 but holds version 1 entries: the step fails."""
    v3 = build_registry().schema_for("kvcache", 3)
    encoded = encode_snapshot(
        [SectionInput("kvcache", "default", 3, v3.fingerprint, {"entries": {"a": "plain"}})],
        producer=Producer.current("liar"),
    )
    source, out = tmp_path / "liar.smsnap", tmp_path / "out.smsnap"
    source.write_bytes(encoded.to_bytes())
    result = run(
        capsys,
        "migrate",
        str(source),
        "-o",
        str(out),
        "--to",
        "kvcache=1",
        "--allow-lossy",
        *REGISTRY,
    )
    assert_one_error_line(result, "kvcache/default", "downgrade_3_to_1", "TypeError")
    assert not out.exists()


def test_migrate_into_a_missing_folder_names_the_output(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "out.smsnap"
    result = run(capsys, "migrate", str(made.v1), "-o", str(out), "--to", "kvcache=3", *REGISTRY)
    assert_one_error_line(result, str(out), "does not exist")


def _special_files(folder: Path) -> dict[str, Path]:
    """A FIFO, a socket, a directory and symbolic links, each where OUT could point."""
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    sock = folder / "sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock))
    directory = folder / "dir"
    directory.mkdir()
    precious = folder / "precious"
    precious.write_bytes(b"not to be replaced")
    link = folder / "link"
    link.symlink_to(precious)
    dangling = folder / "dangling"
    dangling.symlink_to(folder / "nowhere")
    return {
        "a FIFO": fifo,
        "a socket": sock,
        "a directory": directory,
        "a symbolic link": link,
        "a dangling symbolic link": dangling,
    }


@pytest.mark.parametrize(
    "kind", ["a FIFO", "a socket", "a directory", "a symbolic link", "a dangling symbolic link"]
)
def test_migrate_replaces_only_a_regular_file(
    kind: str, made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OUT that exists as anything but a regular file is refused before any work,
    and is left as it was (a link is not followed, nor replaced)."""
    folder = tmp_path / "out"
    folder.mkdir()
    special = _special_files(folder)
    out = special[kind]
    before = {path.name: os.lstat(path) for path in folder.iterdir()}
    result = run(capsys, "migrate", str(made.v1), "-o", str(out), "--to", "kvcache=3", *REGISTRY)
    shown = "a symbolic link" if "symbolic link" in kind else kind
    assert_one_error_line(result, str(out), f"is {shown}", "regular file")
    assert result.out == ""
    after = {path.name: os.lstat(path) for path in folder.iterdir()}
    assert {name: (st.st_ino, st.st_mode) for name, st in after.items()} == {
        name: (st.st_ino, st.st_mode) for name, st in before.items()
    }
    assert (folder / "precious").read_bytes() == b"not to be replaced"


def test_migrate_replaces_a_regular_file(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check's positive control: an existing regular OUT is replaced."""
    out = tmp_path / "old.smsnap"
    out.write_bytes(b"an older output")
    result = run(capsys, "migrate", str(made.v1), "-o", str(out), "--to", "kvcache=3", *REGISTRY)
    assert result.code == 0, result.err
    assert open_snapshot(out.read_bytes()).header.sections[0].version == 3


def test_migrate_does_not_replace_a_device(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A character device as OUT (a private copy of /dev/null when root may make one,
    else /dev/null itself, which only root could have replaced) is left alone."""
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        device = Path("/dev/null")
    before = os.lstat(device)
    result = run(capsys, "migrate", str(made.v1), "-o", str(device), "--to", "kvcache=3", *REGISTRY)
    assert_one_error_line(result, str(device), "a character device", "regular file")
    after = os.lstat(device)
    assert (after.st_ino, after.st_mode, after.st_rdev) == (
        before.st_ino,
        before.st_mode,
        before.st_rdev,
    )


@pytest.mark.parametrize(
    ("output", "fragments"),
    [
        ("", ("-o needs a file name",)),
        ("{tmp}/sub/", ("names a directory",)),
        ("{tmp}", ("a directory",)),
        ("{tmp}/missing/out.smsnap", ("missing", "does not exist")),
        ("{tmp}/file/out.smsnap", ("file", "not a directory")),
    ],
)
def test_migrate_refuses_an_output_it_cannot_write_before_any_work(
    output: str,
    fragments: tuple[str, ...],
    made: Made,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    loaded = []
    monkeypatch.setattr(
        "statemigrate.cli._registry.registry_from", lambda args: loaded.append(args)
    )
    result = run(
        capsys,
        "migrate",
        str(made.v1),
        "-o",
        output.format(tmp=tmp_path),
        "--to",
        "kvcache=3",
        *REGISTRY,
    )
    assert_one_error_line(result, *fragments)
    assert loaded == []  # refused before the registry was even loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "file", "sub"]


def test_migrate_with_migrations_from_the_flag(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--migrations PATH`` loads the steps into a registry that holds only schemas."""
    name = f"schemas_only_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "import statemigrate as sm\n"
        "from statemigrate.reference import register_schemas\n"
        "def build():\n"
        "    registry = sm.Registry()\n"
        "    register_schemas(registry)\n"
        "    return registry\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "v3.smsnap"
    argv = [
        "migrate",
        str(made.v1),
        "-o",
        str(out),
        "--to",
        "kvcache=3",
        "--registry",
        f"{name}:build",
    ]
    without = run(capsys, *argv)  # negative control: the schemas alone have no steps
    assert_one_error_line(without, "no migration path")
    copied = tmp_path / "my-migrations"
    shutil.copytree(MIGRATIONS_DIR, copied, ignore=shutil.ignore_patterns("__pycache__"))
    result = run(capsys, *argv, "--migrations", str(copied))
    assert result.code == 0, result.err
    assert open_snapshot(out.read_bytes()).header.sections[0].version == 3
    assert_one_error_line(run(capsys, *argv, "--migrations", str(tmp_path / "none")), "none")


@pytest.mark.slow
def test_migrate_in_a_project_configured_by_pyproject(made: Made, tmp_path: Path) -> None:
    """A project of its own: pyproject.toml names the schemas module and migrations/.

    Run with ``python -I`` so that the current folder is not on ``sys.path``, as with the
    installed ``statemigrate`` script: the project's modules must still be found.
    """
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    shutil.copytree(
        MIGRATIONS_DIR, project / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "state.py").write_text(
        "import statemigrate as sm\n"
        "from statemigrate.reference import register_schemas\n"
        "register_schemas(sm.default_registry)\n"
    )
    (project / "pyproject.toml").write_text(
        '[tool.statemigrate]\nimports = ["app.state"]\nmigrations = "migrations"\n'
    )
    out = tmp_path / "v1.smsnap"
    result = run_child(
        "migrate",
        str(made.plain),
        "-o",
        str(out),
        "--to",
        "kvcache=1",
        "--allow-lossy",
        cwd=project,
        isolated=True,
    )
    assert result.code == 0, result.err
    assert [s.version for s in open_snapshot(out.read_bytes()).header.sections] == [1, 1, 1]
    graph = run_child("graph", "kvcache", cwd=project / "migrations", isolated=True)
    assert graph.code == 0 and "kvcache: 3 version(s)" in graph.out, graph.err


# --- progress ---------------------------------------------------------------------------------


def test_no_progress_when_stderr_is_not_a_terminal(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v1.smsnap"
    migrated = run(
        capsys,
        "migrate",
        str(made.plain),
        "-o",
        str(out),
        "--to",
        "kvcache=1",
        "--allow-lossy",
        *REGISTRY,
    )
    verified = run(capsys, "inspect", str(made.plain), "--verify")
    assert (migrated.code, migrated.err, verified.code, verified.err) == (0, "", 0, "")


def _run_on_a_terminal(*argv: str) -> tuple[int, str, str]:
    """Run the command line with stderr on a pseudo-terminal; return code, stdout, tty text."""
    master, slave = pty.openpty()
    proc = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "statemigrate", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
        os.close(slave)
        slave = -1
        seen = bytearray()
        for _ in range(CHILD_TIMEOUT * 10):  # bounded: at most this many 0.1 s waits
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has gone
                break
            if not chunk:
                break
            seen += chunk
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        code = proc.wait(timeout=CHILD_TIMEOUT)
        return code, stdout, seen.decode()
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=CHILD_TIMEOUT)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.mark.slow
def test_progress_on_a_terminal(made: Made, tmp_path: Path) -> None:
    out = tmp_path / "v1.smsnap"
    code, stdout, tty = _run_on_a_terminal(
        "migrate",
        str(made.plain),
        "-o",
        str(out),
        "--to",
        "kvcache=1",
        "--allow-lossy",
        *REGISTRY,
    )
    assert code == 0 and f"wrote {out}" in stdout
    for number, key in enumerate(("kvcache/default", "kvcache/big", "blobs/default"), 1):
        assert f"migrating [{number}/3] {key}" in tty
    assert tty.rstrip(" ").endswith("\n")  # the progress line is ended
    assert "migrating [" not in stdout  # and stays off stdout
    code, stdout, tty = _run_on_a_terminal("inspect", str(made.plain), "--verify")
    assert code == 0 and "verifying [3/3] blobs/default" in tty and "verified" in stdout


def test_an_error_after_progress_starts_on_its_own_line(made: Made, tmp_path: Path) -> None:
    path = tmp_path / "forged.smsnap"
    path.write_bytes(_with_wrong_section_checksum(made.data(), 1))
    code, stdout, tty = _run_on_a_terminal("inspect", str(path), "--verify")
    assert code == 1 and stdout == ""
    lines = tty.replace("\r\n", "\n").split("\n")
    assert "verifying [1/3] kvcache/default" in lines[0]
    errors = [line for line in lines if ERROR_PREFIX in line]
    assert len(errors) == 1 and errors[0].startswith(ERROR_PREFIX), tty
    assert "Traceback" not in tty


# --- the fixtures ----------------------------------------------------------------------------


def test_fixture_snapshots_are_what_they_claim(made: Made) -> None:
    """Guards the fixtures: the tests above mean something only if these hold."""
    snapshot = open_snapshot(made.data())
    assert [s.key for s in snapshot.header.sections] == list(made.states)
    assert [snapshot.read_section(i) for i in range(3)] == list(made.states.values())
    assert open_snapshot(made.authenticated.read_bytes(), key=KEY).authenticated
    assert stat.S_ISREG(os.stat(made.plain).st_mode)


# --- docs/cli.md stays true to the parser ---------------------------------------------------


def _documented_commands() -> list[list[str]]:
    """Every ``$ statemigrate ...`` line of docs/cli.md, split as a shell would, without
    redirections and pipes."""
    commands = []
    for line in (REPO / "docs" / "cli.md").read_text().splitlines():
        if not line.startswith("$ statemigrate "):
            continue
        words = []
        for word in shlex.split(line[len("$ statemigrate ") :]):
            if re.fullmatch(r"\d*[<>|].*", word):
                break
            words.append(word)
        commands.append(words)
    return commands


def test_the_documented_inspect_json_has_the_fields_of_a_real_one(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/cli.md's ``inspect --json`` example shows what a full snapshot of this
    release prints: the same fields at every level, the same format version and kind."""
    text = (REPO / "docs" / "cli.md").read_text()
    shown = text.split("$ statemigrate inspect /dev/shm/gateway/current --json\n", 1)[1]
    documented = json.loads(shown.split("\n```", 1)[0])
    real = json.loads(run(capsys, "inspect", str(made.plain), "--json").out)
    assert sorted(documented) == sorted(real)
    assert sorted(documented["producer"]) == sorted(real["producer"])
    assert {tuple(sorted(section)) for section in documented["sections"]} == {
        tuple(sorted(section)) for section in real["sections"]
    }
    for field in ("format_version", "kind", "base"):
        assert documented[field] == real[field], field


# Command lines docs/cli.md shows on purpose as usage errors (status 2).
USAGE_ERRORS_SHOWN = (
    ["inspect"],
    ["inspect", "fd:2147483648"],
    ["graph", "kvcache", "--registry", "myservice.state"],
    ["inspect", "s3://snapshots/gateway#last"],
)


def test_every_documented_command_line_parses() -> None:
    commands = _documented_commands()
    assert len(commands) >= 15
    assert {argv[0] for argv in commands if argv} == set(DOCUMENTED_COMMANDS)
    parser = build_parser()
    for argv in commands:
        if argv in USAGE_ERRORS_SHOWN:
            continue
        try:
            parser.parse_args(argv)
        except SystemExit:  # argparse's way of refusing
            pytest.fail(f"docs/cli.md shows a command the parser refuses: {argv}")


# The commands docs/cli.md documents; add a command here when its section is written.
DOCUMENTED_COMMANDS = (
    "inspect",
    "list",
    "forget-unrestored",
    "plan",
    "graph",
    "migrate",
    "verify",
    "schemas",
    "makemigration",
    "check",
    "demo",
    "trial",
)


def test_every_option_is_documented() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    parser = build_parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    missing = []
    for name in DOCUMENTED_COMMANDS:
        sub = commands.choices[name]
        assert f"## `{name}`" in text, name
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help") and f"`{option}" not in text:
                    missing.append(f"{name} {option}")
    assert missing == []
