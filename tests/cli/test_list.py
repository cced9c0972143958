"""``statemigrate list DIR``: a TmpfsStore's snapshots listed with the columns and the
JSON of an object store's generations, --kinds, a directory left as it was, and one
line for every path that is no store."""

from __future__ import annotations

import errno
import json
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _store_helpers import scratch_dir
from chain_releases import write_chain
from cli_helpers import one_error_line, run
from golden import PRODUCER

import statemigrate as sm
from statemigrate._snapshot._encode import SectionInput, encode_snapshot
from statemigrate.stores import ObjectStore, _syscalls

ORPHAN = ".tmp.4242.0123456789abcdef"  # what a writer killed in a named-mode commit leaves


@pytest.fixture
def place() -> Iterator[Path]:
    with scratch_dir() as path:
        yield path


def filled_store(directory: Path) -> dict[str, bytes]:
    """A TmpfsStore holding a full snapshot as ``previous``, a checkpoint chain as
    ``current``, a chain kept as ``unrestored`` and an interrupted commit's temporary
    file, each written a second after the one before; what each file holds, by name."""
    written = write_chain()
    with sm.TmpfsStore(directory) as store:
        store.commit(written.full)
        store.commit(written.chain)
        store.keep_unrestored(written.shorter)
    (directory / ORPHAN).write_bytes(b"half a snapshot")
    for age, name in enumerate(["previous", "current", "unrestored", ORPHAN]):
        os.utime(directory / name, (1_700_000_000 + age, 1_700_000_000 + age))
    return {
        "previous": written.full,
        "current": written.chain,
        "unrestored": written.shorter,
        ORPHAN: b"half a snapshot",
    }


def test_list_shows_a_tmpfs_store_newest_first_with_the_object_stores_columns(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file the store keeps, with its role; the temporary file of a commit that
    never finished is "not committed", as an object no commit won is."""
    directory = place / "gateway"
    contents = filled_store(directory)
    result = run(capsys, "list", str(directory))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:2] == [str(directory), ""]
    assert lines[2].split() == ["FILE", "SIZE", "WRITTEN", "AGE", "ROLE"]
    rows = [line.split() for line in lines[3:]]
    assert [(row[0], " ".join(row[6:])) for row in rows] == [
        (ORPHAN, "not committed"),
        ("unrestored", "unrestored"),
        ("current", "current"),
        ("previous", "previous"),
    ]
    assert [row[3] for row in rows] == [
        "2023-11-14T22:13:23Z",
        "2023-11-14T22:13:22Z",
        "2023-11-14T22:13:21Z",
        "2023-11-14T22:13:20Z",
    ]
    assert rows[0][1:3] == [str(len(contents[ORPHAN])), "B"]


def test_list_json_of_a_tmpfs_store_has_the_shape_of_an_object_stores(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same keys per row (``generation`` null: a TmpfsStore numbers none), plus
    ``not_regular``; with --kinds, the same ``kind`` and ``pieces``."""
    directory = place / "gateway"
    contents = filled_store(directory)
    url = f"file://{place}/objects"
    ObjectStore(url).commit(contents["current"])
    printed = run(capsys, "list", url, "--json", "--kinds").out
    objects = json.loads(printed)
    # Indented with sorted keys, as every command's --json
    assert printed == json.dumps(objects, indent=2, sort_keys=True) + "\n"

    listed = json.loads(run(capsys, "list", str(directory), "--json", "--kinds").out)
    assert listed["location"] == str(directory)
    rows = listed["generations"]
    assert set(rows[0]) == set(objects["generations"][0]) | {"not_regular"}
    assert [(row["object"], row["role"], row["size"]) for row in rows] == [
        (f"{directory}/{name}", role, len(contents[name]))
        for name, role in [
            (ORPHAN, "not committed"),
            ("unrestored", "unrestored"),
            ("current", "current"),
            ("previous", "previous"),
        ]
    ]
    assert [(row["kind"], row["pieces"]) for row in rows] == [
        ("unknown", None),
        ("chain", 2),
        ("chain", 3),
        ("snapshot", None),
    ]
    assert (objects["generations"][0]["kind"], objects["generations"][0]["pieces"]) == (
        "chain",
        3,
    )
    assert all(
        row["generation"] is None
        and row["missing"] is False
        and row["not_regular"] is None
        and row["age_seconds"] > 0
        for row in rows
    )


def test_list_kinds_of_a_tmpfs_store_adds_the_kind_column(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = place / "gateway"
    filled_store(directory)
    result = run(capsys, "list", str(directory), "--kinds")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[2].split() == ["FILE", "SIZE", "WRITTEN", "AGE", "ROLE", "KIND"]
    assert [re.split(r"\s{2,}", line)[-1] for line in lines[3:]] == [
        "unknown",
        "chain of 2 pieces",
        "chain of 3 pieces",
        "snapshot",
    ]


def kinds_of(capsys: pytest.CaptureFixture[str], directory: Path) -> dict[str, dict[str, Any]]:
    """``list --kinds --json`` of ``directory``: each row by file name."""
    result = run(capsys, "list", str(directory), "--kinds", "--json")
    assert result.code == 0, result.err
    return {Path(row["object"]).name: row for row in json.loads(result.out)["generations"]}


def test_kinds_tells_a_damaged_file_from_a_snapshot(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot cut short, one with a byte of its header flipped and a chain cut
    short are ``damaged``, with the error's kind in the column and its message in
    --json; before, the snapshots' first bytes made them ``snapshot``."""
    directory = place / "gateway"
    contents = filled_store(directory)
    (directory / "previous").write_bytes(contents["previous"][:-10])
    header_byte = bytearray(contents["unrestored"])
    header_byte[-100] ^= 0x01  # in the last piece's header, before its check and footer
    (directory / "unrestored").write_bytes(bytes(header_byte))
    (directory / "current").write_bytes(contents["current"][: len(contents["current"]) // 2])
    result = run(capsys, "list", str(directory), "--kinds")
    assert result.code == 0, result.err
    lines = result.out.splitlines()[3:]
    column = {line.split()[0]: re.split(r"\s{2,}", line)[-1] for line in lines}
    assert column == {
        ORPHAN: "unknown",
        "unrestored": "damaged (corrupt)",
        "current": "damaged (truncated)",
        "previous": "damaged (truncated)",
    }
    rows = kinds_of(capsys, directory)
    assert (rows["previous"]["kind"], rows["previous"]["damage"]) == ("damaged", "truncated")
    assert rows["previous"]["error"].startswith("truncated: snapshot is cut short")
    assert rows["current"]["error"].startswith("truncated: checkpoint chain piece ")
    assert rows["unrestored"]["error"].startswith("corrupt: checkpoint chain piece 1: header")
    assert "damage" not in rows[ORPHAN]


def test_kinds_of_an_empty_file_and_a_cut_magic(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What began as a snapshot or a chain and was cut inside its first bytes is cut
    short, not something else."""
    directory = place / "gateway"
    contents = filled_store(directory)
    (directory / "previous").write_bytes(b"")
    (directory / "current").write_bytes(contents["current"][:5])
    rows = kinds_of(capsys, directory)
    assert rows["previous"]["error"] == (
        "truncated: empty (0 bytes): no snapshot, or one cut at its start"
    )
    assert rows["current"]["error"].startswith(
        "truncated: checkpoint chain ends inside its frame"
    )


def test_kinds_reads_the_ends_of_a_large_snapshot_only(
    place: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4 MiB snapshot is judged from its preamble and its last 16 KiB: no file is
    read whole, and a few small reads are all there is."""
    directory = place / "gateway"
    with sm.TmpfsStore(directory) as store:
        store.commit(large_snapshot(4 << 20))
    reads: list[int] = []
    real = _syscalls.pread_exactly

    def counted(fd: int, length: int, offset: int, *, where: str) -> bytes:
        reads.append(length)
        return real(fd, length, offset, where=where)

    def never(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("a file was read whole")

    monkeypatch.setattr(_syscalls, "pread_exactly", counted)
    monkeypatch.setattr(_syscalls, "read_all", never)
    assert kinds_of(capsys, directory)["current"]["kind"] == "snapshot"
    assert len(reads) <= 4 and sum(reads) < 20 << 10


def large_snapshot(size: int) -> bytes:
    """A sound snapshot of about ``size`` bytes of incompressible data."""
    data = random.Random(1).randbytes(size)
    sections = [SectionInput("blobs", "main", 1, "", data)]
    return encode_snapshot(sections, producer=PRODUCER).to_bytes()


def test_listing_changes_nothing_in_the_directory(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Opening a TmpfsStore would remove the orphaned temporary file and create the
    lock file; a listing looks, and leaves both as they were."""
    directory = place / "gateway"
    filled_store(directory)
    os.unlink(directory / ".lock")

    def state() -> dict[str, tuple[int, int, int]]:
        return {
            name: (st.st_ino, st.st_size, st.st_mtime_ns)
            for name in os.listdir(directory)
            if (st := os.lstat(directory / name))
        }

    before = state(), os.stat(directory).st_mtime_ns
    assert run(capsys, "list", str(directory), "--kinds").code == 0
    assert (state(), os.stat(directory).st_mtime_ns) == before


def test_a_file_that_is_not_regular_is_listed_as_refused(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Something planted at a snapshot's name is shown for what it is, and --kinds
    does not follow it (a symbolic link) or wait on it (a FIFO)."""
    directory = place / "gateway"
    filled_store(directory)
    os.unlink(directory / "previous")
    os.mkfifo(directory / "previous", 0o600)
    os.unlink(directory / "unrestored")
    os.symlink(directory / "current", directory / "unrestored")
    result = run(capsys, "list", str(directory), "--kinds")
    assert result.code == 0, result.err
    lines = result.out.splitlines()[3:]
    roles = {line.split()[0]: re.split(r"\s{2,}", line)[-2:] for line in lines}
    assert roles["previous"] == ["previous (a FIFO, refused)", "unreadable"]
    assert roles["unrestored"] == ["unrestored (a symbolic link, refused)", "unreadable"]
    rows = json.loads(run(capsys, "list", str(directory), "--json", "--kinds").out)
    refused = {row["role"]: row for row in rows["generations"] if row["not_regular"]}
    assert refused["previous"]["not_regular"] == "a FIFO"
    assert refused["unrestored"]["error"].endswith(
        "/unrestored: is a symbolic link; refusing to follow it (ELOOP)"
    )


def test_a_path_with_a_hash_is_a_directory_not_a_url_fragment(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = place / "gateway#2"
    filled_store(directory)
    result = run(capsys, "list", str(directory))
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == str(directory)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missing", "/missing: no such directory"),
        ("a-file", "/a-file: is a file, not a directory (`statemigrate inspect` reads"),
        ("a-fifo", "/a-fifo: is not a directory"),
        ("a-link", "/a-link: is a symbolic link, which a TmpfsStore refuses"),
        ("empty", "/empty: holds no snapshot: no current, previous or unrestored file"),
        ("other", "/other: holds no snapshot: no current, previous or unrestored file"),
        ("", "argument STORE: expected a URL or a directory, not an empty string"),
    ],
)
def test_a_path_that_is_no_store_is_one_line(
    path: str, message: str, place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled_store(place / "store")
    (place / "a-file").write_bytes(b"")
    os.mkfifo(place / "a-fifo")
    os.symlink(place / "store", place / "a-link")
    (place / "empty").mkdir()
    (place / "other").mkdir()
    (place / "other" / "notes.txt").write_text("not a snapshot")
    argv = ["list", str(place / path)] if path else ["list", ""]
    line = one_error_line(run(capsys, *argv), 2 if not path else 1)
    assert message in line
    assert not (place / "missing").exists()  # a listing never creates a directory


def test_an_unreadable_directory_is_one_line(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Permissions are the kernel's to refuse (the tests run as root, so the refusal
    is injected): the line names the path and the errno."""
    directory = place / "gateway"
    filled_store(directory)
    with _syscalls.failpoint(1, errno=errno.EACCES):
        line = one_error_line(run(capsys, "list", str(directory)))
    assert line == f"statemigrate: error: open {directory}: Permission denied (EACCES)"
    with _syscalls.failpoint(2, errno=errno.EACCES) as point:
        line = one_error_line(run(capsys, "list", str(directory)))
    assert point.tripped == ["listdir"]
    assert line == f"statemigrate: error: listdir {directory}: Permission denied (EACCES)"


def test_store_options_are_refused_for_a_directory(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = place / "gateway"
    filled_store(directory)
    line = one_error_line(
        run(capsys, "list", str(directory), "--store-option", "allow_http=true"), 2
    )
    assert "--store-option applies to object-store URLs, not to a directory" in line
