"""TmpfsStore: commit/open semantics, permissions (G1), planted names (G2), private directory."""

from __future__ import annotations

import array
import errno
import gc
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _store_helpers import open_fds, run_bounded, temp_names
from _store_helpers.payload import check_payload, make_payload

import statemigrate.stores as stores
from statemigrate import StoreError
from statemigrate.stores import MemoryStore, SnapshotRef, Store, TmpfsRef, TmpfsStore, _syscalls

GOOD_PREVIOUS = make_payload(1, 2_000)
GOOD = make_payload(2, 3_000)
NEW = make_payload(3, 4_000)
VICTIM = make_payload(666, 500)  # valid-looking, so only the store's checks can refuse it
NOBODY = 65534
ROOT = os.geteuid() == 0


def test_package_exports_are_sorted_and_complete() -> None:
    """statemigrate.stores exports a sorted __all__ naming every public name it has."""
    # "@py_builtins" and friends: pytest rewrites the modules of a distribution that
    # provides a pytest plugin, as this one does.
    public = {name for name in vars(stores) if not name.startswith(("_", "@"))}
    assert stores.__all__ == sorted(stores.__all__)
    assert public - {"annotations", "TYPE_CHECKING"} <= set(stores.__all__)
    # The object store's names load on first access, and must then resolve.
    assert [name for name in stores.__all__ if not hasattr(stores, name)] == []


def test_commit_and_open_keep_current_and_previous(base: Path) -> None:
    """open() is the latest commit, open_previous() the one before; refs name the latest."""
    with TmpfsStore(base / "s") as store:
        assert isinstance(store, Store)
        with pytest.raises(StoreError) as info:
            store.open()
        assert info.value.errno == errno.ENOENT
        assert "no snapshot" in str(info.value)
        first = store.commit(GOOD_PREVIOUS)
        assert isinstance(first, SnapshotRef) and isinstance(first, TmpfsRef)
        assert first.size == len(GOOD_PREVIOUS)
        assert first.describe() == f"tmpfs:{base / 's'}/current"
        with pytest.raises(StoreError, match="no previous snapshot"):
            store.open_previous()
        second = store.commit(GOOD)
        assert store.open() == GOOD == second.open() == store.open(first)
        assert store.open_previous() == GOOD_PREVIOUS
        store.commit(NEW)
        assert (store.open(), store.open_previous()) == (NEW, GOOD)
        assert sorted(os.listdir(base / "s")) == [".lock", "current", "previous"]


def test_a_snapshot_kept_as_unrestored_stays_apart_from_commits(base: Path) -> None:
    with TmpfsStore(base / "s") as store:
        store.commit(GOOD)
        where = store.keep_unrestored(GOOD)
        assert where == f"{base / 's'}/unrestored"
        store.commit(NEW)
        store.commit(GOOD_PREVIOUS)
        assert (store.open(), store.open_previous()) == (GOOD_PREVIOUS, NEW)
        assert Path(where).read_bytes() == GOOD
        store.keep_unrestored(memoryview(VICTIM))  # the latest replaces the one before
        assert Path(where).read_bytes() == VICTIM
        assert stat.S_IMODE(os.stat(where).st_mode) == 0o600
        assert sorted(os.listdir(base / "s")) == [".lock", "current", "previous", "unrestored"]


def test_commit_accepts_any_buffers_and_iterables(base: Path) -> None:
    """One buffer, several, a generator, typed and strided memoryviews: the bytes are
    written in order, as they lie in memory."""
    words = array.array("I", range(1000))
    strided = memoryview(bytes(range(200)))[::2]
    with TmpfsStore(base / "s") as store:
        for data, expected in [
            (bytearray(GOOD), GOOD),
            ([GOOD[:10], memoryview(GOOD)[10:]], GOOD),
            ((part for part in (b"ab", b"", b"cd")), b"abcd"),
            (memoryview(words), words.tobytes()),
            (strided, bytes(range(0, 200, 2))),
            (b"", b""),
        ]:
            ref = store.commit(data)  # type: ignore[arg-type]
            assert store.open() == expected
            assert ref.size == len(expected)


def test_bad_data_and_failing_generators_leave_the_previous_snapshot(base: Path) -> None:
    """A non-bytes item (TypeError) or a generator that raises mid-way aborts the
    commit: the previous snapshot stays, no temp file, no descriptor leaked."""

    def failing() -> Iterator[bytes]:
        yield b"x" * 1000
        raise ValueError("boom")

    for temp_files in ("anonymous", "named"):
        with TmpfsStore(base / temp_files, temp_files=temp_files) as store:
            store.commit(GOOD)
            fds = open_fds()
            with pytest.raises(TypeError, match="bytes-like"):
                store.commit([b"ok", "text"])  # type: ignore[list-item]
            with pytest.raises(ValueError, match="boom"):
                store.commit(failing())
            assert store.open() == GOOD
            assert temp_names(base / temp_files) == []
            assert open_fds() == fds


def test_max_size_is_enforced_on_commit_and_open(base: Path) -> None:
    """A snapshot over max_size is refused when committed, and a file over it when read."""
    directory = base / "s"
    with TmpfsStore(directory, max_size=len(GOOD)) as store:
        store.commit(GOOD)
        with pytest.raises(StoreError, match="exceeds max_size"):
            store.commit([GOOD, b"!"])
        assert store.open() == GOOD
        assert temp_names(directory) == []
    with TmpfsStore(directory, max_size=len(GOOD) - 1) as small:
        with pytest.raises(StoreError, match="larger than max_size"):
            small.open()
    with pytest.raises(ValueError):
        TmpfsStore(directory, max_size=-1)
    with pytest.raises(ValueError):
        TmpfsStore(directory, temp_files="sometimes")  # type: ignore[arg-type]


def test_closed_store_and_foreign_refs_are_refused(base: Path) -> None:
    """A closed store refuses to work; a ref of another store is refused by open()."""
    gc.collect()  # stores earlier tests dropped close now, not inside the count below
    fds = open_fds()
    store = TmpfsStore(base / "a")
    other = TmpfsStore(base / "b")
    ref = other.commit(GOOD)
    store.commit(NEW)
    with pytest.raises(StoreError, match="not a snapshot of the store"):
        store.open(ref)
    with pytest.raises(StoreError, match="not a snapshot of the store"):
        store.open(MemoryStore().commit(GOOD))
    assert TmpfsStore(base / "b").open(ref) == GOOD  # same directory, another instance
    store.close()
    store.close()
    other.close()
    assert store.closed and "closed" in repr(store)
    with pytest.raises(StoreError, match="closed"):
        store.commit(GOOD)
    with pytest.raises(StoreError, match="closed"):
        store.open()
    gc.collect()
    assert open_fds() == fds


def test_an_unclosed_store_releases_its_descriptor_when_collected(base: Path) -> None:
    """A store created inline and dropped does not leak its directory descriptor."""
    gc.collect()  # as above
    fds = open_fds()
    TmpfsStore(base / "s").commit(GOOD)
    gc.collect()
    assert open_fds() == fds


def test_auto_mode_falls_back_to_named_temp_files(base: Path) -> None:
    """When open(O_TMPFILE) is refused (EOPNOTSUPP), 'auto' commits through a named
    temp file from then on."""
    with TmpfsStore(base / "s") as store:
        with _syscalls.failpoint() as trace:
            store.commit(GOOD)
        assert "link" in trace.ops
        tmpfile_open = [i for i, op in enumerate(trace.ops) if op == "open"][1] + 1
        with _syscalls.failpoint(tmpfile_open, errno=errno.EOPNOTSUPP):
            store.commit(NEW)
        assert store.open() == NEW
        with _syscalls.failpoint() as trace:
            store.commit(GOOD)
        assert "link" not in trace.ops and trace.ops.count("rename") == 2
        assert store.open() == GOOD
    with TmpfsStore(base / "t", temp_files="anonymous") as strict:
        with _syscalls.failpoint(tmpfile_open, errno=errno.EOPNOTSUPP), \
                pytest.raises(StoreError) as info:
            strict.commit(GOOD)
        assert info.value.errno == errno.EOPNOTSUPP


def test_two_stores_on_one_directory_take_turns(base: Path) -> None:
    """Two store instances on the same directory see each other's commits."""
    with TmpfsStore(base / "s") as a, TmpfsStore(base / "s", temp_files="named") as b:
        a.commit(GOOD)
        b.commit(NEW)
        assert a.open() == NEW and a.open_previous() == GOOD


def test_orphans_of_ours_are_removed_at_start(base: Path) -> None:
    """Regular files of ours with the temp-name pattern are removed when a store opens;
    other names are left alone."""
    directory = base / "s"
    with TmpfsStore(directory) as store:
        store.commit(GOOD)
    for name in (".tmp.1.0123456789abcdef", ".tmp.22.fedcba9876543210", "keep.tmp"):
        (directory / name).write_bytes(b"partial")
    with TmpfsStore(directory) as store:
        assert store.orphans_removed == 2
        assert store.open() == GOOD
    assert sorted(os.listdir(directory)) == [".lock", "current", "keep.tmp"]


# -- G1: permissions ---------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_files_are_0600_and_the_directory_0700_whatever_the_umask(
    base: Path, umask: int, temp_files: str
) -> None:
    """G1: under umask(0) (and others) the directory is 0700, snapshot files 0600, the
    lock file private; all owned by the effective uid."""
    directory = base / "s"
    old = os.umask(umask)
    try:
        with TmpfsStore(directory, temp_files=temp_files) as store:  # type: ignore[arg-type]
            store.commit(GOOD)
            store.commit(NEW)
    finally:
        os.umask(old)
    modes = {name: os.lstat(directory / name) for name in ("current", "previous", ".lock")}
    assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700
    assert stat.S_IMODE(modes["current"].st_mode) == 0o600
    assert stat.S_IMODE(modes["previous"].st_mode) == 0o600
    assert stat.S_IMODE(modes[".lock"].st_mode) & 0o077 == 0
    assert {st.st_uid for st in modes.values()} == {os.geteuid()}


# -- G2: planted names -------------------------------------------------------------

TEMP_NAME = ".tmp.4242.00112233aabbccdd"
PLANTS = ["symlink", "fifo", "directory", "hardlink", "mode0644", "foreign"]


def plant(directory: Path, name: str, kind: str, victim: Path) -> None:
    """Put an object of ``kind`` at ``name``, replacing what is there."""
    path = directory / name
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "directory":
        path.mkdir(0o700)
    elif kind == "hardlink":
        os.link(victim, path)
    else:
        path.write_bytes(VICTIM)
        path.chmod(0o644 if kind == "mode0644" else 0o600)
        if kind == "foreign":
            os.chown(path, NOBODY, NOBODY)


def expected_outcome(name: str, kind: str, action: str) -> str:
    """What the store must do: 'ok' or 'refused'."""
    if name == "current":
        return "ok" if action == "open_previous" else "refused"
    if name == "previous":
        if action == "open_previous" or (action == "commit" and kind == "directory"):
            return "refused"
        return "ok"
    if name == ".lock":
        return "refused" if action == "commit" else "ok"
    return "ok"  # the temp-name pattern: never opened, and commits use fresh names


def judge(name: str, kind: str, action: str, result: object, expected: str) -> list[str]:
    """The G2 checker: what is wrong with the outcome of one action on a planted name."""
    if isinstance(result, StoreError):
        problems = [] if expected == "refused" else [f"{action} refused: {result}"]
        if name not in str(result):
            problems.append(f"{action}: the error does not name {name}: {result}")
        return problems
    if isinstance(result, BaseException):
        return [f"{action} raised {result!r}"]
    problems = [] if expected == "ok" else [f"{action} accepted the planted {kind}"]
    if isinstance(result, bytes):
        if result == VICTIM:
            problems.append(f"{action} returned the victim's bytes")
        else:
            check_payload(result)
    return problems


def bounded(fn: Callable[[], Any]) -> Any:
    finished, result = run_bounded(fn, timeout=10)
    assert finished, "the store blocked on a planted object"
    return result


@pytest.mark.parametrize("kind", PLANTS)
@pytest.mark.parametrize("name", ["current", "previous", ".lock", TEMP_NAME])
def test_planted_objects_are_refused_or_replaced_never_followed(
    base: Path, name: str, kind: str
) -> None:
    """G2: at each name the store uses, a symlink to a victim, a FIFO, a directory, a
    hard link to a victim, a 0644 file or a file of another uid is refused with an error
    naming it, or replaced as a name; never written through, never blocking, and any
    bytes returned are one of our snapshots."""
    if kind == "foreign" and not ROOT:
        pytest.skip("chown to another uid needs root")
    directory = base / "s"
    victim = base / "victim"
    victim.write_bytes(VICTIM)
    victim.chmod(0o600)
    before = os.stat(victim)
    with TmpfsStore(directory) as store:
        store.commit(GOOD_PREVIOUS)
        store.commit(GOOD)
    plant(directory, name, kind, victim)

    store = bounded(lambda: TmpfsStore(directory))
    assert isinstance(store, TmpfsStore), store
    try:
        outcomes = {
            "open": bounded(store.open),
            "open_previous": bounded(store.open_previous),
            "commit": bounded(lambda: store.commit(NEW)),
        }
        if name == TEMP_NAME:
            # Force a commit onto the planted name: O_EXCL refuses it whatever it is.
            store._temp_name = lambda: TEMP_NAME  # type: ignore[method-assign]
            store._anonymous = False
            outcomes["forced temp name"] = bounded(lambda: store.commit(NEW))
    finally:
        store.close()

    for action, result in outcomes.items():
        if action == "forced temp name":
            # Refused while the planted object is there; regular files of ours were
            # already removed as orphans when the store opened.
            expected = "ok" if kind in ("hardlink", "mode0644") else "refused"
        else:
            expected = expected_outcome(name, kind, action)
        assert judge(name, kind, action, result, expected) == []
    after = os.stat(victim)
    assert victim.read_bytes() == VICTIM
    assert (after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == (
        before.st_mtime_ns, stat.S_IMODE(before.st_mode))
    if name == TEMP_NAME:
        # Only regular files of ours were taken for orphans and removed.
        left = os.path.lexists(directory / TEMP_NAME)
        assert left == (kind not in ("hardlink", "mode0644"))


def test_g2_checker_catches_a_reader_that_follows_links(base: Path) -> None:
    """Negative control for G2: a reader that opens 'current' by path, following links,
    returns the victim's bytes, which the test's acceptance check rejects."""
    directory = base / "s"
    victim = base / "victim"
    victim.write_bytes(VICTIM)
    with TmpfsStore(directory) as store:
        store.commit(GOOD)
    plant(directory, "current", "symlink", victim)
    result = bounded(lambda: (directory / "current").read_bytes())
    assert judge("current", "symlink", "open", result, "refused") == [
        "open accepted the planted symlink",
        "open returned the victim's bytes",
    ]


@pytest.mark.parametrize("problem", ["symlink", "group-writable", "foreign", "file",
                                     "no parent"])
def test_an_unsafe_directory_is_refused(base: Path, problem: str) -> None:
    """The snapshot directory must be a real directory of ours, private (0700)."""
    if problem == "foreign" and not ROOT:
        pytest.skip("chown to another uid needs root")
    target = base / "real"
    target.mkdir(0o700)
    path = base / "store"
    if problem == "symlink":
        path.symlink_to(target)
        message = "symbolic link"
    elif problem == "group-writable":
        path.mkdir()
        path.chmod(0o770)
        message = "mode 0o770"
    elif problem == "foreign":
        path.mkdir(0o700)
        os.chown(path, NOBODY, NOBODY)
        message = f"owned by uid {NOBODY}"
    elif problem == "file":
        path.write_bytes(b"")
        message = "not a directory"
    else:
        path = base / "missing" / "store"
        message = "parent directory does not exist"
    fds = open_fds()
    with pytest.raises(StoreError, match=message) as info:
        TmpfsStore(path)
    assert str(path) in str(info.value)
    assert open_fds() == fds
    assert os.listdir(target) == []


# -- the directory removed while the store holds it -------------------------------------

REMOVED = "the snapshot directory was removed while the store held it"


def remove_directory(path: Path) -> None:
    """What ``rm -rf`` does to the store's directory."""
    for name in os.listdir(path):
        os.unlink(path / name)
    os.rmdir(path)


def test_a_removed_directory_is_recreated_by_the_next_commit(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """rm -rf of the directory: the next commit re-creates it (0700, ours), commits
    there, says so once, and a new store on the path opens that snapshot."""
    path = base / "s"
    with TmpfsStore(path) as store:
        store.commit(GOOD)
        remove_directory(path)
        with pytest.raises(StoreError) as info:
            store.open()
        assert info.value.errno == errno.ENOENT  # what it held is gone
        store.commit(NEW)
        st = os.lstat(path)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == os.geteuid()
        store.commit(GOOD)
        assert caplog.text.count(REMOVED) == 1
        assert (store.open(), store.open_previous()) == (GOOD, NEW)
    with TmpfsStore(path) as again:
        assert again.open() == GOOD


def test_a_directory_recreated_by_someone_else_is_used(base: Path) -> None:
    """rm -rf then install -d -m 0700 (a deploy script): the store commits into the
    directory now at the path, not into the removed one it held."""
    path = base / "s"
    with TmpfsStore(path) as store:
        store.commit(GOOD)
        remove_directory(path)
        os.mkdir(path, 0o700)
        store.commit(NEW)
        assert sorted(os.listdir(path)) == [".lock", "current"]
        assert (path / "current").read_bytes() == NEW


def test_a_removal_between_the_check_and_the_lock_is_caught(base: Path) -> None:
    """The directory is removed after the commit checked it, before it takes the lock:
    the lock's ENOENT is recognised and the commit goes to a re-created directory."""
    path = base / "s"
    with TmpfsStore(path) as store:
        lock = store._lock
        calls: list[int] = []

        def removed_first() -> int:
            if not calls:
                remove_directory(path)
            calls.append(1)
            return lock()

        store._lock = removed_first  # type: ignore[method-assign]
        store.commit(NEW)
        assert len(calls) == 2
        assert (path / "current").read_bytes() == NEW


def test_a_symlink_planted_at_a_removed_directory_is_not_followed(base: Path) -> None:
    """The directory removed and a symbolic link to another directory of ours put in
    its place: the commit is refused, saying the directory was removed, and nothing is
    written through the link."""
    path, elsewhere = base / "s", base / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    with TmpfsStore(path) as store:
        store.commit(GOOD)
        remove_directory(path)
        path.symlink_to(elsewhere)
        with pytest.raises(StoreError, match="directory was removed") as info:
            store.commit(NEW)
        assert "symbolic link" in str(info.value)
        assert os.listdir(elsewhere) == []


def test_a_directory_of_another_mode_in_its_place_is_refused(base: Path) -> None:
    """A directory open to others re-created at the path: refused as at open, saying
    the store's directory was removed."""
    path = base / "s"
    with TmpfsStore(path) as store:
        remove_directory(path)
        os.mkdir(path)
        os.chmod(path, 0o777)
        with pytest.raises(StoreError, match="directory was removed.*0o777"):
            store.commit(NEW)
        assert os.listdir(path) == []


def test_the_removal_check_can_fail(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: a store that does not notice the removal keeps failing with
    ENOENT, as before the fix, so the tests above can tell."""
    monkeypatch.setattr(TmpfsStore, "_directory_removed", lambda self: False)
    path = base / "s"
    with TmpfsStore(path) as store:
        remove_directory(path)
        os.mkdir(path, 0o700)
        for _ in range(2):
            with pytest.raises(StoreError) as info:
                store.commit(NEW)
            assert info.value.errno == errno.ENOENT


def test_holding_tells_the_committed_file_from_another_on_the_same_inode(
    tmp_path: Path,
) -> None:
    """A file system that reuses an inode at once could give another writer's
    ``current`` the inode of this commit's: the file's mtime tells them apart (here the
    same file, its mtime changed, stands in for it)."""
    store = TmpfsStore(tmp_path / "store")
    ref = store.commit(b"ours")
    assert store.holding(ref) == "held"
    current = tmp_path / "store" / "current"
    info = current.stat()
    os.utime(current, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    assert store.holding(ref) == "replaced"
