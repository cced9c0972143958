"""statemigrate_unrestored_generations: the generations an object store keeps as
unrestored, as the start-up restore found them and as each commit left them; no
series for a store that does not list them (a tmpfs store keeps a copy in one file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _store_helpers import scratch_dir

import statemigrate as sm
from statemigrate.reference import KVCacheV1, build_registry
from statemigrate.stores import ObjectStore, TmpfsStore

GAUGE = "statemigrate_unrestored_generations"
SERVICE = "observed"


def cold_serving() -> sm.Service:
    service = sm.Service(SERVICE, registry=build_registry(), on_restore_failure="serve_cold")
    service.register(KVCacheV1())
    return service


def test_the_gauge_follows_the_kept_generations_from_start_to_forgetting(
    sink: Any,
) -> None:
    """A start that cannot restore the latest snapshot starts cold and reports that
    generation kept (1) at once, as its first commit records it; the start of a new
    process that restores the cold state reports it (1), as its WARNING says; the
    commit after forget_unrestored() reports 0."""
    with scratch_dir() as base:
        url = f"file://{base}/app"
        store = ObjectStore(url)
        store.commit(b"the newer release's state")  # nothing this release can restore
        first = cold_serving()
        assert first.start_from(store) is None
        # Kept from the start on, though the pointer records it at the next commit
        # (it read 0 until then).
        assert sink.values(GAUGE) == [(1.0, (SERVICE, "object"))]
        first.commit(store)
        assert sink.values(GAUGE)[-1] == (1.0, (SERVICE, "object"))

        sink.records.clear()
        restarted = ObjectStore(url)  # a new process's store: it has read nothing yet
        second = cold_serving()
        assert second.start_from(restarted) is not None  # the cold state, restored
        assert sink.values(GAUGE) == [(1.0, (SERVICE, "object"))]
        assert restarted.forget_unrestored() == [1]
        second.commit(restarted)
        assert sink.values(GAUGE)[-1] == (0.0, (SERVICE, "object"))


def test_a_cold_start_counts_the_generation_it_keeps_beside_those_kept_already(
    sink: Any,
) -> None:
    """A second failed start, with one generation kept already, reports two at once,
    as its first commit then records them."""
    store = ObjectStore("memory://")
    store.commit(b"the newer release's state")
    assert cold_serving().start_from(store) is None
    cold_serving().commit(store)
    for n in range(2):  # the previous generation unrestorable too
        store.commit(f"a newer release again {n}".encode())
    sink.records.clear()
    assert cold_serving().start_from(store) is None
    assert sink.values(GAUGE) == [(2.0, (SERVICE, "object"))]
    assert store.last_unrestored == (1, 4)
    store.commit(b"cold")
    assert store.last_unrestored == (1, 4)
    assert store.ref("unrestored").generation == 4


def test_a_tmpfs_store_reports_no_series(sink: Any) -> None:
    """A tmpfs store keeps the snapshot it could not restore as the file
    ``unrestored``, which ``statemigrate list DIR`` shows; it has no count to report."""
    with scratch_dir() as base:
        with TmpfsStore(Path(base) / "store") as store:
            store.commit(b"the newer release's state")
            service = cold_serving()
            assert service.start_from(store) is None
            service.commit(store)
            assert (Path(base) / "store" / "unrestored").exists()
    assert sink.values(GAUGE) == []
    assert sink.values("statemigrate_commits_total")  # the commit was reported
