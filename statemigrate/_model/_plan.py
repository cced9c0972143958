"""Migration steps, plans, and the planner that finds a path between two versions.

Everything here is pure: a :class:`Step` holds a function but planning never calls it,
and :func:`plan_path` works on any collection of steps (a literal list in a test, or the
steps a :class:`~statemigrate.Registry` holds). There is no I/O and no global state.

The version graph of a component has one node per schema version and one edge per
registered step. Steps may go up or down and may skip versions, so the graph can branch
and contain cycles. The planner picks, in this order of preference:

1. the path with the fewest lossy steps (so a loss-free path always wins when one
   exists, however long);
2. among those, the path with the fewest steps (breadth-first distance);
3. among those, the path whose sequence of versions is smallest, compared element by
   element, so the choice never depends on the order steps were registered in.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from statemigrate._errors import LossyMigrationError, NoMigrationPathError, RegistrationError
from statemigrate._model._fieldchanges import FieldChanges
from statemigrate._model._recordfailures import MoreFailures, count_more_failures

__all__ = [
    "MAX_VERSION",
    "Plan",
    "RecordFunc",
    "Step",
    "StepFunc",
    "check_component",
    "check_version",
    "failed_record",
    "more_failures",
    "plan_path",
    "reachable",
]

StepFunc = Callable[[Any], Any]
"""A migration step: plain data of the source version in, of the target version out."""

RecordFunc = Callable[[Any, Any], Any]
"""A record step: one record's key and plain value at the source version in, its value
at the target version out."""

MAX_VERSION = 2**31 - 1
"""The largest schema version; it fits any signed 32-bit field of a snapshot header."""

# Component names appear in snapshot section names ("component/instance"), log lines
# and file names, so they stay short and free of separators and whitespace.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


def check_component(name: object) -> str:
    """Return ``name`` if it is a valid component name.

    A name is 1 to 128 characters: letters, digits, ``_``, ``.`` and ``-``, not
    starting with ``.`` or ``-``.

    Raises:
        RegistrationError: the name is not a string or breaks those rules.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistrationError(
            f"invalid component name {name!r}: use 1-128 letters, digits, '_', '.' or '-',"
            " starting with a letter, digit or '_'"
        )
    return name


def check_version(version: object, *, what: str = "version") -> int:
    """Return ``version`` if it is a valid schema version (an int from 1 to MAX_VERSION).

    Raises:
        RegistrationError: it is not an ``int`` (``bool`` does not count) or out of range.
    """
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise RegistrationError(
            f"invalid {what} {version!r}: schema versions are integers from 1 to {MAX_VERSION}"
        )
    return version


_FAILED_RECORD = "_statemigrate_failed_record"
"""The attribute a record step's exception gets: ``(field, key)`` of the record."""


_MORE_FAILED = "_statemigrate_more_failed"
"""And the :class:`MoreFailures` of the records after it."""


def failed_record(exc: BaseException) -> tuple[str, Any] | None:
    """``(field, key)`` of the record a record step raised ``exc`` on, else None."""
    found = getattr(exc, _FAILED_RECORD, None)
    return found if isinstance(found, tuple) else None


def more_failures(exc: BaseException) -> MoreFailures | None:
    """The records after :func:`failed_record`'s that the step failed on too."""
    found = getattr(exc, _MORE_FAILED, None)
    return found if isinstance(found, MoreFailures) else None


@dataclass(frozen=True)
class Step:
    """One migration step of a component, from version ``source`` to ``target``.

    The function receives plain data (see :mod:`statemigrate._model._plaindata`) that follows
    the source schema and returns plain data that follows the target schema. It may
    mutate its argument in place and return it: that is several times cheaper than
    building new containers, and the restore only ever hands steps data it owns.

    Attributes:
        component: the component the step belongs to.
        source: the version the step reads.
        target: the version the step writes.
        func: the step function.
        name: a short name for messages; the function's ``__name__`` by default.
        lossy: the step drops or defaults information, so going back cannot restore it.
        lost_fields: the fields the step loses, as declared (dotted paths, ``*`` for any
            key); used by property checks to compare everything else.
        records: for a record step, the top-level field of the schema that holds the
            keyed collection (a ``dict``) the step applies to, one record at a time:
            ``func`` then takes ``(key, value)`` and returns the new value, and the
            other fields are left as they are. A record step applies to a whole state
            (every record) and to a delta (the records it carries) alike.
        other_fields: for a record step, an optional whole-data part for the other
            fields: it takes a dict of every field but ``records`` and returns the new
            dict of them (it may change its argument and return it). In a delta it
            sees the fields the delta carries; another record field there holds only
            the records the delta carries, so it must not rely on those.
    """

    component: str
    source: int
    target: int
    func: Callable[..., Any] = field(repr=False)
    """A :data:`StepFunc`, or a :data:`RecordFunc` for a record step."""
    name: str = ""
    lossy: bool = False
    lost_fields: tuple[str, ...] = ()
    records: str | None = None
    other_fields: Callable[[Any], Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_component(self.component)
        check_version(self.source, what="source version")
        check_version(self.target, what="target version")
        if self.source == self.target:
            raise RegistrationError(
                f"migration step for {self.component!r} goes from version {self.source} to itself"
            )
        if not callable(self.func):
            raise RegistrationError(f"migration step {self.func!r} is not callable")
        if not self.name:
            object.__setattr__(self, "name", getattr(self.func, "__name__", "step"))
        for lost in self.lost_fields:
            if not isinstance(lost, str) or not lost:
                raise RegistrationError(f"lost field names must be non-empty strings: {lost!r}")
        if self.lost_fields and not self.lossy:
            object.__setattr__(self, "lossy", True)
        if self.records is not None and (not isinstance(self.records, str) or not self.records):
            raise RegistrationError(
                f"records must name a top-level field of the schema, not {self.records!r}"
            )
        if self.other_fields is not None and (
            self.records is None or not callable(self.other_fields)
        ):
            raise RegistrationError(
                f"other_fields of {self} must be a function, for a record step only"
            )

    @property
    def direction(self) -> Literal["upgrade", "downgrade"]:
        """``"upgrade"`` when the step goes to a higher version, else ``"downgrade"``."""
        return "upgrade" if self.target > self.source else "downgrade"

    def apply(self, data: Any, *, none_refused: bool = False) -> Any:
        """Run the step on ``data`` (which it may mutate) and return the result.

        Args:
            data: plain data at the source version.
            none_refused: for a record step, the target schema takes no ``None`` for a
                record, so a record function returning ``None`` for a record that was
                not ``None`` forgot to return it (see :attr:`Plan.none_refused`).

        Raises:
            TypeError: the function returned ``None`` for non-``None`` input, the usual
                sign of a step that mutated its input but forgot to return it (for a
                record step, with ``none_refused``); or, for a record step, the data
                has no ``dict`` under the step's field.
            Exception: whatever the step function raises, unchanged.
        """
        if self.records is not None:
            return self._apply_records(data, none_refused)
        result = self.func(data)
        if result is None and data is not None:
            raise TypeError(
                f"migration step {self} returned None; a step must return the migrated"
                " data (return its argument after changing it in place)"
            )
        return result

    def _apply_records(self, data: Any, none_refused: bool) -> Any:
        """Map every record under the step's field, in place (keys and order kept)."""
        records = data.get(self.records) if type(data) is dict else None
        if type(records) is not dict:
            raise TypeError(
                f"record step {self} needs a dict under field {self.records!r}, found"
                f" {type(records).__name__}"
            )
        if isinstance(self.func, FieldChanges):
            self.func.apply_each(records)
        else:
            func: RecordFunc = self.func
            items = iter(records.items())
            for key, value in items:
                try:
                    # Replacing the value of a key already there is allowed while iterating.
                    records[key] = result = func(key, value)
                    if result is None and value is not None and none_refused:
                        raise TypeError(
                            f"record step {self} returned None; a record step must return"
                            " the migrated record (return its argument after changing it"
                            " in place)"
                        )
                except Exception as exc:
                    exc.add_note(f"in record {key!r} of field {self.records!r}")
                    setattr(exc, _FAILED_RECORD, (self.records, key))
                    more = count_more_failures(func, items, none_refused=none_refused)
                    setattr(exc, _MORE_FAILED, more)
                    raise
        if self.other_fields is not None:
            others = self.other_fields({k: v for k, v in data.items() if k != self.records})
            if type(others) is not dict or self.records in others:
                raise TypeError(
                    f"other_fields of record step {self} must return a dict of the fields"
                    f" other than {self.records!r}"
                )
            data.clear()
            data.update(others)
            data[self.records] = records
        return data

    @property
    def record_wise(self) -> bool:
        """Whether the step applies one record at a time (see ``records``)."""
        return self.records is not None

    def __str__(self) -> str:
        return f"{self.component} {self.source} -> {self.target} ({self.name})"


@dataclass(frozen=True)
class Plan:
    """The ordered steps that bring one component from ``source`` to ``target``.

    An empty plan (``source == target``) leaves data as it is.

    Raises:
        ValueError: on construction, when the steps do not form a chain from ``source``
            to ``target`` of ``component``.
    """

    component: str
    source: int
    target: int
    steps: tuple[Step, ...] = ()
    none_refused: frozenset[tuple[int, int]] = frozenset()
    """The record steps, as ``(source, target)``, whose target schema takes no ``None``
    for a record: one returning ``None`` for a record forgot to return it, and fails
    naming the step and the record rather than validation failing later on a ``None``
    it cannot place. Filled in by :meth:`Registry.plan
    <statemigrate._model._registry.Registry.plan>`, which knows the schemas."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        at = self.source
        for step in self.steps:
            if step.component != self.component or step.source != at:
                raise ValueError(f"step {step} does not continue a plan at version {at}")
            at = step.target
        if at != self.target:
            raise ValueError(f"plan steps end at version {at}, not {self.target}")

    @property
    def lossy_steps(self) -> tuple[Step, ...]:
        """The steps of the plan that lose information."""
        return tuple(step for step in self.steps if step.lossy)

    @property
    def record_wise(self) -> bool:
        """Whether every step applies one record at a time, so the plan can migrate a
        delta (the records it carries) as well as a whole state. An empty plan is."""
        return all(step.records is not None for step in self.steps)

    @property
    def whole_steps(self) -> tuple[Step, ...]:
        """The steps that need the whole of the data (not record steps)."""
        return tuple(step for step in self.steps if step.records is None)

    @property
    def versions(self) -> tuple[int, ...]:
        """Every version the data passes through, source and target included."""
        return (self.source, *(step.target for step in self.steps))

    def apply(self, data: Any) -> Any:
        """Run every step in order and return the data at the target version.

        Steps may mutate their input, so ``data`` is consumed: pass a copy
        (:func:`~statemigrate._model._plaindata.copy_plain`) if the caller still needs it. A
        step's exception propagates unchanged, with a note naming the step; callers that
        must know which step failed can loop over :attr:`steps` and call
        :meth:`Step.apply` themselves.
        """
        for step in self.steps:
            try:
                data = step.apply(data, none_refused=self.refuses_none(step))
            except BaseException as exc:
                exc.add_note(f"in migration step {step}")
                raise
        return data

    def refuses_none(self, step: Step) -> bool:
        """Whether record step ``step`` of this plan may not return ``None`` for a record."""
        return (step.source, step.target) in self.none_refused

    def __str__(self) -> str:
        path = " -> ".join(str(version) for version in self.versions)
        if not self.steps:
            return f"{self.component} {path} (no steps)"
        names = ", ".join(f"{s.name} [lossy]" if s.lossy else s.name for s in self.steps)
        return f"{self.component} {path} ({names})"


def reachable(steps: Iterable[Step], source: int) -> set[int]:
    """Return every version reachable from ``source`` (itself included)."""
    graph: dict[int, list[int]] = {}
    for step in steps:
        graph.setdefault(step.source, []).append(step.target)
    seen = {source}
    todo = [source]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def plan_path(
    component: str,
    steps: Iterable[Step],
    source: int,
    target: int,
    *,
    allow_lossy: bool = False,
    versions: Iterable[int] | None = None,
) -> Plan:
    """Find the best path from ``source`` to ``target`` through ``steps``.

    "Best" is defined in the module docstring: fewest lossy steps, then fewest steps,
    then the smallest sequence of versions. Only steps of ``component`` are used.
    ``versions``, the component's schema versions, lets an error name a version that
    neither they nor the steps know.

    Raises:
        NoMigrationPathError: no chain of steps connects the two versions; the error
            lists every step of the component as ``(source, target)`` pairs, or, given
            ``versions``, names ``target`` or ``source`` when nothing registers it.
        LossyMigrationError: every path loses information and ``allow_lossy`` is false;
            the error names the lossy steps of the best path.
    """
    if source == target:
        return Plan(component, source, target)
    graph: dict[int, list[Step]] = {}
    for step in steps:
        if step.component == component:
            graph.setdefault(step.source, []).append(step)
    best = _search(graph, source, target)
    if best is None:
        edges = [(s.source, s.target) for out in graph.values() for s in out]
        known = None if versions is None else {*versions, *(v for edge in edges for v in edge)}
        raise NoMigrationPathError(component, source, target, edges, versions=known)
    plan = Plan(component, source, target, best)
    if plan.lossy_steps and not allow_lossy:
        raise LossyMigrationError(component, source, target, [str(s) for s in plan.lossy_steps])
    return plan


def _search(graph: dict[int, list[Step]], source: int, target: int) -> tuple[Step, ...] | None:
    # Dijkstra over the cost (lossy steps, steps, versions visited). Extending two
    # paths of equal length by the same step keeps their order, so the first time a
    # version is popped its path is the best one to it under the full cost.
    # The counter only separates two steps that join the same pair of versions; it
    # keeps heapq from ever comparing Step objects.
    order = itertools.count()
    heap: list[tuple[int, int, tuple[int, ...], int, tuple[Step, ...]]] = [
        (0, 0, (source,), next(order), ())
    ]
    done: set[int] = set()
    while heap:
        lossy, length, versions, _, path = heapq.heappop(heap)
        here = versions[-1]
        if here in done:
            continue
        done.add(here)
        if here == target:
            return path
        for step in graph.get(here, ()):
            if step.target not in done:
                entry = (
                    lossy + step.lossy,
                    length + 1,
                    (*versions, step.target),
                    next(order),
                    (*path, step),
                )
                heapq.heappush(heap, entry)
    return None
