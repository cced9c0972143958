"""A scalar value of another type than its field's, converted as lax validation would.

A value set without validation (a default, which pydantic does not validate,
``model_construct``, an assignment without ``validate_assignment``) may be of another
type than its field declares: ``x: int = "5"``. A restore validates a snapshot's plain
data in lax mode, so the state it gives back holds what validating the state gives:
``5``; a plain ``TypedDict`` state, handed over as it is, holds ``"5"`` in its snapshot
and is restored as ``5`` all the same. The leaf converters of the exporter write such a value as lax
validation makes it, whatever the record around it: ``"5"`` in an ``int`` field as
``5``, ``"1.5"`` in a ``float`` field as ``1.5``, ``"2024-05-01"`` in a ``date`` field
as that date's text. A value validation refuses (``"abc"`` in an ``int`` field, ``None``)
keeps the converter's refusal.

Only the error path of a converter asks: a value of its own type costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic_core
from pydantic_core import core_schema

__all__ = ["NOT_TAKEN", "lax_value"]

NOT_TAKEN = object()
"""What :func:`lax_value` returns when validation does not convert the value."""

_SCHEMAS: dict[str, Callable[[], core_schema.CoreSchema]] = {
    "int": core_schema.int_schema,
    "float": core_schema.float_schema,
    "str": core_schema.str_schema,
    "bool": core_schema.bool_schema,
    "bytes": core_schema.bytes_schema,
    "date": core_schema.date_schema,
    "datetime": core_schema.datetime_schema,
    "time": core_schema.time_schema,
    "timedelta": core_schema.timedelta_schema,
    "decimal": core_schema.decimal_schema,
    "uuid": core_schema.uuid_schema,
}
# Built on first use: most processes never export a value of another type.
_validators: dict[str, pydantic_core.SchemaValidator] = {}


def lax_value(kind: str, value: object) -> object:
    """What lax validation makes of ``value`` as a ``kind`` (a scalar type of pydantic's
    core schema: ``"int"``, ``"date"``, ...), or :data:`NOT_TAKEN` when validation
    refuses it or gives it back of the same type (a subclass instance pydantic keeps as
    it is, a string with a lone surrogate): the converter's refusal then stands."""
    validator = _validators.get(kind)
    if validator is None:
        validator = _validators.setdefault(kind, pydantic_core.SchemaValidator(_SCHEMAS[kind]()))
    try:
        again: Any = validator.validate_python(value, strict=False)
    except pydantic_core.ValidationError:
        return NOT_TAKEN
    except (MemoryError, RecursionError):
        raise
    except Exception:  # the value's own methods raised as validation read it
        return NOT_TAKEN
    if type(again) is type(value):
        return NOT_TAKEN
    return again
