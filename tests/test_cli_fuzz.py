"""Fuzzing the command line: any bytes given to inspect end in exit 0 or 1, never a raise."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from golden import PRODUCER, seal_raw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemigrate import _cli_source, _format
from statemigrate._cli import main
from statemigrate._encode import SectionInput, encode_snapshot
from statemigrate._format import PREAMBLE_SIZE, open_snapshot

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

_keys = st.one_of(
    st.text(max_size=8).filter(lambda k: not k.startswith("$")), st.binary(max_size=8)
)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=16),
    st.binary(max_size=16),
)
_plain = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)
    ),
    max_leaves=24,
)


def _as_shown(value: Any) -> Any:
    """What --dump promises to print for ``value``, written independently of the code."""
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [_as_shown(item) for item in value]
    if isinstance(value, dict):
        return {
            ("$base64:" + base64.b64encode(k).decode() if isinstance(k, bytes) else k): _as_shown(v)
            for k, v in value.items()
        }
    return value


@given(value=_plain)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_dump_shows_any_plain_data_as_json(folder: Path, value: Any) -> None:
    """For all plain data: ``--dump`` prints JSON that reads back as the data, bytes as
    base64 (values ``{"$base64": ...}``, map keys ``"$base64:..."``)."""
    raw = msgpack.packb(value, use_bin_type=True)
    outcome = inspect(folder, seal_raw([raw]), "--dump", "c0")
    check_contract(outcome)
    assert outcome.code == 0
    shown = json.loads(outcome.out)
    assert shown == _as_shown(value)  # infinities read back as themselves; NaN is not drawn


# --- negative controls: the properties catch the bugs they are about ------------------------


def _naive_open(data: Any, *, key: bytes | None = None, limits: Any = None) -> Any:
    """A reader that unpacks the preamble before checking there is one: on short input it
    raises struct.error, a foreign exception the command line does not translate."""
    struct.unpack_from("<8sHHIQQ", data)
    return open_snapshot(data, key=key, limits=limits)


def test_negative_control_a_leaking_reader_is_caught(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cli_source, "open_snapshot", _naive_open)

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
