"""Where the command line reads snapshots and keys from: a path, or ``fd:N``.

A snapshot file is read in two steps. First its ends alone: its 32-byte preamble and
its last 16 KiB, which :func:`~statemigrate._snapshot._format.check_ends` checks as any
reader does before the digest (magic, preamble checksum, format version, flags, key;
the length, declared in a version 1 preamble or a version 2 or 3 footer, against the
file's size and the reader's limit); only then, if the file is exactly that long, is
the whole of it read, into one buffer of that size. So a file of the wrong kind, of a
size over the limit or other than its snapshot's, costs two small reads, however large
it is, and a sound one costs its size once. A
checkpoint chain (its first 8 bytes are the chain's magic) has no length of its own: its
frame is read and checked first (piece count, checksum, the pieces' lengths against the
file's size, which must be within the limit), then each piece's ends as a
snapshot's are; only then is the whole file read. A buffer the process cannot allocate
is an error of its own, not a ``MemoryError``.

A key file is opened as a snapshot file is, without blocking (a FIFO has no writer to
wait for), and refused unless it is a regular file.

Every operating-system error becomes a :class:`~statemigrate.StoreError` naming the
operation and the source (the path, or ``fd:N``).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import stat
from functools import partial

from statemigrate._errors import SnapshotError, StoreError
from statemigrate._runtime._chain import frame_size, is_chain, piece_lengths
from statemigrate._runtime._chainread import Chain, open_chain, piece_error
from statemigrate._snapshot._format import (
    PREAMBLE_SIZE,
    Buffer,
    DecodeLimits,
    Snapshot,
    check_ends,
    open_snapshot,
)

__all__ = [
    "KEY_FILE_VARIABLE",
    "MAX_FD",
    "open_read",
    "open_snapshot_source",
    "parse_fd",
    "read_key",
    "read_key_option",
    "read_snapshot_source",
    "with_key_hint",
]

MAX_FD = (1 << 31) - 1
"""The largest descriptor number the kernel's interfaces (a C ``int``) can hold."""

_READ_STEP = 1 << 30  # at most this much per read call: Linux reads < 2 GiB at a time
_KEY_READ = 4096
# Non-blocking: opening a FIFO for reading would otherwise wait for a writer, before
# fstat could refuse it. Reads of a regular file ignore the flag.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def _failed(op: str, source: str, exc: OSError) -> StoreError:
    code = exc.errno
    name = _errno.errorcode.get(code, str(code)) if code is not None else "no errno"
    return StoreError(op, source, f"{exc.strerror or exc} ({name})", errno=code)


def read_key(path: str | None) -> bytes | None:
    """The key in ``path`` (surrounding whitespace stripped), or None without a path.

    Raises:
        StoreError: the file cannot be opened or read, is not a regular file (a FIFO
            is refused without waiting for a writer), or holds fewer than 16 bytes or
            more than 4096.
    """
    if path is None:
        return None
    fd = _open(path, op="read")
    try:
        _regular_file(fd, path, op="read")
        read = _pread(fd, _KEY_READ + 1, 0, path)
    finally:
        os.close(fd)
    if len(read) > _KEY_READ:
        # Cut at the limit, a longer key would be another key, refused later as an
        # authentication mismatch that names no cause.
        raise StoreError(
            "read", path, f"a key file holds at most {_KEY_READ} bytes; this one holds more"
        )
    key = read.strip()
    if len(key) < 16:
        raise StoreError("read", path, "an authentication key needs at least 16 bytes")
    return key


KEY_FILE_VARIABLE = "STATEMIGRATE_KEY_FILE"
"""The environment variable naming the key file when ``--key-file`` is not given."""


def read_key_option(path: str | None) -> bytes | None:
    """The key of ``--key-file PATH``, else of the file that :data:`KEY_FILE_VARIABLE`
    names, else None.

    Raises:
        StoreError: as :func:`read_key`; for the variable's file, the error names the
            variable, which the user may not know is set.
    """
    if path is not None:
        return read_key(path)
    named = os.environ.get(KEY_FILE_VARIABLE)
    if named is None:
        return None
    try:
        return read_key(named)
    except StoreError as exc:
        raise StoreError(
            exc.op, f"{exc.target} (named by ${KEY_FILE_VARIABLE})", exc.detail, errno=exc.errno
        ) from exc


def with_key_hint(exc: SnapshotError) -> SnapshotError:
    """``exc``, the refusal of an authenticated snapshot read without a key, saying
    how the command line takes one."""
    return SnapshotError(
        exc.kind,
        f"{exc.detail}; pass --key-file PATH or set ${KEY_FILE_VARIABLE}",
        offset=exc.offset,
        section=exc.section,
        chunk=exc.chunk,
        expected=exc.expected,
        actual=exc.actual,
    )


def parse_fd(source: str) -> int:
    """The descriptor number of an ``fd:N`` source.

    Raises:
        StoreError: ``N`` is not a decimal number from 0 to :data:`MAX_FD`.
    """
    number = source[3:]
    if not number or not (number.isascii() and number.isdigit()):
        raise StoreError("open", source, "expected fd:N with N a descriptor number")
    # Length first: int() of thousands of digits is slow, and refused past 4300.
    if len(number.lstrip("0")) > len(str(MAX_FD)) or int(number) > MAX_FD:
        raise StoreError("open", source, f"descriptor number out of range (0 to {MAX_FD})")
    return int(number)


def open_snapshot_source(
    source: str, *, key: bytes | None = None, limits: DecodeLimits | None = None
) -> Snapshot | Chain:
    """Read the snapshot or checkpoint chain named by ``source`` and open it (see
    :func:`open_read`).

    Raises:
        StoreError: the source cannot be read (see :func:`read_snapshot_source`).
        SnapshotError: the bytes are not a sound snapshot or chain.
    """
    data = read_snapshot_source(source, key=key, limits=limits)
    return open_read(data, key=key, limits=limits)


def open_read(
    data: Buffer, *, key: bytes | None = None, limits: DecodeLimits | None = None
) -> Snapshot | Chain:
    """Open bytes read from a source: a snapshot is verified as any is
    (:func:`open_snapshot`); a checkpoint chain's frame and pieces each are
    (:func:`open_chain`), and the links between the pieces are left to the caller.

    Raises:
        SnapshotError: the bytes are not a sound snapshot or chain.
    """
    if is_chain(data):
        return open_chain(data, key=key, limits=limits)
    return open_snapshot(data, key=key, limits=limits)


def read_snapshot_source(
    source: str, *, key: bytes | None = None, limits: DecodeLimits | None = None
) -> bytes | bytearray | memoryview:
    """The bytes named by ``source``: a file path, or ``fd:N`` for an open descriptor.

    A descriptor that is a memfd must be sealed (it is then mapped read-only, without a
    copy); any other descriptor must be a regular file open for reading, read from
    offset 0 without moving the descriptor's offset. Paths must name regular files, so
    a FIFO or device never blocks or floods the reader.

    A regular file is read only once its preamble has been checked and its size is
    the one its preamble or footer declares (see the module's docstring); ``key`` and ``limits``
    are those the caller will open the snapshot with. A file that starts as a
    checkpoint chain is read whole, if it is no larger than a snapshot may be.

    Raises:
        StoreError: the source is not an open, readable regular file or sealed memfd,
            or an operation on it failed; the error names the operation and source.
        SnapshotError: the preamble is not a snapshot's, or the preamble or footer
            declares more bytes than ``limits`` allow, or a length other than the
            file's; a chain is larger than
            ``limits`` allow.
    """
    limits = limits or DecodeLimits()
    if source.startswith("fd:"):
        fd = parse_fd(source)
        try:
            os.fstat(fd)
        except OSError as exc:
            if exc.errno == _errno.EBADF:
                raise StoreError("open", source, "not an open file descriptor") from None
            raise _failed("fstat", source, exc) from exc
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError as exc:
            raise _failed("readlink", source, exc) from exc
        if target.startswith("/memfd:"):
            from statemigrate.stores import open_memfd

            return open_memfd(fd, max_size=limits.max_snapshot_size)
        return _read_file(fd, source, key, limits)
    fd = _open(source, op="open")
    try:
        return _read_file(fd, source, key, limits)
    finally:
        os.close(fd)


def _open(path: str, *, op: str) -> int:
    """A descriptor of ``path`` open for reading, opened without blocking."""
    try:
        return os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _failed(op, path or "''", exc) from exc
    except ValueError as exc:  # a NUL in the path; an argv element cannot hold one
        raise StoreError(op, repr(path), str(exc)) from exc


def _regular_file(fd: int, source: str, *, op: str) -> os.stat_result:
    """``fstat`` of ``fd``, refused unless it is a regular file: judged by the open
    descriptor, so the path cannot change kind between the check and the read."""
    try:
        info = os.fstat(fd)
    except OSError as exc:
        raise _failed("fstat", source, exc) from exc
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(op, source, "not a regular file")
    return info


def _read_file(fd: int, source: str, key: bytes | None, limits: DecodeLimits) -> bytes | bytearray:
    info = _regular_file(fd, source, op="open")
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as exc:
        raise _failed("fcntl", source, exc) from exc
    if mode & os.O_ACCMODE == os.O_WRONLY:
        raise StoreError(
            "read", source, "open for writing only; pass a descriptor open for reading"
        )
    head = _pread(fd, PREAMBLE_SIZE, 0, source)
    if len(head) < PREAMBLE_SIZE:
        return head  # too short to be a snapshot: open_snapshot says how
    if is_chain(head):
        total = _chain_length(fd, source, head, info.st_size, key, limits)
    else:
        total = info.st_size
        check_ends(partial(_read_exactly, fd, source, 0), total, key=key, limits=limits)
    try:
        buffer = bytearray(total)
    except MemoryError:
        raise StoreError(
            "read", source, f"cannot allocate the {total} bytes to read it into: out of memory"
        ) from None
    view = memoryview(buffer)
    position = 0
    while position < total:
        try:
            count = os.preadv(fd, [view[position : position + _READ_STEP]], position)
        except OSError as exc:
            raise _failed("read", source, exc) from exc
        if count == 0:
            raise _changed(source, f"it ended at {position} of {total} bytes")
        position += count
    if _pread(fd, 1, total, source):
        raise _changed(source, f"it grew past {total} bytes")
    return buffer


def _chain_length(
    fd: int, source: str, head: bytes, size: int, key: bytes | None, limits: DecodeLimits
) -> int:
    """The length of the checkpoint chain that starts with ``head`` in a file of
    ``size`` bytes, once what can be checked without reading it whole is: the size
    against the limit, the frame, and each piece's ends, as :func:`open_chain`
    will check them (the same errors, naming the piece).

    Raises:
        SnapshotError: the chain is larger than ``limits`` allow, its frame is damaged
            or its pieces do not fill the file, or a piece's preamble or length is not
            sound.
        StoreError: a read failed, or the file changed while being read.
    """
    # A chain declares no length of its own: it is the whole file, and its frame then
    # says where each piece lies.
    if size > limits.max_snapshot_size:
        raise SnapshotError(
            "too_large",
            "checkpoint chain is larger than the reader allows",
            expected=limits.max_snapshot_size,
            actual=size,
            offset=0,
        )
    needed = frame_size(head, size)
    frame = _pread(fd, needed, 0, source)
    if len(frame) < needed:
        raise _changed(source, f"it ended at {len(frame)} of {size} bytes")
    at = needed
    for index, length in enumerate(piece_lengths(frame, size)):
        try:
            check_ends(partial(_read_exactly, fd, source, at), length, key=key, limits=limits)
        except SnapshotError as exc:
            raise piece_error(exc, index, at) from exc
        at += length
    return size


def _read_exactly(fd: int, source: str, start: int, offset: int, length: int) -> bytes:
    """The ``length`` bytes at ``start + offset`` of the file, which must hold them."""
    got = _pread(fd, length, start + offset, source)
    if len(got) < length:
        raise _changed(source, f"it ended at {start + offset + len(got)} bytes")
    return got


def _changed(source: str, how: str) -> StoreError:
    return StoreError("read", source, f"file changed while being read: {how}")


def _pread(fd: int, size: int, offset: int, source: str) -> bytes:
    try:
        return os.pread(fd, size, offset)
    except OSError as exc:
        raise _failed("read", source, exc) from exc
