"""Binding an adapter's own listener, with an error that names the address.

A process that inherits nothing binds ``host:port`` itself, in the family the host is
of: an IPv6 address or a name that resolves to one gets an IPv6 listener, and no host
(``None`` or ``""``) every interface, both families where the system can. When that
fails (the port is taken, the host does not resolve, the port needs privileges or is
out of range) the operator has something to fix, and the code has no fault to show:
the ``run`` entry points (:mod:`statemigrate.integrations._runserving`) say it in one
line and exit with status 1, as uvicorn does, rather than print a traceback.

A name that resolves to several addresses is bound on the first only.
"""

from __future__ import annotations

import socket

__all__ = ["ListenError", "bind_listener", "served_at"]

_ADDRESS_SUFFIX = " (while attempting to bind"


class ListenError(OSError):
    """The listener could not be bound. An ``OSError`` still, for callers of ``serve``
    that caught one before; its message names the address and the reason."""

    def __init__(self, address: str, reason: str, errno: int | None = None) -> None:
        super().__init__(errno, reason)
        self.address = address

    def __str__(self) -> str:
        return f"cannot listen on {self.address}: {self.strerror}"


def bind_listener(host: str | None, port: int, backlog: int) -> socket.socket:
    """A TCP listener on ``host:port``, or :class:`ListenError` saying why not."""
    shown = _shown(host, port)
    if type(port) is not int or not 0 <= port <= 65535:
        raise ListenError(shown, "the port must be an int from 0 to 65535")
    try:
        if not host:
            if socket.has_dualstack_ipv6():
                return socket.create_server(
                    ("", port), family=socket.AF_INET6, backlog=backlog, dualstack_ipv6=True
                )
            return socket.create_server(("", port), backlog=backlog)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        # create_server's own text repeats the address as a tuple, after the reason.
        reason = (exc.strerror or str(exc)).split(_ADDRESS_SUFFIX)[0]
        raise ListenError(shown, reason, exc.errno) from exc


def _shown(host: str | None, port: object) -> str:
    if not host:
        return f"every interface, port {port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def served_at(listener: socket.socket) -> str:
    """``http://host:port`` of a TCP listener (the port it got for a ``0``), or the
    path of a Unix one."""
    name = listener.getsockname()
    if isinstance(name, str):
        return name
    host, port = name[:2]
    return f"http://{_shown(host, port)}"
