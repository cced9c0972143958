"""statemigrate.testing._surrogates: a lone surrogate is found anywhere in a state, and the
snapshot check counts a state refused for one as a refusal, never as the schema's failure."""

from __future__ import annotations

import collections
import dataclasses
import enum
import pathlib
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, SecretStr
from union_shapes import KINDS, MEMBERS, member_of, schema_of

from statemigrate import ExportError, Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.testing import check_migrations
from statemigrate.testing._surrogates import holds_lone_surrogate

_SURROGATE_TEXT = st.builds(
    lambda head, surrogate, tail: head + surrogate + tail,
    st.text(max_size=3),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.text(max_size=3),
)
_CLEAN_TEXT = st.text(max_size=6).filter(lambda text: not holds_lone_surrogate(text))


class Extra(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = ""


@dataclasses.dataclass
class Box:
    inside: Any


class Colour(enum.StrEnum):
    RED = "red"


# Places a string can sit in a state, each a function of the string.
_PLACES = [
    lambda text: text,
    lambda text: [0, (1, text)],
    lambda text: {text: 1},
    lambda text: {"a": {"b": frozenset({text})}},
    lambda text: collections.deque([text]),
    lambda text: Extra(name="x", more=[text]),
    lambda text: Box(inside={"k": {text}}),
    lambda text: SecretStr(text),
    lambda text: pathlib.PurePosixPath("/tmp", text),
    lambda text: [Colour.RED, Box(Extra(name=text))],
]


# Containers and records any value can sit in.
_WRAPPERS = [
    lambda value: value,
    lambda value: [value],
    lambda value: ("a", value),
    lambda value: {"k": value},
    lambda value: Box(inside=value),
    lambda value: Extra(more=value),
    lambda value: collections.deque([1, value]),
]


@given(
    wrap=st.sampled_from(_WRAPPERS),
    kind=st.sampled_from(KINDS),
    member=st.sampled_from(MEMBERS),
    in_note=st.booleans(),
    surrogate=st.booleans(),
    data=st.data(),
)
def test_a_lone_surrogate_is_found_in_any_union_member(
    wrap: Any, kind: str, member: str, in_note: bool, surrogate: bool, data: st.DataObject
) -> None:
    """Property: a state of union members (TypedDict, model or dataclass ones), wrapped in
    any container or record, holds a lone surrogate exactly when one was put in a member's
    string or in a string of a list it holds."""
    text = data.draw(_SURROGATE_TEXT if surrogate else _CLEAN_TEXT)
    if in_note and member == "voucher":
        held = member_of(kind, member, "ok", note=text)
    else:
        held = member_of(kind, member, text)
    state = {"payments": [member_of(kind, "card", "ok"), held]}
    assert holds_lone_surrogate(wrap(state)) is surrogate


@given(place=st.sampled_from(_PLACES), surrogate=st.booleans(), data=st.data())
def test_a_lone_surrogate_is_found_in_any_container(
    place: Any, surrogate: bool, data: st.DataObject
) -> None:
    """Property: a value built around a string holds a lone surrogate exactly when the
    string does."""
    text = data.draw(_SURROGATE_TEXT if surrogate else _CLEAN_TEXT)
    assert holds_lone_surrogate(place(text)) is surrogate


def test_a_state_that_holds_itself_is_walked_once() -> None:
    looped: list[Any] = ["ok"]
    looped.append(looped)
    assert holds_lone_surrogate(looped) is False


def _union_states(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    # Few enough surrogates that most states are checked, not refused.
    texts = st.sampled_from(["ok", "x y", "", "\ud800", "a\udfffb"])
    member = st.builds(member_of, st.just(kind), st.sampled_from(MEMBERS), texts)
    return st.builds(dict, owner=st.just("ann"), payments=st.lists(member, max_size=3))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tagged", [True, False], ids=["tagged", "untagged"])
def test_a_lone_surrogate_in_a_union_member_is_a_passing_refusal(kind: str, tagged: bool) -> None:
    """A union member holding a lone surrogate, of every shape: the snapshot check passes
    with the refusals counted, in every run (it failed in some, naming the union)."""
    registry = Registry()
    registry.add_schema("pay", 1, schema_of(kind, tagged))
    (result,) = check_migrations(
        registry, strategies={("pay", 1): _union_states(kind)}, max_examples=40
    ).results
    assert result.ok, result
    assert re.match(r"\d+ of \d+ states refused by snapshot", result.note)
    assert "lone surrogate" in result.note


def test_a_validation_refusal_of_a_state_holding_a_lone_surrogate_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever a schema's own check says of a state holding a lone surrogate (it met the
    string first), the state could not be snapshotted anyway: counted, not a failure.
    The same refusal of a state without one still fails the check."""
    export = SchemaVersion.export

    def refusing(self: SchemaVersion, state: Any, **options: bool) -> Any:
        if state.name != "ok":
            raise ExportError("note", 1, "name", "a check of the schema's", by_validation=True)
        return export(self, state, **options)

    monkeypatch.setattr(SchemaVersion, "export", refusing)
    registry = Registry()
    registry.add_schema("note", 1, Extra)
    surrogates = st.builds(Extra, name=st.sampled_from(["\ud800", "ok"]))
    (result,) = check_migrations(
        registry, strategies={("note", 1): surrogates}, max_examples=30
    ).results
    assert result.ok, result
    broken = st.builds(Extra, name=st.sampled_from(["bad", "ok"]))
    (failure,) = check_migrations(
        registry, strategies={("note", 1): broken}, max_examples=30, raise_on_failure=False
    ).failures
    assert failure.what.startswith("snapshot refuses a valid state of version 1")
