"""Failpoint loops over every I/O operation of TmpfsStore commits and opens (C2, C3),
and the failpoint shim itself."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
from pathlib import Path
from typing import Protocol

import pytest
from _store_helpers import open_fds, temp_names
from _store_helpers.broken import FsyncRetryStore, LeakyStore
from _store_helpers.payload import make_payload

from statemigrate import StoreError
from statemigrate.stores import TmpfsStore, _syscalls

OLD_PREVIOUS = make_payload(1, 3_000)
OLD = make_payload(2, 5_000)
NEW = make_payload(3, 70_000)
NEWER = make_payload(4, 1_000)
ERRNOS = [errno.EIO, errno.ENOSPC, errno.EFBIG]


class _Committing(Protocol):
    def commit(self, data: bytes) -> object: ...
    def open(self) -> bytes: ...


def fresh_store(directory: Path, temp_files: str) -> TmpfsStore:
    """A store whose 'current' is OLD and 'previous' is OLD_PREVIOUS."""
    shutil.rmtree(directory, ignore_errors=True)
    store = TmpfsStore(directory, temp_files=temp_files)  # type: ignore[arg-type]
    store.commit(OLD_PREVIOUS)
    store.commit(OLD)
    return store


def commit_ops(directory: Path, temp_files: str, data: object = NEW) -> list[str]:
    """The operations a successful commit of ``data`` makes, in order."""
    with fresh_store(directory, temp_files) as store, _syscalls.failpoint() as trace:
        store.commit(data)  # type: ignore[arg-type]
    return trace.ops


def publish_position(ops: list[str]) -> int:
    """1-based position of the operation that gives the new snapshot the name 'current'."""
    if "link" in ops:
        return ops.index("link") + 1
    return len(ops) - ops[::-1].index("rename")


def failpoint_problems(
    store: _Committing, directory: Path, k: int, code: int, *, persistent: bool,
    publish_at: int, temps_allowed: int,
) -> list[str]:
    """The C2 checker: fail the k-th operation of a commit of NEW over OLD; list what
    went wrong (an empty list means the commit failed cleanly)."""
    problems: list[str] = []
    fds = open_fds()
    error: StoreError | None = None
    with _syscalls.failpoint(k, errno=code, persistent=persistent) as fp:
        try:
            store.commit(NEW)
        except StoreError as exc:
            error = exc
    tripped = fp.ops[k - 1] if len(fp.ops) >= k else None
    if error is None:
        problems.append(f"commit succeeded although operation {k} ({tripped}) failed")
    elif (error.op, error.errno) != (tripped, code):
        problems.append(f"error names {error.op}/{error.errno}, expected {tripped}/{code}")
    if open_fds() != fds:
        problems.append(f"descriptors leaked: {sorted(open_fds() - fds)}")
    if len(temp_names(directory)) > temps_allowed:
        problems.append(f"temp files left: {temp_names(directory)}")
    expected = NEW if k > publish_at else OLD
    try:
        data = store.open()
    except StoreError as exc:
        problems.append(f"nothing restorable after the failure: {exc}")
    else:
        if data != expected:
            which = "NEW" if data == NEW else "OLD" if data == OLD else f"{len(data)} other bytes"
            problems.append(f"open() returned {which} after failing operation {k} ({tripped})")
    return problems


@pytest.mark.parametrize("code", ERRNOS, ids=errno.errorcode.get)
@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_failing_any_operation_of_a_commit_keeps_the_previous_snapshot(
    base: Path, temp_files: str, persistent: bool, code: int
) -> None:
    """C2: for every k, failing the k-th I/O operation of a commit (once, or every
    operation from the k-th on) raises a StoreError naming that operation and errno,
    leaks no descriptor, leaves no temp file (at most one in named mode when even its
    removal fails, and the next store removes it), and open() returns the previous
    snapshot byte for byte (the new one only if the failure came after publication,
    which the error then says). The store then commits normally again."""
    directory = base / "store"
    ops = commit_ops(directory, temp_files)
    publish_at = publish_position(ops)
    temps_allowed = 1 if persistent and temp_files == "named" else 0
    for k in range(1, len(ops) + 1):
        with fresh_store(directory, temp_files) as store:
            problems = failpoint_problems(
                store, directory, k, code, persistent=persistent,
                publish_at=publish_at, temps_allowed=temps_allowed,
            )
            assert problems == [], f"k={k} ({ops[k - 1]}) of {ops}"
            assert store.open_previous() in (OLD, OLD_PREVIOUS)
        if temps_allowed:
            with TmpfsStore(directory) as reopened:
                assert temp_names(directory) == []
                assert reopened.orphans_removed <= 1
        with TmpfsStore(directory) as store:
            store.commit(NEWER)
            assert store.open() == NEWER
    print(f"{temp_files} {errno.errorcode[code]} {'persistent' if persistent else 'once'}:"
          f" {len(ops)} operations failed one by one, 0 problems")


@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_a_failure_after_publication_says_so(base: Path, temp_files: str) -> None:
    """C2 detail: when only the final directory fsync fails, the new snapshot already
    has its name; the error says so instead of claiming nothing happened."""
    directory = base / "store"
    ops = commit_ops(directory, temp_files)
    last_fsync = len(ops) - ops[::-1].index("fsync")
    assert last_fsync > publish_position(ops)
    with fresh_store(directory, temp_files) as store:
        with _syscalls.failpoint(last_fsync), pytest.raises(StoreError) as info:
            store.commit(NEW)
        assert info.value.op == "fsync"
        assert "already been published" in str(info.value)
        assert store.open() == NEW


@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_a_snapshot_published_by_a_failed_commit_is_this_process_s_own(
    base: Path, temp_files: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A commit that fails after publication (the directory's fsync, closing the new
    file or the lock) still committed the snapshot now ``current``: the next commit by
    the same process does not take it for another process's and log an ERROR."""
    directory = base / "store"
    ops = commit_ops(directory, temp_files)
    for k in range(publish_position(ops) + 1, len(ops) + 1):
        with fresh_store(directory, temp_files) as store:
            with _syscalls.failpoint(k), pytest.raises(StoreError, match="already been published"):
                store.commit(NEW)
            caplog.clear()
            store.commit(NEWER)
            assert store.open() == NEWER and store.open_previous() == NEW
        assert "committed by another process" not in caplog.text, f"k={k} ({ops[k - 1]})"


def test_failpoint_checker_catches_a_store_without_cleanup(base: Path) -> None:
    """Negative control for C2: a temp+rename store that does no cleanup on errors is
    caught leaking its descriptor and its temp file."""
    directory = base / "leaky"
    before = open_fds()
    store = LeakyStore(directory)
    try:
        store.commit(OLD)
        with _syscalls.failpoint() as trace:
            store.commit(NEW)
        store.commit(OLD)
        k = trace.ops.index("write") + 1
        problems = failpoint_problems(
            store, directory, k, errno.EIO, persistent=False, publish_at=len(trace.ops),
            temps_allowed=0,
        )
    finally:
        store.close()
        for fd in open_fds() - before:
            try:
                os.close(fd)  # what the broken store leaked (the listing's own fd is gone)
            except OSError:
                pass
    assert any("descriptors leaked" in p for p in problems), problems
    assert any("temp files left" in p for p in problems), problems


@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_short_writes_are_completed(base: Path, temp_files: str) -> None:
    """C2 (short writes): a write that writes only half of its buffer, at any write of
    the commit, is continued by the write loop and the snapshot is complete; when every
    write from the first on is short, the commit fails cleanly on 'write'."""
    directory = base / "store"
    chunks = [NEW[:1000], NEW[1000:50_000], NEW[50_000:]]
    ops = commit_ops(directory, temp_files, chunks)
    writes = [i + 1 for i, op in enumerate(ops) if op == "write"]
    assert len(writes) == 3
    for k in writes:
        with fresh_store(directory, temp_files) as store:
            fds = open_fds()
            with _syscalls.failpoint(k, action="short_write") as fp:
                store.commit(chunks)
            assert fp.tripped == ["write"]
            assert fp.ops.count("write") == 4  # the short one was continued by one more
            assert store.open() == NEW
            assert open_fds() == fds
    with fresh_store(directory, temp_files) as store:
        fds = open_fds()
        with _syscalls.failpoint(writes[0], action="short_write", persistent=True), \
                pytest.raises(StoreError) as info:
            store.commit(chunks)
        assert info.value.op == "write"
        assert "no progress" in str(info.value)
        assert store.open() == OLD
        assert open_fds() == fds
        assert temp_names(directory) == []


def fsync_failure_problems(store: _Committing, directory: Path, k: int) -> list[str]:
    """The C3 checker: EIO on the fsync at position k must end the commit: no second
    fsync, no rename or link afterwards, no temp file, OLD still the latest."""
    problems: list[str] = []
    with _syscalls.failpoint(k, errno=errno.EIO) as fp:
        try:
            store.commit(NEW)
            problems.append("commit succeeded after its fsync failed")
        except StoreError as exc:
            if exc.op != "fsync":
                problems.append(f"error names {exc.op!r}, not 'fsync'")
    after = fp.ops[k:]
    if "fsync" in after:
        problems.append("fsync was retried")
    if "rename" in after or "link" in after:
        problems.append(f"published after the failed fsync: {after}")
    if temp_names(directory):
        problems.append(f"temp files left: {temp_names(directory)}")
    if store.open() != OLD:
        problems.append("the previous snapshot is no longer the latest")
    return problems


@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_fsync_failure_is_terminal(base: Path, temp_files: str) -> None:
    """C3: EIO on the file's fsync: no retry, no rename, temp file gone, previous
    snapshot intact (and 'previous' untouched too: nothing was rotated)."""
    directory = base / "store"
    ops = commit_ops(directory, temp_files)
    k = ops.index("fsync") + 1
    with fresh_store(directory, temp_files) as store:
        assert fsync_failure_problems(store, directory, k) == []
        assert store.open_previous() == OLD_PREVIOUS


def test_fsync_checker_catches_a_store_that_retries_fsync(base: Path) -> None:
    """Negative control for C3: a store that retries a failed fsync and then publishes
    is caught."""
    directory = base / "retry"
    store = FsyncRetryStore(directory)
    try:
        store.commit(OLD)
        with _syscalls.failpoint() as trace:
            store.commit(OLD)
        problems = fsync_failure_problems(store, directory, trace.ops.index("fsync") + 1)
    finally:
        store.close()
    assert "fsync was retried" in problems
    assert any("published after the failed fsync" in p for p in problems)


@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_real_efbig_from_the_file_size_limit(base: Path, temp_files: str) -> None:
    """C2 with a real kernel error: under RLIMIT_FSIZE (SIGXFSZ ignored) a snapshot
    larger than the limit fails on 'write' with EFBIG; the previous one is intact."""
    directory = base / "store"
    with fresh_store(directory, temp_files) as store:
        fds = open_fds()
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, hard))
            with pytest.raises(StoreError) as info:
                store.commit(NEW)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, handler)
        assert (info.value.op, info.value.errno) == ("write", errno.EFBIG)
        assert isinstance(info.value.__cause__, OSError)
        assert store.open() == OLD
        assert open_fds() == fds
        assert temp_names(directory) == []


@pytest.mark.parametrize("code", ERRNOS, ids=errno.errorcode.get)
def test_failing_any_operation_of_an_open_leaks_nothing(base: Path, code: int) -> None:
    """Reader side of C2: failing the k-th operation of open() raises a StoreError that
    names it, and leaks no descriptor; the store reads normally afterwards."""
    directory = base / "store"
    with fresh_store(directory, "auto") as store:
        with _syscalls.failpoint() as trace:
            store.open()
        assert trace.ops == ["open", "fstat", "read", "read", "close"]
        for k in range(1, len(trace.ops) + 1):
            fds = open_fds()
            with _syscalls.failpoint(k, errno=code), pytest.raises(StoreError) as info:
                store.open()
            assert (info.value.op, info.value.errno) == (trace.ops[k - 1], code)
            assert open_fds() == fds
        assert store.open() == OLD


def test_missing_current_falls_back_to_previous(base: Path) -> None:
    """A reader that finds no 'current' (a commit stopped between its two renames)
    reads 'previous'."""
    with fresh_store(base / "store", "auto") as store:
        with _syscalls.failpoint(1, errno=errno.ENOENT) as fp:
            assert store.open() == OLD_PREVIOUS
        assert fp.ops[:2] == ["open", "open"]


# -- the shim itself -----------------------------------------------------------------


def test_failpoint_counts_every_operation_and_trips_only_where_asked(base: Path) -> None:
    """A failpoint records every operation; 'at' trips one, 'persistent' all later ones;
    nothing is recorded once it is removed."""
    path = str(base / "f")
    with _syscalls.failpoint(2) as once:
        fd = _syscalls.open_at(path, os.O_WRONLY | os.O_CREAT, dir_fd=None, where=path)
        with pytest.raises(StoreError):
            _syscalls.fsync(fd, where=path)
        _syscalls.fsync(fd, where=path)
        _syscalls.close(fd, where=path)
    assert once.ops == ["open", "fsync", "fsync", "close"]
    assert once.tripped == ["fsync"]
    with _syscalls.failpoint(2, persistent=True, errno=errno.ENOSPC) as always:
        fd = _syscalls.open_at(path, os.O_WRONLY, dir_fd=None, where=path)
        for _ in range(3):
            with pytest.raises(StoreError) as info:
                _syscalls.fsync(fd, where=path)
            assert info.value.errno == errno.ENOSPC
        with pytest.raises(StoreError):
            _syscalls.close(fd, where=path)
    assert always.tripped == ["fsync", "fsync", "fsync", "close"]
    assert _syscalls._active is None


def test_injected_close_failure_still_closes(base: Path) -> None:
    """Like Linux, a close that reports an error has released the descriptor anyway."""
    path = str(base / "f")
    fds = open_fds()
    fd = _syscalls.open_at(path, os.O_WRONLY | os.O_CREAT, dir_fd=None, where=path)
    with _syscalls.failpoint(1), pytest.raises(StoreError) as info:
        _syscalls.close(fd, where=path)
    assert info.value.op == "close"
    assert open_fds() == fds


def test_failpoints_do_not_nest_and_call_actions() -> None:
    """A second failpoint is refused; a callable action runs and the operation goes on."""
    seen: list[str] = []
    with _syscalls.failpoint(1, action=seen.append):
        with pytest.raises(RuntimeError), _syscalls.failpoint():
            pass
        st = _syscalls.fstat(0, where="stdin")
    assert seen == ["fstat"]
    assert st.st_mode


def test_read_all_detects_a_file_that_changed_size(base: Path) -> None:
    """read_all refuses a file longer or shorter than the size it was told."""
    path = base / "f"
    path.write_bytes(b"x" * 100)
    for size in (99, 101):
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(StoreError, match="changed while being read"):
                _syscalls.read_all(fd, size, where=str(path))
        finally:
            os.close(fd)
