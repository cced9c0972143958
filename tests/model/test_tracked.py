"""TrackedDict: reads are dict's own, writes are recorded per mark, deltas replay exactly."""

from __future__ import annotations

import copy
import functools
import gc
import itertools
import pickle
import random
import sys
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemigrate import ChangeMark, Changes, TrackedDict
from statemigrate._model._tracked import _UNKNOWN as UNKNOWN

KEYS = st.sampled_from([f"k{i}" for i in range(12)])

# One write of any kind: (method, key, value).
OPS = st.tuples(
    st.sampled_from(
        ["set", "del", "pop", "pop_default", "popitem", "setdefault", "update", "ior",
         "clear", "reorder", "mark"]
    ),
    KEYS,
    st.integers(0, 1000),
)


def _run(tracked: TrackedDict[str, int], plain: dict[str, int], op: tuple[str, str, int]) -> None:
    """Apply one write to both the tracked dict and a plain dict."""
    name, key, value = op
    for target in (tracked, plain):
        if name == "set":
            target[key] = value
        elif name == "del":
            if key in target:
                del target[key]
        elif name == "pop":
            if key in target:
                target.pop(key)
        elif name == "pop_default":
            target.pop(key, None)
        elif name == "popitem":
            if target:
                target.popitem()
        elif name == "setdefault":
            target.setdefault(key, value)
        elif name == "update":
            target.update({key: value}, other=value)
        elif name == "ior":
            target |= {key: value + 1}
        elif name == "clear":
            if value % 10 == 0:
                target.clear()
        elif name == "reorder":
            if key in target:
                target[key] = target.pop(key)


def _apply(base: dict[Any, Any], changes: Changes, *, keep_order: bool = True) -> None:
    """What a receiver does with ``changes``: set the keys updated in place, move the
    inserted ones to the end in their order, delete the deleted ones. Without
    ``keep_order`` (a broken receiver, for the negative control) every key is set in
    place."""
    records = iter(changes.set.items())
    in_place = len(changes.set) - (changes.moved if keep_order else 0)
    for key, value in itertools.islice(records, in_place):
        base[key] = value
    for key, value in records:
        base.pop(key, None)
        base[key] = value
    for key in changes.deleted:
        base.pop(key, None)


def _replay(
    base: dict[Any, int],
    tracked: TrackedDict[Any, int],
    mark: ChangeMark,
    limit: int | None = None,
) -> int:
    changes = tracked.take_changes(mark, limit=limit)
    _apply(base, changes)
    return len(changes)


def _same(*dicts: dict[Any, Any]) -> bool:
    """Whether the dicts hold the same items in the same order."""
    return all(list(d.items()) == list(dicts[0].items()) for d in dicts[1:])


@given(
    st.dictionaries(KEYS, st.integers(0, 9)),
    st.lists(OPS, max_size=60),
)
def test_deltas_replayed_onto_a_copy_of_the_base_give_the_same_dict(
    start: dict[str, int], ops: list[tuple[str, str, int]]
) -> None:
    """Property: for any writes, cut into rounds at random, applying each round's
    changes (set records, moved keys, deleted keys) to a copy of the base gives the live
    dict, in its order."""
    tracked = TrackedDict(start)
    plain = dict(start)
    mark = tracked.mark()
    replica = dict(start)
    for op in ops:
        if op[0] == "mark":
            _replay(replica, tracked, mark)
            assert _same(replica, tracked)
            continue
        _run(tracked, plain, op)
        assert tracked == plain
    _replay(replica, tracked, mark)
    assert _same(replica, tracked, plain)
    assert tracked.pending(mark) == 0


@given(st.lists(OPS, max_size=60), st.lists(OPS, max_size=60))
def test_two_marks_see_their_own_changes(
    first: list[tuple[str, str, int]], second: list[tuple[str, str, int]]
) -> None:
    """Property: with two readers, each one's replay is exact (items and order),
    whenever it reads."""
    tracked: TrackedDict[str, int] = TrackedDict()
    plain: dict[str, int] = {}
    early = tracked.mark()
    early_copy: dict[str, int] = {}
    for op in first:
        _run(tracked, plain, op)
    late = tracked.mark()
    late_copy = dict(tracked)
    for index, op in enumerate(second):
        _run(tracked, plain, op)
        if index % 7 == 3:
            _replay(early_copy, tracked, early)
            assert _same(early_copy, tracked)
    _replay(late_copy, tracked, late)
    _replay(early_copy, tracked, early)
    assert _same(late_copy, early_copy, tracked, plain)


@given(
    st.dictionaries(KEYS, st.integers(0, 9)),
    st.lists(st.one_of(OPS, st.integers(0, 4)), max_size=80),
)
def test_sliced_takes_with_writes_between_them_replay_exactly(
    start: dict[str, int], steps: list[tuple[str, str, int] | int]
) -> None:
    """Property: taking the changes a few keys at a time (``limit``), with writes
    between the slices, loses no write: each slice has at most ``limit`` keys (see
    take_changes for the one exception), pending() drops by the keys the mark moved
    past, and replaying every slice onto a copy of the base gives the live dict, in its
    order. Another mark, opened earlier, still sees everything."""
    tracked = TrackedDict(start)
    plain = dict(start)
    early = tracked.mark()
    mark = tracked.mark()
    replica = dict(start)
    for step in steps:
        if isinstance(step, int):
            before = tracked.pending(mark)
            taken = _replay(replica, tracked, mark, limit=step)
            written = before - tracked.pending(mark)  # the keys the mark moved past
            if step >= before:
                assert taken == written == before
            elif step == 0:
                assert taken == written == 0
            else:
                # More than the limit only for one key written and the keys inserted
                # before it that were written again since (moved with it, in order).
                assert 1 <= written <= taken and (taken <= step or written == 1)
            assert tracked.pending(mark) == len(tracked.changes_since(mark))
        elif step[0] != "mark":
            _run(tracked, plain, step)
    while tracked.pending(mark):
        _replay(replica, tracked, mark, limit=2)
    assert _same(replica, tracked, plain)
    early_copy = dict(start)
    _replay(early_copy, tracked, early)
    assert _same(early_copy, tracked)


def test_an_lru_touch_moves_the_key_to_the_end_of_the_replica() -> None:
    """``d[k] = d.pop(k)`` (an LRU's touch) and a new key are listed as moved, in the
    dict's order; a value replaced in place is not, and keeps its place."""
    tracked = TrackedDict({f"k{i}": i for i in range(5)})
    replica = dict(tracked)
    mark = tracked.mark()
    tracked["k0"] = tracked.pop("k0")
    tracked["k2"] = 20
    tracked["new"] = 5
    tracked["k1"] = tracked.pop("k1")
    changes = tracked.take_changes(mark)
    assert list(changes.set) == ["k2", "k0", "new", "k1"] and changes.moved == 3
    _apply(replica, changes)
    assert list(replica) == ["k2", "k3", "k4", "k0", "new", "k1"] == list(tracked)


def test_the_order_check_catches_a_receiver_that_ignores_moves() -> None:
    """Negative control for the order assertions above: a receiver that sets every key
    in place (as deltas did before they carried moves) ends in another order."""
    tracked = TrackedDict({f"k{i}": i for i in range(5)})
    replica = dict(tracked)
    mark = tracked.mark()
    tracked["k0"] = tracked.pop("k0")
    _apply(replica, tracked.take_changes(mark), keep_order=False)
    assert replica == tracked
    assert not _same(replica, tracked)


@pytest.mark.parametrize("limit", [1, 2])
def test_sliced_takes_move_inserted_keys_in_the_order_of_insertion(limit: int) -> None:
    """Two new keys, the first written again after the second: slices taken by the
    order of last writes still move the keys in the order they were inserted."""
    tracked: TrackedDict[str, int] = TrackedDict({"z": 0})
    replica = dict(tracked)
    mark = tracked.mark()
    tracked["a"] = 1
    tracked["b"] = 1
    tracked["a"] = 2
    while tracked.pending(mark):
        _replay(replica, tracked, mark, limit=limit)
    assert list(replica.items()) == [("z", 0), ("a", 2), ("b", 1)] == list(tracked.items())


def test_an_insertion_recorded_late_lists_every_key_as_moved() -> None:
    """A write that found no mark open and recorded its key after a mark opened (the
    race of a write with the opening of a mark) may have inserted its key unrecorded;
    when the inserted keys are then not the dict's tail, the take lists every key as
    moved, so the replica still takes the live order."""
    tracked: TrackedDict[str, int] = TrackedDict({"a": 0, "b": 0})
    replica = dict(tracked)
    mark = tracked.mark()
    tracked["c"] = 1  # recorded as inserted
    dict.__setitem__(tracked, "d", 1)  # a racing write: changed, then recorded late
    tracked._note("d", UNKNOWN)  # what such a write records: its key, insertion unknown
    tracked["e"] = 1
    changes = tracked.take_changes(mark)
    assert changes.moved == len(tracked) == len(changes.set)
    _apply(replica, changes)
    assert _same(replica, tracked)


def test_a_write_between_slices_is_in_a_later_slice() -> None:
    """A key written again after its slice was taken, and a key written for the first
    time while older ones wait, are both taken later: a sliced export loses neither."""
    tracked: TrackedDict[str, int] = TrackedDict()
    mark = tracked.mark()
    for i in range(6):
        tracked[f"k{i}"] = i
    first = tracked.take_changes(mark, limit=2)
    assert first.set == {"k0": 0, "k1": 1}
    tracked["k0"] = 100  # written again mid-export: its slice is gone already
    tracked["new"] = 7
    del tracked["k3"]
    assert tracked.pending(mark) == 6
    rest = tracked.take_changes(mark, limit=3)  # oldest writes first; k3's is late now
    assert rest.set == {"k2": 2, "k4": 4, "k5": 5} and rest.deleted == ()
    last = tracked.take_changes(mark)
    assert last.set == {"k0": 100, "new": 7} and last.deleted == ("k3",)
    assert tracked.pending(mark) == 0 and tracked.take_changes(mark, limit=5).set == {}


@given(st.lists(OPS, max_size=60))
def test_pending_counts_the_distinct_keys_written(ops: list[tuple[str, str, int]]) -> None:
    """Property: pending() equals the number of keys changes_since() reports."""
    tracked: TrackedDict[str, int] = TrackedDict({"k0": 0, "k1": 1})
    other = tracked.mark()
    mark = tracked.mark()
    for op in ops:
        if op[0] == "mark":
            tracked.advance(mark)
        else:
            _run(tracked, {}, op)
        assert tracked.pending(mark) == len(list(tracked.changed_keys(mark)))
        assert tracked.pending(mark) == len(tracked.changes_since(mark))
        assert tracked.pending(other) == len(tracked.changes_since(other))


def test_reads_are_dicts_own_methods() -> None:
    """Reads cost what they cost on a dict: none of them is overridden."""
    for name in ("__getitem__", "get", "__contains__", "__iter__", "__len__", "keys",
                 "values", "items", "__eq__", "__reversed__"):
        assert getattr(TrackedDict, name) is getattr(dict, name), name


def test_no_log_while_no_mark_is_open() -> None:
    tracked = TrackedDict(a=1)
    tracked["b"] = 2
    del tracked["a"]
    assert tracked._log is None and not tracked.tracking
    mark = tracked.mark()
    tracked["c"] = 3
    assert tracked.tracking and tracked._log == {"c": 1}
    tracked.close(mark)
    assert tracked._log is None and not tracked.tracking
    tracked.close(mark)  # idempotent


def test_old_entries_are_forgotten_once_every_mark_moved_past_them() -> None:
    tracked: TrackedDict[str, int] = TrackedDict()
    first = tracked.mark()
    second = tracked.mark()
    for i in range(100):
        tracked[f"k{i}"] = i
    tracked.advance(first)
    assert tracked._log is not None and len(tracked._log) == 100  # second still needs them
    tracked["new"] = 1
    tracked.advance(second)
    assert tracked._log == {"new": 101}
    assert tracked.changes_since(first).set == {"new": 1}
    assert len(tracked.changes_since(second)) == 0


def test_changes_report_values_now_and_deleted_keys() -> None:
    tracked = TrackedDict(a=1, b=2)
    mark = tracked.mark()
    tracked["a"] = 10
    tracked["a"] = 11
    del tracked["b"]
    tracked["c"] = 3
    tracked["d"] = 4
    del tracked["d"]
    changes = tracked.changes_since(mark)
    assert changes.set == {"a": 11, "c": 3}
    assert sorted(changes.deleted) == ["b", "d"]
    assert tracked.pending(mark) == 4


def test_a_closed_or_foreign_mark_is_refused() -> None:
    tracked = TrackedDict(a=1)
    mark = tracked.mark()
    tracked.close(mark)
    with pytest.raises(ValueError, match="not an open mark"):
        tracked.changes_since(mark)
    with pytest.raises(ValueError, match="not an open mark"):
        tracked.pending(TrackedDict().mark())


@pytest.mark.parametrize(
    "clone",
    [
        lambda d: pickle.loads(pickle.dumps(d)),
        copy.copy,
        copy.deepcopy,
        lambda d: d.copy(),
    ],
)
def test_copies_have_the_items_and_no_marks(clone: Any) -> None:
    tracked = TrackedDict(a=[1], b=2)
    tracked.mark()
    tracked["c"] = 3
    twin = clone(tracked)
    assert type(twin) is TrackedDict
    assert twin == tracked
    assert not twin.tracking and twin._log is None
    twin["d"] = 4  # writable, unwatched
    assert "d" not in tracked


def test_failed_writes_record_nothing() -> None:
    tracked = TrackedDict(a=1)
    mark = tracked.mark()
    with pytest.raises(KeyError):
        del tracked["missing"]
    with pytest.raises(KeyError):
        tracked.pop("missing")
    with pytest.raises(TypeError):
        tracked[["unhashable"]] = 1  # type: ignore[index]
    assert tracked.pending(mark) == 0
    assert tracked.setdefault("a", 5) == 1  # present: no write
    assert tracked.pending(mark) == 0
    assert tracked.pop("missing", "dflt") == "dflt"
    assert tracked.pending(mark) == 0


def test_repr_names_the_type() -> None:
    assert repr(TrackedDict(a=1)) == "TrackedDict({'a': 1})"


@pytest.mark.parametrize("limit", [None, 50])
@pytest.mark.parametrize("attempt", range(3))
def test_changes_taken_while_other_threads_write_lose_no_write(
    attempt: int, limit: int | None
) -> None:
    """Writers in several threads and a reader taking changes meanwhile (a hand-over's
    rounds, whole or in slices of ``limit`` keys): replaying every round onto a copy of
    the base gives the final dict, in its order."""
    tracked: TrackedDict[int, int] = TrackedDict({i: 0 for i in range(1000)})
    replica = dict(tracked)
    mark = tracked.mark()

    def write(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(8_000):
            key = rng.randrange(1500)
            if n % 3 == 0:
                tracked.pop(key, None)
            elif n % 3 == 1:
                tracked[key] = tracked.pop(key, n)  # an LRU's touch, or an insertion
            else:
                tracked[key] = n

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        writers = [threading.Thread(target=write, args=(attempt * 10 + n,)) for n in range(4)]
        for thread in writers:
            thread.start()
        rounds = 0
        while any(thread.is_alive() for thread in writers):
            _replay(replica, tracked, mark, limit)
            rounds += 1
        for thread in writers:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    _replay(replica, tracked, mark)
    assert rounds > 1
    assert _same(replica, tracked)


def _lines_run(module_file: str, call: Any) -> int:
    """The Python lines of ``module_file`` that ``call()`` runs, counted by a tracer."""
    lines = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if frame.f_code.co_filename != module_file:
            return None
        if event == "line":
            lines += 1
        return tracer

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
    return lines


def _changed(
    count: int, *, size: int = 4_000, moved: bool = False
) -> tuple[TrackedDict[str, Any], ChangeMark]:
    """A dict of ``size`` entries with ``count`` of them replaced (and one deleted)
    since its mark; with ``moved``, half of them moved to the end and as many new keys
    inserted instead."""
    tracked = TrackedDict({f"k{i}": {"n": i, "tags": ["a"]} for i in range(size)})
    mark = tracked.mark()
    for i in range(count):
        key = f"k{i * 7 % size}"
        if moved and i % 2:
            tracked[key] = tracked.pop(key)
        elif moved:
            tracked[f"new{i}"] = {"n": -i, "tags": ["b"]}
        else:
            tracked[key] = {"n": -i, "tags": ["b"]}
    del tracked["k0"]
    return tracked, mark


@pytest.mark.parametrize("moved", [False, True])
@pytest.mark.parametrize("limit", [None, 50])
def test_taking_changes_runs_no_python_code_per_key(limit: int | None, moved: bool) -> None:
    """Complexity: the Python lines run to take the changes do not grow with the keys
    changed (the keys and values are gathered by C-level iteration): a checkpoint of
    most of a large dict must not cost more per key than a full snapshot per entry."""
    module_file = sys.modules[TrackedDict.__module__].__file__
    assert module_file is not None
    runs = {}
    for count in (100, 3_000):
        tracked, mark = _changed(count, moved=moved)
        taken: list[Changes] = []
        take = functools.partial(tracked.take_changes, mark, limit=limit)
        runs[count] = _lines_run(module_file, lambda: taken.append(take()))  # noqa: B023
        written = count + moved  # moved: k0 is deleted, not written
        assert len(taken[0]) == (min(written, limit) if limit else written)
        assert limit or taken[0].deleted == ("k0",)
    assert runs[3_000] == runs[100], runs


@pytest.mark.parametrize("moved", [False, True])
def test_taking_the_changes_of_most_of_a_dict_sets_off_no_garbage_collection(
    moved: bool,
) -> None:
    """Taking changes makes no container per key: were it to, the collector would run
    every few hundred keys while the writers wait, and its full collections walk every
    object of the process (seconds, for a state of a million entries)."""
    tracked, mark = _changed(3_000, moved=moved)
    collections: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    threshold = gc.get_threshold()
    gc.collect()
    gc.set_threshold(100, 10, 10)
    gc.callbacks.append(note)
    try:
        changes = tracked.take_changes(mark)
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*threshold)
    assert len(changes) == 3_000 + moved  # moved: k0 is deleted, not written
    assert collections == []


@pytest.mark.parametrize("wrong", [-5, 1, 10_000])
@pytest.mark.parametrize("limit", [None, 40])
def test_a_mark_count_out_of_step_with_the_log_loses_no_key(wrong: int, limit: int | None) -> None:
    """The keys since a mark are cut from the log by its count; were the count ever
    wrong, the log is walked instead, and the count set right."""
    tracked: TrackedDict[str, int] = TrackedDict({f"k{i}": i for i in range(200)})
    older = tracked.mark()
    tracked["k1"] = -1  # an entry before the cut, kept for the older mark
    mark = tracked.mark()
    for i in range(100, 160):
        tracked[f"k{i}"] = -i
    mark.count += wrong
    changes = tracked.take_changes(mark, limit=limit)
    expected = [f"k{i}" for i in range(100, 160)][:limit]
    assert list(changes.set) == expected
    assert tracked.pending(mark) == 60 - len(expected)
    assert list(tracked.changes_since(older).set)[0] == "k1"
