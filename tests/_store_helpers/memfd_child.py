"""Child process for the memfd tests.

``python memfd_child.py mapped <rounds> <sealed|unsealed>``
    Each round makes a 64 KiB memfd, maps it for reading, tries to truncate it to 0
    through the writer's descriptor, then reads every byte of the mapping. With
    ``sealed`` the memfd comes from MemfdStore and is mapped by open_memfd; with
    ``unsealed`` (the broken variant) it is a plain memfd mapped directly, and the
    read after the truncation dies of SIGBUS. Prints ``refused <n>`` at the end.

``python memfd_child.py receive <fd>``
    Reads an inherited snapshot memfd with open_memfd and prints its xxh3-64 in hex,
    then ``write <errno name>`` for an attempt to write to it.
"""

from __future__ import annotations

import errno
import mmap
import os
import sys

import xxhash

from statemigrate.stores import MemfdStore, open_memfd

SIZE = 64 * 1024


def mapped(rounds: int, sealed: bool) -> None:
    refused = 0
    with MemfdStore() as store:
        for i in range(rounds):
            data = bytes([i % 251]) * SIZE
            if sealed:
                fd = store.commit(data).fd
                view = open_memfd(fd)
            else:
                fd = os.memfd_create("unsealed", os.MFD_CLOEXEC)
                os.write(fd, data)
                view = memoryview(mmap.mmap(fd, SIZE, prot=mmap.PROT_READ))
            try:
                os.ftruncate(fd, 0)
            except PermissionError:
                refused += 1
            assert bytes(view) == data  # touches every page of the mapping
            if isinstance(view, memoryview):
                view.release()
            if not sealed:
                os.close(fd)
    print(f"refused {refused}", flush=True)


def receive(fd: int) -> None:
    view = open_memfd(fd)
    print(xxhash.xxh3_64_hexdigest(view), flush=True)
    if isinstance(view, memoryview):
        view.release()
    try:
        os.write(fd, b"x")
        print("write ok", flush=True)
    except OSError as exc:
        print(f"write {errno.errorcode[exc.errno or 0]}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "mapped":
        mapped(int(sys.argv[2]), sys.argv[3] == "sealed")
    else:
        receive(int(sys.argv[2]))
