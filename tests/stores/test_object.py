"""ObjectStore: the store contract on memory://, file:// and a real S3 server (moto on
loopback); faults (the server gone mid-upload, corrupt and missing objects, stale
etags, lost replies, a missing bucket, wrong credentials); configuration; lazy import."""

from __future__ import annotations

import array
import functools
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import obstore
import pytest
import xxhash
from _store_helpers import scratch_dir
from _store_helpers.azurite import AZURITE
from _store_helpers.conditions import assert_enforces_conditions
from _store_helpers.fifo import watched_fifo
from _store_helpers.object_server import (
    KEYS,
    SEAWEEDFS,
    Place,
    S3Server,
    SeaweedFS,
    cable_to,
    free_port,
    names,
    running_seaweedfs,
    s3_place,
)
from _store_helpers.payload import check_payload, make_payload
from hypothesis import given
from hypothesis import strategies as st
from obstore.store import MemoryStore as RawMemoryStore
from obstore.store import S3Store
from restore_children.components import build_registry, exports, set_state

from statemigrate import (
    ConfigurationError,
    RestoreError,
    Service,
    SnapshotError,
    StoreConflictError,
    StoreError,
)
from statemigrate.reference import KVCacheV1
from statemigrate.stores import MemoryStore, ObjectRef, ObjectStore, SnapshotRef, Store
from statemigrate.stores._object_backend import Backend, Refused
from statemigrate.stores._object_pointer import decode_pointer

MiB = 1 << 20
GOOD_PREVIOUS = make_payload(1, 2_000)
GOOD = make_payload(2, 3_000)
NEW = make_payload(3, 4_000)
BIG = make_payload(4, 12 * MiB + 123)  # more than part_size: uploaded in parts
FAIL_FAST: dict[str, Any] = {"retries": 0, "timeout": 5.0, "connect_timeout": 2.0}


@pytest.fixture(scope="module")
def seaweedfs() -> Iterator[SeaweedFS]:
    with running_seaweedfs() as server:
        yield server


PLACES: list[Any] = ["memory", "file", "s3"]
if SEAWEEDFS:
    PLACES.append(pytest.param("seaweedfs", marks=pytest.mark.seaweedfs))
if AZURITE:
    PLACES.append(pytest.param("azurite", marks=pytest.mark.azurite))


@pytest.fixture(params=PLACES)
def place(request: pytest.FixtureRequest) -> Iterator[Place]:
    if request.param in ("seaweedfs", "azurite"):
        yield request.getfixturevalue(request.param).place()
    elif request.param == "memory":
        yield Place("memory", "memory://", {})
    elif request.param == "file":
        with scratch_dir() as path:
            yield Place("file", f"file://{path}/app", {})
    else:
        yield s3_place(request.getfixturevalue("s3"))


def put_raw(store: ObjectStore, name: str, data: bytes) -> None:
    """Write an object behind the store's back, as anyone with bucket access could."""
    obstore.put(store._backend.store, store._backend.key(name), data)


def pointer_json(store: ObjectStore) -> dict[str, Any]:
    raw = obstore.get(store._backend.store, store._backend.key("current")).bytes()
    loaded: dict[str, Any] = json.loads(bytes(raw))
    return loaded


# -- the store contract, on every backend ------------------------------------------------


def test_commit_and_open_keep_current_and_previous(place: Place) -> None:
    """open() is the latest commit, open_previous() the one before; each ref names its
    own generation; nothing but the kept generations stays behind."""
    store = place.store()
    assert isinstance(store, Store)
    with pytest.raises(StoreError, match="no snapshot has been committed"):
        store.open()
    first = store.commit(GOOD_PREVIOUS)
    assert isinstance(first, SnapshotRef) and isinstance(first, ObjectRef)
    assert (first.generation, first.size) == (1, len(GOOD_PREVIOUS))
    assert first.describe().startswith(f"{store.location}/generations/00000000000000000001.")
    with pytest.raises(StoreError, match="no previous snapshot"):
        store.open_previous()
    second = store.commit(GOOD)
    assert store.open() == GOOD == second.open() == store.ref().open()
    assert first.open() == GOOD_PREVIOUS == store.open_previous() == store.open(first)
    assert store.ref("previous").generation == 1
    store.commit(NEW)
    assert (bytes(store.open()), bytes(store.open_previous())) == (NEW, GOOD)
    assert len(names(store)) == 2  # keep=2: generation 1 was deleted
    assert place.store().open() == NEW  # another instance on the same place


def test_commit_accepts_any_buffers_and_iterables(place: Place) -> None:
    """One buffer, several, a generator, typed and strided memoryviews, an empty
    snapshot, and one large enough to go up in parts: the bytes come back in order."""
    words = array.array("I", range(1000))
    strided = memoryview(bytes(range(200)))[::2]
    store = place.store()
    for data, expected in [
        (bytearray(GOOD), GOOD),
        ([GOOD[:10], memoryview(GOOD)[10:]], GOOD),
        ((part for part in (b"ab", b"", b"cd")), b"abcd"),
        (memoryview(words), words.tobytes()),
        (strided, bytes(range(0, 200, 2))),
        (b"", b""),
        ((BIG[i : i + 3 * MiB] for i in range(0, len(BIG), 3 * MiB)), BIG),
    ]:
        ref = store.commit(data)  # type: ignore[arg-type]
        assert store.open() == expected
        assert ref.size == len(expected)


def test_failed_commits_leave_the_pointer_and_no_objects(place: Place) -> None:
    """A non-bytes item, a generator that raises (before and after the upload turned
    multipart), and data over max_size abort the commit: current and previous stay,
    and no object of the failed commit is left."""

    def failing(after: int) -> Iterator[bytes]:
        yield b"x" * after
        yield b"y" * MiB
        raise ValueError("boom")

    store = place.store(max_size=20 * MiB)
    store.commit(GOOD_PREVIOUS)
    store.commit(GOOD)
    before = names(store)
    with pytest.raises(TypeError, match="bytes-like"):
        store.commit([b"ok", "text"])  # type: ignore[list-item]
    for after in (10, 9 * MiB):
        with pytest.raises(ValueError, match="boom"):
            store.commit(failing(after))
    with pytest.raises(StoreError, match="exceeds max_size"):
        store.commit([GOOD, b"z" * 20 * MiB])
    with pytest.raises(StoreError, match="exceeds max_size"):
        store.commit(b"z" * MiB for _ in range(21))
    assert (bytes(store.open()), bytes(store.open_previous())) == (GOOD, GOOD_PREVIOUS)
    assert names(store) == before


def test_max_size_is_enforced_on_open(place: Place) -> None:
    place.store().commit(GOOD)
    with pytest.raises(StoreError, match="larger than max_size"):
        place.store(max_size=len(GOOD) - 1).open()


def test_refs_name_one_generation_until_retention_deletes_it(place: Place) -> None:
    """With keep=3, refs of the three newest generations open their own bytes; older
    ones are gone, and opening them says so."""
    store = place.store(keep=3)
    refs = [store.commit(make_payload(n, 500 + n)) for n in range(1, 6)]
    for ref in refs[2:]:
        assert check_payload(ref.open()) == (ref.generation, 0)
    for ref in refs[:2]:
        with pytest.raises(StoreError, match="is missing"):
            ref.open()
    assert len(names(store)) == 3


def test_generations_lists_each_object_and_ref_opens_any_of_them(place: Place) -> None:
    """generations() lists every kept generation, oldest first, with its size, the
    time it was written and what the pointer calls it; ref(N) opens any of them,
    older ones included, and names the kept ones when N is not there."""
    store = place.store(keep=4)
    assert store.generations() == []
    refs = [store.commit(make_payload(n, 500 + n)) for n in range(1, 6)]
    listed = store.generations()
    assert [(ref.generation, ref.role) for ref in listed] == [
        (2, None),
        (3, None),
        (4, "previous"),
        (5, "current"),
    ]
    assert [ref.unchecked for ref in listed] == [
        "the pointer does not record it",
        "the pointer does not record it",
        None,
        None,
    ]
    assert [ref.size for ref in listed] == [ref.size for ref in refs[1:]]
    assert [ref.describe() for ref in listed] == [ref.describe() for ref in refs[1:]]
    assert all(ref.modified is not None and ref.modified.tzinfo for ref in listed)
    for number in range(2, 6):
        assert check_payload(store.ref(number).open()) == (number, 0)
    assert (store.ref(5).role, store.ref(4).role, store.ref(3).role) == (
        "current",
        "previous",
        None,
    )
    assert store.ref(3).entry is None and store.ref(5).entry == refs[4].entry
    with pytest.raises(StoreError, match=r"there is no generation 1 \(kept: 2, 3, 4, 5\)"):
        store.ref(1)
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="generation number"):
            store.ref(bad)  # type: ignore[arg-type]


def test_generations_shows_leftovers_and_missing_objects(place: Place) -> None:
    """An object no commit won is listed without a role; for a generation the pointer
    records, its object is the one ref(N) opens; two unrecorded claims to one
    generation are refused as ambiguous; a recorded object that is gone is listed
    without a time, and opening it says it is missing."""
    store = place.store(keep=10)
    for number in (1, 2, 3):
        store.commit(make_payload(number, 700))
    put_raw(store, f"generations/{2:020d}.{'0' * 32}", make_payload(2, 700, tag=9))
    put_raw(store, f"generations/{4:020d}.{'a' * 32}", make_payload(4, 700, tag=8))
    listed = store.generations()
    assert [(ref.generation, ref.role) for ref in listed] == [
        (1, None),
        (2, "previous"),
        (2, None),
        (3, "current"),
        (4, None),
    ]
    assert check_payload(store.ref(2).open()) == (2, 0)
    assert check_payload(store.ref(4).open()) == (4, 8)
    put_raw(store, f"generations/{1:020d}.{'b' * 32}", make_payload(1, 700, tag=7))
    with pytest.raises(StoreError, match="2 objects claim generation 1"):
        store.ref(1)
    current = store.ref().entry
    assert current is not None
    obstore.delete(store._backend.store, store._backend.key(current.object))
    (gone,) = [ref for ref in store.generations() if ref.role == "current"]
    assert gone.modified is None
    with pytest.raises(StoreError, match="is missing"):
        gone.open()


def test_refs_of_other_stores_are_refused(place: Place) -> None:
    store = place.store()
    store.commit(GOOD)
    for foreign in (ObjectStore("memory://").commit(NEW), MemoryStore().commit(NEW)):
        with pytest.raises(StoreError, match="is not a snapshot of"):
            store.open(foreign)
    assert store.open() == GOOD


# -- two writers never both win ----------------------------------------------------------


def racing(store: ObjectStore, data: bytes) -> Callable[[], Iterator[bytes]]:
    """Data whose generator lets ``store`` commit ``data`` after the pointer was read:
    the commit consuming it then holds a stale etag."""

    def chunks() -> Iterator[bytes]:
        store.commit(data)
        yield GOOD_PREVIOUS

    return chunks


@pytest.mark.parametrize("existing", [0, 1], ids=["no pointer yet", "pointer"])
def test_a_stale_pointer_loses_and_leaves_nothing(place: Place, existing: int) -> None:
    """A commit whose pointer was replaced meanwhile (or created, when there was none)
    raises StoreConflictError naming both generations; the winner's snapshot is
    current, the one before it previous, and the loser's object is deleted."""
    loser, winner = place.store(), place.store()
    if existing:
        loser.commit(GOOD)
    with pytest.raises(StoreConflictError) as info:
        loser.commit(racing(winner, NEW)())
    assert (info.value.generation, info.value.winner) == (existing + 1, existing + 1)
    assert info.value.op == "commit" and info.value.target.endswith("/current")
    assert "another writer committed first" in str(info.value)
    assert loser.open() == NEW
    assert len(names(loser)) == existing + 1
    if existing:
        assert loser.open_previous() == GOOD


def test_an_unconditional_pointer_write_would_lose_a_commit(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control for the test above: a store that overwrites the pointer
    without comparing etags lets the stale writer win and silently drops NEW, which
    is then neither current nor previous."""

    def overwrite(self: Backend, name: str, data: bytes, expected: object) -> object:
        return self._put("commit", name, data, mode="overwrite", use_multipart=False)

    monkeypatch.setattr(Backend, "swap", overwrite)
    loser, winner = place.store(), place.store()
    loser.commit(GOOD)
    loser.commit(racing(winner, NEW)())  # no conflict raised
    assert NEW not in (bytes(loser.open()), bytes(loser.open_previous()))


@pytest.mark.parametrize("outcome", ["refused after applying", "error after applying"])
def test_a_lost_reply_to_a_successful_swap_is_a_success(
    outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pointer write succeeded but its reply was lost: a retry then finds the etag
    changed (refused), or the client gives up (error). Reading the pointer back shows
    our object, so the commit succeeds."""
    real = Backend.swap

    def lossy(self: Backend, name: str, data: bytes, expected: Any) -> Any:
        real(self, name, data, expected)
        if outcome.startswith("refused"):
            raise Refused("precondition failed on retry")
        raise StoreError("commit", name, "connection reset")

    store = Place("memory", "memory://", {}).store()
    store.commit(GOOD)
    monkeypatch.setattr(Backend, "swap", lossy)
    ref = store.commit(NEW)
    assert ref.generation == 2 and store.open() == NEW and store.open_previous() == GOOD


def test_an_error_before_the_swap_applied_keeps_the_pointer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pointer write that failed without effect: StoreError says the generation was
    not committed; its object stays (a delayed request might still apply it) until a
    later commit's retention removes it."""
    store = Place("memory", "memory://", {}).store()
    store.commit(GOOD)

    def unreachable(self: Backend, name: str, data: bytes, expected: Any) -> Any:
        raise StoreError("commit", name, "cannot reach the server")

    with monkeypatch.context() as patch:
        patch.setattr(Backend, "swap", unreachable)
        with pytest.raises(StoreError, match="pointer is unchanged, so generation 2 is not"):
            store.commit(NEW)
    assert store.open() == GOOD and len(names(store)) == 2
    for n in range(3):
        store.commit(make_payload(10 + n, 100))
    assert len(names(store)) == 2

    def unknown(self: Backend, name: str, data: bytes, expected: Any) -> Any:
        raise StoreError("commit", name, "timed out")

    real_get = Backend.get_small
    reads: list[str] = []

    def unreadable(self: Backend, name: str, *, limit: int) -> Any:
        reads.append(name)
        if len(reads) > 1:  # the read-back after the failed swap
            raise StoreError("open", name, "cannot reach the server")
        return real_get(self, name, limit=limit)

    monkeypatch.setattr(Backend, "swap", unknown)
    monkeypatch.setattr(Backend, "get_small", unreadable)
    with pytest.raises(StoreError, match="whether generation .* was committed is unknown"):
        store.commit(NEW)


@pytest.mark.parametrize("outcome", ["unknown", "applied later"])
def test_a_pointer_write_that_landed_after_all_is_this_process_s_commit(
    outcome: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pointer write whose commit raised may still have landed: its reply was lost and
    the pointer could not be read back (``unknown``), or it failed and a delayed request
    applied it afterwards (``applied later``). The next commit finds this process's own
    generation current, not another process's, and logs no ERROR."""
    store = Place("memory", "memory://", {}).store()
    store.commit(GOOD)
    real_swap, real_get = Backend.swap, Backend.get_small
    delayed: list[Callable[[], object]] = []
    swapped: list[str] = []

    def lossy(self: Backend, name: str, data: bytes, expected: Any) -> Any:
        swapped.append(name)
        if outcome == "unknown":
            real_swap(self, name, data, expected)
        else:
            delayed.append(functools.partial(real_swap, self, name, data, expected))
        raise StoreError("commit", name, "timed out")

    def unreadable_after_the_swap(self: Backend, name: str, *, limit: int) -> Any:
        if outcome == "unknown" and swapped:  # the read-back after the failed swap
            raise StoreError("open", name, "cannot reach the server")
        return real_get(self, name, limit=limit)

    with monkeypatch.context() as patch:
        patch.setattr(Backend, "swap", lossy)
        patch.setattr(Backend, "get_small", unreadable_after_the_swap)
        expected = "is unknown" if outcome == "unknown" else "pointer is unchanged"
        with pytest.raises(StoreError, match=expected):
            store.commit(NEW)
    for apply in delayed:
        apply()
    assert store.open() == NEW
    caplog.clear()
    store.commit(GOOD_PREVIOUS)
    assert store.open_previous() == NEW
    assert "committed by another process" not in caplog.text


def test_an_error_while_another_writer_won_deletes_our_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pointer write that failed while another writer's commit moved the pointer on:
    ours can never apply (the etag changed), so the error says it was not kept and the
    object is deleted."""
    place = Place("memory", "memory://", {})
    store, other = place.store(), place.store()
    store.commit(GOOD)
    real = Backend.swap

    def overtaken(self: Backend, name: str, data: bytes, expected: Any) -> Any:
        monkeypatch.setattr(Backend, "swap", real)
        other.commit(NEW)
        raise StoreError("commit", name, "connection reset")

    monkeypatch.setattr(Backend, "swap", overtaken)
    with pytest.raises(StoreError, match="another writer committed first; generation 2 was"):
        store.commit(GOOD_PREVIOUS)
    assert (bytes(store.open()), bytes(store.open_previous())) == (NEW, GOOD)
    assert len(names(store)) == 2


# -- damaged pointers and objects ----------------------------------------------------------


def test_a_replaced_corrupt_or_missing_current_falls_back_to_previous(place: Place) -> None:
    """An object replaced after its commit (etag), damaged with its etag forged too
    (digest), cut short (size) or deleted: open() names the problem and the object;
    open_previous() still returns the previous snapshot."""
    store = place.store()
    store.commit(GOOD_PREVIOUS)
    entry = store.commit(GOOD).entry
    assert entry is not None
    current = entry.object
    damaged = bytearray(GOOD)
    damaged[100] ^= 1
    put_raw(store, current, bytes(damaged))
    with pytest.raises(StoreError, match="was replaced after it was committed") as info:
        store.open()
    assert info.value.target.endswith(current)
    assert store.open_previous() == GOOD_PREVIOUS

    pointer = pointer_json(store)
    head = obstore.head(store._backend.store, store._backend.key(current))
    pointer["current"]["etag"] = head["e_tag"]
    put_raw(store, "current", json.dumps(pointer).encode())
    with pytest.raises(StoreError, match="is corrupt: xxh3-128"):
        store.open()

    put_raw(store, current, GOOD[:-1])
    pointer["current"]["etag"] = None
    put_raw(store, "current", json.dumps(pointer).encode())
    with pytest.raises(StoreError, match=f"is {len(GOOD) - 1} bytes, but {len(GOOD)} were"):
        store.open()

    obstore.delete(store._backend.store, store._backend.key(current))
    with pytest.raises(StoreError, match="is missing"):
        store.open()
    assert store.ref("previous").open() == GOOD_PREVIOUS


def test_read_range_reads_a_part_checked_by_size_and_etag(place: Place) -> None:
    """A part of a generation in one request, for a listing that must not read it
    whole: the object must still be the size and have the etag recorded (listed, for
    a generation the pointer does not record); its digest is not checked."""
    store = place.store(keep=3)
    store.commit(GOOD_PREVIOUS)
    store.commit(GOOD)
    store.commit(GOOD)
    current, older = store.ref(), store.ref(1)
    assert older.role is None
    assert bytes(current.read_range(10, 20)) == GOOD[10:30]
    assert bytes(older.read_range(0, len(GOOD_PREVIOUS))) == GOOD_PREVIOUS
    assert bytes(current.read_range(len(GOOD), 0)) == b""
    with pytest.raises(ValueError, match="bytes 2990-3010 of 3000"):
        current.read_range(len(GOOD) - 10, 20)
    entry = current.entry
    assert entry is not None
    damaged = bytearray(GOOD)
    damaged[100] ^= 1
    put_raw(store, entry.object, bytes(damaged))
    with pytest.raises(StoreError, match=r"replaced after it was committed \(etag differs\)"):
        current.read_range(0, 10)
    obstore.delete(store._backend.store, store._backend.key(entry.object))
    with pytest.raises(StoreError, match="is missing"):
        current.read_range(0, 10)


def test_a_copied_object_with_another_etag_is_checked_by_its_digest(s3: S3Server) -> None:
    """Copying a prefix re-parts multipart objects (boto3's managed copy uses 8 MiB
    parts), so their etags change while their bytes do not: such an object opens,
    checked by the digest recorded at commit. Other bytes under another etag are
    still refused as replaced."""
    store = s3_place(s3).store()
    store.commit(GOOD)
    entry = store.commit(BIG).entry  # multipart: an etag ending in -3
    assert entry is not None and entry.etag is not None and entry.etag.endswith('-3"')
    # The same bytes in 8 MiB parts, as a managed copy writes them: another etag.
    obstore.put(store._backend.store, store._backend.key(entry.object), BIG, chunk_size=8 * MiB)
    head = obstore.head(store._backend.store, store._backend.key(entry.object))
    assert head["e_tag"] != entry.etag
    assert store.open() == BIG
    changed = bytearray(BIG)
    changed[-1] ^= 1
    put_raw(store, entry.object, bytes(changed))
    with pytest.raises(StoreError, match=r"replaced after it was committed \(etag and xxh3"):
        store.open()


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        (b"\x00garbage", "is not a valid pointer"),
        (
            b'{"format": "statemigrate-object-pointer/1", "current": {}, "previous": null}',
            r"is not a valid pointer \(current.generation",
        ),
        (None, r"is not a valid pointer \(current: Value error, object '../outside'"),
        (b" " * (65 << 10), "more than a pointer can be"),
    ],
    ids=["garbage", "incomplete", "escaping name", "oversized"],
)
def test_a_damaged_pointer_is_refused_by_readers_and_writers(
    place: Place, pointer: bytes | None, message: str
) -> None:
    """A pointer that is not one of ours stops open, open_previous and commit with an
    error naming it; a commit writes nothing then."""
    store = place.store()
    store.commit(GOOD)
    if pointer is None:
        document = pointer_json(store)
        document["current"]["object"] = "../outside"
        pointer = json.dumps(document).encode()
    before = names(store)
    put_raw(store, "current", pointer)
    for action in (store.open, store.open_previous, lambda: store.commit(NEW)):
        with pytest.raises(StoreError, match=message) as info:
            action()
        assert info.value.target.endswith("/current")
    assert names(store) == before


@pytest.mark.parametrize(
    "pointer", [b'{"format": "statemig', b" " * (65 << 10)], ids=["cut", "oversized"]
)
def test_a_damaged_pointer_leaves_the_generations_listed_and_readable_by_number(
    place: Place, pointer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """With the pointer not ours, generations() lists every object without a role and
    ref(N) reads generation N found by listing, each with one WARNING that says how to
    repair; what needs the pointer's roles or digests (current, previous, unrestored,
    forget_unrestored) stops at it with the repair in its message."""
    store = place.store()
    store.commit(GOOD_PREVIOUS)
    store.commit(GOOD)
    assert [ref.unchecked for ref in store.generations()] == [None, None]
    put_raw(store, "current", pointer)

    refs = store.generations()
    assert [(ref.generation, ref.role, ref.roles) for ref in refs] == [(1, None, ()), (2, None, ())]
    assert all(ref.modified is not None for ref in refs)
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "delete it to repair" in caplog.text
    assert "listed without roles" in caplog.text

    caplog.clear()
    ref = store.ref(2)
    assert (ref.generation, ref.role, ref.entry) == (2, None, None)
    # Said on the reference too, for a caller that shows it (statemigrate inspect).
    assert ref.unchecked is not None and "is not a valid pointer" in ref.unchecked
    assert ref.open() == GOOD
    assert store.ref(1).open() == GOOD_PREVIOUS
    assert "read without the store's digest check" in caplog.text
    assert "delete it to repair" in caplog.text
    with pytest.raises(StoreError, match="there is no generation 3"):
        store.ref(3)

    for action in (
        store.ref,
        lambda: store.ref("previous"),
        lambda: store.ref("unrestored"),
        store.forget_unrestored,
        store.unrestored,
    ):
        with pytest.raises(StoreError, match="delete it to repair") as info:
            action()
        assert info.value.target.endswith("/current")


def test_a_fifo_at_a_file_store_s_pointer_is_a_damaged_pointer_never_opened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """obstore opens what a key names, and a FIFO with no writer kept open, commit,
    start_from and every read waiting for ever: it is refused unopened, as a pointer
    not ours (and a commit writes nothing)."""
    with scratch_dir() as path:
        store = ObjectStore(f"file://{path}/app")
        store.commit(GOOD)
        before = names(store)
        with watched_fifo(path / "app" / "current") as watch:
            for action in (store.open, store.open_previous, lambda: store.commit(NEW)):
                with pytest.raises(StoreError, match=r"\(a FIFO, not a regular file\)"):
                    action()
            service = Service("svc", registry=build_registry())
            assert service.start_from(store) is None  # logged, as any failed start
            assert "restore failed during read" in caplog.text
            assert "(a FIFO, not a regular file)" in caplog.text
        assert not watch.opened
        assert names(store) == before


@pytest.mark.parametrize("kind", ["FIFO", "directory", "socket"])
def test_a_generation_object_of_a_file_store_must_be_a_regular_file(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pointer names is refused unopened when it is not a regular file, by
    open and by a reference's open and existence check."""
    store = ObjectStore(f"file://{tmp_path}/app")
    store.commit(GOOD)
    entry = store.ref().entry
    assert entry is not None
    place = tmp_path / "app" / entry.object
    refused = f"{entry.object}: is a {kind}, not a regular file; refusing it"
    if kind == "FIFO":
        with watched_fifo(place) as watch:
            with pytest.raises(StoreError, match=refused):
                store.open()
            with pytest.raises(StoreError, match=refused):
                store.ref(1).open()
        assert not watch.opened
        return
    place.unlink()
    if kind == "directory":
        place.mkdir()
    else:
        monkeypatch.chdir(place.parent)  # a socket's path is short: bound by its name
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(place.name)
    with pytest.raises(StoreError, match=refused):
        store.open()


def test_a_damaged_pointer_with_two_objects_of_one_generation_is_ambiguous(
    place: Place,
) -> None:
    store = place.store()
    store.commit(GOOD)
    entry = store.ref().entry
    assert entry is not None
    put_raw(store, entry.object[:-1] + ("0" if entry.object[-1] != "0" else "1"), NEW)
    put_raw(store, "current", b"not json")
    with pytest.raises(StoreError, match="2 objects claim generation 1 and the pointer is damaged"):
        store.ref(1)


def test_a_pointer_that_cannot_be_read_still_stops_the_listing(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a pointer that is not ours is listed around: one that cannot be read (no
    answer, access denied) might be fine, so generations() and ref(N) fail on it."""
    store = place.store()
    store.commit(GOOD)

    def denied(name: str, *, limit: int) -> None:
        raise StoreError("open", store._backend.where(name), "access denied (AccessDenied)")

    monkeypatch.setattr(store._backend, "get_small", denied)
    for action in (store.generations, lambda: store.ref(1)):
        with pytest.raises(StoreError, match="access denied") as info:
            action()
        assert info.value.previous_too


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
POINTER_FIELDS = [
    "format",
    "current",
    "previous",
    "current.generation",
    "current.object",
    "current.size",
    "current.xxh3_128",
    "current.etag",
    "previous.generation",
]


@given(
    st.binary(max_size=300)
    | JSON_VALUES.map(lambda value: json.dumps(value).encode())
    | st.builds(
        lambda path, value: mutate(path, value), st.sampled_from(POINTER_FIELDS), JSON_VALUES
    )
)
def test_arbitrary_pointer_bytes_raise_only_store_error(data: bytes) -> None:
    """Property: whatever bytes sit at the pointer, decoding them gives a pointer or a
    StoreError naming it, never another exception."""
    try:
        decode_pointer(data, where="memory://current")
    except StoreError as exc:
        assert exc.target == "memory://current" and "is not a valid pointer" in exc.detail


def mutate(path: str, value: object) -> bytes:
    """A valid pointer with one field replaced by ``value``."""
    entry = {
        "generation": 2,
        "object": f"generations/{2:020d}.{'a' * 32}",
        "size": 5,
        "xxh3_128": "0" * 32,
        "etag": None,
    }
    previous = {**entry, "generation": 1, "object": f"generations/{1:020d}.{'b' * 32}"}
    document: dict[str, Any] = {
        "format": "statemigrate-object-pointer/1",
        "current": entry,
        "previous": previous,
    }
    *parents, last = path.split(".")
    target = document
    for part in parents:
        target = target[part]
    target[last] = value
    return json.dumps(document).encode()


# -- S3 (moto) -------------------------------------------------------------------------------


def test_moto_enforces_the_conditional_writes_the_store_relies_on(s3: S3Server) -> None:
    """Against moto's server, obstore's create-only put is refused when the object
    exists (If-None-Match: *), an update with a stale etag is refused (If-Match), and
    a GET with a stale If-Match is refused."""
    raw = s3_place(s3).store()._backend.store
    assert_enforces_conditions(raw)


def test_large_snapshots_go_up_in_parts_and_come_back_in_ranges(s3: S3Server) -> None:
    """A snapshot over part_size is a multipart upload (its S3 etag ends in -<parts>:
    12 MiB in the default 5 MiB parts) and reads back byte-equal through ranged GETs."""
    store = s3_place(s3).store()
    ref = store.commit([BIG[: 5 * MiB], BIG[5 * MiB :]])
    assert ref.entry is not None and ref.entry.etag is not None
    assert ref.entry.etag.rstrip('"').endswith("-3")
    assert store.open() == BIG


def test_the_server_going_away_mid_upload_changes_nothing(s3: S3Server) -> None:
    """The connection to S3 is cut while a large snapshot is being uploaded: the
    commit raises StoreError, and once the server is back the pointer still names the
    previous snapshots, complete, and no object of the failed commit exists."""
    place = s3_place(s3)
    with cable_to(s3) as cable:
        store = ObjectStore(
            place.url,
            config={**place.options["config"], "endpoint": cable.endpoint},
            client_options={"allow_http": True},
            **FAIL_FAST,
        )
        store.commit(GOOD_PREVIOUS)
        store.commit(GOOD)

        def upload() -> Iterator[bytes]:
            yield BIG[: 9 * MiB]
            cable.cut()
            yield BIG[9 * MiB :]

        with pytest.raises(StoreError) as info:
            store.commit(upload())
        assert info.value.op == "write" and "cannot reach the server" in info.value.detail
        with pytest.raises(StoreError, match="cannot reach the server"):
            store.open()
        cable.mend()
        assert (bytes(store.open()), bytes(store.open_previous())) == (GOOD, GOOD_PREVIOUS)
        assert pointer_json(store)["current"]["generation"] == 2
        assert len(names(store)) == 2


def test_a_missing_bucket_is_named(s3: S3Server) -> None:
    store = ObjectStore("s3://no-such-bucket/app", **s3.options(), **FAIL_FAST)
    for action in (store.open, lambda: store.commit(GOOD), store.ref):
        with pytest.raises(StoreError, match=r"the bucket or container does not exist"):
            action()


def test_a_plain_http_endpoint_without_allow_http_says_to_set_it(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """obstore builds no request for an http:// URL unless allow_http is set, and says
    only "builder error": the store's error names the missing setting."""
    monkeypatch.delenv("AWS_ALLOW_HTTP", raising=False)
    place = s3_place(s3)
    store = ObjectStore(place.url, config=s3.options()["config"], **FAIL_FAST)
    for action in (store.open, lambda: store.commit(GOOD)):
        with pytest.raises(StoreError) as info:
            action()
        assert "allow_http is not set" in info.value.detail
        assert "--store-option allow_http=true" in info.value.detail
        assert "AWS_ALLOW_HTTP=true" in info.value.detail
        assert "\n" not in str(info.value)
    allowed = ObjectStore(place.url, **s3.options(), **FAIL_FAST)
    allowed.commit(GOOD)
    assert allowed.open() == GOOD


def test_wrong_credentials_are_refused(s3: S3Server) -> None:
    """With moto checking signatures: the right keys commit and open; a wrong secret
    or an unknown key id gets 'access denied' with S3's error code, on open and on
    commit."""
    import boto3

    place = s3_place(s3)
    client = {
        "endpoint_url": s3.endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    iam = boto3.client("iam", **client)
    user = f"writer-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="s3",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    good = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    s3.set_auth(True)
    try:
        ObjectStore(place.url, **s3.options(**good)).commit(GOOD)
        for wrong, code in [
            ({**good, "secret_access_key": "wrong"}, "SignatureDoesNotMatch"),
            (
                {"access_key_id": "AKIAUNKNOWNKEY000000", "secret_access_key": "x"},
                "InvalidAccessKeyId",
            ),
        ]:
            store = ObjectStore(place.url, **s3.options(**wrong), **FAIL_FAST)
            for action in (store.open, functools.partial(store.commit, NEW)):
                with pytest.raises(StoreError, match=rf"access denied \({code}\)"):
                    action()
        assert ObjectStore(place.url, **s3.options(**good)).open() == GOOD
    finally:
        s3.set_auth(False)


def test_an_unreachable_server_is_named() -> None:
    store = ObjectStore(
        "s3://bucket/app",
        config={
            "endpoint": f"http://127.0.0.1:{free_port()}",
            "access_key_id": "k",
            "secret_access_key": "s",
            "region": "us-east-1",
        },
        client_options={"allow_http": True},
        **FAIL_FAST,
    )
    for action in (store.open, lambda: store.commit(GOOD)):
        with pytest.raises(StoreError, match="cannot reach the server"):
            action()


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given no credentials, obstore asks the instance metadata service for some; off
    the cloud that fails, and the error says that no credentials were found rather
    than obstore's request dump of the metadata service's address."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    store = ObjectStore(
        "s3://bucket/app",
        config={
            "endpoint": f"http://127.0.0.1:{free_port()}",
            "region": "us-east-1",
            "metadata_endpoint": f"http://127.0.0.1:{free_port()}",
        },
        client_options={"allow_http": True},
        **FAIL_FAST,
    )
    for action in (store.open, lambda: store.commit(GOOD)):
        with pytest.raises(StoreError) as info:
            action()
        assert info.value.detail.startswith("no credentials found: none in the configuration")
        assert "Error performing" not in str(info.value)


# -- authentication ------------------------------------------------------------------------

KEY = b"0123456789abcdef-key"
REGISTRY = build_registry()


def keyed_service(key: bytes | None, entries: dict[str, str] | None = None) -> Service:
    cache = KVCacheV1()
    if entries is not None:
        set_state(cache, REGISTRY, {"entries": entries})
    service = Service("svc", key=key, registry=REGISTRY)
    service.register(cache)
    return service


def test_a_keyed_service_refuses_what_anyone_with_bucket_access_can_write(
    s3: S3Server,
) -> None:
    """A remote store holds what anyone with write access to the bucket put there. A
    Service with a key refuses a snapshot committed without it, and one whose bytes
    were changed with the store's own size, etag and digest forged to match: both are
    RestoreError in verify, caused by SnapshotError 'auth'. The authentic generation
    still restores."""
    store = s3_place(s3).store(keep=3)
    assert store.remote
    writer = keyed_service(KEY, {"a": "1"})
    authentic = writer.commit(store)
    keyed_service(None, {"a": "forged"}).commit(store)  # no key: not authenticated
    tampered = store.commit(bytes(store.open_previous())).entry
    assert tampered is not None
    data = bytearray(store.open())
    data[len(data) // 2] ^= 1
    put_raw(store, tampered.object, bytes(data))
    pointer = pointer_json(store)
    pointer["current"].update(
        etag=obstore.head(store._backend.store, store._backend.key(tampered.object))["e_tag"],
        xxh3_128=xxhash.xxh3_128(bytes(data)).hexdigest(),
    )
    put_raw(store, "current", json.dumps(pointer).encode())
    assert store.open() == data  # the store's checks pass: only the MAC can tell

    for which in ("current", "previous"):
        reader = keyed_service(KEY)
        with pytest.raises(RestoreError) as info:
            reader.restore(store.ref(which))
        assert info.value.phase == "verify"
        cause = info.value.__cause__
        assert isinstance(cause, SnapshotError) and cause.kind == "auth"
    reader = keyed_service(KEY)
    reader.restore(authentic)
    assert exports(reader) == exports(writer)


# -- configuration ----------------------------------------------------------------------------


def test_remote_is_true_only_for_object_storage(s3: S3Server) -> None:
    assert s3_place(s3).store().remote
    assert ObjectStore(S3Store("bucket", config={"region": "us-east-1"})).remote
    assert not ObjectStore("memory://").remote
    with scratch_dir() as path:
        assert not ObjectStore(f"file://{path}").remote


@pytest.mark.parametrize(
    ("location", "options", "error", "message"),
    [
        ("ftp://host/x", {}, StoreError, "unsupported URL"),
        ("/dev/shm/app", {}, StoreError, "unsupported URL"),
        ("file://relative/path", {}, StoreError, "needs an absolute path"),
        ("s3://[bucket/x", {}, StoreError, "not a valid URL"),
        ("s3://bucket/x", {"config": {"no_such_option": "1"}}, ConfigurationError, "config: "),
        ("memory://", {"keep": 1}, ValueError, "keep"),
        ("memory://", {"part_size": MiB}, ValueError, "part_size"),
        ("memory://", {"max_concurrency": 0}, ValueError, "max_concurrency"),
        ("memory://", {"max_size": -1}, ValueError, "max_size"),
        ("memory://", {"max_concurrency": 2**64}, ValueError, "max_concurrency"),
        ("memory://", {"config": {"bogus": "1"}}, ValueError, "'bogus'"),
        (RawMemoryStore(), {"timeout": 1.0}, ValueError, "set it on that store"),
        (object(), {}, StoreError, "is not an obstore store"),
    ],
)
def test_bad_configuration_is_refused(
    location: object, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ObjectStore(location, **options)


@pytest.mark.parametrize(
    ("url", "options", "line"),
    [
        (
            "s3://bucket/x",
            {"config": {"no_such_option": "1"}},
            "config: 'no_such_option' is not a setting of s3:// URLs (obstore's S3Config keys"
            " such as endpoint, region and access_key_id, or its client options such as"
            " allow_http and proxy_url)",
        ),
        (
            "s3://bucket/x",
            {"config": {"region": "x", "AWS_NO_SUCH_OPTION": "1"}},
            "config: 'AWS_NO_SUCH_OPTION' is not a setting of s3:// URLs",
        ),
        (
            "gs://bucket/x",
            {"config": {"endpoint": "http://127.0.0.1:1"}},
            "config: 'endpoint' is not a setting of gs:// URLs (obstore's GCSConfig keys",
        ),
        (
            "az://container/x",
            {"config": {"bogus": "1"}},
            "config: 'bogus' is not a setting of az:// URLs (obstore's AzureConfig keys",
        ),
        (
            "s3://bucket/x",
            {"client_options": {"bogus": "1"}},
            "client_options: 'bogus' is not a setting of s3:// URLs (obstore's client"
            " options such as allow_http and proxy_url)",
        ),
    ],
)
def test_a_key_obstore_does_not_take_is_one_configuration_line(
    url: str, options: dict[str, Any], line: str
) -> None:
    """Refused as the store is built, before any request: the caller's mistake, named
    as the caller spelt it (it was a StoreError quoting obstore's debug dump)."""
    with pytest.raises(ConfigurationError) as caught:
        ObjectStore(url, **options)
    assert str(caught.value).startswith(line)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"timeout": -1}, "timeout: must be a number of seconds above 0 and at most a day, not -1"),
        ({"timeout": 1e20}, "timeout: must be a number of seconds above 0 and at most a day"),
        ({"timeout": 0}, "timeout: must be a number of seconds above 0"),
        ({"timeout": True}, "timeout: must be a number of seconds above 0"),
        ({"timeout": "3s"}, "timeout: must be a number of seconds above 0"),
        ({"connect_timeout": -1.5}, "connect_timeout: must be a number of seconds above 0"),
        ({"connect_timeout": float("inf")}, "connect_timeout: must be a number of seconds"),
        ({"retry_timeout": float("nan")}, "retry_timeout: must be a number of seconds 0 or more"),
        ({"retry_timeout": -1}, "retry_timeout: must be a number of seconds 0 or more"),
        ({"retries": -1}, "retries: must be an int from 0 to 100, not -1"),
        ({"retries": 10**30}, "retries: must be an int from 0 to 100"),
        ({"retries": 2.0}, "retries: must be an int from 0 to 100, not 2.0"),
    ],
)
@pytest.mark.parametrize("url", ["s3://bucket/x", "file:///tmp/never-created", "memory://"])
def test_bad_timeouts_and_retries_are_one_configuration_line(
    url: str, options: dict[str, Any], line: str
) -> None:
    """Out of range, a timeout or a retry count is refused before obstore sees it,
    whatever the URL (obstore raised a bare TypeError or OverflowError for some)."""
    with pytest.raises(ConfigurationError) as caught:
        ObjectStore(url, **options)
    assert str(caught.value).startswith(line)
    assert "\n" not in str(caught.value)


def test_timeouts_and_retries_at_their_bounds_are_taken() -> None:
    ObjectStore("s3://bucket/x", timeout=86_400, connect_timeout=0.001, retry_timeout=0, retries=0)
    ObjectStore("s3://bucket/x", retries=100)


@pytest.mark.parametrize("endpoint_var", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"])
def test_client_settings_come_from_the_environment_as_obstore_reads_them(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, endpoint_var: str
) -> None:
    """With only a URL, everything comes from the AWS_* variables, the HTTP client's
    settings (AWS_ALLOW_HTTP for a plain-http server) included, although the store
    passes client options of its own (its timeouts). The endpoint is read from either
    variable that docs/stores.md and docs/cli.md name."""
    place = s3_place(s3)
    for other in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        monkeypatch.delenv(other, raising=False)
    for name, value in {
        endpoint_var: s3.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    store = ObjectStore(place.url, **FAIL_FAST)
    store.commit(GOOD)
    assert store.open() == GOOD


@pytest.mark.parametrize("key", ["allow_http", "aws_allow_http", "AWS_ALLOW_HTTP"])
def test_client_settings_are_accepted_among_the_backend_settings(s3: S3Server, key: str) -> None:
    """A client setting in ``config``, as Rust's object_store accepts it (obstore's
    bindings would panic on it), is passed as a client option."""
    place = s3_place(s3)
    store = ObjectStore(
        place.url, config={"endpoint": s3.endpoint, **KEYS, key: "true"}, **FAIL_FAST
    )
    store.commit(GOOD)
    assert store.open() == GOOD


def test_a_panic_in_obstore_becomes_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """obstore raises a Rust panic as PanicException, which is not an Exception; building
    a store turns it into a StoreError all the same."""

    class PanicException(BaseException):
        pass

    def panicking(*args: Any, **kwargs: Any) -> Any:
        raise PanicException("Expected config prefix to start with aws_")

    monkeypatch.setattr(obstore.store, "from_url", panicking)
    with pytest.raises(StoreError, match="obstore failed on this configuration: Expected"):
        ObjectStore("s3://bucket/x")

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(obstore.store, "from_url", interrupted)
    with pytest.raises(KeyboardInterrupt):  # other BaseExceptions pass through
        ObjectStore("s3://bucket/x")


def test_ref_names_current_or_previous_only() -> None:
    store = ObjectStore("memory://")
    with pytest.raises(ValueError, match="which"):
        store.ref("sideways")  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_core_never_imports_obstore_and_says_how_to_install_it() -> None:
    """Importing statemigrate (stores included) leaves obstore unimported; without
    obstore, creating an ObjectStore is a StoreError that names the extra."""
    code = (
        "import sys\n"
        "import statemigrate, statemigrate.stores\n"
        "assert 'obstore' not in sys.modules, 'imported'\n"
        "sys.modules['obstore'] = None\n"
        "try:\n"
        "    statemigrate.stores.ObjectStore('memory://')\n"
        "except statemigrate.StoreError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pip install 'statemigrate[objectstore]'" in result.stdout


def test_a_store_emptied_under_its_writer_says_so_once(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The bucket is emptied (deleted and created again, or an endpoint failed over to
    an empty server) under a process that committed there: its next commit starts at
    generation 1 again and says, once, that the store lost its checkpoints. (A
    ``memory://`` store has no other writer to tell apart, and no such record.)"""
    place = tmp_path / "app"
    store = ObjectStore(place.as_uri())
    store.commit(GOOD_PREVIOUS)
    store.commit(GOOD)
    shutil.rmtree(place)
    place.mkdir()
    caplog.set_level(logging.WARNING, logger="statemigrate.stores")
    assert store.commit(NEW).generation == 1
    store.commit(GOOD)
    said = [r.getMessage() for r in caplog.records if "no longer holds" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith(f"commit {store.location}: the store no longer holds this")
    assert caplog.records[0].levelno == logging.WARNING


def test_a_first_commit_to_an_empty_store_says_nothing(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The negative control of the test above: a store this process never committed to
    starts at generation 1 without a warning."""
    caplog.set_level(logging.WARNING, logger="statemigrate.stores")
    assert ObjectStore(RawMemoryStore(), prefix="app").commit(NEW).generation == 1
    assert ObjectStore((tmp_path / "fresh").as_uri()).commit(NEW).generation == 1
    assert not caplog.records
