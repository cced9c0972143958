"""Seal checks of snapshot memfds, in a child so a SIGBUS cannot take the test runner down.

Usage: memfd_rounds.py sealed ROUNDS | unsealed

``sealed``: each round commits random bytes to a sealed memfd, passes it over a
socket pair, maps it on the receiving side, and then tries, through the sender's
descriptor, every way of changing it. Prints how many attempts failed with EPERM
per kind and how many reads matched.

``unsealed``: the deliberately unsafe variant: an unsealed memfd is mapped and then
truncated by its writer; touching the mapping kills this process with SIGBUS.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import random
import socket
import sys

from statemigrate.handoff._fdpass import receive_fds, send_fds
from statemigrate.stores import MemfdStore, open_memfd


def reopen_and_write(fd: int) -> None:
    again = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
    try:
        os.write(again, b"x")
    finally:
        os.close(again)


def attacks(fd: int, size: int) -> dict[str, object]:
    return {
        "write": lambda: os.write(fd, b"x"),
        "pwrite": lambda: os.pwrite(fd, b"x", 0),
        "shrink": lambda: os.ftruncate(fd, size - 1),
        "grow": lambda: os.ftruncate(fd, size + 4096),
        "fallocate": lambda: os.posix_fallocate(fd, 0, size + 4096),
        "add_seal": lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE),
        "reopen_write": lambda: reopen_and_write(fd),
        "mmap_shared_write": lambda: mmap.mmap(
            fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        ),
    }


def sealed(rounds: int) -> dict[str, object]:
    rng = random.Random(1234)
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    eperm = dict.fromkeys(attacks(0, 1), 0)
    other: list[str] = []
    matched = 0
    for _ in range(rounds):
        data = rng.randbytes(rng.choice([1, 100, 4095, 4096, 4097, 65536]))
        with MemfdStore() as store:
            ref = store.commit(data)
            send_fds(sender, b"s", [ref.fd], stage="test")
            _msg, [received] = receive_fds(receiver, max_bytes=1, max_fds=1, stage="test")
            view = open_memfd(received, close_fd=True)
            for name, attack in attacks(ref.fd, len(data)).items():
                try:
                    attack()  # type: ignore[operator]
                except PermissionError:
                    eperm[name] += 1
                except OSError as exc:
                    other.append(f"{name}: {exc}")
                else:
                    other.append(f"{name}: succeeded")
            matched += bytes(view) == data
            if isinstance(view, memoryview):
                view.release()
    sender.close()
    receiver.close()
    return {"rounds": rounds, "eperm": eperm, "matched": matched, "other": other[:5]}


def unsealed() -> None:
    fd = os.memfd_create("unsealed", os.MFD_CLOEXEC)
    os.write(fd, b"x" * 8192)
    view = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ)
    os.ftruncate(fd, 0)  # what a hostile sender could do to an unsealed memfd
    print(view[4096], flush=True)  # SIGBUS: the page is gone


if __name__ == "__main__":
    if sys.argv[1] == "sealed":
        print(json.dumps(sealed(int(sys.argv[2]))))
    else:
        unsealed()
