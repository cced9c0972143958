"""TmpfsStore under concurrency: readers during commits (C4), concurrent writers (C5),
paths swapped while a reader opens them (G3)."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _store_helpers import scaled
from _store_helpers.broken import InPlaceStore, UnlockedStore
from _store_helpers.payload import Torn, check_payload, make_payload
from _store_helpers.procs import Writer

from statemigrate import StoreError
from statemigrate.stores import TmpfsStore, _syscalls

GOOD_PREVIOUS = make_payload(1, 2_000)
GOOD = make_payload(2, 200_000)
NEW = make_payload(3, 300_000)
VICTIM = make_payload(666, 500)
NOBODY = 65534
LOOP_DEADLINE = 300.0  # a hung writer fails the test instead of hanging CI


def read_verdict(read: Callable[[], bytes]) -> tuple[str, int]:
    """The reader's checker: ('ok', generation), ('refused', 0), ('victim', 0) or
    ('torn', 0) for one read."""
    try:
        data = read()
    except StoreError:
        return "refused", 0
    if data == VICTIM:
        return "victim", 0
    try:
        return "ok", check_payload(data)[0]
    except Torn:
        return "torn", 0


# -- C4: readers during commits ------------------------------------------------------


@pytest.mark.slow
def test_readers_never_see_a_partial_snapshot(base: Path) -> None:
    """C4: while a writer process commits thousands of generations (1-256 KiB), a
    reader opening the latest snapshot in a loop sees 0 partial or invalid snapshots,
    and generations that never go backwards."""
    commits = scaled(2_000, 10_000)
    directory = base / "store"
    directory.mkdir(mode=0o700)
    counts = {"ok": 0, "torn": 0, "refused": 0, "victim": 0}
    backwards = 0
    last = 0
    with Writer("loop", str(directory), str(commits), "1024", str(256 * 1024), "7",
                stderr_path=base / "writer.stderr") as writer, TmpfsStore(directory) as store:
        writer.expect("ready", timeout=60)
        deadline = time.monotonic() + LOOP_DEADLINE
        while writer.proc.poll() is None and time.monotonic() < deadline:
            verdict, generation = read_verdict(store.open)
            counts[verdict] += 1
            backwards += generation < last
            last = max(last, generation)
        assert writer.wait(timeout=60) == 0, writer.stderr_text()
        writer.expect("done")
        assert check_payload(store.open()) == (commits, 0)
    print(f"{commits} commits, {sum(counts.values())} reads: {counts}, {backwards} backwards")
    assert counts["ok"] > 0
    assert (counts["torn"], counts["refused"], counts["victim"], backwards) == (0, 0, 0, 0)


@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_a_read_at_every_step_of_a_commit_is_complete(base: Path, temp_files: str) -> None:
    """C4, deterministic: a read made just before each I/O operation of a commit
    returns the old snapshot or the new one, complete."""
    directory = base / "store"
    verdicts: list[tuple[str, int]] = []
    with TmpfsStore(directory, temp_files=temp_files) as store:  # type: ignore[arg-type]
        store.commit(GOOD_PREVIOUS)
        store.commit(GOOD)
        reader = TmpfsStore(directory)
        try:
            # The reader's own operations pass through the failpoint too; only the
            # writer's ones trigger a read.
            busy = threading.local()

            def read_now(op: str) -> None:
                if not getattr(busy, "on", False):
                    busy.on = True
                    try:
                        verdicts.append(read_verdict(reader.open))
                    finally:
                        busy.on = False

            with _syscalls.failpoint(1, persistent=True, action=read_now):
                store.commit(NEW)
        finally:
            reader.close()
    assert len(verdicts) >= 10
    assert {v for v, _ in verdicts} == {"ok"}
    assert [g for _, g in verdicts] == sorted(g for _, g in verdicts)
    assert {g for _, g in verdicts} <= {2, 3}


def test_a_snapshot_replaced_after_it_was_opened_is_still_read_whole(base: Path) -> None:
    """C4 detail: a commit that renames a newer snapshot over the file a reader has
    just opened leaves that file with no name (st_nlink 0); the reader still returns it
    whole instead of refusing it."""
    directory = base / "store"
    with TmpfsStore(directory) as store:
        store.commit(GOOD)
        newer = directory / "newer"
        newer.write_bytes(NEW)
        newer.chmod(0o600)

        def replace(op: str) -> None:
            os.rename(newer, directory / "current")

        with _syscalls.failpoint(2, action=replace) as fp:  # just before the reader's fstat
            assert store.open() == GOOD
        assert fp.tripped == ["fstat"]
        assert store.open() == NEW


def test_reader_checker_catches_an_in_place_writer(base: Path) -> None:
    """Negative control for C4: a read made between the two half-writes of an
    in-place writer is reported torn by the same checker."""
    directory = base / "store"
    writer = InPlaceStore(directory)
    verdicts: list[tuple[str, int]] = []
    try:
        writer.commit(GOOD)
        with TmpfsStore(directory) as reader:
            writes = 0

            def read_between_halves(op: str) -> None:
                nonlocal writes
                if op == "write":
                    writes += 1
                    if writes == 2:
                        verdicts.append(read_verdict(reader.open))

            with _syscalls.failpoint(1, persistent=True, action=read_between_halves):
                writer.commit(NEW)
    finally:
        writer.close()
    assert verdicts == [("torn", 0)]


# -- C5: concurrent writers ----------------------------------------------------------


@pytest.mark.slow
def test_two_writer_processes_take_turns_under_the_lock(base: Path) -> None:
    """C5: two processes commit ~300 snapshots each; each snapshot's generation is
    drawn from an unprotected counter file inside the commit, so only the store's lock
    keeps the draws apart: all 600 generations are distinct and gapless, no commit
    fails, and the store ends with the last two generations, complete."""
    per_writer = scaled(300, 1_000)
    directory = base / "store"
    directory.mkdir(mode=0o700)
    counter = base / "counter"
    counter.write_bytes(b"0")
    writers = [
        Writer("counter", str(directory), str(counter), str(i), str(per_writer), str(i),
               stderr_path=base / f"writer{i}.stderr")
        for i in (1, 2)
    ]
    drawn: list[int] = []
    try:
        for writer in writers:
            line = writer.expect("values ", timeout=LOOP_DEADLINE)
            drawn += [int(v) for v in line.split()[1:]]
            assert writer.wait(timeout=60) == 0, writer.stderr_text()
    finally:
        for writer in writers:
            writer.close()
    total = 2 * per_writer
    assert len(drawn) == total
    assert sorted(drawn) == list(range(1, total + 1))  # 0 duplicated, 0 lost
    with TmpfsStore(directory) as store:
        assert check_payload(store.open())[0] == total
        assert check_payload(store.open_previous())[0] == total - 1


def peak_overlap(first: TmpfsStore, second: TmpfsStore) -> int:
    """The C5 checker, deterministic: how many commits were inside their critical
    section at once. The first commit waits (at most 0.5 s) inside it for the second
    to enter; a working lock keeps the second out until the first is done."""
    inside = 0
    peak = 0
    guard = threading.Lock()
    entered = [threading.Event(), threading.Event()]
    errors: list[BaseException] = []

    def data(me: int) -> Iterator[bytes]:
        nonlocal inside, peak
        with guard:
            inside += 1
            peak = max(peak, inside)
        entered[me].set()
        if me == 0:
            entered[1].wait(0.5)
        yield GOOD
        with guard:
            inside -= 1

    def commit(store: TmpfsStore, me: int) -> None:
        try:
            store.commit(data(me))
        except BaseException as exc:  # the unlocked variant may collide on 'current'
            errors.append(exc)

    thread = threading.Thread(target=commit, args=(first, 0))
    thread.start()
    assert entered[0].wait(10)
    commit(second, 1)
    thread.join(10)
    assert not thread.is_alive()
    return peak


def test_commits_in_one_process_are_serialised(base: Path) -> None:
    """C5, deterministic: two store instances on one directory never commit at once."""
    directory = base / "store"
    with TmpfsStore(directory) as a, TmpfsStore(directory) as b:
        assert peak_overlap(a, b) == 1
        assert check_payload(a.open()) == (2, 0)


def test_overlap_checker_catches_a_store_without_lock(base: Path) -> None:
    """Negative control for C5: with a lock that does nothing, the commits overlap."""
    directory = base / "store"
    with UnlockedStore(directory) as a, UnlockedStore(directory) as b:
        assert peak_overlap(a, b) == 2


# -- G3: swapping the path between check and open ------------------------------------

BAD_KINDS = ["symlink", "hardlink", "mode0644", "foreign", "fifo", "directory"]


def make_bad(directory: Path, victim: Path) -> list[str]:
    """Objects to swap in for 'current', prepared under 'bad-<kind>' names."""
    names = []
    for kind in BAD_KINDS:
        if kind == "foreign" and os.geteuid() != 0:
            continue
        path = directory / f"bad-{kind}"
        if kind == "symlink":
            path.symlink_to(victim)
        elif kind == "hardlink":
            os.link(victim, path)
        elif kind == "fifo":
            os.mkfifo(path, 0o600)
        elif kind == "directory":
            path.mkdir(0o700)
        else:
            path.write_bytes(VICTIM)
            path.chmod(0o644 if kind == "mode0644" else 0o600)
            if kind == "foreign":
                os.chown(path, NOBODY, NOBODY)
        names.append(path.name)
    return names


def swap_in(directory: Path, bad: str) -> None:
    os.rename(directory / "current", directory / "stash")
    os.rename(directory / bad, directory / "current")


def swap_out(directory: Path, bad: str) -> None:
    os.rename(directory / "current", directory / bad)
    os.rename(directory / "stash", directory / "current")


def setup_store(base: Path) -> tuple[Path, Path]:
    directory = base / "store"
    victim = base / "victim"
    victim.write_bytes(VICTIM)
    victim.chmod(0o600)
    with TmpfsStore(directory) as store:
        store.commit(GOOD_PREVIOUS)
        store.commit(GOOD)
    return directory, victim


def naive_read(path: Path, between: Callable[[], None]) -> bytes:
    """A reader that checks the path, then opens it by name (following links)."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_mode & 0o077:
        raise StoreError("open", str(path), "refused by the path check")
    between()
    with open(path, "rb") as f:
        return f.read()


def test_a_swap_just_before_open_is_caught_by_fstat(base: Path) -> None:
    """G3, deterministic: whatever is swapped in at the very moment the store opens
    'current' is refused (checked on the opened descriptor), never read."""
    directory, victim = setup_store(base)
    with TmpfsStore(directory) as store:
        for bad in make_bad(directory, victim):

            def swap(op: str, bad: str = bad) -> None:
                swap_in(directory, bad)

            with _syscalls.failpoint(1, action=swap):
                verdict = read_verdict(store.open)
            swap_out(directory, bad)
            assert verdict == ("refused", 0), bad
        assert store.open() == GOOD


def test_swap_checker_catches_a_reader_that_checks_the_path(base: Path) -> None:
    """Negative control for G3: a reader that checks the path and then opens it by
    name reads the victim when the same swap happens between check and open."""
    directory, victim = setup_store(base)
    make_bad(directory, victim)
    current = directory / "current"
    assert read_verdict(lambda: naive_read(current, lambda: None)) == ("ok", 2)
    verdict = read_verdict(lambda: naive_read(current, lambda: swap_in(directory, "bad-symlink")))
    assert verdict == ("victim", 0)


@pytest.mark.slow
def test_a_racing_swap_is_never_read(base: Path) -> None:
    """G3: a thread keeps swapping symlinks, hard links, 0644, foreign-owned files,
    FIFOs and directories in and out of 'current' while the store opens it thousands
    of times: 0 reads of a swapped-in object, 0 blocked opens."""
    iterations = scaled(2_000, 10_000)
    directory, victim = setup_store(base)
    bads = make_bad(directory, victim)
    stop = threading.Event()
    swaps = 0
    errors: list[BaseException] = []

    def swapper() -> None:
        nonlocal swaps
        try:
            while not stop.is_set():
                for bad in bads:
                    swap_in(directory, bad)
                    swap_out(directory, bad)
                    swaps += 1
        except BaseException as exc:
            errors.append(exc)

    counts = {"ok": 0, "refused": 0, "victim": 0, "torn": 0}
    thread = threading.Thread(target=swapper, daemon=True)
    with TmpfsStore(directory) as store:
        thread.start()
        try:
            for _ in range(iterations):
                counts[read_verdict(store.open)[0]] += 1
        finally:
            stop.set()
            thread.join(10)
    assert not thread.is_alive() and errors == []
    print(f"{iterations} opens during {swaps} swaps: {counts}")
    assert counts["ok"] + counts["refused"] == iterations
    assert (counts["victim"], counts["torn"]) == (0, 0)
