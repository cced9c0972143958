"""Unions of containers of one kind (dicts with different key types, lists of different
items): a value restores through the member it fits, and a value that would come back
changed is refused with what it would come back as."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel

from statemigrate import ExportError

RoundTrip = Callable[[object, object], object]  # the round_trip fixture


class IntFirst(BaseModel):
    labels: dict[int, str] | dict[str, str]


class StrFirst(BaseModel):
    labels: dict[str, str] | dict[int, str]


class Items(BaseModel):
    items: list[int] | list[str]


@pytest.mark.parametrize("schema", [IntFirst, StrFirst])
def test_a_str_keyed_dict_restores_through_its_member(
    round_trip: RoundTrip, schema: type[IntFirst | StrFirst]
) -> None:
    """Before, with the int-keyed member first: 'expected an int, found str'."""
    restored = round_trip(schema, schema(labels={"b": "c"}))
    assert isinstance(restored, schema) and restored.labels == {"b": "c"}
    assert [type(key) for key in restored.labels] == [str]


def test_a_list_restores_through_the_member_it_fits(round_trip: RoundTrip) -> None:
    restored = round_trip(Items, Items(items=["a", "b"]))
    assert isinstance(restored, Items) and restored.items == ["a", "b"]
    restored = round_trip(Items, Items(items=[1, 2]))
    assert isinstance(restored, Items) and restored.items == [1, 2]


@pytest.mark.parametrize("schema", [IntFirst, StrFirst])
def test_an_int_key_that_would_come_back_as_text_is_refused_saying_so(
    round_trip: RoundTrip, schema: type[IntFirst | StrFirst]
) -> None:
    """{1: 'a'} validates back as {'1': 'a'} (the str-keyed member fits its text exactly).
    Before, with the int-keyed member first: 'this key would be lost'; str-keyed first:
    'expected a str, found int'."""
    state = schema(labels={1: "a"})
    assert schema.model_validate({"labels": {"1": "a"}}).labels == {"1": "a"}
    with pytest.raises(ExportError) as caught:
        round_trip(schema, state)
    assert caught.value.path == "labels[1]"
    assert str(caught.value).endswith("at labels[1]: the key would come back as '1' (str)")
