"""Handing a :class:`~statemigrate.Service` over to a successor, and taking one over.

The handoff layer moves opaque bytes; this module fills them with a service's
snapshot and settles, before any state moves, which schema version each component
travels in. The successor announces in HELLO the versions it can read; the old
process picks, per component, its live version if the successor reads it, or else
the highest version the successor reads that the registered steps reach. When no
such version exists the handoff is aborted before the writers are paused, with an
error that names the component and both sides' versions.

What a process declares it can read decides who migrates. By default a successor
declares only the versions it can restore *without losing data*
(``service.readable_versions(allow_lossy=False)``): its own version, older ones it
upgrades from, and newer ones only through loss-free steps. So when a newer release
hands state back to an older one (a rollback), the older one declares its own
version only, and the newer one, which knows the newer schema best, exports through
the downgrade steps. Those steps usually drop fields, so the exporting side must say
``allow_lossy=True`` explicitly; without it the rollback is refused with the lossy
steps named, and the old process goes on serving.

Old process::

    report = hand_over(service, Spawn([sys.executable, "-m", "myservice"]),
                       listeners={"http": sock}, control=server)

Successor::

    inheritance = receive_handoff(expect={"http"})
    if inheritance is not None:
        report = take_over(service, inheritance)   # HELLO, restore, READY, COMMIT

Both have an asyncio flavour, :func:`hand_over_async` and :func:`take_over_async`,
which run the same steps on the event loop. The snapshot is encoded (old process)
and restored (successor) inline, on the loop: that work is CPU-bound, and the
writers are paused meanwhile anyway.
"""

from __future__ import annotations

import gc
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from statemigrate._errors import (
    ConfigurationError,
    HandoffError,
    LossyMigrationError,
    NoMigrationPathError,
    RestoreError,
    StateMigrateError,
)
from statemigrate._model._allowlossy import AllowLossy, check_allow_lossy, names_shown
from statemigrate._observe._tracing import SpanHandle, start_span, under
from statemigrate._runtime._latewrites import LateWrites
from statemigrate._runtime._lossyexport import lossy_announced, lossy_exports
from statemigrate._runtime._report import SnapshotReport
from statemigrate._runtime._service import CheckpointGate, Service, choose_versions
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE
from statemigrate.handoff._control import AsyncServerControl, ServerControl
from statemigrate.handoff._drive import (
    CallHook,
    Settle,
    Steps,
    WaitReadable,
    run_async,
    run_blocking,
)
from statemigrate.handoff._fork import freeze_heap, thaw_heap
from statemigrate.handoff._options import HandoffTimeouts, Spawn
from statemigrate.handoff._protocol import Applied, Piece
from statemigrate.handoff._receive import Inheritance
from statemigrate.handoff._report import HandoffReport, Round, TakeOverReport
from statemigrate.handoff._rounds import Payload, Pieces, PreCopyMode, Rounds
from statemigrate.handoff._send import DEFAULT_TIMEOUTS, Prepare, handoff_steps
from statemigrate.handoff._sendexchange import Prepared

if TYPE_CHECKING:
    from statemigrate._runtime._precopy import PreCopySource

__all__ = [
    "PreCopy",
    "choose_targets",
    "hand_over",
    "hand_over_async",
    "take_over",
    "take_over_async",
]

logger = logging.getLogger("statemigrate.handoff")

#: How the old process runs pre-copy rounds: round 0 in a forked child (``"fork"``),
#: in this process (``"inline"``), or not at all (``False``: the whole snapshot in
#: the pause, as a successor without pre-copy gets it).
PreCopy = Literal["fork", "inline", False]


def _reachable(
    service: Service, *, allow_lossy: AllowLossy
) -> tuple[dict[str, list[int]], set[str]]:
    """Versions each live component can be exported to, and the components that could
    reach more if loss were allowed (to say so in the error)."""
    reachable: dict[str, list[int]] = {}
    lossy_only: set[str] = set()
    for entry in service.components:
        versions = []
        for version in entry.registry.versions(entry.component):
            try:
                entry.registry.plan(
                    entry.component, entry.spec.version, version, allow_lossy=allow_lossy
                )
            except NoMigrationPathError:
                continue
            except LossyMigrationError:
                lossy_only.add(entry.component)
                continue
            versions.append(version)
        reachable[entry.component] = versions
    return reachable, lossy_only


def choose_targets(
    service: Service, readable: Mapping[str, Sequence[int]], *, allow_lossy: AllowLossy = False
) -> dict[str, int]:
    """Pick the version each component of ``service`` is exported in for a reader.

    The live version when the reader reads it, else the highest version the reader
    reads that the registered steps reach from the live one (loss-free steps only,
    unless ``allow_lossy``).

    Args:
        service: the exporting (old) process's service.
        readable: what the successor said it reads, per component.
        allow_lossy: allow reaching a version through lossy steps (True, or of those named).

    Returns:
        ``{component: version}`` for every registered component.

    Raises:
        HandoffError: stage ``export``, naming every component for which no common
            version exists, with both sides' versions (and ``allow_lossy=True`` as the
            cure when only lossy steps lead to a version the successor reads).
    """
    reachable, lossy_only = _reachable(service, allow_lossy=allow_lossy)
    try:
        return choose_versions(service.versions(), readable, reachable)
    except ValueError as exc:
        detail = str(exc)
        with_loss, _ = _reachable(service, allow_lossy=True) if lossy_only else ({}, set())
        blocked = sorted(
            name for name in lossy_only if set(readable.get(name, ())) & set(with_loss[name])
        )
        if blocked:
            detail += (
                f"; only steps declared lossy lead to what it reads for {', '.join(blocked)}:"
                f" pass allow_lossy={names_shown(_with_allowed(blocked, allow_lossy))}"
                " (or True, for every component) to"
                " export through them (a rollback)"
            )
        raise HandoffError("export", detail) from exc


def _with_allowed(blocked: list[str], allow_lossy: AllowLossy) -> set[str]:
    """The components an ``allow_lossy`` that also unblocks ``blocked`` names: those
    already named keep their allowance."""
    return {*blocked, *(() if isinstance(allow_lossy, bool) else allow_lossy)}


def _exporting(
    service: Service,
    *,
    allow_lossy: AllowLossy,
    meta: Mapping[str, str] | None,
    on_snapshot: Callable[[SnapshotReport], None] | None,
    keep_late_writes: Callable[[LateWrites], object] | None = None,
) -> Prepare:
    """The export of ``service``: versions chosen before the pause, snapshot after it.

    ``keep_late_writes``, a server control's, is given the marks opened on the state
    just after the last piece was taken: it tells and closes them once its drain ends,
    not the handoff at SERVING."""
    check_allow_lossy(allow_lossy)  # before a successor is started

    def prepare(readable: Mapping[str, Sequence[int]]) -> Prepared:
        targets = choose_targets(service, readable, allow_lossy=allow_lossy)
        if not service.components:
            # Here, once per handoff, whichever adapter or API started it.
            logger.warning("handoff: %s", nothing_registered(service.name, "hands over"))

        def export() -> bytes:
            # The handoff says what it loses once, when the successor took over.
            with lossy_announced():
                encoded, report = service.snapshot(
                    targets=targets, allow_lossy=allow_lossy, meta=meta
                )
            if on_snapshot is not None:
                on_snapshot(report)
            return encoded.to_bytes()

        lossy = lossy_exports(service.components, targets, allow_lossy)
        return Prepared(
            export,
            targets,
            tuple(lossy),
            late_writes=late_writes,
        )

    def late_writes() -> LateWrites:
        marks = LateWrites(service.components)
        if keep_late_writes is not None:
            marks.kept = True
            keep_late_writes(marks)
        return marks

    return prepare


class _SourcePieces:
    """A service's :class:`PreCopySource` as the rounds send it: buffers."""

    def __init__(self, source: PreCopySource) -> None:
        self.source = source

    def start(self) -> None:
        self.source.start()

    def full(self) -> Payload:
        return self.source.full().parts

    def forked(self, size: int, seconds: float) -> None:
        self.source.forked(size, seconds)

    def pending(self) -> int:
        return self.source.pending()

    @property
    def deltas_possible(self) -> bool:
        return self.source.deltas_possible

    def delta(self, *, limit: int | None = None) -> Payload:
        return self.source.delta(limit=limit).parts

    def close(self) -> None:
        self.source.close()


def _why_not(pieces: Pieces) -> str:
    if isinstance(pieces, _SourcePieces):
        return pieces.source.why_no_deltas or "deltas are not possible"
    return "deltas are not possible"


def _rounds(
    service: Service, *, precopy: PreCopy, allow_lossy: AllowLossy, meta: Mapping[str, str] | None
) -> Rounds | None:
    """The pre-copy rounds of ``service``, or ``None`` when ``precopy`` is off."""
    if precopy is False:
        return None
    if precopy not in ("fork", "inline"):
        raise ConfigurationError("precopy", f"must be 'fork', 'inline' or False, not {precopy!r}")
    mode: PreCopyMode = precopy

    def open_pieces(readable: Mapping[str, Sequence[int]]) -> Pieces:
        targets = choose_targets(service, readable, allow_lossy=allow_lossy)
        source = service.precopy_source(targets=targets, allow_lossy=allow_lossy, meta=meta)
        return _SourcePieces(source)

    return Rounds(open=open_pieces, mode=mode, why_not=_why_not)


def _checkpoints_aside(
    steps: Steps[HandoffReport], gate: CheckpointGate, name: str, *, commit_wait: float
) -> Steps[HandoffReport]:
    """``steps`` of a handoff of a service whose checkpoints ``gate`` governs: the
    service's checkpoints step aside for the state's move, by themselves.

    The steps say what happens by the hooks they call. At their ``Settle``, just before
    ``pause`` runs, the gate is suspended and the checkpoint commits under way are
    waited for: from the pause on nothing changes, and no checkpoint of this process
    may land after the successor is told COMMIT, which follows the pause. ``resume``
    (the server goes on with its state) resumes the gate, and so does a failure that
    leaves the server running. ``stop_accepting`` comes only once the successor owns
    the state: the gate ends, for good. A failure that leaves the server paused leaves
    the checkpoints suspended (the successor confirmed it serves just as it ended).
    """
    suspended = paused = settled = False
    reply: object = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as done:
                report: HandoffReport = done.value
                break
            hook = effect.name if isinstance(effect, CallHook) else None
            if isinstance(effect, Settle) and not suspended:
                suspended = True
                waited = time.monotonic()
                try:
                    yield from _commits_ended(gate, commit_wait)
                except BaseException as exc:  # as if the effect raised it: it never ran
                    reply, error = None, exc
                    continue
                waited = time.monotonic() - waited
                if gate.running:
                    logger.info(
                        "handoff: %d checkpointer(s) of %s suspended%s",
                        gate.running,
                        name,
                        f", after {waited * 1000:.0f} ms for a commit under way, before the"
                        " pause" if waited >= 0.001 else "",
                    )
            if hook == "stop_accepting" and not settled:
                gate.end()
                settled = True
                if gate.running:
                    logger.info(
                        "handoff: %d checkpointer(s) of %s stopped for good: the successor"
                        " owns the state",
                        gate.running,
                        name,
                    )
            try:
                reply, error = (yield effect), None
            except BaseException as exc:
                reply, error = None, exc
            else:
                paused = paused or hook == "pause"
            if hook == "resume":
                paused = False
                if suspended and not settled:
                    _resume(gate, name)
                    settled = True
    except BaseException:
        if suspended and not settled:
            if paused:
                logger.warning(
                    "handoff: checkpoints of %s stay suspended: the handoff ended with the"
                    " server paused",
                    name,
                )
            else:
                _resume(gate, name)
        raise
    if not settled:  # the steps end with stop_accepting: not reached
        gate.end()
    return report


def _commits_ended(gate: CheckpointGate, wait: float) -> Steps[None]:
    """Steps: suspend ``gate`` and wait for the checkpoint commits under way, at most
    ``wait`` seconds (this handoff's ``timeouts.snapshot``, the time a successor run
    with the same timeouts waits for the snapshot: a store that hangs must not hang the
    handoff).

    Raises:
        HandoffError: stage ``pause``, a commit was still under way at the deadline.
    """
    fd = gate.suspend_nowait()
    if fd is None:
        return
    deadline = time.monotonic() + wait
    try:
        while gate.committing:
            if (yield WaitReadable((fd,), deadline)) is None and gate.committing:
                raise HandoffError(
                    "pause",
                    f"a checkpoint's commit under way did not end within {wait:g} s"
                    " (timeouts.snapshot, a successor's wait for the snapshot);"
                    " the store may hang",
                )
    finally:
        gate.done_waiting(fd)


def _resume(gate: CheckpointGate, name: str) -> None:
    gate.resume()
    if gate.running:
        logger.info("handoff: %d checkpointer(s) of %s resumed", gate.running, name)


def hand_over(
    service: Service,
    successor: Spawn | socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    control: ServerControl | None = None,
    timeouts: HandoffTimeouts = DEFAULT_TIMEOUTS,
    allow_lossy: AllowLossy = False,
    meta: Mapping[str, str] | None = None,
    on_snapshot: Callable[[SnapshotReport], None] | None = None,
    precopy: PreCopy = "fork",
) -> HandoffReport:
    """Hand ``service``'s state and ``listeners`` to a successor.

    A :func:`~statemigrate.handoff.send_handoff` whose export chooses the versions
    (:func:`choose_targets`) and takes ``service.snapshot(targets=...)``. The choice
    is made *before* ``control.pause()`` is called: a successor that reads nothing we
    can write is turned away without holding a single request.

    The checkpointers of ``service`` (:class:`~statemigrate.Checkpointer`) step
    aside by themselves: none commits from the pause on (a commit under way when
    the pause comes ends first), they go on if the handoff fails, and they stop for
    good once the successor owns the state, so that none can replace the
    successor's checkpoints. The log says so.

    Args:
        service: the live service to export.
        successor: a :class:`~statemigrate.handoff.Spawn` to start (its program calls
            :func:`~statemigrate.handoff.receive_handoff` and then :func:`take_over`),
            or an accepted connection from a successor started by someone else.
        listeners, control, timeouts: as for :func:`~statemigrate.handoff.send_handoff`.
        allow_lossy: let the export run steps declared lossy. Needed to hand state
            back to an older release (a rollback), which reads only older versions;
            never implied, because the older release will not see what they drop.
            True, or the components allowed (``{"catalog"}``).
        meta: annotations written into the snapshot header.
        on_snapshot: called with the snapshot's report (versions, steps, sizes,
            timings) right after a full export in the pause, while the writers are
            still paused (not called when the pause carried a delta).
        precopy: with a successor that takes pieces (``take_over`` of this release),
            send the state while serving: a full snapshot, exported in a forked
            child (``"fork"``, the default) or in this process (``"inline"``), then
            deltas, and pause only for the last delta. When some component cannot
            tell what changed, or the successor's plan has a whole-data step, the
            full snapshot travels in the pause as without pre-copy (the report's
            ``fallback`` says why). ``False``: no pre-copy.

    Returns:
        The handoff's report (``timings["export"]`` includes ``pause()``; ``rounds``,
        ``final`` and ``fallback`` tell what pre-copy did).

    Raises:
        ConfigurationError, SuccessorFailedError, HandoffError: as for
            :func:`~statemigrate.handoff.send_handoff`; stage ``export`` when there
            is no common version, with a message naming the component and the
            versions. The old process has resumed and keeps serving.
    """
    prepare = _exporting(service, allow_lossy=allow_lossy, meta=meta, on_snapshot=on_snapshot)
    steps = handoff_steps(
        successor,
        listeners=listeners,
        prepare=prepare,
        control=control,
        timeouts=timeouts,
        asynchronous=False,
        rounds=_rounds(service, precopy=precopy, allow_lossy=allow_lossy, meta=meta),
        service=service.name,
    )
    aside = _checkpoints_aside(
        steps, service._checkpoints, service.name, commit_wait=timeouts.snapshot
    )
    return run_blocking(aside, control)


async def hand_over_async(
    service: Service,
    successor: Spawn | socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    control: AsyncServerControl | None = None,
    timeouts: HandoffTimeouts = DEFAULT_TIMEOUTS,
    allow_lossy: AllowLossy = False,
    meta: Mapping[str, str] | None = None,
    on_snapshot: Callable[[SnapshotReport], None] | None = None,
    precopy: PreCopy = "fork",
) -> HandoffReport:
    """:func:`hand_over` on the running event loop, for an asyncio server.

    The waits (for HELLO, for each pre-copy round's child and acknowledgement, for
    READY, for a failed successor to exit) are waits on the loop, which goes on
    serving meanwhile; ``control``'s methods are awaited. The deltas and the last
    piece are exported inline on the loop, the last one between ``await
    control.pause()`` and the transfer. With ``precopy="inline"`` round 0 is too,
    and the loop serves nothing while it runs: keep ``"fork"`` for large states.

    Raises:
        ConfigurationError, SuccessorFailedError, HandoffError: as for
            :func:`hand_over`; a blocking ``control`` is refused.
    """
    prepare = _exporting(
        service,
        allow_lossy=allow_lossy,
        meta=meta,
        on_snapshot=on_snapshot,
        keep_late_writes=getattr(control, "keep_late_writes", None),
    )
    steps = handoff_steps(
        successor,
        listeners=listeners,
        prepare=prepare,
        control=control,
        timeouts=timeouts,
        asynchronous=True,
        rounds=_rounds(service, precopy=precopy, allow_lossy=allow_lossy, meta=meta),
        service=service.name,
    )
    aside = _checkpoints_aside(
        steps, service._checkpoints, service.name, commit_wait=timeouts.snapshot
    )
    return await run_async(aside, control)


def _taking_over(
    service: Service,
    inheritance: Inheritance,
    *,
    readable: Mapping[str, Iterable[int]] | None,
    allow_lossy: AllowLossy,
    strict: bool | None,
    max_size: int,
    precopy: bool,
) -> Steps[TakeOverReport]:
    lossy: dict[str, tuple[int, ...]] = {}
    if readable is None:
        readable = service.readable_versions(allow_lossy=allow_lossy)
        if allow_lossy is not True:
            # Announced so that an old process none of whose versions this one reads
            # can tell the operator that a lossy upgrade, not a missing step, is why.
            with_loss = service.readable_versions(allow_lossy=True)
            for name, versions in with_loss.items():
                more = tuple(v for v in versions if v not in readable.get(name, ()))
                if more:
                    lossy[name] = more
    announced = {name: tuple(int(v) for v in versions) for name, versions in readable.items()}
    tracker = service._tracker
    tracker.take_over()
    span = SpanHandle()
    rounds: list[Round] = []
    # Whether this process froze its heap after a piece (None: no piece yet).
    frozen: list[bool | None] = [None]

    def apply_piece(piece: Piece, view: memoryview) -> Applied:
        """Restore a pre-copy piece at once (nothing is served yet)."""
        applying = time.perf_counter()
        restored = service.restore(view, allow_lossy=allow_lossy, strict=strict)
        # Keep a full collection of the restored state out of the pause, where the
        # last piece is applied; the heap is thawed once the take-over ends.
        if frozen[0] is None:
            frozen[0] = freeze_heap()
        elif frozen[0]:
            gc.freeze()
        rounds.append(
            Round(
                number=piece.round,
                kind=piece.kind,
                size=view.nbytes,
                records=restored.records,
                seconds=time.perf_counter() - applying,
            )
        )
        return Applied(
            round=piece.round,
            deltas=service.accepts_deltas,
            records=restored.records,
            why=service.why_no_deltas or "",
        )

    try:
        began = time.perf_counter()
        began_ns = time.time_ns()
        # The pre-copy pieces and the snapshot of the pause are one restore to the
        # metrics: this process's start-up restore.
        with service._one_restore():
            snapshot = yield from inheritance._hello_steps(
                announced,
                max_size=max_size,
                on_piece=apply_piece if precopy else None,
                versions=service.versions(),
                code_version=service.code_version,
                lossy=lossy,
            )
            # Started late, but at HELLO: only the snapshot names the parent span.
            span = start_span(
                "statemigrate.take_over",
                traceparent=inheritance.trace or None,
                start_ns=began_ns,
                attributes={"statemigrate.parent_pid": inheritance.parent_pid},
            )
            arrived = time.perf_counter()
            size = snapshot.nbytes
            try:
                with under(span):
                    restored = service.restore(snapshot, allow_lossy=allow_lossy, strict=strict)
            except RestoreError as exc:
                inheritance.failed(str(exc))
                raise
            except BaseException as exc:
                inheritance.failed(f"{type(exc).__name__}: {exc}")
                raise
            finally:
                snapshot.release()
        done = time.perf_counter()
        yield from inheritance._ready_steps(service=service.name, said_by_caller=True)
        ended = time.perf_counter()
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, StateMigrateError) else f"{type(exc).__name__}: {exc}"
        tracker.take_over_failed(f"take-over failed: {reason}")
        span.end(error=reason)
        raise
    finally:
        thaw_heap(bool(frozen[0]))
    span.end(attributes={"statemigrate.snapshot_bytes": size})
    tracker.took_over()
    report = TakeOverReport(
        parent_pid=inheritance.parent_pid,
        transport=inheritance.transport,
        listeners=tuple(inheritance.listeners),
        readable=announced,
        snapshot_size=size,
        restore=restored,
        timings={
            "snapshot_wait": arrived - began,
            "restore": done - arrived,
            "commit_wait": ended - done,
            "total": ended - began,
        },
        predecessor_died=inheritance.predecessor_died,
        rounds=tuple(rounds),
        fallback=inheritance.fallback or None,
        pause_seconds=inheritance.pause_seconds,
        pause_told=inheritance.pause_told,
        final=inheritance.final,
        lossy=tuple(line for _, _, line in inheritance.lossy.values()),
    )
    logger.info("handoff: %s", report.summary())
    if not service.components:
        logger.warning("handoff: %s", nothing_registered(service.name, "took over"))
    return report


def nothing_registered(name: str, act: Literal["hands over", "took over"]) -> str:
    """The warning of a handoff that moves no component: it succeeds, and whatever the
    service keeps outside registered components starts empty in the successor."""
    return (
        f"service {name!r} {act} no component: no component is registered, so the state"
        " it serves (held anywhere else, such as a web framework's app.state) is not"
        " moved and the successor starts with none of it; register the components that"
        " hold it (service.register, docs/asgi.md and docs/servers.md)"
    )


def take_over(
    service: Service,
    inheritance: Inheritance,
    *,
    readable: Mapping[str, Iterable[int]] | None = None,
    allow_lossy: AllowLossy = False,
    strict: bool | None = None,
    max_size: int = DEFAULT_MAX_SNAPSHOT_SIZE,
    precopy: bool = True,
) -> TakeOverReport:
    """The successor's whole side: announce versions, restore the snapshot, report READY.

    Sends HELLO with ``readable`` (by default ``service.readable_versions()`` without
    lossy steps: the versions this code restores without loss), restores the
    snapshot it receives into ``service`` (verify, migrate, validate, apply: all or
    nothing; with pre-copy, each piece as it comes), then reports READY and waits
    for COMMIT, and confirms with SERVING: the state is applied by then, so the
    caller starts accepting as soon as this returns. If the old process dies after
    sending the snapshot and before COMMIT, this process takes over all the same
    (``predecessor_died`` in the report). If the restore fails, FAILED is sent
    with the reason and the error re-raised; the old process keeps serving and this
    process must exit. The waits are ``inheritance.timeouts.snapshot`` (for each
    piece) and ``.commit``.

    Args:
        service: this process's service, every component registered, none serving yet.
        inheritance: from :func:`~statemigrate.handoff.receive_handoff`, not used yet.
        readable: override the versions announced.
        allow_lossy: declare (and restore through) versions reached only by lossy
            steps (True, or of those named): needed to upgrade from an older release
            through a step declared lossy. Off by default: the old process then does
            any lossy downgrade, if told to; an upgrade through a lossy step is
            refused, the refusal naming the versions this process would read with it.
        strict: passed to :meth:`~statemigrate.Service.restore`.
        max_size: the largest snapshot accepted.
        precopy: announce pre-copy in HELLO: an old process that does it sends a
            full snapshot and deltas while it serves, each restored here at once,
            and only the last delta in the pause. ``False`` takes the whole
            snapshot in the pause, as a release without pre-copy does.

    Returns:
        The successor's report: the restore's own report (of the last piece) as
        ``restore``, the pre-copy ``rounds`` applied before it, and the seconds
        spent waiting for the snapshot (the rounds included), restoring it and
        waiting for COMMIT, and how long the writers were held (``pause_seconds``,
        also recorded in the metrics, since this process outlives the old one).

    Raises:
        HandoffError: the conversation failed (stages ``receive``, ``commit``). After
            a ``commit`` failure the state is restored but not owned: do not serve.
        RestoreError: the snapshot could not be restored; every component is as it
            was and FAILED was sent.
    """
    steps = _taking_over(
        service,
        inheritance,
        readable=readable,
        allow_lossy=check_allow_lossy(allow_lossy),  # before any step runs
        strict=strict,
        max_size=max_size,
        precopy=precopy,
    )
    return run_blocking(steps, None)


async def take_over_async(
    service: Service,
    inheritance: Inheritance,
    *,
    readable: Mapping[str, Iterable[int]] | None = None,
    allow_lossy: AllowLossy = False,
    strict: bool | None = None,
    max_size: int = DEFAULT_MAX_SNAPSHOT_SIZE,
    precopy: bool = True,
) -> TakeOverReport:
    """:func:`take_over` on the running event loop, for an asyncio successor.

    The waits for the snapshot and for COMMIT are waits on the loop; the restore runs
    inline on it (CPU-bound work, done before this process serves anything).

    Raises:
        HandoffError, RestoreError: as for :func:`take_over`.
    """
    steps = _taking_over(
        service,
        inheritance,
        readable=readable,
        allow_lossy=check_allow_lossy(allow_lossy),  # before any step runs
        strict=strict,
        max_size=max_size,
        precopy=precopy,
    )
    return await run_async(steps, None)
