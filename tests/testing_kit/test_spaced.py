"""statemigrate.testing._spaced: strings with whitespace at an end, or of whitespace only,
are drawn often enough that a step losing such a space fails its check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import statemigrate.testing._checks
from statemigrate import Registry
from statemigrate._model._schema import SchemaVersion
from statemigrate.testing import check_migrations, from_schema, migration_checks
from statemigrate.testing._spaced import spaced_text


class Item(BaseModel):
    name: str
    qty: int = 0


class Catalog(BaseModel):
    items: dict[str, Item] = {}


class SplitItem(BaseModel):
    brand: str = ""
    model: str
    qty: int = 0


class SplitCatalog(BaseModel):
    items: dict[str, SplitItem] = {}


def split_names() -> Registry:
    """A step that splits a name at its first space, and its reverse that joins the two
    parts with one: a leading space is lost (``" X"`` comes back ``"X"``, ``" "`` comes
    back ``""``), and only the parts are declared lost. Any other name comes back."""
    registry = Registry()
    registry.add_schema("catalog", 1, Catalog)
    registry.add_schema("catalog", 2, SplitCatalog)

    def up(key: str, value: dict[str, Any]) -> dict[str, Any]:
        name = value.pop("name")
        brand, _, model = name.partition(" ") if " " in name else ("", "", name)
        return {"brand": brand, "model": model, **value}

    def down(key: str, value: dict[str, Any]) -> dict[str, Any]:
        brand, model = value.pop("brand"), value.pop("model")
        return {"name": f"{brand} {model}" if brand else model, **value}

    registry.add_migration("catalog", 1, 2, up, records="items")
    registry.add_migration(
        "catalog", 2, 1, down, records="items", lossy=("items.*.brand", "items.*.model")
    )
    return registry


def lost_a_space(example: Any) -> bool:
    """Whether a counterexample of version 1 holds a name that the split at its first
    space and the join with one do not give back: one that starts with a space."""
    names = [item["name"] for item in example["items"].values()]
    return any(name.startswith(" ") for name in names)


@pytest.mark.slow
def test_a_split_that_loses_a_leading_space_is_found_at_the_default_example_count() -> None:
    """At hypothesis' default 100 examples (statemigrate check's), a planted
    ``name.partition(" ")`` that turns ``" X"`` into ``"X"`` fails the check of its step,
    in a derandomized run; seeded runs found it in 99 of 100 (14 of 40 before)."""
    report = check_migrations(
        split_names(),
        max_examples=100,
        settings=settings(database=None, derandomize=True),
        raise_on_failure=False,
    )
    assert not report.ok
    failures = {failure.check: failure for failure in report.failures}
    up = failures["catalog-step-1-2"]
    assert "down(up(x)) != x" in up.what
    assert lost_a_space(up.example), up.example


def test_about_one_string_in_four_is_spaced() -> None:
    """Property: about one string in four has whitespace at an end or is whitespace
    only (half the strings of one drawn value in two); each of the forms comes."""
    strategy = from_schema(SchemaVersion.create("zoo", 1, list[str]))
    texts: list[str] = []

    @settings(database=None, max_examples=300)
    @given(strategy)
    def draw(value: list[str]) -> None:
        texts.extend(value)

    draw()
    spaced = [text for text in texts if text and text != text.strip()]
    assert 0.1 * len(texts) <= len(spaced) <= 0.45 * len(texts)
    assert any(text[0].isspace() and not text[-1].isspace() for text in spaced)
    assert any(text[-1].isspace() and not text[0].isspace() for text in spaced)
    assert any(not text.strip() for text in spaced)


@settings(database=None, max_examples=100)
@given(low=st.integers(0, 12), span=st.none() | st.integers(0, 12), data=st.data())
def test_spaced_strings_keep_the_length_bounds(
    low: int, span: int | None, data: st.DataObject
) -> None:
    """Property: a spaced string is within min_length and max_length, and has
    whitespace at an end."""
    high = None if span is None else low + span
    strategy = spaced_text(st.text(min_size=low, max_size=high), low, high)
    if high == 0:
        assert strategy is None
        return
    assert strategy is not None
    text = data.draw(strategy)
    assert len(text) >= low and (high is None or len(text) <= high)
    assert text[0].isspace() or text[-1].isspace()


def seeded_given(seed: int) -> Callable[..., Any]:
    """hypothesis's ``given``, with the test it makes run from ``seed`` (hypothesis's
    public ``seed`` decorator): what ``check_migrations`` runs, seeded."""

    def seeded(*strategies: Any) -> Callable[[Callable[..., Any]], Any]:
        return lambda test: hypothesis.seed(seed)(given(*strategies)(test))

    return seeded


@pytest.mark.slow
def test_the_split_is_found_in_nearly_every_seeded_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not one lucky seed: the planted split fails its check in at least 9 of 10 seeded
    runs of 100 examples (99 of 100 when measured; 14 of 40 before spaced strings were
    emphasised, so this fails on the old strategies but for a run of extraordinary luck).
    Each run's test is seeded with hypothesis's ``seed`` decorator. Only the check of the
    split's step runs: the snapshot checks, which cost most of a ``check_migrations``
    run, hold no step and cannot see the split."""
    (step,) = [c for c in migration_checks(split_names()) if c.id == "catalog-step-1-2"]
    found = 0
    for seed in range(10):
        monkeypatch.setattr(statemigrate.testing._checks, "given", seeded_given(seed))
        result = step.run(settings=settings(database=None), max_examples=100)
        found += not result.ok
    assert found >= 9
