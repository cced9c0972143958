"""statemigrate.testing: a step into or out of a version with no schema fails its check."""

from __future__ import annotations

from pydantic import BaseModel

from statemigrate._model._registry import Registry
from statemigrate.testing import check_migrations, migration_checks


class V1(BaseModel):
    x: int


def _same(data: object) -> object:
    return data


def test_a_step_into_a_version_with_no_schema_fails() -> None:
    """Registry.check() refuses it; the kit names it too instead of leaving it out."""
    registry = Registry()
    registry.add_schema("c", 1, V1)
    registry.add_migration("c", 1, 2, _same, name="up")
    report = check_migrations(registry, max_examples=5, raise_on_failure=False)
    assert not report.ok
    (failure,) = report.failures
    assert failure.check == "c-step-1-2"
    assert failure.title == "c 1 -> 2 (up)"
    assert failure.what == "no schema version 2"
    assert "FAILED: c 1 -> 2 (up) [0 examples]" in report.to_markdown()


def test_a_component_with_steps_and_no_schema_fails() -> None:
    """A step of a misspelt component: both its ends are named."""
    registry = Registry()
    registry.add_schema("c", 1, V1)
    registry.add_migration("cc", 1, 2, _same, name="up")
    ids = [check.id for check in migration_checks(registry)]
    assert ids == ["c-snapshot-v1", "cc-step-1-2"]
    (failure,) = check_migrations(registry, max_examples=5, raise_on_failure=False).failures
    assert failure.what == "no schema version 1 or 2"


def test_a_step_between_registered_versions_is_checked_as_before() -> None:
    """The control: both ends registered, the step is run on drawn states."""
    registry = Registry()
    registry.add_schema("c", 1, V1)
    registry.add_schema("c", 2, V1)
    registry.add_migration("c", 1, 2, _same, name="up")
    registry.add_migration("c", 2, 1, _same, name="down")
    report = check_migrations(registry, max_examples=5)
    assert report.ok
    assert [result.examples > 0 for result in report.results] == [True] * 4
