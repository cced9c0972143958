"""NaN keys: which record fields may hold one, and a delta's NaN key matched with the
one a dict holds."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from typing_extensions import TypedDict

from statemigrate import Registry
from statemigrate._model._changes import key_codec
from statemigrate._model._nankeys import (
    MISSING,
    held_nan,
    may_hold_nan,
    under_held_nan,
    without_stale_nan,
)


@pytest.mark.parametrize(
    ("key_type", "expected"),
    [(float, True), (Decimal, True), (str, False), (int, False), (uuid.UUID, False)],
)
def test_only_float_and_decimal_keyed_fields_pay_for_the_nan_check(
    key_type: Any, expected: bool
) -> None:
    keyed = TypedDict("keyed", {"records": dict[key_type, int]})  # noqa: UP013
    registry = Registry()
    registry.add_schema("keyed", 1, keyed)
    codec = key_codec(registry.schema_for("keyed", 1), "records")
    assert may_hold_nan(codec) is expected


def test_a_nan_key_is_matched_with_the_one_the_dict_holds() -> None:
    held, sent = float("nan"), float("nan")
    target = {0.5: 1, held: 2, 1.5: 3}
    assert held_nan(target) is held
    assert held_nan({0.5: 1}) is MISSING
    put = under_held_nan(target, {0.5: 9, sent: 8})
    assert list(put) == [0.5, held]
    assert list(put.values()) == [9, 8]
    assert under_held_nan(target, [sent, 1.5])[0] is held
    records = {0.5: 1}
    assert under_held_nan(target, records) is records  # no NaN sent: the same map
    assert under_held_nan({0.5: 1}, [sent])[0] is sent  # no NaN held: as sent


def test_a_deleted_nan_is_left_out_when_the_delta_sets_one() -> None:
    gone, now = float("nan"), float("nan")
    assert without_stale_nan([gone, 2.5], {now: 1}) == [2.5]
    assert without_stale_nan([gone, 2.5], {0.5: 1}) == [gone, 2.5]
    keys = [2.5]
    assert without_stale_nan(keys, {now: 1}) is keys
