"""Handing a :class:`~statemigrate.Service` over to a successor, and taking one over.

The handoff layer moves opaque bytes; this module fills them with a service's
snapshot and settles, before any state moves, which schema version each component
travels in. The successor announces in HELLO the versions it can read; the old
process picks, per component, its live version if the successor reads it, or else
the highest version the successor reads that the registered steps reach. When no
such version exists the handoff is aborted before the writers are paused, with an
error that names the component and both sides' versions.

What a process declares it can read decides who migrates. By default a successor
declares only the versions it can restore *without losing data*: its own version,
older ones it upgrades from, and newer ones only through loss-free steps. So when a
newer release hands state back to an older one (a rollback), the older one declares
its own version only, and the newer one, which knows the newer schema best, exports
through the downgrade steps. Those steps usually drop fields, so the exporting side
must say ``allow_lossy=True`` explicitly; without it the rollback is refused with
the lossy steps named, and the old process goes on serving.

Old process::

    report = hand_over(service, [sys.executable, "-m", "myservice"],
                       listeners={"http": sock}, pause=server.pause,
                       resume=server.resume, stop_accepting=server.stop_accepting)

Successor::

    inheritance = inherit(expect={"http"})
    if inheritance is not None:
        restored = take_over(service, inheritance)   # HELLO, restore, READY, COMMIT
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from statemigrate._errors import (
    HandoffError,
    LossyMigrationError,
    NoMigrationPathError,
    RestoreError,
)
from statemigrate._runtime._report import RestoreReport, SnapshotReport
from statemigrate._runtime._service import Service, choose_versions
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE
from statemigrate.handoff._report import HandoffReport
from statemigrate.handoff._successor import Inheritance
from statemigrate.handoff._upgrade import upgrade

__all__ = ["choose_targets", "hand_over", "handoff_readable", "take_over"]

logger = logging.getLogger("statemigrate.handoff")


class _NoCommonVersion(Exception):
    """Raised inside the export callback; turned into a plain HandoffError afterwards."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def handoff_readable(service: Service, *, allow_lossy: bool = False) -> dict[str, list[int]]:
    """Per component, the versions ``service`` declares it can read in a handoff.

    Args:
        service: the successor's service, components registered.
        allow_lossy: also declare versions that reach the live version only through
            steps declared lossy (then the restore must allow them too).

    Returns:
        ``{component: [versions]}``, ascending; the live version is always there.
    """
    return service.readable_versions(allow_lossy=allow_lossy)


def _reachable(service: Service, *, allow_lossy: bool) -> tuple[dict[str, list[int]], set[str]]:
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
    service: Service, readable: Mapping[str, Sequence[int]], *, allow_lossy: bool = False
) -> dict[str, int]:
    """Pick the version each component of ``service`` is exported in for a reader.

    The live version when the reader reads it, else the highest version the reader
    reads that the registered steps reach from the live one (loss-free steps only,
    unless ``allow_lossy``).

    Args:
        service: the exporting (old) process's service.
        readable: what the successor said it reads, per component.
        allow_lossy: allow reaching a version through steps declared lossy.

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
                " pass allow_lossy=True to export through them (a rollback)"
            )
        raise HandoffError("export", detail) from exc


def hand_over(
    service: Service,
    argv: Sequence[str],
    *,
    listeners: Mapping[str, socket.socket],
    pause: Callable[[], None] | None = None,
    resume: Callable[[], None] | None = None,
    stop_accepting: Callable[[], None] | None = None,
    allow_lossy: bool = False,
    meta: Mapping[str, str] | None = None,
    on_snapshot: Callable[[SnapshotReport], None] | None = None,
    ready_timeout: float = 30.0,
    handshake_timeout: float = 30.0,
    kill_grace: float = 5.0,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> HandoffReport:
    """Start ``argv`` as a successor and hand it ``service``'s state and ``listeners``.

    A :func:`~statemigrate.handoff.upgrade` whose ``export_state`` chooses the versions
    (:func:`choose_targets`) and returns ``service.snapshot(targets=...)``. The choice
    is made *before* ``pause()`` is called: a successor that reads nothing we can
    write is turned away without holding a single request.

    Args:
        service: the live service to export.
        argv: the successor's command line; it should call
            :func:`~statemigrate.handoff.inherit` and then :func:`take_over`.
        listeners, pause, resume, stop_accepting, ready_timeout, handshake_timeout,
        kill_grace, env, cwd: as for :func:`~statemigrate.handoff.upgrade`. ``resume``
            is called only if ``pause`` was.
        allow_lossy: let the export run steps declared lossy. Needed to hand state
            back to an older release (a rollback), which reads only older versions;
            never implied, because the older release will not see what they drop.
        meta: annotations written into the snapshot header.
        on_snapshot: called with the snapshot's report (versions, steps, sizes,
            timings) right after the export, while the writers are still paused.

    Returns:
        The handoff's report (``timings["export"]`` includes ``pause()``).

    Raises:
        HandoffError: as for :func:`~statemigrate.handoff.upgrade`; stage ``export``
            when there is no common version, with a message naming the component and
            the versions. The old process has resumed and keeps serving.
    """
    paused = False

    def export_state(readable: Mapping[str, Sequence[int]]) -> bytes:
        nonlocal paused
        try:
            targets = choose_targets(service, readable, allow_lossy=allow_lossy)
        except HandoffError as exc:
            raise _NoCommonVersion(exc.detail) from exc
        if pause is not None:
            pause()
        paused = True
        encoded, report = service.snapshot(targets=targets, allow_lossy=allow_lossy, meta=meta)
        if on_snapshot is not None:
            on_snapshot(report)
        return encoded.to_bytes()

    def resume_if_paused() -> None:
        if paused and resume is not None:
            resume()

    try:
        return upgrade(
            argv,
            listeners=listeners,
            export_state=export_state,
            pause=None,
            resume=resume_if_paused,
            stop_accepting=stop_accepting,
            ready_timeout=ready_timeout,
            handshake_timeout=handshake_timeout,
            kill_grace=kill_grace,
            env=env,
            cwd=cwd,
        )
    except HandoffError as exc:
        cause = _find_cause(exc, _NoCommonVersion)
        if cause is None:
            raise
        report = exc.report
        if report is not None:
            report = dataclasses.replace(report, reason=cause.detail)
        raise HandoffError("export", cause.detail, report=report) from exc


def _find_cause(exc: BaseException, kind: type[_NoCommonVersion]) -> _NoCommonVersion | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def take_over(
    service: Service,
    inheritance: Inheritance,
    *,
    readable: Mapping[str, Iterable[int]] | None = None,
    allow_lossy: bool = False,
    strict: bool | None = None,
    timeout: float = 60.0,
    ready_timeout: float = 30.0,
    max_size: int = DEFAULT_MAX_SNAPSHOT_SIZE,
) -> RestoreReport:
    """The successor's whole side: announce versions, restore the snapshot, report READY.

    Sends HELLO with ``readable`` (by default :func:`handoff_readable`: the versions
    this code restores without loss), restores the snapshot it receives into
    ``service`` (verify, migrate, validate, apply: all or nothing), then reports READY
    and waits for COMMIT. If the restore fails, FAILED is sent with the reason and the
    error re-raised; the old process keeps serving and this process must exit.

    Args:
        service: this process's service, every component registered, none serving yet.
        inheritance: from :func:`~statemigrate.handoff.inherit` or
            :func:`~statemigrate.handoff.receive_handoff`, not used yet.
        readable: override the versions announced.
        allow_lossy: declare (and restore through) versions reached only by lossy
            steps. Off by default: the old process then does any lossy downgrade,
            and only if it was told to.
        strict: passed to :meth:`~statemigrate.Service.restore`.
        timeout: seconds to wait for the snapshot after HELLO.
        ready_timeout: seconds to wait for COMMIT after READY.
        max_size: the largest snapshot accepted.

    Returns:
        The restore's report; ``timings["handoff_wait"]`` adds the seconds spent from
        HELLO to the snapshot's arrival, ``timings["commit_wait"]`` those from READY
        to COMMIT.

    Raises:
        HandoffError: the conversation failed (stages ``receive``, ``commit``). After
            a ``commit`` failure the state is restored but not owned: do not serve.
        RestoreError: the snapshot could not be restored; every component is as it
            was and FAILED was sent.
    """
    versions = readable if readable is not None else handoff_readable(
        service, allow_lossy=allow_lossy
    )
    began = time.perf_counter()
    snapshot = inheritance.hello(versions, timeout=timeout, max_size=max_size)
    arrived = time.perf_counter()
    try:
        report = service.restore(snapshot, allow_lossy=allow_lossy, strict=strict)
    except RestoreError as exc:
        inheritance.failed(str(exc))
        raise
    except BaseException as exc:
        inheritance.failed(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        snapshot.release()
    restored = time.perf_counter()
    inheritance.ready(timeout=ready_timeout)
    timings = dict(report.timings)
    timings["handoff_wait"] = arrived - began
    timings["commit_wait"] = time.perf_counter() - restored
    return dataclasses.replace(report, timings=timings)
