"""The old worker's side of a gunicorn handoff: listening on its slot's socket for the
worker of the same slot of the next master, and handing its state over.

Once its application is loaded, each worker listens on ``<master>-<slot>.sock``
(:mod:`~statemigrate.integrations._gunicorn_directory`) in a thread of its own, and
hands its state over (:func:`~statemigrate.handoff.hand_over`, its
:class:`~statemigrate.integrations._gunicorn_worker.WorkerGate` holding the writes) to
the first successor whose take-over succeeds; after a failed one it serves on and
listens for the next. An exiting worker waits for a handoff under way to end.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from statemigrate._errors import StateMigrateError
from statemigrate._model._allowlossy import AllowLossy
from statemigrate._runtime._service import Service
from statemigrate.handoff import HandoffTimeouts, hand_over
from statemigrate.integrations._gunicorn_worker import WorkerGate
from statemigrate.integrations._trial import TrialRunner

__all__ = ["listen_for_successor", "wait_handoff_end"]

_IDLE = "statemigrate_idle"

# How long an exiting worker waits for a handoff under way to end: the old master is
# stopped as soon as the successor took over, maybe before this worker's side of the
# handoff (and its trial's commit to tmpfs) returned.
_HANDOFF_END_WAIT = 60.0


def _peer_pid(conn: socket.socket) -> int | None:
    """The pid of the process at the other end of a Unix socket."""
    try:
        credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid: int = struct.unpack("3i", credentials)[0]
    return pid or None


def listen_for_successor(
    path: Path,
    service: Service,
    slot: int,
    worker: Any,
    gate: WorkerGate,
    trials: TrialRunner | None,
    *,
    timeouts: HandoffTimeouts,
    allow_lossy: AllowLossy,
) -> None:
    """Listen on ``path`` for the successor of ``worker`` (of ``slot``), in a thread
    that hands ``service``'s state over to it."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a worker of this slot that died
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(4)
    idle = threading.Event()
    idle.set()
    setattr(worker, _IDLE, idle)

    threading.Thread(
        target=_serve_successors,
        args=(listener, path, service, slot, worker, gate, trials, idle),
        kwargs={"timeouts": timeouts, "allow_lossy": allow_lossy},
        name="statemigrate-handoff",
        daemon=True,
    ).start()


def _serve_successors(
    listener: socket.socket,
    path: Path,
    service: Service,
    slot: int,
    worker: Any,
    gate: WorkerGate,
    trials: TrialRunner | None,
    idle: threading.Event,
    *,
    timeouts: HandoffTimeouts,
    allow_lossy: AllowLossy,
) -> None:
    with listener:
        while True:
            conn, _ = listener.accept()
            idle.clear()
            gate.successor = _peer_pid(conn)
            try:
                with conn:
                    try:
                        if trials is not None:
                            trials.check_handoff()
                        report = hand_over(
                            service,
                            conn,
                            listeners={},
                            control=gate,
                            timeouts=timeouts,
                            allow_lossy=allow_lossy,
                        )
                    except StateMigrateError as exc:
                        worker.log.warning(
                            "worker %s (slot %s): handoff failed, serving on: %s",
                            worker.pid,
                            slot,
                            exc,
                        )
                        continue
                # hand_over logged its report (``handoff ready: ...``), with this
                # worker's pid in gunicorn's format: once is enough.
                if trials is not None:
                    # The worker's own master is the permanent generation's
                    # program: a worker is forked from it with its command line.
                    trials.begin(report)
                break
            finally:
                idle.set()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def wait_handoff_end(worker: Any) -> None:
    """``worker_exit``: wait for a handoff under way to end, if the worker listens."""
    idle: threading.Event | None = getattr(worker, _IDLE, None)
    if idle is not None:
        # The handoff's thread is a daemon: it would die with the process.
        idle.wait(_HANDOFF_END_WAIT)
