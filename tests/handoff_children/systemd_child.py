"""Plays a service started by systemd with LISTEN_FDS; reports what listen_fds() made of it.

Usage: systemd_child.py SCENARIO NOTIFY_SOCKET OUTPUT

Descriptors 3, 4, 5 are set up the way systemd passes them: 3 a listening TCP
socket, 4 a sealed memfd holding b"snapshot", 5 /dev/null (a name nobody expects).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

from _fdtable import fd_table

from statemigrate import HandoffError
from statemigrate.handoff import listen_fds
from statemigrate.stores import MemfdStore, open_memfd


def main(scenario: str, notify: str, output: str) -> int:
    listener = socket.create_server(("127.0.0.1", 0))
    store = MemfdStore()
    memfd = store.commit(b"snapshot").fd
    junk = os.open(os.devnull, os.O_RDONLY)
    fds = [listener.fileno(), memfd, junk]
    if fds != [3, 4, 5]:
        raise SystemExit(f"descriptors are {fds}, not 3, 4, 5")
    for fd in fds:
        os.set_inheritable(fd, True)  # as systemd passes them
    listener.detach()  # listen_fds() takes them over
    names = {"names": "http:snapshot:junk", "bad-type": "http:http:junk"}.get(scenario)
    os.environ.update(
        LISTEN_FDS="3",
        LISTEN_PID=str(os.getppid() if scenario == "wrong-pid" else os.getpid()),
        NOTIFY_SOCKET=notify,
    )
    if names is not None:
        os.environ["LISTEN_FDNAMES"] = names

    result: dict[str, Any] = {}
    try:
        got = listen_fds(listeners={"http"}, memfds={"snapshot"})
    except HandoffError as exc:
        result["error"] = exc.stage
        result["detail"] = exc.detail
    else:
        if got is None:
            result["got"] = None
        else:
            result["listeners"] = {k: [s.fileno() for s in v] for k, v in got.listeners.items()}
            result["listening"] = [
                s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                for v in got.listeners.values()
                for s in v
            ]
            result["memfds"] = got.memfds
            result["snapshot"] = [
                bytes(open_memfd(fd)).decode() for fd in got.memfds.get("snapshot", [])
            ]
            result["removed"] = list(got.removed)
    result["table"] = fd_table()
    result["inheritable"] = [fd for fd in result["table"] if fd > 2 and os.get_inheritable(fd)]
    result["env_left"] = sorted(k for k in os.environ if k.startswith("LISTEN_"))
    with open(output, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
