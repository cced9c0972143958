"""A schema's refusals, decided once when it registers: the parts of a pydantic core
schema that have no plain form, or whose plain form its own validation would not take
back, refuse the whole schema with :class:`SchemaNotExportable` and the part's path.

The exporter (see :mod:`statemigrate._model._export`) calls these checks as it compiles
the nodes they concern; values are checked at export, by ``_export_checks``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import pydantic_core

from statemigrate._model._plaindata import INT_MAX, INT_MIN

__all__ = [
    "REFUSED",
    "SchemaNotExportable",
    "check_int_values",
    "check_member_values",
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


def check_int_values(schema: Mapping[str, Any], path: list[str]) -> None:
    """Refuse an enum or a ``Literal`` with an int value outside signed 64 bits that its
    own validation does not take back from what a snapshot holds of it.

    A snapshot holds an int within msgpack's 64 bits as it is, one past them as its
    text. What pydantic takes back depends on the type and even on the other values (an
    ``IntEnum`` validates within signed 64 bits only, a plain ``Enum`` or a ``Literal``
    matches ints as they are, not their text), so pydantic decides, once per value.
    """
    kind = schema["type"]
    if kind == "enum":
        values = [(member.value, member) for member in schema["members"]]
    else:
        values = [(value, value) for value in schema["expected"]]
    wide = [(value, want) for value, want in values if type(value) is int and not in_i64(value)]
    if not wide:
        return
    own = {key: value for key, value in schema.items() if key not in ("ref", "metadata")}
    try:
        validator = pydantic_core.SchemaValidator(own)
    except pydantic_core.SchemaError:  # a key of a newer pydantic: the export decides
        return
    for value, want in wide:
        try:
            plain = value if INT_MIN <= value <= INT_MAX else str(value)
            again = validator.validate_python(plain, strict=False)
            reason = f"it comes back as {again!r:.40}"
        except pydantic_core.ValidationError as exc:
            again = None
            reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
        except ValueError:  # too long for Python to write as text
            again = None
            reason = "too many digits to write as text"
        if again is want or (type(again) is type(want) and again == want):
            continue
        if kind == "enum":
            name = getattr(want, "name", None)
            what = f"enum {schema['cls'].__qualname__} has the member {name} = {value}"
        else:
            what = f"Literal value {value}"
        raise SchemaNotExportable(
            path,
            f"{what}, outside signed 64 bits, which its validation does not take back from"
            f" what a snapshot holds ({reason})",
        )


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
