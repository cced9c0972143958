"""The pipeline's export of migrated data: the state itself when it is its own plain
form, a walk otherwise, and the same bytes either way."""

from __future__ import annotations

from typing import Any

import ormsgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typing_extensions import TypedDict

import statemigrate as sm
from statemigrate._model._migrate import run_plan
from statemigrate._model._plaindata import strictly_plain


class Prefs(TypedDict):
    cart: list[str]
    prefs: dict[str, str]


class RecordV1(TypedDict):
    user: str
    seq: int
    score: float
    data: Prefs


class RecordV2(RecordV1):
    region: str


class SessionsV1(TypedDict):
    entries: dict[str, RecordV1]
    last_seq: int


class SessionsV2(TypedDict):
    entries: dict[str, RecordV2]
    last_seq: int


def sessions(down: Any) -> sm.Registry:
    registry = sm.Registry()
    registry.add_schema("sessions", 1, SessionsV1)
    registry.add_schema("sessions", 2, SessionsV2)
    registry.add_migration("sessions", 2, 1, down, records="entries", lossy=("entries.*.region",))
    return registry


def drop_region(key: str, value: Any) -> Any:
    del value["region"]
    return value


def record(i: int) -> dict[str, Any]:
    return {
        "user": f"u{i}", "seq": i, "score": i / 2,
        "data": {"cart": [f"item{i}"], "prefs": {"lang": "en"}}, "region": "eu",
    }


def state_v2(n: int = 3) -> dict[str, Any]:
    return {"entries": {f"k{i}": record(i) for i in range(n)}, "last_seq": n}


def walked(registry: sm.Registry, result: Any) -> Any:
    """What the pipeline exported before: the walk of the validated state."""
    return registry.schema_for("sessions", 1).export(result.state, walk=True)


def packed(value: Any) -> bytes:
    return ormsgpack.packb(value)


def test_data_kept_as_it_is_is_its_own_export_with_the_walks_bytes() -> None:
    registry = sessions(drop_region)
    result = registry.migrate("sessions", state_v2(), 2, 1, allow_lossy=True)
    assert result.data is result.state  # no walk rebuilt it
    assert packed(result.data) == packed(walked(registry, result))
    assert "region" not in result.data["entries"]["k1"]


def test_the_callers_data_is_left_as_it_was() -> None:
    registry = sessions(drop_region)
    live = state_v2()
    registry.migrate("sessions", live, 2, 1, allow_lossy=True)
    assert live == state_v2()


_text = st.text(max_size=6)
_record = st.fixed_dictionaries({
    "user": _text,
    "seq": st.integers(-(2**63), 2**64 - 1),
    "score": st.floats(allow_nan=False) | st.integers(-(2**53), 2**53),
    "data": st.fixed_dictionaries({
        "cart": st.lists(_text, max_size=3),
        "prefs": st.dictionaries(_text, _text, max_size=3),
    }),
    "region": _text,
})


@given(st.dictionaries(_text, _record, max_size=8), st.integers(0, 2**63 - 1))
def test_the_export_has_the_bytes_of_the_walk_whatever_the_state(
    entries: dict[str, Any], last_seq: int
) -> None:
    """Property: for every state of version 2, the downgraded export packs to the bytes
    the walk of its validated state packs to, and validates back to that state (an int
    where a float is declared is validated into a copy and walked: both paths meet)."""
    registry = sessions(drop_region)
    result = registry.migrate(
        "sessions", {"entries": entries, "last_seq": last_seq}, 2, 1, allow_lossy=True
    )
    assert packed(result.data) == packed(walked(registry, result))
    assert registry.schema_for("sessions", 1).validate(result.data) == result.state


def test_output_validation_changes_is_validated_into_a_copy_and_walked() -> None:
    def seq_as_text(key: str, value: Any) -> Any:
        del value["region"]
        value["seq"] = str(value["seq"])  # "1": validation makes it 1
        return value

    result = sessions(seq_as_text).migrate("sessions", state_v2(), 2, 1, allow_lossy=True)
    assert result.data is not result.state
    assert result.data["entries"]["k1"]["seq"] == 1
    assert type(result.data["entries"]["k1"]["seq"]) is int


def test_a_list_shared_between_records_is_not_shared_in_the_export() -> None:
    shared: list[str] = ["same"]

    def share_cart(key: str, value: Any) -> Any:
        del value["region"]
        value["data"]["cart"] = shared
        return value

    result = sessions(share_cart).migrate("sessions", state_v2(), 2, 1, allow_lossy=True)
    carts = [entry["data"]["cart"] for entry in result.data["entries"].values()]
    assert carts == [["same"]] * 3
    assert carts[0] is not carts[1] and carts[0] is not shared


def test_a_key_validation_drops_is_not_exported() -> None:
    def keep_region(key: str, value: Any) -> Any:
        return value  # "region" is no field of version 1: validation drops it

    result = sessions(keep_region).migrate("sessions", state_v2(), 2, 1, allow_lossy=True)
    assert "region" not in result.data["entries"]["k0"]


def test_output_of_the_wrong_type_is_still_refused() -> None:
    def seq_as_list(key: str, value: Any) -> Any:
        del value["region"]
        value["seq"] = ["not", "an", "int"]
        return value

    with pytest.raises(sm.ValidationError, match="seq"):
        sessions(seq_as_list).migrate("sessions", state_v2(), 2, 1, allow_lossy=True)


def test_output_without_a_required_field_is_still_refused() -> None:
    def drop_user(key: str, value: Any) -> Any:
        del value["region"], value["user"]
        return value

    with pytest.raises(sm.ValidationError, match="user"):
        sessions(drop_user).migrate("sessions", state_v2(), 2, 1, allow_lossy=True)


def test_output_that_is_not_plain_is_still_refused() -> None:
    def cart_as_tuple(key: str, value: Any) -> Any:
        del value["region"]
        value["data"]["cart"] = tuple(value["data"]["cart"])
        return value

    with pytest.raises(sm.MigrationStepError, match="tuple"):
        sessions(cart_as_tuple).migrate("sessions", state_v2(), 2, 1, allow_lossy=True)


def test_a_schema_that_is_not_its_own_plain_form_is_walked() -> None:
    registry = sm.Registry()

    class Tagged(TypedDict):
        tags: set[str]

    registry.add_schema("tagged", 1, Tagged)
    plan = registry.plan("tagged", 1, 1)
    result = run_plan(plan, {"tags": ["b", "a"]}, schema=registry.schema_for("tagged", 1))
    assert result.state == {"tags": {"a", "b"}}
    assert result.data == {"tags": ["a", "b"]}


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({"a": [1.5, None, True, b"x", -(2**63), 2**64 - 1]}, True),
        ({b"key": 1}, False),  # the decoder takes it, ormsgpack does not
        ({"a": (1,)}, False),
        ({"a": 2**64}, False),
        ({"a": "\ud800"}, False),
    ],
)
def test_strictly_plain_is_plain_data_with_str_keys(value: Any, plain: bool) -> None:
    assert strictly_plain(value) is plain
