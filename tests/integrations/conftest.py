"""Fixtures of the integrations' tests."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

import pytest

FD_SETSIZE = 1024
"""The descriptors ``select.select`` accepts are those below this."""


@pytest.fixture
def descriptors_above_fd_setsize() -> Iterator[None]:
    """Every descriptor below ``FD_SETSIZE`` held open, so the next one opened (a
    socket, a pidfd) is above it, as in a server holding a thousand connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * FD_SETSIZE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        # An unprivileged process may raise its soft limit up to the hard one; a hard
        # limit below makes setrlimit fail, and the test with it.
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held: list[int] = []
    try:
        while not held or held[-1] < FD_SETSIZE:
            held.append(os.open(os.devnull, os.O_RDONLY))
        probe = os.open(os.devnull, os.O_RDONLY)
        os.close(probe)
        assert probe > FD_SETSIZE
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
