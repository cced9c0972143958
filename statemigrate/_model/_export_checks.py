"""Checks of the constraints a value's own type puts on it, made at export.

A value set without validation (``model_construct``, ``model_copy(update=...)``, an
assignment to a model without ``validate_assignment``) may be of the right type and
still break its type's constraints: ``Decimal("Infinity")`` where decimals must be
finite, ``inf`` where ``allow_inf_nan=False``, a number past ``ge=``, a string longer
than ``max_length`` or not matching its ``pattern``, a naive ``datetime`` where an aware
one is declared, a list longer than ``max_length``. The leaf converters know the type
only, so such a value would be written, committed, and refused by every restore.

:func:`checked_leaf` wraps the converter of a constrained leaf so that its plain form is
validated back with the leaf's own schema (and the constraints its record's config adds,
such as ``str_max_length``): pydantic itself decides, exactly as a restore would, and a
refusal names the value's path. Unconstrained leaves are left as they are, so plain
data costs nothing more; an unconstrained ``Decimal`` is only checked to be finite, the
one rule pydantic applies to it by default. :func:`checked_length` does the same for the
``min_length`` and ``max_length`` of containers, counting the items written.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from typing import Any

import pydantic_core

from statemigrate._errors import first_line
from statemigrate._model._compare import first_difference
from statemigrate._model._export_leaves import Convert, Node, by_value, fail, kind_of

__all__ = ["checked_leaf", "checked_length", "checked_literal", "checked_path", "is_path_check"]

# Keys of a leaf's core schema that constrain nothing a value could break. ``strict``
# is among them because a restore validates in lax mode whatever the schema says.
_NOT_CONSTRAINTS = frozenset({"type", "ref", "metadata", "serialization", "strict"})

# Settings of a model, dataclass or TypedDict config that constrain its leaves.
_CONFIG_CONSTRAINTS: Mapping[str, tuple[str, ...]] = {
    "str": (
        "str_max_length",
        "str_min_length",
        "str_strip_whitespace",
        "str_to_lower",
        "str_to_upper",
        "regex_engine",
    ),
    "float": ("allow_inf_nan",),
    "decimal": ("allow_inf_nan",),
}


def checked_leaf(node: Node, schema: Mapping[str, Any], config: Mapping[str, Any]) -> Node:
    """``node``, checking each value against the constraints of ``schema`` and ``config``.

    A checked leaf is no longer ``identity``: a record of such leaves is walked at export,
    since the packer alone cannot see a broken constraint.
    """
    kind = str(schema.get("type"))
    own = {key: value for key, value in schema.items() if key not in _NOT_CONSTRAINTS}
    settings = {key: config[key] for key in _CONFIG_CONSTRAINTS.get(kind, ()) if key in config}
    if not own and not settings:
        if kind == "decimal":
            return Node(_finite_decimal(node.convert), False, node.exact)
        return node
    try:
        validator = pydantic_core.SchemaValidator(
            {"type": kind, **own},
            config=settings,  # type: ignore[arg-type]  # a subset of CoreConfig
        )
    except pydantic_core.SchemaError:  # a key of a newer pydantic: let validation judge
        return Node(node.convert, False, False)
    return Node(_validated_back(node.convert, validator), False, node.exact)


def checked_path(node: Node, schema: Mapping[str, Any]) -> Node:
    """``node`` (a path's), checking each value against the file-system test of
    ``schema``, a ``NewPath``, ``FilePath`` or ``DirectoryPath`` (see
    :func:`is_path_check`): the path must pass it at export, as a restore asks.

    Like a ``FutureDate``'s, the test may pass at export and fail at restore, when the
    file appears or vanishes in between; the documentation says so.
    """
    try:
        validator = pydantic_core.SchemaValidator(dict(schema))
    except pydantic_core.SchemaError:  # a newer pydantic's schema: let validation judge
        return Node(node.convert, False, False)
    return Node(_validated_back(node.convert, validator), False, node.exact)


def is_path_check(schema: Mapping[str, Any]) -> bool:
    """Whether ``schema`` is pydantic's ``NewPath``, ``FilePath`` or ``DirectoryPath``:
    a path whose validator tests the file system."""
    if schema.get("type") != "function-after":
        return False
    function = schema.get("function", {}).get("function")
    return str(getattr(function, "__qualname__", "")).startswith("PathType.validate_")


def checked_length(convert_items: Convert, schema: Mapping[str, Any]) -> Convert:
    """``convert_items``, refusing a container whose item count breaks its bounds."""
    low = schema.get("min_length")
    high = schema.get("max_length")
    if low is None and high is None:
        return convert_items

    def convert(value: Any) -> Any:
        out = convert_items(value)
        count = len(out)
        if low is not None and count < low:
            raise fail(f"holds {count} items, fewer than the min_length {low} its type asks")
        if high is not None and count > high:
            raise fail(f"holds {count} items, more than the max_length {high} its type allows")
        return out

    return convert


def checked_literal(schema: Mapping[str, Any]) -> Convert:
    """Write a ``Literal``'s plain value, refusing one that is none of its values."""
    expected = {(type(item), item) for item in schema["expected"]}
    validator = pydantic_core.SchemaValidator({"type": "literal", "expected": schema["expected"]})
    # Anything but one of the values exactly is left to validation to judge.
    judge = _validated_back(by_value, validator)

    def convert(value: Any) -> Any:
        try:
            if (type(value), value) in expected:
                return value
        except TypeError:  # unhashable, so none of the values
            pass
        return judge(value)

    return convert


def _finite_decimal(convert_inner: Convert) -> Convert:
    def convert(value: Any) -> Any:
        if isinstance(value, decimal.Decimal) and not value.is_finite():
            raise fail(
                f"Decimal({str(value)!r}) is not finite, and a Decimal field takes finite"
                " numbers only unless it allows inf and nan (allow_inf_nan=True)"
            )
        return convert_inner(value)

    return convert


def _validated_back(convert_inner: Convert, validator: pydantic_core.SchemaValidator) -> Convert:
    validate = validator.validate_python

    def convert(value: Any) -> Any:
        plain = convert_inner(value)
        try:
            again = validate(plain, strict=False)
        except pydantic_core.ValidationError as exc:
            reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
            raise fail(
                f"this {kind_of(value)} breaks a constraint of its type, so it would not"
                f" validate back: {reason}",
                by_validation=True,
            ) from None
        except MemoryError:
            raise
        except Exception as exc:  # pydantic passes on all but ValueError and AssertionError
            raise fail(
                f"checking this {kind_of(value)} against its type raised"
                f" {type(exc).__name__}: {first_line(exc):.200}",
                by_validation=True,
            ) from exc
        # A value of another type (True in an int field) is written as validation makes
        # it, a conversion the leaf itself accepts; only a change of the same type is one
        # the constraints made (a stripped or lowered string).
        if type(again) is type(value) and not _plainly_equal(value, again):
            difference = first_difference(value, again)  # None for NaN and NaN
            if difference is not None:
                raise fail(difference[1], by_validation=True)
        return plain

    return convert


def _plainly_equal(value: Any, again: Any) -> bool:
    """The quick test of an unchanged leaf; a Decimal keeps its exponent too."""
    if type(value) is decimal.Decimal:
        return str(value) == str(again)
    return bool(value == again)
