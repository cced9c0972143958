"""Reports returned by snapshot, commit and restore, and logged through ``logging``.

Reports are plain frozen dataclasses: easy to assert on in tests, to print, and to turn
into JSON for dashboards (:meth:`to_plain`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemigrate._snapshot._header import SnapshotHeader
    from statemigrate.stores import SnapshotRef

__all__ = [
    "CheckpointReport",
    "CommitReport",
    "ComponentRestore",
    "RestoreReport",
    "SectionReport",
    "SnapshotReport",
    "UNCHANGED",
]


def _ms(timings: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in timings.items())


UNCHANGED = "unchanged"
"""A checkpoint's reason to be skipped: the state is the one last committed."""


@dataclass(frozen=True, slots=True)
class SectionReport:
    """One component instance as written into a snapshot."""

    component: str
    instance: str
    version: int
    """The schema version written (the live one, or the target of a downgrade)."""
    raw_size: int
    stored_size: int
    chunks: int
    steps: tuple[str, ...] = ()
    """Steps applied on the way out, e.g. for a rollback to older code."""


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    """What :meth:`Service.snapshot` produced."""

    snapshot_id: str
    generation: int
    size: int
    sections: tuple[SectionReport, ...]
    timings: dict[str, float]
    """Seconds per phase: ``export``, ``migrate``, ``pack``, ``compress``."""
    chain: int = 0
    """For an incremental checkpoint, the pieces of the chain committed as one object
    (a full snapshot and its deltas; ``size`` is the whole chain's, ``sections`` is
    empty and the id, generation and timings are the last piece's); 0 otherwise."""

    @classmethod
    def of(
        cls,
        header: SnapshotHeader,
        size: int,
        timings: Mapping[str, float],
        steps: Iterable[tuple[str, ...]] | None = None,
    ) -> SnapshotReport:
        """The report of a snapshot of ``size`` bytes with this header; ``steps``: the
        names of the steps each section went through (none by default)."""
        per_section = list(steps) if steps is not None else [()] * len(header.sections)
        return cls(
            snapshot_id=header.snapshot_id,
            generation=header.generation,
            size=size,
            sections=tuple(
                SectionReport(
                    component=info.component,
                    instance=info.instance,
                    version=info.version,
                    raw_size=info.raw_size,
                    stored_size=info.stored_size,
                    chunks=len(info.chunks),
                    steps=names,
                )
                for info, names in zip(header.sections, per_section, strict=True)
            ),
            timings=dict(timings),
        )

    def to_plain(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)

    def summary(self) -> str:
        """One line for logs."""
        if self.chain:
            deltas = self.chain - 1
            return (
                f"checkpoint chain {self.snapshot_id[:12]} gen {self.generation}: a full"
                f" snapshot and {deltas} delta{'' if deltas == 1 else 's'}, {self.size}"
                f" bytes; {_ms(self.timings)}"
            )
        raw = sum(s.raw_size for s in self.sections)
        return (
            f"snapshot {self.snapshot_id[:12]} gen {self.generation}: {len(self.sections)}"
            f" section{'' if len(self.sections) == 1 else 's'}, {raw} raw -> {self.size}"
            f" bytes; {_ms(self.timings)}"
        )


@dataclass(frozen=True, slots=True)
class CommitReport:
    """A committed snapshot: where it lives, and what went into it.

    It stands in for its store reference, so ``service.restore(service.commit(store))``
    reads back exactly what was committed.
    """

    ref: SnapshotRef
    snapshot: SnapshotReport
    commit_seconds: float

    def open(self) -> bytes | memoryview:
        """The committed bytes, read back through the store."""
        return self.ref.open()

    def describe(self) -> str:
        """Where the snapshot lives."""
        return self.ref.describe()

    def summary(self) -> str:
        """One line for logs."""
        # A store that numbers what it keeps (an ObjectStore) has numbers of its own,
        # which `statemigrate list` shows and `URL#N` names: not the snapshot's
        # generation, which counts the service's snapshots since its last cold start.
        numbered = getattr(self.ref, "generation", None)
        kept = f" (store generation {numbered})" if isinstance(numbered, int) else ""
        return (
            f"{self.snapshot.summary()}, commit {self.commit_seconds * 1000:.1f} ms"
            f" -> {self.describe()}{kept}"
        )


@dataclass(frozen=True, slots=True)
class CheckpointReport:
    """One checkpoint: committed, or skipped because nothing had changed."""

    committed: CommitReport | None
    """The commit, or ``None`` when the checkpoint was skipped."""
    pause_seconds: float
    """Seconds the writers were held: from the moment ``quiesce`` held them (a lock
    taken, ``pause()`` returned) until they were let go, the snapshot taken (0 when
    skipped). The store's commit is not part of it."""
    seconds: float
    """Seconds the whole checkpoint took, the store's commit included."""
    reason: str = UNCHANGED
    """Why it was skipped, empty when it committed: ``"unchanged"`` when the state is the
    one the last committed checkpoint holds."""
    child_seconds: float = 0.0
    """For a full snapshot (an incremental chain's base) exported by a forked child:
    seconds from the fork until the commit returned, the time the state of the fork
    was in no store, the CPU the child waited for included; 0 when nothing was
    forked (a delta, an inline export, a skip)."""

    @property
    def skipped(self) -> bool:
        """Whether no checkpoint was written (see :attr:`reason`)."""
        return self.committed is None

    def summary(self) -> str:
        """One line for logs."""
        if self.committed is None:
            return f"checkpoint skipped: {self.reason}"
        # A forked child's whole time beside the encode figure, which is one phase of
        # its work: only this shows how long the child waited for a core, and so how
        # long a crash would have lost the writes since the last checkpoint.
        child = f"; child {self.child_seconds:.1f} s (fork to commit)" if self.child_seconds else ""
        return (
            f"checkpoint: {self.committed.summary()}; writers held"
            f" {self.pause_seconds * 1000:.1f} ms{child}"
        )


@dataclass(frozen=True, slots=True)
class ComponentRestore:
    """One component instance as restored."""

    component: str
    instance: str
    source_version: int
    target_version: int
    steps: tuple[str, ...]
    raw_size: int
    stored_size: int
    fingerprint_matches: bool
    """False when the snapshot's schema fingerprint differs from the registered one
    for the same version: the schema changed without a version bump."""


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What :meth:`Service.restore` did.

    Attributes:
        snapshot_id: the snapshot restored (or skipped).
        generation: its generation number.
        skipped: True when every registered component had already been restored from
            this snapshot, so nothing changed.
        components: per component instance, the versions and steps applied.
        unknown: sections in the snapshot that no registered component claims.
        missing: registered components that the snapshot has no section for.
        already_restored: registered components left alone because they had already
            been restored from this snapshot (``component/instance``); when
            ``skipped``, every registered component.
        size: snapshot size in bytes.
        timings: seconds per phase: ``read``, ``verify``, ``decode``, ``migrate``,
            ``validate`` (with the read-back check of a section whose schema
            fingerprint differs), ``apply``.
        delta: True when a delta was applied on top of the state restored before.
        records: for a delta, the records it set or deleted.
        chain: for a checkpoint chain restored whole, its pieces (the base and its
            deltas); the rest of the report is its last piece's. 0 for anything else.
        carried: the sections the service carries after this restore: those of the
            last full snapshot restored that no registered component claims (but a
            retired one's), kept as they were read and written unchanged into every
            snapshot the service writes from now on, so that a release that has their
            component restores them. A subset of ``unknown`` for a full snapshot.
        created_ns: Unix time, in nanoseconds, at which the snapshot restored was
            taken (its header's ``created_ns``); of a checkpoint chain, its newest
            piece's. How old the state restored is, and so how much a
            restart lost since: ``time.time_ns() - created_ns`` when restored.
    """

    snapshot_id: str
    generation: int
    skipped: bool
    components: tuple[ComponentRestore, ...] = ()
    unknown: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    already_restored: tuple[str, ...] = ()
    size: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    delta: bool = False
    records: int = 0
    chain: int = 0
    carried: tuple[str, ...] = ()
    created_ns: int = 0

    def to_plain(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)

    def summary(self) -> str:
        """One line for logs."""
        if self.skipped:
            return f"restore of {self.snapshot_id[:12]} skipped: already restored"
        steps = sum(len(c.steps) for c in self.components)
        what = f"restored {self.snapshot_id[:12]} gen {self.generation}"
        if self.chain:
            deltas = self.chain - 1
            what = (
                f"restored checkpoint chain {self.snapshot_id[:12]} gen {self.generation}"
                f" (a full snapshot and {deltas} delta{'' if deltas == 1 else 's'};"
                " timings of its last piece)"
            )
        elif self.delta:
            what = (
                f"applied delta {self.snapshot_id[:12]} gen {self.generation}"
                f" ({self.records} records)"
            )
        text = f"{what}: {len(self.components)} components, {steps} steps; {_ms(self.timings)}"
        if self.unknown:
            text += f"; not claimed: {', '.join(self.unknown)}"
        if self.carried:
            text += f"; carried unchanged: {', '.join(self.carried)}"
        if self.missing:
            text += f"; not in snapshot: {', '.join(self.missing)}"
        if self.already_restored:
            text += f"; already restored: {', '.join(self.already_restored)}"
        return text
