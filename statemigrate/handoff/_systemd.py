"""Talking to systemd: readiness notifications, the file descriptor store, ``LISTEN_FDS``.

Under systemd a service can keep its listening sockets and its snapshot memfd in
the manager's *fd store* (``FDSTORE=1``): when the service stops or crashes and is
started again, systemd passes them back through ``LISTEN_FDS``. The sockets never
close, so connections wait in their queues instead of being refused, and the
sealed snapshot survives the process (not a reboot: it lives in memory).

These are small, dependency-free versions of ``sd_notify(3)`` and
``sd_listen_fds_with_names(3)``, with the checks the handoff applies to any
descriptor it did not create itself.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from statemigrate._errors import HandoffError, StoreError
from statemigrate._snapshot._limits import DEFAULT_MAX_SNAPSHOT_SIZE
from statemigrate.handoff._env import check_name, parse_count, parse_pid
from statemigrate.handoff._fdcheck import DEFAULT_FAMILIES, check_listener, check_passed
from statemigrate.handoff._fdpass import close_all, send_fds
from statemigrate.stores import open_memfd

__all__ = [
    "MAX_LISTEN_FDS",
    "SystemdFds",
    "fd_store",
    "fd_store_remove",
    "listen_fds",
    "sd_notify",
]

logger = logging.getLogger("statemigrate.handoff")

#: The first descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3
#: The most descriptors ``LISTEN_FDS`` may announce; far above any fd store or socket
#: unit in practice (journald keeps about 4,200), far below a count that costs memory.
MAX_LISTEN_FDS = 1 << 16
_LISTEN_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def _notify_address(value: str) -> str:
    if value.startswith("@"):  # an abstract socket name
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise HandoffError("notify", f"NOTIFY_SOCKET={value!r} is not a Unix socket address")


def sd_notify(message: str, *, fds: Sequence[int] = ()) -> bool:
    """Send ``message`` (``KEY=value`` lines) to the service manager, with ``fds``.

    Useful messages: ``READY=1``; ``STOPPING=1``; ``MAINPID=<pid>`` (after a handoff,
    the old process names its successor; the unit needs ``NotifyAccess=all``);
    ``STATUS=<text>``. The message and the descriptors go in one datagram.

    Returns:
        ``False`` when ``NOTIFY_SOCKET`` is not set (not running under systemd),
        ``True`` once sent.

    Raises:
        HandoffError: stage ``notify``; the address is unusable or the send failed.
    """
    value = os.environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = _notify_address(value)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
        except OSError as exc:
            raise HandoffError("notify", f"cannot reach NOTIFY_SOCKET {value!r}: {exc}") from exc
        send_fds(sock, message.encode(), fds, stage="notify")
    return True


def fd_store(name: str, fds: Sequence[int]) -> bool:
    """Keep ``fds`` in systemd's fd store under ``name`` (one datagram, ``FDSTORE=1``).

    The unit needs ``FileDescriptorStoreMax=`` large enough (and, to keep them
    across ``systemctl restart``, ``FileDescriptorStorePreserve=yes``). Storing a
    name again adds descriptors; remove the old ones with :func:`fd_store_remove`.

    Returns:
        ``False`` when not running under systemd.

    Raises:
        HandoffError: stage ``notify``.
    """
    check_name(name, stage="notify")
    if not fds:
        raise HandoffError("notify", f"no descriptors to store under {name!r}")
    return sd_notify(f"FDSTORE=1\nFDNAME={name}", fds=fds)


def fd_store_remove(name: str) -> bool:
    """Ask systemd to drop every stored descriptor named ``name`` (``FDSTOREREMOVE=1``).

    Returns:
        ``False`` when not running under systemd.
    """
    check_name(name, stage="notify")
    return sd_notify(f"FDSTOREREMOVE=1\nFDNAME={name}")


def _check_memfd(fd: int, *, max_size: int) -> None:
    try:
        view = open_memfd(fd, max_size=max_size)
    except StoreError as exc:
        raise HandoffError("listen_fds", f"fd {fd}: {exc}") from exc
    if isinstance(view, memoryview):
        view.release()


@dataclass
class SystemdFds:
    """The descriptors systemd passed, checked and sorted by name.

    Attributes:
        listeners: listening sockets by name (several may share a name).
        memfds: sealed memfd descriptors by name (read them, then close them).
        removed: names that were not expected; their descriptors were closed and the
            fd store asked to drop them.
    """

    listeners: dict[str, list[socket.socket]] = field(default_factory=dict)
    memfds: dict[str, list[int]] = field(default_factory=dict)
    removed: tuple[str, ...] = ()


def listen_fds(
    *,
    listeners: Iterable[str] = (),
    memfds: Iterable[str] = (),
    families: Collection[int] = DEFAULT_FAMILIES,
    max_memfd_size: int = DEFAULT_MAX_SNAPSHOT_SIZE,
) -> SystemdFds | None:
    """Take the descriptors systemd passed to this process (``LISTEN_FDS``).

    ``LISTEN_FDS``, ``LISTEN_PID`` and ``LISTEN_FDNAMES`` are read and unset. They
    count only if ``LISTEN_PID`` is our pid (they may have leaked from a parent);
    the descriptors then start at 3, and each must be open and inheritable (as
    systemd passes them): call this before anything else takes them. Descriptors
    whose name is in ``listeners`` must be listening stream sockets of
    ``families``; names in ``memfds`` must be sealed memfds. All become
    close-on-exec. Names in neither are closed and, so systemd stops passing them,
    removed from the fd store.

    Args:
        listeners: names of expected listening sockets.
        memfds: names of expected sealed memfds (for example a stored snapshot).
        families: the address families a listener may have.
        max_memfd_size: the largest memfd accepted.

    Returns:
        The descriptors, or ``None`` when systemd passed none to this process.

    Raises:
        HandoffError: stage ``listen_fds``. When a variable is malformed (a pid or
            count that is not a decimal number in range; at most
            :data:`MAX_LISTEN_FDS` descriptors) or ``LISTEN_FDS`` counts a
            descriptor that is not open or is close-on-exec, no descriptor is
            touched. When the names do not match the count or a descriptor is of
            the wrong kind, every passed descriptor has been closed.
    """
    fds_text, pid_text, names_text = (os.environ.pop(var, None) for var in _LISTEN_VARS)
    if fds_text is None or pid_text is None:
        return None
    pid = parse_pid("LISTEN_PID", pid_text, stage="listen_fds")
    if pid != os.getpid():
        logger.info("LISTEN_PID=%d is not us (pid %d); ignoring LISTEN_FDS", pid, os.getpid())
        return None
    count = parse_count("LISTEN_FDS", fds_text, maximum=MAX_LISTEN_FDS, stage="listen_fds")
    fds = list(range(LISTEN_FDS_START, LISTEN_FDS_START + count))
    # A count larger than what was passed must not make us take (and close) our own.
    for fd in fds:
        check_passed(fd, what=f"LISTEN_FDS={count}", stage="listen_fds")
    names = names_text.split(":") if names_text else ["unknown"] * len(fds)
    if len(names) != len(fds):
        close_all(fds)
        raise HandoffError(
            "listen_fds", f"LISTEN_FDNAMES has {len(names)} names for {len(fds)} descriptors"
        )
    listener_names, memfd_names = set(listeners), set(memfds)
    try:
        for fd, name in zip(fds, names, strict=True):
            if name in listener_names:
                check_listener(fd, name=name, families=families, stage="listen_fds")
            elif name in memfd_names:
                _check_memfd(fd, max_size=max_memfd_size)
    except HandoffError:
        close_all(fds)
        raise

    result = SystemdFds()
    unknown: list[str] = []
    for fd, name in zip(fds, names, strict=True):
        if name in listener_names:
            os.set_inheritable(fd, False)
            result.listeners.setdefault(name, []).append(socket.socket(fileno=fd))
        elif name in memfd_names:
            os.set_inheritable(fd, False)
            result.memfds.setdefault(name, []).append(fd)
        else:
            os.close(fd)
            if name not in unknown:
                unknown.append(name)
    for name in unknown:
        logger.warning(
            "closing unexpected descriptors named %r and dropping them from the store", name
        )
        try:
            fd_store_remove(name)
        except HandoffError as exc:  # a name systemd made up, or no manager to tell
            logger.warning("could not remove %r from the fd store: %s", name, exc)
    result.removed = tuple(unknown)
    return result
