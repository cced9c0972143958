"""Restoring at start-up: the restore's ``read`` phase counts the store's download,
which start-up makes before the restore proper (to fall back, to keep a snapshot
aside, to tell a chain), for a snapshot and for a checkpoint chain alike."""

from __future__ import annotations

import threading
import time

import pytest
from restore_children.ledger import ledger_service, tracked_ledger_service

from statemigrate import Checkpointer, MemoryStore
from statemigrate.stores import SnapshotRef

DOWNLOAD = 0.05
"""Seconds the slow store takes to return a snapshot: the least the read can take."""


class SlowStore(MemoryStore):
    """A memory store whose reads take ``DOWNLOAD`` seconds, as a download would."""

    def open(self, ref: SnapshotRef | None = None) -> bytes:
        time.sleep(DOWNLOAD)
        return super().open(ref)


@pytest.mark.parametrize("kind", ["snapshot", "chain"])
def test_the_read_phase_counts_the_download(kind: str) -> None:
    store = SlowStore()
    if kind == "snapshot":
        service, ledger = ledger_service()
        ledger.write()
        service.commit(store)
    else:
        service, tracked = tracked_ledger_service()
        checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
        for batch in (200, 1, 1):  # a base, then deltas small enough to extend it
            for _ in range(batch):
                tracked.write()
            checkpointer.checkpoint_now()
        assert checkpointer.chain_length == 3
    fresh, _ = ledger_service(started=False) if kind == "snapshot" else tracked_ledger_service()
    report = fresh.start_from(store)
    assert report is not None
    assert report.timings["read"] >= DOWNLOAD
    assert f"read {report.timings['read'] * 1000:.1f} ms" in report.summary()
