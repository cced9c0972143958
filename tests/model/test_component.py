"""Migratable components: the mark, default and custom export/import, and import rollback."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any, NotRequired

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from typing_extensions import TypedDict

import statemigrate._model._registry as registry_module
from statemigrate._errors import RegistrationError, UnknownComponentError, ValidationError
from statemigrate._model._component import (
    ComponentSpec,
    component_spec,
    component_state,
    export_component,
    import_component,
    is_migratable,
)
from statemigrate._model._registry import Registry, migratable


class CacheState(TypedDict):
    entries: dict[str, str]
    limit: int
    label: NotRequired[str]


class Event(BaseModel):
    at: datetime.datetime
    name: str


class LogState(BaseModel):
    events: list[Event]
    tags: set[str] = set()


@dataclasses.dataclass
class Counter:
    count: int
    seen: frozenset[str] = frozenset()


REG = Registry()
REG.add_schema("cache", 1, CacheState)
REG.add_schema("log", 1, LogState)
REG.add_schema("counter", 1, Counter)
REG.add_schema("opaque", 1, dict[str, int])


@REG.migratable("cache", version=1)
class Cache:
    def __init__(self) -> None:
        self.entries: dict[str, str] = {"a": "1"}
        self.limit = 10
        self.unrelated = "not part of the state"


@REG.migratable("log", version=1)
class Log:
    def __init__(self) -> None:
        self.events = [Event(at=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC), name="up")]
        self.tags = {"b", "a"}


@REG.migratable("counter", version=1)
class CustomCounter:
    """Keeps its state privately and converts in export_state/import_state."""

    def __init__(self) -> None:
        self._n = 0
        self.imported: list[Counter] = []

    def export_state(self) -> Counter:
        return Counter(self._n, frozenset({"x"}))

    def import_state(self, state: Counter) -> None:
        self.imported.append(state)
        self._n = state.count


# --- the mark -----------------------------------------------------------------------------


def test_spec_on_class_and_instance() -> None:
    spec = component_spec(Cache)
    assert spec == ComponentSpec("cache", 1) and spec.registry is REG
    assert component_spec(Cache()) is spec
    assert is_migratable(Cache) and is_migratable(Cache())
    assert not is_migratable(object())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.version = 2  # type: ignore[misc]


def test_unmarked_object_is_refused() -> None:
    with pytest.raises(RegistrationError, match="is not a migratable component"):
        export_component(object())
    with pytest.raises(RegistrationError, match="is not a migratable component"):
        import_component(object(), {})


def test_decorating_a_non_class_or_bad_version() -> None:
    with pytest.raises(RegistrationError, match="decorates classes"):
        REG.migratable("cache", version=1)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="invalid version"):
        migratable("cache", version=0)
    with pytest.raises(RegistrationError, match="invalid component name"):
        REG.migratable("a/b", version=1)(type("X", (), {}))


def test_version_without_schema_fails_when_used() -> None:
    @REG.migratable("cache", version=9)
    class Future:
        entries: dict[str, str] = {}

    with pytest.raises(UnknownComponentError, match="'cache' version 9; registered: 1"):
        export_component(Future())


def test_two_classes_may_share_a_component_version() -> None:
    @REG.migratable("cache", version=1)
    class Another:
        def __init__(self) -> None:
            self.entries = {"z": "26"}
            self.limit = 1

    assert export_component(Another()) == {"entries": {"z": "26"}, "limit": 1}


def test_registry_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Registry()
    monkeypatch.setattr(registry_module, "default_registry", default)
    other = Registry()
    unbound = ComponentSpec("cache", 1)
    bound = ComponentSpec("cache", 1, REG)
    assert unbound.resolve() is default
    assert bound.resolve() is REG
    assert bound.resolve(other) is other and unbound.resolve(other) is other


# --- default export and import ------------------------------------------------------------


def test_typeddict_default_export_shares_the_live_objects() -> None:
    cache = Cache()
    data = export_component(cache)
    assert data == {"entries": {"a": "1"}, "limit": 10}  # no 'label', no 'unrelated'
    assert data["entries"] is cache.entries  # no copy of a large cache


def test_model_default_export_is_plain() -> None:
    assert export_component(Log()) == {
        "events": [{"at": "2024-01-01T00:00:00Z", "name": "up"}],
        "tags": ["a", "b"],
    }


def test_default_import_replaces_attributes_without_mutating() -> None:
    cache = Cache()
    before = component_state(cache)
    old_entries = cache.entries
    new = REG.schema_for("cache", 1).validate({"entries": {"b": "2"}, "limit": 3, "label": "x"})
    import_component(cache, new)
    assert (cache.entries, cache.limit, cache.label) == ({"b": "2"}, 3, "x")  # type: ignore[attr-defined]
    assert old_entries == {"a": "1"}  # replaced, never mutated
    import_component(cache, before)  # rollback: import the state taken before
    assert export_component(cache) == {"entries": {"a": "1"}, "limit": 10}
    assert not hasattr(cache, "label")  # an absent optional field is removed again


def test_model_state_imports_as_attributes() -> None:
    log = Log()
    state = LogState(events=[], tags={"z"})
    import_component(log, state)
    assert (log.events, log.tags) == ([], {"z"})


def test_missing_attributes_are_named() -> None:
    @REG.migratable("cache", version=1)
    class Half:
        def __init__(self) -> None:
            self.entries: dict[str, str] = {}

    with pytest.raises(RegistrationError, match="lacks attributes limit"):
        export_component(Half())
    half = Half()
    with pytest.raises(RegistrationError, match="lacks attributes limit"):
        import_component(half, {"entries": {"x": "y"}, "limit": 1})
    assert half.entries == {}  # refused before touching anything


def test_schema_without_fields_needs_methods() -> None:
    @REG.migratable("opaque", version=1)
    class Opaque:
        pass

    with pytest.raises(RegistrationError, match="has no fields"):
        export_component(Opaque())
    with pytest.raises(RegistrationError, match="has no fields"):
        import_component(Opaque(), {})


def test_default_export_of_unplain_attribute() -> None:
    log = Log()
    log.tags = {object()}  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="tags"):
        export_component(log)


# --- custom methods -----------------------------------------------------------------------


def test_custom_methods_are_used() -> None:
    counter = CustomCounter()
    counter._n = 4
    assert export_component(counter) == {"count": 4, "seen": ["x"]}
    state = REG.schema_for("counter", 1).validate({"count": 7})
    import_component(counter, state)
    assert counter._n == 7 and counter.imported == [Counter(7)]
    assert component_state(counter) == Counter(7, frozenset({"x"}))


def test_explicit_registry_overrides_the_binding() -> None:
    other = Registry()
    other.add_schema("counter", 1, Counter)
    assert export_component(CustomCounter(), registry=other) == {"count": 0, "seen": ["x"]}
    with pytest.raises(UnknownComponentError):
        export_component(CustomCounter(), registry=Registry())


# --- all-or-nothing default import --------------------------------------------------------


class Guarded:
    """A component whose ``limit`` setter refuses some values, after ``entries`` is set."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {"old": "1"}
        self._limit = 10

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        if value < 0:
            raise ValueError("negative limit")
        self._limit = value


REG.migratable("cache", version=1)(Guarded)

Importer = Callable[[object, Any], None]


def naive_import(obj: object, state: Any) -> None:
    """A deliberately broken importer: assigns field after field with no undo."""
    for name in ("entries", "limit"):
        setattr(obj, name, state[name])


def import_is_all_or_nothing(importer: Importer, state: dict[str, Any]) -> bool:
    """True when a failed import leaves the component exactly as it was."""
    guarded = Guarded()
    before = {"entries": guarded.entries, "limit": guarded.limit}
    try:
        importer(guarded, state)
    except ValueError:
        return {"entries": guarded.entries, "limit": guarded.limit} == before
    return True


states = st.fixed_dictionaries(
    {
        "entries": st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
        "limit": st.integers(-5, 5),
    }
)


@given(states)
def test_failed_default_import_changes_nothing(state: dict[str, Any]) -> None:
    """Property: if any attribute assignment fails, every earlier one is undone."""
    assert import_is_all_or_nothing(import_component, state)


def test_negative_control_naive_import_is_caught() -> None:
    """The same check fails for an importer that does not undo earlier assignments."""
    state = {"entries": {"new": "2"}, "limit": -1}
    assert not import_is_all_or_nothing(naive_import, state)
    assert import_is_all_or_nothing(import_component, state)
