"""The pointer of an :class:`~statemigrate.stores.ObjectStore` read and swapped through
its backend: read, or the error that says why there is none to read, and a
compare-and-swap of it that did not plainly succeed decided by reading it back.

What the pointer holds, and its encoding, are :mod:`._object_pointer`'s; this module
makes its requests.
"""

from __future__ import annotations

import errno
import logging

from statemigrate._errors import StoreConflictError, StoreError
from statemigrate.stores._object_backend import (
    Backend,
    NotRegularFile,
    Oversized,
    Refused,
    Version,
)
from statemigrate.stores._object_generation import Target
from statemigrate.stores._object_pointer import (
    GENERATIONS,
    MAX_POINTER_SIZE,
    DamagedPointerError,
    Entry,
    Pointer,
    decode_pointer,
    generation_of,
)

__all__ = [
    "POINTER",
    "existing_pointer",
    "listed_generations",
    "previous_entry",
    "read_pointer",
    "settle",
]

_log = logging.getLogger("statemigrate.stores")

POINTER = "current"


# -- reading -----------------------------------------------------------------------


def read_pointer(backend: Backend) -> tuple[Pointer, Version] | None:
    where = backend.where(POINTER)
    try:
        try:
            found = backend.get_small(POINTER, limit=MAX_POINTER_SIZE)
        except Oversized as exc:
            reason = f"{exc.size} bytes, more than a pointer can be ({exc.limit})"
            raise DamagedPointerError(where, reason) from exc
        except NotRegularFile as exc:
            # Not ours, as a pointer of the wrong size is not: listing and URL#N go on.
            raise DamagedPointerError(where, f"{exc.what}, not a regular file") from exc
        if found is None:
            return None
        data, version = found
        return decode_pointer(data, where=where), version
    except StoreError as exc:
        # The pointer names current and previous alike: a start that could not
        # read it must not wait for it a second time to find the previous one.
        exc.previous_too = True
        raise


def existing_pointer(backend: Backend) -> Pointer:
    found = read_pointer(backend)
    if found is None:
        listed = listed_generations(backend)
        if listed:
            # Not "nothing committed": a start must not take this for an empty
            # store and go on cold without a word.
            numbers = sorted({target.generation for target in listed})
            shown = ", ".join(str(number) for number in numbers[-5:])
            raise StoreError(
                "open",
                backend.where(POINTER),
                f"is missing, but {len(listed)} generation objects are present"
                f" (generations {'..., ' if len(numbers) > 5 else ''}{shown}): restore"
                f" one with ref({numbers[-1]}) or URL#{numbers[-1]} and commit it; that"
                " commit keeps them all as unrestored, since the lost pointer may have"
                " recorded some (docs/stores.md, 'A missing pointer')",
                previous_too=True,
            )
        raise StoreError(
            "open",
            backend.where(POINTER),
            "no snapshot has been committed",
            errno=errno.ENOENT,
            previous_too=True,
        )
    return found[0]


def previous_entry(backend: Backend) -> Entry:
    previous = existing_pointer(backend).previous
    if previous is None:
        raise StoreError("open", backend.where(POINTER), "there is no previous snapshot")
    return previous


def listed_generations(backend: Backend) -> list[Target]:
    """The generation objects under the prefix, as found by listing."""
    targets = []
    for listed in backend.list_objects(GENERATIONS):
        number = generation_of(listed.name)
        if number is not None:
            targets.append(Target(number, listed.name, listed.size, listed.etag, None))
    return targets


# -- commit ----------------------------------------------------------------------


def settle(
    backend: Backend, name: str, generation: int, base: Version | None, failure: Exception
) -> None:
    """Decide a compare-and-swap of the pointer that did not plainly succeed.

    A refusal may be our own success whose reply was lost and whose retry then
    found the pointer changed; an error may have come before or after the server
    applied the write. The pointer says which: if it names our object, the commit
    succeeded. If it names another writer's, ours can never be applied (the etag
    moved on) and is deleted. If it is unchanged after an error, a delayed request
    might still apply ours, so the object stays (retention removes it later).
    """
    target = backend.where(POINTER)
    try:
        found = read_pointer(backend)
    except StoreError as exc:
        if isinstance(failure, Refused):
            raise StoreConflictError(target, generation=generation) from failure
        raise StoreError(
            "commit",
            target,
            f"{_detail(failure)}; the pointer cannot be read back ({exc.detail}), so"
            f" whether generation {generation} was committed is unknown",
        ) from failure
    if found is not None and found[0].current.object == name:
        return  # our write did reach the pointer
    unchanged = (found is None and base is None) or (
        found is not None and base is not None and found[1][0] == base[0]
    )
    if isinstance(failure, Refused) or not unchanged:
        _discard(backend, name)
    if isinstance(failure, Refused):
        winner = None if found is None else found[0].current.generation
        raise StoreConflictError(target, generation=generation, winner=winner) from failure
    if unchanged:
        outcome = f"the pointer is unchanged, so generation {generation} is not committed"
    else:
        outcome = f"another writer committed first; generation {generation} was not kept"
    raise StoreError("commit", target, f"{_detail(failure)}; {outcome}") from failure


def _discard(backend: Backend, name: str) -> None:
    try:
        backend.delete([name])
    except StoreError as exc:
        _log.warning("could not delete uncommitted %s: %s", backend.where(name), exc)


def _detail(failure: Exception) -> str:
    return failure.detail if isinstance(failure, StoreError) else "the pointer changed"
