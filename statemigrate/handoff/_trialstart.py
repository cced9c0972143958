"""Starting a service's process with a trial record: the right generation, the right state.

A service manager restarts a service whose main process died. When that process was
the generation on trial, the restart must be the permanent generation's: its program
(:func:`generation_to_run`, behind ``statemigrate trial exec``) and its state
(:func:`start_generation`): the permanent state committed when the trial began, or a
checkpoint the trial committed later when the permanent code reads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from statemigrate._errors import RestoreError, StateMigrateError
from statemigrate._runtime._chain import is_chain, split_chain
from statemigrate._runtime._report import RestoreReport
from statemigrate._runtime._service import Service
from statemigrate._snapshot._format import open_snapshot
from statemigrate.handoff._trialrecord import (
    PERMANENT,
    TrialRecord,
    load_record,
    locked,
    read_trial,
    required,
    start_time,
    store_record,
    trial_error,
    trial_pid,
    trial_process_alive,
)
from statemigrate.stores import Store, TmpfsStore

__all__ = ["GenerationStart", "generation_to_run", "start_generation"]

logger = logging.getLogger("statemigrate.handoff")


def generation_to_run(
    directory: str | os.PathLike[str], argv: Sequence[str]
) -> tuple[tuple[str, ...], str]:
    """The command line a service manager's (re)start should run, and why.

    ``argv`` unless the record shows a trial whose process is gone (a crash during
    the trial): then the permanent generation's recorded argv. A missing directory or
    record means no trial: ``argv``.

    Raises:
        TrialError: the generation on trial still runs (a second start is refused), or
            the record is unusable.
    """
    path = os.fspath(directory)
    if not os.path.lexists(path):
        return tuple(argv), "no trial directory"
    record = read_trial(path)
    if record is None or not record.on_trial:
        return tuple(argv), "no generation on trial"
    if trial_process_alive(record):
        raise trial_error(
            path, f"generation pid {trial_pid(record)} is on trial and running; refusing to start"
            " another",
        )
    return record.permanent.argv, (
        f"the trial generation (pid {trial_pid(record)}) died during its trial: running the"
        " permanent generation"
    )


@dataclass(frozen=True, slots=True)
class GenerationStart:
    """What :func:`start_generation` did.

    Attributes:
        after_crash: the generation on trial had died; this start is the permanent
            generation's, restored from the permanent state.
        source: what was restored: ``permanent``, ``checkpoint`` or ``store`` (the
            ``checkpoints`` store on an ordinary start), or ``cold``.
        restore: the restore's report (``None`` on a cold start).
        record: the trial record after the start (``None`` without one).
    """

    after_crash: bool
    source: Literal["permanent", "checkpoint", "store", "cold"]
    restore: RestoreReport | None
    record: TrialRecord | None


def start_generation(
    directory: str | os.PathLike[str],
    service: Service,
    *,
    checkpoints: Store | None = None,
) -> GenerationStart:
    """Restore ``service`` at a start without a handoff; the entry point's cold path.

    When the record shows a trial whose process died without handing back (``kill
    -9``, a crash, the OOM killer), this start must be the permanent generation: the
    state is the permanent one, or the latest checkpoint in ``checkpoints`` when the
    trial process committed one and this code reads it (downgraded through the
    registered steps, lossy ones allowed: the permanent code cannot hold more); the
    record then says the trial ``crashed``. Otherwise this is
    ``service.start_from(checkpoints)``.

    Raises:
        TrialError: this code is not the permanent generation's (start it with
            ``statemigrate trial exec``), the trial process still runs, or the record
            is unusable.
        RestoreError: the permanent state cannot be restored.
    """
    path = os.fspath(directory)
    record = read_trial(path) if os.path.lexists(path) else None
    if record is None or not record.on_trial:
        report = service.start_from(checkpoints)
        return GenerationStart(False, "cold" if report is None else "store", report, record)
    if trial_process_alive(record):
        raise trial_error(
            path, f"generation pid {trial_pid(record)} is on trial and running; refusing to start"
            " another",
        )
    permanent = record.permanent
    if permanent.code_version and service.code_version != permanent.code_version:
        raise trial_error(
            path, f"the trial generation died; this is code version {service.code_version!r},"
            f" the permanent generation is {permanent.code_version!r}: start it with"
            " statemigrate trial exec",
        )
    source: Literal["permanent", "checkpoint"] = "permanent"
    report = _restore_checkpoint(path, service, record, checkpoints)
    if report is not None:
        source = "checkpoint"
    else:
        report = _restore_permanent(path, service, record)
    with locked(path) as (_, fd):
        current = required(path, load_record(path, fd))
        pid = trial_pid(record)
        current = store_record(path, fd, replace(
            current, state="permanent", trial=None, request=None, outcome="crashed",
            reason=f"the trial process (pid {pid}) died; restarted as the permanent"
            f" generation from its {source} state",
            permanent=replace(
                current.permanent, pid=os.getpid(), pid_start=start_time(os.getpid())
            ),
        ))
    logger.warning("%s", current.reason)
    return GenerationStart(True, source, report, current)


def _restore_checkpoint(
    path: str, service: Service, record: TrialRecord, checkpoints: Store | None
) -> RestoreReport | None:
    """The trial's latest checkpoint, when it committed one that this code reads."""
    if checkpoints is None or record.trial is None:
        return None
    try:
        data = checkpoints.open()
        # An incremental checkpoint is a chain: its newest piece says who wrote it last.
        newest = split_chain(data)[-1] if is_chain(data) else data
        header = open_snapshot(newest, key=service._key, limits=service._limits).header
    except StateMigrateError as exc:
        logger.info("no checkpoint of the trial to restore (%s)", exc)
        return None
    began = record.started_at or 0.0
    if header.producer.pid != record.trial.pid or header.created_ns / 1e9 < began:
        return None  # not written by the trial generation: the permanent state is newer
    try:
        return service._restore_stored(data, {"allow_lossy": True})
    except RestoreError as exc:
        logger.warning(
            "the trial's checkpoint cannot be restored by this code (%s); restoring the"
            " permanent state", exc,
        )
        return None


def _restore_permanent(path: str, service: Service, record: TrialRecord) -> RestoreReport:
    """The permanent state committed when the trial began, checked to be that one."""
    try:
        with TmpfsStore(os.path.join(path, PERMANENT)) as store:
            data = store.open()
        found = open_snapshot(data, key=service._key, limits=service._limits).header.snapshot_id
    except StateMigrateError as exc:
        raise trial_error(path, f"the permanent state cannot be read: {exc}") from exc
    if record.snapshot_id is not None and found != record.snapshot_id:
        raise trial_error(
            path, f"the permanent state is snapshot {found[:12]}, the record names"
            f" {record.snapshot_id[:12]}; refusing to restore another generation's state",
        )
    return service.restore(data)
