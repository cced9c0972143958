"""Nesting near the reader's cap: a state the reader takes restores; one level deeper is
refused at commit, with its path, instead of committing a snapshot no reader takes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from typing_extensions import TypedDict

from statemigrate import ExportError
from statemigrate._model._plaindata import MAX_NESTING
from statemigrate._snapshot._packbatches import BATCH

RoundTrip = Callable[[object, object], object]  # the round_trip fixture


class Loose(TypedDict):
    x: Any


def lists(levels: int) -> list[Any]:
    """``levels`` lists, each holding the next."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def levels_of(value: Any) -> int:
    """How many lists ``value`` holds one inside the other (without recursing)."""
    count = 0
    while isinstance(value, list):
        count += 1
        value = value[0] if value else None
    return count


# The section's map is level 1, so the field's value may take MAX_NESTING - 1 levels;
# in a batched map of BATCH + 1 entries, one level less.
def small(levels: int) -> dict[str, Any]:
    return {"x": lists(levels)}


def batched(levels: int) -> dict[str, Any]:
    return {"x": {**{str(i): 0 for i in range(BATCH)}, "deep": lists(levels - 1)}}


CASES: dict[str, Callable[[int], dict[str, Any]]] = {"small": small, "batched": batched}


@pytest.mark.parametrize("shape", CASES)
def test_the_deepest_state_a_reader_takes_restores(round_trip: RoundTrip, shape: str) -> None:
    restored = round_trip(Loose, CASES[shape](MAX_NESTING - 1))
    assert isinstance(restored, dict)
    if shape == "small":
        assert levels_of(restored["x"]) == MAX_NESTING - 1
    else:
        assert len(restored["x"]) == BATCH + 1
        assert levels_of(restored["x"]["deep"]) == MAX_NESTING - 2


@pytest.mark.parametrize("extra", [1, 2, 8])
@pytest.mark.parametrize("shape", CASES)
def test_one_level_deeper_is_refused_at_commit(
    round_trip: RoundTrip, shape: str, extra: int
) -> None:
    """Before, the snapshot committed and every restore failed as too deep (one or two
    levels past), or the packer's own ValueError escaped (more). The path is shown by its
    ends and its length: before, it took over 3 KB of a one-line message."""
    with pytest.raises(ExportError) as caught:
        round_trip(Loose, CASES[shape](MAX_NESTING - 1 + extra))
    message = str(caught.value)
    assert "\n" not in message and f"deeper than {MAX_NESTING} levels" in message
    assert caught.value.path.startswith("x[")
    shortened = r"x(\[[^\]]+\]){5} \.\.\. (\[[^\]]+\]){4} \(\d{4} steps\)"
    assert re.fullmatch(shortened, caught.value.path), caught.value.path
    assert len(message) < 250
