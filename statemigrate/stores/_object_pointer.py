"""The pointer object of an object store: which generation is current, which previous.

The pointer is a small JSON document, replaced by compare-and-swap on every commit::

    {"format": "statemigrate-object-pointer/1",
     "current": {"generation": 7, "object": "generations/00000000000000000007.<hex>",
                 "size": 123456, "xxh3_128": "<32 hex digits>", "etag": "\\"...\\""},
     "previous": {... generation 6 ...} or null,
     "unrestored": [{... a generation a start could not restore ...}, ...]}   (when any)

Keeping ``previous`` inside the pointer makes "current and previous" change together in
one atomic write. The digest and size let a reader tell a generation object that was
damaged or replaced after its commit from the one that was committed. Anyone who can
write to the bucket can rewrite the pointer too, digest included: that is what the
snapshot format's authenticated mode is for.

``unrestored`` names the generations that were latest when a service's start could not
restore them (or could not reach the store at all), oldest first, at most
``MAX_UNRESTORED``. Every commit carries them over and retention never deletes their
objects, so the checkpoints of a service that started cold cannot push the state it
lost out of reach, even over several failed starts. A digest is ``None`` when the
pointer was missing at the time and the generation was found by listing.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Annotated, Final, Literal

import pydantic

from statemigrate._errors import StoreError

__all__ = [
    "FORMAT",
    "GENERATIONS",
    "MAX_POINTER_SIZE",
    "REPAIR",
    "DamagedPointerError",
    "Entry",
    "MAX_UNRESTORED",
    "Kept",
    "Pointer",
    "Role",
    "decode_pointer",
    "encode_pointer",
    "generation_of",
    "new_object_name",
]

FORMAT: Final = "statemigrate-object-pointer/1"
GENERATIONS = "generations"
MAX_POINTER_SIZE = 64 << 10
"""A pointer larger than this is refused unread; a real one is a few hundred bytes."""
REPAIR = (
    "delete it to repair: the generation objects stay, the store numbers past them, and"
    " the next commit keeps them all as unrestored, since this pointer may have recorded"
    " some (docs/stores.md, 'A missing pointer')"
)
"""What a damaged pointer's error says to do: every read and commit stops at it. The
generations it may have kept as unrestored are named: deleting it must not look like
letting them go."""
MAX_UNRESTORED = 4
"""The most generations a pointer keeps as unrestored: one per failed start, until an
operator lets them go. Past it, the newest is replaced, so that the state from before
the trouble began (the oldest) stays."""



class DamagedPointerError(StoreError):
    """The pointer is there but is not one of ours: damaged, or written by something
    else. Unlike a pointer that cannot be read (no answer, access denied), nothing
    reading it again would change: readers may find the generation objects by listing
    instead, and no commit goes on until it is deleted.

    Attributes:
        reason: what is wrong with it.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.reason = reason
        super().__init__("open", where, f"is not a valid pointer ({reason}); {REPAIR}")


Role = Literal["current", "previous", "unrestored"]
"""What the pointer calls a generation it records."""

_NAME = re.compile(rf"{GENERATIONS}/([0-9]{{20}})\.[0-9a-f]{{32}}\Z")


def new_object_name(generation: int) -> str:
    """A fresh name for the object of ``generation``: the number, then 128 random bits.

    The random part keeps the names of two writers racing for one generation apart, so
    neither ever overwrites the other's object.
    """
    return f"{GENERATIONS}/{generation:020d}.{secrets.token_hex(16)}"


def generation_of(name: str) -> int | None:
    """The generation in a generation object's name, or ``None`` for any other name."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


class Entry(pydantic.BaseModel, frozen=True, extra="forbid", strict=True):
    """One committed generation: its object, size, digest and the etag it was written with."""

    generation: Annotated[int, pydantic.Field(ge=1)]
    object: Annotated[str, pydantic.Field(max_length=100)]
    size: Annotated[int, pydantic.Field(ge=0)]
    xxh3_128: Annotated[str, pydantic.Field(pattern=r"^[0-9a-f]{32}$")]
    etag: Annotated[str, pydantic.Field(max_length=1024)] | None

    @pydantic.model_validator(mode="after")
    def _name_matches(self) -> Entry:
        if generation_of(self.object) != self.generation:
            raise ValueError(f"object {self.object!r} is not of generation {self.generation}")
        return self


class Kept(Entry, frozen=True, extra="forbid", strict=True):
    """The generation a start could not restore, kept out of retention's reach. Its
    digest is unknown (``None``) when it was found by listing, with no pointer."""

    xxh3_128: Annotated[str, pydantic.Field(pattern=r"^[0-9a-f]{32}$")] | None  # type: ignore[assignment]


class Pointer(pydantic.BaseModel, frozen=True, extra="forbid", strict=True):
    """The latest generation, the one before it, and the one a start could not
    restore."""

    format: Literal["statemigrate-object-pointer/1"]
    current: Entry
    previous: Entry | None
    unrestored: Annotated[list[Kept], pydantic.Field(max_length=MAX_UNRESTORED)] = []

    @pydantic.model_validator(mode="after")
    def _previous_precedes(self) -> Pointer:
        if self.previous is not None and self.previous.generation != self.current.generation - 1:
            raise ValueError(
                f"previous generation {self.previous.generation} does not precede"
                f" {self.current.generation}"
            )
        for kept in self.unrestored:
            if kept.generation > self.current.generation:
                raise ValueError(
                    f"unrestored generation {kept.generation} is newer than current"
                    f" {self.current.generation}"
                )
        return self

    def recorded(self) -> dict[str, tuple[Entry, tuple[Role, ...]]]:
        """Each object the pointer records, with its entry and every role it gives it,
        in the order current, previous, unrestored.

        A generation can hold two roles: the one a start could not restore stays
        ``unrestored`` after the next commit makes it ``previous``. Its entry is then
        the one recorded as current or previous, which always has a digest.
        """
        found: dict[str, tuple[Entry, tuple[Role, ...]]] = {}
        named: list[tuple[Entry, Role]] = [(self.current, "current")]
        if self.previous is not None:
            named.append((self.previous, "previous"))
        named += [(kept, "unrestored") for kept in self.unrestored]
        for entry, role in named:
            first, roles = found.get(entry.object, (entry, ()))
            if role not in roles:
                found[entry.object] = (first, (*roles, role))
        return found


def encode_pointer(pointer: Pointer) -> bytes:
    """The pointer as compact JSON."""
    document = pointer.model_dump()
    if not pointer.unrestored:
        del document["unrestored"]  # the usual case stays as short as it was
    return json.dumps(document, separators=(",", ":")).encode()


def decode_pointer(data: bytes, *, where: str) -> Pointer:
    """Parse and check a pointer read from ``where``.

    Raises:
        DamagedPointerError: the bytes are not a valid pointer (damaged or written by
            something else).
    """
    try:
        return Pointer.model_validate_json(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "document"
        raise DamagedPointerError(where, f"{field}: {first['msg']}") from exc
