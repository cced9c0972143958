"""The old process's side of a handoff: spawn a successor, hand over, keep serving on failure.

:func:`upgrade` follows NGINX's binary upgrade and Cloudflare's tableflip: the
successor is started with the *same* listening sockets (never closed and bound
again, which refuses connections; never a second ``SO_REUSEPORT`` socket, whose
queue is dropped when it closes), so the kernel keeps queueing connections on them
whichever process accepts. The state moves only after a handshake in which the
successor says which schema versions it can read, and it moves in a sealed memfd.
Until the successor reports ``READY`` nothing is given up: on any failure the
successor is stopped, ``resume()`` is called and the old process goes on as before.

:func:`send_handoff` runs the same conversation with a process that was not
started by us (it connected to a Unix socket we listen on); the listeners then
travel with the snapshot in one ``SCM_RIGHTS`` message.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from statemigrate._errors import HandoffError, StoreError
from statemigrate.handoff._env import CONTROL_NAME, check_name, successor_environ
from statemigrate.handoff._fdcheck import check_listener
from statemigrate.handoff._fdpass import require_same_user
from statemigrate.handoff._protocol import (
    Abort,
    Channel,
    Commit,
    Failed,
    Hello,
    Message,
    Ready,
    SnapshotOffer,
    message_name,
)
from statemigrate.handoff._report import HandoffReport, Transport
from statemigrate.stores import MemfdStore

__all__ = ["ExportState", "send_handoff", "upgrade"]

logger = logging.getLogger("statemigrate.handoff")

#: ``export_state(readable)``: return the snapshot bytes in versions the successor reads.
ExportState = Callable[[Mapping[str, Sequence[int]]], bytes]

_FAILED_PREFIX = "the successor failed: "

# One handoff at a time per process: two successors cannot both own the state.
_in_progress = threading.Lock()


class _Successor(subprocess.Popen[bytes]):
    """A successor process that may be left running on purpose once it has taken over."""

    released = False

    def __del__(self, *args: Any, **kwargs: Any) -> None:
        # Popen warns about a child still running when collected; a successor that
        # took over is meant to outlive this object (and usually this process).
        if not self.released:
            super().__del__(*args, **kwargs)


class _SuccessorGone(HandoffError):
    """The successor exited or hung up; its exit status is worth reporting."""

    def __init__(self, stage: str, awaited: str) -> None:
        self.awaited = awaited
        super().__init__(stage, f"the successor hung up before sending {awaited}")


class _Attempt:
    """The facts of one attempt, gathered as it goes, for its report."""

    def __init__(self, transport: Transport, listeners: Sequence[str]) -> None:
        self.transport: Transport = transport
        self.listeners = tuple(listeners)
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.successor_pid: int | None = None
        self.successor_exit: int | None = None
        self.readable: dict[str, tuple[int, ...]] = {}
        self.snapshot_size = 0
        self.paused = False
        self.problems: list[str] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = time.monotonic() - began

    def report(self, *, stage: str | None = None, reason: str | None = None) -> HandoffReport:
        timings = dict(self.timings)
        timings["total"] = time.monotonic() - self.started
        return HandoffReport(
            outcome="ready" if stage is None else "failed",
            transport=self.transport,
            stage=stage,
            reason=reason,
            successor_pid=self.successor_pid,
            successor_exit=self.successor_exit,
            listeners=self.listeners,
            readable=dict(self.readable),
            snapshot_size=self.snapshot_size,
            timings=timings,
            problems=tuple(self.problems),
        )


def _check_listeners(listeners: Mapping[str, socket.socket]) -> None:
    for name, sock in listeners.items():
        check_name(name)
        if name == CONTROL_NAME:
            raise HandoffError("start", f"the name {CONTROL_NAME!r} is reserved")
        check_listener(sock.fileno(), name=name, families=(sock.family,), stage="start")


def _expect(
    got: tuple[Message, list[int]] | str, wanted: type[Message], *, stage: str, timeout: float
) -> Message:
    """Turn what :meth:`Channel.receive` returned into ``wanted`` or a HandoffError."""
    name = {Hello: "HELLO", Ready: "READY"}.get(wanted, wanted.__name__)
    if got == "timeout":
        raise HandoffError(stage, f"no {name} from the successor within {timeout:g} s")
    if got in ("watch", "closed"):
        raise _SuccessorGone(stage, name)
    assert not isinstance(got, str)
    message, _fds = got  # the old side accepts no descriptors, so _fds is empty
    if isinstance(message, Failed):
        raise HandoffError(stage, f"{_FAILED_PREFIX}{message.reason}")
    if not isinstance(message, wanted):
        raise HandoffError(stage, f"protocol error: expected {name}, got {message_name(message)}")
    return message


def _exchange(
    channel: Channel,
    attempt: _Attempt,
    *,
    peer_pid: int | None,
    watch: int | None,
    send_listeners: Mapping[str, socket.socket],
    export_state: ExportState,
    pause: Callable[[], None] | None,
    handshake_timeout: float,
    ready_timeout: float,
) -> None:
    """Run the conversation up to and including COMMIT; raise HandoffError on failure."""
    with attempt.phase("handshake"):
        deadline = time.monotonic() + handshake_timeout
        got = channel.receive(stage="handshake", deadline=deadline, watch=watch)
        hello = _expect(got, Hello, stage="handshake", timeout=handshake_timeout)
    assert isinstance(hello, Hello)
    if peer_pid is not None and hello.pid != peer_pid:
        raise HandoffError("handshake", f"HELLO names pid {hello.pid}, the peer is pid {peer_pid}")
    attempt.readable = dict(hello.readable)
    logger.info("handoff: successor pid %d can read %s", hello.pid, hello.readable)

    with attempt.phase("export"):
        if pause is not None:
            try:
                pause()
            except Exception as exc:
                raise HandoffError("pause", f"pause() raised {exc!r}") from exc
        attempt.paused = True
        try:
            data = export_state(dict(hello.readable))
        except Exception as exc:
            raise HandoffError("export", f"export_state() raised {exc!r}") from exc
        if not isinstance(data, bytes | bytearray | memoryview):
            raise HandoffError(
                "export", f"export_state() returned {type(data).__name__}, not bytes"
            )

    with attempt.phase("transfer"), MemfdStore(name="statemigrate-handoff") as store:
        try:
            ref = store.commit(data)
        except StoreError as exc:
            raise HandoffError("transfer", f"cannot commit the snapshot to a memfd: {exc}") from exc
        fds = [ref.fd, *(sock.fileno() for sock in send_listeners.values())]
        offer = SnapshotOffer(size=ref.size, listeners=tuple(send_listeners))
        channel.send(offer, fds, stage="transfer")
        attempt.snapshot_size = offer.size

    with attempt.phase("ready"):
        deadline = time.monotonic() + ready_timeout
        got = channel.receive(stage="ready", deadline=deadline, watch=watch)
        ready = _expect(got, Ready, stage="ready", timeout=ready_timeout)
    assert isinstance(ready, Ready)
    # Only the successor we talked to may take the state (its pid was checked at HELLO).
    if ready.pid != hello.pid:
        raise HandoffError(
            "ready",
            f"protocol error: READY names pid {ready.pid}, the successor is pid {hello.pid}",
        )
    # From here the successor owns the state: we never resume mutating it.
    channel.send(Commit(), stage="commit")


def _fail(
    attempt: _Attempt,
    channel: Channel | None,
    error: HandoffError,
    resume: Callable[[], None] | None,
) -> HandoffError:
    """Cancel the attempt on our side and build the error to raise."""
    detail = error.detail
    if channel is not None:
        channel.try_send(Abort(reason=f"{error.stage}: {detail}"), stage=error.stage)
    if attempt.paused and resume is not None:
        try:
            resume()
        except Exception as exc:
            logger.exception("handoff: resume() raised after a failed handoff")
            attempt.problems.append(f"resume() raised {exc!r}")
            detail += f"; resume() also raised {exc!r}"
    return HandoffError(
        error.stage, detail, report=attempt.report(stage=error.stage, reason=detail)
    )


def _stop(proc: _Successor, grace: float, *, leaving: bool = False) -> int | None:
    """Stop ``proc`` (SIGTERM, then SIGKILL after ``grace`` seconds) and reap it.

    With ``leaving`` (it reported FAILED or hung up, so it is on its way out) it first
    gets ``grace`` seconds to exit by itself, so its own exit status is reported.
    """
    if leaving:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                proc.kill()
            try:
                proc.wait(timeout=30.0)
            except subprocess.TimeoutExpired:  # stuck in the kernel; leave it be
                logger.error("handoff: successor pid %d survives SIGKILL", proc.pid)
    return proc.returncode


def _finish(attempt: _Attempt, stop_accepting: Callable[[], None] | None) -> HandoffReport:
    if stop_accepting is not None:
        try:
            stop_accepting()
        except Exception as exc:
            logger.exception("handoff: stop_accepting() raised after the successor took over")
            attempt.problems.append(f"stop_accepting() raised {exc!r}")
    report = attempt.report()
    logger.info("%s", report.describe())
    return report


def upgrade(
    argv: Sequence[str],
    *,
    listeners: Mapping[str, socket.socket],
    export_state: ExportState,
    pause: Callable[[], None] | None = None,
    resume: Callable[[], None] | None = None,
    stop_accepting: Callable[[], None] | None = None,
    ready_timeout: float = 30.0,
    handshake_timeout: float = 30.0,
    kill_grace: float = 5.0,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> HandoffReport:
    """Start ``argv`` as this process's successor and hand it the listeners and the state.

    The steps, each bounded in time:

    1. spawn ``argv`` with ``close_fds=True``: it inherits stdin/stdout/stderr, the
       listeners and one end of a control channel, named in ``STATEMIGRATE_FDS``;
    2. wait for its HELLO (what schema versions it reads);
    3. call ``pause()``, then ``export_state(readable)`` for the snapshot bytes;
    4. send them in a sealed memfd;
    5. wait for READY, send COMMIT, call ``stop_accepting()``.

    The listeners stay open and accepting in this process throughout, so no
    connection is refused. Requests that ``pause()`` held back must not change the
    old state once this returns (the successor owns it): answer them with a
    retryable error or forward them, then drain (see
    :class:`~statemigrate.handoff.Drainer`) and exit.

    Args:
        argv: the successor's command line (``[sys.executable, ...]`` for a Python
            service); it should call :func:`~statemigrate.handoff.inherit` early.
        listeners: listening sockets by name; the names are what the successor sees.
        export_state: builds the snapshot for the versions the successor reads;
            raising refuses the handoff (``HandoffError`` stage ``export``).
        pause: stops every change to the state; called right before ``export_state``.
        resume: undoes ``pause``; called only when the handoff fails after ``pause``.
        stop_accepting: makes this process stop accepting on its copies of the
            listeners; called once the successor took over. Closing them would not
            hurt the successor, but keep them open until draining ends.
        ready_timeout: seconds to wait for READY after the snapshot was sent.
        handshake_timeout: seconds to wait for HELLO after the spawn.
        kill_grace: seconds between SIGTERM and SIGKILL when stopping a failed successor.
        env: the successor's environment before the handoff variables are added;
            ``os.environ`` by default.
        cwd: the successor's working directory; ours by default.

    Returns:
        The report of the successful handoff; the successor stays a child of this
        process (reap it with ``os.waitpid`` if this process lives on).

    Raises:
        HandoffError: stage ``start`` (``report`` is ``None``) when another handoff
            is in progress or a listener is unusable. Otherwise the stage that
            failed, with the attempt's ``report``; the successor has been stopped
            and reaped, and ``resume()`` called if ``pause()`` had been.
    """
    if not _in_progress.acquire(blocking=False):
        raise HandoffError("start", "another handoff is already in progress in this process")
    try:
        _check_listeners(listeners)
        return _spawn_and_hand_over(
            list(argv),
            listeners=listeners,
            export_state=export_state,
            pause=pause,
            resume=resume,
            stop_accepting=stop_accepting,
            ready_timeout=ready_timeout,
            handshake_timeout=handshake_timeout,
            kill_grace=kill_grace,
            env=os.environ if env is None else env,
            cwd=cwd,
        )
    finally:
        _in_progress.release()


def _spawn_and_hand_over(
    argv: list[str],
    *,
    listeners: Mapping[str, socket.socket],
    export_state: ExportState,
    pause: Callable[[], None] | None,
    resume: Callable[[], None] | None,
    stop_accepting: Callable[[], None] | None,
    ready_timeout: float,
    handshake_timeout: float,
    kill_grace: float,
    env: Mapping[str, str],
    cwd: str | None,
) -> HandoffReport:
    attempt = _Attempt("spawn", list(listeners))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    channel = Channel(ours)
    proc: _Successor | None = None
    pidfd: int | None = None
    try:
        named = {name: sock.fileno() for name, sock in listeners.items()}
        named[CONTROL_NAME] = theirs.fileno()
        environ = successor_environ(env, named, parent_pid=os.getpid())
        with attempt.phase("spawn"):
            try:
                proc = _Successor(
                    argv, close_fds=True, pass_fds=sorted(named.values()), env=environ, cwd=cwd
                )
            except (OSError, ValueError) as exc:
                raise HandoffError("spawn", f"cannot start {argv[:1]}: {exc}") from exc
            finally:
                theirs.close()  # the child has its copy; ours would hide its exit
            attempt.successor_pid = proc.pid
            pidfd = os.pidfd_open(proc.pid)
        logger.info("handoff: started successor pid %d: %s", proc.pid, argv)
        _exchange(
            channel,
            attempt,
            peer_pid=proc.pid,
            watch=pidfd,
            send_listeners={},
            export_state=export_state,
            pause=pause,
            handshake_timeout=handshake_timeout,
            ready_timeout=ready_timeout,
        )
        proc.released = True
        return _finish(attempt, stop_accepting)
    except HandoffError as exc:
        error = exc
        if proc is not None:
            # Tell it first (it may be waiting for a message), then stop it for good.
            channel.try_send(Abort(reason=f"{exc.stage}: {exc.detail}"), stage=exc.stage)
            # It leaves by itself after FAILED, a hang-up, or our ABORT while it waits
            # for us; only a silent or confused successor is signalled at once.
            leaving = (
                isinstance(exc, _SuccessorGone)
                or exc.detail.startswith(_FAILED_PREFIX)
                or exc.stage in ("pause", "export", "transfer", "commit")
            )
            attempt.successor_exit = _stop(proc, kill_grace, leaving=leaving)
            if isinstance(exc, _SuccessorGone):
                status = proc.returncode
                error = HandoffError(
                    exc.stage,
                    f"the successor exited before sending {exc.awaited} (status {status})",
                )
        failure = _fail(attempt, None, error, resume)
        logger.warning("%s", failure.report.describe() if failure.report else failure)
        raise failure from exc
    except BaseException:
        # KeyboardInterrupt or a bug: leave no successor behind and no state paused.
        if proc is not None and not proc.released:
            _stop(proc, kill_grace)
        if attempt.paused and resume is not None:
            resume()
        raise
    finally:
        ours.close()
        theirs.close()
        if pidfd is not None:
            os.close(pidfd)


def send_handoff(
    sock: socket.socket,
    *,
    listeners: Mapping[str, socket.socket],
    export_state: ExportState,
    pause: Callable[[], None] | None = None,
    resume: Callable[[], None] | None = None,
    stop_accepting: Callable[[], None] | None = None,
    ready_timeout: float = 30.0,
    handshake_timeout: float = 30.0,
) -> HandoffReport:
    """Hand the listeners and the state to a process that connected to us.

    Use this when the successor is not our child (started by a supervisor, say): we
    listen on a Unix ``SOCK_SEQPACKET`` socket, the successor connects and calls
    :func:`~statemigrate.handoff.receive_handoff`, and we call this with the accepted
    connection. The conversation is the one of :func:`upgrade`; the listeners travel
    with the snapshot memfd in one ``SCM_RIGHTS`` message.

    Args:
        sock: the accepted connection; it stays open and remains the caller's.
        listeners, export_state, pause, resume, stop_accepting, ready_timeout,
        handshake_timeout: as for :func:`upgrade`.

    Returns:
        The report of the successful handoff.

    Raises:
        HandoffError: stage ``peer`` when the peer runs as another user; otherwise as
            for :func:`upgrade` (except that no process is stopped: it is not ours).
    """
    if not _in_progress.acquire(blocking=False):
        raise HandoffError("start", "another handoff is already in progress in this process")
    try:
        _check_listeners(listeners)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
            raise HandoffError("start", "send_handoff needs a AF_UNIX SOCK_SEQPACKET connection")
        peer = require_same_user(sock)
        attempt = _Attempt("socket", list(listeners))
        attempt.successor_pid = peer.pid
        channel = Channel(sock)
        try:
            _exchange(
                channel,
                attempt,
                peer_pid=peer.pid,
                watch=None,
                send_listeners=listeners,
                export_state=export_state,
                pause=pause,
                handshake_timeout=handshake_timeout,
                ready_timeout=ready_timeout,
            )
        except HandoffError as exc:
            failure = _fail(attempt, channel, exc, resume)
            logger.warning("%s", failure.report.describe() if failure.report else failure)
            raise failure from exc
        except BaseException:
            if attempt.paused and resume is not None:
                resume()
            raise
        return _finish(attempt, stop_accepting)
    finally:
        _in_progress.release()
