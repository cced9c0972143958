"""Which member of a union a value that every member refused belongs to, so that the
refusal reported is that member's.

A union's exporter tries its members in order, and each member of the value's kind (a
dict, an object) that cannot convert it refuses it. Only one of those refusals says what
is wrong: the one of the member the value is of. The others only say that the value is
not theirs (``Input should be 'card'`` at the tag of a ``Voucher``, ``expected Card,
found Voucher``), which hides the real problem, a lone surrogate say, behind a wrong
path and a wrong reason. pydantic decides which member that is, as validating the state
decided it: the first refused member that validates the value as it stands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic_core

from statemigrate._model._export_leaves import NotExportable

__all__ = ["likeliest_refusal", "member_validators"]

Refusals = Sequence[tuple[int, NotExportable]]
"""The members that refused a value (their index in the union) and their refusals."""


def member_validators(
    choices: Sequence[Mapping[str, Any]],
    definitions: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
) -> Callable[[int, Any], bool]:
    """Whether member ``index`` of ``choices`` validates a value, in lax mode (as a
    restore validates), with the union's definitions and its record's config in force.
    Each member's validator is built on first use: only a value every member refused
    needs one."""
    built: dict[int, pydantic_core.SchemaValidator | None] = {}

    def validator(index: int) -> pydantic_core.SchemaValidator | None:
        if index not in built:
            member = {key: value for key, value in choices[index].items() if key != "ref"}
            refs = list(definitions.values())
            whole = member
            if refs:
                whole = {"type": "definitions", "schema": member, "definitions": refs}
            try:
                built[index] = pydantic_core.SchemaValidator(
                    whole,
                    config=dict(config),  # type: ignore[arg-type]
                )
            except pydantic_core.SchemaError:  # a newer pydantic's schema: cannot tell
                built[index] = None
        return built[index]

    def fits(index: int, value: Any) -> bool:
        member = validator(index)
        if member is None:
            return False
        try:
            member.validate_python(value, strict=False)
        except MemoryError:
            raise
        except Exception:  # refused, or a validator of the user's own raised
            return False
        return True

    return fits


def likeliest_refusal(
    value: Any, refusals: Refusals, fits: Callable[[int, Any], bool]
) -> NotExportable:
    """The refusal of the first member that validates ``value``: the member the value
    is of. When none does (a state set without validation), the first refusal, as
    before."""
    if len(refusals) > 1:
        for index, refusal in refusals:
            if fits(index, value):
                return refusal
    return refusals[0][1]
