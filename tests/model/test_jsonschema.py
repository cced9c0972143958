"""The JSON Schema fingerprints hash: the Python types pydantic's JSON Schema leaves out
(dict key types, tuple and deque for list, frozenset for set, text rewrites, union mode)
count, and every schema pydantic describes fully keeps the fingerprint it had."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import uuid
from typing import Annotated, Any, Literal, cast

import pydantic
import pydantic_core
import pytest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import PydanticJsonSchemaWarning
from typing_extensions import TypedDict

from statemigrate._model._fingerprint import canonical_json_schema, fingerprint_of
from statemigrate._model._jsonschema import (
    KEYS,
    detail_changes,
    unrecorded_details,
    without_details,
)
from statemigrate._model._schema import SchemaVersion
from statemigrate.reference import SCHEMAS


class Colour(enum.Enum):
    RED = "red"


class Entry(TypedDict):
    name: str
    hits: Annotated[int, Field(ge=0)]


class Record(BaseModel):
    when: datetime.datetime
    tags: set[str]
    pair: tuple[int, str]
    entries: dict[str, Entry]
    price: decimal.Decimal
    mode: Literal["a", "b"] = "a"


class Lowered(BaseModel):
    model_config = ConfigDict(str_to_lower=True)
    name: str


class Plain(BaseModel):
    name: str


def fingerprint(type_: object) -> str:
    return SchemaVersion.create("c", 1, type_).fingerprint


def pydantic_fingerprint(type_: object) -> str:
    """The fingerprint as it was computed from pydantic's JSON Schema alone."""
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(cast(Any, type_))
    return fingerprint_of(pydantic_core.to_jsonable_python(adapter.json_schema(mode="validation")))


Lower = Annotated[str, StringConstraints(to_lower=True)]

# Pairs whose JSON Schemas pydantic writes alike, though validation returns other values
# (keys merged, text rewritten, a member chosen) or other containers.
ALIKE_IN_JSON_SCHEMA = [
    (dict[str, str], dict[int, str]),
    (dict[str, str], dict[float, str]),
    (dict[str, str], dict[decimal.Decimal, str]),
    (dict[str, str], dict[bool, str]),
    (dict[int, str], dict[float, str]),
    (dict[decimal.Decimal, int], dict[float, int]),
    (dict[int, str], dict[bool, str]),
    (dict[int, str], dict[Annotated[int, Field(gt=0)], str]),
    (dict[str, str], dict[Lower, str]),
    (dict[str, str], dict[Annotated[str, StringConstraints(strip_whitespace=True)], str]),
    (list[int], tuple[int, ...]),
    (Annotated[list[int], Field(max_length=5)], Annotated[tuple[int, ...], Field(max_length=5)]),
    (
        Annotated[list[int], Field(min_length=1, max_length=5)],
        Annotated[tuple[int, ...], Field(min_length=1, max_length=5)],
    ),
    (list[int], collections.deque[int]),
    (tuple[int, ...], collections.deque[int]),
    (set[int], frozenset[int]),
    (dict[str, int], collections.OrderedDict[str, int]),
    (dict[str, int], collections.Counter[str]),
    (str, Lower),
    (str, Annotated[str, StringConstraints(to_upper=True)]),
    (str, Annotated[str, StringConstraints(strip_whitespace=True)]),
    (float | int, Annotated[float | int, Field(union_mode="left_to_right")]),
    (Plain, Lowered),
]


@pytest.mark.parametrize(("before", "after"), ALIKE_IN_JSON_SCHEMA, ids=repr)
def test_types_pydantic_writes_alike_get_fingerprints_of_their_own(
    before: object, after: object
) -> None:
    assert pydantic_fingerprint(before) == pydantic_fingerprint(after)  # the blind spot
    assert fingerprint(before) != fingerprint(after)


def test_key_types_nested_in_records_count() -> None:
    class ByName(TypedDict):
        rows: list[dict[str, Entry]]

    class ById(TypedDict):
        rows: list[dict[int, Entry]]

    assert fingerprint(ByName) != fingerprint(ById)


UNAFFECTED = [
    dict[str, int],
    dict[str, Any],
    dict[Any, Any],
    dict[datetime.datetime, int],
    dict[datetime.date, int],
    dict[uuid.UUID, int],
    dict[bytes, int],
    dict[Colour, int],
    dict[Literal["a", "b"], int],
    dict[Annotated[str, Field(max_length=5)], int],
    dict[Annotated[str, Field(pattern="^x")], int],
    list[int],
    set[str],
    tuple[int, str],
    tuple[()],
    Annotated[list[int], Field(max_length=5)],
    str,
    Annotated[str, Field(min_length=1)],
    int | float | None,
    decimal.Decimal,
    Entry,
    Record,
    Plain,
]


@pytest.mark.parametrize("type_", UNAFFECTED, ids=repr)
def test_schemas_pydantic_describes_fully_keep_their_fingerprints(type_: object) -> None:
    assert fingerprint(type_) == pydantic_fingerprint(type_)


@pytest.mark.parametrize("version", sorted(SCHEMAS))
def test_the_reference_schemas_keep_their_fingerprints(version: int) -> None:
    assert fingerprint(SCHEMAS[version]) == pydantic_fingerprint(SCHEMAS[version])


class BinaryDefault(BaseModel):
    blob: bytes = b"\xff\x00not utf-8"


def test_a_default_json_has_no_value_for_is_left_out_without_a_warning() -> None:
    """pydantic leaves out a default that JSON has no value for, and warns in two lines;
    registering the schema now leaves it out without a word (the suite's warnings are
    errors: before, this raised PydanticJsonSchemaWarning), and the fingerprint is the
    one it always had."""
    schema = SchemaVersion.create("c", 1, BinaryDefault)
    assert "default" not in schema.json_schema()["properties"]["blob"]
    with pytest.warns(PydanticJsonSchemaWarning, match="not JSON serializable"):
        before = pydantic_fingerprint(BinaryDefault)
    assert schema.fingerprint == before


class Marker(enum.Enum):
    START = b"\x02"
    BAD = b"\xff"


class OtherMarker(enum.Enum):
    START = b"\x02"
    BAD = b"\xfe"


BYTE_VALUES: list[tuple[object, object]] = [
    (Marker, OtherMarker),
    (Literal[b"\xff", b"\x00"], Literal[b"\xfe", b"\x00"]),
    (Literal[b"\xff"], Literal["/w=="]),  # its base64 text is not the value
]


@pytest.mark.parametrize(("one", "other"), BYTE_VALUES, ids=repr)
def test_bytes_values_that_are_not_utf8_register_and_count(one: object, other: object) -> None:
    """pydantic validates a Literal's or an Enum's bytes value that is not UTF-8 but
    cannot write its JSON Schema: the value is written as base64 under ``$base64``, and
    the fingerprint tells it from every other value."""
    schema = SchemaVersion.create("c", 1, one)
    assert schema.validate(b"\xff") in (b"\xff", Marker.BAD)
    enum_values = schema.json_schema().get("enum") or [schema.json_schema().get("const")]
    assert {"$base64": "/w=="} in enum_values
    assert fingerprint(one) != fingerprint(other)


def test_utf8_bytes_values_keep_their_fingerprints() -> None:
    assert fingerprint(Literal[b"a", b"\x02"]) == pydantic_fingerprint(Literal[b"a", b"\x02"])


def test_the_key_type_is_written_where_pydantic_leaves_it_out() -> None:
    schema = SchemaVersion.create("c", 1, dict[int, list[frozenset[int]]]).json_schema()
    assert schema[KEYS] == {"type": "integer"}
    assert schema["additionalProperties"]["items"]["x-statemigrate-type"] == "frozenset"
    assert without_details(schema) == {
        "additionalProperties": {"items": {"items": {"type": "integer"}, "type": "array",
                                           "uniqueItems": True}, "type": "array"},
        "type": "object",
    }


class Keyed(TypedDict):
    by_id: dict[int, str]


class Named(TypedDict):
    by_id: dict[str, str]


class Tags(TypedDict):
    tags: list[frozenset[str]]
    names: dict[str, Lower]


class TagSets(TypedDict):
    tags: list[set[str]]
    names: dict[str, str]


def _canonical(type_: object) -> dict[str, Any]:
    return canonical_json_schema(SchemaVersion.create("c", 1, type_).json_schema())


def test_detail_changes_name_the_field_and_both_types() -> None:
    assert detail_changes(_canonical(Named), _canonical(Keyed)) == [
        "field `by_id`: dict keys str became int"
    ]
    assert detail_changes(_canonical(dict[decimal.Decimal, int]), _canonical(dict[float, int])) == [
        "field `(root)`: dict keys Decimal became float"
    ]
    assert detail_changes(_canonical(TagSets), _canonical(Tags)) == [
        "field `names.*`: string rewrites none became to_lower",
        "field `tags.*`: set became frozenset",
    ]
    assert detail_changes(_canonical(Keyed), _canonical(Keyed)) == []


def test_detail_changes_call_a_type_the_old_schema_may_not_have_recorded_unrecorded() -> None:
    assert detail_changes(_canonical(Named), _canonical(Keyed), old_recorded=False) == [
        "field `by_id`: dict keys unrecorded became int"
    ]
    # A type the old schema does record is named as it is.
    assert detail_changes(_canonical(Keyed), _canonical(Named), old_recorded=False) == [
        "field `by_id`: dict keys int became str"
    ]


def test_unrecorded_details_are_what_the_schema_lacks_when_that_is_all() -> None:
    """Without this module's keywords, a schema lacks exactly what they record; any
    other difference, or a keyword it holds with another value, is not a lack."""
    tags = _canonical(Tags)
    assert unrecorded_details(canonical_json_schema(without_details(tags)), tags) == [
        "field `names.*`: string rewrites to_lower",
        "field `tags.*`: frozenset",
    ]
    assert unrecorded_details(tags, tags) == []
    keyed = _canonical(Keyed)
    assert unrecorded_details(_canonical(dict[float, str]), _canonical(dict[int, str])) is None
    assert unrecorded_details(_canonical(Named), _canonical(Tags)) is None
    assert unrecorded_details(keyed, canonical_json_schema(without_details(keyed))) is None
