"""Whether a state holds a lone surrogate anywhere: in a string, a dict key, a set item,
a field of a model or a dataclass (extra fields included), a union's member of any kind.

Such a state has no plain form: UTF-8 cannot encode the surrogate, so a snapshot refuses
the state whatever its schema, and the snapshot check counts that refusal instead of
failing on it. The refusal is usually clear (``at code: the string holds a lone
surrogate``), but where a schema's own checks meet the string first (a union member's,
a validator's), what they say is no evidence against the schema: the surrogate alone
already makes the state unsnapshottable. The walk is an explicit stack, so a deep state
does not run out of recursion.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import os
from collections.abc import Mapping
from typing import Any

import pydantic

__all__ = ["held_values", "holds_lone_surrogate"]

_CONTAINERS = (list, tuple, set, frozenset, collections.deque)


def holds_lone_surrogate(state: Any) -> bool:
    """Whether ``state`` holds a ``str`` with a lone surrogate, at any depth."""
    pending: list[Any] = [state]
    seen: set[int] = set()
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _has_surrogate(value):
                return True
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        pending.extend(held_values(value))
    return False


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def held_values(value: Any) -> list[Any]:
    """What a value holds that may hold text: a container's items, a mapping's keys and
    values, a record's fields, an enum member's value, a secret's secret, a path's text."""
    if isinstance(value, Mapping):
        return [*value.keys(), *value.values()]
    if isinstance(value, _CONTAINERS):
        return list(value)
    if isinstance(value, pydantic.BaseModel):
        fields = list(vars(value).values())
        return [*fields, *(value.__pydantic_extra__ or {}).values()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, field.name, None) for field in dataclasses.fields(value)]
    if isinstance(value, enum.Enum):
        return [value.value]
    if isinstance(value, pydantic.SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, os.PathLike):
        return [os.fspath(value)]
    return []
