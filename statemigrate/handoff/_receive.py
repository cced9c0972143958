"""The successor's side of a handoff: take the descriptors, greet, restore, report.

A successor started by :func:`~statemigrate.handoff.send_handoff` calls
:func:`receive_handoff` first thing (before it opens files or starts threads), then::

    inheritance = receive_handoff(expect={"http"})
    if inheritance is None:              # a cold start: nobody handed anything over
        listener = bind_and_listen()
    else:
        with inheritance:                # any exception inside reports FAILED
            snapshot = inheritance.hello({"sessions": [1, 2]})
            restore(snapshot)            # e.g. Service.restore; raise if unusable
            inheritance.ready()          # returns once the old process committed
        listener = inheritance.listeners["http"]
    serve(listener)                      # only now change state and accept

A process that was not started by a handoff gets ``None`` rather than an error, so
one code path serves cold starts and handoffs alike. A successor started by someone
else connects to the old process and passes the socket: ``receive_handoff(sock)``.

:meth:`Inheritance.hello` and :meth:`Inheritance.ready` wait; their asyncio flavours
:meth:`Inheritance.hello_async` and :meth:`Inheritance.ready_async` run the same
steps on the event loop.

This module takes the descriptors (:func:`receive_handoff`); the conversation that
follows is :class:`Inheritance`'s, in :mod:`statemigrate.handoff._inheritance`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Collection, Iterable
from typing import overload

from statemigrate._errors import ConfigurationError, HandoffError
from statemigrate.handoff._env import CONTROL_NAME, FDS_VAR, take_environ
from statemigrate.handoff._fdcheck import (
    DEFAULT_FAMILIES,
    check_control,
    check_listener,
    check_passed,
    inheritable_fds,
)
from statemigrate.handoff._fdpass import close_all, require_same_user
from statemigrate.handoff._inheritance import ApplyPiece, Inheritance, watch_pid
from statemigrate.handoff._options import HandoffTimeouts
from statemigrate.handoff._protocol import Channel, Failed

__all__ = ["ApplyPiece", "Inheritance", "receive_handoff"]

logger = logging.getLogger("statemigrate.handoff")


def _from_environment(
    *,
    expect: frozenset[str] | None,
    families: Collection[int],
    timeouts: HandoffTimeouts,
    serves: Callable[[], bool] | None,
) -> Inheritance | None:
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
    try:
        if expect is not None:
            missing = sorted(expect - remaining.keys())
            if missing:
                raise HandoffError("inherit", f"expected listeners not inherited: {missing}")
            for name in sorted(remaining.keys() - expect):
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
        expect=expect,
        families=families,
        timeouts=timeouts,
        closed_strays=len(strays),
        serves=serves,
    )


def _from_socket(
    sock: socket.socket,
    *,
    expect: frozenset[str] | None,
    families: Collection[int],
    timeouts: HandoffTimeouts,
    serves: Callable[[], bool] | None,
) -> Inheritance:
    check_control(sock.fileno(), stage="inherit")
    peer = require_same_user(sock)
    return Inheritance(
        sock,
        listeners={},
        parent_pid=peer.pid,
        transport="socket",
        expect=expect,
        families=families,
        timeouts=timeouts,
        parent_pidfd=watch_pid(peer.pid, parent=False),
        serves=serves,
    )


_DEFAULT_TIMEOUTS = HandoffTimeouts()


@overload
def receive_handoff(
    sock: None = None,
    *,
    expect: Iterable[str] | None = None,
    families: Collection[int] = DEFAULT_FAMILIES,
    timeouts: HandoffTimeouts = _DEFAULT_TIMEOUTS,
    serves: Callable[[], bool] | None = None,
) -> Inheritance | None: ...


@overload
def receive_handoff(
    sock: socket.socket,
    *,
    expect: Iterable[str] | None = None,
    families: Collection[int] = DEFAULT_FAMILIES,
    timeouts: HandoffTimeouts = _DEFAULT_TIMEOUTS,
    serves: Callable[[], bool] | None = None,
) -> Inheritance: ...


def receive_handoff(
    sock: socket.socket | None = None,
    *,
    expect: Iterable[str] | None = None,
    families: Collection[int] = DEFAULT_FAMILIES,
    timeouts: HandoffTimeouts = _DEFAULT_TIMEOUTS,
    serves: Callable[[], bool] | None = None,
) -> Inheritance | None:
    """Take over what the old process hands over: descriptors now, the state next.

    Without ``sock``: take the descriptors named by the process that started us (a
    :class:`~statemigrate.handoff.Spawn` successor). Reads and unsets
    ``STATEMIGRATE_FDS`` and ``STATEMIGRATE_PARENT_PID``, checks that the parent pid
    is our parent, that the control channel is a socket pair made by it and owned by
    our uid, and that every other named descriptor is a listening stream socket of
    ``families``. Every named descriptor becomes non-inheritable. Inheritable
    descriptors above 2 that nobody named (leaked by an ancestor) are closed;
    descriptors this process opened itself are close-on-exec and left alone, which
    is why this should run early.

    With ``sock``: a connected ``AF_UNIX`` ``SOCK_SEQPACKET`` socket to the old
    process (see :func:`~statemigrate.handoff.send_handoff`), whose peer must run as
    our user. The inheritance takes ownership of it; the listeners arrive with the
    snapshot.

    Nothing here waits: :meth:`Inheritance.hello` and :meth:`Inheritance.ready` do.

    Args:
        sock: the connection to the old process, or ``None`` to read the environment.
        expect: the listener names this code needs; a missing one is an error, an
            extra one is closed (inherited) or refused (over a socket). ``None``
            accepts whatever is handed over.
        families: the address families a listener may have.
        timeouts: the waits of :meth:`Inheritance.hello` and :meth:`Inheritance.ready`
            (``snapshot`` and ``commit``).
        serves: asked once COMMIT has arrived, right before SERVING: whether this
            process will serve after all. False (its server is being stopped, its
            supervisor died) sends no SERVING and fails :meth:`Inheritance.ready`,
            and the old process takes its state back and serves on.

    Returns:
        The inheritance. Without ``sock``, ``None`` when this process was not started
        by a handoff (``STATEMIGRATE_FDS`` is not set).

    Raises:
        ConfigurationError: ``timeouts`` is not a :class:`HandoffTimeouts`.
        HandoffError: stage ``inherit`` or ``peer``. When the variables are
            malformed, name another process's child, or name a descriptor that is
            not open or is close-on-exec (so was not passed to us), no descriptor
            is touched.
            Otherwise (a wrong descriptor type, a missing listener, a channel that
            belongs to someone else) every named descriptor is closed, and FAILED
            was sent if the channel is our parent's.
    """
    if not isinstance(timeouts, HandoffTimeouts):
        raise ConfigurationError(
            "timeouts", f"must be a HandoffTimeouts, not {type(timeouts).__name__}"
        )
    wanted = None if expect is None else frozenset(expect)
    if sock is None:
        return _from_environment(
            expect=wanted, families=families, timeouts=timeouts, serves=serves
        )
    return _from_socket(sock, expect=wanted, families=families, timeouts=timeouts, serves=serves)
