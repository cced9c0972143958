"""Change tracking: a ``dict`` that can tell which keys changed since a point.

:class:`TrackedDict` is a ``dict`` subclass whose reads are the plain C methods of
``dict`` (``d[k]``, ``get``, ``in``, iteration, ``len``): nothing is overridden for
them, so a read runs no Python code (CPython's specialised bytecode for exact dicts
aside, a few tens of nanoseconds). Its writes record the key written, in O(1), but
only while somebody is watching: until a :class:`ChangeMark` is opened there is no log
at all, and a write costs a Python method call around the ``dict`` method.

While marks are open, the log is a ``dict`` from key to the sequence number of its
last write, in order of those writes: a write pops the key and inserts it again at
the end. The keys written since a mark are therefore the tail of the log, as long as
the mark's count of keys written since it, cut out by ``islice`` over ``reversed()``
of the ``dict``; the cost of :meth:`TrackedDict.changes_since` is the number of keys
changed, not the size of the dict, and it runs no Python code and makes no object per
key. Several marks may be open at once (a hand-over and a checkpointer, say); entries
older than the oldest open mark are forgotten when a mark moves on or is closed.

Each mark also counts the distinct keys written since it was set, so
:meth:`TrackedDict.pending` is O(1): a write adds one to every open mark that had not
seen the key yet (one comparison per open mark).

Key order: a ``dict`` keeps its keys in the order of their last insertion (a value
replaced in place keeps its place; ``d[k] = d.pop(k)``, an LRU's touch, moves ``k`` to
the end). So the live order since a mark is the order at the mark, less the keys
removed, followed by the keys inserted since the mark in the order of insertion: the
tail of the dict. A second log, of insertions, keeps each present key's last insertion
number, in that order; the keys inserted since a mark are its tail, counted per mark
like the writes. :class:`Changes` lists the keys updated in place first and the
inserted ones last, in live order, with their number, so a receiver that sets the
first and moves the last to its end keeps the live order. A take checks that those
keys are the dict's own tail, and should they not be (a write that raced the opening
of a mark), it lists every key as moved: larger, never out of order.

Threads: a threaded server writes from several threads while a hand-over takes the
changes from another. While a mark is open, a write changes the dict and records its
key under one lock per dict, and taking changes and moving or closing a mark hold it
too, so a take sees every write either whole or not at all. A write that finds no mark
open takes no lock; should a mark open before it looks again, it records its key after
the change, so it is in the changes taken or in the next ones, never lost. The lock
is re-entrant: a value's ``__del__`` run by a write may write to the same dict.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import compress, filterfalse, islice, repeat
from operator import is_
from typing import Any, TypeVar, cast, overload

__all__ = ["ChangeMark", "Changes", "TrackedDict"]

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()
_get = dict.get
_setitem = dict.__setitem__
_delitem = dict.__delitem__


class ChangeMark:
    """A point in a :class:`TrackedDict`'s history, opened by :meth:`TrackedDict.mark`.

    Attributes:
        seq: the sequence number of the last write before the point.
        count: how many distinct keys were written since the point.
        inserted: how many keys present now were inserted since the point.
    """

    __slots__ = ("closed", "count", "inserted", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.count = 0
        self.inserted = 0
        self.closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.count} changed"
        return f"<ChangeMark seq={self.seq} {state}>"


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a :class:`TrackedDict` since a mark, as it stands now.

    Attributes:
        set: the keys present now that were written since the mark, with their values
            now (a key written twice appears once, with its last value): first the
            keys updated in place, then the ``moved`` keys inserted since the mark, in
            the dict's order.
        deleted: the keys written since the mark that are absent now (deleted, or
            inserted and deleted again: removing an absent key is harmless).
        moved: how many of the last entries of ``set`` go to the end of the dict, in
            their order (a key there already is moved, not updated in place).
    """

    set: dict[Any, Any]
    deleted: tuple[Any, ...]
    moved: int = 0

    def __len__(self) -> int:
        return len(self.set) + len(self.deleted)


# How a recorded write changed the dict's keys. A value replaced in place has no kind:
# __setitem__ records it inline, the hot write.
_INSERTED, _REMOVED, _UNKNOWN = range(1, 4)


class TrackedDict(dict[K, V]):
    """A ``dict`` that records, in O(1) per write, which keys were written.

    Use it where a component keeps a large keyed collection, so that a hand-over can
    send only what changed (see ``docs/precopy.md``). Reads are those of ``dict``
    itself. Writes through every method of ``dict`` are recorded: ``d[k] = v``,
    ``del d[k]``, ``pop``, ``popitem``, ``setdefault`` (when it inserts), ``update``,
    ``|=`` and ``clear``. The changes keep the key order: a key moved to the end
    (``d[k] = d.pop(k)``, an LRU's touch) is moved there by the receiver too. Tracking
    costs nothing until :meth:`mark` opens a mark.

    Copies (``copy()``, :mod:`copy`, :mod:`pickle`) are new, unwatched ``TrackedDict``
    objects with the same items: marks and logs belong to one object.

    Only writes to the dict are recorded: a value changed in place (``d[k]["n"] += 1``)
    is not, so write the key again (``d[k] = v``) for the change to count. Writers in
    several threads may go on while changes are taken (see the module docstring).
    """

    __slots__ = ("_inserted", "_lock", "_log", "_marks", "_seq")

    _lock: threading.RLock
    _log: dict[Any, int] | None
    _inserted: dict[Any, int] | None
    _marks: list[ChangeMark]
    _seq: int

    @overload
    def __init__(self) -> None: ...
    @overload
    def __init__(self: TrackedDict[str, V], **kwargs: V) -> None: ...
    @overload
    def __init__(self, items: Mapping[K, V], /) -> None: ...
    @overload
    def __init__(self, items: Iterable[tuple[K, V]], /) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.RLock()
        self._log = None
        self._inserted = None
        self._marks = []
        self._seq = 0

    # --- recording -------------------------------------------------------------------
    #
    # While a mark is open, every write changes the dict and records the key under the
    # lock, so a take (which holds it too) never sees a change without its record.
    # Without a mark, a write takes no lock; it looks for a mark again after its
    # change, and if one opened meanwhile it records the key then: the write is in the
    # changes taken or in the next ones, never lost (whether it inserted the key is
    # unknown then, which the take's check of the order catches).

    def _record(self, key: object, change: int) -> None:
        """Record a write of ``key`` (the lock is held and a log open)."""
        log = self._log
        inserted = self._inserted
        assert log is not None and inserted is not None
        seq = self._seq = self._seq + 1
        last = log.pop(key, 0)
        log[key] = seq
        for mark in self._marks:
            if last <= mark.seq:
                mark.count += 1
        if change == _INSERTED:
            before = inserted.pop(key, 0)
            inserted[key] = seq
            for mark in self._marks:
                if before <= mark.seq:
                    mark.inserted += 1
        elif change == _REMOVED or (change == _UNKNOWN and not dict.__contains__(self, key)):
            before = inserted.pop(key, 0)
            for mark in self._marks:
                if before > mark.seq:
                    mark.inserted -= 1

    def _note(self, key: object, change: int) -> None:
        """Record a write of ``key`` made without the lock, if a mark is open now."""
        with self._lock:
            if self._log is not None:
                self._record(key, change)

    def __setitem__(self, key: K, value: V) -> None:
        if self._marks:
            with self._lock:
                log = self._log
                if log is not None:
                    if not dict.__contains__(self, key):
                        _setitem(self, key, value)
                        self._record(key, _INSERTED)
                        return
                    _setitem(self, key, value)
                    # A value replaced in place, the hot write: _record inlined.
                    seq = self._seq = self._seq + 1
                    last = log.pop(key, 0)
                    log[key] = seq
                    for mark in self._marks:
                        if last <= mark.seq:
                            mark.count += 1
                    return
        _setitem(self, key, value)
        if self._marks:
            self._note(key, _UNKNOWN)

    def __delitem__(self, key: K) -> None:
        if self._marks:
            with self._lock:
                if self._log is not None:
                    _delitem(self, key)
                    self._record(key, _REMOVED)
                    return
        _delitem(self, key)
        if self._marks:
            self._note(key, _UNKNOWN)

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, default: V, /) -> V: ...
    @overload
    def pop(self, key: K, default: Any, /) -> Any: ...

    def pop(self, key: Any, default: Any = _MISSING, /) -> Any:
        if self._marks:
            with self._lock:
                if self._log is not None:
                    value = dict.pop(self, key, _MISSING)
                    if value is not _MISSING:
                        self._record(key, _REMOVED)
                        return value
                    if default is _MISSING:
                        raise KeyError(key)
                    return default
        value = dict.pop(self, key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        if self._marks:
            self._note(key, _UNKNOWN)
        return value

    def popitem(self) -> tuple[K, V]:
        if self._marks:
            with self._lock:
                if self._log is not None:
                    item = dict.popitem(self)
                    self._record(item[0], _REMOVED)
                    return item
        item = dict.popitem(self)
        if self._marks:
            self._note(item[0], _UNKNOWN)
        return item

    def setdefault(self, key: K, default: Any = None, /) -> Any:
        if self._marks:
            with self._lock:
                if self._log is not None:
                    if dict.__contains__(self, key):
                        return dict.__getitem__(self, key)
                    _setitem(self, key, default)
                    self._record(key, _INSERTED)
                    return default
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        _setitem(self, key, default)
        if self._marks:
            self._note(key, _UNKNOWN)
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        if self._marks:
            for key, value in _items(*args, **kwargs):
                self[key] = value
            return
        source = args[0] if len(args) == 1 and not kwargs else None
        if isinstance(source, dict):
            dict.update(self, source)
            keys: Iterable[Any] = source
        else:  # an iterator is read once: its items are kept to record their keys
            items = list(_items(*args, **kwargs))
            dict.update(self, items)
            keys = (key for key, _ in items)
        if self._marks:  # a mark opened meanwhile: record the keys, as a write does
            for key in keys:
                self._note(key, _UNKNOWN)

    def __ior__(self, other: Any) -> TrackedDict[K, V]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        if self._marks:
            with self._lock:
                if self._log is not None:
                    keys = list(self)
                    dict.clear(self)
                    for key in keys:
                        self._record(key, _REMOVED)
                    return
        keys = list(self)
        dict.clear(self)
        if self._marks:
            for key in keys:
                self._note(key, _UNKNOWN)

    # --- marks -----------------------------------------------------------------------

    def mark(self) -> ChangeMark:
        """Open a mark here: later writes are recorded until it is closed.

        Each reader (a hand-over, a checkpointer) opens its own mark.
        """
        with self._lock:
            if self._log is None:
                self._log = {}
                self._inserted = {}
            mark = ChangeMark(self._seq)
            self._marks = [*self._marks, mark]
        return mark

    def pending(self, mark: ChangeMark) -> int:
        """How many distinct keys were written since ``mark``; O(1)."""
        self._check(mark)
        return mark.count

    def writes_since(self, mark: ChangeMark) -> int:
        """How many writes were recorded since ``mark`` (a key written twice counts
        twice; a ``clear`` once per key); O(1). Counted from the mark's point: a mark
        moved by a take counts from there."""
        self._check(mark)
        return self._seq - mark.seq

    def changed_keys(self, mark: ChangeMark) -> list[Any]:
        """The keys written since ``mark``, most recent first, each once."""
        with self._lock:
            return self._changed_keys(mark)

    def written_since(self, mark: ChangeMark, key: object) -> bool:
        """Whether ``key`` was written after ``mark``'s point; O(1)."""
        with self._lock:
            self._check(mark)
            log = self._log
            return log is not None and log.get(key, 0) > mark.seq

    def changes_since(self, mark: ChangeMark) -> Changes:
        """What changed since ``mark``: keys set (with their values now) and deleted.

        Walks only the keys written since the mark.
        """
        with self._lock:
            return self._changes(mark)

    def take_changes(self, mark: ChangeMark, *, limit: int | None = None) -> Changes:
        """:meth:`changes_since` ``mark``, and move the mark to now, in one step (no
        write made meanwhile, in any thread, is lost between the two).

        With ``limit``, at most that many keys: the ones written longest ago, and the
        mark moves just past the last of them, so the keys left out (and any write
        made after this call) are in the next changes taken. The lock is held for
        the keys taken, not for all that changed. (A take may hold more keys only when
        the oldest key inserted since the mark was written again since: it goes with
        the first key written after its insertion, to keep the order.)
        """
        with self._lock:
            if limit is None or mark.count <= limit:
                changes = self._changes(mark)
                self._advance(mark)
            else:
                changes = self._take_oldest(mark, max(limit, 0))
        return changes

    def advance(self, mark: ChangeMark) -> None:
        """Move ``mark`` to now: later calls see only writes made after this one."""
        with self._lock:
            self._advance(mark)

    def close(self, mark: ChangeMark) -> None:
        """Close ``mark``; with no mark left open, the log is dropped. Idempotent."""
        with self._lock:
            if mark.closed:
                return
            mark.closed = True
            self._marks = [m for m in self._marks if m is not mark]
            self._forget()

    @property
    def tracking(self) -> bool:
        """Whether a mark is open (writes are being recorded)."""
        return bool(self._marks)

    # The helpers below run with the lock held.

    def _check(self, mark: ChangeMark) -> None:
        if mark.closed or not any(m is mark for m in self._marks):
            raise ValueError(f"{mark!r} is not an open mark of this TrackedDict")

    def _changed_keys(self, mark: ChangeMark) -> list[Any]:
        keys = self._keys_since(mark)
        keys.reverse()
        return keys

    def _keys_since(self, mark: ChangeMark, limit: int | None = None) -> list[Any]:
        """The keys written since ``mark``, oldest first (at most ``limit`` of them).

        The log is in order of sequence numbers and holds each key once, so the keys
        written since the mark are its last ``mark.count`` entries: they are cut out by
        C-level iteration, with no Python code and no object made per key (a take of
        most of a large dict must not cost more per key than a full snapshot does per
        entry). The two entries at the cut are checked against the mark's sequence
        number; should they disagree with the count, the log is walked instead.
        """
        self._check(mark)
        log = self._log
        assert log is not None
        count = mark.count
        start = len(log) - count
        if start < 0:
            return self._walk_keys_since(mark, limit)
        before: Any = _MISSING
        if limit is None or limit >= count:
            keys = list(islice(reversed(log), count + 1))
            if len(keys) > count:
                before = keys.pop()
            keys.reverse()
        else:
            keys = list(islice(log, max(start - 1, 0), start + limit))
            if start > 0 and keys:
                before = keys[0]
                del keys[0]
        since = mark.seq
        if (not keys or log[keys[0]] > since) and (before is _MISSING or log[before] <= since):
            return keys
        return self._walk_keys_since(mark, limit)

    def _walk_keys_since(self, mark: ChangeMark, limit: int | None) -> list[Any]:
        """:meth:`_keys_since` by a walk of the log, whatever the mark's count says
        (the count is set right on the way)."""
        log = self._log
        assert log is not None
        keys = _entries_after(log, mark.seq)
        mark.count = len(keys)
        return keys if limit is None else keys[:limit]

    def _changes(self, mark: ChangeMark) -> Changes:
        keys = self._keys_since(mark)
        moved = self._inserted_since(mark)
        if moved is None:
            return self._every_key_moved(keys)
        return self._changes_of(keys, moved)

    def _inserted_since(self, mark: ChangeMark) -> list[Any] | None:
        """The keys present now that were inserted since ``mark``, oldest first, or
        ``None`` when they are not the dict's own tail (a write that raced the
        opening of a mark inserted a key unrecorded).

        Cut out of the insertion log by its count, as :meth:`_keys_since` does.
        """
        inserted = self._inserted
        assert inserted is not None
        count = mark.inserted
        keys = list(islice(reversed(inserted), count + 1)) if count <= len(inserted) else []
        before = keys.pop() if len(keys) > count else _MISSING
        keys.reverse()
        since = mark.seq
        if (
            len(keys) != count
            or (keys and inserted[keys[0]] <= since)
            or (before is not _MISSING and inserted[before] > since)
        ):
            keys = _entries_after(inserted, since)
            mark.inserted = len(keys)
        tail = list(islice(reversed(self), len(keys)))
        tail.reverse()
        return keys if tail == keys else None

    def _changes_of(self, keys: list[Any], moved: list[Any]) -> Changes:
        """The changes of ``keys`` (oldest first) with their values now: those in
        ``moved`` (keys inserted since the mark, in the dict's order) last.

        Built by C-level iteration too: no tuple or other container per key, so that
        taking the changes of a large part of the state neither runs Python code per
        key nor sets off the garbage collector (whose full collections walk every
        object of the process) while the writers wait.
        """
        if moved:
            keys = list(filterfalse(set(moved).__contains__, keys))
        values = map(_get, repeat(self), keys, repeat(_MISSING))
        present = dict(zip(keys, values, strict=True))
        deleted = tuple(compress(keys, map(is_, present.values(), repeat(_MISSING))))
        for key in deleted:
            del present[key]
        present.update(zip(moved, map(_get, repeat(self), moved, repeat(_MISSING)), strict=True))
        if moved and any(
            map(is_, islice(reversed(present.values()), len(moved)), repeat(_MISSING))
        ):
            # A write begun before a mark opened removed a key meanwhile.
            return self._every_key_moved([*keys, *moved])
        return Changes(present, deleted, len(moved))

    def _every_key_moved(self, keys: list[Any]) -> Changes:
        """The changes of ``keys`` with every key of the dict listed as moved, in its
        order: what a receiver needs to take the live order whatever it holds."""
        deleted = tuple(compress(keys, map(_absent, repeat(self), keys)))
        return Changes(dict(self), deleted, len(self))

    def _take_oldest(self, mark: ChangeMark, limit: int) -> Changes:
        """At most ``limit`` keys written since ``mark`` (fewer than its count), those
        written longest ago, with the mark moved just past them.

        A key inserted since the mark goes to the receiver's end, so the keys inserted
        before the cut go along, even those written again after it (an insertion comes
        before the key's last write): the keys moved are the head of those inserted
        since the mark, in the dict's order, and the rest follow in later takes. They
        count against ``limit``: the cut moves back until they fit, and only a take of
        a single key written may exceed it."""
        keys = self._keys_since(mark, limit)
        if not keys:
            return Changes({}, ())
        inserted = self._inserted_since(mark)
        if inserted is None:
            changes = self._every_key_moved(self._keys_since(mark))
            self._advance(mark)
            return changes
        log, insertions = self._log, self._inserted
        assert log is not None and insertions is not None
        insertion_seqs = list(map(insertions.__getitem__, inserted))
        taken = len(keys)
        while True:
            cut = log[keys[taken - 1]]
            moved = inserted[: bisect_right(insertion_seqs, cut)]
            later = sum(map(cut.__lt__, map(log.__getitem__, moved)))  # written after it
            if taken + later <= limit or taken == 1:
                break
            taken = max(1, min(taken - 1, limit - later))
        del keys[taken:]
        changes = self._changes_of(keys, moved)
        # Every key left out has a later sequence number than the last key taken, and
        # so has every write made after this call: both stay counted for the next take.
        mark.seq = cut
        mark.count -= len(keys)
        mark.inserted -= len(moved)
        self._forget()
        return changes

    def _advance(self, mark: ChangeMark) -> None:
        self._check(mark)
        mark.seq = self._seq
        mark.count = 0
        mark.inserted = 0
        self._forget()

    def _forget(self) -> None:
        """Drop log entries at or below the oldest open mark (the whole logs if none)."""
        if not self._marks:
            self._log = self._inserted = None
            return
        oldest = min(m.seq for m in self._marks)
        assert self._log is not None and self._inserted is not None
        self._log = _forget_head(self._log, oldest)
        self._inserted = _forget_head(self._inserted, oldest)

    # --- copies ----------------------------------------------------------------------

    def copy(self) -> TrackedDict[K, V]:
        """A new, unwatched ``TrackedDict`` with the same items."""
        return type(self)(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # Items only: marks and the log describe this object's history, not its value.
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


def _absent(mapping: dict[Any, Any], key: object) -> bool:
    return not dict.__contains__(mapping, key)


def _entries_after(log: dict[Any, int], since: int) -> list[Any]:
    """The keys of ``log`` (in order of its sequence numbers) after ``since``, oldest
    first, found by a walk back from its end."""
    keys = []
    for key in reversed(log):
        if log[key] <= since:
            break
        keys.append(key)
    keys.reverse()
    return keys


def _forget_head(log: dict[Any, int], oldest: int) -> dict[Any, int]:
    """``log`` (in order of its sequence numbers) without the entries at or below
    ``oldest``: changed in place, or a new empty log when all go."""
    if not log or log[next(iter(log))] > oldest:
        return log
    if log[next(reversed(log))] <= oldest:
        return {}
    # Drop the stale head in place: the cost is what is dropped, not what is kept
    # (a sliced take drops a few keys from the head of a long log, over and over).
    stale = []
    for key, seq in log.items():
        if seq > oldest:
            break
        stale.append(key)
    for key in stale:
        del log[key]
    return log


def _items(*args: Any, **kwargs: Any) -> Iterable[tuple[Any, Any]]:
    """The items ``dict.update`` would take from these arguments, in its order."""
    if len(args) > 1:
        raise TypeError(f"update expected at most 1 positional argument, got {len(args)}")
    if args:
        source = args[0]
        if isinstance(source, Mapping) or hasattr(source, "keys"):
            mapping = cast(Mapping[Any, Any], source)
            for key in mapping.keys():
                yield key, mapping[key]
        else:
            for pair in source:
                key, value = pair
                yield key, value
    yield from kwargs.items()
