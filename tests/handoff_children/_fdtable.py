"""The descriptor table of this process, from /proc/self/fd (stdlib only, import first);
the descriptors and children a process should not hold after a handoff."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator


def fd_table() -> list[int]:
    """Return the open descriptors, without the one used to list them."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        found.append(fd)
    return sorted(found)


def unexpected_fds(allowed: set[int]) -> list[str]:
    """Descriptors other than ``allowed`` and TCP connections, by what they are."""
    found = []
    for fd in fd_table():
        if fd in allowed:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile: a connection that just ended
        if target.startswith("socket:"):
            try:
                probe = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue
            with probe:
                if probe.family in (socket.AF_INET, socket.AF_INET6):
                    continue
        found.append(f"{fd}:{target}")
    return found


def processes() -> Iterator[tuple[int, list[str]]]:
    """Each process's id and the fields of its /proc stat after the command name (state,
    parent, group, session, ...); processes gone meanwhile are left out."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield int(entry), fields


def zombies() -> list[int]:
    """This process's children that ended and were not reaped."""
    return [
        pid for pid, fields in processes() if fields[0] == "Z" and int(fields[1]) == os.getpid()
    ]
