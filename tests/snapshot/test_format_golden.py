"""Golden snapshots decode forever; future format versions and unknown flags are refused."""

from __future__ import annotations

import pytest
from golden import (
    GOLDEN_KEY,
    from_json,
    golden_key,
    golden_names,
    load_golden,
    redigest,
    rewrite_preamble,
    sha256,
)

from statemigrate._errors import SnapshotError
from statemigrate._snapshot._format import FLAG_AUTHENTICATED, FORMAT_VERSION, open_snapshot
from statemigrate._snapshot._msgpack import pack_data

NAMES = golden_names()


def test_the_golden_set_is_complete() -> None:
    """The files the format promises to read are all present (none deleted by accident)."""
    for version in (1, 2, 3):
        assert {f"v{version}-empty", f"v{version}-small", f"v{version}-mac"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_is_unchanged(name: str) -> None:
    blob, expected = load_golden(name)
    assert len(blob) == expected["size"]
    assert sha256(blob) == expected["sha256"], f"{name} was edited; golden files never change"


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_to_its_expected_value(name: str) -> None:
    blob, expected = load_golden(name)
    snapshot = open_snapshot(blob, key=golden_key(expected))
    assert snapshot.format_version == expected["format_version"]
    assert snapshot.authenticated is expected["authenticated"]
    assert snapshot.header.to_plain() == from_json(expected["header"])
    sections = expected["sections"]
    assert len(snapshot.header.sections) == len(sections)
    for index, want_json in enumerate(sections):
        want = from_json(want_json)
        got = snapshot.read_section(index)
        assert got == want
        # == treats 1 == 1.0 and 0.0 == -0.0 as equal; msgpack bytes do not.
        assert pack_data(got) == pack_data(want)


@pytest.mark.parametrize("name", ["v1-small", "v2-small"])
def test_goldens_cover_raw_and_zstd_chunks_and_several_chunks_per_section(name: str) -> None:
    blob, expected = load_golden(name)
    header = open_snapshot(blob).header
    codecs = {chunk.codec for section in header.sections for chunk in section.chunks}
    assert codecs == {0, 1}
    assert max(len(section.chunks) for section in header.sections) > 1


def _future(blob: bytes, *, key: bytes | None, **fields: int) -> bytes:
    # Everything stays consistent (preamble check and digest) except the field itself.
    return redigest(rewrite_preamble(blob, **fields), key=key)


@pytest.mark.parametrize("version", [0, 4, 0xFFFF])
@pytest.mark.parametrize("name", ["v1-small", "v1-mac", "v2-small", "v2-mac"])
def test_other_format_versions_are_unsupported(name: str, version: int) -> None:
    blob, expected = load_golden(name)
    key = golden_key(expected)
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(_future(blob, key=key, version=version), key=key)
    assert caught.value.kind == "unsupported_version"
    assert caught.value.offset == 8
    assert str(version) in caught.value.detail


@pytest.mark.parametrize("name", ["v1-small", "v2-small"])
@pytest.mark.parametrize("bit", range(1, 16))
def test_unknown_flag_bits_are_unsupported(bit: int, name: str) -> None:
    blob, _ = load_golden(name)
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(_future(blob, key=None, flags=1 << bit))
    assert caught.value.kind == "unsupported_version"
    assert caught.value.offset == 10


@pytest.mark.parametrize("name", ["v1-mac", "v2-mac"])
def test_unknown_flag_bits_are_unsupported_in_authenticated_snapshots(name: str) -> None:
    blob, _ = load_golden(name)
    forged = _future(blob, key=GOLDEN_KEY, flags=FLAG_AUTHENTICATED | 0x8000)
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(forged, key=GOLDEN_KEY)
    assert caught.value.kind == "unsupported_version"


@pytest.mark.parametrize(("name", "version"), [("v1-small", 2), ("v2-small", 1)])
def test_a_snapshot_relabelled_as_the_other_supported_version_is_refused(
    name: str, version: int
) -> None:
    """The two layouts cannot be mistaken for each other, even with every check redone."""
    blob, _ = load_golden(name)
    relabelled = _future(blob, key=None, version=version, header_len=0, total=0)
    with pytest.raises(SnapshotError):
        open_snapshot(relabelled)


def test_version_2_refuses_lengths_in_its_preamble() -> None:
    blob, _ = load_golden("v2-small")
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(_future(blob, key=None, total=len(blob)))
    assert caught.value.kind == "corrupt"
    assert caught.value.offset == 12


def test_the_current_version_is_the_one_the_goldens_were_written_with() -> None:
    """A reader of this version reads every golden of this version (no silent bump)."""
    versions = {load_golden(name)[1]["format_version"] for name in NAMES}
    assert FORMAT_VERSION in versions
    assert max(versions) == FORMAT_VERSION


def test_negative_control_value_comparison_sees_what_equality_misses() -> None:
    """The packed-bytes comparison above catches a reader that turns ints into floats."""
    _, expected = load_golden("v1-small")
    want = from_json(expected["sections"][1])
    assert isinstance(want, list)
    drifted = [float(v) if type(v) is int and abs(v) < 2**53 else v for v in want]
    assert drifted == want  # plain equality is fooled ...
    assert pack_data(drifted) != pack_data(want)  # ... the byte comparison is not
