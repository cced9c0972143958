"""What registering a schema reads from its type, beside pydantic's adapter: the types
refused up front in plainer words than pydantic's (a ``typing.TypedDict`` before Python
3.12, a function), and a record's kind, fields, required fields and whether it keeps
keys that are not its fields.

:meth:`~statemigrate._model._schema.SchemaVersion.create` calls these.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from typing import Any, Literal

import pydantic
import typing_extensions

from statemigrate._errors import RegistrationError
from statemigrate._model._fingerprint import DEFS_REF

__all__ = [
    "TYPEDDICT_HINT",
    "SchemaKind",
    "extra_allowed",
    "record_fields",
    "reject_function",
    "reject_typing_typeddict",
]

SchemaKind = Literal["model", "typeddict", "dataclass", "other"]


TYPEDDICT_HINT = (
    "pydantic cannot validate typing.TypedDict on Python < 3.12;"
    " define it with typing_extensions.TypedDict instead"
)


def reject_typing_typeddict(type_: object, where: str) -> None:
    # Checked up front for a clear message at the top level; TypedDicts nested deeper
    # are caught through pydantic's own error code. Can go once Python 3.12 is the floor.
    if sys.version_info < (3, 12) and typing.is_typeddict(type_):
        raise RegistrationError(f"{where}: {TYPEDDICT_HINT}")


def reject_function(type_: object, where: str) -> None:
    # pydantic takes a function as a schema of its call arguments, which the exporter
    # then refuses as "call arguments have no plain form": a function decorated by
    # mistake (one put between the decorator and the class) deserves plainer words.
    if inspect.isroutine(type_):
        name = getattr(type_, "__qualname__", None) or repr(type_)
        raise RegistrationError(
            f"{where}: {name} is a function, not a type; a schema is a type that describes"
            " the state (a model, a dataclass, a TypedDict, ...): is the decorator on the"
            " wrong definition?"
        )


def extra_allowed(core_schema: Any) -> bool:
    """Whether a record schema keeps keys that are not its fields (``extra="allow"``)."""
    node = core_schema
    if node.get("type") == "definitions":
        node = node["schema"]
        if node.get("type") == "definition-ref":
            node = next(
                (d for d in core_schema["definitions"] if d.get("ref") == node["schema_ref"]),
                {},
            )
    if node.get("extra_behavior") == "allow":
        return True
    return bool(node.get("config", {}).get("extra_fields_behavior") == "allow")


def record_fields(
    type_: object, schema: dict[str, Any]
) -> tuple[SchemaKind, tuple[str, ...], frozenset[str]]:
    if isinstance(type_, type) and issubclass(type_, pydantic.BaseModel):
        model_fields = type_.model_fields
        required = frozenset(n for n, f in model_fields.items() if f.is_required())
        return "model", tuple(model_fields), required
    if typing_extensions.is_typeddict(type_):
        # Not __required_keys__: under postponed annotations it cannot see NotRequired,
        # while pydantic's schema reflects what validation really requires.
        root = schema
        ref = root.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEFS_REF):
            root = schema["$defs"][ref[len(DEFS_REF) :]]
        return "typeddict", tuple(root.get("properties", {})), frozenset(root.get("required", ()))
    if isinstance(type_, type) and dataclasses.is_dataclass(type_):
        fields = [f for f in dataclasses.fields(type_) if f.init]
        required = frozenset(
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        return "dataclass", tuple(f.name for f in fields), required
    return "other", (), frozenset()
