"""Catching values changed in place without a write of their key.

A :class:`~statemigrate.TrackedDict` records writes of keys. A value changed in place
(``carts[cid].items.append(item)``) is no write, so a delta taken afterwards misses
the change, and a hand-over or an incremental checkpoint would lose it without a
word. Nothing cheap sees every such change, but a small sample sees the habit: each
time the changes are taken, a few of the records just written are kept as digests of
what they hold (the fields a snapshot keeps, see ``_held``), and the next time, those
not written again must still have the same digest. A service that changes its values
in place does so to most of the records it touches, so a sample of :data:`SAMPLE`
catches it within a round or two, and the hand-over or checkpoint fails with
:class:`~statemigrate.ChangeTrackingError` instead of losing writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Collection, Mapping
from itertools import islice
from typing import Any

import pydantic

from statemigrate._errors import ChangeTrackingError
from statemigrate._model._compare import format_path

__all__ = ["SAMPLE", "InPlaceWatch"]

SAMPLE = 16
"""Records watched per field from one take of the changes to the next."""


class InPlaceWatch:
    """The records of one component watched since the last take, per record field."""

    def __init__(self, component: str) -> None:
        self._component = component
        self._watched: dict[str, dict[Any, bytes]] = {}

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
        watched = self._watched.pop(field, {})
        unwritten = [key for key in watched if key not in written]
        if not unwritten:
            return
        current = read(unwritten)
        for key in unwritten:
            if key not in current:
                continue  # gone since: a deletion, which the log does record
            digest = _digest(current[key])
            if digest is not None and digest != watched[key] and not written_meanwhile(key):
                raise ChangeTrackingError(
                    self._component,
                    format_path([field, key]),
                    "its value changed, but its key was not written since the last delta",
                )

    def watch(self, field: str, records: Mapping[Any, Any]) -> None:
        """Keep digests of the first :data:`SAMPLE` records of ``records`` (a take's)."""
        digests = {}
        for key, value in islice(records.items(), SAMPLE):
            digest = _digest(value)
            if digest is not None:
                digests[key] = digest
        self._watched[field] = digests

    def forget(self) -> None:
        """Watch nothing (the changes were dropped, or a full state taken instead)."""
        self._watched.clear()


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
