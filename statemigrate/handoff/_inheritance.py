"""A successor's end of the conversation with the old process (:class:`Inheritance`).

:func:`~statemigrate.handoff.receive_handoff` takes the descriptors and returns an
:class:`Inheritance`, which speaks for the successor from there on: HELLO, the
pre-copy pieces applied as they come, the snapshot received in its sealed memfd
(with the listeners, over a socket), READY, COMMIT and SERVING, or FAILED. It
watches the old process meanwhile, takes over when that one dies between the
snapshot and COMMIT, and measures the pause it reports.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from types import TracebackType

from statemigrate._errors import HandoffError, StateMigrateError, StoreError
from statemigrate._observe._instruments import UNNAMED_SERVICE
from statemigrate._runtime._lossyexport import record_received_loss
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE
from statemigrate.handoff._drive import Steps, ready_now, run_async, run_blocking, wait_readable
from statemigrate.handoff._env import check_name
from statemigrate.handoff._fdcheck import check_listener
from statemigrate.handoff._fdpass import MAX_FDS, close_all
from statemigrate.handoff._heldwatch import watch_held
from statemigrate.handoff._options import HandoffTimeouts
from statemigrate.handoff._predecessor import died_before_state, running
from statemigrate.handoff._protocol import (
    Abort,
    Applied,
    Channel,
    Commit,
    Failed,
    Hello,
    NoMessage,
    Piece,
    PieceKind,
    Ready,
    Received,
    Serving,
    SnapshotOffer,
    message_name,
)
from statemigrate.handoff._report import FinalPiece, Transport, record_takeover
from statemigrate.stores import open_memfd

__all__ = ["ApplyPiece", "Inheritance", "watch_pid"]

logger = logging.getLogger("statemigrate.handoff")

#: ``on_piece(piece, view)``: apply a pre-copy piece; return what to acknowledge
#: (whether deltas can follow, and why not; the records it changed).
ApplyPiece = Callable[[Piece, memoryview], Applied]


def _open_snapshot(fd: int, *, size: int, max_size: int) -> memoryview:
    """Map the sealed snapshot memfd read-only; the mapping outlives ``fd``."""
    try:
        data = open_memfd(fd, max_size=max_size)
    except StoreError as exc:
        raise HandoffError("receive", f"snapshot refused: {exc}") from exc
    view = data if isinstance(data, memoryview) else memoryview(data)  # b"" when empty
    if view.nbytes != size:
        found = view.nbytes
        view.release()
        raise HandoffError("receive", f"snapshot memfd holds {found} bytes, {size} declared")
    return view


def watch_pid(pid: int, *, parent: bool) -> int | None:
    """A pidfd of the old process, taken while it is known to be alive, or ``None``.

    A pidfd names one process for good, so the old process's death is seen even if
    its pid is reused later. For a parent, our parent pid must still be ``pid`` once
    the pidfd is open: otherwise it died before, and the pid may already be another
    process's. ``None`` where pidfds are missing (Linux before 5.3); the checks then
    fall back to our parent pid, or to ``kill(pid, 0)`` over a socket.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    if parent and os.getppid() != pid:
        os.close(fd)
        return None
    return fd


def _reason(exc: BaseException) -> str:
    """What FAILED says of ``exc``: our errors' message, a cancellation's own reason
    (a task cancelled with a message, such as a successor withdrawing on a stop
    signal), or the exception's repr."""
    if isinstance(exc, StateMigrateError):
        return str(exc)
    # Looked up, not imported: a blocking successor never pays for importing asyncio,
    # and without it no task can have been cancelled.
    cancelled = getattr(sys.modules.get("asyncio"), "CancelledError", None)
    if cancelled is not None and isinstance(exc, cancelled) and exc.args:
        return str(exc.args[0])
    return repr(exc)


_CLOSED = "channel closed"


def _hung_up(error: HandoffError) -> bool:
    """Whether ``error`` is the old process's end of the channel gone: closed while we
    waited, or refusing what we sent. It may have died; other failures say why."""
    cause = error.__cause__
    return error.detail == _CLOSED or isinstance(cause, BrokenPipeError | ConnectionResetError)


# How often the old process's liveness is checked when no pidfd can be waited on.
_LIVENESS_POLL = 0.01


class Inheritance:
    """What a successor inherited, and its end of the conversation with the old process.

    Use it once, in order: :meth:`hello`, then :meth:`ready` or :meth:`failed` (or
    their asyncio flavours :meth:`hello_async` and :meth:`ready_async`). As a context
    manager (``with``, in blocking and asyncio code alike) it reports FAILED for any
    exception that leaves the block before :meth:`ready` succeeded, and closes the
    control channel either way.

    Attributes:
        listeners: the listening sockets by name, non-inheritable. When the old
            process started us they are there at once; over a socket they arrive
            with the snapshot, so they are filled in by :meth:`hello`. They are the
            caller's to close.
        parent_pid: the pid of the process handing over.
        transport: ``"spawn"`` or ``"socket"``.
        timeouts: the waits of :meth:`hello` (``timeouts.snapshot``) and
            :meth:`ready` (``timeouts.commit``).
        closed_strays: how many unnamed inheritable descriptors
            :func:`receive_handoff` closed.
        predecessor_died: :meth:`ready` took over because the old process died
            after sending the snapshot and before COMMIT.
        pause_seconds: once :meth:`ready` returned, how long the writers were held:
            the seconds the old process said it had held them when it sent the
            snapshot, plus this process's own time from the snapshot until it sent
            SERVING (or took over without COMMIT). The message latencies are left
            out, so it is a little shorter than the old process's figure.
        pause_told: the old process said how long it had held the writers. An old
            process of an earlier release does not: ``pause_seconds`` is then the
            time since this process's last message before the snapshot (HELLO, or
            the last APPLIED), a little longer than the pause.
    """

    def __init__(
        self,
        control: socket.socket,
        *,
        listeners: dict[str, socket.socket],
        parent_pid: int,
        transport: Transport,
        expect: frozenset[str] | None,
        families: Collection[int],
        timeouts: HandoffTimeouts,
        closed_strays: int = 0,
        parent_pidfd: int | None = None,
        serves: Callable[[], bool] | None = None,
    ) -> None:
        self.listeners = listeners
        self._will_serve = serves
        self.parent_pid = parent_pid
        self.trace = ""  # the old process's handoff span, from its SNAPSHOT message
        self.transport: Transport = transport
        self.timeouts = timeouts
        self.closed_strays = closed_strays
        self.predecessor_died = False
        # Why the snapshot after pre-copy rounds is a full one, as the old process said.
        self.fallback = ""
        self._kinds: list[PieceKind] = []  # the pre-copy pieces applied so far, by kind
        self.pause_seconds = 0.0
        self.pause_told = False
        # The components the old process exported through lossy steps, as it said:
        # {component: (its version, the version sent, its line)}.
        self.lossy: dict[str, tuple[int, int, str]] = {}
        # The name the take-over's metrics carry (see _ready_steps).
        self._service = UNNAMED_SERVICE
        self._said_by_caller = False
        # For the pause: when this process last sent a message before the snapshot
        # (the old process pauses after reading it), when the snapshot came, and how
        # long the old process said it had held its writers then.
        self._sent_at = 0.0
        self._snapshot_at = 0.0
        self._paused: float | None = None
        self._channel = Channel(control)
        self._pidfd = parent_pidfd
        self._expect = expect
        self._families = families
        self._step = "new"
        # Announce SERVING in HELLO and send it after COMMIT (off only to test the
        # behaviour of older releases against this one).
        self._confirms = True
        # Announce in HELLO that HELD is read after SERVING (off, likewise, only to
        # test older releases); the thread reading it, once started.
        self._hears_held = True
        self.held_watch: threading.Thread | None = None

    def _close_channel(self) -> None:
        self._channel.sock.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _abandon(self, reason: str) -> None:
        """Tell the old process we give up (if it still listens) and close the channel."""
        if self._step not in ("ready", "closed"):
            self._channel.try_send(Failed(reason=reason), stage="failed")
        self._step = "closed"
        self._close_channel()

    def hello(
        self, readable: Mapping[str, Iterable[int]], *, max_size: int = DEFAULT_MAX_SNAPSHOT_SIZE
    ) -> memoryview:
        """Say which schema versions we read, and receive the snapshot.

        Waits up to ``timeouts.snapshot`` seconds (the old process pauses and exports
        meanwhile).

        Args:
            readable: for each component, the schema versions this code can restore;
                the old process exports in versions from these lists.
            max_size: the largest snapshot accepted.

        Returns:
            The snapshot: a read-only view of the memfd, checked to be sealed (so
            it cannot change or shrink under the reader), mapped without a copy.
            Release it (``view.release()``) once restored: it holds the mapping and,
            before Python 3.13, a duplicate of the memfd's descriptor.

        Raises:
            HandoffError: stage ``receive``; the old process aborted or went away, the
                message was malformed or truncated, the memfd unsealed, or a listener
                unusable. FAILED has been sent, the channel and everything received
                closed.
        """
        return run_blocking(self._hello_steps(readable, max_size=max_size), None)

    async def hello_async(
        self, readable: Mapping[str, Iterable[int]], *, max_size: int = DEFAULT_MAX_SNAPSHOT_SIZE
    ) -> memoryview:
        """:meth:`hello`, waiting on the running event loop.

        Raises:
            HandoffError: as for :meth:`hello`.
        """
        return await run_async(self._hello_steps(readable, max_size=max_size), None)

    def _hello_steps(
        self,
        readable: Mapping[str, Iterable[int]],
        *,
        max_size: int,
        on_piece: ApplyPiece | None = None,
        versions: Mapping[str, int] | None = None,
        code_version: str = "",
        lossy: Mapping[str, Iterable[int]] | None = None,
    ) -> Steps[memoryview]:
        """Steps of :meth:`hello`, for a driver.

        With ``on_piece`` the successor announces pre-copy: each piece the old
        process sends before the snapshot is handed to ``on_piece`` (a read-only
        view, released afterwards) and acknowledged with what it returns. Whatever
        ``on_piece`` raises is reported as FAILED and propagates. ``versions`` and
        ``code_version`` announce which release this is (its live schema versions
        and its service's ``code_version``); ``lossy``, the versions it would read
        only through steps declared lossy, which it may not run.
        """
        if self._step != "new":
            raise HandoffError("receive", f"hello() called when the handoff is {self._step}")
        self._step = "hello"
        if self._pidfd is None and self.transport == "spawn":
            # Our parent: while it lives no other process can have its pid.
            self._pidfd = watch_pid(self.parent_pid, parent=True)
        try:
            reads = {name: tuple(int(v) for v in vs) for name, vs in readable.items()}
            hello = Hello(
                pid=os.getpid(),
                readable=reads,
                serving=self._confirms,
                precopy=on_piece is not None,
                versions={name: int(v) for name, v in (versions or {}).items()},
                code_version=code_version,
                lossy={name: tuple(int(v) for v in vs) for name, vs in (lossy or {}).items()},
                held=self._confirms and self._hears_held,
            )
            self._channel.send(hello, stage="receive")
            self._sent_at = time.monotonic()
            while True:
                got = yield from self._receive_snapshot(
                    max_size=max_size, precopy=on_piece is not None
                )
                if isinstance(got, memoryview):
                    return got
                if on_piece is None:
                    got[1].release()
                    raise HandoffError(
                        "receive", "protocol error: a PIECE came, but pre-copy was not announced"
                    )
                self._apply(got, on_piece)
        except HandoffError as exc:
            self._abandon(str(exc))
            if _hung_up(exc) and (yield from self._predecessor_gone()):
                raise HandoffError("receive", died_before_state(self.parent_pid)) from exc
            raise
        except BaseException as exc:
            self._abandon(_reason(exc))
            raise

    def _apply(self, got: tuple[Piece, memoryview], on_piece: ApplyPiece) -> None:
        piece, view = got
        if piece.round != len(self._kinds):
            view.release()
            raise HandoffError(
                "receive",
                f"protocol error: PIECE of round {piece.round}, round {len(self._kinds)} expected",
            )
        try:
            applied = on_piece(piece, view)
        finally:
            view.release()
        self._kinds.append(piece.kind)
        self._channel.send(applied, stage="receive")
        self._sent_at = time.monotonic()

    def _receive_snapshot(
        self, *, max_size: int, precopy: bool = False
    ) -> Steps[memoryview | tuple[Piece, memoryview]]:
        """Steps: the snapshot (a view), or a pre-copy piece with its view."""
        if self.transport == "spawn":
            max_fds = 1
        elif self._expect is not None:
            max_fds = 1 + len(self._expect)
        else:
            max_fds = MAX_FDS - 1
        timeout = self.timeouts.snapshot
        if precopy:  # round 0 of a large state takes the old process a while
            timeout = max(timeout, self.timeouts.precopy)
        got = yield from self._channel.receive(
            stage="receive", max_fds=max_fds, deadline=time.monotonic() + timeout
        )
        arrived = time.monotonic()
        if isinstance(got, NoMessage):
            what = {"timeout": f"no snapshot within {timeout:g} s", "closed": _CLOSED}
            raise HandoffError("receive", what.get(got.why, got.why))
        message, fds = got.message, list(got.fds)
        try:
            if isinstance(message, Abort):
                raise HandoffError("receive", f"the old process aborted: {message.reason}")
            if isinstance(message, Piece):
                if len(fds) != 1:
                    raise HandoffError(
                        "receive", f"protocol error: PIECE carried {len(fds)} descriptors, not 1"
                    )
                return message, _open_snapshot(fds[0], size=message.size, max_size=max_size)
            if not isinstance(message, SnapshotOffer):
                raise HandoffError(
                    "receive", f"protocol error: expected SNAPSHOT, got {message_name(message)}"
                )
            if len(fds) != 1 + len(message.listeners):
                raise HandoffError(
                    "receive",
                    f"protocol error: SNAPSHOT names {len(message.listeners)} listeners"
                    f" but carried {len(fds)} descriptors",
                )
            received = dict(zip(message.listeners, fds[1:], strict=True))
            self._check_listeners(received)
            data = _open_snapshot(fds[0], size=message.size, max_size=max_size)
            # Nothing can fail any more: the listeners become socket objects we keep.
            self.listeners.update({name: socket.socket(fileno=fd) for name, fd in received.items()})
            fds = fds[:1]
            self.trace = message.trace
            self.fallback = message.fallback
            self._snapshot_at = arrived
            self._paused = message.paused
            self.lossy = dict(message.lossy)
            return data
        finally:
            close_all(fds)

    def _check_listeners(self, received: dict[str, int]) -> None:
        if self.transport == "spawn" and received:
            raise HandoffError("receive", "protocol error: listeners sent over a spawn handoff")
        for name, fd in received.items():
            check_name(name, stage="receive")
            if self._expect is not None and name not in self._expect:
                raise HandoffError("receive", f"unexpected listener {name!r}")
            check_listener(fd, name=name, families=self._families, stage="receive")
        if self._expect is not None and self.transport == "socket":
            missing = sorted(self._expect - received.keys())
            if missing:
                raise HandoffError("receive", f"expected listeners not received: {missing}")

    def ready(self) -> None:
        """Report READY, wait until the old process gives up the state, and confirm.

        Call it after the snapshot was restored and verified, right before this
        process starts accepting. Do not change state or acknowledge requests before
        it returns: until then the old process may still cancel the handoff and go
        on with its own state. Once COMMIT arrives it sends SERVING, which lets the
        old process go; if this process dies before, the old one takes the state
        back. Waits up to ``timeouts.commit`` seconds. With ``serves`` (see
        :func:`receive_handoff`), SERVING goes only if it still returns True after
        COMMIT; otherwise the channel closes unconfirmed and the old process takes
        the state back.

        If the old process dies before COMMIT (the channel closes without ABORT, and
        its pid is seen gone within ``timeouts.kill_grace``), this process takes
        over: its restored state is the one the old process held its writers on
        since the snapshot, so nothing acknowledged is missing. ``ready()`` then
        returns normally with :attr:`predecessor_died` set, and the caller serves.

        Raises:
            HandoffError: stage ``commit``; the old process aborted, did not answer in
                time, or closed the channel and lives on. Stage ``serving``: ``serves``
                returned False after COMMIT. This process must then exit without
                serving.
        """
        run_blocking(self._ready_steps(), None)

    async def ready_async(self) -> None:
        """:meth:`ready`, waiting on the running event loop.

        Raises:
            HandoffError: as for :meth:`ready`.
        """
        await run_async(self._ready_steps(), None)

    def _ready_steps(
        self, *, service: str = UNNAMED_SERVICE, said_by_caller: bool = False
    ) -> Steps[None]:
        """Steps of :meth:`ready`, for a driver; ``service`` is the name of the service
        taking over, which the take-over's metrics carry (``"unnamed"`` without one).
        With ``said_by_caller`` the caller logs the take-over's line itself (the
        report's, with sizes and rounds), and this one says nothing."""
        if self._step != "hello":
            raise HandoffError("commit", f"ready() called when the handoff is {self._step}")
        self._service = service
        self._said_by_caller = said_by_caller
        try:
            got: Received | NoMessage
            try:
                self._channel.send(Ready(pid=os.getpid()), stage="commit")
            except HandoffError:
                got = self._queued()  # the old process closed the channel, or died
            else:
                got = yield from self._channel.receive(
                    stage="commit",
                    deadline=time.monotonic() + self.timeouts.commit,
                    watch=self._pidfd,
                )
            if isinstance(got, NoMessage) and got.why != "timeout":
                if (yield from self._predecessor_gone()):
                    got = self._queued()  # what it sent just before it died still counts
                    if isinstance(got, NoMessage):
                        self._took_over()
                        return
            if isinstance(got, NoMessage):
                raise HandoffError("commit", f"no COMMIT from the old process ({got.why})")
            message = got.message
            if isinstance(message, Abort):
                raise HandoffError("commit", f"the old process aborted: {message.reason}")
            if not isinstance(message, Commit):
                raise HandoffError(
                    "commit", f"protocol error: expected COMMIT, got {message_name(message)}"
                )
        except HandoffError:
            self._step = "closed"  # nothing to report to a peer that gave up
            self._close_channel()
            raise
        if self._confirms and self._will_serve is not None and not self._will_serve():
            # It will not serve after all (its server is stopping): unconfirmed, the
            # state goes back to the old process, which still holds its writers.
            self._step = "closed"
            self._close_channel()
            raise HandoffError(
                "serving", "this process will not serve after all: the state stays with"
                " the old process"
            )
        # Taken before SERVING goes: the old process holds its writers until it reads it.
        serving_at = time.monotonic()
        confirmed = False
        if self._confirms:
            # The state was applied before READY: from here this process serves. An
            # old process that died meanwhile needs no answer.
            confirmed = self._channel.try_send(Serving(), stage="serving")
        self._serves(serving_at)
        self._step = "ready"
        if confirmed and self._hears_held:
            self._watch_held()
        self._close_channel()
        if not self._said_by_caller:
            logger.info(
                "handoff: took over from pid %d, pause %.1fms",
                self.parent_pid,
                self.pause_seconds * 1000,
            )

    def _watch_held(self) -> None:
        """A thread reads HELD, the old process's figure of the pause, while this
        process serves (:mod:`statemigrate.handoff._heldwatch`), on a duplicate of the
        channel's socket that it closes: the channel itself closes now, as before."""
        self.held_watch = watch_held(
            Channel(self._channel.sock.dup()),
            service=self._service,
            parent_pid=self.parent_pid,
            measured=self.pause_seconds,
            outcome="predecessor_died" if self.predecessor_died else "committed",
        )

    def _queued(self) -> Received | NoMessage:
        """The message waiting on the channel, if any, without waiting."""
        if ready_now((self._channel.sock.fileno(),)) is None:
            return NoMessage("closed")
        return self._channel.read(stage="commit")

    def _parent_gone_now(self) -> bool:
        if self._pidfd is not None:
            return ready_now((self._pidfd,)) is not None
        if self.transport == "spawn":
            return os.getppid() != self.parent_pid  # re-parented: our parent exited
        return not running(self.parent_pid)

    def _predecessor_gone(self) -> Steps[bool]:
        """Steps: whether the old process is gone, waiting up to ``timeouts.kill_grace``.

        Its channel closes as it exits, a moment before its exit is visible.
        """
        deadline = time.monotonic() + self.timeouts.kill_grace
        while not self._parent_gone_now():
            if self._pidfd is not None:
                if (yield from wait_readable((self._pidfd,), deadline)) is None:
                    return False
            else:
                if time.monotonic() >= deadline:
                    return False
                yield from wait_readable((), min(deadline, time.monotonic() + _LIVENESS_POLL))
        return True

    @property
    def final(self) -> FinalPiece:
        """What the pause carried: the whole snapshot (no pre-copy), the last delta
        after the pieces, or a full snapshot again (the old process said why)."""
        if self.fallback:
            return "full"
        return "delta" if self._kinds else "snapshot"

    def _serves(self, now: float) -> None:
        """This process serves from ``now`` on: measure the pause, record the take-over."""
        if self._paused is not None:
            self.pause_seconds = self._paused + (now - self._snapshot_at)
            self.pause_told = True
        else:
            self.pause_seconds = now - self._sent_at
        record_takeover(
            service=self._service,
            predecessor_died=self.predecessor_died,
            pause_seconds=self.pause_seconds,
            pieces=self._kinds,
            final=self.final,
        )
        record_received_loss(self._service, self.parent_pid, self.lossy)

    def _took_over(self) -> None:
        self.predecessor_died = True
        self._serves(time.monotonic())
        self._step = "ready"
        self._close_channel()
        logger.warning(
            "handoff: the old process pid %d died before COMMIT; serving the restored state",
            self.parent_pid,
        )

    def failed(self, reason: str) -> None:
        """Report that this successor cannot take over, and close the control channel."""
        self._abandon(reason)

    def close(self) -> None:
        """Close the control channel; report FAILED if the handoff did not complete."""
        if self._step != "closed":
            self._abandon("the successor closed the handoff without reporting ready")

    def __enter__(self) -> Inheritance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and self._step not in ("ready", "closed"):
            self._abandon(f"{type(exc).__name__}: {exc}")
        self.close()
