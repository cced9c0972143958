"""The descriptor table of this process, from /proc/self/fd (stdlib only, import first);
the descriptors and children a process should not hold after a handoff."""

from __future__ import annotations

import fcntl
import os
import socket


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


def zombies() -> list[int]:
    """This process's children that ended and were not reaped."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(entry))
    return found
