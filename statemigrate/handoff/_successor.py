"""The successor's side of a handoff: take the descriptors, greet, restore, report.

A successor started by :func:`~statemigrate.handoff.upgrade` calls :func:`inherit`
first thing (before it opens files or starts threads), then::

    inheritance = inherit(expect={"http"})
    if inheritance is None:              # a cold start: nobody handed anything over
        listener = bind_and_listen()
    else:
        with inheritance:                # any exception inside reports FAILED
            snapshot = inheritance.hello({"sessions": [1, 2]})
            restore(snapshot)            # e.g. Service.restore; raise if unusable
            inheritance.ready()          # returns once the old process committed
        listener = inheritance.listeners["http"]
    serve(listener)                      # only now change state and accept

A process that was not started by a handoff gets ``None`` from :func:`inherit`
rather than an error, so one code path serves cold starts and handoffs alike.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Collection, Iterable, Mapping
from types import TracebackType

from statemigrate._errors import HandoffError, StoreError
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE
from statemigrate.handoff._env import CONTROL_NAME, FDS_VAR, check_name, take_environ
from statemigrate.handoff._fdcheck import (
    DEFAULT_FAMILIES,
    check_control,
    check_listener,
    check_passed,
    inheritable_fds,
)
from statemigrate.handoff._fdpass import MAX_FDS, close_all, require_same_user
from statemigrate.handoff._protocol import (
    Abort,
    Channel,
    Commit,
    Failed,
    Hello,
    Ready,
    SnapshotOffer,
    message_name,
)
from statemigrate.handoff._report import Transport
from statemigrate.stores import open_memfd

__all__ = ["Inheritance", "inherit", "receive_handoff"]

logger = logging.getLogger("statemigrate.handoff")


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


class Inheritance:
    """What a successor inherited, and its end of the conversation with the old process.

    Use it once, in order: :meth:`hello`, then :meth:`ready` or :meth:`failed`. As a
    context manager it reports FAILED for any exception that leaves the block before
    :meth:`ready` succeeded, and closes the control channel either way.

    Attributes:
        listeners: the listening sockets by name, non-inheritable. With
            :func:`inherit` they are there at once; with :func:`receive_handoff` they
            arrive with the snapshot, so they are filled in by :meth:`hello`. They are
            the caller's to close.
        parent_pid: the pid of the process handing over.
        transport: ``"spawn"`` or ``"socket"``.
        closed_strays: how many unnamed inheritable descriptors :func:`inherit` closed.
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
        closed_strays: int = 0,
    ) -> None:
        self.listeners = listeners
        self.parent_pid = parent_pid
        self.transport: Transport = transport
        self.closed_strays = closed_strays
        self._channel = Channel(control)
        self._expect = expect
        self._families = families
        self._step = "new"

    def _abandon(self, reason: str) -> None:
        """Tell the old process we give up (if it still listens) and close the channel."""
        if self._step not in ("ready", "closed"):
            self._channel.try_send(Failed(reason=reason), stage="failed")
        self._step = "closed"
        self._channel.sock.close()

    def hello(
        self,
        readable: Mapping[str, Iterable[int]],
        *,
        timeout: float = 60.0,
        max_size: int = DEFAULT_MAX_SNAPSHOT_SIZE,
    ) -> memoryview:
        """Say which schema versions we read, and receive the snapshot.

        Args:
            readable: for each component, the schema versions this code can restore;
                the old process exports in versions from these lists.
            timeout: seconds to wait for the snapshot (the old process pauses and
                exports meanwhile).
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
        if self._step != "new":
            raise HandoffError("receive", f"hello() called when the handoff is {self._step}")
        self._step = "hello"
        try:
            versions = {name: tuple(int(v) for v in vs) for name, vs in readable.items()}
            self._channel.send(Hello(pid=os.getpid(), readable=versions), stage="receive")
            return self._receive_snapshot(timeout=timeout, max_size=max_size)
        except HandoffError as exc:
            self._abandon(str(exc))
            raise

    def _receive_snapshot(self, *, timeout: float, max_size: int) -> memoryview:
        if self.transport == "spawn":
            max_fds = 1
        elif self._expect is not None:
            max_fds = 1 + len(self._expect)
        else:
            max_fds = MAX_FDS - 1
        got = self._channel.receive(
            stage="receive", max_fds=max_fds, deadline=time.monotonic() + timeout
        )
        if isinstance(got, str):
            what = {"timeout": f"no snapshot within {timeout:g} s", "closed": "channel closed"}
            raise HandoffError("receive", what.get(got, got))
        message, fds = got
        try:
            if isinstance(message, Abort):
                raise HandoffError("receive", f"the old process aborted: {message.reason}")
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

    def ready(self, *, timeout: float = 30.0) -> None:
        """Report READY and wait until the old process gives up the state (COMMIT).

        Call it after the snapshot was restored and verified. Do not change state or
        acknowledge requests before it returns: until then the old process may still
        cancel the handoff and go on with its own state.

        Raises:
            HandoffError: stage ``commit``; the old process aborted, went away or did
                not answer in ``timeout`` seconds. This process must then exit
                without serving.
        """
        if self._step != "hello":
            raise HandoffError("commit", f"ready() called when the handoff is {self._step}")
        try:
            self._channel.send(Ready(pid=os.getpid()), stage="commit")
            got = self._channel.receive(stage="commit", deadline=time.monotonic() + timeout)
            if isinstance(got, str):
                raise HandoffError("commit", f"no COMMIT from the old process ({got})")
            message, _fds = got
            if isinstance(message, Abort):
                raise HandoffError("commit", f"the old process aborted: {message.reason}")
            if not isinstance(message, Commit):
                raise HandoffError(
                    "commit", f"protocol error: expected COMMIT, got {message_name(message)}"
                )
        except HandoffError:
            self._step = "closed"  # nothing to report to a peer that gave up
            self._channel.sock.close()
            raise
        self._step = "ready"
        self._channel.sock.close()
        logger.info("handoff: took over from pid %d", self.parent_pid)

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


def inherit(
    *, expect: Iterable[str] | None = None, families: Collection[int] = DEFAULT_FAMILIES
) -> Inheritance | None:
    """Take over the descriptors named by the process that started us.

    Reads and unsets ``STATEMIGRATE_FDS`` and ``STATEMIGRATE_PARENT_PID``, checks
    that the parent pid is our parent, that the control channel is a socket pair
    made by it and owned by our uid, and that every other named descriptor is a
    listening stream socket of ``families``. Every named descriptor becomes
    non-inheritable. Inheritable descriptors above 2 that nobody named (leaked by an
    ancestor) are closed; descriptors this process opened itself are close-on-exec
    and left alone, which is why this should run early.

    Args:
        expect: the listener names this code needs; a missing one is an error, an
            extra one is closed. ``None`` accepts whatever was named.
        families: the address families a listener may have.

    Returns:
        The inheritance, or ``None`` when this process was not started by a handoff
        (``STATEMIGRATE_FDS`` is not set).

    Raises:
        HandoffError: stage ``inherit`` or ``peer``. When the variables are
            malformed, name another process's child, or name a descriptor that is
            not open or is close-on-exec (so was not passed to us), no descriptor
            is touched.
            Otherwise (a wrong descriptor type, a missing listener, a channel that
            belongs to someone else) every named descriptor is closed, and FAILED
            was sent if the channel is our parent's.
    """
    named = take_environ()
    if named is None:
        return None
    # A number that names no descriptor passed to us must not make us close one of ours.
    for name, fd in named.fds.items():
        check_passed(fd, what=f"{FDS_VAR} names {name!r}", stage="inherit")
    remaining = dict(named.fds)
    control_fd = remaining.pop(CONTROL_NAME, None)
    try:
        if control_fd is None:
            raise HandoffError("inherit", f"no descriptor named {CONTROL_NAME!r}")
        check_control(control_fd, stage="inherit")
    except HandoffError:
        close_all(named.fds.values())
        raise
    os.set_inheritable(control_fd, False)
    control = socket.socket(fileno=control_fd)
    try:
        require_same_user(control, pid=named.parent_pid)
    except HandoffError:  # not our parent's channel: say nothing to whoever holds it
        control.close()
        close_all(remaining.values())
        raise
    wanted = None if expect is None else frozenset(expect)
    try:
        if wanted is not None:
            missing = sorted(wanted - remaining.keys())
            if missing:
                raise HandoffError("inherit", f"expected listeners not inherited: {missing}")
            for name in sorted(remaining.keys() - wanted):
                logger.warning("handoff: closing unexpected inherited listener %r", name)
                os.close(remaining.pop(name))
        for name, fd in remaining.items():
            check_listener(fd, name=name, families=families, stage="inherit")
    except HandoffError as exc:
        Channel(control).try_send(Failed(reason=str(exc)), stage="inherit")
        control.close()
        close_all(remaining.values())
        raise
    for fd in remaining.values():
        os.set_inheritable(fd, False)
    listeners = {name: socket.socket(fileno=fd) for name, fd in remaining.items()}
    strays = inheritable_fds()
    close_all(strays)
    if strays:
        logger.warning("handoff: closed %d unnamed inherited descriptors", len(strays))
    return Inheritance(
        control,
        listeners=listeners,
        parent_pid=named.parent_pid,
        transport="spawn",
        expect=wanted,
        families=families,
        closed_strays=len(strays),
    )


def receive_handoff(
    sock: socket.socket,
    *,
    expect: Iterable[str] | None = None,
    families: Collection[int] = DEFAULT_FAMILIES,
) -> Inheritance:
    """Start a handoff from a process we connected to (see :func:`send_handoff`).

    Args:
        sock: a connected ``AF_UNIX`` ``SOCK_SEQPACKET`` socket; the inheritance
            takes ownership and closes it when done.
        expect: the listener names required; others are refused. ``None`` accepts
            whatever is sent.
        families: the address families a listener may have.

    Returns:
        An inheritance whose ``listeners`` are filled in by :meth:`Inheritance.hello`.

    Raises:
        HandoffError: stage ``peer`` when the other end runs as another user, stage
            ``inherit`` when ``sock`` is not a connected seqpacket Unix socket.
    """
    check_control(sock.fileno(), stage="inherit")
    peer = require_same_user(sock)
    return Inheritance(
        sock,
        listeners={},
        parent_pid=peer.pid,
        transport="socket",
        expect=None if expect is None else frozenset(expect),
        families=families,
    )
