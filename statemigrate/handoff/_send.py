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
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Literal

from statemigrate._errors import (
    ConfigurationError,
    HandoffError,
    StoreError,
    SuccessorFailedError,
    describe_exit,
)
from statemigrate.handoff._control import (
    AsyncServerControl,
    ServerControl,
    check_control,
)
from statemigrate.handoff._drive import (
    Steps,
    call_hook,
    ready_now,
    run_async,
    run_blocking,
    settle,
    wait_readable,
)
from statemigrate.handoff._env import CONTROL_NAME, check_name, successor_environ
from statemigrate.handoff._fdcheck import check_listener
from statemigrate.handoff._fdpass import require_same_user
from statemigrate.handoff._fork import freeze_heap, thaw_heap
from statemigrate.handoff._options import HandoffTimeouts, Spawn
from statemigrate.handoff._protocol import (
    Abort,
    Channel,
    Commit,
    Hello,
    Ready,
    Received,
    Serving,
    SnapshotOffer,
    awaited,
    expect_reply,
)
from statemigrate.handoff._report import Attempt, HandoffReport, record_handoff
from statemigrate.handoff._rounds import Payload, Pieces, Rounds, send_rounds
from statemigrate.handoff._spawn import Successor, stop_successor
from statemigrate.stores import MemfdStore

__all__ = [
    "DEFAULT_TIMEOUTS",
    "ExportState",
    "Prepare",
    "handoff_steps",
    "send_handoff",
    "send_handoff_async",
]

logger = logging.getLogger("statemigrate.handoff")

#: ``export_state(readable)``: return the snapshot bytes in versions the successor reads.
ExportState = Callable[[Mapping[str, Sequence[int]]], bytes]
#: ``prepare(readable)``: called with what the successor reads before anything is
#: paused; returns the function that builds the snapshot once the server is paused.
#: Raising :class:`HandoffError` turns the successor away with nobody held.
Prepare = Callable[[Mapping[str, Sequence[int]]], Callable[[], bytes]]

DEFAULT_TIMEOUTS = HandoffTimeouts()

# One handoff at a time per process: two successors cannot both own the state.
_in_progress = threading.Lock()


def _check_listeners(listeners: Mapping[str, socket.socket]) -> None:
    for name, sock in listeners.items():
        check_name(name)
        if name == CONTROL_NAME:
            raise HandoffError("start", f"the name {CONTROL_NAME!r} is reserved")
        check_listener(sock.fileno(), name=name, families=(sock.family,), stage="start")


def _exchange(
    channel: Channel,
    attempt: Attempt,
    *,
    peer_pid: int,
    watch: int | None,
    send_listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    rounds: Rounds | None,
    timeouts: HandoffTimeouts,
) -> Steps[None]:
    """Steps: the conversation up to and including COMMIT; HandoffError on failure."""
    with attempt.phase("handshake"):
        deadline = time.monotonic() + timeouts.hello
        got = yield from channel.receive(stage="handshake", deadline=deadline, watch=watch)
        hello = expect_reply(got, Hello, stage="handshake", timeout=timeouts.hello)
    assert isinstance(hello, Hello)
    if hello.pid != peer_pid:
        raise HandoffError("handshake", f"HELLO names pid {hello.pid}, the peer is pid {peer_pid}")
    attempt.readable = dict(hello.readable)
    attempt.successor_versions = dict(hello.versions)
    attempt.successor_code_version = hello.code_version
    logger.info("handoff: successor pid %d can read %s", hello.pid, hello.readable)

    try:
        build = prepare(dict(hello.readable))
    except HandoffError as exc:
        # A refusal: nobody has been paused. The old process knows only its own
        # steps; what the successor would read through its lossy ones, it announced.
        if exc.stage == "export" and hello.lossy:
            raise HandoffError("export", exc.detail + lossy_hint(hello.lossy)) from exc
        raise
    except Exception as exc:
        raise HandoffError("export", f"preparing the export raised {exc!r}") from exc
    pieces: Pieces | None = None
    frozen = False
    try:
        deltas = False
        if rounds is not None and hello.precopy:
            pieces = _open_pieces(rounds, hello)
            # No full collection of the heap while the rounds and the pause run: it
            # would stall serving, and the pause, for up to a second at a few million
            # objects. Objects made meanwhile are collected as usual.
            frozen = freeze_heap()
            with attempt.phase("precopy"):
                deltas = yield from send_rounds(
                    channel,
                    attempt,
                    pieces,
                    mode=rounds.mode,
                    watch=watch,
                    timeout=timeouts.precopy,
                    why_not=rounds.why_not,
                )
        yield from _paused_transfer(
            channel,
            attempt,
            build=_last_delta(pieces, build, attempt) if pieces is not None and deltas else build,
            final="snapshot" if pieces is None else "delta" if deltas else "full",
            send_listeners=send_listeners,
        )
    except BaseException:
        thaw_heap(frozen)
        raise
    finally:
        if pieces is not None:
            pieces.close()
    try:
        yield from _commit_steps(channel, attempt, hello, timeouts=timeouts, watch=watch)
    finally:
        thaw_heap(frozen)


def _commit_steps(
    channel: Channel,
    attempt: Attempt,
    hello: Hello,
    *,
    timeouts: HandoffTimeouts,
    watch: int | None,
) -> Steps[None]:
    """Steps: READY, COMMIT, and SERVING when the successor announced it."""
    with attempt.phase("ready"):
        deadline = time.monotonic() + timeouts.ready
        got = yield from channel.receive(
            stage="ready",
            deadline=deadline,
            watch=watch,
            waiting="the successor's READY (its restore; HandoffTimeouts.ready)",
        )
        ready = expect_reply(got, Ready, stage="ready", timeout=timeouts.ready)
    assert isinstance(ready, Ready)
    # Only the successor we talked to may take the state (its pid was checked at HELLO).
    if ready.pid != hello.pid:
        raise HandoffError(
            "ready",
            f"protocol error: READY names pid {ready.pid}, the successor is pid {hello.pid}",
        )
    channel.send(Commit(), stage="commit")
    attempt.committed = True
    if not hello.serving:
        # A successor of a release before SERVING owns the state from COMMIT on.
        attempt.confirmed = True
        return
    # Writers stay held until the successor confirms: if it dies before, the state
    # it got was never acknowledged on, and this process takes it back.
    with attempt.phase("serving"):
        deadline = time.monotonic() + timeouts.serving
        got = yield from channel.receive(stage="serving", deadline=deadline, watch=watch)
        expect_reply(got, Serving, stage="serving", timeout=timeouts.serving)
    attempt.confirmed = True


def _last_delta(
    pieces: Pieces, build: Callable[[], bytes], attempt: Attempt
) -> Callable[[], Payload]:
    """The last delta, or the full snapshot when the delta cannot be exported.

    A full snapshot supersedes the pieces the successor applied, so a delta that
    fails (a component that replaced its tracked collection, say) costs a longer
    pause rather than the handoff.
    """

    def last() -> Payload:
        try:
            return pieces.delta()
        except Exception as exc:
            attempt.fallback = f"the last delta failed: {exc}"
            attempt.final = "full"
            logger.warning("handoff: %s; sending the full snapshot", attempt.fallback)
            return build()

    return last


def lossy_hint(lossy: Mapping[str, Sequence[int]]) -> str:
    """What a refusal to export adds when the successor announced versions it reads only
    through steps declared lossy: those versions, and how to allow the loss."""
    reads = ", ".join(
        f"{name} v{', v'.join(str(v) for v in versions)}"
        for name, versions in sorted(lossy.items())
    )
    return (
        f"; the successor would read {reads} through steps declared lossy: pass"
        " allow_lossy=True to the successor's take_over (or its server adapter's run) to"
        " upgrade through them"
    )


def _open_pieces(rounds: Rounds, hello: Hello) -> Pieces:
    try:
        return rounds.open(dict(hello.readable))
    except HandoffError:
        raise
    except Exception as exc:
        raise HandoffError("precopy", f"preparing the pre-copy rounds raised {exc!r}") from exc


def _paused_transfer(
    channel: Channel,
    attempt: Attempt,
    *,
    build: Callable[[], Payload],
    final: Literal["snapshot", "delta", "full"],
    send_listeners: Mapping[str, socket.socket],
) -> Steps[None]:
    """Steps: pause, export the last piece (the only one without pre-copy), send it."""
    yield from settle()  # checkpoint commits under way end first, outside the pause
    with attempt.phase("export"):
        attempt.pausing()
        try:
            yield from call_hook("pause")
        except Exception as exc:
            raise HandoffError("pause", f"pause() raised {exc!r}") from exc
        attempt.paused = True
        try:
            data = build()
        except Exception as exc:
            what = "exporting the last delta" if final == "delta" else "export_state()"
            raise HandoffError("export", f"{what} raised {exc!r}") from exc
        if not isinstance(data, bytes | bytearray | memoryview) and final == "snapshot":
            raise HandoffError(
                "export", f"export_state() returned {type(data).__name__}, not bytes"
            )

    with attempt.phase("transfer"), MemfdStore(name="statemigrate-handoff") as store:
        try:
            ref = store.commit(data)
        except (StoreError, TypeError) as exc:
            raise HandoffError("transfer", f"cannot commit the snapshot to a memfd: {exc}") from exc
        fds = [ref.fd, *(sock.fileno() for sock in send_listeners.values())]
        offer = SnapshotOffer(
            size=ref.size,
            listeners=tuple(send_listeners),
            trace=attempt.span.traceparent() or "",
            fallback=attempt.fallback or "",
            # The successor outlives this process: it reports the whole pause.
            paused=attempt.held(),
        )
        channel.send(offer, fds, stage="transfer")
        attempt.snapshot_size = offer.size
        attempt.final = attempt.final or final  # set already when the last delta failed
        if attempt.fallback:
            logger.info("handoff: full snapshot in the pause: %s", attempt.fallback)


def _confirmed_meanwhile(channel: Channel, attempt: Attempt) -> bool:
    """Whether SERVING is waiting on the channel, now that the successor has ended.

    A successor that confirmed and then died owned the state: it may have
    acknowledged writes this process never saw, so the state is not taken back.
    """
    if not attempt.committed or ready_now((channel.sock.fileno(),)) is None:
        return False
    try:
        got = channel.read(stage="serving")
    except HandoffError:
        return False
    if isinstance(got, Received) and isinstance(got.message, Serving):
        attempt.confirmed = True
        attempt.problems.append("the successor ended right after confirming it serves")
        return True
    return False


def _end_peer(pid: int, pidfd: int | None, grace: float) -> Steps[bool]:
    """Steps: make sure a successor we did not start is gone; return whether it is.

    It gets ``grace`` seconds to leave by itself, then ``SIGKILL``. A peer in this
    very process (a test) cannot be signalled; it counts as gone once it closed
    the channel.
    """
    if pidfd is None or pid == os.getpid():
        return pid == os.getpid()
    if (yield from wait_readable((pidfd,), time.monotonic() + grace)) is not None:
        return True
    with suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    return (yield from wait_readable((pidfd,), time.monotonic() + grace)) is not None


def _resume_after_failure(attempt: Attempt) -> Steps[str]:
    """Steps: call ``resume()`` if ``pause()`` was called; return what to add to the
    failure's detail (``""``, or that ``resume()`` raised too)."""
    if not attempt.paused:
        return ""
    note = ""
    try:
        yield from call_hook("resume")
    except Exception as exc:
        logger.exception("handoff: resume() raised after a failed handoff")
        attempt.problems.append(f"resume() raised {exc!r}")
        note = f"; resume() also raised {exc!r}"
    attempt.paused = False
    attempt.unpaused()
    return note


def _fail(
    attempt: Attempt, channel: Channel | None, error: HandoffError, *, note: str = ""
) -> Steps[HandoffError]:
    """Steps: cancel the attempt on our side; return the error to raise, with the report.
    ``note`` is what an earlier ``resume()`` added to the detail."""
    detail = error.detail
    if channel is not None:
        channel.try_send(Abort(reason=f"{error.stage}: {detail}"), stage=error.stage)
    if attempt.committed:
        detail += "; this process took its state back"
    detail += note
    detail += yield from _resume_after_failure(attempt)
    report = attempt.report(stage=error.stage, reason=detail)
    record_handoff(report)
    if isinstance(error, SuccessorFailedError):
        return SuccessorFailedError(
            error.stage,
            detail,
            reason=error.reason,
            exit_status=error.exit_status,
            report=report,
        )
    return HandoffError(error.stage, detail, report=report)


def _finish(attempt: Attempt) -> Steps[HandoffReport]:
    try:
        yield from call_hook("stop_accepting")
    except Exception as exc:
        logger.exception("handoff: stop_accepting() raised after the successor took over")
        attempt.problems.append(f"stop_accepting() raised {exc!r}")
    # The pause ends here, not at SERVING: the held requests wait until
    # stop_accepting() lets them go on (to the successor), and so does the figure.
    attempt.unpaused()
    report = attempt.report()
    record_handoff(report)
    logger.info("%s", report.summary())
    return report


def _spawn_steps(
    spawn: Spawn,
    *,
    listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    rounds: Rounds | None,
    timeouts: HandoffTimeouts,
) -> Steps[HandoffReport]:
    attempt = Attempt("spawn", list(listeners))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    channel = Channel(ours)
    proc: Successor | None = None
    pidfd: int | None = None
    try:
        named = {name: sock.fileno() for name, sock in listeners.items()}
        named[CONTROL_NAME] = theirs.fileno()
        base = os.environ if spawn.env is None else spawn.env
        environ = successor_environ(base, named, parent_pid=os.getpid())
        argv = list(spawn.argv)
        with attempt.phase("spawn"):
            try:
                proc = Successor(
                    argv,
                    close_fds=True,
                    pass_fds=sorted(named.values()),
                    env=environ,
                    cwd=spawn.cwd,
                )
            except (OSError, ValueError) as exc:
                raise HandoffError("spawn", f"cannot start {argv[:1]}: {exc}") from exc
            finally:
                theirs.close()  # the child has its copy; ours would hide its exit
            attempt.successor_pid = proc.pid
            try:
                pidfd = os.pidfd_open(proc.pid)
            except OSError as exc:
                raise HandoffError("spawn", f"cannot watch pid {proc.pid}: {exc}") from exc
        logger.info("handoff: started successor pid %d: %s", proc.pid, argv)
        yield from _exchange(
            channel,
            attempt,
            peer_pid=proc.pid,
            watch=pidfd,
            send_listeners={},
            prepare=prepare,
            rounds=rounds,
            timeouts=timeouts,
        )
        proc.released = True
        return (yield from _finish(attempt))
    except HandoffError as exc:
        error = exc
        note = ""
        if proc is not None:
            # Tell it first (it may be waiting for a message), then stop it for good.
            channel.try_send(Abort(reason=f"{exc.stage}: {exc.detail}"), stage=exc.stage)
            # It leaves by itself after FAILED, a hang-up, or our ABORT while it waits
            # for us; only a silent or confused successor is signalled at once.
            leaving = isinstance(exc, SuccessorFailedError) or exc.stage in (
                "precopy",
                "pause",
                "export",
                "transfer",
                "commit",
                "serving",
            )
            if not attempt.committed:
                # Without COMMIT it never serves, so the writers held by pause() need
                # not wait for its exit: a server shutting down takes seconds.
                note = yield from _resume_after_failure(attempt)
            status = yield from stop_successor(proc, pidfd, timeouts.kill_grace, leaving=leaving)
            attempt.successor_exit = status
            if _confirmed_meanwhile(channel, attempt):
                proc.released = True
                return (yield from _finish(attempt))
            if _hung_up(exc):
                # A send the successor's end refused: it died or closed the channel
                # while this process was busy (a round 0 export, say).
                error = SuccessorFailedError(
                    exc.stage,
                    f"the successor hung up during {exc.stage} ({describe_exit(status)}):"
                    f" {exc.detail}",
                    exit_status=status,
                )
            elif isinstance(exc, SuccessorFailedError):
                detail = exc.detail
                if exc.reason is None:
                    detail = (
                        f"the successor exited before sending {awaited(exc.stage)}"
                        f" (status {status})"
                    )
                error = SuccessorFailedError(
                    exc.stage, detail, reason=exc.reason, exit_status=status
                )
        failure = yield from _fail(attempt, None, error, note=note)
        logger.warning("%s", failure.report.summary() if failure.report else failure)
        raise failure from exc
    except GeneratorExit:
        # Dropped by its driver unfinished: waiting is no longer possible.
        if proc is not None and not proc.released:
            with suppress(ProcessLookupError):
                proc.kill()
        raise
    except BaseException:
        # KeyboardInterrupt, a cancelled task or a bug: leave no successor behind and
        # no server paused (unless the successor already owns the state).
        if proc is not None and not proc.released and not attempt.confirmed:
            yield from stop_successor(proc, pidfd, timeouts.kill_grace)
            _confirmed_meanwhile(channel, attempt)
        if attempt.paused and not attempt.confirmed:
            yield from call_hook("resume")
        raise
    finally:
        ours.close()
        theirs.close()
        if pidfd is not None:
            os.close(pidfd)


def _socket_steps(
    sock: socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    rounds: Rounds | None,
    timeouts: HandoffTimeouts,
) -> Steps[HandoffReport]:
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        raise HandoffError(
            "start", "the successor's socket must be a connected AF_UNIX SOCK_SEQPACKET socket"
        )
    peer = require_same_user(sock)
    attempt = Attempt("socket", list(listeners))
    attempt.successor_pid = peer.pid
    channel = Channel(sock)
    try:
        pidfd: int | None = os.pidfd_open(peer.pid)
    except OSError:
        pidfd = None  # gone already, or no pidfds: the channel alone tells
    try:
        yield from _exchange(
            channel,
            attempt,
            peer_pid=peer.pid,
            watch=None,
            send_listeners=listeners,
            prepare=prepare,
            rounds=rounds,
            timeouts=timeouts,
        )
    except HandoffError as exc:
        if attempt.committed and not attempt.confirmed:
            # It holds COMMIT: it must be gone before this process takes the state back.
            gone = yield from _end_peer(peer.pid, pidfd, timeouts.kill_grace)
            if _confirmed_meanwhile(channel, attempt):
                return (yield from _finish(attempt))
            if not gone:
                attempt.problems.append(f"successor pid {peer.pid} could not be stopped")
        failure = yield from _fail(attempt, channel, exc)
        logger.warning("%s", failure.report.summary() if failure.report else failure)
        raise failure from exc
    except GeneratorExit:
        raise
    except BaseException:
        if attempt.paused and not attempt.confirmed:
            yield from call_hook("resume")
        raise
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return (yield from _finish(attempt))


def _attempt(
    successor: Spawn | socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    rounds: Rounds | None,
    timeouts: HandoffTimeouts,
) -> Steps[HandoffReport]:
    if not _in_progress.acquire(blocking=False):
        raise HandoffError("start", "another handoff is already in progress in this process")
    try:
        _check_listeners(listeners)
        if isinstance(successor, Spawn):
            return (
                yield from _spawn_steps(
                    successor,
                    listeners=listeners,
                    prepare=prepare,
                    rounds=rounds,
                    timeouts=timeouts,
                )
            )
        return (
            yield from _socket_steps(
                successor,
                listeners=listeners,
                prepare=prepare,
                rounds=rounds,
                timeouts=timeouts,
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
) -> Steps[HandoffReport]:
    """Check the arguments of a handoff now, and return its steps (run by a driver).

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
        successor, listeners=listeners, prepare=prepare, rounds=rounds, timeouts=timeouts
    )


def _exporting(export_state: ExportState) -> Prepare:
    if not callable(export_state):
        raise ConfigurationError("export_state", f"must be a function, not {export_state!r}")

    def prepare(readable: Mapping[str, Sequence[int]]) -> Callable[[], bytes]:
        return lambda: export_state(readable)

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


def _hung_up(error: HandoffError) -> bool:
    """Whether ``error`` is a send that failed because the successor's end is gone."""
    return not isinstance(error, SuccessorFailedError) and isinstance(
        error.__cause__, BrokenPipeError | ConnectionResetError
    )

