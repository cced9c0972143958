"""Rewrite a snapshot with some of its components at other versions, offline, or
check that each of its sections would restore at the versions a release runs.

What ``statemigrate migrate`` does, as a function (:func:`migrate_snapshot`): every
section named in ``targets`` is decoded and brought to its target version through the
migration pipeline (:meth:`Registry.migrate
<statemigrate._model._registry.Registry.migrate>`); the other sections are copied over
as they are decoded. What ``statemigrate verify`` does (:func:`verify_snapshot`): every
section goes through the same pipeline to its target, as a restore's would, and
nothing is written. No live component is involved in either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from statemigrate._errors import (
    ConfigurationError,
    SnapshotError,
    StateMigrateError,
    UnknownComponentError,
    ValidationError,
)
from statemigrate._model._allowlossy import AllowLossy, check_allow_lossy, unregistered_names
from statemigrate._model._plan import Plan
from statemigrate._runtime._readback import read_back_problem
from statemigrate._runtime._restoresource import GENERATION_LIMIT
from statemigrate._snapshot._encode import EncodedSnapshot, SectionInput, encode_snapshot
from statemigrate._snapshot._format import DecodeLimits, Snapshot
from statemigrate._snapshot._header import Producer, SectionInfo

if TYPE_CHECKING:
    from statemigrate._model._registry import Registry

__all__ = ["SectionVerdict", "SnapshotMigration", "migrate_snapshot", "verify_snapshot"]

logger = logging.getLogger("statemigrate")


@dataclass(frozen=True)
class SnapshotMigration:
    """A snapshot rewritten by :func:`migrate_snapshot`.

    Attributes:
        encoded: the new snapshot, ready to write or commit.
        plans: per migrated section (``component/instance``), the plan it went
            through, in the snapshot's order. Sections already at their target, and
            those not named, are left out.
    """

    encoded: EncodedSnapshot
    plans: dict[str, Plan] = field(default_factory=dict)


def migrate_snapshot(
    snapshot: Snapshot,
    targets: Mapping[str, int],
    *,
    registry: Registry,
    allow_lossy: AllowLossy = False,
    key: bytes | None = None,
    level: int = 1,
    on_section: Callable[[str], None] | None = None,
) -> SnapshotMigration:
    """Rewrite ``snapshot`` with the components named in ``targets`` at those versions.

    The new snapshot keeps the producer's service name, the generation and the meta
    of the old one, adds ``migrated_from`` (the old snapshot's id) to the meta, and
    names ``statemigrate migrate`` as the code version that wrote it.

    Args:
        snapshot: a verified snapshot (see :func:`~statemigrate.open_snapshot`).
        targets: the version to bring each named component to (every instance of it).
        registry: where the schemas and steps are found.
        allow_lossy: allow steps declared lossy: True, or the components whose
            steps may lose data.
        key: the key to authenticate the new snapshot with, if any.
        level: the zstd compression level.
        on_section: called with ``component/instance`` after each section is done
            (a progress display).

    Raises:
        ConfigurationError: ``snapshot`` is no :class:`Snapshot` (its bytes, say),
            ``targets`` names a component the snapshot does not hold, the snapshot is
            a delta (which only means something on top of its base), or
            ``allow_lossy`` is a str or no collection of names (a name the registry
            does not hold is a warning: it allows nothing).
        SnapshotError: a section does not decode, or the snapshot's generation is
            beyond what counting snapshots reaches (a restore refuses it).
        UnknownComponentError, NoMigrationPathError, LossyMigrationError,
            MigrationStepError, ValidationError: as :meth:`Registry.migrate` raises them
            for a section (the messages name the section); ValidationError also for a
            named section that another schema wrote under its version (the
            fingerprints differ) and this code would not read back as written.
    """
    _check_snapshot(snapshot, "migrate_snapshot")
    allow_lossy = _checked_lossy(allow_lossy, registry)
    _check_targets(snapshot, targets, done="rewritten")
    sections_info = snapshot.header.sections
    sections: list[SectionInput] = []
    plans: dict[str, Plan] = {}
    for index, section in enumerate(sections_info):
        version, fingerprint = section.version, section.fingerprint
        target = targets.get(section.component)
        if target is None:
            data = snapshot.read_section(index)
        elif target == version:
            # Asked for the version it has: no step runs, but what is written is
            # checked as if one had, so that a rewrite never passes on data no restore
            # of that version takes.
            data = snapshot.read_section(index)
            _check_read_back(registry, section, data)
            _check_valid(registry, section.component, section.instance, version, data)
        else:
            # As a restore does: data another schema wrote under its version is read
            # back before any step, else the rewrite would give it this code's
            # fingerprint and no later restore could tell.
            box = [snapshot.read_section(index)]
            _check_read_back(registry, section, box[0])
            result = registry.migrate(
                section.component,
                box.pop(),  # decoded for this call alone: no copy
                version,
                target,
                allow_lossy=allow_lossy,
                copy=False,
                instance=section.instance,
            )
            data = result.data
            version = target
            fingerprint = registry.schema_for(section.component, target).fingerprint
            plans[section.key] = result.plan
        sections.append(
            SectionInput(section.component, section.instance, version, fingerprint, data)
        )
        if on_section is not None:
            on_section(section.key)
    header = snapshot.header
    encoded = encode_snapshot(
        sections,
        # Held to the limits of a default reader, as any restore of it is.
        limits=DecodeLimits(),
        producer=Producer.current(header.producer.service, code_version="statemigrate migrate"),
        key=key,
        generation=header.generation,
        meta={**header.meta, "migrated_from": header.snapshot_id},
        level=level,
    )
    return SnapshotMigration(encoded, plans)


def _check_valid(
    registry: Registry, component: str, instance: str, version: int, data: object
) -> None:
    """Refuse section data its own version's schema does not validate.

    Raises:
        ValidationError: naming the section and the first bad field.
    """
    try:
        registry.schema_for(component, version).validate(data)
    except ValidationError as exc:
        raise ValidationError(
            component, version, exc.detail, instance=instance, errors=exc.errors
        ) from exc


def _check_snapshot(snapshot: object, call: str) -> None:
    """Refuse what is not an opened snapshot (its bytes, say), naming what ``call``
    takes, and a snapshot a restore refuses whatever its sections hold.

    Raises:
        ConfigurationError: ``snapshot`` is no :class:`Snapshot`.
        SnapshotError: its generation is beyond what counting snapshots reaches, which
            a restore refuses as forged or damaged.
    """
    if not isinstance(snapshot, Snapshot):
        raise ConfigurationError(
            "snapshot",
            f"{call} takes a Snapshot, as open_snapshot(data, key=...) returns for a"
            f" snapshot's bytes, not {type(snapshot).__qualname__}",
        )
    generation = snapshot.header.generation
    if generation >= GENERATION_LIMIT:
        # As Service.restore refuses it: a verdict "would restore" would be wrong, and
        # a rewritten snapshot would carry the generation on.
        raise SnapshotError(
            "invalid_header",
            f"snapshot generation {generation} is beyond what counting snapshots"
            f" reaches (limit {GENERATION_LIMIT}); refused as forged or damaged",
        )


def _checked_lossy(allow_lossy: object, registry: Registry) -> bool | frozenset[str]:
    """``allow_lossy`` checked up front; a name of no component of ``registry`` is a
    warning, as in a service and on the command line: it allows nothing."""
    checked = check_allow_lossy(allow_lossy)
    unknown = unregistered_names(checked, registry.components())
    if unknown:
        logger.warning(
            "allow_lossy names %s, no component of the registry (registered: %s); ignored",
            ", ".join(map(repr, unknown)),
            ", ".join(registry.components()) or "none",
        )
    return checked


def _check_targets(snapshot: Snapshot, targets: Mapping[str, int], *, done: str) -> None:
    """Refuse a delta, and targets for components the snapshot does not hold.

    Raises:
        ConfigurationError: naming the delta's base, or the components absent.
    """
    header = snapshot.header
    if header.base is not None:
        raise ConfigurationError(
            "snapshot",
            f"{header.snapshot_id[:12]} is a delta of {header.base.snapshot_id[:12]};"
            f" only full snapshots are {done}, and a delta means nothing without its base"
            " (give the checkpoint chain it belongs to, whose pieces are composed first)",
        )
    present = {section.component for section in header.sections}
    absent = sorted(set(targets) - present)
    if absent:
        raise ConfigurationError("targets", f"snapshot has no section for {', '.join(absent)}")


@dataclass(frozen=True)
class SectionVerdict:
    """Whether one section of a snapshot would restore, as :func:`verify_snapshot` found.

    Attributes:
        component: the section's component.
        instance: the section's instance.
        source: the version the section is at.
        target: the version it was brought to, or ``None`` when the registry does not
            know the component.
        plan: the plan its data went through, or ``None`` when none was found.
        error: why it would not restore (the error a restore's pipeline raised on it),
            or ``None`` when it would.
        retired: the release retired the component (``Registry.retire``): a restore
            drops the section on purpose, which is no failure.
    """

    component: str
    instance: str
    source: int
    target: int | None
    plan: Plan | None = None
    error: StateMigrateError | None = None
    retired: bool = False

    @property
    def key(self) -> str:
        """``component/instance``."""
        return f"{self.component}/{self.instance}"

    @property
    def restores(self) -> bool:
        """Whether the section would restore."""
        return self.error is None


def verify_snapshot(
    snapshot: Snapshot,
    targets: Mapping[str, int],
    *,
    registry: Registry,
    allow_lossy: AllowLossy = False,
    on_section: Callable[[str], None] | None = None,
) -> list[SectionVerdict]:
    """Whether each section of ``snapshot`` would restore into a release running
    ``registry`` at ``targets``, found as a restore finds it, with nothing written.

    Each section is decoded, checked to read back as written when this code's schema
    of its version differs from the one that wrote it, and brought through the
    migration pipeline (:meth:`Registry.migrate`: plan, steps, validation against the
    target's schema) to its target: the version ``targets`` names for its component,
    else the newest version ``registry`` holds. What goes wrong with one section is
    its verdict; the others are still checked.

    Args:
        snapshot: a verified full snapshot (see :func:`~statemigrate.open_snapshot`).
        targets: the version a component's sections should reach, for the components
            not to be checked at their newest version.
        registry: the schemas and steps of the release to restore into.
        allow_lossy: allow steps declared lossy: True, or the components whose
            steps may lose data.
        on_section: called with ``component/instance`` after each section is checked
            (a progress display).

    Returns:
        One verdict per section, in the snapshot's order.

    Raises:
        ConfigurationError: ``snapshot`` is no :class:`Snapshot` (its bytes, say), or
            a delta, ``targets`` names a component the snapshot does not hold, or
            ``allow_lossy`` is a str or no collection of names (a name the registry
            does not hold is a warning: it allows nothing).
        UnknownComponentError: ``targets`` names a component, or a version of one,
            that ``registry`` does not hold.
        SnapshotError: the snapshot's generation is beyond what counting snapshots
            reaches (a restore refuses it, whatever its sections hold).
    """
    _check_snapshot(snapshot, "verify_snapshot")
    allow_lossy = _checked_lossy(allow_lossy, registry)
    _check_targets(snapshot, targets, done="verified")
    for component, version in targets.items():
        registry.schema_for(component, version)  # raises for what is not registered
    verdicts = []
    for index, section in enumerate(snapshot.header.sections):
        verdicts.append(_verify_section(snapshot, index, targets, registry, allow_lossy))
        if on_section is not None:
            on_section(section.key)
    return verdicts


def _verify_section(
    snapshot: Snapshot,
    index: int,
    targets: Mapping[str, int],
    registry: Registry,
    allow_lossy: AllowLossy,
) -> SectionVerdict:
    section = snapshot.header.sections[index]
    verdict = SectionVerdict(section.component, section.instance, section.version, None)
    if section.component in registry.retired():
        try:
            snapshot.read_section(index)  # damage is still damage
        except StateMigrateError as exc:
            return replace(verdict, error=exc)
        return replace(verdict, retired=True)
    try:
        target = targets.get(section.component)
        if target is None:
            target = registry.latest(section.component).version
    except UnknownComponentError as exc:
        return replace(verdict, error=exc)
    verdict = replace(verdict, target=target)
    try:
        # Decoded for the pipeline alone, as a restore's section is: the box holds the
        # only reference, so validation may keep the data rather than copy it.
        box = [snapshot.read_section(index)]
        _check_read_back(registry, section, box[0])
        result = registry.migrate(
            section.component,
            box.pop(),
            section.version,
            target,
            allow_lossy=allow_lossy,
            copy=False,
            export=False,
            instance=section.instance,
        )
    except StateMigrateError as exc:  # SnapshotError included: a section that does not decode
        return replace(verdict, error=exc)
    return replace(verdict, plan=result.plan)


def _check_read_back(registry: Registry, section: SectionInfo, data: object) -> None:
    """Refuse data that a restore would refuse before running any step: written under
    its version by a schema other than this code's, which would not read it back.

    Raises:
        ValidationError: naming the section and what would be read differently.
    """
    try:
        schema = registry.schema_for(section.component, section.version)
    except UnknownComponentError:
        return  # a version this code never knew: only steps read it, as in a restore
    if schema.fingerprint == section.fingerprint:
        return
    problem = read_back_problem(schema, data, section.version)
    if problem is not None:
        raise ValidationError(
            section.component, section.version, problem, instance=section.instance
        )
