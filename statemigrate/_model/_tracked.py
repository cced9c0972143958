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

Threads: a threaded server writes from several threads while a hand-over takes the
changes from another. While a mark is open, recording a write, taking changes and
moving or closing a mark hold one lock per dict; every write changes the dict before it
records its key, so a write is either in the changes taken or in the next ones, never
lost. Without an open mark no lock is taken.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import compress, islice, repeat
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
    """

    __slots__ = ("closed", "count", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.count = 0
        self.closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.count} changed"
        return f"<ChangeMark seq={self.seq} {state}>"


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a :class:`TrackedDict` since a mark, as it stands now.

    Attributes:
        set: the keys present now that were written since the mark, with their values
            now (a key written twice appears once, with its last value).
        deleted: the keys written since the mark that are absent now (deleted, or
            inserted and deleted again: removing an absent key is harmless).
    """

    set: dict[Any, Any]
    deleted: tuple[Any, ...]

    def __len__(self) -> int:
        return len(self.set) + len(self.deleted)


class TrackedDict(dict[K, V]):
    """A ``dict`` that records, in O(1) per write, which keys were written.

    Use it where a component keeps a large keyed collection, so that a hand-over can
    send only what changed (see ``docs/precopy.md``). Reads are those of ``dict``
    itself. Writes through every method of ``dict`` are recorded: ``d[k] = v``,
    ``del d[k]``, ``pop``, ``popitem``, ``setdefault`` (when it inserts), ``update``,
    ``|=`` and ``clear``; a ``move_to_end``-like reorder (``d[k] = d.pop(k)``) records
    the key like any write. Tracking costs nothing until :meth:`mark` opens a mark.

    Copies (``copy()``, :mod:`copy`, :mod:`pickle`) are new, unwatched ``TrackedDict``
    objects with the same items: marks and logs belong to one object.

    Only writes to the dict are recorded: a value changed in place (``d[k]["n"] += 1``)
    is not, so write the key again (``d[k] = v``) for the change to count. Writers in
    several threads may go on while changes are taken (see the module docstring).
    """

    __slots__ = ("_lock", "_log", "_marks", "_seq")

    _lock: threading.Lock
    _log: dict[Any, int] | None
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
        self._lock = threading.Lock()
        self._log = None
        self._marks = []
        self._seq = 0

    # --- recording -------------------------------------------------------------------
    #
    # Every write changes the dict first and records the key after. A reader that
    # takes the changes in between misses nothing: either the key is in the log
    # already (from an earlier write) and it reads the new value, or the record comes
    # after its mark and goes into the next changes. The log and the marks change
    # under a lock, so writers in several threads and a reader taking changes
    # meanwhile (a hand-over's rounds) keep them consistent; the lock is only taken
    # while a mark is open.

    def _note(self, key: object) -> None:
        """Record a write of ``key``."""
        with self._lock:
            log = self._log
            if log is None:  # the last mark was closed meanwhile
                return
            seq = self._seq = self._seq + 1
            last = log.pop(key, 0)
            log[key] = seq
            for mark in self._marks:
                if last <= mark.seq:
                    mark.count += 1

    # The two hot writes inline _note: the call would cost as much as the rest.

    def __setitem__(self, key: K, value: V) -> None:
        _setitem(self, key, value)
        if self._marks:
            with self._lock:
                log = self._log
                if log is not None:
                    seq = self._seq = self._seq + 1
                    last = log.pop(key, 0)
                    log[key] = seq
                    for mark in self._marks:
                        if last <= mark.seq:
                            mark.count += 1

    def __delitem__(self, key: K) -> None:
        _delitem(self, key)
        if self._marks:
            with self._lock:
                log = self._log
                if log is not None:
                    seq = self._seq = self._seq + 1
                    last = log.pop(key, 0)
                    log[key] = seq
                    for mark in self._marks:
                        if last <= mark.seq:
                            mark.count += 1

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, default: V, /) -> V: ...
    @overload
    def pop(self, key: K, default: Any, /) -> Any: ...

    def pop(self, key: Any, default: Any = _MISSING, /) -> Any:
        if default is _MISSING:
            value = dict.pop(self, key)
        else:
            value = dict.pop(self, key, _MISSING)
            if value is _MISSING:
                return default
        if self._marks:
            self._note(key)
        return value

    def popitem(self) -> tuple[K, V]:
        item = dict.popitem(self)
        if self._marks:
            self._note(item[0])
        return item

    def setdefault(self, key: K, default: Any = None, /) -> Any:
        if key in self:
            return dict.__getitem__(self, key)
        dict.__setitem__(self, key, default)
        if self._marks:
            self._note(key)
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        if not self._marks:
            dict.update(self, *args, **kwargs)
            return
        for key, value in _items(*args, **kwargs):
            self[key] = value

    def __ior__(self, other: Any) -> TrackedDict[K, V]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        keys = list(self) if self._marks else ()
        dict.clear(self)
        for key in keys:
            self._note(key)

    # --- marks -----------------------------------------------------------------------

    def mark(self) -> ChangeMark:
        """Open a mark here: later writes are recorded until it is closed.

        Each reader (a hand-over, a checkpointer) opens its own mark.
        """
        with self._lock:
            if self._log is None:
                self._log = {}
            mark = ChangeMark(self._seq)
            self._marks = [*self._marks, mark]
        return mark

    def pending(self, mark: ChangeMark) -> int:
        """How many distinct keys were written since ``mark``; O(1)."""
        self._check(mark)
        return mark.count

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
        the keys taken, not for all that changed.
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
        since = mark.seq
        keys = []
        for key in reversed(log):
            if log[key] <= since:
                break
            keys.append(key)
        keys.reverse()
        mark.count = len(keys)
        return keys if limit is None else keys[:limit]

    def _changes(self, mark: ChangeMark) -> Changes:
        return self._changes_of(self._keys_since(mark))

    def _changes_of(self, keys: list[Any]) -> Changes:
        """The changes of ``keys`` (oldest first), with their values now.

        Built by C-level iteration too: no tuple or other container per key, so that
        taking the changes of a large part of the state neither runs Python code per
        key nor sets off the garbage collector (whose full collections walk every
        object of the process) while the writers wait.
        """
        values = map(_get, repeat(self), keys, repeat(_MISSING))
        present = dict(zip(keys, values, strict=True))
        deleted = tuple(compress(keys, map(is_, present.values(), repeat(_MISSING))))
        for key in deleted:
            del present[key]
        return Changes(present, deleted)

    def _take_oldest(self, mark: ChangeMark, limit: int) -> Changes:
        """The ``limit`` keys written longest ago since ``mark`` (fewer than its
        count), with the mark moved just past them."""
        keys = self._keys_since(mark, limit)
        if not keys:
            return Changes({}, ())
        changes = self._changes_of(keys)
        log = self._log
        assert log is not None
        # Every key left out has a later sequence number than the last key taken, and
        # so has every write made after this call: both stay counted for the next take.
        mark.seq = log[keys[-1]]
        mark.count -= len(keys)
        self._forget()
        return changes

    def _advance(self, mark: ChangeMark) -> None:
        self._check(mark)
        mark.seq = self._seq
        mark.count = 0
        self._forget()

    def _forget(self) -> None:
        """Drop log entries at or below the oldest open mark (the whole log if none)."""
        if not self._marks:
            self._log = None
            return
        log = self._log
        assert log is not None
        oldest = min(m.seq for m in self._marks)
        if not log or log[next(iter(log))] > oldest:
            return
        if log[next(reversed(log))] <= oldest:
            self._log = {}
            return
        # Drop the stale head in place: the cost is what is dropped, not what is kept
        # (a sliced take drops a few keys from the head of a long log, over and over).
        stale = []
        for key, seq in log.items():
            if seq > oldest:
                break
            stale.append(key)
        for key in stale:
            del log[key]

    # --- copies ----------------------------------------------------------------------

    def copy(self) -> TrackedDict[K, V]:
        """A new, unwatched ``TrackedDict`` with the same items."""
        return type(self)(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # Items only: marks and the log describe this object's history, not its value.
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


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
