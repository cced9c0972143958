"""MemfdStore and open_memfd: sealing, the receiver's checks, no SIGBUS, no fd leaks."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash
from _store_helpers import open_fds
from _store_helpers.payload import make_payload

from statemigrate import StoreError
from statemigrate.stores import (
    MemfdRef,
    MemfdStore,
    MemoryStore,
    SnapshotRef,
    Store,
    _syscalls,
    open_memfd,
)
from statemigrate.stores._memfd import SEALS

CHILD = str(Path(__file__).resolve().parents[1] / "_store_helpers" / "memfd_child.py")
F_SEAL_FUTURE_WRITE = 0x0010  # linux/fcntl.h; Python 3.11's fcntl does not export it
OLD = make_payload(1, 10_000)
NEW = make_payload(2, 100_000)


def read(view: bytes | memoryview) -> bytes:
    """Copy the bytes out and release a mapping right away (it holds a descriptor)."""
    data = bytes(view)
    if isinstance(view, memoryview):
        view.release()
    return data


def test_commit_open_round_trip() -> None:
    """A committed memfd reads back byte-equal, whatever the shape of the data; an
    empty snapshot reads back empty."""
    fds = open_fds()
    with MemfdStore() as store:
        assert isinstance(store, Store)
        for data, expected in [(NEW, NEW), ([OLD[:7], memoryview(OLD)[7:]], OLD), (b"", b"")]:
            ref = store.commit(data)  # type: ignore[arg-type]
            assert isinstance(ref, SnapshotRef)
            assert ref.size == len(expected)
            assert read(ref.open()) == expected == read(store.open())
            assert read(open_memfd(ref.fd)) == expected
            assert os.readlink(f"/proc/self/fd/{ref.fd}").startswith("/memfd:statemigrate")
            assert ref.describe() == f"memfd:{ref.fd}"
            assert not os.get_inheritable(ref.fd)
    assert open_fds() == fds


def write_reopened(fd: int) -> None:
    # Some kernels refuse the reopen itself (EPERM), newer ones allow it; the seals
    # belong to the file, so the write through the new descriptor is refused either way.
    again = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    try:
        os.write(again, b"x")
    finally:
        os.close(again)


def test_a_committed_memfd_cannot_be_changed_even_by_its_writer() -> None:
    """After commit the writer's own descriptor cannot write, truncate, grow, add
    seals or map writable, and nothing can be written through a reopened descriptor:
    all EPERM."""
    with MemfdStore() as store:
        ref = store.commit(NEW)
        fd = ref.fd
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS == SEALS
        attempts = {
            "write": lambda: os.write(fd, b"x"),
            "pwrite": lambda: os.pwrite(fd, b"x", 0),
            "shrink": lambda: os.ftruncate(fd, 10),
            "grow": lambda: os.ftruncate(fd, len(NEW) + 4096),
            "add seals": lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, F_SEAL_FUTURE_WRITE),
            "writable map": lambda: mmap.mmap(fd, len(NEW)),
            "write through a reopened fd": lambda: write_reopened(fd),
        }
        refused = {}
        for name, attempt in attempts.items():
            with pytest.raises(PermissionError) as info:
                attempt()
            refused[name] = info.value.errno
        assert set(refused.values()) == {errno.EPERM}, refused
        assert read(ref.open()) == NEW


def unsealed_memfd(data: bytes, seals: int = 0) -> int:
    fd = os.memfd_create("test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unsealed memfd", "missing F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE|F_SEAL_SEAL"),
        ("partly sealed memfd", "missing F_SEAL_WRITE|F_SEAL_SEAL"),
        ("tmpfs file", "not a memfd"),
        ("pipe", "is a pipe or FIFO, not a memfd"),
        ("socket", "is a socket, not a memfd"),
        ("directory", "is a directory, not a memfd"),
        ("too large", "larger than max_size"),
    ],
)
def test_open_memfd_refuses_what_is_not_a_sealed_memfd(
    base: Path, kind: str, message: str
) -> None:
    """The receiver refuses an unsealed or partly sealed memfd, a tmpfs file (which
    answers F_GET_SEALS too), a pipe, a socket, a directory and an oversized memfd;
    the descriptor stays open and is still the caller's."""
    owned: list[int] = []
    closers: list[socket.socket] = []
    max_size = 1 << 30
    if kind == "unsealed memfd":
        fd = unsealed_memfd(OLD)
    elif kind == "partly sealed memfd":
        fd = unsealed_memfd(OLD, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    elif kind == "tmpfs file":
        fd = os.open(base / "file", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.write(fd, OLD)
        fcntl.fcntl(fd, fcntl.F_GET_SEALS)  # answers without error: seals are no proof
    elif kind == "pipe":
        fd, other = os.pipe()
        owned.append(other)
    elif kind == "socket":
        left, right = socket.socketpair()
        closers += [left, right]
        fd = left.fileno()
    elif kind == "directory":
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        fd = unsealed_memfd(OLD, SEALS)
        max_size = len(OLD) - 1
    if kind != "socket":
        owned.append(fd)
    try:
        with pytest.raises(StoreError, match=message) as info:
            open_memfd(fd, max_size=max_size)
        assert info.value.target == f"memfd:{fd}"
        os.fstat(fd)  # still open: not ours to close
    finally:
        for extra in owned:
            os.close(extra)
        for sock in closers:
            sock.close()


def test_open_memfd_ownership_and_bad_descriptors() -> None:
    """close_fd=True closes the descriptor whether the checks pass or fail; a closed
    descriptor is reported as such (EBADF)."""
    fds = open_fds()
    good = unsealed_memfd(NEW, SEALS)
    assert read(open_memfd(good, close_fd=True)) == NEW
    bad = unsealed_memfd(NEW)
    with pytest.raises(StoreError, match="not sealed"):
        open_memfd(bad, close_fd=True)
    assert open_fds() == fds
    with pytest.raises(StoreError) as info:
        open_memfd(bad)
    assert (info.value.op, info.value.errno) == ("fstat", errno.EBADF)


def test_a_mapped_reader_survives_truncation_attempts() -> None:
    """No SIGBUS: in a child, 200 rounds of map-then-try-to-truncate-then-read with
    sealed memfds all complete, every truncation refused."""
    result = subprocess.run(
        [sys.executable, CHILD, "mapped", "200", "sealed"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["refused", "200"]


def test_sigbus_checker_catches_an_unsealed_mapping() -> None:
    """Negative control: the same child with an unsealed memfd mapped directly is
    killed by SIGBUS after the truncation succeeds."""
    result = subprocess.run(
        [sys.executable, CHILD, "mapped", "1", "unsealed"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == -signal.SIGBUS, (result.returncode, result.stderr)


def test_another_process_receives_the_snapshot() -> None:
    """A child given the memfd with pass_fds reads the same bytes and cannot write."""
    with MemfdStore() as store:
        ref = store.commit(NEW)
        result = subprocess.run(
            [sys.executable, CHILD, "receive", str(ref.fd)], pass_fds=[ref.fd],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [xxhash.xxh3_64_hexdigest(NEW), "write", "EPERM"]


def test_store_keeps_latest_two_and_closes_older() -> None:
    """open() is the latest, open_previous() the one before; a third commit closes
    the oldest memfd; close() closes the rest; nothing leaks."""
    fds = open_fds()
    store = MemfdStore(name="cache")
    with pytest.raises(StoreError, match="no snapshot"):
        store.open()
    first = store.commit(OLD)
    with pytest.raises(StoreError, match="no previous"):
        store.open_previous()
    second = store.commit(NEW)
    assert read(store.open()) == NEW and read(store.open_previous()) == OLD
    assert store.latest is second
    third = store.commit(b"three")
    assert first.closed and not second.closed
    with pytest.raises(StoreError, match="closed"):
        first.open()
    with pytest.raises(StoreError, match="not a memfd snapshot"):
        store.open(MemoryStore().commit(b"x"))
    assert read(store.open(second)) == NEW
    store.close()
    assert second.closed and third.closed
    with pytest.raises(StoreError, match="closed"):
        store.commit(b"x")
    with MemfdRef(unsealed_memfd(b"abc", SEALS), 3) as ref:
        assert read(ref.open()) == b"abc"
    assert ref.closed
    assert open_fds() == fds


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC, errno.EFBIG], ids=errno.errorcode.get)
def test_failing_any_operation_of_a_memfd_commit(code: int, persistent: bool) -> None:
    """C2 for memfds: failing the k-th operation of a commit raises a StoreError that
    names it, closes the new memfd (0 leaks), and the latest snapshot stays."""
    with MemfdStore() as store, _syscalls.failpoint() as trace:
        store.commit([OLD, NEW])
    assert trace.ops == ["memfd_create", "write", "write", "seal"]
    with MemfdStore() as store:
        store.commit(OLD)
        for k in range(1, len(trace.ops) + 1):
            fds = open_fds()
            with _syscalls.failpoint(k, errno=code, persistent=persistent), \
                    pytest.raises(StoreError) as info:
                store.commit([OLD, NEW])
            assert (info.value.op, info.value.errno) == (trace.ops[k - 1], code)
            assert open_fds() == fds
            assert read(store.open()) == OLD
