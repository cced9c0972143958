"""Catching values changed in place without a write of their key.

A :class:`~statemigrate.TrackedDict` records writes of keys. A value changed in place
(``carts[cid].items.append(item)``) is no write, so a delta taken afterwards misses
the change, and a hand-over or an incremental checkpoint would lose it without a word.
Nothing cheap sees every such change, but a sample sees the habit: each time the
changes are taken, the first :data:`SAMPLE` records just written, and a random pool of
:data:`POOL` among all the records held (drawn when tracking begins or a full state is
taken, and renewed from those written since), are kept as digests of what they hold
(the fields a snapshot keeps, see ``_held``); the next time, those not written again
must still have the same digest. A caller that skips a take because no key was written
(an incremental checkpoint of an idle state) checks them all the same: a service that
only changes values in place writes no key at all. A service that changes its values
in place does so to many of its records, so the sample catches it within a few takes,
and the hand-over or checkpoint fails with :class:`~statemigrate.ChangeTrackingError`
instead of losing writes. A record of an immutable type (a ``str``, ``bytes``, a
number, a tuple of them) held by a ``TrackedDict`` itself is watched by its hash alone:
nothing can change it in place, only a write that bypassed the log, and its digest
would cost a walk of its whole text (tens of milliseconds for a string of a few MB,
with the writers held). It is a net, not a proof:
``statemigrate.testing.check_change_tracking`` is the test that shows a component
right.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import islice
from typing import Any

import pydantic

from statemigrate._errors import ChangeTrackingError
from statemigrate._model._paths import format_path

__all__ = ["POOL", "SAMPLE", "InPlaceWatch", "exact_check"]

SAMPLE = 16
"""Records watched per field among those a take just took (the first of them)."""

POOL = 128
"""Records watched per field besides those: a random sample of all the records, so
that a record written once and changed in place long after can be caught too."""


_SAMPLING: ContextVar[bool] = ContextVar("statemigrate_inplace_sampling", default=True)


@contextmanager
def exact_check() -> Iterator[None]:
    """Within it, no record is watched: for a caller that compares whole states itself
    (``statemigrate.testing.check_change_tracking``), whose report, the first path that
    differs with both values, says more than the sample's."""
    token = _SAMPLING.set(False)
    try:
        yield
    finally:
        _SAMPLING.reset(token)


class InPlaceWatch:
    """The records of one component watched from take to take, per record field."""

    def __init__(self, component: str, *, held_objects: bool = True) -> None:
        """A watch of nothing yet.

        Args:
            component: the component's name, for the errors.
            held_objects: the records read are the very objects the record fields
                hold (a ``TrackedDict``'s values), so that one of an immutable type
                cannot change in place and is not watched. False for records a
                component exports from a structure of its own (the records
                protocol): an ``int`` it computes changes with that structure,
                written or not.
        """
        self._component = component
        self._held_objects = held_objects
        self._watched: dict[str, dict[Any, bytes]] = {}
        self._taken: dict[str, int] = {}  # records taken per field, for the random pool
        self._random = random.Random()

    def check(
        self,
        field: str,
        written: Collection[Any],
        read: Callable[[list[Any]], Mapping[Any, Any]],
        written_meanwhile: Callable[[Any], bool],
    ) -> None:
        """Check the records of ``field`` watched since the last take.

        Args:
            field: the record field.
            written: the keys written (set or deleted) since the last take.
            read: the current records of some keys (those that exist).
            written_meanwhile: whether a key was written after the take began: a
                write changes the dict before it records its key, so a value seen
                changed may be a write on its way into the log.

        Raises:
            ChangeTrackingError: a watched record's value changed, but its key was not
                written.
        """
        if not _SAMPLING.get():
            return
        watched = self._watched.setdefault(field, {})
        for key in [key for key in watched if key in written]:
            del watched[key]  # written again: the delta carries it, and its digest is old
        if not watched:
            return
        current = read(list(watched))
        for key, before in list(watched.items()):
            value = current.get(key, _GONE)
            digest = None if value is _GONE else self._digest(value)
            if digest is None:
                del watched[key]  # gone (a deletion, which the log records) or unreadable
            elif digest != before and not written_meanwhile(key):
                raise ChangeTrackingError(
                    self._component,
                    format_path([field, key]),
                    "its value changed, but its key was not written since the last delta",
                )

    def watch(self, field: str, records: Mapping[Any, Any]) -> None:
        """Watch the first :data:`SAMPLE` records of ``records`` (a take's), and let
        each of the others into the random pool with the chance a uniform sample of
        every record taken so far gives it."""
        if not _SAMPLING.get():
            return
        watched = self._watched.setdefault(field, {})
        taken = self._taken.get(field, 0)
        for index, (key, value) in enumerate(records.items()):
            taken += 1
            if index >= SAMPLE and self._random.random() * taken >= POOL:
                continue
            digest = self._digest(value)
            if digest is None:
                continue
            if key not in watched and len(watched) >= SAMPLE + POOL:
                # Room made by a record chosen at random: the pool stays a sample of all.
                del watched[next(islice(watched, self._random.randrange(len(watched)), None))]
            watched[key] = digest
        self._taken[field] = taken

    def seed(self, field: str, records: Mapping[Any, Any], *, held: int) -> None:
        """Watch ``records`` (a random sample of the ``held`` records of ``field``, the
        pool to start from), replacing what was watched of that field."""
        watched = self._watched[field] = {}
        if not _SAMPLING.get():
            return
        for key, value in records.items():
            digest = self._digest(value)
            if digest is not None:
                watched[key] = digest
        self._taken[field] = held

    def _digest(self, value: object) -> bytes | None:
        """The digest to watch ``value`` by; None when it cannot be had. A held object
        that nothing can change in place is watched by its hash, which a ``str`` or
        ``bytes`` computes once and keeps: only a write that bypassed the log
        (``dict.__setitem__`` on the tracked dict) can change it, and its full digest
        would cost a walk of its whole text with the writers held."""
        if self._held_objects and _immutable(value, 0):
            return b"hash:" + hash(value).to_bytes(8, "little", signed=True)
        return _digest(value)

    def forget(self) -> None:
        """Watch nothing (the changes were dropped, or a full state taken instead)."""
        self._watched.clear()
        self._taken.clear()


_GONE: Any = object()

_IMMUTABLE_LEAVES = (str, bytes, int, float, complex, bool, type(None))


def _immutable(value: object, depth: int) -> bool:
    """Whether nothing can change ``value`` in place: a ``str``, ``bytes``, a number,
    ``None``, or a tuple or frozenset of such (exactly these classes: a subclass may
    carry attributes that change)."""
    if type(value) in _IMMUTABLE_LEAVES:
        return True
    if isinstance(value, tuple | frozenset) and type(value) in (tuple, frozenset):
        return depth < _DEEPEST and all(_immutable(item, depth + 1) for item in value)
    return False


def _digest(value: object) -> bytes | None:
    """A digest of what ``value`` holds; None when it cannot be had (never watched)."""
    try:
        text = repr(_held(value, 0))
    except Exception:
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_DEEPEST = 64
"""How far into a value the digest looks; what lies deeper is not watched."""


def _held(value: object, depth: int) -> object:
    """What ``value`` holds, as the snapshot keeps it: a model's or a dataclass's fields
    (not its computed fields, which may change with the clock and are not kept), the
    items of containers (a set's in a stable order), leaves by their ``repr``. An
    object of another class counts as its ``repr``, by default its identity: a change
    inside it goes unseen rather than being taken for one."""
    if depth > _DEEPEST:
        return "..."
    depth += 1
    if isinstance(value, pydantic.BaseModel):
        return {name: _held(getattr(value, name), depth) for name in type(value).model_fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _held(getattr(value, f.name), depth) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return [(repr(key), _held(item, depth)) for key, item in value.items()]
    if isinstance(value, list | tuple):
        return [_held(item, depth) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(repr(_held(item, depth)) for item in value)
    return repr(value)
