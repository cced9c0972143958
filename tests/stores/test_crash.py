"""Crash consistency of TmpfsStore commits under kill -9 (matrix C1, G5)."""

from __future__ import annotations

import errno
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _store_helpers import scaled, temp_names
from _store_helpers.payload import Torn, check_payload, make_payload
from _store_helpers.procs import Zygote

from statemigrate import StoreError
from statemigrate.stores import TmpfsStore, _syscalls


@pytest.fixture
def zygote(base: Path) -> Iterator[Zygote]:
    with Zygote(stderr_path=base / "writer.stderr") as z:
        assert isinstance(z, Zygote)
        yield z


def check_after_kill(directory: Path, must_have: int) -> tuple[int, int]:
    """The checker: what a restarting service would find after a writer was killed.

    Returns ``(generation found, orphan temp files found)``.

    Raises:
        Torn: the latest snapshot is missing, torn, older than ``must_have`` (the last
            acknowledged generation), or orphans were left and not cleaned up.
    """
    orphans = temp_names(directory)
    if len(orphans) > 1:
        raise Torn(f"{len(orphans)} orphan temp files: {orphans}")
    with TmpfsStore(directory) as store:
        if store.orphans_removed != len(orphans) or temp_names(directory):
            raise Torn(f"orphans {orphans} not removed by the next TmpfsStore")
        try:
            data = store.open()
        except StoreError as exc:
            if exc.errno == errno.ENOENT and must_have == 0:
                return 0, len(orphans)  # killed before its first commit returned
            raise Torn(f"unrestorable: {exc}") from exc
    generation, _ = check_payload(data)
    if generation < must_have:
        raise Torn(f"generation {generation} is older than the last acknowledged {must_have}")
    return generation, len(orphans)


def assert_killed(status: int, zygote: Zygote) -> None:
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"the writer ended by itself (status {status}):\n{zygote.stderr_text()}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("temp_files", ["anonymous", "named"])
def test_kill_9_at_random_points_never_loses_the_last_acknowledged_snapshot(
    base: Path, zygote: Zygote, temp_files: str
) -> None:
    """C1: SIGKILL a committing writer after a random 5-40 ms, many times in a row on
    the same directory: every time, the latest snapshot is complete and at least as
    new as the last acknowledged one; at most one orphan, removed at the next start."""
    kills = scaled(200, 1000)
    directory = base / "store"
    rng = random.Random(20240607)
    floor = 0  # the generation found after the previous kill
    acked_total = 0
    orphans_total = 0
    for i in range(kills):
        acks: list[int] = []
        pid = zygote.run(directory, temp_files, seed=i, acks=acks)
        time.sleep(rng.uniform(0.005, 0.040))
        assert_killed(zygote.kill(pid, acks), zygote)
        must_have = max([floor, *acks])
        found, orphans = check_after_kill(directory, must_have)
        floor = found
        acked_total += len(acks)
        orphans_total += orphans
    print(f"{temp_files}: {kills} kills, {acked_total} acknowledged commits,"
          f" final generation {floor}, {orphans_total} orphans removed, 0 lost")
    assert floor >= acked_total > 0  # the writers really committed between kills
    if temp_files == "anonymous":
        assert orphans_total == 0  # an O_TMPFILE file has no name to leave behind


@pytest.mark.slow
@pytest.mark.parametrize(
    ("temp_files", "pause", "orphans"),
    [
        # Named mode, killed between write and rename: exactly one orphan.
        ("named", "2:fsync:1", 1),
        ("named", "2:rename:2", 1),
        # Anonymous mode, killed at the same points: nothing is left behind.
        ("anonymous", "2:fsync:1", 0),
        ("anonymous", "2:link:1", 0),
    ],
)
def test_kill_inside_a_commit_leaves_the_previous_snapshot_and_at_most_one_orphan(
    base: Path, zygote: Zygote, temp_files: str, pause: str, orphans: int
) -> None:
    """G5 (kill): a writer killed at a chosen point inside its second commit leaves
    generation 1 readable; its orphan, if any, is removed by the next TmpfsStore."""
    directory = base / "store"
    acks: list[int] = []
    pid = zygote.run(directory, temp_files, seed=1, acks=acks, pause=pause)
    zygote.expect("paused", acks=acks)
    assert_killed(zygote.kill(pid, acks), zygote)
    assert acks == [1]
    assert len(temp_names(directory)) == orphans
    assert check_after_kill(directory, must_have=1) == (1, orphans)
    assert temp_names(directory) == []


def test_kill_checker_catches_an_in_place_writer(base: Path, zygote: Zygote) -> None:
    """Negative control for C1: a writer that truncates and rewrites 'current' in
    place, killed between its two half-writes, is reported torn by the same checker."""
    directory = base / "store"
    acks: list[int] = []
    pid = zygote.run(directory, "inplace", seed=1, acks=acks, pause="2:write:2")
    zygote.expect("paused", acks=acks)
    assert_killed(zygote.kill(pid, acks), zygote)
    assert acks == [1]
    with pytest.raises(Torn, match="expected"):
        check_after_kill(directory, must_have=1)


def test_orphans_after_success_and_failure(base: Path) -> None:
    """G5 (success, failure): 0 orphans after commits that succeed; after a named-mode
    commit whose every operation fails from the write on (so removing its temp file
    fails too), exactly 1 orphan, removed by the next TmpfsStore; no file is ever
    created outside the store's directory."""
    directory = base / "store"
    outside_before = sorted(os.listdir(base))
    with TmpfsStore(directory, temp_files="named") as store:
        store.commit(make_payload(1, 2048))
        store.commit(make_payload(2, 2048))
        assert temp_names(directory) == []
        with _syscalls.failpoint() as trace:
            store.commit(make_payload(3, 2048))
        first_write = trace.ops.index("write") + 1
        with _syscalls.failpoint(first_write, persistent=True), pytest.raises(StoreError) as info:
            store.commit(make_payload(4, 2048))
        assert info.value.op == "write"
        assert len(temp_names(directory)) == 1
        assert check_payload(store.open()) == (3, 0)
    with TmpfsStore(directory) as reopened:
        assert reopened.orphans_removed == 1
        assert temp_names(directory) == []
        assert check_payload(reopened.open()) == (3, 0)
    assert sorted(os.listdir(base)) == sorted([*outside_before, "store"])
