"""Rewrite a snapshot with some of its components at other versions, offline.

What ``statemigrate migrate`` does, as a function: every section named in ``targets``
is decoded and brought to its target version through the migration pipeline
(:meth:`Registry.migrate <statemigrate._model._registry.Registry.migrate>`); the
other sections are copied over as they are decoded. No live component is involved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from statemigrate._errors import ConfigurationError, ValidationError
from statemigrate._model._plan import Plan
from statemigrate._snapshot._encode import EncodedSnapshot, SectionInput, encode_snapshot
from statemigrate._snapshot._format import DecodeLimits, Snapshot
from statemigrate._snapshot._header import Producer

if TYPE_CHECKING:
    from statemigrate._model._registry import Registry

__all__ = ["SnapshotMigration", "migrate_snapshot"]


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
    allow_lossy: bool = False,
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
        allow_lossy: allow steps declared lossy.
        key: the key to authenticate the new snapshot with, if any.
        level: the zstd compression level.
        on_section: called with ``component/instance`` after each section is done
            (a progress display).

    Raises:
        ConfigurationError: ``targets`` names a component the snapshot does not hold,
            or the snapshot is a delta (which only means something on top of its base).
        SnapshotError: a section does not decode.
        UnknownComponentError, NoMigrationPathError, LossyMigrationError,
            MigrationStepError, ValidationError: as :meth:`Registry.migrate` raises them
            for a section (the messages name the section).
    """
    if snapshot.header.base is not None:
        raise ConfigurationError(
            "snapshot",
            f"{snapshot.header.snapshot_id[:12]} is a delta of"
            f" {snapshot.header.base.snapshot_id[:12]}; only full snapshots are rewritten",
        )
    sections_info = snapshot.header.sections
    present = {section.component for section in sections_info}
    absent = sorted(set(targets) - present)
    if absent:
        raise ConfigurationError("targets", f"snapshot has no section for {', '.join(absent)}")
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
            _check_valid(registry, section.component, section.instance, version, data)
        else:
            result = registry.migrate(
                section.component,
                snapshot.read_section(index),  # decoded for this call alone: no copy
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
