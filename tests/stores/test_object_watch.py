"""Object-store requests still running after ``warn_after``: one WARNING each, an INFO
line at their end, one watching thread that ends when the requests do, and nothing
for the requests that end in time.

The server is obstore itself, its requests held on an Event by a gate in front of it:
a hung server, without a clock to race.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import select
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import obstore
import pytest

from statemigrate import StoreError
from statemigrate.stores import ObjectStore, _object_watch
from statemigrate.stores._object_watch import THREAD_NAME, Watch, Watcher, check_warn_after

HANG = 60.0  # seconds; only stops a test that would hang, never a measurement
LATE = 0.01  # warn_after of the held requests: they are held far longer


class Gate:
    """obstore, with each request of an operation in ``held`` waiting for ``release``;
    ``arrived`` counts the requests that reached the gate."""

    def __init__(self, *held: str) -> None:
        self.held = set(held)
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)

    def _wait(self, op: str) -> None:
        if op in self.held:
            self.arrived.release()
            assert self.release.wait(HANG), "the test never released the gate"

    def __getattr__(self, name: str) -> Any:
        return getattr(obstore, name)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self._wait("get")
        return obstore.get(*args, **kwargs)

    def head(self, *args: Any, **kwargs: Any) -> Any:
        self._wait("head")
        return obstore.head(*args, **kwargs)

    def list(self, *args: Any, **kwargs: Any) -> Any:
        self._wait("list")
        return obstore.list(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._wait("delete")
        return obstore.delete(*args, **kwargs)

    def put(self, store: Any, path: str, data: Any, **kwargs: Any) -> Any:
        if "put" in self.held and kwargs.get("use_multipart"):
            # The upload takes its first part, then the server stops answering.
            parts = iter(data)
            data = itertools.chain([next(parts)], parts)
        self._wait("put")
        return obstore.put(store, path, data, **kwargs)


class Records(logging.Handler):
    """The records of ``statemigrate.stores``, and a way to wait for some."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def lines(self, level: int) -> list[str]:
        with self._changed:  # a Condition's lock is reentrant
            return [r.getMessage() for r in self.records if r.levelno == level]

    def wait_for(self, level: int, count: int) -> list[str]:
        """The lines at ``level``, once there are at least ``count``."""
        return self.wait_until(level, lambda lines: len(lines) >= count)

    def wait_until(self, level: int, done: Callable[[list[str]], bool]) -> list[str]:
        """The lines at ``level``, once ``done`` says they are what was waited for."""
        with self._changed:
            assert self._changed.wait_for(lambda: done(self.lines(level)), HANG), (
                f"still waiting; the lines at {logging.getLevelName(level)}: {self.lines(level)}"
            )
            return self.lines(level)


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("statemigrate.stores")
    handler = Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def watcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watcher]:
    """A watcher of its own, whose thread ends as soon as no request runs."""
    own = Watcher(linger=0.0)
    monkeypatch.setattr(_object_watch, "WATCHER", own)
    yield own
    ended(own)


def ended(watcher: Watcher) -> None:
    """Wait for ``watcher``'s thread to end, once no request runs: woken, rather than
    left asleep until the moment the last request would have been late."""
    thread = watcher.thread
    while thread is not None and thread.is_alive():
        with watcher._changed:
            watcher._changed.notify()
        thread.join(0.01)


def gated_store(*held: str) -> tuple[ObjectStore, Gate]:
    """A store holding one snapshot, its requests of the operations ``held`` held at a
    gate, and late after :data:`LATE` seconds: the tests make only the requests they
    hold, whose lines they count, since one not held may be late too on a busy machine."""
    store = ObjectStore("memory://", warn_after=None)
    store.commit(b"the snapshot")  # a pointer and a generation to read
    store._backend.warn_after = LATE
    gate = Gate(*held)
    store._backend._obs = gate
    return store, gate


def pointer(store: ObjectStore) -> object:
    """The pointer's bytes: one request."""
    return store._backend.get_small("current", limit=1 << 20)


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """``call`` run in a thread, and what it returned or raised, once it has."""
    results: list[object] = []

    def run() -> None:
        try:
            results.append(call())
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def watcher_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """The watching threads started since ``before`` was taken (the process-wide
    watcher's, started by another test, may linger)."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.name == THREAD_NAME and thread not in before
    ]


def test_a_held_request_is_logged_once_then_its_end(
    watcher: Watcher, records: Records
) -> None:
    store, gate = gated_store("get")
    thread, results = in_thread(lambda: pointer(store))
    [warning] = records.wait_for(logging.WARNING, 1)
    assert re.fullmatch(
        r"open memory://current: no answer from the object store after \d+\.\d s; still"
        r" waiting \(a slow or hung server\?\)",
        warning,
    ), warning
    gate.release.set()
    thread.join(HANG)
    [found] = results
    assert isinstance(found, tuple) and b'"current"' in found[0]
    assert records.lines(logging.WARNING) == [warning]
    [info] = records.lines(logging.INFO)
    assert re.fullmatch(r"open memory://current: answered after \d+\.\d s", info), info


def test_a_held_request_that_fails_says_so_at_its_end(
    watcher: Watcher, records: Records
) -> None:
    store, gate = gated_store("head")
    thread, results = in_thread(lambda: store._backend.etag_of("no-such-object"))
    records.wait_for(logging.WARNING, 1)
    gate.release.set()
    thread.join(HANG)
    [error] = results
    assert isinstance(error, StoreError) and error.detail == "no such object"
    [info] = records.lines(logging.INFO)
    assert re.fullmatch(
        r"open memory://no-such-object: failed after \d+\.\d s: no such object", info
    ), info


def first_of_two_warnings(records: Records) -> tuple[int, int]:
    """How many WARNING lines a held read had, and a listing held from after the read
    was said to be late until the listing was too; both then answered."""
    store, gate = gated_store("get", "list")
    reading, _ = in_thread(lambda: pointer(store))
    records.wait_for(logging.WARNING, 1)
    listing, _ = in_thread(lambda: store._backend.list_objects("generations"))
    # The listing is late warn_after after it started: by then a watcher that says a
    # request is late every warn_after has said so of the read a second time.
    assert _object_watch.WATCHER.thread is not None
    records.wait_until(
        logging.WARNING, lambda lines: any(line.startswith("list ") for line in lines)
    )
    gate.release.set()
    reading.join(HANG)
    listing.join(HANG)
    ended(_object_watch.WATCHER)  # every line it had to write is written
    lines = records.lines(logging.WARNING)
    return (
        len([line for line in lines if line.startswith("open ")]),
        len([line for line in lines if line.startswith("list ")]),
    )


def test_a_request_held_long_is_said_to_be_late_once(
    watcher: Watcher, records: Records
) -> None:
    assert first_of_two_warnings(records) == (1, 1)


def test_negative_control_a_watch_that_rearms_floods_the_log(
    watcher: Watcher, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above can see a flood: a watch that says it is late again after
    every warn_after has two lines for the read."""

    def rearming(self: Watch, now: float) -> float | None:
        if now < self.deadline:
            return None
        waited = now - self._since
        self._since = now
        return waited

    monkeypatch.setattr(Watch, "due", rearming)
    read, _ = first_of_two_warnings(records)
    assert read >= 2


def test_one_thread_watches_every_request_and_ends_with_them(
    watcher: Watcher, records: Records
) -> None:
    before = set(threading.enumerate())
    store, gate = gated_store("get")
    held = [in_thread(lambda: pointer(store))[0] for _ in range(3)]
    records.wait_for(logging.WARNING, 3)
    assert watcher_threads(before) == [watcher.thread]
    gate.release.set()
    for thread in held:
        thread.join(HANG)
    assert len(records.lines(logging.WARNING)) == 3
    assert len(records.lines(logging.INFO)) == 3
    # Requests in time, one after another: never a thread each.
    fast = ObjectStore("memory://", warn_after=0.5)
    for number in range(20):
        fast.commit(b"%d" % number)
        assert fast.open() == b"%d" % number
        assert len(watcher_threads(before)) <= 1
    ended(watcher)
    assert set(threading.enumerate()) - before == set()


def test_requests_in_time_log_nothing_and_without_warnings_nothing_is_watched(
    watcher: Watcher, records: Records
) -> None:
    store = ObjectStore("memory://")
    store.commit(b"one")
    store.commit(b"two")
    assert bytes(store.open()) == b"two" and len(store.generations()) == 2
    assert records.records == []
    unwatched = ObjectStore("memory://", warn_after=None)
    ended(watcher)
    unwatched.commit(b"one")
    assert bytes(unwatched.open()) == b"one"
    assert watcher.thread is None


def test_a_multipart_upload_that_stops_taking_parts_is_late(
    watcher: Watcher, records: Records
) -> None:
    store, gate = gated_store("put")
    big = os.urandom(6 << 20)  # past one 5 MiB part: a multipart upload
    thread, results = in_thread(lambda: store.commit(big))
    # The commit's other requests, not held, are late too on a busy machine: the
    # upload's lines are those that name a write.
    lines = records.wait_until(
        logging.WARNING, lambda lines: any(line.startswith("write ") for line in lines)
    )
    [warning] = [line for line in lines if line.startswith("write ")]
    assert re.match(r"write memory://generations/\d{20}\.[0-9a-f]+: no answer", warning)
    gate.release.set()
    thread.join(HANG)
    assert len(results) == 1 and store.open() == big
    writes = [line for line in records.lines(logging.WARNING) if line.startswith("write ")]
    assert writes == [warning]
    [info] = [line for line in records.lines(logging.INFO) if line.startswith("write ")]
    assert info.startswith(warning.split(": no answer")[0] + ": answered after")


def test_late_is_once_and_counts_from_the_last_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch's own arithmetic, on literal times."""
    watch = Watch(Watcher(), "write", "memory://x", 5.0)
    watch._started = watch._since = 100.0
    assert watch.due(104.9) is None
    assert watch.due(106.0) == 6.0
    assert watch.due(200.0) is None  # once
    moving = Watch(Watcher(), "write", "memory://x", 5.0)
    moving._started = moving._since = 100.0
    clock = SimpleNamespace(monotonic=lambda: 103.0)
    monkeypatch.setattr(f"{_object_watch.__name__}.time", clock)
    moving.progress()
    assert moving.due(107.0) is None
    assert moving.due(108.5) == 5.5


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True, "5"])
def test_warn_after_must_be_seconds_above_zero(value: Any) -> None:
    with pytest.raises(ValueError, match="warn_after: must be a number of seconds above 0"):
        ObjectStore("memory://", warn_after=value)
    with pytest.raises(ValueError):
        check_warn_after(value)


def test_warn_after_takes_seconds_or_none() -> None:
    assert [check_warn_after(value) for value in (None, 1, 0.25)] == [None, 1.0, 0.25]


def test_a_forked_child_watches_its_own_requests(watcher: Watcher, records: Records) -> None:
    """A child forked while the parent's request is held starts with no watch and no
    thread, and watches its own: nothing of the parent's lock or thread is reused."""
    store, gate = gated_store("get")
    thread, _ = in_thread(lambda: pointer(store))
    records.wait_for(logging.WARNING, 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            own = _object_watch.WATCHER
            fresh = own.thread is None and not own._watches
            with _object_watch.watch("open", "child", LATE):
                started = own.thread is not None and own.thread.is_alive()
            os.write(write, b"ok" if fresh and started else b"no")
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], HANG)
        answer = os.read(read, 2) if ready else b"the child hung"
    finally:
        os.close(read)
        gate.release.set()
        thread.join(HANG)
        os.waitpid(pid, 0)
    assert answer == b"ok"


def test_the_store_error_of_a_watched_request_is_unchanged(watcher: Watcher) -> None:
    store = ObjectStore("memory://", warn_after=LATE)
    with pytest.raises(StoreError, match="no snapshot has been committed"):
        store.open()
