"""A value of another type in a scalar field (_model/_export_lax.py): written as lax
validation makes it, in models, dataclasses and TypedDicts alike, so that a restore
gives what validating the state gives; refused where validation refuses it, where the
field is no scalar, and in a schema checked by validating it back."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import re
import uuid
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model, field_validator
from typing_extensions import TypedDict

from statemigrate._errors import ExportError
from statemigrate._model._compare import first_difference
from statemigrate._model._schema import SchemaVersion
from statemigrate.testing._exact import exact_differences


class Counter(BaseModel):
    x: int = "5"  # type: ignore[assignment]  # pydantic does not validate defaults


@dataclasses.dataclass
class CounterData:
    x: int = "5"  # type: ignore[assignment]


class CounterDict(TypedDict):
    x: int
    when: datetime.date  # a field that is not plain data: the state is walked


def export(schema_type: object, state: object) -> Any:
    return SchemaVersion.create("c", 1, schema_type).export(state)


def test_an_unvalidated_default_of_another_type_is_written_as_validation_makes_it() -> None:
    """Before, the model and the dataclass refused it ('at x: expected an int, found
    str'), while a plain TypedDict state was written with "5" and restored as 5."""
    assert export(Counter, Counter()) == {"x": 5}
    assert export(CounterData, CounterData()) == {"x": 5}
    state = {"x": "5", "when": "2024-05-01"}
    assert export(CounterDict, state) == {"x": 5, "when": "2024-05-01"}
    assert export(Measured, unvalidated(Measured, x=2**60)) == {"x": 2.0**60}


def unvalidated(model: type[BaseModel], **fields: Any) -> BaseModel:
    """A model holding ``fields`` as they are, as ``model_construct`` makes it."""
    return model.model_construct(**fields)


class Dated(BaseModel):
    day: datetime.date


class Measured(BaseModel):
    x: float = 0.0


@dataclasses.dataclass
class MeasuredData:
    x: float = 0.0


class Readings(TypedDict):
    by_name: dict[str, float]
    at: dict[float, str]
    last: float | None
    text: float | str
    when: datetime.date


class Colour(enum.Enum):
    RED = "red"


class Painted(BaseModel):
    colour: Colour


class Checked(BaseModel):
    x: int
    name: str = "n"

    @field_validator("name")
    @classmethod
    def _same(cls, name: str) -> str:
        return name


READINGS: dict[str, Any] = {
    "by_name": {"a": 1}, "at": {2: "b"}, "last": None, "text": 3, "when": datetime.date(2024, 5, 1)
}


@pytest.mark.parametrize(
    ("schema_type", "state", "says"),
    [
        (Counter, unvalidated(Counter, x="abc"), "at x: expected an int, found str"),
        (Counter, unvalidated(Counter, x=None), "at x: expected an int, found NoneType"),
        (Painted, unvalidated(Painted, colour="red"), "at colour: expected a Colour member"),
        (Checked, unvalidated(Checked, x="5"), "at x: '5' (str) would come back as 5 (int)"),
        (
            Dated,
            unvalidated(Dated, day=datetime.datetime(2024, 5, 1, 3)),
            "at day: expected a date, found a datetime",
        ),
        (
            Dated,
            unvalidated(Dated, day=datetime.datetime(2024, 5, 1)),
            "at day: expected a date, found a datetime",
        ),
        (
            Measured,
            unvalidated(Measured, x=2**53 + 1),
            "at x: 9007199254740993 (int) would come back as 9007199254740992.0 (float)",
        ),
        (
            MeasuredData,
            MeasuredData(x=10**20 + 1),
            "at x: 100000000000000000001 (int) would come back as 1e+20 (float)",
        ),
        (
            Readings,
            {**READINGS, "by_name": {"a": 2**64 + 1}},
            "at by_name['a']: 18446744073709551617 (int) would come back as 1.8446744073709552e+19",
        ),
        (
            Readings,
            {**READINGS, "at": {2**53 + 1: "x"}},
            "at at[9007199254740993]: 9007199254740993 (int) would come back as",
        ),
        (
            Readings,
            {**READINGS, "last": 2**53 + 1},
            "at last: 9007199254740993 (int) would come back as",
        ),
        (
            Readings,
            {**READINGS, "text": 2**53 + 1},
            "at text: 9007199254740993 (int) would come back as",
        ),
        # The dict of fields a component without export_state hands over, which is
        # validated into the model first: validation must not take these either.
        (
            Dated,
            {"day": datetime.datetime(2024, 5, 1)},
            "at day: expected a date, found a datetime",
        ),
        (
            Measured,
            {"x": 2**53 + 1},
            "at x: 9007199254740993 (int) would come back as 9007199254740992.0 (float)",
        ),
        (MeasuredData, {"x": 10**20 + 1}, "at x: 100000000000000000001 (int) would come back as"),
    ],
    ids=[
        "refused-by-validation", "none", "not-a-scalar", "checked-schema", "not-midnight",
        "midnight", "int-rounded", "dataclass-int-rounded", "int-past-64-bits-rounded",
        "float-key-rounded", "optional-rounded", "union-member-rounded",
        "fields-midnight", "fields-int-rounded", "fields-dataclass-int-rounded",
    ],
)
def test_what_is_not_converted_is_refused_at_its_path(
    schema_type: object, state: object, says: str
) -> None:
    with pytest.raises(ExportError, match=re.escape(says)):
        export(schema_type, state)


SCALARS: list[type] = [
    int,
    float,
    str,
    bool,
    bytes,
    datetime.date,
    datetime.datetime,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    uuid.UUID,
]
MODELS = {
    kind: SchemaVersion.create("c", 1, create_model("One", x=(kind, ...))) for kind in SCALARS
}
# Text that lax validation parses into one scalar or another.
TEXTS = ["5", "-7", "1.5", "1e3", "yes", "off", "2024-05-01", "2024-05-01T12:30:00+02:00",
         "12:30", "P1DT2H", "12345678-1234-5678-1234-567812345678", " 5 ", "nan", ""]
VALUES = st.one_of(
    st.sampled_from(TEXTS),
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.decimals(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.times(),
    st.timedeltas(),
    st.uuids(),
)


@given(kind=st.sampled_from(SCALARS), value=VALUES)
@example(kind=int, value="5")
@example(kind=datetime.date, value="2024-05-01")
@example(kind=float, value=decimal.Decimal("0.1"))
@example(kind=datetime.date, value=datetime.datetime(2024, 5, 1))  # midnight: refused
@example(kind=float, value=2**53 + 1)  # refused: its float is 2.0**53
def test_a_written_value_restores_as_validating_the_state_gives(kind: type, value: object) -> None:
    """For every scalar type and any value in its field: if the export takes the state,
    restoring what it wrote gives exactly what validating the state gives."""
    schema = MODELS[kind]
    model: Any = schema.type
    try:
        plain = schema.export(model.model_construct(x=value))
    except ExportError:
        return
    try:
        expected = TypeAdapter(model).validate_python({"x": value})
    except ValidationError:
        raise AssertionError(f"written {plain!r}, but validation refuses the state") from None
    assert exact_differences(expected, schema.validate(plain)) == []


@given(
    case=st.tuples(st.just(float), st.integers(-(2**70), 2**70))
    | st.tuples(st.just(datetime.date), st.datetimes(timezones=st.none() | st.timezones()))
)
@example(case=(float, 2**53 + 1))
@example(case=(float, 2**53))
@example(case=(datetime.date, datetime.datetime(2024, 5, 1)))
def test_what_the_export_takes_comes_back_as_the_value_held(case: tuple[type, object]) -> None:
    """For an int in a float field and a datetime in a date field: if the export takes
    the state, the restore gives back the value held, an int as an equal float and
    never the float nearest it; a datetime is refused, at midnight too."""
    kind, value = case
    schema = MODELS[kind]
    model: Any = schema.type
    try:
        plain = schema.export(model.model_construct(x=value))
    except ExportError:
        if kind is float:
            assert float(value) != value  # type: ignore[arg-type]  # an int drawn
        return
    assert kind is float
    assert first_difference(value, schema.validate(plain).x, widening=True) is None
