"""statemigrate.testing: a snapshot check whose states the snapshot (nearly) all refuses fails."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)

import statemigrate as sm
from statemigrate._model._registry import Registry
from statemigrate.testing import check_migrations


class Mac:
    """A value of a class of its own: no plain form."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mac) and other.raw == self.raw

    __hash__ = None  # type: ignore[assignment]


def _parse(value: Any) -> Any:
    return value if isinstance(value, Mac) else Mac(bytes.fromhex(value.replace(":", "")))


MacType = Annotated[
    Mac,
    PlainValidator(_parse),
    PlainSerializer(lambda mac: mac.raw.hex(":"), return_type=str),
    WithJsonSchema({"type": "string"}),
]


class Device(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    mac: MacType


def _mac_texts() -> st.SearchStrategy[dict[str, str]]:
    return st.builds(dict, mac=st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":")))


def test_a_type_with_no_plain_form_fails_its_snapshot_check() -> None:
    """Every state refused by snapshot: the check fails, naming the refusal, instead of
    passing having checked nothing."""
    registry = Registry()
    registry.add_schema("dev", 1, Device)
    report = check_migrations(
        registry, strategies={("dev", 1): _mac_texts()}, max_examples=20, raise_on_failure=False
    )
    (failure,) = report.failures
    assert failure.what == (
        "20 of 20 states refused by snapshot, so the round trip was checked on next to nothing"
    )
    assert "at mac: Mac value has no plain form" in failure.detail
    assert "FAILED: dev v1 snapshot round trip" in report.to_markdown()


class Fleet(BaseModel):
    macs: dict[str, MacType]


def test_a_type_with_no_plain_form_fails_however_few_states_hold_one() -> None:
    """Most drawn states hold no value of the type (an empty dict): the check still
    fails, since a service holding one cannot commit at all."""
    registry = Registry()
    registry.add_schema("fleet", 1, Fleet)
    fleets = st.integers(0, 3).map(
        lambda n: {"macs": {"a": "01:02:03:04:05:06"} if n == 0 else {}}
    )
    report = check_migrations(
        registry,
        strategies={("fleet", 1): fleets},
        max_examples=40,
        settings=settings(derandomize=True, database=None),
        raise_on_failure=False,
    )
    (failure,) = report.failures
    refused = int(failure.what.split(" of ")[0])
    assert 0 < refused < failure.examples_run * 9 // 10, failure.what
    assert failure.what.endswith("holding a value of a type no snapshot can write")
    assert "Mac value has no plain form" in failure.detail


def test_the_refusal_names_the_field_not_the_top_level() -> None:
    """The path of a custom type's value is its field's, not "the top level"."""
    registry = Registry()
    registry.add_schema("dev", 1, Device)
    schema = registry.schema_for("dev", 1)
    with pytest.raises(sm.ExportError) as caught:
        schema.export(Device(mac=Mac(b"\x01" * 6)))
    assert "at mac: Mac value has no plain form" in str(caught.value)
    assert "top level" not in str(caught.value)


def from_text(value: Any) -> Any:
    return bytes.fromhex(value.replace(":", "")) if isinstance(value, str) else value


class PlainDevice(BaseModel):
    mac: Annotated[bytes, BeforeValidator(from_text)]


def test_the_documented_plain_form_passes() -> None:
    """docs/schemas.md's way out (keep bytes, parse the text before): the same strategy
    now checks every state."""
    registry = Registry()
    registry.add_schema("dev", 1, PlainDevice)
    (result,) = check_migrations(
        registry, strategies={("dev", 1): _mac_texts()}, max_examples=20
    ).results
    assert result.ok
    assert result.note == ""


class Note(BaseModel):
    text: str


@pytest.mark.parametrize(("share", "fails"), [(0.5, False), (0.95, True)])
def test_only_nearly_all_refused_fails(share: float, fails: bool) -> None:
    """Some refusals (lone surrogates) are documented and pass; at least 9 in 10 fail."""
    registry = Registry()
    registry.add_schema("note", 1, Note)
    texts = st.integers(0, 999).map(lambda n: {"text": "\ud800" if n < share * 1000 else "ok"})
    report = check_migrations(
        registry,
        strategies={("note", 1): texts},
        max_examples=100,
        settings=settings(derandomize=True, database=None),  # the same draws every run
        raise_on_failure=False,
    )
    (result,) = report.results
    refused = int(result.note.split(" of ")[0]) if result.ok and result.note else None
    assert result.ok is not fails, (result.note, report.failures)
    if not fails:
        assert refused is not None and refused < result.examples


class Loose(BaseModel):
    labels: dict  # type: ignore[type-arg]  # keys and values typed Any
    extra: dict[str, Any]
    anything: Any = None


@pytest.mark.slow
def test_a_schema_of_fields_typed_any_is_checked_on_most_of_its_states() -> None:
    """Keys typed ``Any`` are drawn hashable (str, now and then bytes), and values
    typed ``Any`` only now and then of a type a snapshot refuses there: most states of
    a schema made of such fields are checked, not refused."""
    registry = Registry()
    registry.add_schema("loose", 1, Loose)
    report = check_migrations(
        registry,
        max_examples=50,
        settings=settings(derandomize=True, database=None),  # the same draws every run
        raise_on_failure=False,
    )
    (result,) = report.results
    assert result.ok, report.failures
    refused = int(result.note.split(" of ")[0]) if result.note else 0
    print(result.note)
    assert refused < result.examples // 2, result.note
