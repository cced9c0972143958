"""Components, registries, failpoints and canonical exports shared by the restore tests.

Besides the reference ``kvcache`` the restore tests use two components of their own,
both with pydantic ``BaseModel`` schemas:

- ``counters``: a custom ``export_state``/``import_state`` pair; version 2 adds a
  ``total`` that a model validator checks against the counts (a semantic check, the
  kind only a validation pass can catch);
- ``tags``: no custom methods, so the default import assigns its fields as attributes
  (``tags`` first, then ``owner``), which is the path where a half-done import is
  undone by the library itself.

Failure injection goes through :class:`Failpoints`: the step functions of a
:func:`build_registry` registry, the import of :class:`FailingKV`, :class:`Counters`
and :class:`Tags`, and (with :func:`validation_failpoint`) schema validation each
report a *hit* at a named site, and an armed failpoint turns the n-th hit (or every hit
from the n-th on) into a fault.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgpack
from pydantic import BaseModel, Field, model_validator

from statemigrate import (
    Registry,
    Service,
    component_spec,
    export_component,
    import_component,
    migratable,
)
from statemigrate._model._plan import Step
from statemigrate._model._schema import SchemaVersion
from statemigrate.reference import COMPONENT, MIGRATIONS_DIR, KVCacheV3, register_schemas
from statemigrate.reference import build_registry as build_reference_registry

Site = Literal["step", "validate", "import"]
When = Literal["before", "after"]

# --- failpoints ---------------------------------------------------------------------


class InjectedFault(Exception):
    """Never raised; a type that stands for "make the data invalid" at a validate site."""


@dataclass
class Fault:
    """What an armed failpoint does.

    Attributes:
        exc: the exception type to raise; ``InjectedFault`` at a validate site means
            "validate data that does not fit the schema" instead of raising directly.
        when: at an import site, raise before the new state is installed or after.
    """

    exc: type[BaseException]
    when: When = "before"


@dataclass
class Failpoints:
    """Counts hits per site and turns the armed one into a fault.

    Attributes:
        hits: how many times each site was reached since the last :meth:`reset`.
        raised: the exceptions raised by faults, in order.
    """

    hits: Counter[str] = field(default_factory=Counter)
    raised: list[BaseException] = field(default_factory=list)
    _armed: tuple[Site, int, Fault, bool] | None = None
    _who: object = None

    def arm(self, site: Site, index: int, fault: Fault, *, persistent: bool = False) -> None:
        """Fault at the ``index``-th hit of ``site`` (0-based), or at every hit from it on."""
        self.reset()
        self._armed = (site, index, fault, persistent)

    def disarm(self) -> None:
        """No more faults; counts start again."""
        self.reset()
        self._armed = None

    def reset(self) -> None:
        """Forget counts and raised exceptions (the armed fault stays)."""
        self.hits.clear()
        self.raised.clear()
        self._who = None

    def hit(self, site: Site, who: object) -> Fault | None:
        """Record a hit at ``site`` by ``who``; return the fault to apply, if armed.

        A persistent fault fires at the armed hit and at every later hit of the same
        site by the same ``who`` (the same step, schema or component object), so a
        component whose import keeps failing also fails its rollback.
        """
        number = self.hits[site]
        self.hits[site] += 1
        if self._armed is None:
            return None
        armed_site, index, fault, persistent = self._armed
        if armed_site != site or number < index:
            return None
        if number == index:
            self._who = who
            return fault
        if persistent and who is self._who:
            return fault
        return None

    def throw(self, fault: Fault, where: str) -> None:
        """Raise ``fault``'s exception, remembering it for cause checks."""
        exc = fault.exc(f"injected at {where}")
        self.raised.append(exc)
        raise exc


@contextmanager
def validation_failpoint(monkeypatch: Any, failpoints: Failpoints) -> Iterator[None]:
    """Route the restore's schema validation (``SchemaVersion.adopt_kept``, which
    ``adopt`` calls too, and ``adopt_proven``, which a restore asks first about a
    step's output) through ``failpoints`` (site ``"validate"``)."""
    original = SchemaVersion.adopt_kept
    original_proven = SchemaVersion.adopt_proven
    # One validation is one hit, though it may ask adopt_proven and then adopt_kept
    # (same box): the proof takes the hit, and a fault found there strikes in
    # adopt_kept, which a proof that fails leads to, as a real fault would.
    asked: dict[int, Fault | None] = {}

    def adopt_proven(self: SchemaVersion, box: list[Any]) -> bool:
        fault = asked[id(box)] = failpoints.hit("validate", self)
        if fault is None and original_proven(self, box):
            del asked[id(box)]
            return True
        return False

    def adopt_kept(self: SchemaVersion, box: list[Any], **options: Any) -> Any:
        fault = asked.pop(id(box)) if id(box) in asked else failpoints.hit("validate", self)
        if fault is not None:
            if fault.exc is InjectedFault:
                box[0] = {"not": "this schema"}
            else:
                failpoints.throw(fault, f"validate {self}")
        return original(self, box, **options)

    monkeypatch.setattr(SchemaVersion, "adopt_kept", adopt_kept)
    monkeypatch.setattr(SchemaVersion, "adopt_proven", adopt_proven)
    try:
        yield
    finally:
        monkeypatch.setattr(SchemaVersion, "adopt_kept", original)
        monkeypatch.setattr(SchemaVersion, "adopt_proven", original_proven)


# --- the counters component ---------------------------------------------------------


class CountersV1(BaseModel):
    """Version 1: a count per name."""

    counts: dict[str, Annotated[int, Field(ge=0)]]


class CountersV2(BaseModel):
    """Version 2: the counts and their total, which must agree."""

    counts: dict[str, Annotated[int, Field(ge=0)]]
    total: int

    @model_validator(mode="after")
    def _total_matches(self) -> CountersV2:
        if self.total != sum(self.counts.values()):
            raise ValueError(f"total {self.total} is not the sum of the counts")
        return self


def add_total(data: dict[str, Any]) -> dict[str, Any]:
    """counters 1 -> 2: add the total of the counts."""
    data["total"] = sum(data["counts"].values())
    return data


def drop_total(data: dict[str, Any]) -> dict[str, Any]:
    """counters 2 -> 1: drop the total (it is derived, so nothing is lost)."""
    del data["total"]
    return data


class _CountersBase:
    def __init__(self, *, fail: Failpoints | None = None) -> None:
        self._counts: dict[str, int] = {}
        self.fail = fail

    def bump(self, name: str, by: int = 1) -> None:
        self._counts[name] = self._counts.get(name, 0) + by


@migratable("counters", version=1)
class CountersRelease1(_CountersBase):
    """Release 1 of the counters component."""

    def export_state(self) -> CountersV1:
        return CountersV1(counts=dict(self._counts))

    def import_state(self, state: CountersV1) -> None:
        self._counts = dict(state.counts)


@migratable("counters", version=2)
class Counters(_CountersBase):
    """Release 2 of the counters component; its import reports failpoint hits."""

    def export_state(self) -> CountersV2:
        return CountersV2(counts=dict(self._counts), total=sum(self._counts.values()))

    def import_state(self, state: CountersV2) -> None:
        fault = self.fail.hit("import", self) if self.fail is not None else None
        if fault is not None and fault.when == "before":
            self.fail.throw(fault, "counters import")  # type: ignore[union-attr]
        self._counts = dict(state.counts)
        if fault is not None and fault.when == "after":
            self.fail.throw(fault, "counters import")  # type: ignore[union-attr]


# --- the tags component (default attribute import) ----------------------------------


class TagsV1(BaseModel):
    """Version 1: a list of tags."""

    tags: list[str]


class TagsV2(BaseModel):
    """Version 2: the tags and who owns them."""

    tags: list[str]
    owner: str


def add_owner(data: dict[str, Any]) -> dict[str, Any]:
    """tags 1 -> 2: nobody owns existing tags."""
    data["owner"] = ""
    return data


def drop_owner(data: dict[str, Any]) -> dict[str, Any]:
    """tags 2 -> 1: forget the owner."""
    del data["owner"]
    return data


@migratable("tags", version=1)
class TagsRelease1:
    """Release 1 of the tags component."""

    def __init__(self, tags: list[str] | None = None) -> None:
        self.tags = list(tags or [])


@migratable("tags", version=2)
class Tags:
    """Release 2: the default import sets ``tags`` then ``owner``; the second reports hits."""

    def __init__(
        self, tags: list[str] | None = None, owner: str = "", *, fail: Failpoints | None = None
    ) -> None:
        self.tags = list(tags or [])
        self.owner = owner
        self.fail = fail

    def __setattr__(self, name: str, value: object) -> None:
        fail = self.__dict__.get("fail")
        fault = fail.hit("import", self) if name == "owner" and fail is not None else None
        if fault is not None and fault.when == "before":
            fail.throw(fault, "tags import")  # type: ignore[union-attr]
        super().__setattr__(name, value)
        if fault is not None and fault.when == "after":
            fail.throw(fault, "tags import")  # type: ignore[union-attr]


# --- the kvcache component with a failpoint ------------------------------------------


class FailingKV(KVCacheV3):
    """The reference cache, release 3, whose import reports failpoint hits."""

    def __init__(self, *, fail: Failpoints | None = None) -> None:
        super().__init__()
        self.fail = fail

    def import_state(self, state: Any) -> None:
        fault = self.fail.hit("import", self) if self.fail is not None else None
        if fault is not None and fault.when == "before":
            self.fail.throw(fault, "kvcache import")  # type: ignore[union-attr]
        super().import_state(state)
        if fault is not None and fault.when == "after":
            self.fail.throw(fault, "kvcache import")  # type: ignore[union-attr]


# --- registries ---------------------------------------------------------------------


def build_registry(fail: Failpoints | None = None, *, direct: bool = True) -> Registry:
    """A registry with ``kvcache``, ``counters`` and ``tags``.

    Args:
        fail: when given, every step function reports a ``"step"`` hit first.
        direct: keep kvcache's one-pass ``1 <-> 3`` steps; without them, a restore
            from version 1 to 3 runs two steps per kvcache instance.
    """
    registry = Registry()
    register_schemas(registry)
    registry.add_schema("counters", 1, CountersV1)
    registry.add_schema("counters", 2, CountersV2)
    registry.add_schema("tags", 1, TagsV1)
    registry.add_schema("tags", 2, TagsV2)
    steps = _reference_steps()
    for step in steps:
        if not direct and abs(step.target - step.source) > 1:
            continue
        registry.add_migration(
            step.component,
            step.source,
            step.target,
            # Whole-data steps here, record steps or not: a fail point counts steps.
            _counted(step.apply, fail, str(step)),
            lossy=step.lost_fields or step.lossy,
            name=step.name,
        )
    for component, source, target, func, lossy in (
        ("counters", 1, 2, add_total, False),
        ("counters", 2, 1, drop_total, False),
        ("tags", 1, 2, add_owner, False),
        ("tags", 2, 1, drop_owner, ("owner",)),
    ):
        registry.add_migration(
            component,
            source,
            target,
            _counted(func, fail, func.__name__),
            lossy=lossy,
            name=func.__name__,
        )
    return registry


@functools.cache
def _reference_steps() -> tuple[Step, ...]:
    """kvcache's steps, loaded from ``migrations/`` once per process."""
    return tuple(build_reference_registry(MIGRATIONS_DIR).steps(COMPONENT))


def _counted(
    func: Callable[[Any], Any], fail: Failpoints | None, where: str
) -> Callable[[Any], Any]:
    if fail is None:
        return func

    def step(data: Any) -> Any:
        fault = fail.hit("step", step)
        if fault is not None:
            fail.throw(fault, where)
        return func(data)

    return step


# --- canonical exports --------------------------------------------------------------


def sort_keys(value: Any) -> Any:
    """Plain data with every map's keys in sorted order, recursively."""
    if isinstance(value, dict):
        return {key: sort_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sort_keys(item) for item in value]
    return value


def canonical(data: Any) -> bytes:
    """The canonical bytes of plain data: msgpack of the recursively key-sorted value."""
    packed: bytes = msgpack.packb(sort_keys(data), use_bin_type=True)
    return packed


def canonical_export(obj: object, registry: Registry) -> bytes:
    """The canonical bytes of a component's export."""
    return canonical(export_component(obj, registry=registry))


def exports(service: Service) -> dict[str, bytes]:
    """The canonical export of every component of ``service``, by ``component/instance``."""
    return {entry.key: canonical_export(entry.obj, entry.registry) for entry in service.components}


def set_state(obj: object, registry: Registry, data: Mapping[str, Any]) -> None:
    """Make plain ``data`` (of the object's schema version) the live state of ``obj``."""
    spec = component_spec(obj)
    schema = registry.schema_for(spec.component, spec.version)
    import_component(obj, schema.validate(data), registry=registry)
