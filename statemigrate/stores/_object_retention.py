"""Retention: which generations an object store keeps, and deleting the others.

After each commit the generation objects older than the ``keep`` newest are deleted
(:func:`sweep_generations`), but those the pointer records as unrestored: generations a
failed start asked to keep out of retention's reach, at most ``MAX_UNRESTORED`` of them
(:func:`kept_generations`), until they are let go (:func:`forget_unrestored`).
Committing is ``_object``'s business.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from statemigrate._errors import StoreConflictError, StoreError
from statemigrate.stores._object_backend import Backend, Refused
from statemigrate.stores._object_generation import Target
from statemigrate.stores._object_pointer import (
    GENERATIONS,
    MAX_UNRESTORED,
    Entry,
    Kept,
    Pointer,
    encode_pointer,
    generation_of,
)
from statemigrate.stores._object_pointer_io import POINTER, existing_pointer, read_pointer
from statemigrate.stores._object_unplaced import listed_as_kept

__all__ = [
    "forget_unrestored",
    "kept_generations",
    "recorded_with_digest",
    "say_kept",
    "sweep_generations",
    "with_pending",
]

_log = logging.getLogger("statemigrate.stores")


def kept_generations(
    base: Pointer | None,
    listed: list[Target],
    *,
    unrestored: Entry | None,
    keep_latest: bool,
    location: str,
    unplaced: Sequence[Kept] = (),
) -> list[Kept]:
    """The generations the next pointer records as unrestored: those the pointer
    keeps already (with no pointer, the ``unplaced`` objects found without one), and
    those a failed start asked to keep (``unrestored``, a known generation, or
    ``keep_latest``, the store unreachable then).

    Asked to keep "the latest" (the start could not read the store, so it cannot
    know which generation was current, nor whether that one is intact), these are
    the pointer's current and previous generations; with no pointer, the newest
    generation object listed, whose digest is then unknown. Past
    ``MAX_UNRESTORED`` the newest kept is replaced: the oldest is the state from
    before the trouble began.
    """
    kept = list(unplaced) if base is None else list(base.unrestored)
    new: list[Entry | Kept] = []
    if unrestored is not None:
        new = [unrestored]
    elif keep_latest and base is not None:
        new = [entry for entry in (base.previous, base.current) if entry is not None]
    elif keep_latest and listed:
        newest = max(listed, key=lambda target: target.generation)
        new = [listed_as_kept(newest)]
    for entry in new:
        if any(known.object == entry.object for known in kept):
            continue
        if len(kept) >= MAX_UNRESTORED:
            _log.warning(
                "%s keeps %d unrestored generations already: generation %d replaces %d"
                " (forget_unrestored() lets them go)",
                location,
                len(kept),
                entry.generation,
                kept[-1].generation,
            )
            kept.pop()
        kept.append(Kept.model_validate(entry.model_dump()))
    return kept


def sweep_generations(
    backend: Backend, generation: int, *, keep: int, spare: set[str], location: str
) -> None:
    """Delete the objects of generations older than the ``keep`` newest ones, but
    those named in ``spare`` (the pointer's unrestored generations).

    The commit has succeeded by then: a failure here is logged, and the next
    commit's sweep removes what this one left.
    """
    limit = generation - keep
    if limit < 1:
        return
    try:
        names = backend.list_names(GENERATIONS)
        old = [
            name
            for name in names
            if name not in spare
            and (number := generation_of(name)) is not None
            and number <= limit
        ]
        backend.delete(old)
    except StoreError as exc:
        _log.warning("could not delete old generations of %s: %s", location, exc)


def recorded_with_digest(
    backend: Backend, digest: str
) -> tuple[Entry | None, tuple[int, ...] | None]:
    """The current or previous generation whose snapshot has the xxh3-128 ``digest``
    (the one a failed start read), or ``None``: none has, or the pointer cannot be
    read (the next commit then keeps whatever is latest); and the generations the
    pointer keeps as unrestored already (``None`` when it cannot be read)."""
    try:
        found = read_pointer(backend)
    except StoreError:
        return None, None
    if found is None:
        return None, ()
    pointer = found[0]
    recorded = tuple(kept.generation for kept in pointer.unrestored)
    for entry in (pointer.current, pointer.previous):
        if entry is not None and entry.xxh3_128 == digest:
            return entry, recorded
    return None, recorded


def with_pending(recorded: tuple[int, ...], pending: Entry) -> tuple[int, ...]:
    """The generations the next commit records as unrestored, as :func:`kept_generations`
    makes them: ``recorded`` (the pointer's) and ``pending``, the generation a failed
    start asked to keep, which replaces the newest past ``MAX_UNRESTORED``."""
    if pending.generation in recorded:
        return recorded
    if len(recorded) >= MAX_UNRESTORED:
        recorded = recorded[:-1]
    return (*recorded, pending.generation)


def forget_unrestored(backend: Backend) -> list[int]:
    """Swap the pointer for one that records no unrestored generation; the next
    commit's retention deletes their objects. Returns the generations let go, oldest
    first.

    Raises:
        StoreConflictError: another writer committed meanwhile.
        StoreError: there is no pointer, it is damaged, or a request failed.
    """
    found = read_pointer(backend)
    if found is None:
        existing_pointer(backend)  # raises, naming what is there instead
        return []
    pointer, version = found
    if not pointer.unrestored:
        return []
    trimmed = pointer.model_copy(update={"unrestored": []})
    try:
        backend.swap(POINTER, encode_pointer(trimmed), version)
    except Refused as exc:
        raise StoreConflictError(
            backend.where(POINTER), generation=pointer.current.generation
        ) from exc
    return sorted(kept.generation for kept in pointer.unrestored)


def say_kept(kept: Sequence[Kept], location: str) -> None:
    """Log, at WARNING, that a commit's pointer keeps ``kept`` as unrestored."""
    numbers = ", ".join(str(entry.generation) for entry in kept)
    which = f"generation {numbers}" if len(kept) == 1 else f"generations {numbers}"
    _log.warning(
        "%s of %s kept as unrestored: retention never deletes %s",
        which,
        location,
        "it" if len(kept) == 1 else "them",
    )
