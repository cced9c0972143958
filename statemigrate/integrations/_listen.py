"""Binding an adapter's own listener, with an error that names the address.

A process that inherits nothing binds ``host:port`` itself. When that fails (the
port is taken, the host does not resolve, the port needs privileges) the operator
has something to fix, and the code has no fault to show: the ``run`` entry points
(:mod:`statemigrate.integrations._runserving`) say it in one line and exit with
status 1, as uvicorn does, rather than print a traceback.
"""

from __future__ import annotations

import socket

__all__ = ["ListenError", "bind_listener"]

_ADDRESS_SUFFIX = " (while attempting to bind"


class ListenError(OSError):
    """The listener could not be bound. An ``OSError`` still, for callers of ``serve``
    that caught one before; its message names the address and the system's reason."""

    def __init__(self, address: str, cause: OSError) -> None:
        # create_server's own text repeats the address as a tuple, after the reason.
        reason = (cause.strerror or str(cause)).split(_ADDRESS_SUFFIX)[0]
        super().__init__(cause.errno, reason)
        self.address = address

    def __str__(self) -> str:
        return f"cannot listen on {self.address}: {self.strerror}"


def bind_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP listener on ``host:port``, or :class:`ListenError` saying why not."""
    try:
        return socket.create_server((host, port), backlog=backlog)
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError(shown, exc) from exc
