"""Checkpointer: writers held for the snapshot only, skips, back-off, final checkpoint,
the thread and event-loop flavours; start_from(store) with its fall-back to previous."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import obstore
import pytest
from restore_children.ledger import (
    COMPONENT,
    REGISTRY,
    Ledger,
    LedgerV1,
    ledger_service,
    state_after,
)
from typing_extensions import TypedDict

from statemigrate import (
    Checkpointer,
    CheckpointError,
    ConfigurationError,
    ExportError,
    MemoryStore,
    Registry,
    RestoreError,
    Service,
    StoreError,
    TmpfsStore,
)
from statemigrate._observe._instruments import use_sink
from statemigrate._runtime import _checkpointcommit, _gate
from statemigrate._runtime._checkpoint import retry_delay
from statemigrate.stores import Buffer, MemoryRef, ObjectStore, SnapshotRef


def written(ledger: Ledger, n: int) -> Ledger:
    for _ in range(n):
        ledger.write()
    return ledger


def restored(store: Any) -> dict[str, Any]:
    """What a fresh process restores from ``store``."""
    service, ledger = ledger_service()
    assert service.start_from(store) is not None
    return ledger.export_state()


class FlakyStore(MemoryStore):
    """A memory store whose next ``failing`` commits fail."""

    def __init__(self) -> None:
        super().__init__(name="flaky")
        self.failing = 0
        self.attempts = 0

    def commit(self, data: Buffer | Iterable[Buffer]) -> Any:
        self.attempts += 1
        if self.failing:
            self.failing -= 1
            raise StoreError("write", "memory:flaky", "no space left", errno=28)
        return super().commit(data)


class Server:
    """Writers behind pause() and resume(), as a handoff's ServerControl has them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[str] = []

    def pause(self) -> None:
        self.lock.acquire()
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")
        self.lock.release()


# --- one checkpoint ---------------------------------------------------------------------


def test_a_checkpoint_commits_the_state_and_a_fresh_service_restores_it() -> None:
    service, ledger = ledger_service()
    store = MemoryStore()
    report = Checkpointer(service, store).checkpoint_now()
    assert report.committed is not None and not report.skipped
    assert report.committed.snapshot.generation == 1
    written(ledger, 30)
    Checkpointer(service, store).checkpoint_now()
    assert restored(store) == state_after(30)


def test_an_unchanged_state_is_skipped_without_holding_the_writers() -> None:
    service, ledger = ledger_service()
    store, server = MemoryStore(), Server()
    checkpointer = Checkpointer(service, store, quiesce=server, changes=lambda: ledger.count)
    assert not checkpointer.checkpoint_now().skipped
    skipped = checkpointer.checkpoint_now()
    assert skipped.skipped and skipped.pause_seconds == 0.0 and skipped.committed is None
    assert skipped.reason == "unchanged"
    assert "skipped" in skipped.summary()
    assert store.commits == 1 and server.calls == ["pause", "resume"]
    ledger.write()
    assert not checkpointer.checkpoint_now().skipped
    assert checkpointer.checkpoint_now(force=True).committed is not None
    assert store.commits == 3
    assert restored(store) == state_after(1)


def test_without_changes_every_checkpoint_is_written() -> None:
    service, _ = ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store)
    for _ in range(3):
        checkpointer.checkpoint_now()
    assert store.commits == 3


@pytest.mark.parametrize(("changes", "generations"), [(False, [8, 9, 10]), (True, [8])])
def test_an_idle_restored_service_commits_its_state_again_unless_changes_says(
    changes: bool, generations: list[int]
) -> None:
    """What checkpoints.md says of full checkpoints: no states are compared, so without
    ``changes`` each one commits the same state as a new generation."""
    source, ledger = ledger_service()
    store = MemoryStore()
    for _ in range(7):
        source.commit(store)
    service, restarted = ledger_service(started=False)
    assert service.start_from(store) is not None
    checkpointer = Checkpointer(
        service, store, changes=(lambda: restarted.count) if changes else None
    )
    reports = [checkpointer.checkpoint_now() for _ in range(3)]
    committed = [r.committed.snapshot.generation for r in reports if r.committed is not None]
    assert committed == generations
    assert [r.reason for r in reports if r.skipped] == ["unchanged"] * (3 - len(generations))
    assert restored(store) == ledger.export_state()


class SeesHold(Ledger):
    """Records, at each export, whether the writers' lock was held."""

    def __init__(self, held: Any) -> None:
        super().__init__()
        self.held = held
        self.seen: list[bool] = []

    def export_state(self) -> dict[str, Any]:
        self.seen.append(self.held())
        return super().export_state()


def service_seeing(held: Any) -> tuple[Service, SeesHold]:
    service, _ = ledger_service()
    service.unregister("ledger")
    return service, service.register(SeesHold(held))


@pytest.mark.parametrize("shape", ["lock", "function", "pause_resume"])
def test_the_snapshot_is_taken_with_the_writers_held_and_the_commit_after(shape: str) -> None:
    """Every shape of ``quiesce`` holds the writers while the state is exported (here
    in this process: a forked export is tested in ``test_checkpoint_fork.py``), and
    lets them go before the store commits."""
    lock = threading.Lock()
    server = Server()
    if shape == "pause_resume":
        lock = server.lock

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        with lock:
            yield

    quiesce: Any = {"lock": lock, "function": held, "pause_resume": server}[shape]
    service, ledger = service_seeing(lock.locked)

    class Watching(MemoryStore):
        def commit(self, data: Buffer | Iterable[Buffer]) -> Any:
            assert not lock.locked(), "the writers are still held during the commit"
            return super().commit(data)

    report = Checkpointer(service, Watching(), quiesce=quiesce, export="inline").checkpoint_now()
    assert ledger.seen == [True] and not lock.locked()
    assert report.pause_seconds > 0 and report.seconds >= report.pause_seconds


def test_the_negative_control_a_missing_quiesce_exports_with_writers_free() -> None:
    """The same probe sees the export unguarded when nothing holds the writers."""
    lock = threading.Lock()
    service, ledger = service_seeing(lock.locked)
    Checkpointer(service, MemoryStore(), export="inline").checkpoint_now()
    assert ledger.seen == [False]


@pytest.mark.parametrize(("export", "error"), [("inline", ExportError), ("fork", CheckpointError)])
def test_the_writers_go_on_when_the_snapshot_fails(export: Any, error: type[Exception]) -> None:
    """An export that raises: in this process its error propagates as the
    ``ExportError`` a snapshot raises, in a forked child the child's error is in the
    ``CheckpointError``."""
    lock = threading.Lock()
    service, _ = ledger_service()

    class Broken(Ledger):
        def export_state(self) -> dict[str, Any]:
            raise RuntimeError("export exploded")

    service.unregister("ledger")
    service.register(Broken())
    checkpointer = Checkpointer(service, MemoryStore(), quiesce=lock, export=export)
    with pytest.raises(error, match="export exploded"):
        checkpointer.checkpoint_now()
    assert not lock.locked() and checkpointer.failures == 1


def test_the_pause_is_recorded_as_a_metric() -> None:
    records: list[tuple[str, float, tuple[str, ...]]] = []

    class Sink:
        def record(self, instrument: Any, value: float, labels: Any) -> None:
            records.append((instrument.name, value, tuple(labels)))

    previous = use_sink(Sink())
    try:
        service, _ = ledger_service()
        report = Checkpointer(service, MemoryStore()).checkpoint_now()
    finally:
        use_sink(previous)
    pauses = [(v, lab) for name, v, lab in records if name.endswith("checkpoint_pause_seconds")]
    assert pauses == [(report.pause_seconds, ("ledger-service",))]
    assert ("statemigrate_commits_total", 1.0, ("ledger-service", "memory", "committed")) in records


# --- failures and back-off --------------------------------------------------------------


def test_retry_delay_doubles_per_failure_up_to_the_cap() -> None:
    assert [retry_delay(5.0, n, 60.0) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    assert retry_delay(100.0, 3, 60.0) == 100.0  # never sooner than the interval
    assert retry_delay(1.0, 10_000, 60.0) == 60.0


def test_failed_checkpoints_back_off_and_report_then_recover(caplog: Any) -> None:
    caplog.set_level(logging.INFO, "statemigrate")
    service, ledger = ledger_service()
    store = FlakyStore()
    checkpointer = Checkpointer(service, store, every=2.0, max_backoff=10.0)
    store.failing = 4
    delays = [checkpointer._tick() for _ in range(4)]
    assert delays == [4.0, 8.0, 10.0, 10.0]
    assert checkpointer.failures == 4 and isinstance(checkpointer.last_error, StoreError)
    opening = f"checkpoint of ledger-service to {store!r} failed (4 in a row)"
    assert f"{opening}, next attempt in 10.0 s" in caplog.text
    written(ledger, 3)
    assert 0.0 <= checkpointer._tick() <= 2.0
    assert checkpointer.failures == 0 and checkpointer.last_error is None
    assert checkpointer.last is not None and not checkpointer.last.skipped
    assert "commit again after 4 failed" in caplog.text
    assert restored(store) == state_after(3)


def test_the_routine_line_of_each_checkpoint_can_be_quietened_alone(caplog: Any) -> None:
    """Each committed checkpoint's line goes to ``statemigrate.checkpoints``: raising
    that logger's level silences it, and the failure and recovery lines still come."""
    caplog.set_level(logging.INFO, "statemigrate")
    logging.getLogger("statemigrate.checkpoints").setLevel(logging.WARNING)
    try:
        service, ledger = ledger_service()
        store = FlakyStore()
        checkpointer = Checkpointer(service, store, every=2.0, max_backoff=10.0)
        store.failing = 1
        checkpointer._tick()
        written(ledger, 3)
        checkpointer._tick()
        assert checkpointer.last is not None and not checkpointer.last.skipped
    finally:
        logging.getLogger("statemigrate.checkpoints").setLevel(logging.NOTSET)
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert not [m for name, m in messages if m.startswith("checkpoint: ")]
    assert any("failed (1 in a row)" in m for name, m in messages)
    again = f"checkpoints of ledger-service to {store!r} commit again after 1 failed"
    assert ("statemigrate", again) in messages
    caplog.clear()
    written(ledger, 4)
    checkpointer._tick()
    routine = [r.name for r in caplog.records if r.getMessage().startswith("checkpoint: ")]
    assert routine == ["statemigrate.checkpoints"]  # at INFO by default


def test_a_checkpoint_longer_than_a_stop_may_take_is_warned_of_once(caplog: Any) -> None:
    """With ``stop_within`` (a grace period), a checkpoint that takes longer logs one
    WARNING: the final checkpoint of a stop would be killed before it commits, and
    nothing would be logged then. Not again for the next, nor for quick ones."""
    caplog.set_level(logging.WARNING, "statemigrate")
    service, ledger = ledger_service()
    slow = Checkpointer(service, MemoryStore(), stop_within=1e-9)
    for count in (1, 2):
        written(ledger, count)
        slow.checkpoint_now()
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "more than the 1e-09 s a stop may take (stop_within)" in warning
    assert "or use incremental=True" in warning
    caplog.clear()
    quick = Checkpointer(service, MemoryStore(), stop_within=3600.0)
    written(ledger, 3)
    quick.checkpoint_now()
    assert not caplog.records
    with pytest.raises(ConfigurationError, match="stop_within"):
        Checkpointer(service, MemoryStore(), stop_within=0)


def test_a_failed_forked_export_is_said_once_in_its_line(caplog: Any) -> None:
    """A CheckpointError's own text opens with "checkpoint of ... failed", as the
    line does: the line gives its detail alone, and names the store."""
    caplog.set_level(logging.WARNING, "statemigrate")
    service, _ = ledger_service()
    store = FlakyStore()
    checkpointer = Checkpointer(service, store, every=2.0)
    checkpointer.failures = 2
    checkpointer._retry_after(CheckpointError("ledger-service", "the child was killed by SIGKILL"))
    assert [r.getMessage() for r in caplog.records] == [
        f"checkpoint of ledger-service to {store!r} failed (2 in a row), next attempt in 8.0 s:"
        " the child was killed by SIGKILL"
    ]


def test_a_failed_commit_keeps_the_last_checkpoint_and_the_next_mark() -> None:
    """After a failed commit the state is not taken as committed: the next
    checkpoint is written even though nothing changed since the failed one."""
    service, ledger = ledger_service()
    store = FlakyStore()
    checkpointer = Checkpointer(service, store, changes=lambda: ledger.count)
    checkpointer.checkpoint_now()
    ledger.write()
    store.failing = 1
    with pytest.raises(StoreError):
        checkpointer.checkpoint_now()
    assert restored(store) == state_after(0)
    assert not checkpointer.checkpoint_now().skipped
    assert restored(store) == state_after(1)


def wait_for(condition: Any, what: str) -> None:
    """Wait until ``condition()`` holds; a hang is reported, never a time limit."""
    event = threading.Event()
    for _ in range(100_000):
        if condition():
            return
        event.wait(0.001)
    raise AssertionError(f"never happened: {what}")


# --- the thread -------------------------------------------------------------------------


def test_the_thread_survives_failures_and_goes_on_checkpointing() -> None:
    service, ledger = ledger_service()
    store = FlakyStore()
    lock = threading.Lock()
    store.failing = 3
    checkpointer = Checkpointer(
        service, store, every=0.005, max_backoff=0.02, quiesce=lock, changes=lambda: ledger.count
    ).start()
    try:
        wait_for(lambda: store.commits >= 1, "a commit after the failures")
        with lock:
            written(ledger, 5)
        wait_for(lambda: store.commits >= 2, "a checkpoint of the new writes")
    finally:
        checkpointer.stop(final=False)
    assert store.attempts >= 5
    assert restored(store) == state_after(5)


def test_a_state_that_arrives_after_start_is_checkpointed_at_once() -> None:
    """Started before its service owns a state, a checkpointer commits that state as
    soon as it arrives, not ``every`` (an hour here) later."""
    source, source_ledger = ledger_service()
    written(source_ledger, 7)
    service, _ = ledger_service(started=False)
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, every=3600.0, quiesce=threading.Lock()).start()
    try:
        assert store.commits == 0  # nothing to keep yet
        service.restore(source.snapshot()[0].to_bytes())
        wait_for(lambda: store.commits == 1, "the first checkpoint of the restored state")
    finally:
        checkpointer.stop(final=False)
    assert restored(store) == state_after(7)


def test_a_state_taken_over_in_a_handoff_is_checkpointed_at_once() -> None:
    """A checkpointer started after a take-over commits at once: the old process
    stopped checkpointing before its pause, so that state is in no checkpoint yet."""
    source, source_ledger = ledger_service()
    written(source_ledger, 3)
    service, _ = ledger_service(started=False)
    service._tracker.take_over()  # what a handoff's successor goes through
    service.restore(source.snapshot()[0].to_bytes())
    service._tracker.took_over()
    store = MemoryStore()
    with Checkpointer(service, store, every=3600.0, quiesce=threading.Lock()):
        wait_for(lambda: store.commits == 1, "the first checkpoint of the taken-over state")
    assert restored(store) == state_after(3)


def taken_over_service() -> Service:
    source, source_ledger = ledger_service()
    written(source_ledger, 3)
    service, _ = ledger_service(started=False)
    service._tracker.take_over()  # what a handoff's successor goes through
    service.restore(source.snapshot()[0].to_bytes())
    service._tracker.took_over()
    return service


def test_the_first_checkpoint_after_a_take_over_waits_first_after_takeover() -> None:
    """Not at once: its fork would stall the successor just as the requests held in the
    pause arrive. Once the delay passed it is due at once, and the wait never comes
    back; 0 restores the old schedule."""
    service = taken_over_service()
    store = MemoryStore()
    assert Checkpointer(service, store, every=3600.0).first_after_takeover == 0.5
    waiting = Checkpointer(service, store, every=3600.0, first_after_takeover=1800.0)
    assert 1700.0 < waiting._first_delay() <= 1800.0
    assert not waiting._waited_takeover
    assert service._tracker.taken_over_at is not None
    service._tracker.taken_over_at -= 1800.0  # the delay has passed
    assert waiting._first_delay() == 0.0
    service._tracker.taken_over_at += 1800.0
    assert waiting._takeover_wait() == 0.0  # waited once: no second wait
    at_once = Checkpointer(service, store, every=3600.0, first_after_takeover=0)
    assert at_once._first_delay() == 0.0


def test_the_delay_after_a_take_over_leaves_other_starts_alone() -> None:
    """A restore or a cold start is no take-over: the first checkpoint comes ``every``
    seconds later, or at once for a state still to come, as before."""
    service, _ = ledger_service()
    assert Checkpointer(service, MemoryStore(), every=60.0)._first_delay() == 60.0
    pending, _ = ledger_service(started=False)
    assert Checkpointer(pending, MemoryStore(), every=60.0)._first_delay() == 0.0


@pytest.mark.parametrize("bad", [-1, -0.5, "1", True, None, float("nan"), float("inf")])
def test_first_after_takeover_is_a_number_of_seconds(bad: object) -> None:
    """An infinite delay is refused too: it would put off every checkpoint after a
    take-over without a word."""
    service, _ = ledger_service()
    with pytest.raises(ConfigurationError, match="first_after_takeover: must be a finite number"):
        Checkpointer(service, MemoryStore(), first_after_takeover=bad)  # type: ignore[arg-type]


def test_a_committed_checkpoint_gives_no_reason_for_a_skip() -> None:
    service, ledger = ledger_service()
    checkpointer = Checkpointer(service, MemoryStore(), every=3600.0, quiesce=threading.Lock())
    written(ledger, 2)
    report = checkpointer.checkpoint_now()
    assert not report.skipped and report.reason == ""


def test_stop_takes_a_final_checkpoint() -> None:
    service, ledger = ledger_service()
    store = MemoryStore()
    lock = threading.Lock()
    with Checkpointer(service, store, every=3600.0, quiesce=lock) as checkpointer:
        with lock:
            written(ledger, 12)
        assert store.commits == 0
    assert store.commits == 1 and restored(store) == state_after(12)
    assert checkpointer.stop() is not None  # stopped already: only a final checkpoint
    assert checkpointer.stop(final=False) is None
    assert store.commits == 2


def test_a_final_checkpoint_skipped_as_unchanged_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The stop's last line: without it a clean stop of an idle service reads as a kill.
    service, ledger = ledger_service()
    store = MemoryStore()
    checkpointer = Checkpointer(service, store, changes=lambda: ledger.count)
    checkpointer.checkpoint_now()
    with caplog.at_level(logging.DEBUG, logger="statemigrate"):
        assert checkpointer.checkpoint_now().skipped
        report = checkpointer.stop()
    assert report is not None and report.skipped and store.commits == 1
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "skipped" in r.getMessage()]
    assert lines == [
        (logging.DEBUG, "checkpoint of ledger-service skipped: unchanged (the store holds"
         " this state already)"),
        (logging.INFO, "final checkpoint of ledger-service skipped: unchanged (the store"
         " holds this state already)"),
    ]


def test_stop_raises_when_the_final_checkpoint_fails() -> None:
    service, _ = ledger_service()
    store = FlakyStore()
    checkpointer = Checkpointer(service, store, every=3600.0, quiesce=threading.Lock()).start()
    store.failing = 1
    with pytest.raises(StoreError, match="no space left"):
        checkpointer.stop()


@pytest.mark.parametrize(
    ("kw", "option"),
    [
        ({"every": 0}, "every"),
        ({"every": -1.0}, "every"),
        ({"every": True}, "every"),
        ({"every": "5"}, "every"),
        ({"max_backoff": 0}, "max_backoff"),
        ({"quiesce": 42}, "quiesce"),
        ({"changes": 3}, "changes"),
    ],
)
def test_bad_options_are_refused(kw: dict[str, Any], option: str) -> None:
    service, _ = ledger_service()
    with pytest.raises(ConfigurationError) as caught:
        Checkpointer(service, MemoryStore(), **kw)
    assert caught.value.option == option


def test_a_bad_delta_ratio_is_refused_as_a_fraction_not_seconds() -> None:
    service, _ = ledger_service()
    with pytest.raises(ConfigurationError, match="max_delta_ratio") as caught:
        Checkpointer(service, MemoryStore(), every=1.0, max_delta_ratio=0.0)
    assert "base sizes (a fraction, such as 0.5), not 0.0" in str(caught.value)
    assert "seconds" not in str(caught.value)


def test_a_thread_needs_a_way_to_hold_the_writers() -> None:
    service, _ = ledger_service()
    for quiesce in (None, asyncio.Lock()):
        checkpointer = Checkpointer(service, MemoryStore(), quiesce=quiesce)
        with pytest.raises(ConfigurationError, match="quiesce: "):
            checkpointer.start()


def test_a_running_thread_cannot_start_twice_nor_run_on_a_loop() -> None:
    service, _ = ledger_service()
    checkpointer = Checkpointer(service, MemoryStore(), every=3600.0, quiesce=threading.Lock())
    checkpointer.start()
    try:
        with pytest.raises(ConfigurationError, match="mode: .* in a thread already"):
            checkpointer.start()
        with pytest.raises(ConfigurationError, match="mode: .* thread"):
            asyncio.run(checkpointer.run())
        with pytest.raises(ConfigurationError, match="mode: .* thread"):
            asyncio.run(checkpointer.checkpoint())
    finally:
        checkpointer.stop(final=False)
    assert asyncio.run(checkpointer.checkpoint()).committed is not None


# --- the event loop ---------------------------------------------------------------------


def test_run_on_a_loop_checkpoints_and_takes_a_final_checkpoint_when_cancelled() -> None:
    service, ledger = ledger_service()
    store = MemoryStore()

    async def main() -> int:
        checkpointer = Checkpointer(
            service, store, every=0.005, quiesce=asyncio.Lock(), changes=lambda: ledger.count
        )
        task = asyncio.create_task(checkpointer.run())
        while store.commits < 2:
            written(ledger, 1)
            await asyncio.sleep(0.001)
        with pytest.raises(ConfigurationError, match="mode: .* event loop"):
            checkpointer.checkpoint_now()
        with pytest.raises(ConfigurationError, match="mode: .* event loop"):
            await checkpointer.run()
        written(ledger, 1)
        count = ledger.count
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return count

    count = asyncio.run(main())
    assert restored(store) == state_after(count)


def test_a_cancelled_run_raises_the_error_of_its_failed_final_checkpoint() -> None:
    """The clean-up of checkpoints.md's recipe suppresses CancelledError only: the
    final checkpoint's failure leaves asyncio.run, and so sets the exit status."""
    service, ledger = ledger_service()
    store = FlakyStore()

    async def main() -> None:
        task = asyncio.create_task(Checkpointer(service, store, every=3600.0).run())
        try:
            await asyncio.sleep(0)  # the task waits for its first checkpoint
            written(ledger, 5)
            store.failing = 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    with pytest.raises(StoreError, match="no space left") as caught:
        asyncio.run(main())
    assert isinstance(caught.value.__context__, asyncio.CancelledError)
    assert store.attempts == 1 and store.commits == 0


def test_an_async_quiesce_is_refused_outside_the_loop() -> None:
    service, _ = ledger_service()
    checkpointer = Checkpointer(service, MemoryStore(), quiesce=asyncio.Lock())
    with pytest.raises(ConfigurationError, match="event loop only"):
        checkpointer.checkpoint_now()


def test_checkpoint_on_a_loop_reports_failures() -> None:
    service, _ = ledger_service()
    store = FlakyStore()
    store.failing = 1
    checkpointer = Checkpointer(service, store)

    async def main() -> None:
        with pytest.raises(StoreError):
            await checkpointer.checkpoint()
        assert checkpointer.failures == 1
        assert not (await checkpointer.checkpoint()).skipped

    asyncio.run(main())
    assert checkpointer.failures == 0 and store.commits == 1


def test_no_checkpoint_commits_before_the_service_owns_its_state(caplog: Any) -> None:
    """A process that has not restored, taken over or started cold (a successor whose
    checkpointer starts before the state arrives, a worker forked from a master that
    never restored) would replace the latest checkpoint with an empty state."""
    caplog.set_level(logging.INFO, logger="statemigrate")
    service, ledger = ledger_service()
    good = MemoryStore()
    Checkpointer(service, good).checkpoint_now()
    kept = good.open()
    newcomer, _ = ledger_service(started=False)
    checkpointer = Checkpointer(newcomer, good)
    reports = [checkpointer.checkpoint_now(force=True) for _ in range(2)]
    assert all(report.skipped for report in reports)
    assert "the service is starting, not yet restored or started cold" in reports[0].summary()
    assert good.open() == kept
    assert caplog.text.count("not yet restored") == 1  # said once, not at every tick
    newcomer.start_from(good)
    assert not checkpointer.checkpoint_now(force=True).skipped


def test_a_skip_while_the_state_arrives_is_expected_and_a_never_restored_service_warns(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A successor's checkpointer started by the application's start-up hook ticks
    while the handoff's snapshot arrives: INFO. So does one started just before
    ``start_from``, which finds the service starting for a moment. A service that stays
    starting, which nothing restores nor starts cold, is the misconfiguration the
    warning is for."""
    caplog.set_level(logging.INFO, logger="statemigrate")
    successor, _ = ledger_service(started=False)
    successor._tracker.take_over()
    assert successor.status.state == "restoring"
    assert Checkpointer(successor, MemoryStore()).checkpoint_now().skipped
    forgotten, _ = ledger_service(started=False)
    checkpointer = Checkpointer(forgotten, MemoryStore())
    assert checkpointer.checkpoint_now().skipped  # start_from may be about to begin
    monkeypatch.setattr(_checkpointcommit, "_STARTING_GRACE", 0.0)
    assert checkpointer.checkpoint_now().skipped  # still starting past the grace
    assert checkpointer.checkpoint_now().skipped  # warned once
    forgotten._tracker.take_over()  # found at last: a later state is said as before
    assert checkpointer.checkpoint_now().skipped
    skips = [(r.levelname, r.getMessage()) for r in caplog.records if "skipped" in r.getMessage()]
    assert [level for level, _ in skips] == ["INFO", "INFO", "WARNING", "INFO"]
    assert "is restoring" in skips[0][1] and "is starting" in skips[2][1]
    assert "is restoring" in skips[3][1]


def test_a_skip_after_a_failed_restore_adds_no_warning_to_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A service whose restore failed is ``failed``: the restore logged its error, and a
    checkpoint skipped for it says nothing more above DEBUG."""
    writer, _ = ledger_service()
    blob = writer.commit(MemoryStore()).open()
    service, _ = ledger_service(started=False)
    caplog.set_level(logging.DEBUG, logger="statemigrate")
    with pytest.raises(RestoreError):
        service.restore(blob[:-1])
    assert service.status.state == "failed"
    assert Checkpointer(service, MemoryStore()).checkpoint_now().skipped
    above_debug = [r.levelname for r in caplog.records if r.levelno > logging.DEBUG]
    assert above_debug == ["ERROR"], caplog.text
    skips = [r for r in caplog.records if "skipped: the service is failed" in r.getMessage()]
    assert [r.levelname for r in skips] == ["DEBUG"]


def test_a_skip_in_a_successor_before_its_take_over_begins_is_expected(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A successor's checkpointer started before the server adapter (as docs/asgi.md
    shows) ticks while the handshake runs, before the take-over marks the service
    ``restoring``: the state is on its way, INFO. The same skip in a process no
    handoff started keeps the warning."""
    caplog.set_level(logging.INFO, logger="statemigrate")
    monkeypatch.setattr(_gate, "_descriptors_taken", False)
    monkeypatch.setenv(_gate.FDS_VAR, "http=5:control=6")
    successor, _ = ledger_service(started=False)
    assert successor.status.state == "starting"
    assert Checkpointer(successor, MemoryStore()).checkpoint_now().skipped
    monkeypatch.delenv(_gate.FDS_VAR)
    _gate.note_descriptors_taken()  # the successor's side read and unset the variable
    assert Checkpointer(successor, MemoryStore()).checkpoint_now().skipped
    monkeypatch.setattr(_gate, "_descriptors_taken", False)
    forgotten, _ = ledger_service(started=False)
    checkpointer = Checkpointer(forgotten, MemoryStore())
    assert checkpointer.checkpoint_now().skipped
    monkeypatch.setattr(_checkpointcommit, "_STARTING_GRACE", 0.0)
    assert checkpointer.checkpoint_now().skipped
    skips = [(r.levelname, r.getMessage()) for r in caplog.records if "skipped" in r.getMessage()]
    assert [level for level, _ in skips] == ["INFO", "INFO", "INFO", "WARNING"]
    assert all("is starting" in message for _, message in skips)


def test_a_checkpoint_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """The snapshot's and the commit's own lines would repeat what the checkpoint's
    says; they go to DEBUG, for checkpoints only."""
    caplog.set_level(logging.INFO, logger="statemigrate")
    service, ledger = ledger_service()
    checkpointer = Checkpointer(service, MemoryStore(), quiesce=threading.Lock())
    caplog.clear()
    report = checkpointer.checkpoint_now()
    written(ledger, 2)
    final = checkpointer.stop()
    assert final is not None
    assert [r.getMessage() for r in caplog.records] == [
        report.summary(),
        f"final {final.summary()}",
    ]
    caplog.clear()
    service.commit(MemoryStore())  # outside a checkpoint: the commit's lines stay
    assert any("-> memory:memory" in r.getMessage() for r in caplog.records)


def test_a_checkpoint_on_a_loop_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="statemigrate")
    service, _ = ledger_service()
    checkpointer = Checkpointer(service, MemoryStore(), export="inline")
    caplog.clear()
    report = asyncio.run(checkpointer.checkpoint())
    assert [r.getMessage() for r in caplog.records] == [report.summary()]


# --- restoring from a store at start ----------------------------------------------------


def test_start_from_an_empty_store_starts_cold(tmp_path: Path) -> None:
    with TmpfsStore(tmp_path / "store") as tmpfs:
        for store in (MemoryStore(), tmpfs):
            service, _ = ledger_service()
            assert service.start_from(store) is None
            assert service.status.state == "cold_start"
            assert "no snapshot to restore" in (service.status.reason or "")


def damage(path: Path) -> None:
    """Flip a byte of a committed snapshot file in place."""
    fd = os.open(path, os.O_RDWR)
    try:
        byte = os.pread(fd, 1, 100)
        os.pwrite(fd, bytes([byte[0] ^ 0xFF]), 100)
    finally:
        os.close(fd)


def test_start_from_a_store_falls_back_to_previous_when_current_is_damaged(
    tmp_path: Path, caplog: Any
) -> None:
    service, ledger = ledger_service()
    with TmpfsStore(tmp_path / "store") as store:
        written(ledger, 10)
        service.commit(store)
        written(ledger, 10)
        service.commit(store)
        damage(tmp_path / "store" / "current")
        fresh, restored_ledger = ledger_service()
        report = fresh.start_from(store)
    assert report is not None and report.generation == 1
    assert restored_ledger.export_state() == state_after(10)
    assert fresh.status.state == "restored"
    assert "restoring the one before it" in caplog.text


def test_start_from_a_store_says_where_it_restores_from_before_it_starts(
    tmp_path: Path, caplog: Any
) -> None:
    """A restore at start-up says which store and how many bytes before it begins: a
    long migration shows nothing else until it ends, and the line after it does not
    name the store."""
    caplog.set_level(logging.INFO, "statemigrate")
    service, ledger = ledger_service()
    with TmpfsStore(tmp_path / "store") as store:
        written(ledger, 10)
        size = len(service.commit(store).ref.open())
        fresh, _ = ledger_service()
        fresh.start_from(store)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("statemigrate")]
    begun = [n for n, line in enumerate(lines) if line.startswith("restoring the latest")]
    ended = [n for n, line in enumerate(lines) if line.startswith("restored ")]
    assert len(begun) == 1 and ended and begun[0] < ended[0], lines
    assert f"in {store!r} ({size} bytes, read in " in lines[begun[0]]


def test_start_from_a_store_raises_the_latest_error_when_previous_fails_too(
    tmp_path: Path,
) -> None:
    service, ledger = ledger_service()
    with TmpfsStore(tmp_path / "store") as store:
        written(ledger, 3)
        service.commit(store)
        damage(tmp_path / "store" / "current")
        fresh, restored_ledger = ledger_service(started=False)
        with pytest.raises(RestoreError) as caught:
            fresh.start_from(store)
    assert caught.value.phase == "verify"
    assert restored_ledger.export_state() == state_after(0)
    assert fresh.status.state == "failed" and "verify" in (fresh.status.reason or "")


def test_start_from_a_store_does_not_fall_back_past_a_migration_failure() -> None:
    """Only unreadable or refused bytes send the restore to the previous snapshot: a
    snapshot of another service is refused at verify and falls back, but previous
    is of that service too."""
    other = Service("another", registry=REGISTRY)
    other.register(Ledger())
    store = MemoryStore()
    other.commit(store)
    other.commit(store)
    fresh, _ = ledger_service()
    with pytest.raises(RestoreError, match="written by service 'another'"):
        fresh.start_from(store)


def test_start_from_a_store_whose_current_cannot_be_read_restores_previous() -> None:
    service, ledger = ledger_service()

    class Unreadable(MemoryStore):
        def open(self, ref: SnapshotRef | None = None) -> bytes:
            raise StoreError("open", "memory:x", "permission denied", errno=13)

    store = Unreadable()
    service.commit(store)
    written(ledger, 4)
    service.commit(store)
    fresh, restored_ledger = ledger_service()
    assert fresh.start_from(store) is not None
    assert restored_ledger.export_state() == state_after(0)


def test_start_from_a_store_whose_pointer_is_garbage_fails_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An object store's pointer names both the latest snapshot and the one before
    it: when it cannot be read there is nothing to fall back to, and one ERROR says so."""
    service, ledger = ledger_service()
    store = ObjectStore("memory://")
    service.commit(store)
    written(ledger, 4)
    service.commit(store)
    obstore.put(store._backend.store, store._backend.key("current"), b"\x00garbage")
    fresh, restored_ledger = ledger_service(started=False)
    caplog.set_level(logging.INFO, logger="statemigrate")
    with pytest.raises(RestoreError) as caught:
        fresh.start_from(store)
    assert caught.value.phase == "read"
    assert "is not a valid pointer" in str(caught.value)
    assert "nothing to fall back to" in str(caught.value)
    assert "restoring the one before it" not in caplog.text
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == [str(caught.value)]
    assert restored_ledger.export_state() == state_after(0)
    assert fresh.status.state == "failed"


def test_a_start_that_can_read_neither_snapshot_fails_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The latest snapshot and the one before it both fail to read, with different
    errors (a server gone between the read of an object store's pointer and of its
    object): one failed restore, counted once, one ERROR naming both reasons, not a
    second failure for "previous" naming the pointer."""

    class Unreachable(MemoryStore):
        def open(self, ref: SnapshotRef | None = None) -> bytes:
            raise StoreError("open", "memory:app/generations/2", "cannot reach the server")

        def open_previous(self) -> bytes:
            raise StoreError("open", "memory:app/current", "cannot reach the server")

    records: list[tuple[str, float, tuple[str, ...]]] = []

    class Sink:
        def record(self, instrument: Any, value: float, labels: Any) -> None:
            records.append((instrument.name, value, tuple(labels)))

    service = Service("ledger-service", registry=REGISTRY, on_restore_failure="serve_cold")
    service.register(Ledger())
    caplog.set_level(logging.INFO, logger="statemigrate")
    previous = use_sink(Sink())
    try:
        assert service.start_from(Unreachable()) is None
    finally:
        use_sink(previous)
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "memory:app/generations/2: cannot reach the server" in errors[0]
    assert "cannot be read either (open memory:app/current" in errors[0]
    failed = [r for r in records if r[0] == "statemigrate_restores_total" and "failed" in r[2]]
    assert len(failed) == 1
    assert service.status.state == "cold_start"


def test_the_same_read_failing_twice_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """An unreachable server fails the read of ``current`` and the fallback's read of
    the same pointer, with texts that differ only in the client's timings: the error
    says it once, and the status reason does not repeat "restore failed"."""
    tries = iter(range(2))

    class Unreachable(MemoryStore):
        def open(self, ref: SnapshotRef | None = None) -> bytes:
            raise StoreError("open", "s3://b/app/current", f"no answer in {next(tries)}.3 ms")

        def open_previous(self) -> bytes:
            self.open()
            return b""

    service = Service("ledger-service", registry=REGISTRY, on_restore_failure="serve_cold")
    service.register(Ledger())
    assert service.start_from(Unreachable()) is None
    reason = service.status.reason or ""
    assert reason.startswith("restore failed during read: open s3://b/app/current: no answer")
    assert reason.count("s3://b/app/current") == 1
    assert "the previous snapshot cannot be read either: nothing to fall back to" in reason


class LedgerV2(TypedDict):
    count: int
    items: dict[str, int]
    note: str


def newer_ledger_service() -> tuple[Service, Ledger]:
    """The ledger service of a newer release, at version 2, which the tests' usual
    registry (version 1 only) cannot read."""
    registry = Registry()
    registry.add_schema(COMPONENT, 1, LedgerV1)
    registry.add_schema(COMPONENT, 2, LedgerV2)
    registry.add_migration(COMPONENT, 1, 2, lambda data: {**data, "note": ""})

    @registry.migratable(COMPONENT, version=2)
    class NewerLedger(Ledger):
        def export_state(self) -> dict[str, Any]:
            return {**super().export_state(), "note": "v2"}

    service = Service("ledger-service", registry=registry)
    ledger = NewerLedger()
    service.register(ledger)
    return service, ledger


def test_a_service_that_goes_on_cold_keeps_the_snapshot_it_could_not_restore(
    tmp_path: Path, caplog: Any
) -> None:
    """After a rollback, the older release cannot read the newer one's checkpoints: it
    starts cold, and its own checkpoints must not push the newer state out of reach."""
    newer, ledger = newer_ledger_service()
    written(ledger, 7)
    with TmpfsStore(tmp_path / "store") as store:
        newer.commit(store)
        older = Service("ledger-service", registry=REGISTRY, on_restore_failure="serve_cold")
        older.register(Ledger())
        assert older.start_from(store) is None
        older.commit(store)
        older.commit(store)  # current and previous are both the older release's now
        assert "keeping the snapshot that failed to restore: " in caplog.text
        again, again_ledger = newer_ledger_service()
        again.restore((tmp_path / "store" / "unrestored").read_bytes())
    assert again_ledger.export_state() == {**state_after(7), "note": "v2"}


def test_a_damaged_latest_snapshot_is_kept_when_previous_restores(tmp_path: Path) -> None:
    service, ledger = ledger_service()
    with TmpfsStore(tmp_path / "store") as store:
        service.commit(store)
        written(ledger, 2)
        service.commit(store)
        damage(tmp_path / "store" / "current")
        damaged = (tmp_path / "store" / "current").read_bytes()
        fresh, _ = ledger_service()
        assert fresh.start_from(store) is not None
    assert (tmp_path / "store" / "unrestored").read_bytes() == damaged


def test_a_serve_cold_service_starts_cold_when_both_fail() -> None:
    store = MemoryStore()
    store.commit(b"not a snapshot")
    store.commit(b"nor this")
    service = Service("ledger-service", registry=REGISTRY, on_restore_failure="serve_cold")
    service.register(Ledger())
    assert service.start_from(store) is None
    assert service.status.state == "cold_start"


def test_a_cancelled_loop_checkpoint_lets_its_commit_finish_before_the_final_one() -> None:
    """Cancelled while its commit runs in a worker thread, run() waits for that commit
    before the final checkpoint commits: the store ends with the newest state, not with
    the older commit landing last."""
    service, ledger = ledger_service()
    entered, release = threading.Event(), threading.Event()

    class Slow(MemoryStore):
        def commit(self, data: Buffer | Iterable[Buffer]) -> Any:
            if not entered.is_set():  # the first commit waits; the others go through
                entered.set()
                release.wait()
            return super().commit(data)

    store = Slow()

    async def main() -> int:
        task = asyncio.create_task(Checkpointer(service, store, every=0.001).run())
        while not entered.is_set():
            await asyncio.sleep(0.001)
        written(ledger, 3)  # after the first snapshot: only the final one holds them
        task.cancel()
        asyncio.get_running_loop().call_later(0.05, release.set)
        with pytest.raises(asyncio.CancelledError):
            await task
        return ledger.count

    count = asyncio.run(main())
    assert store.commits == 2 and restored(store) == state_after(count)


def test_checkpoints_slower_than_the_interval_are_reported_once(caplog: Any) -> None:
    service, _ = ledger_service()
    checkpointer = Checkpointer(service, MemoryStore(), every=1e-9)
    for _ in range(3):
        assert checkpointer._tick() == 0.0
    assert caplog.text.count("raise every") == 1


def test_an_async_server_control_holds_the_writers_on_the_loop() -> None:
    """pause() and resume() coroutines (an AsyncServerControl) are awaited around the
    snapshot (exported in this process, where the probe sees it); outside a loop they
    are refused rather than called and never awaited."""
    held: list[bool] = [False]
    service, ledger = service_seeing(lambda: held[0])

    class AsyncServer:
        async def pause(self) -> None:
            held[0] = True

        async def resume(self) -> None:
            held[0] = False

    checkpointer = Checkpointer(service, MemoryStore(), quiesce=AsyncServer(), export="inline")
    with pytest.raises(ConfigurationError, match="event loop only"):
        checkpointer.checkpoint_now()
    with pytest.raises(ConfigurationError, match="quiesce: "):
        checkpointer.start()
    assert not asyncio.run(checkpointer.checkpoint()).skipped
    assert ledger.seen == [True] and held == [False]


class RawFailureStore(MemoryStore):
    """Fails every commit with a foreign error of many lines, as obstore's are."""

    def commit(self, data: Buffer | Iterable[Buffer]) -> MemoryRef:
        raise OSError("Generic S3 error: 507\n\nDebug source:\nGeneric {\n    store: \"S3\",\n}")


def test_a_failed_final_checkpoint_on_a_loop_is_one_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The final checkpoint of a cancelled run() fails: one ERROR line, no traceback
    and none of the error's further lines; the error is raised in place of the
    cancellation, without the cancellation as its context."""
    service, ledger = ledger_service()
    ledger.write()
    checkpointer = Checkpointer(service, RawFailureStore(), every=3600, export="inline")

    async def main() -> None:
        task = asyncio.create_task(checkpointer.run())
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with pytest.raises(OSError) as info:
        asyncio.run(main())
    assert info.value.__suppress_context__
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert errors[0].getMessage().endswith("failed: Generic S3 error: 507")
