"""Rollback of a failed apply: each component gets its state back in the form its
import_state takes, and a component that does not export what it did before the
attempt is reported as not rolled back."""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
import pathlib
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel
from typing_extensions import TypedDict

import statemigrate._runtime._restore as restore_module
from statemigrate import Registry, RestoreError, Service, export_component
from statemigrate._model._plaindata import copy_plain

NAME = "rollback-test"


class CountsModel(BaseModel):
    counts: dict[str, int]


@dataclasses.dataclass
class CountsRecord:
    counts: dict[str, int]


class CountsDict(TypedDict):
    counts: dict[str, int]


class Boom(Exception):
    """The failure injected into the last component's import."""


def _registry() -> Registry:
    registry = Registry()
    registry.add_schema("model", 1, CountsModel)
    registry.add_schema("record", 1, CountsRecord)
    registry.add_schema("plain", 1, CountsDict)
    registry.add_schema("last", 1, CountsDict)
    return registry


REGISTRY = _registry()


@REGISTRY.migratable("model", version=1)
class ModelAsDict:
    """Exports the dict form of its model; imports only model instances."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)

    def export_state(self) -> dict[str, Any]:
        return {"counts": dict(self.counts)}

    def import_state(self, state: CountsModel) -> None:
        self.counts = dict(state.counts)  # an AttributeError for a dict


@REGISTRY.migratable("record", version=1)
class RecordAsDict:
    """Exports a dict; imports only dataclass instances."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)

    def export_state(self) -> dict[str, Any]:
        return {"counts": dict(self.counts)}

    def import_state(self, state: CountsRecord) -> None:
        if not isinstance(state, CountsRecord):
            raise TypeError(f"expected CountsRecord, got {type(state).__name__}")
        self.counts = dict(state.counts)


@REGISTRY.migratable("plain", version=1)
class ClearsLiveDict:
    """Breaks the import contract: exports its live dict, and import empties that dict
    before filling it from the new state."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.state: dict[str, Any] = {"counts": dict(counts)}

    def export_state(self) -> dict[str, Any]:
        return self.state

    def import_state(self, state: dict[str, Any]) -> None:
        counts = state["counts"]
        self.state["counts"].clear()  # also clears the state given back, when it is ours
        self.state["counts"].update(counts)


@REGISTRY.migratable("last", version=1)
class FailsOnImport:
    """Registered last: its first import fails, so every other component rolls back
    (and its own rollback, the second import, succeeds)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.imports = 0

    def export_state(self) -> dict[str, Any]:
        return {"counts": dict(self.counts)}

    def import_state(self, state: dict[str, Any]) -> None:
        self.imports += 1
        if self.imports == 1:
            raise Boom("the last import fails")
        self.counts = dict(state["counts"])


def _snapshot(*components: object) -> bytes:
    writer = Service(NAME, registry=REGISTRY)
    for component in components:
        writer.register(component)
    writer.register(FailsOnImport())
    return writer.snapshot()[0].to_bytes()


def _exports(service: Service) -> dict[str, Any]:
    """Copies of every component's export (which may be the live state itself)."""
    return {
        e.key: copy_plain(export_component(e.obj, registry=REGISTRY)) for e in service.components
    }


def _failed_restore(live: object, incoming: object) -> tuple[RestoreError, dict[str, Any], Any]:
    """Restore a snapshot of ``incoming`` into a service of ``live`` whose last
    component fails to import; the error, the export before, and the one after."""
    blob = _snapshot(incoming)
    reader = Service(NAME, registry=REGISTRY)
    reader.register(live)
    reader.register(FailsOnImport())
    before = _exports(reader)
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    return caught.value, before, _exports(reader)


@pytest.mark.parametrize("kind", [ModelAsDict, RecordAsDict], ids=["model", "dataclass"])
def test_a_component_that_exports_a_dict_gets_the_validated_form_back(kind: type) -> None:
    """An import_state that takes model (or dataclass) instances is given one on
    rollback, although export_state returned a dict: the component is rolled back."""
    error, before, after = _failed_restore(kind({"live": 1}), kind({"new": 2}))
    assert (error.phase, error.component) == ("apply", "last/default")
    assert isinstance(error.__cause__, Boom)
    assert error.rollback_failed == ()
    assert str(error).endswith("every component is as it was")
    assert after == before


def test_a_component_that_empties_its_earlier_export_is_reported_as_not_rolled_back() -> None:
    """The rollback imports the earlier state without error, yet the component is left
    empty (its import cleared the dict that state refers to): the export no longer
    matches the one before the attempt, and the error says so."""
    error, before, after = _failed_restore(ClearsLiveDict({"live": 1}), ClearsLiveDict({"n": 2}))
    assert before["plain/default"] == {"counts": {"live": 1}}
    assert after["plain/default"] == {"counts": {}}
    assert error.rollback_failed == ("plain/default",)
    assert "rollback failed for plain/default" in str(error)
    assert "every component is as it was" not in str(error)


@REGISTRY.migratable("plain", version=1)
class ClearsLiveOrderedDict(ClearsLiveDict):
    """:class:`ClearsLiveDict` keeping its counts in an ``OrderedDict``, which a commit
    writes converted to a dict: handed over as it is, the packer refuses it."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.state = {"counts": collections.OrderedDict(counts)}


@REGISTRY.migratable("plain", version=1)
class HoldsAnObject:
    """Holds a value no export takes: its state before a restore cannot be compared
    with the one its rollback gives back."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"counts": {"a": object()}}

    def export_state(self) -> dict[str, Any]:
        return self.state

    def import_state(self, state: dict[str, Any]) -> None:
        self.state = state


def _restore_failing_last(live: object, incoming: object) -> RestoreError:
    reader = Service(NAME, registry=REGISTRY)
    reader.register(live)
    reader.register(FailsOnImport())
    with pytest.raises(RestoreError) as caught:
        reader.restore(_snapshot(incoming))
    return caught.value


def test_a_state_exported_converted_is_checked_after_its_rollback_too() -> None:
    """An export that only packs converted (an OrderedDict under a dict field) is
    compared converted, as a commit writes it: the emptied component is reported."""
    live = ClearsLiveOrderedDict({"live": 1})
    error = _restore_failing_last(live, ClearsLiveOrderedDict({"n": 2}))
    assert live.state == {"counts": {}}
    assert error.rollback_failed == ("plain/default",) and error.rollback_unchecked == ()
    assert "every component is as it was" not in str(error)


def test_a_rollback_that_cannot_be_checked_is_not_said_to_be_one() -> None:
    """The state before the attempt had no plain export: it is given back, but the
    error does not claim that every component is as it was without naming it."""
    live = HoldsAnObject()
    held = live.state
    error = _restore_failing_last(live, ClearsLiveDict({"n": 2}))
    assert live.state is held
    assert error.rollback_failed == () and error.rollback_unchecked == ("plain/default",)
    assert str(error).endswith(
        "every component is as it was, as far as can be checked; plain/default rolled back"
        " unchecked (no plain export to compare with)"
    )


def test_the_rollback_check_is_consistent_with_a_sound_rollback() -> None:
    """A component that rolls back exactly is not reported, even when its state comes
    back as a new object equal to the old one."""
    error, before, after = _failed_restore(ModelAsDict({"a": 1, "b": 2}), ModelAsDict({}))
    assert error.rollback_failed == () and after == before


def test_negative_control_without_the_digest_an_emptied_component_goes_unnoticed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a digest that tells nothing apart, the emptied component passes for rolled
    back: the check above depends on the digest."""
    monkeypatch.setattr(restore_module, "_digest", lambda plain: b"")
    error, before, after = _failed_restore(ClearsLiveDict({"live": 1}), ClearsLiveDict({"n": 2}))
    assert after != before
    assert error.rollback_failed == ()


@REGISTRY.migratable("model", version=1)
class NoPlainExport:
    """A model component whose current state has no plain export."""

    def __init__(self) -> None:
        self.state: object = object()

    def export_state(self) -> object:
        return self.state

    def import_state(self, state: CountsModel) -> None:
        self.state = state


def test_a_current_state_without_a_plain_export_is_still_replaced() -> None:
    """The digest is taken of the state about to be replaced; when that state cannot
    be exported, the restore goes on (only its rollback could not be checked)."""
    blob = _snapshot(ModelAsDict({"new": 2}))
    reader = Service(NAME, registry=REGISTRY, strict=False)
    target = NoPlainExport()
    reader.register(target)
    report = reader.restore(blob)
    assert [c.component for c in report.components] == ["model"]
    assert report.unknown == ("last/default",)
    assert target.state == CountsModel(counts={"new": 2})


def test_a_state_with_no_plain_export_is_reported_once_per_component(caplog: Any) -> None:
    """A component whose state before the restore cannot be exported (text where an
    int belongs) warns that its rollback is not checked, once: a test suite restoring
    into new components again and again would be flooded."""
    registry = Registry()
    registry.add_schema("unexportable-before", 1, CountsModel)

    @registry.migratable("unexportable-before", version=1)
    class Counts:
        def __init__(self) -> None:
            self.counts: Any = {"a": "not a count"}

    writer = Service(NAME, registry=registry)
    writer.register(Counts()).counts = {"a": 1}
    snapshot = writer.snapshot()[0]
    for _ in range(3):
        reader = Service(NAME, registry=registry)
        restored = reader.register(Counts())
        reader.restore(snapshot)
        assert restored.counts == {"a": 1}
    assert caplog.text.count("its rollback is not checked") == 1


@REGISTRY.migratable("model", version=1)
class NoneUntilLoaded:
    """Holds None until something is restored or loaded into it: a legitimate
    initial state, with nothing to roll back to but None (which no model schema
    describes)."""

    def __init__(self) -> None:
        self.state: CountsModel | None = None

    def export_state(self) -> CountsModel | None:
        return self.state

    def import_state(self, state: CountsModel | None) -> None:
        self.state = state


NEW = CountsModel(counts={"a": 1})


def test_a_state_of_none_before_the_restore_is_not_warned_about(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """None needs no plain export to be checked: the first restore into a fresh
    component that starts as None says nothing about an unchecked rollback."""
    monkeypatch.setattr(restore_module, "_UNCHECKED_SAID", set())  # as in a new process
    writer = Service(NAME, registry=REGISTRY)
    writer.register(NoneUntilLoaded()).state = NEW
    snapshot = writer.snapshot()[0]
    reader = Service(NAME, registry=REGISTRY)
    restored = reader.register(NoneUntilLoaded())
    reader.restore(snapshot)
    assert restored.state == NEW
    assert "rollback is not checked" not in caplog.text


class _Fails(Exception):
    """The failure injected into the second component's import."""


@REGISTRY.migratable("plain", version=1)
class FailsFirstImport:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"counts": {}}
        self.imports = 0

    def export_state(self) -> dict[str, Any]:
        return self.state

    def import_state(self, state: dict[str, Any]) -> None:
        self.imports += 1
        if self.imports == 1:
            raise _Fails("the first import fails")
        self.state = state


@REGISTRY.migratable("model", version=1)
class KeepsWhatItGotOnRollback(NoneUntilLoaded):
    """Breaks the rollback: taking None back keeps the state it was given."""

    def import_state(self, state: CountsModel | None) -> None:
        if state is not None:
            self.state = state


@pytest.mark.parametrize(
    "kind, rolled_back",
    [(NoneUntilLoaded, True), (KeepsWhatItGotOnRollback, False)],
    ids=["sound", "keeps-the-new-state"],
)
def test_the_rollback_of_a_state_of_none_is_checked(kind: type, rolled_back: bool) -> None:
    """A component that was None before a failed restore must be None again after the
    rollback; one that is not is reported, as a component whose export differs is."""
    writer = Service(NAME, registry=REGISTRY)
    writer.register(kind()).state = NEW
    writer.register(FailsFirstImport())
    snapshot = writer.snapshot()[0]
    reader = Service(NAME, registry=REGISTRY)
    target = reader.register(kind())
    reader.register(FailsFirstImport())
    with pytest.raises(RestoreError) as caught:
        reader.restore(snapshot)
    assert isinstance(caught.value.__cause__, _Fails)
    if rolled_back:
        assert target.state is None and caught.value.rollback_failed == ()
    else:
        assert target.state == NEW
        assert caught.value.rollback_failed == ("model/default",)


class Addressed(BaseModel):
    where: ipaddress.IPv4Address | pathlib.Path


def test_the_warning_of_a_state_with_no_plain_export_speaks_of_the_field(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, it quoted pydantic's location, union labels and all:
    ``where.lax-or-strict[lax=function-plain[ip_v4_address_validator()],...]``."""
    monkeypatch.setattr(restore_module, "_UNCHECKED_SAID", set())  # as in a new process
    registry = Registry()
    registry.add_schema("addressed", 1, Addressed)

    @registry.migratable("addressed", version=1)
    class Holds:
        def __init__(self) -> None:
            self.where: Any = "no address yet"

    writer = Service(NAME, registry=registry)
    writer.register(Holds()).where = ipaddress.IPv4Address("10.0.0.1")
    snapshot = writer.snapshot()[0]
    reader = Service(NAME, registry=registry)
    reader.register(Holds())
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        reader.restore(snapshot)
    (warning,) = [r.getMessage() for r in caplog.records if "rollback" in r.getMessage()]
    assert "at where: " in warning
    assert "lax-or-strict" not in warning and "function-plain" not in warning


VALIDATED: list[dict[str, int]] = []
"""Every value the counting validator below saw, in order."""


def _counted(counts: dict[str, int]) -> dict[str, int]:
    VALIDATED.append(dict(counts))
    return counts


class CountedCounts(TypedDict):
    counts: Annotated[dict[str, int], AfterValidator(_counted)]


def _counted_registry() -> tuple[Registry, type]:
    registry = Registry()
    registry.add_schema("counted", 1, CountedCounts)

    @registry.migratable("counted", version=1)
    class Counted:
        def __init__(self, counts: dict[str, int]) -> None:
            self.counts = dict(counts)

    return registry, Counted


def test_the_state_before_a_restore_is_not_run_through_the_validators() -> None:
    """The export taken of the state about to be replaced only serves to check a
    rollback, so it is not validated back: a restore runs the schema's validators on
    the restored state alone, not on the state it replaces too (with a slow validator,
    that doubled a successor's restore)."""
    registry, counted = _counted_registry()
    writer = Service(NAME, registry=registry)
    writer.register(counted({"new": 2}))
    blob = writer.snapshot()[0]
    reader = Service(NAME, registry=registry)
    target = reader.register(counted({"live": 1}))
    VALIDATED.clear()
    reader.restore(blob)
    assert target.counts == {"new": 2}
    assert VALIDATED == [{"new": 2}]


def test_the_rollback_of_a_validated_schema_is_still_checked() -> None:
    """The unproven export still tells states apart: a component of a schema with a
    validator that comes back empty from its rollback is reported as not rolled back."""
    registry, counted = _counted_registry()
    registry.add_schema("last", 1, CountsDict)

    @registry.migratable("counted", version=1)
    class ClearsOnImport:
        def __init__(self, counts: dict[str, int]) -> None:
            self.counts = dict(counts)

        def export_state(self) -> dict[str, Any]:
            return {"counts": self.counts}

        def import_state(self, state: dict[str, Any]) -> None:
            self.counts.clear()  # empties the dict the earlier state refers to
            self.counts = state["counts"]

    @registry.migratable("last", version=1)
    class FailsFirst(FailsOnImport):
        pass

    writer = Service(NAME, registry=registry)
    writer.register(counted({"n": 2}))
    writer.register(FailsFirst())
    blob = writer.snapshot()[0]
    reader = Service(NAME, registry=registry)
    target = reader.register(ClearsOnImport({"live": 1}))
    reader.register(FailsFirst())
    with pytest.raises(RestoreError) as caught:
        reader.restore(blob)
    assert target.counts == {}
    assert caught.value.rollback_failed == ("counted/default",)


class Labelled(BaseModel):
    counts: dict[str, int]
    label: str


def test_a_component_whose_fields_are_all_none_holds_nothing_and_is_checked(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attributes set to None until a restore fills them are a component holding
    nothing yet, like an export_state returning None: no warning that its rollback
    cannot be checked (one per such component used to be logged), and the rollback
    is checked to leave every attribute None again."""
    monkeypatch.setattr(restore_module, "_UNCHECKED_SAID", set())
    registry = Registry()
    registry.add_schema("labelled", 1, Labelled)
    registry.add_schema("last", 1, CountsDict)

    @registry.migratable("labelled", version=1)
    class Empty:
        def __init__(self) -> None:
            self.counts: Any = None
            self.label: Any = None

    @registry.migratable("last", version=1)
    class Fails(FailsOnImport):
        pass

    writer = Service(NAME, registry=registry)
    filled = writer.register(Empty())
    filled.counts, filled.label = {"a": 1}, "x"
    writer.register(Fails())
    reader = Service(NAME, registry=registry)
    empty = reader.register(Empty())
    reader.register(Fails())
    with caplog.at_level(logging.WARNING, logger="statemigrate"):
        with pytest.raises(RestoreError) as caught:
            reader.restore(writer.snapshot()[0])
    assert caught.value.rollback_failed == () and caught.value.rollback_unchecked == ()
    assert str(caught.value).endswith("every component is as it was")
    assert (empty.counts, empty.label) == (None, None)
    assert "rollback is not checked" not in caplog.text
