"""A section written by another schema under the same version (its fingerprint differs):
restored when this code reads it back as written, refused when it would not."""

from __future__ import annotations

import logging
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
