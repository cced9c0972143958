"""Reports' one-line summaries, as logged for snapshots, commits and checkpoints."""

from __future__ import annotations

import logging
import threading

import pytest
from restore_children.ledger import tracked_ledger_service

from statemigrate import Checkpointer, MemoryStore


def test_an_incremental_checkpoint_logs_the_chain_it_committed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="statemigrate")
    service, ledger = tracked_ledger_service()
    store = MemoryStore(name="ck")
    checkpointer = Checkpointer(service, store, quiesce=threading.Lock(), incremental=True)
    sizes = []
    for batch in (500, 5, 5):
        for _ in range(batch):
            ledger.write()
        report = checkpointer.checkpoint_now()
        assert report.committed is not None
        sizes.append(report.committed.snapshot.size)
    commits = [r.getMessage() for r in caplog.records if "-> memory:ck" in r.getMessage()]
    assert len(commits) == 3
    for line, pieces, size in zip(
        commits, ("a full snapshot and 0 deltas", "a full snapshot and 1 delta,",
                  "a full snapshot and 2 deltas"), sizes, strict=True
    ):
        assert line.startswith("checkpoint: checkpoint chain ")
        assert pieces in line and f" {size} bytes;" in line
        assert "sections" not in line and "raw" not in line


def test_a_snapshot_summary_names_its_sections_and_sizes() -> None:
    service, ledger = tracked_ledger_service()
    ledger.write()
    _, report = service.snapshot()
    raw = sum(s.raw_size for s in report.sections)
    assert report.chain == 0
    assert report.summary().startswith(
        f"snapshot {report.snapshot_id[:12]} gen {report.generation}: 1 sections,"
        f" {raw} raw -> {report.size} bytes; "
    )
