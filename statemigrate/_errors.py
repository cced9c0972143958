"""The exception tree of statemigrate.

Every error the library raises on purpose derives from one root::

    StateMigrateError
    ├── SnapshotError (ValueError)        bytes that are not a sound snapshot; has .kind
    ├── StoreError (OSError-like info)    a store could not commit or open a snapshot
    │   ├── StoreConflictError            another writer committed first; nothing of ours kept
    │   └── StoreSharedError              another process commits to the same place; refused
    ├── RegistrationError                 a schema, migration or component registered twice
    │                                     or inconsistently
    ├── ConfigurationError (ValueError)   an option or argument the library cannot use
    │   └── SourceTypeError (TypeError)   a restore or open_snapshot was given something
    │                                     that is no snapshot
    ├── UnknownComponentError (KeyError)  a component or version nobody registered
    ├── NoMigrationPathError              no chain of steps between two versions
    ├── LossyMigrationError               the only path loses data and loss was not allowed
    ├── MigrationStepError (ValueError)   a migration step raised on the data it was given,
    │                                     or returned data that is not plain
    ├── ValidationError (ValueError)      decoded or migrated data does not fit its schema
    │   └── ExportError                   a live state cannot be written so that it comes
    │                                     back the same (no plain form, or it would change)
    ├── RestoreError                      a restore failed; every component was rolled back
    ├── CheckpointError                   a checkpoint's export in a forked child failed;
    │                                     nothing was committed
    ├── CallerStackError (RecursionError) snapshot() or commit() called from a stack too
    │                                     near Python's recursion limit to finish
    ├── HandoffError                      a hot-restart handoff failed; the old process serves
    │   └── SuccessorFailedError          the successor reported FAILED, exited or hung up
    ├── TrialError                        a trial generation's record is unusable, or the
    │                                     act asked of it (promote, revert, start) is refused
    └── MigrationCheckError (AssertionError)  property checks of migrations found
                                          counterexamples (statemigrate.testing)

Errors keep their inputs as attributes and build their message from them, so callers
can branch on facts instead of parsing text. Foreign exceptions are chained with
``raise ... from exc``.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

__all__ = [
    "CallerStackError",
    "ChangeTrackingError",
    "CheckpointError",
    "ConfigurationError",
    "ExportError",
    "HandoffError",
    "LossyMigrationError",
    "MigrationCheckError",
    "MigrationStepError",
    "NoMigrationPathError",
    "RegistrationError",
    "RestoreError",
    "SnapshotError",
    "SnapshotErrorKind",
    "SourceTypeError",
    "StateMigrateError",
    "StoreConflictError",
    "StoreError",
    "StoreSharedError",
    "SuccessorFailedError",
    "TrialError",
    "UnknownComponentError",
    "ValidationError",
]


class StateMigrateError(Exception):
    """Root of every error statemigrate raises on purpose."""


SnapshotErrorKind = Literal[
    "not_snapshot",  # the bytes do not start with the snapshot magic
    "truncated",  # fewer bytes than the snapshot declares
    "trailing_data",  # more bytes than the snapshot declares
    "corrupt",  # a checksum or a structural check failed
    "auth",  # the MAC is missing, unexpected or wrong
    "too_large",  # a declared or decompressed size exceeds a limit
    "too_deep",  # nesting deeper than the decoder allows
    "unsupported_version",  # a container format version or flag this code cannot read
    "invalid_header",  # the header is well-formed bytes but not a valid header
    "invalid_data",  # a section's payload is not plain msgpack data we accept
]


class SnapshotError(StateMigrateError, ValueError):
    """The bytes are not a sound snapshot; nothing was touched.

    Attributes:
        kind: what is wrong, one of :data:`SnapshotErrorKind`.
        detail: a short human explanation.
        offset: byte offset in the snapshot where the problem was found, if known.
        section: ``component/instance`` of the section concerned, if known.
        chunk: index of the chunk within that section, if known.
        expected: the expected value (e.g. a checksum or a length), if any.
        actual: the value found instead, if any.
    """

    def __init__(
        self,
        kind: SnapshotErrorKind,
        detail: str,
        *,
        offset: int | None = None,
        section: str | None = None,
        chunk: int | None = None,
        expected: object = None,
        actual: object = None,
    ) -> None:
        self.kind: SnapshotErrorKind = kind
        self.detail = detail
        self.offset = offset
        self.section = section
        self.chunk = chunk
        self.expected = expected
        self.actual = actual
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.kind}: {self.detail}"
        if self.kind == "truncated" and isinstance(self.actual, int):
            # Lengths read better as what is declared against what is there.
            if isinstance(self.expected, int):
                text += f": declares {self.expected} bytes, has {self.actual}"
            elif self.expected is None:
                text += f": has {self.actual} bytes"
            else:
                text += f": expected {_show(self.expected)}, got {self.actual}"
        elif self.expected is not None or self.actual is not None:
            text += f": expected {_show(self.expected)}, got {_show(self.actual)}"
        where = []
        if self.section is not None:
            where.append(f"section {self.section!r}")
        if self.chunk is not None:
            where.append(f"chunk {self.chunk}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if where:
            text += " (at " + " ".join(where) + ")"
        return text


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none: a
    dependency's error made fit for a one-line report."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe_exit(status: int | None) -> str:
    """A process's end for a log line: ``status`` is its exit status, negative for the
    signal that killed it, ``None`` when it could not be read."""
    if status is None:
        return "exit status unknown"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:  # a number the signal module has no name for
            return f"killed by signal {-status}"
    return f"exit status {status}"


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


class StoreError(StateMigrateError):
    """A store could not commit or open a snapshot.

    Attributes:
        op: the operation that failed (``"open"``, ``"write"``, ``"fsync"``, ...).
        target: the path, name or descriptor concerned.
        detail: what went wrong.
        errno: the OS error number, when the cause was an ``OSError``.
        previous_too: whether the failure is of what names the latest snapshot and the
            one before it alike (an object store's pointer, or the server it is on),
            so that the one before it cannot be read either: a start does not wait
            for the same read twice.
    """

    def __init__(
        self,
        op: str,
        target: str,
        detail: str,
        *,
        errno: int | None = None,
        previous_too: bool = False,
    ) -> None:
        self.op = op
        self.target = target
        self.detail = detail
        self.errno = errno
        self.previous_too = previous_too
        super().__init__(f"{op} {target}: {detail}")


class StoreConflictError(StoreError):
    """Another writer committed to the store first; this commit changed nothing.

    Raised by stores that several writers may share (the object store), when the
    pointer to the latest snapshot moved between reading it and replacing it. The
    other writer's snapshot is committed and intact; retry on top of it, or stop.

    Attributes:
        generation: the generation this commit tried to create.
        winner: the generation the store's pointer names now, when known.
    """

    def __init__(self, target: str, *, generation: int, winner: int | None = None) -> None:
        self.generation = generation
        self.winner = winner
        now = f"generation {winner}" if winner is not None else "a newer generation"
        super().__init__(
            "commit",
            target,
            f"conflict: another writer committed first (the pointer names {now});"
            f" generation {generation} of this commit was not kept",
        )


class StoreSharedError(StoreError):
    """The store's latest snapshot was committed by another process since this one
    last committed there: two services commit to one place. This commit was refused
    and left nothing behind; the other's snapshot is current and intact.

    Committing anyway would replace the other service's snapshot, and a restart would
    restore whichever committed last, losing the other's acknowledged writes without a
    word. Refused, the loss is this process's checkpoints only, and every one of them
    says so (and counts as a conflict in ``statemigrate_commits_total``). Give each
    service its own directory or prefix; a restarted process, which has committed
    nothing there yet, commits over what it restored as before.

    A process that has committed nothing there yet is refused too when the latest
    snapshot is not the one its start read (or there was none then): another
    process committed since, and going over it would lose that process's writes, which
    this one never restored. And it is refused while the process that committed the
    latest snapshot, which its start read, still runs on this host: it is a second
    copy of that service, and its commits would take the place from the running one.

    Once the other process has stopped committing there (the old pod of a rollout that
    overlapped, which exited), a claim makes this process the writer:
    ``Checkpointer.claim()``, or the store's ``claim()``; its next commit goes over
    that process's snapshot. A checkpointer claims the store by itself once its
    commits have been refused for ``claim_after`` seconds while the latest snapshot
    there stayed the same.

    Attributes:
        place: where the store keeps its snapshots (a directory, a URL).
        since: ``"commit"``: another process committed since this one's last commit;
            ``"start"``: since this one's start read the store, before it committed;
            ``"claim"``: since this one claimed the store, before it committed;
            ``"running"``: this one's start read the store, and the process that
            committed the latest snapshot there still runs on this host.
        writer_pid: the pid of the process that committed the latest snapshot, as
            its header says, when known.
        writer_host: the host it ran on, when known.
        writer_running: whether it still runs (``None``: not known, as for a process
            of another host).
        latest: what names the latest snapshot the refused commit found there (an
            object's name, a file's inode and mtime), for comparing refusals: equal
            while nobody commits there; ``None`` when not known.
    """

    def __init__(
        self,
        place: str,
        *,
        since: Literal["commit", "start", "claim", "running"] = "commit",
        writer_pid: int | None = None,
        writer_host: str | None = None,
        writer_running: bool | None = None,
        latest: object = None,
    ) -> None:
        self.place = place
        self.since = since
        self.writer_pid = writer_pid
        self.writer_host = writer_host
        self.writer_running = writer_running
        self.latest = latest
        who = (
            "another process"
            if writer_pid is None
            else f"another process (pid {writer_pid} on {writer_host})"
        )
        if since == "running":
            detail = (
                f"refused: the latest snapshot there, which this process restored, was"
                f" committed by {who}, which still runs: two services commit to the same"
                " place, and committing would take it from the running one; stop this"
                " copy, or give each service its own directory or prefix (this commit"
                " goes through once that process has exited)"
            )
        else:
            # A process that has not committed there yet is refused when the latest
            # snapshot is not the one its start found (or found none): it would
            # replace a state it never restored.
            when = {
                "commit": "this one's last commit",
                "claim": "this one claimed the store, so it is not the snapshot this one"
                " claimed",
                "start": "this one read the store at its start, so it is not the state"
                " this one restored (or started cold without)",
            }[since]
            detail = (
                f"refused: the latest snapshot there was committed by {who} since"
                f" {when}; two services commit to the same place, and"
                " committing would replace the other's state; give each service its own"
                " directory or prefix, or, once the other has stopped committing there,"
                " make this process the writer with claim() (Checkpointer.claim() or the"
                " store's): its next commit goes over that snapshot"
            )
            if writer_running is not None and writer_pid is not None:
                detail += (
                    f" (process {writer_pid} still runs)"
                    if writer_running
                    else f" (process {writer_pid} has exited since; its snapshot stays"
                    " the latest there, and this process's commits stay refused until it"
                    " claims the store)"
                )
        super().__init__("commit", place, detail)


class RegistrationError(StateMigrateError):
    """A schema, migration step or component was registered twice or inconsistently."""


class ConfigurationError(StateMigrateError, ValueError):
    """An option or argument has a value the library cannot use.

    Attributes:
        option: the option or argument concerned, e.g. ``"name"``.
        detail: what is wrong with it.
    """

    def __init__(self, option: str, detail: str) -> None:
        self.option = option
        self.detail = detail
        super().__init__(f"{option}: {detail}")


class SourceTypeError(ConfigurationError, TypeError):
    """A restore, or ``open_snapshot``, was given an object it cannot read a snapshot
    from.

    Attributes:
        value: the object given.
        accepted: what the call takes instead, in words.
    """

    def __init__(
        self,
        value: object,
        accepted: str,
        *,
        argument: str = "source",
        given: str | None = None,
    ) -> None:
        """``argument`` names the parameter ``value`` was given as; ``given`` says what
        it is, when its type alone does not tell (a memoryview that is not contiguous)."""
        self.value = value
        self.accepted = accepted
        shown = type(value).__qualname__ if given is None else given
        super().__init__(argument, f"a snapshot source is {accepted}, not {shown}")


class UnknownComponentError(StateMigrateError, KeyError):
    """A component, or a version of one, that nobody registered.

    Attributes:
        component: the component name asked for.
        version: the version asked for, or ``None`` when the whole component is unknown.
        known: the names (or versions) that are registered.
    """

    def __init__(
        self, component: str, version: int | None = None, *, known: Iterable[object] = ()
    ) -> None:
        self.component = component
        self.version = version
        self.known = sorted(known, key=str)
        what = f"component {component!r}"
        if version is not None:
            what += f" version {version}"
        known_text = ", ".join(str(k) for k in self.known) or "none"
        super().__init__(f"unknown {what}; registered: {known_text}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class NoMigrationPathError(StateMigrateError):
    """No chain of registered steps leads from ``source`` to ``target``.

    Attributes:
        component: the component concerned.
        source: the version the data is in.
        target: the version it should be brought to.
        edges: the registered steps as ``(from, to)`` pairs.
        versions: the versions registered, by a schema or a step, when the caller
            knows them (``None`` otherwise).
        unknown: those of ``target`` and ``source`` that are not among ``versions``,
            target first; the message then names them rather than the steps.
    """

    def __init__(
        self,
        component: str,
        source: int,
        target: int,
        edges: Iterable[tuple[int, int]],
        *,
        versions: Iterable[int] | None = None,
    ) -> None:
        self.component = component
        self.source = source
        self.target = target
        self.edges = sorted(edges)
        self.versions = None if versions is None else sorted(set(versions))
        known = self.versions
        self.unknown = [] if known is None else [v for v in (target, source) if v not in known]
        where = f"no migration path for {component!r} from version {source} to {target}"
        if self.unknown:
            named = " and ".join(str(v) for v in dict.fromkeys(self.unknown))
            which = "version {} is" if len(set(self.unknown)) == 1 else "versions {} are"
            shown = ", ".join(str(v) for v in known or ()) or "none"
            unknown = which.format(named)
            super().__init__(f"{where}: {unknown} not registered; registered versions: {shown}")
            return
        steps = ", ".join(f"{a}->{b}" for a, b in self.edges) or "none"
        super().__init__(f"{where}; registered steps: {steps}")


class LossyMigrationError(StateMigrateError):
    """Every path to the target runs through a step declared lossy, and loss is not allowed.

    Attributes:
        component: the component concerned.
        source: the version the data is in.
        target: the version asked for.
        steps: the lossy steps on the shortest path, as printable strings.
        allowed: the components whose loss was allowed already (an ``allow_lossy`` of
            names): the cure names them too, so that following it takes nothing away.
    """

    def __init__(
        self,
        component: str,
        source: int,
        target: int,
        steps: Iterable[str],
        *,
        allowed: Iterable[str] = (),
    ) -> None:
        self.component = component
        self.source = source
        self.target = target
        self.steps = list(steps)
        self.allowed = frozenset(allowed)
        names = ", ".join(repr(name) for name in sorted({component, *self.allowed}))
        super().__init__(
            f"migrating {component!r} from version {source} to {target} loses data in"
            f" {', '.join(self.steps)}; pass allow_lossy={{{names}}} (or True, for every"
            " component) to accept that"
        )


class MigrationStepError(StateMigrateError, ValueError):
    """A migration step raised an exception on the data it was given, or returned
    data that is not plain.

    Every caller that runs steps (a restore, a snapshot for older targets, the
    ``migrate`` command, the property checks) reports a failing step with this error;
    the step's own exception is chained. On data read from a snapshot it usually means
    the data does not fit the version it claims.

    Attributes:
        component: the component concerned.
        source: the version the step reads.
        target: the version the step writes.
        step: the step in its printed form, e.g. ``sessions 1 -> 2 (add_ttl)``.
        detail: the step's exception, as ``TypeName: message``, or what is not plain
            data in its output.
        instance: the component instance, when known.
        path: where the step's output holds a value that is not plain data (a
            ``datetime``, a ``set``, a tuple, ...), e.g. ``['entries']['a']``, or,
            when a record step raised, the record it raised on; ``None`` when a
            whole-data step raised.
    """

    def __init__(
        self,
        component: str,
        source: int,
        target: int,
        step: str,
        detail: str,
        *,
        instance: str | None = None,
        path: str | None = None,
    ) -> None:
        self.component = component
        self.source = source
        self.target = target
        self.step = step
        self.detail = detail
        self.instance = instance
        self.path = path
        where = component if instance is None else f"{component}/{instance}"
        super().__init__(f"migration step {step} failed: {detail} (in {where})")


class ValidationError(StateMigrateError, ValueError):
    """Data does not fit the schema it claims (or was migrated) to follow.

    Attributes:
        component: the component concerned.
        version: the schema version validated against.
        instance: the component instance, when known.
        errors: pydantic's error list (``ValidationError.errors()``), possibly empty.
    """

    def __init__(
        self,
        component: str,
        version: int,
        detail: str,
        *,
        instance: str | None = None,
        errors: list[dict[str, object]] | None = None,
    ) -> None:
        self.component = component
        self.version = version
        self.instance = instance
        self.detail = detail
        self.errors = errors or []
        where = component if instance is None else f"{component}/{instance}"
        super().__init__(f"{where} does not fit schema version {version}: {detail}")


class ExportError(ValidationError):
    """A live state cannot go into a snapshot so that a restore gives it back unchanged.

    Raised by ``snapshot()``/``commit()`` before anything is written: a value has no
    plain form (an object under ``Any``, a string with a lone surrogate), or written and
    validated back it would come back different (a validator that is not idempotent, a
    subclass where its base is declared, a private attribute).

    Attributes:
        path: where the value sits in the state, e.g. ``entries['a'].when``.
        by_validation: the value has a plain form, but validated back it is refused or
            comes back different. For a state that validation made, that is the
            schema's doing (a validator that is not idempotent, a union resolved to
            another member), not a kind of value snapshots cannot hold.
    """

    def __init__(
        self,
        component: str,
        version: int,
        path: str,
        detail: str,
        *,
        instance: str | None = None,
        by_validation: bool = False,
    ) -> None:
        super().__init__(component, version, detail, instance=instance)
        self.path = path
        self.by_validation = by_validation
        where = component if instance is None else f"{component}/{instance}"
        self.args = (f"{where} version {version} cannot be snapshotted: at {path}: {detail}",)

    def __str__(self) -> str:
        return str(self.args[0])


class CallerStackError(StateMigrateError, RecursionError):
    """``snapshot()``, ``commit()``, ``restore()`` or ``start_from()`` was called from a
    stack so near Python's recursion limit that it ran out before it finished; nothing
    was written or committed, and a restore left every component as it was.

    How deep the state nests does not count (its walks go on on a fresh stack): the
    frames the caller had used already do. A ``RecursionError``, so that code which
    catches one still does.

    Attributes:
        act: ``"snapshot"``, ``"commit"``, ``"restore"`` or ``"start_from"``.
        depth: the frames on the caller's stack when it called ``act``.
        limit: Python's recursion limit (``sys.getrecursionlimit()``).
    """

    def __init__(self, act: str, *, depth: int, limit: int) -> None:
        self.act = act
        self.depth = depth
        self.limit = limit
        super().__init__(
            f"the caller's stack is near Python's recursion limit: {act} ran out of"
            " stack (not the state's depth); call it from a shallower stack (a thread"
            " of its own) or raise the limit (sys.setrecursionlimit):"
            f" {act} at {depth} of {limit} frames"
        )


class RestoreError(StateMigrateError):
    """A restore failed; every component is as it was before the attempt.

    The one exception: a component whose own import also failed while it was being
    given its earlier state back, or that afterwards exported something else than
    before the attempt, is named in ``rollback_failed`` (and the message says so); its
    state is whatever that import left. A component whose state before the attempt
    had no plain export to compare with is given it back all the same, but whether
    that worked cannot be told: it is named in ``rollback_unchecked``, and so is it in
    the message.

    Attributes:
        phase: the phase that failed (``read``, ``verify``, ``decode``, ``migrate``,
            ``validate``, ``apply``).
        component: ``component/instance`` that failed, when one did.
        step: the migration step that failed, when one did (printed form), or, in
            phase ``validate``, the last step, whose output did not fit.
        detail: what went wrong.
        rollback_failed: ``component/instance`` of every component whose rollback
            failed; empty when every component was rolled back.
        rollback_unchecked: ``component/instance`` of every component given its
            earlier state back without a check (it had no plain export).
        restoring: what was being restored, when the message names it: a checkpoint
            chain, as ``statemigrate inspect`` names it (``checkpoint chain <newest
            piece's id> gen N (base <base's id> gen M, P pieces)``).
        piece: the index of the chain's piece that failed, base first, when one did.
        way_out: what to do about it, when the caller knows (a start-up refusing a
            newer release's snapshot says which release reads it, or how to rewrite
            it); it ends the message.
    """

    def __init__(
        self,
        phase: str,
        detail: str,
        *,
        component: str | None = None,
        step: str | None = None,
        rollback_failed: Iterable[str] = (),
        rollback_unchecked: Iterable[str] = (),
        restoring: str | None = None,
        piece: int | None = None,
        way_out: str | None = None,
    ) -> None:
        self.phase = phase
        self.component = component
        self.step = step
        self.detail = detail
        self.rollback_failed = tuple(rollback_failed)
        self.rollback_unchecked = tuple(rollback_unchecked)
        self.restoring = restoring
        self.piece = piece
        self.way_out = way_out
        what = f"restore of {restoring} failed" if restoring else "restore failed"
        if piece is not None:
            what += f" at piece {piece}"
        where = f" in {component}" if component else ""
        at = f" at step {step}" if step else ""
        if self.rollback_failed:
            outcome = f"rollback failed for {', '.join(self.rollback_failed)}"
        elif self.rollback_unchecked:
            outcome = "every component is as it was, as far as can be checked"
        else:
            outcome = "every component is as it was"
        if self.rollback_unchecked:
            outcome += (
                f"; {', '.join(self.rollback_unchecked)} rolled back unchecked (no plain"
                " export to compare with)"
            )
        after = f"; {way_out}" if way_out else ""
        super().__init__(f"{what} during {phase}{where}{at}: {detail}; {outcome}{after}")


class CheckpointError(StateMigrateError):
    """A checkpoint's snapshot, exported in a forked child, failed: the child failed,
    was killed, ran past its deadline, or could not be started. Nothing was committed;
    the service serves on and the next checkpoint tries again.

    Attributes:
        service: the name of the service checkpointed.
        detail: why.
    """

    def __init__(self, service: str, detail: str) -> None:
        self.service = service
        self.detail = detail
        super().__init__(f"checkpoint of {service} failed: {detail}")


class AttemptReport(Protocol):
    """What a :class:`HandoffError` says of the attempt it ended: the read-only shape of
    :class:`~statemigrate.handoff.HandoffReport`, named here without importing the
    handoff layer (errors sit below every other layer)."""

    @property
    def outcome(self) -> str: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def successor_pid(self) -> int | None: ...
    @property
    def successor_exit(self) -> int | None: ...
    @property
    def readable(self) -> Mapping[str, tuple[int, ...]]: ...
    @property
    def snapshot_size(self) -> int: ...
    @property
    def timings(self) -> Mapping[str, float]: ...
    @property
    def problems(self) -> tuple[str, ...]: ...
    @property
    def pause_seconds(self) -> float: ...

    def summary(self) -> str: ...

    def to_plain(self) -> dict[str, Any]: ...


class HandoffError(StateMigrateError):
    """A hot-restart handoff failed; the old process keeps serving.

    Attributes:
        stage: where the handoff stopped (``spawn``, ``handshake``, ``ready``, ...).
        detail: why.
        report: the :class:`~statemigrate.handoff.HandoffReport` of the failed attempt,
            when the failure ended an attempt that had started (``None`` otherwise).
    """

    def __init__(self, stage: str, detail: str, *, report: AttemptReport | None = None) -> None:
        self.stage = stage
        self.detail = detail
        self.report = report
        super().__init__(f"handoff failed at {stage}: {detail}")


class SuccessorFailedError(HandoffError):
    """The successor gave up: it reported FAILED, or exited or hung up before READY.

    Attributes:
        reason: the reason the successor sent with FAILED; ``None`` when it exited or
            hung up without one.
        exit_status: its exit status (negative: killed by that signal) when the old
            process started it and reaped it, else ``None``.
    """

    def __init__(
        self,
        stage: str,
        detail: str,
        *,
        reason: str | None = None,
        exit_status: int | None = None,
        report: AttemptReport | None = None,
    ) -> None:
        self.reason = reason
        self.exit_status = exit_status
        super().__init__(stage, detail, report=report)


class TrialError(StateMigrateError):
    """A trial generation's record cannot be used, or what was asked of it is refused.

    Attributes:
        directory: the trial directory concerned.
        detail: what is wrong, or why the act is refused.
    """

    def __init__(self, directory: str, detail: str) -> None:
        self.directory = directory
        self.detail = detail
        super().__init__(f"trial {directory}: {detail}")


class ChangeTrackingError(StateMigrateError, AssertionError):
    """A component changed without its change log knowing: a delta would lose it.

    Raised by :func:`statemigrate.testing.check_change_tracking`; an ``AssertionError``
    so that test runners report it as a failed check.

    Attributes:
        component: which component: ``component/instance`` from the testing kit's
            check; the component's name from a running service's in-place watch,
            which does not know the instance.
        path: where the state the delta restores differs from the live one.
        detail: the two values there.
    """

    def __init__(self, component: str, path: str, detail: str) -> None:
        self.component = component
        self.path = path
        self.detail = detail
        super().__init__(
            f"{component}: a delta misses a change at {path} ({detail}); a value changed"
            " in place is not logged: write its key again (d[k] = v)"
        )


class MigrationCheckError(StateMigrateError, AssertionError):
    """Property checks of migrations found counterexamples.

    Raised by :func:`statemigrate.testing.check_migrations`; an ``AssertionError`` so
    that test runners report it as a failed check, not as a crash.

    Attributes:
        failures: the failed checks (``statemigrate.testing.CheckFailure``), each with
            its shrunk counterexample and the step or path that broke.
    """

    def __init__(self, failures: Sequence[object]) -> None:
        self.failures = list(failures)
        count = len(self.failures)
        shown = "\n\n".join(str(failure) for failure in self.failures)
        super().__init__(f"{count} migration check{'s' if count != 1 else ''} failed:\n\n{shown}")
