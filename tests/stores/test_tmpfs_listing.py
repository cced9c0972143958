"""Listing a TmpfsStore's directory without opening the store: its files and their roles,
newest first, a file gone since the listing, and reading one as the store would."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from statemigrate import StoreError
from statemigrate.stores import TmpfsStore, _syscalls
from statemigrate.stores._tmpfs_listing import list_tmpfs


def store_of(base: Path) -> Path:
    """``current``, ``previous`` and ``unrestored``, two seconds apart, oldest first."""
    directory = base / "s"
    with TmpfsStore(directory) as store:
        store.commit(b"first")
        store.commit(b"second!")
        store.keep_unrestored(b"kept")
    for age, name in enumerate(["previous", "unrestored", "current"]):
        os.utime(directory / name, ns=(0, (1_700_000_000 + 2 * age) * 10**9))
    return directory


def test_files_are_listed_newest_first_with_their_roles(base: Path) -> None:
    directory = store_of(base)
    (directory / ".tmp.1.00000000000000ff").write_bytes(b"x")
    (directory / "notes").write_bytes(b"not the store's")
    os.utime(directory / ".tmp.1.00000000000000ff", ns=(0, 1_700_000_003 * 10**9))
    files = list_tmpfs(directory)
    assert [(entry.name, entry.role, entry.size) for entry in files] == [
        ("current", "current", len(b"second!")),
        (".tmp.1.00000000000000ff", "not committed", 1),
        ("unrestored", "unrestored", len(b"kept")),
        ("previous", "previous", len(b"first")),
    ]
    assert files[0].modified.timestamp() == 1_700_000_004
    assert [entry.open() for entry in files[::2]] == [b"second!", b"kept"]


def test_equal_times_keep_the_stores_order(base: Path) -> None:
    directory = store_of(base)
    for name in ("previous", "unrestored", "current"):
        os.utime(directory / name, ns=(0, 1_700_000_000 * 10**9))
    assert [entry.role for entry in list_tmpfs(directory)] == [
        "current",
        "previous",
        "unrestored",
    ]


def test_a_file_gone_since_the_listing_is_left_out(base: Path) -> None:
    """A commit may rename ``current`` to ``previous`` between the listing and the
    look at each name: what is gone is not listed, and nothing fails."""
    directory = store_of(base)
    with _syscalls.failpoint(4, errno=errno.ENOENT) as point:
        files = list_tmpfs(directory)
    assert point.ops[:4] == ["open", "listdir", "stat", "stat"]  # current, then previous
    assert [entry.name for entry in files] == ["current", "unrestored"]


def test_reading_refuses_what_the_store_refuses(base: Path) -> None:
    directory = store_of(base)
    os.unlink(directory / "previous")
    os.mkfifo(directory / "previous", 0o600)
    files = {entry.name: entry for entry in list_tmpfs(directory)}
    assert files["previous"].not_regular == "a FIFO"
    with pytest.raises(StoreError, match="previous: is a FIFO, not a regular file"):
        files["previous"].open()  # judged by fstat: never waits for a writer
    with pytest.raises(StoreError, match="snapshot of 7 bytes is larger than max_size 3"):
        files["current"].open(max_size=3)
