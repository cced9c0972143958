"""Values as messages quote them (_model/_shown.py): a long one by its start and its
length, in every export and plain-data refusal that quotes one, as a path shows a key."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from statemigrate._errors import ExportError
from statemigrate._model._compare import first_difference
from statemigrate._model._plaindata import NoPlainForm, find_not_plain, to_plain
from statemigrate._model._schema import SchemaVersion
from statemigrate._model._shown import shortened

FORTY = "1" + "0" * 39  # the first 40 digits of 10**n


def test_a_long_value_shows_its_start_and_its_length() -> None:
    assert shortened("x" * 40) == repr("x" * 40)
    assert shortened("x" * 41) == f"{'x' * 40!r}...(41 chars)"
    nul = b"\x00"
    assert shortened(nul * 50) == f"{nul * 40!r}...(50 bytes)"
    assert shortened(-(10**50)) == f"{str(-(10**50))[:40]}...(51 digits)"
    # Past 4,300 digits Python writes no int as text: its size is shown instead.
    assert shortened(10**5000) == "<an int of 16610 bits>"
    assert shortened(tuple(range(30))) == f"{tuple(range(30))!r:.40}..."


class AnyValue(BaseModel):
    value: Any


class IntOrText(BaseModel):
    value: int | str


def refusal(schema: object, state: object) -> str:
    with pytest.raises(ExportError) as caught:
        SchemaVersion.create("c", 1, schema).export(state, walk=True)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_an_int_past_64_bits_is_quoted_by_its_start_and_its_digits() -> None:
    """Before, the message quoted all 4,001 digits: a 4 KB "one-line" ExportError."""
    assert f"the integer {FORTY}...(4001 digits) does not fit in 64 bits" in refusal(
        AnyValue, AnyValue(value=10**4000)
    )
    assert f"the integer {FORTY}...(4001 digits)" in refusal(dict[str, Any], {"a": 10**4000})


def test_a_union_that_reads_an_int_back_as_text_quotes_both_shortened() -> None:
    """Before, the int was cut at 37 digits and the text at 40 characters, without a
    closing quote or a length: ``('1000...000), not an int``."""
    message = refusal(IntOrText, IntOrText(value=10**200))
    assert f"the integer {FORTY}...(201 digits) does not fit in 64 bits" in message
    assert f"reads that text back as a str ({FORTY!r}...(201 chars)), not an int" in message


def test_a_value_that_is_not_plain_is_quoted_with_an_ellipsis() -> None:
    """Before, its repr was cut at 40 characters with no sign of the cut."""
    message = refusal(AnyValue, AnyValue(value=set(range(1000))))
    assert f"a set value ({set(range(1000))!r:.40}...) is not plain data" in message
    problem = find_not_plain({"a": {("x" * 100,): 1}})
    assert problem is not None
    assert problem[1] == f"a map key of type tuple ({('x' * 100,)!r:.40}...)"


def test_a_value_with_no_plain_form_is_quoted_shortened() -> None:
    with pytest.raises(NoPlainForm) as caught:
        to_plain({"a": [10**100]})
    assert str(caught.value) == (
        f"integer {FORTY}...(101 digits) does not fit in 64 bits at ['a'][0]"
    )
    with pytest.raises(NoPlainForm) as key:
        to_plain({("x" * 100,): 1})
    assert str(key.value) == f"key {('x' * 100,)!r:.40}... cannot be a string key at the top level"


class Extras(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int = 0


def test_an_extra_key_past_pythons_digits_is_refused_by_its_size() -> None:
    """Before, writing the key into the message raised a bare ValueError from export."""
    state = Extras(a=1)
    extra: dict[Any, Any] | None = state.__pydantic_extra__
    assert extra is not None
    extra[10**5000] = 2  # only a str key is declared; the state holds what it holds
    assert "extra key <an int of 16610 bits> is not a str" in refusal(Extras, state)


def test_a_difference_is_described_shortened_and_never_fails() -> None:
    """Before, a value was cut at 57 characters without its length, and an int past
    Python's digits for text raised ValueError instead of being described."""
    assert first_difference("x" * 100, "y" * 100) == (
        [], f"{'x' * 40!r}...(100 chars) (str) would come back as {'y' * 40!r}...(100 chars) (str)"
    )
    assert first_difference(10**5000, 10**5000 + 1) == (
        [], "<an int of 16610 bits> (int) would come back as <an int of 16610 bits> (int)"
    )
