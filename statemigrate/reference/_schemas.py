"""The three schema versions of the reference key-value cache, ``"kvcache"``.

- version 1: ``{"entries": {key: value}}``, values are strings;
- version 2: every entry gains an expiry deadline, ``{"value": str, "expires_at":
  float | None}``; the deadline is wall-clock Unix time, because a relative TTL or a
  monotonic clock reading would mean nothing in the next process;
- version 3: ``value`` is renamed ``data`` and every entry counts its ``hits``.

They are ``TypedDict`` schemas, so a restored cache is made of plain dicts and costs no
object construction per entry. On Python < 3.12 pydantic needs
``typing_extensions.TypedDict`` rather than ``typing.TypedDict``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from typing_extensions import TypedDict

from statemigrate._model._registry import Registry

__all__ = [
    "COMPONENT",
    "EntryV2",
    "EntryV3",
    "KVCacheStateV1",
    "KVCacheStateV2",
    "KVCacheStateV3",
    "SCHEMAS",
    "register_schemas",
]

COMPONENT = "kvcache"
"""The component name of the reference cache."""

Deadline = Annotated[float, Field(allow_inf_nan=False)] | None
"""Unix time after which an entry is gone, or ``None`` for never."""


class KVCacheStateV1(TypedDict):
    """Version 1: string values, no expiry."""

    entries: dict[str, str]


class EntryV2(TypedDict):
    """One entry of version 2."""

    value: str
    expires_at: Deadline


class KVCacheStateV2(TypedDict):
    """Version 2: every entry may expire."""

    entries: dict[str, EntryV2]


class EntryV3(TypedDict):
    """One entry of version 3."""

    data: str
    expires_at: Deadline
    hits: Annotated[int, Field(ge=0)]


class KVCacheStateV3(TypedDict):
    """Version 3: ``value`` renamed ``data``, and a hit counter per entry."""

    entries: dict[str, EntryV3]


SCHEMAS: dict[int, type] = {1: KVCacheStateV1, 2: KVCacheStateV2, 3: KVCacheStateV3}
"""Schema type per version."""


def register_schemas(registry: Registry) -> None:
    """Register the three schema versions of ``"kvcache"`` into ``registry``.

    Raises:
        RegistrationError: they are already registered there.
    """
    for version, type_ in SCHEMAS.items():
        registry.add_schema(COMPONENT, version, type_)
