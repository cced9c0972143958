"""ObjectStore under concurrency and load: writers racing on one prefix (one winner per
generation, nothing lost or torn), and reading a large snapshot in bounded memory."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import obstore
import pytest
from _store_helpers import scratch_dir
from _store_helpers.azurite import AZURITE, running_azurite
from _store_helpers.object_server import (
    SEAWEEDFS,
    Place,
    S3Server,
    names,
    running_seaweedfs,
    s3_place,
)
from _store_helpers.payload import Torn, check_payload, make_payload

from statemigrate import StoreConflictError, StoreError
from statemigrate.stores import ObjectStore
from statemigrate.stores._object_pointer import generation_of

CHILD = str(Path(__file__).resolve().parents[1] / "_store_helpers" / "object_child.py")
WRITERS = 4
ATTEMPTS = 50  # per writer: 200 commits in all
SIZE = 3_000
MiB = 1 << 20


def verdict(place: Place, outcomes: list[list[Any]], reads: dict[str, int]) -> dict[str, int]:
    """Check the outcomes of every commit attempt against what the store holds.

    Every won generation must be there once, holding the winner's exact payload (not
    lost, not torn); generations must run without a gap or a second winner; the
    losers must have left no object behind. They run from 1, or from a little past it:
    the first commits find no pointer and number past the generation objects already
    uploaded, so a first winner that lists another writer's unpointed upload takes the
    number after it (that upload's writer then loses, and its object goes).
    """
    wins = [(entry[1], entry[3], entry[2]) for entry in outcomes if entry[0] == "won"]
    conflicts = [entry for entry in outcomes if entry[0] == "conflict"]
    errors = [entry for entry in outcomes if entry[0] == "error"]
    assert errors == [], errors[:3]
    generations = sorted(generation for generation, _, _ in wins)
    first = generations[0] if generations else 1
    assert first <= WRITERS, f"the first generation won is {first}"
    assert generations == list(range(first, first + len(generations))), "a generation won twice"
    store = place.store()
    by_generation: dict[int, list[str]] = {}
    for name in names(store):
        by_generation.setdefault(generation_of(name) or 0, []).append(name)
    assert sorted(by_generation) == generations, "an object without a winner, or missing"
    lost = torn = 0
    for generation, writer, attempt in wins:
        (name,) = by_generation[generation]
        data = obstore.get(store._backend.store, store._backend.key(name)).bytes()
        try:
            found = check_payload(memoryview(data))
        except Torn:
            torn += 1
            continue
        lost += found != (attempt, writer)
    assert store.ref().generation == first + len(generations) - 1
    counts = {
        "commits": len(outcomes), "won": len(wins), "conflicts": len(conflicts),
        "lost": lost, "torn": torn, "generations": len(generations), **reads,
    }
    assert (lost, torn, reads.get("torn reads", 0)) == (0, 0, 0), counts
    assert len(wins) + len(conflicts) == len(outcomes)
    return counts


def run_writers(
    place: Place, reader: ObjectStore | None, *broken: str
) -> tuple[list[list[Any]], dict[str, int]]:
    """WRITERS child processes make ATTEMPTS commits each, all starting at once; the
    parent reads the current snapshot meanwhile when given a reader."""
    spec = place.spec(keep=10_000)
    children = [
        subprocess.Popen(
            [sys.executable, CHILD, "commit", spec, str(writer), str(ATTEMPTS), str(SIZE),
             *broken],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for writer in range(WRITERS)
    ]
    reads = {"reads": 0, "torn reads": 0}
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        while reader is not None and any(child.poll() is None for child in children):
            try:
                check_payload(reader.open())
                reads["reads"] += 1
            except StoreError:
                pass  # nothing committed yet
            except Torn:
                reads["torn reads"] += 1
        outcomes: list[list[Any]] = []
        for writer, child in enumerate(children):
            out, err = child.communicate(timeout=600)
            assert child.returncode == 0, err[-3000:]
            outcomes.extend(
                [*entry, writer] if entry[0] == "won" else entry
                for entry in json.loads(out.splitlines()[-1])
            )
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=60)
            for pipe in (child.stdin, child.stdout, child.stderr):
                if pipe is not None and not pipe.closed:
                    pipe.close()
    return outcomes, reads


KINDS: list[Any] = ["s3", "file"]
if SEAWEEDFS:
    KINDS.append(pytest.param("seaweedfs", marks=pytest.mark.seaweedfs))
if AZURITE:
    KINDS.append(pytest.param("azurite", marks=pytest.mark.azurite))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_committers_never_both_win(kind: str, request: pytest.FixtureRequest) -> None:
    """200 commits from 4 processes racing on one prefix (moto's S3 server, or a local
    directory): exactly one winner per generation, every other attempt a
    StoreConflictError, 0 commits lost, 0 objects torn, 0 torn reads by a reader
    running meanwhile, and no object left by a loser."""
    with contextlib.ExitStack() as stack:
        if kind == "s3":
            place = s3_place(request.getfixturevalue("s3"))
        elif kind == "seaweedfs":
            place = stack.enter_context(running_seaweedfs()).place()
        elif kind == "azurite":
            place = stack.enter_context(running_azurite()).place()
        else:
            place = Place("file", f"file://{stack.enter_context(scratch_dir())}/app", {})
        outcomes, reads = run_writers(place, place.store())
        counts = verdict(place, outcomes, reads)
    print(f"{kind}: {counts}")


@pytest.mark.slow
def test_the_race_check_catches_an_unconditional_pointer_write() -> None:
    """Negative control: writers that overwrite the pointer without comparing etags
    all "win", several of them the same generation, and the check says so."""
    with scratch_dir() as path:
        place = Place("file", f"file://{path}/app", {})
        outcomes, reads = run_writers(place, None, "overwrite")
        with pytest.raises(AssertionError, match="a generation won twice"):
            verdict(place, outcomes, reads)


def test_concurrent_threads_on_one_memory_store() -> None:
    """The same race between 4 threads sharing one in-memory obstore store."""
    place = Place("memory", "memory://", {})
    outcomes: list[list[Any]] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        store = place.store(keep=10_000)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                ref = store.commit(make_payload(attempt, SIZE, tag=number))
                entry: list[Any] = ["won", ref.generation, attempt, number]
            except StoreConflictError as exc:
                entry = ["conflict", exc.generation, exc.winner]
            with lock:
                outcomes.append(entry)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"memory: {verdict(place, outcomes, {})}")


@pytest.mark.slow
def test_open_reads_a_large_snapshot_into_one_buffer(s3: S3Server) -> None:
    """Reading a 64 MiB snapshot from S3 grows the reader's peak memory by about the
    snapshot's size (one buffer plus a range or two in flight), where a reader that
    fetches the object whole and copies it needs twice that: the negative control."""
    place = s3_place(s3)
    size = 64 * MiB
    place.store().commit(make_payload(7, size))
    growth = {}
    for mode in ("store", "naive"):
        result = subprocess.run(
            [sys.executable, CHILD, "open", place.spec(part_size=5 * MiB), mode],
            capture_output=True, text=True, timeout=300, check=True,
        )
        nbytes, grown = map(int, result.stdout.split())
        assert nbytes == size
        growth[mode] = grown
    print(f"peak growth reading {size >> 20} MiB: store {growth['store'] / size:.2f}x,"
          f" naive {growth['naive'] / size:.2f}x")
    assert growth["store"] < 1.35 * size
    assert growth["naive"] > 1.7 * size
