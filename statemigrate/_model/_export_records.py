"""Records: models, dataclasses and ``TypedDict``s, read field by field by their declared
names (a model's and a dataclass's from their attributes, a ``TypedDict``'s from its
items), never through pydantic's serializer, so aliases, ``exclude`` and field
serializers never reach a snapshot.

A record whose validation may make state its fields do not show (private attributes,
``mode="before"`` validators, post-init hooks, a custom ``__init__``, ``InitVar``) is
not exact: each export of it is validated back. The exporter (see
:mod:`statemigrate._model._export`) compiles the fields with ``compile_node`` and keeps
the record's config in force while it does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from statemigrate._model._compare import NOT_A_FIELD
from statemigrate._model._export_kinds import TRANSPARENT, VALIDATORS
from statemigrate._model._export_leaves import (
    SCALAR_NODES,
    Node,
    add_extras,
    by_value,
    check_class,
    fail,
    fields_reader,
    kind_of,
    located,
    read_attribute,
    read_item,
)
from statemigrate._model._export_refusals import SchemaNotExportable
from statemigrate._model._paths import FieldName

__all__ = ["CompileNode", "dataclass_node", "model_node", "typed_dict_node"]

CompileNode = Callable[[Mapping[str, Any], list[str]], Node]
"""Compiles the node of a field's schema at a path: the exporter's own dispatch."""


def typed_dict_node(schema: Mapping[str, Any], path: list[str], compile_node: CompileNode) -> Node:
    fields = [
        (name, compile_node(spec["schema"], [*path, name]))
        for name, spec in schema["fields"].items()
    ]
    total = schema.get("total", True)
    required = frozenset(
        name for name, spec in schema["fields"].items() if spec.get("required", total)
    )
    read = fields_reader(fields, read_item, step=FieldName, required=required)
    behavior = schema.get("extra_behavior")
    extras = _extras(schema, path, compile_node) if behavior == "allow" else None
    names = frozenset(name for name, _ in fields)
    # Validation drops a key that is not a field (or, forbidding others, refuses it):
    # written, it would not come back. Read field by field, it would not even be written.
    not_a_field = (
        "this key is not a field of its record, which forbids others: validation refuses it"
        if behavior == "forbid"
        else NOT_A_FIELD
    )

    def convert(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise fail(f"expected a dict, found {kind_of(value)}")
        out = read(value)
        if extras is not None:
            add_extras(out, ((k, v) for k, v in value.items() if k not in names), extras)
        elif len(out) != len(value):  # out holds the fields the value has, and no more
            key = next(key for key in value if key not in names)
            raise located(fail(not_a_field), key)
        return out

    identity = all(node.identity for _, node in fields)
    return Node(convert, identity, all(node.exact for _, node in fields))


def model_node(schema: Mapping[str, Any], path: list[str], compile_node: CompileNode) -> Node:
    cls = schema["cls"]
    inner = schema["schema"]
    if schema.get("root_model"):
        root = compile_node(inner, path)
        convert_root = root.convert

        def convert_root_model(value: Any) -> Any:
            check_class(value, cls)
            return convert_root(value.root)

        return Node(convert_root_model, False, root.exact)
    inner, validated = _inside_validators(inner)
    if inner.get("type") != "model-fields":
        return Node(by_value, False, False)
    fields = [
        (name, compile_node(spec["schema"], [*path, name]))
        for name, spec in inner["fields"].items()
    ]
    read = fields_reader(
        fields, read_attribute, step=FieldName, required=_without_default(inner["fields"])
    )
    allow_extra = schema.get("config", {}).get("extra_fields_behavior") == "allow"
    extras = _extras(inner, path, compile_node) if allow_extra else None

    def convert(value: Any) -> Any:
        check_class(value, cls)
        out = read(value)
        if extras is not None:
            add_extras(out, (value.__pydantic_extra__ or {}).items(), extras)
        return out

    # Private attributes, post-init hooks and custom __init__ hold or make state the
    # fields do not show: validated back, each export shows whether it survives.
    ordinary = not (
        validated
        or cls.__private_attributes__
        or schema.get("post_init")
        or schema.get("custom_init")
    )
    return Node(convert, False, ordinary and all(node.exact for _, node in fields))


def dataclass_node(schema: Mapping[str, Any], path: list[str], compile_node: CompileNode) -> Node:
    cls = schema["cls"]
    args, validated = _inside_validators(schema["schema"])
    if args.get("type") != "dataclass-args":
        return Node(by_value, False, False)
    fields = []
    exact = not (validated or schema.get("post_init"))
    for spec in args["fields"]:
        name = spec["name"]
        if spec.get("init_only") or spec.get("init") is False:
            # Not stored (InitVar) or not accepted (init=False): validation makes
            # it again from the other fields, checked export by export.
            if spec.get("init_only") and spec["schema"].get("type") != "default":
                raise SchemaNotExportable(
                    [*path, name], "an InitVar without a default cannot be restored"
                )
            exact = False
            continue
        fields.append((name, compile_node(spec["schema"], [*path, name])))
    stored = {spec["name"]: spec for spec in args["fields"]}
    required = _without_default({name: stored[name] for name, _ in fields})
    read = fields_reader(fields, read_attribute, step=FieldName, required=required)

    def convert(value: Any) -> Any:
        check_class(value, cls)
        return read(value)

    return Node(convert, False, exact and all(node.exact for _, node in fields))


def _extras(schema: Mapping[str, Any], path: list[str], compile_node: CompileNode) -> Node:
    extras = schema.get("extras_schema")
    return SCALAR_NODES["any"] if extras is None else compile_node(extras, [*path, "[extra]"])


def _without_default(fields: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """The names of the model or dataclass fields (core schema field nodes) that have no
    default: validation refuses a record without them."""
    return frozenset(
        name for name, spec in fields.items() if spec["schema"].get("type") != "default"
    )


def _inside_validators(schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """The schema under a record's ``mode="before"`` (or wrap) validators, which pydantic
    puts between a model or dataclass and its fields, and whether there were any.

    The fields are read as declared all the same, a big int as its text where its field
    says int; the validators may change what they are given, so the export is checked by
    validating it back.
    """
    validated = False
    while schema.get("type") in VALIDATORS or schema.get("type") in TRANSPARENT:
        validated = validated or schema.get("type") in VALIDATORS
        schema = schema["schema"]
    return schema, validated
