"""Exporting a service's components into the sections of a snapshot, each migrated to
the version it is written at, and choosing those versions for a reader."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from statemigrate._errors import ExportError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._model._component import export_component
from statemigrate._model._paths import format_path, located_path
from statemigrate._model._plaindata import strictly_plain
from statemigrate._runtime._gcpause import gc_paused
from statemigrate._runtime._report import SnapshotReport
from statemigrate._snapshot._encode import SectionInput
from statemigrate._snapshot._sections import SealedSection

if TYPE_CHECKING:
    from statemigrate._runtime._restore import Registered
    from statemigrate._snapshot._header import SnapshotHeader
    from statemigrate._snapshot._msgpack import NotPlainError

__all__ = [
    "Exported",
    "choose_versions",
    "export_all",
    "export_section",
    "section_to_walk",
    "walk_section",
]


class Exported:
    """The sections of a snapshot being taken, with what it took to export them: one
    per entry, in order, then the sections carried (see :meth:`carry`)."""

    def __init__(self, entries: list[Registered]) -> None:
        self.entries = entries
        self.sections: list[SectionInput | SealedSection] = []
        self.step_names: list[tuple[str, ...]] = []
        self.walked: set[int] = set()
        self.timings: dict[str, float] = {}

    def carry(self, sections: Iterable[SealedSection]) -> None:
        """Write ``sections``, which a restore left unclaimed, unchanged after the
        exported ones (see :mod:`statemigrate._runtime._carried`)."""
        for section in sections:
            self.sections.append(section)
            self.step_names.append(())

    def report(
        self, header: SnapshotHeader, size: int, timings: Mapping[str, float]
    ) -> SnapshotReport:
        """The report of the snapshot these sections were encoded into."""
        return SnapshotReport.of(header, size, {**self.timings, **timings}, self.step_names)


def export_all(
    entries: Sequence[Registered],
    *,
    targets: Mapping[str, int] | None,
    allow_lossy: AllowLossy,
    check: bool = False,
) -> Exported:
    """Export every registered component, migrated to its target version; with
    ``check``, plain states are validated deep, as a commit to a store needs (a
    handoff's successor validates what it receives itself)."""
    started = time.perf_counter()
    exported = Exported(list(entries))
    migrate_seconds = 0.0
    for entry in exported.entries:
        section, steps, seconds = export_section(
            entry, targets=targets, allow_lossy=allow_lossy, check=check
        )
        exported.sections.append(section)
        exported.step_names.append(steps)
        migrate_seconds += seconds
    exported.timings = {
        "export": time.perf_counter() - started - migrate_seconds,
        "migrate": migrate_seconds,
    }
    return exported


def walk_section(
    exported: Exported,
    exc: NotPlainError,
    *,
    targets: Mapping[str, int] | None,
    allow_lossy: AllowLossy,
) -> None:
    """Export again, walking it, the section whose data turned out not to be plain.

    Raises:
        ExportError: that section was walked already: the error names its path.
    """
    registry = exported.entries[exc.section if exc.section is not None else 0].registry

    def path_of(section: SectionInput | SealedSection, steps: list[object]) -> str:
        # Record fields named as the exporter names them (``entries['k'].hits``).
        schema = registry.schema_for(section.component, section.version)
        return format_path(located_path(schema.adapter.core_schema, steps, labelled=False))

    index = section_to_walk(exc, exported.sections, exported.walked, path_of=path_of)
    exported.sections[index], _, _ = export_section(
        exported.entries[index], targets=targets, allow_lossy=allow_lossy, walk=True
    )


def section_to_walk(
    exc: NotPlainError,
    sections: Sequence[SectionInput | SealedSection],
    walked: set[int],
    *,
    path_of: Callable[[SectionInput | SealedSection, list[object]], str] | None = None,
) -> int:
    """The section whose data ``exc`` found not plain, now marked as walked: the caller
    exports it again with a walk, which converts what can be (an int past 64 bits) or
    finds with the path what cannot. ``path_of`` renders the path into the section's
    data (by default, each step as a key or index).

    Raises:
        ExportError: that section was walked already: the error names its path.
    """
    index = exc.section if exc.section is not None else 0
    if index in walked:
        section = sections[index]
        steps = list(exc.path)
        raise ExportError(
            section.component,
            section.version,
            format_path(steps) if path_of is None else path_of(section, steps),
            exc.detail,
            instance=section.instance,
        ) from exc
    walked.add(index)
    return index


def export_section(
    entry: Registered,
    *,
    targets: Mapping[str, int] | None,
    allow_lossy: AllowLossy,
    walk: bool = False,
    check: bool = False,
) -> tuple[SectionInput, tuple[str, ...], float]:
    """Export one component, migrated to its target version if it has one; ``walk``
    and ``check`` as for :meth:`SchemaVersion.export`.

    Returns the section, the steps applied and the seconds they took.
    """
    registry = entry.registry
    data = export_component(entry.obj, registry=registry, walk=walk, check=check)
    version = entry.spec.version
    target = (targets or {}).get(entry.component, version)
    steps: tuple[str, ...] = ()
    seconds = 0.0
    if target != version:
        if not walk and not strictly_plain(data):
            # Steps get plain data, as a restore gives it to them: an int past 64 bits
            # as its decimal text, say. The export makes that form with a walk.
            data = export_component(entry.obj, registry=registry, walk=True, check=check)
        step_started = time.perf_counter()
        # The export can be the live objects, which steps may mutate: the pipeline
        # migrates a private copy, a container at a time, which no collection need walk.
        with gc_paused():
            result = registry.migrate(
                entry.component,
                data,
                version,
                target,
                allow_lossy=allow_lossy,
                instance=entry.instance,
            )
        data = result.data
        steps = result.step_names
        seconds = time.perf_counter() - step_started
        version = target
    schema = registry.schema_for(entry.component, version)
    section = SectionInput(entry.component, entry.instance, version, schema.fingerprint, data)
    return section, steps, seconds


def choose_versions(
    live: Mapping[str, int],
    readable: Mapping[str, Sequence[int]],
    plan_exists: Mapping[str, Sequence[int]],
) -> dict[str, int]:
    """Pick, per component, the version to write for a reader that reads ``readable``.

    The live version when the reader can read it; otherwise the highest version the
    reader reads that ``plan_exists`` says the live version can be migrated to. A
    component the reader does not know at all (absent from ``readable``: a release
    without it, or one that retired it) is written at its live version, as a snapshot
    holds it: the reader carries that section unchanged for a release that has the
    component, or drops it if it retired it, as any restore does.

    Raises:
        ValueError: naming every component for which no common version exists.
    """
    chosen: dict[str, int] = {}
    problems = []
    for component, version in live.items():
        if component not in readable:
            chosen[component] = version
            continue
        options = set(readable[component])
        if version in options:
            chosen[component] = version
            continue
        common = options & set(plan_exists.get(component, ()))
        if not common:
            problems.append(
                f"{component}: this process has v{version}, successor reads"
                f" {sorted(options) or 'nothing'}"
            )
            continue
        chosen[component] = max(common)
    if problems:
        raise ValueError("no version both sides understand: " + "; ".join(problems))
    return chosen
