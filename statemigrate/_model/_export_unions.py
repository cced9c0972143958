"""Unions: a value goes to the member that takes it, and what it is written as must
come back as the same value, which lax validation does not always give.

Lax validation picks a union's member by its own rules, so only a union of distinct
plain scalars is exact; its exceptions are checked value by value, by validating what is
written with the union alone: an int past 64 bits written as its text, a value of a
left-to-right union that an earlier member would take, a value no member took. Any other
union is validated back whole by the schema layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic_core

from statemigrate._model._compare import first_difference, widening_change
from statemigrate._model._export_kinds import accepts
from statemigrate._model._export_leaves import Node, NotExportable, by_value, fail, kind_of
from statemigrate._model._export_members import likeliest_refusal, member_validators
from statemigrate._model._shown import shortened

__all__ = ["union_node"]

# Kinds of core schema whose values are plain data of their own kind.
_PLAIN_SCALARS = frozenset({"int", "float", "str", "bool", "bytes", "none"})


def union_node(
    schema: Mapping[str, Any],
    choices: Sequence[Mapping[str, Any]],
    nodes: Sequence[Node],
    definitions: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
) -> Node:
    """The node of a union (or a tagged union) whose members ``choices`` compile to
    ``nodes``: a value goes to the first member that takes its kind and converts it."""
    tests = [accepts(choice, definitions) for choice in choices]
    # Lax validation picks a member by its own rules (an ISO string fits a str
    # member before a datetime one); only unions of distinct plain scalars are sure,
    # each member writing a value of its own kind. The one exception, an int past 64
    # bits written as text, is checked as it is written.
    kinds = [choice.get("type") for choice in choices]
    scalars = all(
        kind in _PLAIN_SCALARS and len(choice) == 1
        for kind, choice in zip(kinds, choices, strict=True)
    )
    exact = scalars and len(set(kinds)) == len(kinds)
    validate_union = _union_validator(schema, definitions, config)
    check_int_text = _int_text_check(validate_union, exact=exact)
    # Left to right, lax validation gives a value to the first member that takes it,
    # not to the one of its own kind: under bool | int, 1 comes back True. Such a
    # union of plain scalars is exact all the same (nothing else validates its
    # export back), so each value its members write is validated back here.
    check_member = _member_check(validate_union) if exact and _left_to_right(schema) else None
    fits = member_validators(choices, definitions, config)

    def convert(value: Any) -> Any:
        refused: list[tuple[int, NotExportable]] | None = None  # made on a first refusal
        for index, (test, node) in enumerate(zip(tests, nodes, strict=True)):
            if test(value):
                # The test looks at the kind of value only (a dict, a list): a member
                # of the same kind with other keys or items may be the one it fits.
                try:
                    out = node.convert(value)
                except NotExportable as exc:
                    refused = refused or []
                    refused.append((index, exc))
                    continue
                if type(out) is str and type(value) is int:
                    check_int_text(value, out)
                elif check_member is not None:
                    check_member(value, out)
                return out
        if refused:
            # Each member that refused says why; the one the value is of says it right.
            raise likeliest_refusal(value, refused, fits)
        out = by_value(value)
        if exact:
            # No member took it (a state never validated: None, a str, a tuple), and
            # nothing validates this union's export back: the union itself decides.
            _check_no_member(validate_union, value, out)
        return out

    # A union checked value by value is walked: handed to the packer as it is, it
    # would not be checked.
    return Node(convert, scalars and check_member is None, exact)


def _union_validator(
    schema: Mapping[str, Any],
    definitions: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
) -> Callable[[Any], Any]:
    """Lax validation with the union alone (its definitions and its record's config
    in force, as a restore validates it). Built on first use: most unions never
    need it."""
    union = {key: value for key, value in schema.items() if key != "ref"}
    # The definitions are complete by the time a state is exported.
    config = dict(config)
    built: list[pydantic_core.SchemaValidator] = []

    def validate(value: Any) -> Any:
        if not built:
            refs = list(definitions.values())
            whole = {"type": "definitions", "schema": union, "definitions": refs} if refs else union
            built.append(pydantic_core.SchemaValidator(whole, config=config))  # type: ignore[arg-type]
        return built[0].validate_python(value, strict=False)

    return validate


def _int_text_check(
    validate_union: Callable[[Any], Any], *, exact: bool
) -> Callable[[int, str], None]:
    """Refuse an int past 64 bits that a union would not read back from its text.

    Such an int is written as its decimal text, which is no longer of the int member's
    own kind: lax validation may give it to a ``str``, ``float``, ``bytes`` or
    ``Decimal`` member instead. So the text is validated back with the union and must
    come back as the same int.
    """

    def check(value: int, text: str) -> None:
        held = (
            f"the integer {shortened(value)} does not fit in 64 bits, so a snapshot holds"
            " its text;"
        )
        try:
            again = validate_union(text)
        except pydantic_core.ValidationError as exc:
            reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
            raise fail(f"{held} this union does not take that text back: {reason}") from None
        except Exception:
            if exact:
                raise fail(f"{held} whether this union reads it back cannot be told") from None
            return  # the whole export is validated back: that check decides
        if type(again) is not int or again != value:
            raise fail(
                f"{held} this union reads that text back as a {kind_of(again)}"
                f" ({shortened(again)}), not an int; keep it within 64 bits or type it int alone"
            )

    return check


def _left_to_right(schema: Mapping[str, Any]) -> bool:
    """Whether a union takes the first member that validates a value, in order
    (``Field(union_mode="left_to_right")``), rather than the best fit."""
    return schema.get("type") == "union" and schema.get("mode") == "left_to_right"


def _member_check(validate_union: Callable[[Any], Any]) -> Callable[[Any, Any], None]:
    """Refuse a value of a left-to-right union that validated back would come back as
    another value: an earlier member takes it first (``1`` under ``bool | int`` comes
    back ``True``, ``"7"`` under ``int | str`` comes back ``7``).

    Costs one validation of the value with the union alone, as a constrained leaf's
    check does (see ``_export_checks``).
    """

    def check(value: Any, out: Any) -> None:
        try:
            again = validate_union(out)
        except pydantic_core.ValidationError as exc:
            reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
            raise fail(
                f"this union does not take its {kind_of(value)} back: {reason}",
                by_validation=True,
            ) from None
        except Exception:
            raise fail(
                f"whether this union gives its {kind_of(value)} back cannot be told",
                by_validation=True,
            ) from None
        if type(again) is type(value) and again == value:
            return
        difference = first_difference(value, again)  # None for NaN and NaN
        if difference is not None:
            raise fail(difference[1], by_validation=True)

    return check


def _check_no_member(validate_union: Callable[[Any], Any], value: Any, out: Any) -> None:
    """Refuse a value no member of a union of plain scalars took, unless the union
    validates what is written for it: then a restore gives what validating the state
    gives, as for any value validation converts. Except an int that a ``float``
    member would make another number (``2**53 + 1`` as ``2.0**53`` under
    ``float | str``), refused as a ``float`` field refuses it."""
    try:
        again = validate_union(out)
    except pydantic_core.ValidationError as exc:
        reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
        raise fail(f"a {kind_of(value)} fits no member of this union: {reason}") from None
    except Exception:
        raise fail(f"a {kind_of(value)} fits no member of this union") from None
    if type(value) is int and type(again) is float:
        change = widening_change(value, again)
        if change is not None:
            raise fail(change)
