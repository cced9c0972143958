"""Sections a restore leaves unclaimed, carried: kept as they were read and written
unchanged into the service's later snapshots.

A release that lacks a component (a rollback to a release before it was added) restores
a snapshot holding its section. Dropped, the section would be gone from the store at
the next commit or checkpoint, and rolling forward again would find nothing. So each
restore keeps every section no registered component claims as it is stored (header
entry and chunks, never decoded into a schema), and every full snapshot the service
writes afterwards (a commit, a checkpoint or a chain's base, a handoff's snapshot or
round 0) holds it again, byte for byte: a release that has the component restores it
through its migrations, as any section. A component retired on purpose
(``Registry.retire``) is dropped instead.

A later full restore replaces what is carried. A delta that changes a carried section
(a chain or a pre-copy written by the release that has the component) is applied to it
on plain data, as ``statemigrate migrate`` composes a chain, and the result carried;
a change that cannot be applied so fails the restore, since the section would
otherwise be carried stale.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from statemigrate._errors import RestoreError, SnapshotError
from statemigrate._runtime._chainread import applied_to_plain
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate._snapshot._format import DecodeLimits, Snapshot, open_snapshot
from statemigrate._snapshot._sections import SealedSection

if TYPE_CHECKING:
    from statemigrate._model._registry import Registry
    from statemigrate._snapshot._header import Producer

__all__ = [
    "NOTHING_CARRIED",
    "Carried",
    "announce_carried",
    "carry_delta",
    "carry_full",
    "retired_in",
]

logger = logging.getLogger("statemigrate")


@dataclass(frozen=True, slots=True)
class Carried:
    """The sections a service carries, and the restore that left them.

    Attributes:
        sections: by (component, instance), in the order of the snapshot they came from.
        since: the id of the full snapshot whose restore left them; None before any.
        dropped: the sections (``component/instance``, version) that restore dropped
            because their component is retired.
    """

    sections: Mapping[tuple[str, str], SealedSection] = field(default_factory=dict)
    since: str | None = None
    dropped: tuple[tuple[str, int], ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """``component/instance`` of each section carried."""
        return tuple(section.key for section in self.sections.values())


NOTHING_CARRIED = Carried()


def retired_in(registries: Iterable[Registry]) -> frozenset[str]:
    """The components any of ``registries`` retired."""
    return frozenset(name for registry in registries for name in registry.retired())


def carry_full(
    snapshot: Snapshot, claimed: Collection[tuple[str, str]], retired: Collection[str]
) -> Carried:
    """What a restore of the full ``snapshot`` leaves carried: every section whose
    (component, instance) is not in ``claimed``, unless its component is ``retired``.

    Raises:
        RestoreError: in ``decode``, naming the section: it fails a check a restore
            of it would make (see :meth:`Snapshot.sealed_section`).
    """
    sections: dict[tuple[str, str], SealedSection] = {}
    dropped: list[tuple[str, int]] = []
    for index, info in enumerate(snapshot.header.sections):
        where = (info.component, info.instance)
        if where in claimed:
            continue
        if info.component in retired:
            dropped.append((info.key, info.version))
            continue
        try:
            sections[where] = snapshot.sealed_section(index)
        except SnapshotError as exc:
            raise RestoreError("decode", str(exc), component=info.key) from exc
    return Carried(sections, snapshot.header.snapshot_id, tuple(dropped))


def carry_delta(
    snapshot: Snapshot,
    carried: Carried,
    claimed: Collection[tuple[str, str]],
    retired: Collection[str],
    limits: DecodeLimits,
) -> Carried:
    """What stays carried once the delta ``snapshot`` is applied: each carried section
    the delta changes (one of its sections not in ``claimed``) with the change applied
    on plain data; the others as they were. A retired component's change is dropped.

    Raises:
        RestoreError: naming the section: the delta changes a section this service
            neither claims nor carries, at another version than the one carried, or
            in a way that does not apply to it on plain data.
    """
    changed: dict[tuple[str, str], SectionInput] = {}
    for index, info in enumerate(snapshot.header.sections):
        where = (info.component, info.instance)
        if where in claimed or info.component in retired:
            continue
        kept = carried.sections.get(where)
        if kept is None:
            raise RestoreError(
                "verify",
                "the delta changes a section that no component claims and the restore of"
                " its base did not carry; restore a full snapshot",
                component=info.key,
            )
        if kept.version != info.version:
            raise RestoreError(
                "verify",
                f"the delta changes a section carried unchanged at version {kept.version},"
                f" at version {info.version}; restore a full snapshot",
                component=info.key,
            )
        try:
            state = _reopened([kept], snapshot.header.producer, limits).read_section(0)
            delta = snapshot.read_section(index)
            state = applied_to_plain(state, delta, info.key)
        except SnapshotError as exc:
            raise RestoreError("decode", str(exc), component=info.key) from exc
        changed[where] = SectionInput(
            info.component, info.instance, kept.version, kept.fingerprint, state
        )
    if not changed:
        return carried
    resealed = _reopened(list(changed.values()), snapshot.header.producer, limits)
    sealed = {
        (info.component, info.instance): resealed.sealed_section(index)
        for index, info in enumerate(resealed.header.sections)
    }
    sections = {where: sealed.get(where, kept) for where, kept in carried.sections.items()}
    return Carried(sections, carried.since, carried.dropped)


def _reopened(
    sections: list[SectionInput | SealedSection], producer: Producer, limits: DecodeLimits
) -> Snapshot:
    """``sections`` encoded into a snapshot of their own, held to ``limits`` as the
    service's snapshots are, and opened: the way to read a carried section, and to
    keep a changed one as sealed as the others.

    Raises:
        SnapshotError: a section does not decode within ``limits``.
    """
    try:
        encoded = encode_snapshot(sections, producer=producer, limits=limits)
    except (TypeError, ValueError) as exc:  # an ExportError is a ValueError
        raise SnapshotError("invalid_data", f"cannot be carried: {exc}") from exc
    return open_snapshot(encoded.to_bytes(), limits=limits)


def announce_carried(service: str, carried: Carried) -> None:
    """Log what a restore left carried, one WARNING per section, and what it dropped as
    retired, one INFO line per section."""
    for section in carried.sections.values():
        logger.warning(
            "service %s: section %s (version %d) is claimed by no component of this"
            " release; it is carried: written unchanged into this service's snapshots,"
            " so that a release that has component %r restores it; writes this release"
            " makes to that state, if it still keeps it (a component not registered, or"
            " renamed), are in no snapshot and lost. To drop it on purpose, retire the"
            " component: registry.retire(%r); to refuse such a restore,"
            " Service(strict=True)",
            service,
            section.key,
            section.version,
            section.component,
            section.component,
        )
    for key, version in carried.dropped:
        logger.info(
            "service %s: section %s (version %d) is dropped: its component is retired"
            " (Registry.retire)",
            service,
            key,
            version,
        )
