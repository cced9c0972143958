"""SchemaVersion.misreads: plain data that another schema wrote, read back at C speed
when it comes back unchanged, compared value by value only when it may not."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, StringConstraints
from typing_extensions import TypedDict

from statemigrate._model import _compare
from statemigrate._model._schema import SchemaVersion

Lower = Annotated[str, StringConstraints(to_lower=True)]


class Rec(BaseModel):
    hits: int
    tags: tuple[str, ...]
    name: Lower


class Tracked(TypedDict):
    """The shapes whose fingerprints changed in one release: int and float keys, a
    variadic tuple, a frozenset, a Counter, a lower-cased string."""

    entries: dict[int, Rec]
    fkeys: dict[float, frozenset[int]]
    counter: Counter[str]


RECORDS = 1000


def written(records: int = RECORDS) -> dict[str, Any]:
    """Plain data as a snapshot holds it, once decoded."""
    schema = SchemaVersion.create("tracked", 1, Tracked)
    state = {
        "entries": {i: Rec(hits=i, tags=("a", "b"), name="n") for i in range(records)},
        "fkeys": {i + 0.25: frozenset({i}) for i in range(records)},
        "counter": Counter({f"c{i}": i for i in range(10)}),
    }
    plain: dict[str, Any] = schema.export(state, walk=True)
    return plain


@pytest.fixture
def diff_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    """Each call of the value-by-value comparison, once the fixture is in place."""
    calls: list[tuple[object, object]] = []
    original: Callable[..., Any] = _compare._diff

    def spy(expected: object, actual: object, *rest: Any) -> Any:
        calls.append((expected, actual))
        return original(expected, actual, *rest)

    monkeypatch.setattr(_compare, "_diff", spy)
    return calls


def test_data_that_reads_back_unchanged_is_not_compared_value_by_value(
    diff_calls: list[tuple[object, object]],
) -> None:
    data = written()
    schema = SchemaVersion.create("tracked", 1, Tracked)
    diff_calls.clear()  # writing the data compared it
    assert schema.misreads(data) is None
    assert diff_calls == []


def test_a_value_that_would_change_is_found_and_described_as_before(
    diff_calls: list[tuple[object, object]],
) -> None:
    data = written()
    data["entries"]["500"]["name"] = "Mixed"
    schema = SchemaVersion.create("tracked", 1, Tracked)
    assert schema.misreads(data) == (
        "at ['entries']['500']['name']: 'Mixed' (str) would come back as 'mixed' (str)"
    )
    assert diff_calls


def test_a_key_that_would_be_lost_is_found_and_described_as_before(
    diff_calls: list[tuple[object, object]],
) -> None:
    data = written()
    data["entries"]["0500"] = data["entries"]["500"]  # read as 500 too: one of them is lost
    schema = SchemaVersion.create("tracked", 1, Tracked)
    assert schema.misreads(data) == "at ['entries']['0500']: this key would be lost"
    assert diff_calls


def test_values_equal_by_eq_that_would_change_type_are_found() -> None:
    """``-0.0 == 0`` and ``1.0 == 1``: only a comparison that tells them apart refuses
    these, and a number made narrower is refused however equal it is."""
    as_int = SchemaVersion.create("r", 1, dict[str, int])
    assert as_int.misreads({"a": -0.0}) == "at ['a']: -0.0 (float) would come back as 0 (int)"
    assert as_int.misreads({"a": 1.0}) == "at ['a']: 1.0 (float) would come back as 1 (int)"
    assert as_int.misreads({"a": "1"}) == "at ['a']: '1' (str) would come back as 1 (int)"
    as_float = SchemaVersion.create("r", 1, dict[str, float])
    assert as_float.misreads({"a": -0.0}) is None


def test_a_number_that_comes_back_as_an_equal_number_of_a_wider_type_reads_back() -> None:
    """A bool as an int or a float, an int as a float: equal exactly, nothing is lost,
    and validation makes the same of it when the fingerprints match."""
    as_int = SchemaVersion.create("r", 1, dict[str, int])
    state, problem = as_int.read_back({"a": False, "b": 3})
    assert problem is None
    assert [(v, type(v)) for v in state.values()] == [(0, int), (3, int)]
    as_float = SchemaVersion.create("r", 1, dict[str, float])
    state, problem = as_float.read_back({"a": 1, "b": True, "c": 1.5})
    assert problem is None
    assert [(v, type(v)) for v in state.values()] == [(1.0, float), (1.0, float), (1.5, float)]


def test_an_int_that_its_float_would_round_is_refused() -> None:
    """Python compares an int with a float exactly: 2**53 + 1 is no 2.0**53."""
    as_float = SchemaVersion.create("r", 1, dict[str, float])
    assert as_float.misreads({"a": 2**53 + 1}) == (
        "at ['a']: 9007199254740993 (int) would come back as 9007199254740992.0 (float)"
    )


def test_fields_written_in_another_order_read_back_after_a_comparison(
    diff_calls: list[tuple[object, object]],
) -> None:
    """Validation puts a record's fields in the schema's order: other bytes, the same
    values, so the comparison in Python accepts the data."""
    data = written(3)
    data["entries"]["1"] = {"name": "n", "tags": ["a", "b"], "hits": 1}
    schema = SchemaVersion.create("tracked", 1, Tracked)
    assert schema.misreads(data) is None
    assert diff_calls


class Entry(TypedDict):
    name: str
    score: float


def test_a_state_that_is_plain_data_already_is_not_walked() -> None:
    """A schema whose valid states are plain data exports them as they are: only the
    packer looks at a million entries."""
    schema = SchemaVersion.create("cache", 1, dict[str, Entry])
    assert schema.exporter is not None and schema.exporter.identity

    def walk(value: object) -> object:
        raise AssertionError("walked")

    exporter = dataclasses.replace(schema.exporter, convert=walk)
    assert dataclasses.replace(schema, exporter=exporter).misreads(
        {"a": {"name": "x", "score": 1.5}}
    ) is None
    assert schema.misreads({"a": {"name": "x", "score": "1"}}) == (
        "at ['a']['score']: '1' (str) would come back as 1.0 (float)"
    )
