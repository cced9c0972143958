"""Reports' one-line summaries, as logged for snapshots, commits, checkpoints and the
restore of a checkpoint chain."""

from __future__ import annotations

import logging
import re
import threading

import pytest
from restore_children.ledger import state_after, tracked_ledger_service

from statemigrate import Checkpointer, MemoryStore, RestoreError
from statemigrate.stores import ObjectStore


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
        f"snapshot {report.snapshot_id[:12]} gen {report.generation}: 1 section,"
        f" {raw} raw -> {report.size} bytes; "
    )


def test_a_commit_to_an_object_store_names_the_store_generation_beside_its_own() -> None:
    """The snapshot's generation counts the service's snapshots; an ObjectStore numbers
    its objects: a commit's line gives both, each named, so a log line can be matched
    with `statemigrate list` and `URL#N`."""
    service, ledger = tracked_ledger_service()
    ledger.write()
    store = ObjectStore("memory://")
    for _ in range(3):
        store.commit(b"another writer's bytes")
    line = service.commit(store).summary()
    shape = r"gen 1: .* -> memory://generations/0+4\.[0-9a-f]+ \(store generation 4\)$"
    assert re.search(shape, line), line
    assert "store generation" not in service.commit(MemoryStore(name="m")).summary()


def _chain(deltas: int) -> tuple[MemoryStore, int]:
    """A store holding a checkpoint chain of a full snapshot and ``deltas`` deltas, and
    the ledger's count it holds."""
    service, ledger = tracked_ledger_service()
    store = MemoryStore(name="ck")
    checkpointer = Checkpointer(
        service,
        store,
        quiesce=threading.Lock(),
        incremental=True,
        max_deltas=deltas + 1,
        max_delta_ratio=100.0,
    )
    for batch in (2_000, *[5] * deltas):
        for _ in range(batch):
            ledger.write()
        checkpointer.checkpoint_now()
    assert checkpointer.chain_length == deltas + 1
    return store, ledger.count


def test_restoring_a_chain_logs_one_line_for_all_of_its_pieces(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One INFO line for the chain (its pieces, generations and time); each piece's own
    line at DEBUG."""
    store, count = _chain(deltas=12)
    service, ledger = tracked_ledger_service()
    caplog.set_level(logging.DEBUG, logger="statemigrate")
    report = service.start_from(store)
    assert (ledger.count, ledger.state()) == (count, state_after(count))
    # The report says it closes a chain, not only that a delta was applied.
    assert report is not None and report.chain == 13
    assert re.match(
        r"restored checkpoint chain [0-9a-f]{12} gen 13 \(a full snapshot and 12 deltas;"
        r" timings of its last piece\): 1 components, 0 steps; ",
        report.summary(),
    ), report.summary()
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    # The line before the restore begins, naming the store, then the chain's own.
    assert len(info) == 2 and info[0].startswith("restoring the latest snapshot in "), info
    del info[0]
    assert re.fullmatch(
        r"restored checkpoint chain [0-9a-f]{12} gen 13: a full snapshot \(gen 1\) and 12"
        rf" deltas, {len(store.open())} bytes, 1 components, 0 steps; [\d.]+ ms",
        info[0],
    ), info[0]
    pieces = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum(m.startswith("restored ") for m in pieces) == 1
    assert sum(m.startswith("applied delta ") for m in pieces) == 12


def test_a_chain_of_one_piece_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    store, _ = _chain(deltas=0)
    service, _ = tracked_ledger_service()
    caplog.set_level(logging.INFO, logger="statemigrate")
    service.start_from(store)
    info = [r.getMessage() for r in caplog.records]
    assert len(info) == 2 and info[0].startswith("restoring the latest snapshot in "), info
    assert " a full snapshot (gen 1) and 0 deltas, " in info[1], info


def test_a_chain_whose_delta_fails_logs_that_delta_s_error_and_no_summary(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _chain(deltas=3)
    service, _ = tracked_ledger_service()
    real_restore = service._restore_piece
    pieces: list[int] = []

    def refusing_the_third(source: object, **options: object) -> object:
        pieces.append(1)
        if len(pieces) == 3:
            raise RestoreError("validate", "refused for the test", component="ledger/default")
        return real_restore(source, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "_restore_piece", refusing_the_third)
    caplog.set_level(logging.INFO, logger="statemigrate")
    with pytest.raises(RestoreError):
        service.restore(store.open())
    assert not [r for r in caplog.records if "checkpoint chain" in r.getMessage()]
