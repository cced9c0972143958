"""Hot restart for a gunicorn application: server hooks that carry the state across
``kill -USR2``.

One line in the gunicorn configuration file installs them::

    # gunicorn.conf.py
    from statemigrate.integrations.gunicorn import server_hooks
    globals().update(server_hooks("myapp:service"))

gunicorn's own binary upgrade does the rest. ``kill -USR2 <master>`` makes the master
fork and execute its command line again with its listening sockets (``GUNICORN_FD``);
the new master loads the (new) code, reads its configuration and starts its workers.
The state of a gunicorn application lives in its workers, so it moves worker to
worker. Each worker gets a *slot* when it is forked (0 to ``workers - 1``), and once
its application is loaded it listens for a successor on a Unix socket named after
its master and its slot (:mod:`~statemigrate.integrations._gunicorn_handover`, in
the directory of :mod:`~statemigrate.integrations._gunicorn_directory`, which each
master's start clears of what processes gone left). A new worker, before it accepts
a single connection, connects to the socket of the same slot of the previous master,
takes the state over (:func:`~statemigrate.handoff.take_over`: the version
handshake, the restore and READY) and only then serves. The old worker meanwhile
(:class:`WorkerGate`):

1. serves reads throughout, and from the pause until the outcome holds the requests
   that may change the state (any method but ``safe_methods``: GET, HEAD, OPTIONS by
   default) in ``pre_request``;
2. if the handoff fails, lets them go on (the successor exits, so its master halts,
   and the old generation goes on as if nothing happened);
3. once the state moved, stops accepting (its listeners are never accepted on
   again; the connections in the kernel's queue stay there for the new worker),
   forwards each held request, and every later one on a connection it already has,
   to the listener's address (:func:`~statemigrate.integrations._forward.forward`)
   and relays the answer with ``Connection: close``; it then stops the way gunicorn
   stops a worker on ``SIGTERM`` (requests in flight finish, kept-alive connections
   get a last request within a short linger).

When every worker of the new generation has taken over, the last one to do so sends
``SIGTERM`` to the old master (``retire_old_master``), which stops its workers
gracefully and exits; the new master then promotes itself. The operator's single
command is ``kill -USR2 <master>``; see ``docs/gunicorn.md``. If the new master exits
while the old one runs (its application failed to import, its workers to boot), the old
master logs it, with its pid and exit status
(:mod:`~statemigrate.integrations._gunicorn_reexec`). A configuration the hooks cannot
use stops the master at start with one line in its log
(:mod:`~statemigrate.integrations._gunicorn_config`).

A new worker confirms the take-over (SERVING) only while its master lives and has not
told it to stop: otherwise the old worker takes its state back and serves on. If the
new generation dies after confirming and before the old master is stopped, the old
master's next worker waits for the new worker and its master to exit, then restores
the slot's latest checkpoint (the new worker's final one) and serves.

With ``checkpoints=`` the hooks keep checkpoints of each worker's state
(:mod:`~statemigrate.integrations._gunicorn_checkpoints`), one store per slot, and a
worker that gunicorn forks again for a slot (after a crash, ``kill -9``, a timeout,
``max_requests`` or ``HUP``) restores the slot's latest checkpoint instead of serving
the master's older copy.

With ``trial=Trial(directory=...)`` (one worker) the old worker puts its successor on
trial once the state moved, and the new worker watches its trial: an operator's
``statemigrate trial promote`` or the health check makes it permanent. A revert by hot
handoff is not offered here (gunicorn's next generation is the master's command line
with the configuration it reads, not a program a worker can start): it fails with
that reason, and the worker serves on, still on trial.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from statemigrate._errors import ConfigurationError, HandoffError, StateMigrateError
from statemigrate._model._allowlossy import AllowLossy, check_allow_lossy
from statemigrate._runtime._service import Service
from statemigrate.handoff import (
    HandoffReport,
    HandoffTimeouts,
    receive_handoff,
    take_over,
)
from statemigrate.integrations._gate import safe_methods_of
from statemigrate.integrations._gunicorn_checkpoints import (
    SLOT,
    Checkpoints,
    SlotCheckpoints,
    StoreSpec,
    checkpoints_of,
    place,
    replaced,
    retire_all,
    vacate,
)
from statemigrate.integrations._gunicorn_config import (
    check_configuration,
    refuse,
    warn_of_losses,
)
from statemigrate.integrations._gunicorn_directory import HandoffDirectory, default_directory
from statemigrate.integrations._gunicorn_generations import (
    master_alive,
    next_generation_gone,
    parent_of,
)
from statemigrate.integrations._gunicorn_handover import listen_for_successor, wait_handoff_end
from statemigrate.integrations._gunicorn_logging import route_library_logs
from statemigrate.integrations._gunicorn_metrics import (
    master_exiting,
    worker_exited,
    worker_started,
)
from statemigrate.integrations._gunicorn_reexec import watch_new_master
from statemigrate.integrations._gunicorn_service import (
    ServiceSpec,
    give_preloaded,
    preload,
    reloaded,
    service_of,
)
from statemigrate.integrations._gunicorn_worker import SAFE_METHODS, WorkerGate
from statemigrate.integrations._trial import Trial, checked, runner_for

__all__ = ["SAFE_METHODS", "Checkpoints", "Trial", "WorkerGate", "server_hooks"]

#: The exit status gunicorn's arbiter reads as "the worker failed to boot": the new
#: master halts, and the old generation goes on serving.
WORKER_BOOT_ERROR = 3

_GATE = "statemigrate_gate"
_KEEPER = "statemigrate_checkpoints"

def _no_revert(permanent: tuple[str, ...]) -> HandoffReport:
    raise HandoffError(
        "revert",
        "the gunicorn hooks do not hand back to the permanent generation; deploy its"
        " release and kill -USR2 the master (or promote the trial)",
    )


class _Hooks:
    def __init__(
        self,
        service: ServiceSpec,
        *,
        directory: HandoffDirectory,
        allow_lossy: AllowLossy,
        timeouts: HandoffTimeouts,
        retire_old_master: bool,
        trial: Trial | None,
        checkpoints: Checkpoints | None,
        safe_methods: frozenset[str],
    ) -> None:
        self.service = service
        self.safe_methods = safe_methods
        self.trial = trial
        self.checkpoints = checkpoints
        self.directory = directory
        self.allow_lossy = allow_lossy
        self.timeouts = timeouts
        self.retire_old_master = retire_old_master

    # -- master ------------------------------------------------------------------------

    def when_ready(self, server: Any) -> None:
        try:
            check_configuration(
                server, directory=self.directory, trial=self.trial, checkpoints=self.checkpoints
            )
            route_library_logs(server.log)
            # A kill -USR2 whose new master fails says so.
            watch_new_master(
                server,
                handed_over=self.directory.moved(os.getpid()).exists,
                checkpoints=self.checkpoints is not None,
            )
            removed = self.directory.sweep()  # kill -9 leaves files behind
            if removed:
                server.log.info(
                    "removed %d files left by processes gone from %s",
                    len(removed),
                    self.directory.path,
                )
            preload(server, self.service)
        except ConfigurationError as exc:
            refuse(server, exc)  # one line, not a traceback
        warn_of_losses(server, self.checkpoints)

    def pre_fork(self, server: Any, worker: Any) -> None:
        place(server, worker)
        give_preloaded(server, worker)

    def on_reload(self, server: Any) -> None:
        route_library_logs(server.log)  # gunicorn's loglevel may have changed
        reloaded(server, self.service)
        retire_all(server)

    def child_exit(self, server: Any, worker: Any) -> None:
        vacate(server, worker)
        worker_exited(worker.pid, server.log)  # its gauges, in multiprocess mode

    def on_exit(self, server: Any) -> None:
        self.directory.forget(os.getpid())
        master_exiting(server.log)  # its gauges: no master's child_exit hears of it

    # -- worker ------------------------------------------------------------------------

    def post_worker_init(self, worker: Any) -> None:
        route_library_logs(worker.log)  # the application, loaded now, may log itself
        worker_started()  # the gauges the master set, in this worker's metrics files
        slot: int = getattr(worker, SLOT, 0)
        mark = self.directory.moved(worker.ppid)

        def moved() -> None:
            # Who holds the state now: the successor and its master, so that a
            # replacement forked by our master can tell whether they still live.
            successor = gate.successor
            master = parent_of(successor) if successor is not None else None
            mark.write_text(f"{successor or 0} {master or 0}\n")

        gate = WorkerGate(
            worker, on_moved=moved, safe_methods=self.safe_methods, timeouts=self.timeouts
        )
        setattr(worker, _GATE, gate)
        gate.install()
        if mark.exists() and not next_generation_gone(mark, worker, slot, self.directory):
            # A worker forked by a master whose state has moved to its successor,
            # and the master is stopping it (or has died): serving would answer
            # from a stale copy. Its loop ends at once.
            gate.close()
            return
        service = service_of(worker, self.service)
        try:
            keeper = self._keeper(slot, worker)
        except StateMigrateError as exc:
            self._cannot_checkpoint(worker, slot, exc)
        trials = runner_for(self.trial, service)
        if trials is not None:
            try:
                trials.check()
            except StateMigrateError as exc:
                worker.log.error("worker %s (slot %s): %s", worker.pid, slot, exc)
                sys.exit(WORKER_BOOT_ERROR)
        predecessor = os.environ.get("GUNICORN_PID")
        took_over = False
        if predecessor is not None and predecessor.isdigit():
            if not master_alive(worker):
                # Our master is gone or stopping: taking the state would leave it
                # with a worker about to exit, and the old one stopped.
                worker.log.warning(
                    "worker %s (slot %s): its master is gone or stopping; not taking"
                    " the state over from master %s",
                    worker.pid,
                    slot,
                    predecessor,
                )
                sys.exit(WORKER_BOOT_ERROR)
            outcome = self._take_over(service, int(predecessor), slot, worker)
            if outcome is None:
                sys.exit(WORKER_BOOT_ERROR)
            took_over = outcome
            self._maybe_retire(int(predecessor), slot, worker)
        waits = replaced(worker)
        if keeper is not None and not took_over:
            if waits is not None:
                # Forked again for a slot whose state an earlier worker of this master
                # held: the master's copy is older than that worker's checkpoints.
                keeper.restore_replaced(service, worker, waits)
            elif not service.status.ready and not keeper.restore_at_boot(service, worker):
                sys.exit(WORKER_BOOT_ERROR)
        listen_for_successor(
            self.directory.socket(worker.ppid, slot),
            service,
            slot,
            worker,
            gate,
            trials,
            timeouts=self.timeouts,
            allow_lossy=self.allow_lossy,
        )
        if keeper is not None:
            try:
                keeper.run(service, gate.still, worker, now=took_over or keeper.restored)
            except StateMigrateError as exc:
                self._cannot_checkpoint(worker, slot, exc)
            # Reads the stores of slots past the worker count: not in the way of serving.
            threading.Thread(
                target=keeper.warn_unserved,
                args=(worker,),
                name="statemigrate-unserved-slots",
                daemon=True,
            ).start()
        if trials is not None:
            trials.watch_blocking(_no_revert)

    def _cannot_checkpoint(self, worker: Any, slot: int, exc: StateMigrateError) -> NoReturn:
        # Not served without them: the worker fails to boot, and its master halts.
        worker.log.error("worker %s (slot %s): cannot keep checkpoints: %s", worker.pid, slot, exc)
        sys.exit(WORKER_BOOT_ERROR)

    def _keeper(self, slot: int, worker: Any) -> SlotCheckpoints | None:
        """The worker's checkpoints, if the hooks keep them and the slot has a store."""
        if self.checkpoints is None:
            return None
        if self.checkpoints.shared and slot != 0:
            worker.log.error(
                "worker %s (slot %s): not checkpointing: the checkpoints' one store is"
                " slot 0's; give a function slot -> store for more workers",
                worker.pid,
                slot,
            )
            return None
        keeper = SlotCheckpoints(self.checkpoints, slot)
        setattr(worker, _KEEPER, keeper)
        return keeper

    def _take_over(self, service: Service, predecessor: int, slot: int, worker: Any) -> bool | None:
        """Take the state over from the previous master's worker of ``slot``: True
        once taken, False when there is none, None when the take-over failed."""
        path = self.directory.socket(predecessor, slot)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            worker.log.info(
                "worker %s (slot %s): no predecessor, starting afresh", worker.pid, slot
            )
            return False
        try:
            # gunicorn notices a dead master only in the worker's loop, once a
            # second, and a stopping one only sets worker.alive: asked after COMMIT,
            # a worker that will not serve leaves the state with the old worker.
            with receive_handoff(
                sock, expect=(), timeouts=self.timeouts, serves=lambda: master_alive(worker)
            ) as inheritance:
                report = take_over(service, inheritance, allow_lossy=self.allow_lossy)
        except StateMigrateError as exc:
            worker.log.error(
                "worker %s (slot %s): taking over from master %s failed: %s",
                worker.pid,
                slot,
                predecessor,
                exc,
            )
            return None
        worker.log.info("worker %s (slot %s): %s", worker.pid, slot, report.summary())
        return True

    def _maybe_retire(self, predecessor: int, slot: int, worker: Any) -> None:
        master = worker.ppid
        # Its pid: if this generation dies before it serves on its own, the old
        # master's worker waits for the latest worker of the slot (its final checkpoint).
        self.directory.ready(master, slot).write_text(f"{worker.pid}\n")
        if not self.retire_old_master:
            return
        if not all(self.directory.ready(master, s).exists() for s in range(worker.cfg.workers)):
            return
        # Only the process that started our master: a pid may have been reused.
        if parent_of(master) != predecessor:
            return
        if not master_alive(worker):
            # Our master was stopped or killed during the take-over: this worker
            # exits now, and the old generation must serve on (docs/gunicorn.md).
            worker.log.warning(
                "worker %s (slot %s): its master is gone or stopping: not stopping the"
                " old master %s",
                worker.pid,
                slot,
                predecessor,
            )
            return
        worker.log.info("every worker has taken over: stopping the old master %s", predecessor)
        with contextlib.suppress(ProcessLookupError):
            os.kill(predecessor, signal.SIGTERM)

    def pre_request(self, worker: Any, req: Any) -> None:
        gate: WorkerGate | None = getattr(worker, _GATE, None)
        if gate is not None:
            gate.hold(req)

    def post_request(self, worker: Any, req: Any, environ: Any, resp: Any) -> None:
        gate: WorkerGate | None = getattr(worker, _GATE, None)
        if gate is not None:
            gate.release()

    def worker_exit(self, server: Any, worker: Any) -> None:
        if worker.pid != os.getpid():
            return  # the master, for a worker that was gone already
        gate: WorkerGate | None = getattr(worker, _GATE, None)
        if gate is not None and not gate.moved:
            with contextlib.suppress(FileNotFoundError):
                self.directory.socket(worker.ppid, getattr(worker, SLOT, 0)).unlink()
        wait_handoff_end(worker)
        keeper: SlotCheckpoints | None = getattr(worker, _KEEPER, None)
        if keeper is not None:
            keeper.stop(worker)  # a final checkpoint, unless the state moved


def server_hooks(
    service: ServiceSpec,
    *,
    directory: str | os.PathLike[str] | None = None,
    allow_lossy: AllowLossy = False,
    timeouts: HandoffTimeouts | None = None,
    retire_old_master: bool = True,
    trial: Trial | None = None,
    checkpoints: StoreSpec | Checkpoints | None = None,
    safe_methods: Iterable[str] = SAFE_METHODS,
) -> dict[str, Callable[..., None]]:
    """gunicorn server hooks that move ``service``'s state to the next generation.

    Put them in the configuration file with ``globals().update(server_hooks(...))``.
    They set ``when_ready``, ``pre_fork``, ``on_reload``, ``child_exit``,
    ``post_worker_init``, ``pre_request``, ``post_request``, ``worker_exit`` and
    ``on_exit``; a configuration that has its own hook of one of these names calls
    ours from it.

    Args:
        service: the application's :class:`~statemigrate.Service`, every component
            registered: ``"module:attribute"`` naming it (or a function returning
            it), resolved in each worker once the application is loaded; with
            ``preload_app``, once in the master, and kept across ``HUP`` (gunicorn
            serves on the application it preloaded: another service named after
            ``HUP`` is refused, with an error logged).
        directory: where the workers listen for their successors (created 0700,
            refused unless private); by default under ``$XDG_RUNTIME_DIR`` or the
            temporary directory. Each master removes, as it starts, the files there
            that processes gone (``kill -9``) left.
        allow_lossy: passed to both sides of each handoff; needed to roll back to a
            release that reads only older versions. True, or the components allowed.
        timeouts: the waits of both sides of each handoff.
        retire_old_master: stop the old master with ``SIGTERM`` once every new
            worker has taken over; without it the operator stops it.
        trial: put each new generation on trial (``workers = 1``; docs/trials.md):
            promoted by the operator or the health check; a revert by hot handoff is
            not offered (it fails, with that reason).
        checkpoints: keep checkpoints of each worker's state (``docs/gunicorn.md``):
            a store (``workers = 1``), a function ``slot -> store``, or a
            :class:`Checkpoints` with the checkpointer's options. Each worker
            checkpoints from once it owns its state until it exits; a worker forked
            again for a slot (after a crash, ``kill -9``, a timeout, ``max_requests``
            or ``HUP``) restores the slot's latest checkpoint before it serves.
        safe_methods: the methods that never change the state: they are served
            during a handoff's pause, beside the export, and every other request is
            held. A gthread worker runs requests in threads: if a read changes the
            state (an LRU cache's order, as the reference cache's ``get``), give
            ``()``, or the export may see a key the read has taken out and not yet
            put back, and the successor would lack it.

    Raises:
        ConfigurationError: an argument is of the wrong kind.
    """
    if not (isinstance(service, Service | str) or callable(service)):
        raise ConfigurationError(
            "service", f"must be 'module:attribute', a Service or a function, not {service!r}"
        )
    if isinstance(service, str) and (":" not in service or not all(service.split(":", 1))):
        raise ConfigurationError("service", f"expected 'module:attribute', got {service!r}")
    checked(trial)  # a clear error now, not in each worker
    kept = checkpoints_of(checkpoints)
    safe = safe_methods_of(safe_methods)
    if timeouts is not None and not isinstance(timeouts, HandoffTimeouts):
        raise ConfigurationError(
            "timeouts", f"must be a HandoffTimeouts, not {type(timeouts).__name__}"
        )
    hooks = _Hooks(
        service,
        directory=HandoffDirectory(
            Path(directory) if directory is not None else default_directory()
        ),
        allow_lossy=check_allow_lossy(allow_lossy),  # a clear error now, not in each worker
        timeouts=timeouts if timeouts is not None else HandoffTimeouts(),
        retire_old_master=retire_old_master,
        trial=trial,
        checkpoints=kept,
        safe_methods=safe,
    )
    return {
        "when_ready": hooks.when_ready,
        "pre_fork": hooks.pre_fork,
        "on_reload": hooks.on_reload,
        "child_exit": hooks.child_exit,
        "post_worker_init": hooks.post_worker_init,
        "pre_request": hooks.pre_request,
        "post_request": hooks.post_request,
        "worker_exit": hooks.worker_exit,
        "on_exit": hooks.on_exit,
    }
