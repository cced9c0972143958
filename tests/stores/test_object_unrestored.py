"""ObjectStore: a generation a start could not restore, or could not reach, is kept as
``unrestored`` out of retention's reach, and a missing pointer is neither taken for an
empty store nor numbered over."""

from __future__ import annotations

import json
import logging
from typing import Any

import obstore
import pytest
from _store_helpers.object_server import S3Server, cable_to, names, s3_place
from restore_children.components import build_registry, exports, set_state

from statemigrate import Checkpointer, Service, StoreError
from statemigrate.reference import KVCacheV1
from statemigrate.stores import ObjectStore

REGISTRY = build_registry()
SEEDED = {f"key:{index}": f"value {index}" for index in range(1_000)}
FAIL_FAST: dict[str, Any] = {"retries": 0, "timeout": 5.0, "connect_timeout": 2.0}


def cache_service(entries: dict[str, str] | None = None) -> Service:
    cache = KVCacheV1()
    if entries is not None:
        set_state(cache, REGISTRY, {"entries": entries})
    service = Service("svc", registry=REGISTRY, on_restore_failure="serve_cold")
    service.register(cache)
    return service


def seeded_state() -> dict[str, bytes]:
    return exports(cache_service(SEEDED))


def pointer_json(store: ObjectStore) -> dict[str, Any]:
    raw = obstore.get(store._backend.store, store._backend.key("current")).bytes()
    loaded: dict[str, Any] = json.loads(bytes(raw))
    return loaded


def test_a_start_that_cannot_reach_the_server_loses_nothing_to_retention(
    s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The server is unreachable while a serve_cold service starts: it starts cold,
    the server comes back, and its checkpoints of the empty state go on (keep=2, so
    retention would have deleted the seeded generations by the second). Both seeded
    generations, current and previous when the start failed, are kept as unrestored:
    they survive every checkpoint, and a service restores all 1,000 entries from the
    newest."""
    place = s3_place(s3)
    seeded = cache_service(SEEDED)
    seeded.commit(place.store())
    seeded.commit(place.store())
    with cable_to(s3) as cable:
        store = ObjectStore(
            place.url,
            config={**place.options["config"], "endpoint": cable.endpoint},
            client_options={"allow_http": True},
            **FAIL_FAST,
        )
        cold = cache_service()
        cable.cut()
        assert cold.start_from(store) is None
        assert cold.status.state == "cold_start"
        cable.mend()
        checkpointer = Checkpointer(cold, store, every=60.0)
        for _ in range(4):
            assert checkpointer.checkpoint_now(force=True).committed is not None

    store = place.store()
    again = cache_service()
    again.restore(store.ref(2))
    assert exports(again) == seeded_state()
    pointer = pointer_json(store)
    assert pointer["current"]["generation"] == 6
    assert [kept["generation"] for kept in pointer["unrestored"]] == [1, 2]
    assert len(names(store)) == 4  # current, previous and the two unrestored
    assert "generations 1, 2 of " in caplog.text and "kept as unrestored" in caplog.text
    roles = [ref.role for ref in store.generations()]
    assert roles == ["unrestored", "unrestored", "previous", "current"]
    assert store.ref("unrestored").open() == store.ref(2).open()


def test_a_refused_snapshot_is_kept_and_can_be_let_go() -> None:
    """A snapshot the start reads but cannot restore is named exactly (by its
    digest), kept through checkpoints, and deleted by retention once forgotten."""
    store = ObjectStore("memory://")
    store.commit(b"not a snapshot")
    store.commit(b"nor this")
    cold = cache_service()
    assert cold.start_from(store) is None
    for _ in range(3):
        cold.commit(store)
    assert bytes(store.ref("unrestored").open()) == b"nor this"
    assert store.ref("unrestored").generation == 2
    assert store.forget_unrestored() == [2]
    cold.commit(store)
    assert [ref.generation for ref in store.generations()] == [5, 6]
    with pytest.raises(StoreError, match="records no unrestored generation"):
        store.ref("unrestored")


def test_every_failed_start_keeps_its_generations_and_the_oldest_stay() -> None:
    """Starts in a row that could not reach the server: each keeps the generations
    current and previous at its first commit (it could not tell whether the current
    one is intact), so a second outage does not let the checkpoints of the second cold
    process delete the state from before the first. Past four, the newest kept is
    replaced and the oldest stay."""
    store = ObjectStore("memory://")
    store.commit(b"older")
    store.commit(b"good")
    for start in range(3):
        store.keep_unread()  # what start_from asks when it cannot read the store
        for n in range(3):
            store.commit(f"cold {start}.{n}".encode())
    kept = [ref for ref in store.generations() if ref.role == "unrestored"]
    assert [ref.generation for ref in kept] == [1, 2, 4, 8]
    assert [bytes(ref.open()) for ref in kept[:2]] == [b"older", b"good"]
    assert bytes(store.ref("unrestored").open()) == b"cold 1.2"
    assert store.forget_unrestored() == [1, 2, 4, 8]
    store.commit(b"after")
    assert [ref.generation for ref in store.generations()] == [11, 12]


def test_a_missing_pointer_is_said_at_start_and_never_numbered_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the pointer deleted by hand, a start does not take the store for an empty
    one: it says that generation objects are present and how to restore one. Commits
    number past the newest object, so #3 still names the seeded state, and that
    object is kept as unrestored."""
    store = ObjectStore("memory://")
    seeded = cache_service(SEEDED)
    for _ in range(3):
        seeded.commit(store)
    obstore.delete(store._backend.store, store._backend.key("current"))
    with pytest.raises(StoreError, match=r"is missing, but 2 generation objects are present"):
        store.open()
    cold = cache_service()
    with caplog.at_level(logging.WARNING):
        assert cold.start_from(store) is None
    assert "generation objects are present (generations 2, 3)" in caplog.text
    for _ in range(3):
        cold.commit(store)
    assert store.ref("current").generation == 6
    again = cache_service()
    again.restore(store.ref(3))
    assert exports(again) == seeded_state()
    assert store.ref("unrestored").generation == 3


def test_a_generation_both_previous_and_unrestored_has_both_roles() -> None:
    """The generation a start could not restore becomes previous at the next commit
    and stays unrestored: every reference to it says both, whichever role it was
    asked for by, and ``role`` stays what it was (previous, or the role asked for)."""
    store = ObjectStore("memory://")
    store.commit(b"not a snapshot")
    store.commit(b"nor this")
    assert cache_service().start_from(store) is None
    store.commit(b"cold")
    listed = {ref.generation: ref for ref in store.generations()}
    assert [(n, ref.role, ref.roles) for n, ref in sorted(listed.items())] == [
        (2, "previous", ("previous", "unrestored")),
        (3, "current", ("current",)),
    ]
    assert (store.ref("previous").role, store.ref("previous").roles) == (
        "previous",
        ("previous", "unrestored"),
    )
    assert (store.ref("unrestored").role, store.ref("unrestored").roles) == (
        "unrestored",
        ("previous", "unrestored"),
    )
    assert (store.ref(2).role, store.ref(2).roles) == ("previous", ("previous", "unrestored"))
    assert store.ref("current").roles == ("current",)
    store.commit(b"cold again")  # 2 is now an older generation, kept as unrestored alone
    assert [(ref.generation, ref.role, ref.roles) for ref in store.generations()] == [
        (2, "unrestored", ("unrestored",)),
        (3, "previous", ("previous",)),
        (4, "current", ("current",)),
    ]


def test_repairing_a_damaged_pointer_keeps_the_unrestored_generation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pointer that kept generation 3 as unrestored is cut short; following its
    error's advice (delete it, restore the newest, commit) must not let retention
    delete 3: the commit that creates the pointer anew keeps every generation it
    finds as unrestored, in one WARNING, until they are let go."""
    store = ObjectStore("memory://")
    for n in range(3):
        store.commit(f"newer release {n}".encode())
    assert cache_service().start_from(store) is None  # refused: kept as unrestored
    for n in range(3):
        store.commit(f"cold {n}".encode())
    assert store.ref("unrestored").generation == 3
    backend = store._backend
    raw = bytes(obstore.get(backend.store, backend.key("current")).bytes())
    obstore.put(backend.store, backend.key("current"), raw[: len(raw) // 2])
    with pytest.raises(StoreError, match="may have recorded some") as damaged:
        store.open()
    assert "keeps them all as unrestored" in str(damaged.value)
    obstore.delete(backend.store, backend.key("current"))
    with pytest.raises(StoreError, match="may have recorded some"):
        store.open()
    assert bytes(store.ref(6).open()) == b"cold 2"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="statemigrate.stores"):
        store.commit(b"repaired")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no pointer" in warnings[0]
    assert "generations 3, 5, 6 as unrestored" in warnings[0]
    assert store.last_unrestored == (3, 5, 6)
    for n in range(3):
        store.commit(f"after {n}".encode())
    kept = {ref.generation: ref for ref in store.generations()}
    assert sorted(kept) == [3, 5, 6, 9, 10]
    assert kept[3].roles == ("unrestored",)
    assert bytes(kept[3].open()) == b"newer release 2"
    assert store.forget_unrestored() == [3, 5, 6]
    store.commit(b"let go")
    assert [ref.generation for ref in store.generations()] == [10, 11]


def test_a_commit_keeps_at_most_four_found_objects_and_spares_the_rest_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the four generations a pointer can record, the oldest found are kept;
    the commit that creates the pointer deletes none of the others, and its WARNING
    names those the next commit's retention deletes."""
    store = ObjectStore("memory://", keep=6)
    for n in range(6):
        store.commit(f"gen {n + 1}".encode())
    obstore.delete(store._backend.store, store._backend.key("current"))
    with caplog.at_level(logging.WARNING, logger="statemigrate.stores"):
        store.commit(b"seven")
    assert "deletes generations 5, 6" in caplog.text
    assert store.last_unrestored == (1, 2, 3, 4)
    assert [ref.generation for ref in store.generations()] == [1, 2, 3, 4, 5, 6, 7]
