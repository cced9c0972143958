"""Whether a state holds an instance of a model class its schema does not declare: one
of the subclasses the state form draws where a field declares their base (see
``_builder``), as a service may put one there.

pydantic keeps such an instance as it is, and a snapshot refuses it: it would come back
as the declared class, without its own fields. Under a field of the model alone the
refusal says so (``holds a SubSmall where Small is declared``); under a union of models
(``list[Small | Big]``) the snapshot finds it when it validates the plain form back,
which comes back as the base, and its refusal reads as one of validation changing what
it made. Either way the instance is at fault, not the schema, and the snapshot check
counts the refusal instead of failing on it (as for a lone surrogate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from statemigrate._model._coreschema import schema_nodes
from statemigrate.testing._surrogates import held_values

__all__ = ["declared_classes", "holds_undeclared_model"]


def declared_classes(core_schema: Mapping[str, Any]) -> frozenset[type]:
    """Every class a pydantic core schema names (models, dataclasses, enums, ...)."""
    return frozenset(
        node["cls"] for node in schema_nodes(core_schema) if isinstance(node.get("cls"), type)
    )


def holds_undeclared_model(state: Any, declared: frozenset[type]) -> bool:
    """Whether ``state`` holds, at any depth, a model instance whose class is not in
    ``declared``."""
    pending: list[Any] = [state]
    seen: set[int] = set()
    while pending:
        value = pending.pop()
        if isinstance(value, str | bytes | int | float) or id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, pydantic.BaseModel) and type(value) not in declared:
            return True
        pending.extend(held_values(value))
    return False
