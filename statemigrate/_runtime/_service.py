"""Service: the registered component instances of one process, and their snapshots.

A service exports every registered component into one snapshot, commits it to a store,
and restores a snapshot into its components as one transaction (see ``_restore``).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from statemigrate._errors import ConfigurationError, RegistrationError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._model._registry import component_spec, is_migratable
from statemigrate._observe._instruments import declare_service, declare_store
from statemigrate._observe._status import RestoreStatus, StatusTracker
from statemigrate._runtime._callerstack import guard_caller_stack
from statemigrate._runtime._carried import announce_carried, retired_in
from statemigrate._runtime._chaincontinue import ChainContinuation
from statemigrate._runtime._commit import (
    SUMMARIES,
    commit_encoded,
    commit_streamed,
    encode_whole,
    record_delta,
)
from statemigrate._runtime._export import choose_versions, export_all
from statemigrate._runtime._fork import serving_pid
from statemigrate._runtime._gate import CheckpointGate
from statemigrate._runtime._history import RestoreHistory
from statemigrate._runtime._inplacecaught import InPlaceCatches
from statemigrate._runtime._lossyexport import announce_lossy_exports
from statemigrate._runtime._members import NAME_LIMIT, Members, RestoreFailurePolicy, check_policy
from statemigrate._runtime._precopy import PreCopySource
from statemigrate._runtime._report import CommitReport, RestoreReport, SnapshotReport
from statemigrate._runtime._restore import Registered
from statemigrate._runtime._restoresource import GENERATION_LIMIT, restore_source
from statemigrate._runtime._restoring import RestoreObserver
from statemigrate._runtime._sources import check_source
from statemigrate._runtime._startup import restore_at_start, restore_stored
from statemigrate._runtime._telemetry import (
    record_carried,
    record_forked_snapshot,
    record_snapshot,
    store_kind,
    store_unrestored,
)
from statemigrate._snapshot._encode import EncodedSnapshot, SectionInput, encode_snapshot
from statemigrate._snapshot._format import DecodeLimits
from statemigrate._snapshot._header import DeltaBase, Producer
from statemigrate._snapshot._limits import check_limits
from statemigrate._snapshot._sections import SealedSection
from statemigrate.stores._base import Store

if TYPE_CHECKING:
    from statemigrate._model._registry import Registry
    from statemigrate.stores import SnapshotRef

__all__ = [
    "GENERATION_LIMIT",
    "SUMMARIES",
    "CheckpointGate",
    "RestoreFailurePolicy",
    "Service",
    "choose_versions",
]

logger = logging.getLogger("statemigrate")

C = TypeVar("C")


class Service:
    """The stateful components of one service, snapshotted and restored together.

    Args:
        name: the service's name, written into every snapshot it produces.
        code_version: the deployed code's version (a git sha, a release), also written
            into snapshots so an operator can tell where one came from.
        key: with a key (>= 16 bytes) snapshots are authenticated with HMAC-SHA256 and
            only authenticated snapshots are accepted. Use it whenever anyone but this
            service could write where snapshots are kept.
        limits: bounds on what a restore accepts.
        level: zstd compression level.
        strict: when True, a restore fails if the snapshot has sections no component
            claims or lacks a registered component; when False (default) it goes on
            and reports them.
        registry: where to find schemas and steps for components whose class was not
            bound to a registry (default: the decorators' default registry).
        on_restore_failure: what :meth:`start_from` does when the restore fails, for
            components registered without their own policy: ``"refuse"`` (default)
            raises, so the process does not start; ``"serve_cold"`` goes on with the
            fresh state and reports a cold start.

    Concurrency: snapshot and restore read and replace component state; pause the
    service's writers around them (the handoff does this through its pause hook).

    Raises:
        ConfigurationError: the name is empty or too long, the key too short, the
            limits not a :class:`DecodeLimits`, or the policy unknown.
    """

    def __init__(
        self,
        name: str,
        *,
        code_version: str = "",
        key: bytes | None = None,
        limits: DecodeLimits | None = None,
        level: int = 1,
        strict: bool = False,
        registry: Registry | None = None,
        on_restore_failure: RestoreFailurePolicy = "refuse",
    ) -> None:
        if not isinstance(name, str):
            raise ConfigurationError("name", f"a service name is a str, not {type(name).__name__}")
        if not 0 < len(name) <= NAME_LIMIT:
            raise ConfigurationError(
                "name", f"a service name has 1..{NAME_LIMIT} characters, not {len(name)}"
            )
        if not name.isprintable():
            # It begins log lines and labels metrics: a newline would forge a line.
            raise ConfigurationError(
                "name", f"a service name must be printable; {name!r} holds a control character"
            )
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            # The key itself stays out of the message: messages end up in logs.
            raise ConfigurationError("key", "an authentication key is at least 16 bytes")
        self.name = name
        self.code_version = code_version
        self._key = key
        self._limits = check_limits(limits)
        self._level = level
        self._strict = strict
        self._members = Members(name, registry)
        # The members' dict itself: registering and unregistering show in it.
        self._entries = self._members.entries
        self._generation = 0
        self._history = RestoreHistory()
        self._on_restore_failure = check_policy(on_restore_failure)
        self._tracker = StatusTracker(name)
        self._restores = RestoreObserver(name, self._tracker, _generation_of(self))
        self._checkpoints = CheckpointGate()
        # The chain start_from restores, for the checkpointer to continue: tracked from
        # the moment its newest piece is applied.
        self._chains = ChainContinuation(
            name,
            _chain_source_of(self),
            entries=self._entries,
            history=self._history,
            key=key,
            limits=self._limits,
        )
        self._restores_applied = 0
        """Snapshots and deltas applied to the components so far (any restore): a
        checkpointer's chain begun before one tracks components it replaced."""
        self._restores.applied = _piece_applied_of(self)
        self._in_place = InPlaceCatches(name)
        """The components caught changing values in place: their deltas are not
        trusted again in this process, by any pre-copy source of the service's."""
        declare_service(name)

    # --- membership ------------------------------------------------------------------

    def register(
        self,
        obj: C,
        *,
        instance: str = "default",
        on_restore_failure: RestoreFailurePolicy | None = None,
    ) -> C:
        """Add a live instance of a ``@migratable`` class; returns it, for chaining.

        Args:
            obj: the live instance.
            instance: its name among instances of the same component.
            on_restore_failure: this component's policy for :meth:`start_from`
                (default: the service's). A restore is all or nothing, so the service
                starts cold only when every component allows it: a cache may say
                ``"serve_cold"``, and sessions that must not vanish ``"refuse"``.

        Raises:
            RegistrationError: the class is not migratable, ``obj`` is a class and not
                an instance of one, ``instance`` is not a str of 1 to 200 characters,
                or this component/instance pair is already registered.
            ConfigurationError: the policy is unknown.
        """
        self._members.add(obj, instance=instance, on_restore_failure=on_restore_failure)
        self._warn_carried(obj, instance)
        return obj

    def _warn_carried(self, obj: object, instance: object) -> None:
        """Warn when the instance just registered has a section the last restore
        carries: the service writes no snapshot until that section is restored into
        it (see :meth:`_carried`)."""
        carried = self._history.carried
        if not carried.sections or not is_migratable(obj) or not isinstance(instance, str):
            return
        section = carried.sections.get((component_spec(obj).component, instance))
        if section is not None:
            logger.warning(
                "service %s: %s is registered, and the last restore (of snapshot %s)"
                " carries its section (version %d); restore that snapshot again to"
                " migrate the section into it: until then this service's snapshots and"
                " commits are refused, so that neither replaces the other",
                self.name,
                section.key,
                str(carried.since)[:12],
                section.version,
            )

    def _carried(self) -> list[SealedSection]:
        """The sections the last restore carries, to write after the exported ones.

        Raises:
            RegistrationError: a registered instance has a section carried (it was
                registered after the restore and not restored since): writing either
                would lose the other's state.
        """
        carried = self._history.carried
        for where, section in carried.sections.items():
            if where in self._entries:
                raise RegistrationError(
                    f"{section.key} is registered in service {self.name!r}, and the last"
                    f" restore (of snapshot {str(carried.since)[:12]}) carries its section"
                    f" (version {section.version}) from before it was registered;"
                    " restore that snapshot again, which migrates the section into it"
                    " (or unregister it), before taking a snapshot"
                )
        return list(carried.sections.values())

    def unregister(self, component: str, *, instance: str = "default") -> None:
        """Remove a registered instance.

        Raises:
            UnknownComponentError: no such instance is registered (a ``KeyError``).
            ConfigurationError: ``component`` or ``instance`` is not a name (the
                object registered, say).
        """
        for option, name in (("component", component), ("instance", instance)):
            if not isinstance(name, str):
                raise ConfigurationError(
                    option,
                    f"must be a name (a str), not {type(name).__name__}: unregister takes"
                    " the component's name and its instance's, as register reported them",
                )
        key = (component, instance)
        self._members.remove(key)
        self._history.restored_from.pop(key, None)

    @property
    def components(self) -> tuple[Registered, ...]:
        """The registered instances, in registration order."""
        return tuple(self._entries.values())

    def versions(self) -> dict[str, int]:
        """The live schema version of each registered component."""
        return self._members.versions()

    def readable_versions(self, *, allow_lossy: AllowLossy = True) -> dict[str, list[int]]:
        """Per component, the versions this code can restore from, ascending.

        Args:
            allow_lossy: count versions that reach the live one only through steps
                declared lossy (of the components named, or all with True).
        """
        return self._members.readable_versions(allow_lossy=allow_lossy)

    # --- snapshot ----------------------------------------------------------------------

    @guard_caller_stack("snapshot")
    def snapshot(
        self,
        *,
        targets: Mapping[str, int] | None = None,
        allow_lossy: AllowLossy = False,
        meta: Mapping[str, str] | None = None,
    ) -> tuple[EncodedSnapshot, SnapshotReport]:
        """Export every registered component into snapshot bytes, followed by the
        sections the last restore carries (no component claims them), unchanged.

        Args:
            targets: per component, a schema version to write instead of the live one;
                the data goes through the registered steps, e.g. downgrades so that older
                code can restore it (a rollback).
            allow_lossy: let those steps include ones declared lossy (True, or of those named).
            meta: string annotations stored in the header.

        Raises:
            NoMigrationPathError, LossyMigrationError: a target cannot be reached.
            MigrationStepError: a step raised on a component's state.
            ExportError: a component's state holds a value with no plain form or one
                that would come back changed; nothing is written. The error names the
                component, version and path.
            ValidationError: data migrated for a target does not fit its schema.
            RegistrationError: a component registered after the last restore has a
                section that restore carries (see :meth:`_carried`).
            CallerStackError: called from a stack too near the recursion limit.
        """
        allow_lossy = self._members.check_lossy(allow_lossy)
        taken = self._snapshot(targets=targets, allow_lossy=allow_lossy, meta=meta)
        announce_lossy_exports(self.components, targets, allow_lossy, service=self.name)
        return taken

    def _snapshot(
        self,
        *,
        targets: Mapping[str, int] | None,
        allow_lossy: AllowLossy,
        meta: Mapping[str, str] | None,
        identity: DeltaBase | None = None,
        check: bool = False,
    ) -> tuple[EncodedSnapshot, SnapshotReport]:
        """:meth:`snapshot`, under an identity reserved before (pre-copy's round 0);
        with ``check``, plain states are validated deep, as a snapshot to be committed
        needs (see :meth:`commit`)."""
        started = time.perf_counter()
        carried = self._carried()
        exported = export_all(
            self.components, targets=targets, allow_lossy=allow_lossy, check=check
        )
        exported.carry(carried)
        encoding = self._encoding(meta)
        if identity is None:
            self._generation += 1
            encoding["generation"] = self._generation
        else:
            encoding.update(snapshot_id=identity.snapshot_id, generation=identity.generation)
        encoded = encode_whole(exported, encoding, targets=targets, allow_lossy=allow_lossy)
        report = exported.report(encoded.header, encoded.size, encoded.timings)
        logger.log(SUMMARIES.get(), "%s", report.summary())
        self._record_snapshot(report, time.perf_counter() - started)
        return encoded, report

    def precopy_source(
        self,
        *,
        targets: Mapping[str, int] | None = None,
        allow_lossy: AllowLossy = False,
        meta: Mapping[str, str] | None = None,
    ) -> PreCopySource:
        """The pieces of a pre-copy hand-over: a full snapshot, then deltas.

        See :class:`PreCopySource`: ``start()`` it in the serving process, send
        ``full()`` (written while serving, possibly by a forked child), then
        ``delta()`` after ``delta()`` while ``pending()`` is large, and the last delta
        with writers held. ``targets``, ``allow_lossy`` and ``meta`` are those of
        :meth:`snapshot`; deltas for a target older than the live version need record
        steps only (see ``docs/precopy.md``).
        """
        allow_lossy = self._members.check_lossy(allow_lossy)
        return self._precopy_source(targets=targets, allow_lossy=allow_lossy, meta=meta)

    def _precopy_source(
        self,
        *,
        targets: Mapping[str, int] | None = None,
        allow_lossy: AllowLossy = False,
        meta: Mapping[str, str] | None = None,
        check: bool = False,
        by: str = "a pre-copy hand-over",
    ) -> PreCopySource:
        """:meth:`precopy_source`; with ``check``, whose pieces are committed (a
        checkpoint chain), plain states are validated deep (see :meth:`commit`).
        ``by`` names the source's use when it catches a value changed in place."""

        def write_full(snapshot_id: str, generation: int) -> EncodedSnapshot:
            encoded, _ = self._snapshot(
                targets=targets,
                allow_lossy=allow_lossy,
                meta=meta,
                identity=DeltaBase(snapshot_id, generation),
                check=check,
            )
            return encoded

        def write_delta(
            sections: Sequence[SectionInput], snapshot_id: str, generation: int, base: DeltaBase
        ) -> EncodedSnapshot:
            encoding = self._encoding(meta)
            encoding.update(snapshot_id=snapshot_id, generation=generation, base=base)
            return encode_snapshot(sections, **encoding)

        return PreCopySource(
            list(self._entries.values()),
            targets=targets,
            allow_lossy=allow_lossy,
            reserve=self._reserve_generation,
            write_full=write_full,
            write_delta=write_delta,
            check=check,
            delta_taken=self._record_delta,
            forked_taken=partial(record_forked_snapshot, self.name),
            caught=self._in_place,
            by=by,
        )

    def _reserve_generation(self) -> int:
        self._generation += 1
        return self._generation

    def _encoding(self, meta: Mapping[str, str] | None) -> dict[str, Any]:
        """How this service's next snapshot is encoded, whether whole or streamed."""
        return {
            # In an export's forked child the producer is still the serving process.
            "producer": replace(
                Producer.current(self.name, code_version=self.code_version), pid=serving_pid()
            ),
            "key": self._key,
            "generation": self._generation,
            "meta": dict(meta or {}),
            "level": self._level,
            # What this service's restores refuse is refused at snapshot time instead.
            "limits": self._limits,
        }

    def _record_snapshot(self, report: SnapshotReport, seconds: float) -> None:
        """Report a snapshot taken to the metrics and traces."""
        record_snapshot(self.name, self._generation, report, seconds)

    def _record_delta(self, encoded: EncodedSnapshot, seconds: float) -> None:
        """Report a delta taken as a snapshot taken (see :func:`record_delta`)."""
        record_delta(self.name, encoded, seconds)

    @guard_caller_stack("commit")
    def commit(
        self,
        store: Store,
        *,
        targets: Mapping[str, int] | None = None,
        allow_lossy: AllowLossy = False,
        meta: Mapping[str, str] | None = None,
    ) -> CommitReport:
        """Snapshot every component and commit the bytes atomically to ``store``.

        The snapshot is encoded while the store writes it, so only the chunks in flight
        are held, never the whole snapshot. The result can be passed to :meth:`restore`
        (it opens the committed bytes).

        Raises:
            StoreError: the store could not commit; its previous snapshot is intact.
            See :meth:`snapshot` for the rest.
        """
        allow_lossy = self._members.check_lossy(allow_lossy)
        carried = self._carried()
        # Deep: what is committed must restore (a plain state's records are validated).
        exported = export_all(
            self.components, targets=targets, allow_lossy=allow_lossy, check=True
        )
        exported.carry(carried)
        self._generation += 1
        committed = commit_streamed(
            self.name,
            store,
            exported,
            lambda: self._encoding(meta),
            generation=self._generation,
            targets=targets,
            allow_lossy=allow_lossy,
        )
        announce_lossy_exports(self.components, targets, allow_lossy, service=self.name)
        return committed

    def commit_snapshot(
        self, store: Store, encoded: EncodedSnapshot, report: SnapshotReport
    ) -> CommitReport:
        """Commit a snapshot that :meth:`snapshot` encoded, atomically, to ``store``.

        :meth:`commit` encodes while the store writes, so the whole snapshot is never in
        memory; this commits one encoded already. Calling :meth:`snapshot` and this
        apart lets a caller hold its writers for the snapshot only: the encoded bytes
        no longer depend on the live state, so the store's commit can run while the
        writers go on (the :class:`Checkpointer` does this), at the price of holding
        the encoded snapshot in memory meanwhile.

        Raises:
            StoreError: the store could not commit; its previous snapshot is intact.
        """
        return commit_encoded(self.name, store, encoded, report)

    # --- restore -----------------------------------------------------------------------

    @guard_caller_stack("restore")
    def restore(
        self,
        source: bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
        *,
        allow_lossy: AllowLossy = False,
        strict: bool | None = None,
        force: bool = False,
        allow_older: bool = False,
        allow_other_service: bool = False,
    ) -> RestoreReport:
        """Restore every registered component from a snapshot, all or nothing.

        Verify the whole snapshot, decode each section, migrate it to the version its
        component runs, validate it against that version's schema, and only then apply
        it to the live components. Any failure leaves every component exactly as it
        was. Restoring a snapshot again restores only the components that were not
        restored from it yet (registered since): when there are none it is a no-op
        (the report says ``skipped``), unless ``force`` is given.

        A checkpoint chain (an incremental :class:`Checkpointer`'s base and deltas,
        committed as one object) is restored whole, as :meth:`start_from` does: every
        piece verified and linked first, then each applied in order, all or nothing;
        the report is the last piece's.

        Args:
            source: snapshot bytes, what :meth:`snapshot` returns (an encoded
                snapshot, as are pre-copy's pieces), a store reference, or a
                :class:`CommitReport`.
            allow_lossy: allow declared-lossy steps: True, or the components named, as
                ``{"catalog"}`` (for data newer code wrote through a lossy downgrade, say).
            strict: override the service's policy for sections no component claims and
                components the snapshot lacks.
            force: restore every component, even those restored from this snapshot
                already.
            allow_older: restore a snapshot whose generation is lower than that of the
                last one this service restored. Refused by default: replaying an old
                (even authentic) snapshot would silently undo newer state.
            allow_other_service: restore a snapshot that a service of another name
                wrote. Refused by default: it holds some other service's state.

        Raises:
            SourceTypeError: ``source`` is none of those (a ``TypeError``); nothing
                was touched. ConfigurationError: ``allow_lossy`` is a str, say.
            RestoreError: with the phase, component and step that failed; the cause is
                chained (e.g. a SnapshotError for corrupt bytes). Refused snapshots (of
                another service, too old, or with a generation of ``GENERATION_LIMIT``
                or more) fail in ``verify``.
            CallerStackError: called from a stack too near the recursion limit; every
                component is as it was.
        """
        check_source(source)
        options = {
            "allow_lossy": self._members.check_lossy(allow_lossy),
            "strict": strict,
            "force": force,
            "allow_older": allow_older,
            "allow_other_service": allow_other_service,
        }
        return self._restore_stored(source, options)

    def _restore_piece(
        self,
        source: bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
        *,
        allow_lossy: AllowLossy = False,
        strict: bool | None = None,
        force: bool = False,
        allow_older: bool = False,
        allow_other_service: bool = False,
    ) -> RestoreReport:
        """:meth:`restore` of one snapshot or delta (a chain's piece), with the status,
        the metrics and the traces."""
        strict = self._strict if strict is None else strict

        def restore() -> RestoreReport:
            report = restore_source(
                source,
                service=self.name,
                key=self._key,
                limits=self._limits,
                entries=self._entries,
                history=self._history,
                allow_lossy=allow_lossy,
                strict=strict,
                force=force,
                allow_older=allow_older,
                allow_other_service=allow_other_service,
                progress=self._tracker.progress,
                retired=self._retired(),
            )
            if not report.skipped:
                # Later snapshots must sort after the one restored, across processes too.
                self._generation = max(self._generation, report.generation)
            return report

        return self._restores.piece(restore)

    @property
    def accepts_deltas(self) -> bool:
        """Whether deltas can be applied on top of the last full snapshot restored.

        True when every restored component keeps its record fields in
        ``TrackedDict`` attributes (the default path) or follows the records protocol,
        and its plan from the snapshot's version has no steps, or record steps only.
        False before any restore, and when a whole-data step was needed: a successor
        then asks for a full snapshot inside the pause (:attr:`why_no_deltas` says
        why).
        """
        return self._history.no_deltas is None

    @property
    def why_no_deltas(self) -> str | None:
        """Why :attr:`accepts_deltas` is false, or ``None`` when it is true."""
        return self._history.no_deltas

    # --- status ------------------------------------------------------------------------

    @property
    def status(self) -> RestoreStatus:
        """Where this service's state stands: ``starting``, ``restoring`` (with
        progress and an estimate of the time left), ``restored``, ``cold_start`` or
        ``failed`` (with the reason). Readable from any thread, at any time; its
        :meth:`~RestoreStatus.readiness` is what a readiness probe answers."""
        return self._tracker.status

    def start_cold(self, reason: str) -> None:
        """Declare that this service starts without restored state, for ``reason``
        (no snapshot exists, say): the status becomes ``cold_start``, which is ready."""
        self._go_cold(reason, logging.INFO)

    def _go_cold(self, reason: str, level: int) -> None:
        """:meth:`start_cold`, said at ``level``: WARNING when a restore failed and the
        state it held is not restored (the line may name the way out)."""
        self._tracker.cold_start(reason)
        logger.log(level, "service %s starts cold: %s", self.name, reason)

    @guard_caller_stack("start_from")
    def start_from(
        self,
        source: (
            bytes
            | bytearray
            | memoryview
            | EncodedSnapshot
            | SnapshotRef
            | CommitReport
            | Store
            | None
        ),
        **options: AllowLossy | None,
    ) -> RestoreReport | None:
        """Restore at start-up, and apply the failure policy if the restore fails.

        With ``source=None`` (nothing to restore) the service starts cold. If the
        restore fails, every component is as it was (fresh); then the service starts
        cold, with the error as the reason, when every registered component's policy
        is ``"serve_cold"`` (see ``on_restore_failure``), and otherwise the error is
        raised and the status is ``failed``.

        Given a store, restore its latest snapshot (a checkpoint, say). A store with
        no snapshot yet means a cold start. When the latest snapshot cannot be read or
        fails verification (damaged, refused) and the store keeps the one before it
        (``open_previous()``: every store of :mod:`statemigrate.stores` does), that
        one is restored instead, with a warning in the log; if it fails too, the
        policy applies to the first error.

        Args:
            source: as for :meth:`restore`, a store, or ``None``.
            options: keyword options of :meth:`restore`.

        Returns:
            The restore's report, or ``None`` when the service starts cold.

        Raises:
            RestoreError: the restore failed and a component's policy is ``"refuse"``.
            CallerStackError: called from a stack too near the recursion limit; every
                component is as it was.
        """
        options["allow_lossy"] = self._members.check_lossy(options.get("allow_lossy", False))
        if isinstance(source, Store):
            # A service restoring from a store commits its checkpoints there: its
            # commits' series exist from now, so the first failure is an increase.
            declare_store(self.name, store_kind(source))
        with self._chains.restoring(source):
            report = restore_at_start(
                source,
                options,
                restore_stored=self._restore_stored,
                start_cold=self.start_cold,
                start_cold_failed=partial(self._go_cold, level=logging.WARNING),
                tracker=self._tracker,
                refuse=self._members.refuse(self._on_restore_failure),
                latest=self._chains.expect,
                entries=self.components,
            )
        store_unrestored(self.name, source)  # what the start found kept, if it looked
        return report

    def _restore_stored(
        self,
        source: bytes | bytearray | memoryview | EncodedSnapshot | SnapshotRef | CommitReport,
        options: Mapping[str, AllowLossy | None],
    ) -> RestoreReport:
        """Restore a snapshot, or a chain that incremental checkpoints committed: its
        base, then each delta in order (see :func:`restore_stored`)."""
        carried = self._history.carried
        with self._one_restore():
            report = restore_stored(
                source,
                options,
                restore=self._restore_piece,
                entries=self.components,
                key=self._key,
                limits=self._limits,
                refused=self._restores.refused,
                history=self._history,
            )
        if self._history.carried.since != carried.since:
            # Once per restore, a chain's pieces included, and only once it succeeded.
            announce_carried(self.name, self._history.carried)
        record_carried(self.name, len(self._history.carried.sections))
        return report

    def _retired(self) -> frozenset[str]:
        """The components retired in the service's registry or in the registry of a
        component registered: a restore drops their sections instead of carrying them."""
        registries = {id(entry.registry): entry.registry for entry in self._entries.values()}
        service_registry = self._members.registry
        registries.setdefault(id(service_registry), service_registry)
        return retired_in(registries.values())

    @contextmanager
    def _one_restore(self) -> Iterator[None]:
        """Report the restores made inside as one to the metrics (see
        :meth:`RestoreObserver.one`): a take-over's pieces, say."""
        with self._restores.one():
            yield


def _chain_source_of(service: Service) -> Callable[[], PreCopySource]:
    """A maker of ``service``'s checkpoint-chain sources that does not keep it alive
    (see :func:`_generation_of`)."""
    service_ref = weakref.ref(service)

    def source() -> PreCopySource:
        service = service_ref()
        if service is None:
            raise ReferenceError("the service is gone")
        return service._precopy_source(check=True, by="a checkpoint")

    return source


def _piece_applied_of(service: Service) -> Callable[[RestoreReport], None]:
    """What ``service``'s restores call as each snapshot or delta is applied (counted,
    and told to the chain continuation), without keeping it alive (see
    :func:`_generation_of`). Must not raise (see ``RestoreObserver.applied``)."""
    service_ref = weakref.ref(service)

    def applied(report: RestoreReport) -> None:
        service = service_ref()
        if service is not None:
            service._restores_applied += 1
            service._chains.applied(report)

    return applied


def _generation_of(service: Service) -> Callable[[], int]:
    """A reader of ``service``'s generation that does not keep it alive.

    A reference back to the service would make a cycle, and a Service in a cycle is
    freed only by a full collection, its components' restored state with it: after a
    restore moved everything to the oldest generation, that can be long after its last
    reference went.
    """
    service_ref = weakref.ref(service)

    def generation() -> int:
        service = service_ref()
        return 0 if service is None else service._generation

    return generation
