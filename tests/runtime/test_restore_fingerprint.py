"""A section written by another schema under the same version (its fingerprint differs):
restored when this code reads it back as written, refused when it would not."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated, Any

import pytest
from holders import Holder
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from statemigrate import Registry, RestoreError, Service


class Entry(TypedDict):
    name: str
    score: float


class Written(TypedDict):
    entries: dict[str, Entry]


class Renamed(BaseModel):
    """``entries`` renamed to ``items`` with no new version; a default makes it optional."""

    items: dict[str, Entry] = Field(default_factory=dict)


class IntEntry(TypedDict):
    name: str
    score: int


class Narrowed(TypedDict):
    entries: dict[str, IntEntry]


class BoundedEntry(TypedDict):
    name: str
    score: Annotated[float, Field(ge=0)]


class Bounded(TypedDict):
    """The same shape with a bound every written value meets: a fingerprint of its own."""

    entries: dict[str, BoundedEntry]


WRITTEN = {"entries": {"a": {"name": "x", "score": 1.5}, "b": {"name": "y", "score": 2.0}}}


def registry_of(schema: type) -> Registry:
    registry = Registry()
    registry.add_schema("cache", 1, schema)
    registry.migratable("cache", version=1)(Holder)
    return registry


def snapshot_written_by(schema: type, state: Any) -> bytes:
    writer = Service("svc", registry=registry_of(schema))
    writer.register(Holder(state))
    return writer.snapshot()[0].to_bytes()


def restore_into(schema: type, live: Any, blob: bytes) -> tuple[Holder, Any]:
    reader = Service("svc", registry=registry_of(schema))
    holder = Holder(live)
    reader.register(holder)
    return holder, reader.restore(blob)


def test_a_field_renamed_without_a_new_version_is_refused_and_nothing_changes() -> None:
    live = Renamed(items={"kept": {"name": "live", "score": 0.5}})
    blob = snapshot_written_by(Written, WRITTEN)
    with pytest.raises(RestoreError) as caught:
        restore_into(Renamed, live, blob)
    error = caught.value
    assert error.phase == "validate"
    assert "written by a different schema" in str(error)
    assert "at ['entries']: this key would be lost" in str(error)
    assert "give the changed schema a new version" in str(error)


def test_the_refused_restore_leaves_the_live_state_as_it_was() -> None:
    live = Renamed(items={"kept": {"name": "live", "score": 0.5}})
    reader = Service("svc", registry=registry_of(Renamed))
    holder = Holder(live)
    reader.register(holder)
    with pytest.raises(RestoreError):
        reader.restore(snapshot_written_by(Written, WRITTEN))
    assert holder.state is live
    assert live.items == {"kept": {"name": "live", "score": 0.5}}


def test_a_narrowed_type_without_a_new_version_is_refused() -> None:
    blob = snapshot_written_by(Written, WRITTEN)
    with pytest.raises(RestoreError) as caught:
        restore_into(Narrowed, {"entries": {}}, blob)
    assert "written by a different schema" in str(caught.value)
    assert "it does not validate" in str(caught.value)


def test_a_widened_type_that_would_change_a_value_is_refused() -> None:
    """An int written where this code's schema has a float would come back a float."""
    blob = snapshot_written_by(Narrowed, {"entries": {"a": {"name": "x", "score": 3}}})
    with pytest.raises(RestoreError) as caught:
        restore_into(Written, {"entries": {}}, blob)
    assert "at ['entries']['a']['score']: 3 (int) would come back as 3.0 (float)" in str(
        caught.value
    )


def test_a_schema_that_reads_the_section_back_as_written_restores_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="statemigrate")
    blob = snapshot_written_by(Written, WRITTEN)
    holder, report = restore_into(Bounded, {"entries": {}}, blob)
    assert report.components[0].fingerprint_matches is False
    assert holder.state == WRITTEN
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "cache/default: snapshot schema fingerprint for version 1 differs from this code's;"
        " checking that this code reads the section back as written"
    ]


class ByName(TypedDict):
    by_id: dict[str, str]


class ById(TypedDict):
    """``ByName`` with its keys retyped in place: ``"007"`` and ``"7"`` both become 7."""

    by_id: dict[int, str]


class ByDecimal(TypedDict):
    by_price: dict[Decimal, int]


class ByFloat(TypedDict):
    """``ByDecimal`` retyped in place: keys that differ past a float's precision merge."""

    by_price: dict[float, int]


def test_dict_keys_retyped_in_place_are_refused_not_merged() -> None:
    """pydantic writes the same JSON Schema for both; the fingerprint tells them apart,
    and the read-back check finds the key the merge would lose."""
    live = {"by_id": {1: "live"}}
    blob = snapshot_written_by(ByName, {"by_id": {"007": "bond", "7": "seven"}})
    reader = Service("svc", registry=registry_of(ById))
    holder = Holder(live)
    reader.register(holder)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert caught.value.phase == "validate"
    assert "at ['by_id']['007']: this key would be lost" in str(caught.value)
    assert holder.state is live and live == {"by_id": {1: "live"}}


def test_decimal_keys_retyped_as_floats_in_place_are_refused() -> None:
    written = {"by_price": {Decimal("0.1000000000000000000001"): 1, Decimal("0.1"): 2}}
    blob = snapshot_written_by(ByDecimal, written)
    with pytest.raises(RestoreError) as caught:
        restore_into(ByFloat, {"by_price": {}}, blob)
    assert "at ['by_price']['0.1000000000000000000001']: this key would be lost" in str(
        caught.value
    )


def test_keys_retyped_in_place_that_all_come_back_restore_with_the_mismatch_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Plain data holds int keys as text: ``"7"`` written under ``dict[str, str]`` reads
    back as written under ``dict[int, str]``. Nothing is lost, so the restore goes on,
    and it reports that another schema wrote the section."""
    caplog.set_level(logging.WARNING, logger="statemigrate")
    blob = snapshot_written_by(ByName, {"by_id": {"7": "seven"}})
    holder, report = restore_into(ById, {"by_id": {}}, blob)
    assert holder.state == {"by_id": {7: "seven"}}
    assert report.components[0].fingerprint_matches is False
    assert "differs from this code's" in caplog.text
