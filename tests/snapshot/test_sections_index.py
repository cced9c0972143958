"""A snapshot's section methods take a section's index: anything else, a bool or an
index out of range, is one ConfigurationError naming the argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import statemigrate as sm
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._header import Producer


def opened(sections: int) -> sm.Snapshot:
    encoded = encode_snapshot(
        [SectionInput("c", f"i{n}", 1, "0" * 32, {"n": n}) for n in range(sections)],
        producer=Producer.current("s"),
    )
    return sm.open_snapshot(encoded.to_bytes())


METHODS: dict[str, Callable[[sm.Snapshot, Any], object]] = {
    "read_section": lambda snapshot, index: snapshot.read_section(index),
    "read_raw": lambda snapshot, index: snapshot.read_raw(index),
    "verify_section": lambda snapshot, index: snapshot.verify_section(index),
    "section_offsets": lambda snapshot, index: snapshot.section_offsets(index),
}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("index", [3, -4, 99, True, False, "0", 1.0, None], ids=repr)
def test_no_index_of_a_section_is_refused(method: str, index: Any) -> None:
    """Before, 99 raised a bare IndexError, '0' a bare TypeError, and True read
    section 1."""
    with pytest.raises(sm.ConfigurationError) as caught:
        METHODS[method](opened(3), index)
    assert str(caught.value) == (
        f"index: must be an int from -3 to 2 (the snapshot has 3 sections), not {index!r}"
    )


def test_a_snapshot_without_sections_says_so() -> None:
    with pytest.raises(sm.ConfigurationError) as caught:
        opened(0).read_section(0)
    assert str(caught.value) == "index: the snapshot has no sections (got 0)"


def test_indices_count_from_the_end_when_negative_as_a_tuples_do() -> None:
    snapshot = opened(3)
    assert [snapshot.read_section(i) for i in (0, 2, -1, -3)] == [
        {"n": 0},
        {"n": 2},
        {"n": 2},
        {"n": 0},
    ]
