"""The descriptor table of this process, from /proc/self/fd (stdlib only, import first)."""

from __future__ import annotations

import fcntl
import os


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
