"""The old process's side of a handoff: send the listeners and the state, keep serving on failure.

:func:`send_handoff` follows NGINX's binary upgrade and Cloudflare's tableflip. A
:class:`~statemigrate.handoff.Spawn` successor is started with the *same* listening
sockets (never closed and bound again, which refuses connections; never a second
``SO_REUSEPORT`` socket, whose queue is dropped when it closes), so the kernel keeps
queueing connections on them whichever process accepts. A successor that was started
by someone else connects to a Unix socket of ours instead, and the listeners travel
with the snapshot in one ``SCM_RIGHTS`` message.

The state moves only after a handshake in which the successor says which schema
versions it can read, and it moves in a sealed memfd. Until the successor reports
``READY`` nothing is given up: on any failure a spawned successor is stopped, the
server resumed, and the old process goes on as before. After ``COMMIT`` the old
process still holds its state, its listeners and its writers until the successor
confirms that it serves (``SERVING``); if the successor dies first, the old
process takes the state back and resumes.

The conversation is written once, as steps (:mod:`statemigrate.handoff._drive`):
:func:`send_handoff` runs them blocking, :func:`send_handoff_async` on the event loop.
This module checks a handoff's arguments and holds its entry points; the message
exchange is :mod:`statemigrate.handoff._sendexchange`, the steps around a spawned or
connected successor and the cleanup after a failure
:mod:`statemigrate.handoff._sendsuccessor`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping, Sequence

from statemigrate._errors import ConfigurationError, HandoffError
from statemigrate._observe._instruments import UNNAMED_SERVICE
from statemigrate.handoff._control import (
    AsyncServerControl,
    ServerControl,
    check_control,
)
from statemigrate.handoff._drive import Steps, run_async, run_blocking
from statemigrate.handoff._env import CONTROL_NAME, check_name
from statemigrate.handoff._fdcheck import check_listener
from statemigrate.handoff._options import HandoffTimeouts, Spawn
from statemigrate.handoff._report import HandoffReport
from statemigrate.handoff._rounds import Rounds
from statemigrate.handoff._sendexchange import Prepare, Prepared
from statemigrate.handoff._sendsuccessor import socket_steps, spawn_steps

__all__ = [
    "DEFAULT_TIMEOUTS",
    "ExportState",
    "Prepare",
    "handoff_steps",
    "send_handoff",
    "send_handoff_async",
]

#: ``export_state(readable)``: return the snapshot bytes in versions the successor reads.
ExportState = Callable[[Mapping[str, Sequence[int]]], bytes]

DEFAULT_TIMEOUTS = HandoffTimeouts()

# One handoff at a time per process: two successors cannot both own the state.
_in_progress = threading.Lock()


def _check_listeners(listeners: Mapping[str, socket.socket]) -> None:
    for name, sock in listeners.items():
        check_name(name)
        if name == CONTROL_NAME:
            raise HandoffError("start", f"the name {CONTROL_NAME!r} is reserved")
        check_listener(sock.fileno(), name=name, families=(sock.family,), stage="start")


def _attempt(
    successor: Spawn | socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    rounds: Rounds | None,
    timeouts: HandoffTimeouts,
    service: str,
) -> Steps[HandoffReport]:
    if not _in_progress.acquire(blocking=False):
        raise HandoffError("start", "another handoff is already in progress in this process")
    try:
        _check_listeners(listeners)
        if isinstance(successor, Spawn):
            return (
                yield from spawn_steps(
                    successor,
                    listeners=listeners,
                    prepare=prepare,
                    rounds=rounds,
                    timeouts=timeouts,
                    service=service,
                )
            )
        return (
            yield from socket_steps(
                successor,
                listeners=listeners,
                prepare=prepare,
                rounds=rounds,
                timeouts=timeouts,
                service=service,
            )
        )
    finally:
        _in_progress.release()


def handoff_steps(
    successor: Spawn | socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    control: object,
    timeouts: HandoffTimeouts,
    asynchronous: bool,
    rounds: Rounds | None = None,
    service: str = UNNAMED_SERVICE,
) -> Steps[HandoffReport]:
    """Check the arguments of a handoff now, and return its steps (run by a driver).

    ``service`` is the name of the service handed over, which its metrics carry
    (``UNNAMED_SERVICE``, ``"unnamed"``, for bytes handed over without one).

    Raises:
        ConfigurationError: ``successor``, ``control`` or ``timeouts`` is not of a
            usable kind (``control`` of the other flavour included).
    """
    if not isinstance(successor, Spawn | socket.socket):
        raise ConfigurationError(
            "successor",
            f"must be a Spawn or a connected socket, not {type(successor).__name__}",
        )
    if not isinstance(timeouts, HandoffTimeouts):
        raise ConfigurationError(
            "timeouts", f"must be a HandoffTimeouts, not {type(timeouts).__name__}"
        )
    check_control(control, asynchronous=asynchronous)
    return _attempt(
        successor,
        listeners=listeners,
        prepare=prepare,
        rounds=rounds,
        timeouts=timeouts,
        service=service,
    )


def _exporting(export_state: ExportState) -> Prepare:
    if not callable(export_state):
        raise ConfigurationError("export_state", f"must be a function, not {export_state!r}")

    def prepare(readable: Mapping[str, Sequence[int]]) -> Prepared:
        return Prepared(lambda: export_state(readable))

    return prepare


def send_handoff(
    successor: Spawn | socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    export_state: ExportState,
    control: ServerControl | None = None,
    timeouts: HandoffTimeouts = DEFAULT_TIMEOUTS,
) -> HandoffReport:
    """Hand the listeners and the state to a successor, and step aside once it is ready.

    The steps, each bounded in time (``timeouts``):

    1. with a :class:`~statemigrate.handoff.Spawn`, start it with ``close_fds=True``:
       it inherits stdin/stdout/stderr, the listeners and one end of a control
       channel, named in ``STATEMIGRATE_FDS``; with a socket, check that the peer
       runs as our user;
    2. wait for its HELLO (what schema versions it reads);
    3. ``control.pause()``, then ``export_state(readable)`` for the snapshot bytes;
    4. send them in a sealed memfd (over a socket, with the listeners);
    5. wait for READY, send COMMIT;
    6. wait for SERVING (the successor confirms that it serves; one of an older
       release, which does not announce it, owns the state at COMMIT), then
       ``control.stop_accepting()``.

    The listeners stay open and accepting in this process throughout, so no
    connection is refused. Requests that ``pause()`` held back must not change the
    old state once this returns (the successor owns it): answer them with a
    retryable error or forward them, then drain (see
    :class:`~statemigrate.handoff.Drainer`) and exit.

    Args:
        successor: a :class:`~statemigrate.handoff.Spawn` to start, or an accepted
            ``AF_UNIX`` ``SOCK_SEQPACKET`` connection from a successor started by
            someone else (it stays open and remains the caller's).
        listeners: listening sockets by name; the names are what the successor sees.
        export_state: builds the snapshot for the versions the successor reads;
            raising refuses the handoff (stage ``export``).
        control: pauses, resumes and stops the server
            (:class:`~statemigrate.handoff.ServerControl`); ``None`` when there is
            nothing to hold. ``resume()`` is called only when the handoff fails after
            ``pause()``.
        timeouts: how long each wait may last.

    Returns:
        The report of the successful handoff. A spawned successor stays a child of
        this process (reap it with ``os.waitpid`` if this process lives on).

    Raises:
        ConfigurationError: an argument is of the wrong kind (before anything starts).
        SuccessorFailedError: the successor reported FAILED, exited or hung up;
            stage ``serving`` when it ended after COMMIT without confirming that
            it serves: this process took its state back and resumed.
        HandoffError: stage ``start`` (``report`` is ``None``) when another handoff
            is in progress or a listener is unusable; stage ``peer`` when the
            connected successor runs as another user. Otherwise the stage that
            failed, with the attempt's ``report``. A spawned successor has been
            stopped and reaped, and ``resume()`` called if ``pause()`` had been
            (before the successor exited, when it never got COMMIT).
    """
    steps = handoff_steps(
        successor,
        listeners=listeners,
        prepare=_exporting(export_state),
        control=control,
        timeouts=timeouts,
        asynchronous=False,
    )
    return run_blocking(steps, control)


async def send_handoff_async(
    successor: Spawn | socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    export_state: ExportState,
    control: AsyncServerControl | None = None,
    timeouts: HandoffTimeouts = DEFAULT_TIMEOUTS,
) -> HandoffReport:
    """:func:`send_handoff` on the running event loop, for an asyncio server.

    Every wait (for HELLO, for READY, for a failed successor to exit) is a wait on the
    loop's readiness of the control socket and the successor's pidfd, so the loop
    keeps serving meanwhile; ``control``'s methods are awaited. ``export_state`` runs
    inline on the loop, while the server is paused. Cancelling the task stops a
    spawned successor and resumes the server before the cancellation propagates.

    Raises:
        ConfigurationError, SuccessorFailedError, HandoffError: as for
            :func:`send_handoff`; a blocking ``control`` is refused.
    """
    steps = handoff_steps(
        successor,
        listeners=listeners,
        prepare=_exporting(export_state),
        control=control,
        timeouts=timeouts,
        asynchronous=True,
    )
    return await run_async(steps, control)
