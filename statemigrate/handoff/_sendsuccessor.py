"""The old process's steps with a spawned or a connected successor, and their cleanup.

A :class:`~statemigrate.handoff.Spawn` successor is started here with the listeners
and its end of the control channel; a connected one is checked to run as our user.
Either way the exchange (:mod:`statemigrate.handoff._sendexchange`) runs. When it
succeeds, ``stop_accepting()`` is called and the report recorded; when it fails, the
successor is told and stopped (over a socket, made sure to be gone once it holds
COMMIT), ``resume()`` is called and the failure reported, unless the successor
confirmed meanwhile and so keeps the state.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import TypeVar

from statemigrate._errors import HandoffError, SuccessorFailedError, describe_exit
from statemigrate._runtime._lossyexport import record_lossy_exports
from statemigrate.handoff._drive import Steps, call_hook, ready_now, wait_readable
from statemigrate.handoff._env import CONTROL_NAME, successor_environ
from statemigrate.handoff._fdpass import require_same_user
from statemigrate.handoff._latewarning import warn_late_writes
from statemigrate.handoff._options import HandoffTimeouts, Spawn
from statemigrate.handoff._protocol import (
    Abort,
    Channel,
    Failed,
    Held,
    Received,
    Serving,
    awaited,
)
from statemigrate.handoff._report import Attempt, HandoffReport, record_handoff
from statemigrate.handoff._rounds import Rounds
from statemigrate.handoff._sendexchange import Prepare, exchange
from statemigrate.handoff._spawn import Successor, stop_successor
from statemigrate.stores._base import forget_commits

__all__ = ["socket_steps", "spawn_steps"]

logger = logging.getLogger("statemigrate.handoff")

_Message = TypeVar("_Message", Serving, Failed)


def _confirmed_meanwhile(channel: Channel, attempt: Attempt) -> bool:
    """Whether SERVING is waiting on the channel, now that the successor has ended.

    A successor that confirmed and then died owned the state: it may have
    acknowledged writes this process never saw, so the state is not taken back.
    """
    if not attempt.committed or _queued(channel, "serving", Serving) is None:
        return False
    attempt.confirmed = True
    attempt.problems.append("the successor ended right after confirming it serves")
    return True


def _failure_queued(channel: Channel) -> str | None:
    """The reason of a FAILED waiting on the channel, read after a send the successor's
    end refused: it said why before it left, while this process was busy sending."""
    failed = _queued(channel, "failed", Failed)
    return None if failed is None else failed.reason


def _queued(channel: Channel, stage: str, kind: type[_Message]) -> _Message | None:
    """The message of ``kind`` waiting on the channel of a successor that has ended, or
    None: nothing waiting, something else, or a channel that cannot be read."""
    if ready_now((channel.sock.fileno(),)) is None:
        return None
    try:
        got = channel.read(stage=stage)
    except HandoffError:
        return None
    if isinstance(got, Received) and isinstance(got.message, kind):
        return got.message
    return None


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
        # The successor owned the state until it died and may have checkpointed it:
        # this process is the one writer again, not a second one.
        forget_commits()
    detail += note
    detail += yield from _resume_after_failure(attempt)
    report = attempt.report(stage=error.stage, reason=detail)
    record_handoff(report, service=attempt.service)
    if isinstance(error, SuccessorFailedError):
        return SuccessorFailedError(
            error.stage,
            detail,
            reason=error.reason,
            exit_status=error.exit_status,
            report=report,
        )
    return HandoffError(error.stage, detail, report=report)


def _finish(attempt: Attempt, channel: Channel) -> Steps[HandoffReport]:
    try:
        yield from call_hook("stop_accepting")
    except Exception as exc:
        logger.exception("handoff: stop_accepting() raised after the successor took over")
        attempt.problems.append(f"stop_accepting() raised {exc!r}")
    except BaseException:
        _stop_watching(attempt)
        raise
    # The pause ends here, not at SERVING: the held requests wait until
    # stop_accepting() lets them go on (to the successor), and so does the figure.
    attempt.unpaused()
    _tell_late_writes(attempt)
    if attempt.tells_pause and attempt.confirmed:
        # The successor outlives this process: its metrics report this figure. It
        # serves already, so a successor gone meanwhile costs nothing but the figure.
        channel.try_send(Held(paused=attempt.pause_seconds), stage="serving")
    report = attempt.report()
    record_handoff(report, service=attempt.service)
    for line in report.lossy:  # after the pause: the successor owns what was lost
        logger.warning("handoff: %s", line)
    record_lossy_exports(attempt.service, attempt.lossy)
    logger.info("%s", report.summary())
    return report


def _tell_late_writes(attempt: Attempt) -> None:
    """Warn of the components written after the last piece was taken: those writes
    stayed here, and the successor, which serves now, never received them. Marks a
    server control kept (``keep_late_writes``) are its to tell and close, once its
    drain ends."""
    if attempt.late is None:
        return
    if attempt.late.kept:
        attempt.late = None
        return
    warn_late_writes(attempt.late.written(), until="the successor served")
    _stop_watching(attempt)


def _stop_watching(attempt: Attempt) -> None:
    """Close the marks of ``attempt.late``: the tracked fields stop recording."""
    if attempt.late is not None:
        attempt.late.close()
        attempt.late = None


def spawn_steps(
    spawn: Spawn,
    *,
    listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    rounds: Rounds | None,
    timeouts: HandoffTimeouts,
    service: str,
) -> Steps[HandoffReport]:
    attempt = Attempt("spawn", list(listeners), service=service)
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
        yield from exchange(
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
        return (yield from _finish(attempt, channel))
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
                "writes",
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
                return (yield from _finish(attempt, channel))
            reason = _failure_queued(channel) if _hung_up(exc) else None
            if reason is not None:
                error = SuccessorFailedError(
                    exc.stage,
                    f"the successor failed: {reason}",
                    reason=reason,
                    exit_status=status,
                )
            elif _hung_up(exc):
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
                        f" ({describe_exit(status)})"
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
        _stop_watching(attempt)
        ours.close()
        theirs.close()
        if pidfd is not None:
            os.close(pidfd)


def socket_steps(
    sock: socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    prepare: Prepare,
    rounds: Rounds | None,
    timeouts: HandoffTimeouts,
    service: str,
) -> Steps[HandoffReport]:
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        raise HandoffError(
            "start", "the successor's socket must be a connected AF_UNIX SOCK_SEQPACKET socket"
        )
    peer = require_same_user(sock)
    attempt = Attempt("socket", list(listeners), service=service)
    attempt.successor_pid = peer.pid
    channel = Channel(sock)
    try:
        pidfd: int | None = os.pidfd_open(peer.pid)
    except OSError:
        pidfd = None  # gone already, or no pidfds: the channel alone tells
    try:
        yield from exchange(
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
                return (yield from _finish(attempt, channel))
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
        if not attempt.confirmed:  # else _finish tells, then stops watching
            _stop_watching(attempt)
        if pidfd is not None:
            os.close(pidfd)
    return (yield from _finish(attempt, channel))


def _hung_up(error: HandoffError) -> bool:
    """Whether ``error`` is a send that failed because the successor's end is gone."""
    return not isinstance(error, SuccessorFailedError) and isinstance(
        error.__cause__, BrokenPipeError | ConnectionResetError
    )
