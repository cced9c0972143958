"""A schema's refusals, decided once when it registers: the parts of a pydantic core
schema that have no plain form, or whose plain form its own validation would not take
back, refuse the whole schema with :class:`SchemaNotExportable` and the part's path.

The exporter (see :mod:`statemigrate._model._export`) calls these checks as it compiles
the nodes they concern; values are checked at export, by ``_export_checks``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import pydantic_core

from statemigrate._model._plaindata import INT_MAX, INT_MIN
from statemigrate._model._shown import shown

__all__ = [
    "REFUSED",
    "SchemaNotExportable",
    "check_member_values",
    "check_values",
    "in_i64",
    "refuse_decoder",
]


class SchemaNotExportable(Exception):
    """A schema has a part with no plain form; ``path`` locates it in the schema."""

    def __init__(self, path: Sequence[str], detail: str) -> None:
        where = ".".join(path) or "(root)"
        super().__init__(f"{where}: {detail}")
        self.path = tuple(path)
        self.detail = detail


REFUSED = {
    "callable": "a callable has no plain form",
    "is-subclass": "a class has no plain form",
    "generator": "an iterator has no plain form; declare a list",
    "arguments": "call arguments have no plain form",
    "call": "call arguments have no plain form",
    # The state holds the parsed value; a restore would parse its plain form as JSON
    # text again and refuse it.
    "json": (
        "Json[...] holds the parsed value, and a restore would parse it as JSON text"
        " again; declare the parsed type itself (Json[dict[str, int]] as dict[str, int])"
    ),
}


def check_values(schema: Mapping[str, Any], path: list[str]) -> None:
    """Refuse an enum or a ``Literal`` with a value that its own validation does not take
    back from what a snapshot holds of it.

    A snapshot holds a value as it is, an int past msgpack's 64 bits as its text. pydantic
    decides, once per value: an enum's member must come back as itself, a ``Literal``'s
    value must validate (a value that validation turns into another, ``1.0`` into
    ``True`` under ``Literal[1, 1.0, True]``, is what validating the state gives too).
    Two kinds are known to fail: a float NaN, which equals nothing, not even itself, so
    validation matches it with no value; and an int outside signed 64 bits, which an
    ``IntEnum`` takes only within them and a plain ``Enum`` or a ``Literal`` only as an
    int, never as its text.
    """
    kind = schema["type"]
    if kind == "enum":
        values = [(member.value, member) for member in schema["members"]]
    else:
        values = [(value, value) for value in schema["expected"] if type(value) in _PLAIN]
    own = {key: value for key, value in schema.items() if key not in ("ref", "metadata")}
    try:
        validator = pydantic_core.SchemaValidator(own)
    except pydantic_core.SchemaError:  # a key of a newer pydantic: the export decides
        return
    for value, want in values:
        reason = _not_taken_back(validator, value, want, member=kind == "enum")
        if reason is None:
            continue
        if kind == "enum":
            name = getattr(want, "name", None)
            what = f"enum {schema['cls'].__qualname__} has the member {name} = {shown(value)}"
        else:
            what = f"Literal value {shown(value)}"
        if type(value) is float and math.isnan(value):
            detail = (
                f"{what}: NaN equals nothing, not even itself, so validation takes no value"
                " back into it; give it another value (None, a str)"
            )
        elif type(value) is int and not in_i64(value):
            detail = (
                f"{what}, outside signed 64 bits, which its validation does not take back"
                f" from what a snapshot holds ({reason})"
            )
        else:
            detail = (
                f"{what}, which its validation does not take back from what a snapshot"
                f" holds ({reason})"
            )
        raise SchemaNotExportable(path, detail)


def _not_taken_back(
    validator: pydantic_core.SchemaValidator, value: object, want: object, *, member: bool
) -> str | None:
    """Why ``validator`` does not take ``value``'s plain form back into ``want`` (an
    enum's member, or a ``Literal``'s value), or None when it does."""
    try:
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            plain: object = str(value)
        elif type(value) is float:
            # A new float, as a restore decodes one: a lookup finds a NaN member by the
            # identity of its own value object, which no snapshot gives back.
            plain = float(repr(value))
        else:
            plain = value
        again = validator.validate_python(plain, strict=False)
    except pydantic_core.ValidationError as exc:
        return str(exc.errors(include_url=False, include_input=False)[0]["msg"])
    except ValueError:  # too long for Python to write as text
        return "too many digits to write as text"
    if again is want:
        return None
    if member or (type(value) is int and not in_i64(value)):
        if not (type(again) is type(want) and again == want):
            return f"it comes back as {again!r:.40}"
    return None


def check_member_values(schema: Mapping[str, Any], path: list[str]) -> None:
    """Refuse a ``Literal`` of an enum member that its own validation does not take back
    from the member's value, which is what a snapshot holds of it.

    pydantic matches a plain ``Enum``'s member in a ``Literal`` only as the member
    itself (a ``StrEnum``'s or an ``IntEnum``'s also as its value): such a schema, and
    a union tagged by it, would take no snapshot back. pydantic decides, once per member.
    """
    members = [item for item in schema["expected"] if isinstance(item, enum.Enum)]
    if not members:
        return
    validator = pydantic_core.SchemaValidator({"type": "literal", "expected": schema["expected"]})
    for member in members:
        try:
            again = validator.validate_python(member.value, strict=False)
        except pydantic_core.ValidationError:
            again = None
        if again is not member:
            cls = type(member).__qualname__
            raise SchemaNotExportable(
                path,
                f"Literal[{cls}.{member.name}] does not validate back from the member's"
                f" value {member.value!r}, which is what a snapshot holds (pydantic matches"
                f" a plain Enum's member in a Literal only as itself); make {cls} a StrEnum"
                " or IntEnum, or use the plain value in the Literal",
            )


def refuse_decoder(schema: Mapping[str, Any], path: list[str]) -> None:
    """Refuse a type that decodes what it is given (``Base64Bytes``, ``Base64Str``, any
    ``EncodedBytes`` or ``EncodedStr``): the state holds the decoded value, which a
    restore would decode again."""
    function = schema.get("function", {}).get("function")
    owner = getattr(function, "__self__", None)
    if isinstance(owner, pydantic.types.EncodedBytes | pydantic.types.EncodedStr):
        kind = "Bytes" if isinstance(owner, pydantic.types.EncodedBytes) else "Str"
        encoder = owner.encoder.__name__
        name = {"Base64Encoder": "Base64", "Base64UrlEncoder": "Base64Url"}.get(encoder)
        shown = f"{name}{kind}" if name else f"Encoded{kind}({encoder})"
        plain = "bytes" if kind == "Bytes" else "str"
        raise SchemaNotExportable(
            path,
            f"{shown} holds the decoded value, and a restore would decode it again;"
            f" declare {plain} (and encode where the value leaves the program)",
        )


def in_i64(value: int) -> bool:
    return -(2**63) <= value < 2**63


_PLAIN = (str, int, float, bool, bytes, type(None))
"""The types of a ``Literal``'s values that a snapshot holds as they are (a member of an
enum in one is checked by :func:`check_member_values`)."""
