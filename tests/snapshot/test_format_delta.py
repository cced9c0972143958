"""Format version 3: a delta's header names its base; older versions may not."""

from __future__ import annotations

from typing import Any

import pytest
from golden import DATA, PRODUCER, SUFFIX, load_golden

from statemigrate._errors import SnapshotError
from statemigrate._runtime._chainread import _applied
from statemigrate._runtime._delta import is_delta_section
from statemigrate._snapshot._encode import SectionInput, encode_snapshot, new_snapshot_id
from statemigrate._snapshot._format import FORMAT_VERSION, assemble, open_snapshot
from statemigrate._snapshot._header import DeltaBase, parse_header


def _delta(**options: object) -> bytes:
    sections = [SectionInput("c", "main", 1, "", {"state": {"entries": {}}, "deleted": {}})]
    return encode_snapshot(sections, producer=PRODUCER, **options).to_bytes()  # type: ignore[arg-type]


def test_a_delta_round_trips_its_base_and_a_full_snapshot_has_none() -> None:
    base = DeltaBase("ab" * 16, 41)
    header = open_snapshot(_delta(base=base, generation=42)).header
    assert header.base == base and header.is_delta and header.generation == 42
    full = open_snapshot(_delta()).header
    assert full.base is None and not full.is_delta
    assert "base" not in full.to_plain()  # a full header reads as version 2's did
    assert open_snapshot(_delta()).format_version == FORMAT_VERSION == 3


def test_a_reserved_snapshot_id_is_used() -> None:
    reserved = new_snapshot_id()
    assert len(reserved) == 32 and reserved != new_snapshot_id()
    assert open_snapshot(_delta(snapshot_id=reserved)).header.snapshot_id == reserved


def test_the_golden_delta_names_its_base() -> None:
    blob, expected = load_golden("v3-delta")
    snapshot = open_snapshot(blob)
    assert snapshot.header.base == DeltaBase("5b1d2a07c0ffee00d15ea5e0000b45e1", 8)
    assert expected["header"]["base"] == {
        "snapshot_id": "5b1d2a07c0ffee00d15ea5e0000b45e1", "generation": 8
    }
    assert (DATA / f"v3-delta{SUFFIX}").stat().st_size == expected["size"]


def test_the_golden_deltas_compose_in_the_writers_order() -> None:
    """A delta section without ``moved`` sets every record in place (a new key last);
    with it, its last records go to the end, in order, whatever place they held."""
    entry = {"value": "base", "hits": 1}
    base = {"entries": {"touched": entry, "gone": entry, "kept": entry, "other": entry}}
    plain, _ = load_golden("v3-delta")
    data: Any = open_snapshot(plain).read_section(0)
    composed = _applied({"entries": {"gone-1": entry, "first": entry}}, data, 1, "cache/main")
    assert list(composed["entries"]) == ["first", *data["state"]["entries"]]
    moved, _ = load_golden("v3-delta-moved")
    data = open_snapshot(moved).read_section(0)
    assert data["moved"] == {"entries": 2}
    composed = _applied(base, data, 1, "cache/main")
    assert list(composed["entries"]) == ["kept", "other", "touched", "new"]
    assert composed["entries"]["touched"] == {"value": "moved to the end", "hits": 7}


@pytest.mark.parametrize(
    "moved",
    [{"entries": 4}, {"entries": -1}, {"entries": 1.0}, {"other": 0}, {"entries": True}, []],
)
def test_a_moved_count_that_does_not_fit_its_records_is_refused(moved: object) -> None:
    data = {"state": {"entries": {"a": 1, "b": 2, "c": 3}}, "deleted": {"entries": []}}
    assert is_delta_section(data) and is_delta_section({**data, "moved": {"entries": 3}})
    assert not is_delta_section({**data, "moved": moved})


@pytest.mark.parametrize("version", [1, 2])
def test_a_header_of_an_older_version_may_not_name_a_base(version: int) -> None:
    """Deltas exist from version 3 on: an older snapshot claiming a base is invalid."""
    snapshot = open_snapshot(_delta(base=DeltaBase("cd" * 16, 1)))
    plain = snapshot.header.to_plain()
    parts = assemble(plain, [], version=version)
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(b"".join(parts))
    assert caught.value.kind == "invalid_header"
    assert "base: deltas exist from container format version 3 on" in caught.value.detail


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ({"snapshot_id": "", "generation": 1}, "base.snapshot_id"),
        ({"snapshot_id": "x" * 65, "generation": 1}, "base.snapshot_id"),
        ({"snapshot_id": "ab", "generation": -1}, "base.generation"),
        ({"snapshot_id": "ab", "generation": 1 << 63}, "base.generation"),
        ({"snapshot_id": "ab", "generation": 1.0}, "base.generation"),
        ({"snapshot_id": "ab"}, "base.generation"),
        ({"snapshot_id": "ab", "generation": 1, "more": 1}, "base.more"),
        (["ab", 1], "base"),
    ],
)
def test_a_bad_base_is_an_invalid_header(base: object, message: str) -> None:
    plain = open_snapshot(_delta()).header.to_plain()
    plain["base"] = base
    with pytest.raises(ValueError, match=message):
        parse_header(plain)
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(b"".join(assemble(plain, [])))
    assert caught.value.kind == "invalid_header"


def test_a_full_header_parses_without_deltas_allowed() -> None:
    plain = open_snapshot(_delta()).header.to_plain()
    assert parse_header(plain, deltas=False).base is None
