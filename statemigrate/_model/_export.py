"""Exporters: turn a schema's state into plain data that validates back to the same state.

A snapshot holds plain data (see ``_plaindata``), and a restore turns it back into state
with pydantic's lax validation, by field name. :func:`compile_exporter` reads a schema's
pydantic core schema once and builds the converse: a tree of small converters, one per
node, that reads the state by its *declared* shape, not by pydantic's serializer. So
what a user customised for other outputs (aliases, ``exclude``, ``@field_serializer``,
``PlainSerializer``, ``@computed_field``, masked secrets) never reaches a snapshot: a
model is read field by field from its attributes and written under its field names.

Leaves follow pydantic's JSON conventions, which lax validation parses back: datetimes,
dates and times as ISO 8601 strings, timedeltas as ISO 8601 durations, decimals, UUIDs,
paths, IP addresses and URLs as strings, enums as their value, sets, tuples and deques
as lists, integers past 64 bits as decimal strings, non-``str`` dict keys as the string
that lax validation parses back into the key. Such a string in a union may be read back
as another member (``int | str`` gives a ``str``): a union validates it back as it is
written, and refuses an int that would not come back as itself.

Three outcomes, decided when the schema registers:

- a node with no plain form (a type pydantic accepts only as an instance, a dict key that
  no string parses back into, a callable) refuses the schema: :class:`SchemaNotExportable`
  names the field path;
- a node whose conversion is known to validate back to an equal value of the same type
  is *exact*;
- any other node (validators, unions that lax validation may resolve differently, models
  with private attributes, custom types) is converted the best way known and marked not
  exact: the schema layer then validates each export back and compares it with the state,
  so that a value that would come back changed is refused at snapshot time, never found
  out at restore.

A value under ``Any`` must be plain data already: pydantic returns it as it is, so a
tuple would come back a list and a datetime a string. It is refused with its path.

This module holds the compiler, which dispatches on the kind of each node; records,
unions and dict keys compile in ``_export_records``, ``_export_unions`` and
``_export_keys``, the refusals made at registration live in ``_export_refusals``, and the
converters and the checks made at export in ``_export_leaves`` and ``_export_checks``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from statemigrate._model._export_checks import (
    checked_leaf,
    checked_length,
    checked_literal,
    checked_path,
    is_path_check,
)
from statemigrate._model._export_keys import key_node
from statemigrate._model._export_kinds import (
    TRANSPARENT,
    VALIDATORS,
    instance_class,
    known_class,
)
from statemigrate._model._export_leaves import (
    SCALAR_NODES,
    Convert,
    Node,
    NotExportable,
    by_value,
    check_class,
    dict_of,
    fail,
    kept_if_plain,
    kind_of,
    list_of,
    set_of,
    tuple_of,
)
from statemigrate._model._export_records import dataclass_node, model_node, typed_dict_node
from statemigrate._model._export_refusals import (
    REFUSED,
    SchemaNotExportable,
    check_member_values,
    check_values,
    refuse_decoder,
)
from statemigrate._model._export_unions import union_node
from statemigrate._model._freshstack import EVERY, on_fresh_stack

__all__ = [
    "CHECKED_DEPTH",
    "Exporter",
    "MAX_REFERENCE_DEPTH",
    "NotExportable",
    "SchemaNotExportable",
    "compile_exporter",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Exporter:
    """The compiled export of one schema.

    Attributes:
        convert: state to new plain data; raises :class:`NotExportable`.
        identity: a valid state already is plain data (a ``TypedDict`` of plain types)
            and is exact: exporting it needs no walk, the packer's check suffices.
        exact: every conversion is known to round-trip; when False, each export must be
            validated back and compared with the state.
        must_check: whether this thread's last ``convert`` must be validated back all
            the same: its value is nested deep in recursive types, or holds a deque
            with a ``maxlen``, which only a validator can give back.
        walk_identity: of an identity exporter, the walk of a state that did not pack
            as it is: it converts what ``convert`` converts (an int past 64 bits to its
            text) but keeps each plain value of a scalar field as it is, as the state
            handed over as it is keeps it (``"5"`` in an ``int`` field, which a restore
            validates into ``5``). So whether such a value is taken does not depend on
            a big int elsewhere in the state. ``None`` for other exporters.
    """

    convert: Convert
    identity: bool
    exact: bool
    must_check: Callable[[], bool]
    walk_identity: Convert | None = None

    def __call__(self, value: Any) -> Any:
        return self.convert(value)


def compile_exporter(core_schema: Mapping[str, Any]) -> Exporter:
    """Compile the exporter of a pydantic core schema.

    ``must_check()`` tells whether the last ``convert`` of this thread met a value nested
    in more than :data:`CHECKED_DEPTH` references, or a deque with a ``maxlen``; its
    export must then be validated back even when the exporter is exact.

    Raises:
        SchemaNotExportable: a part of the schema has no plain form.
    """
    compiler = _Compiler()
    node = compiler.node(core_schema, [])
    walk = compiler._walk
    convert_node = node.convert

    def convert(value: Any) -> Any:
        walk.unsure = False
        return convert_node(value)

    def must_check() -> bool:
        return bool(getattr(walk, "unsure", False))

    # A state handed over as it is is not checked: only an exact one may be.
    identity = node.identity and node.exact
    walk_identity = _Compiler(keep_plain=True).node(core_schema, []).convert if identity else None
    return Exporter(convert, identity, node.exact, must_check, walk_identity)


CHECKED_DEPTH = 128
"""A value nested in more references to definitions (the recursive parts of a schema)
than this is checked by validating its export back: pydantic's recursion guard stops
validating at about twice as many (255 at most), by a count of its own."""

MAX_REFERENCE_DEPTH = 255
"""No value nested in more references than this validates: refused without a check."""


# --- the compiler ---------------------------------------------------------------------


class _Compiler:
    """Compiles nodes, resolving ``definition-ref`` lazily so that recursion works."""

    def __init__(self, *, keep_plain: bool = False) -> None:
        # Scalar leaves keep a plain value of another type as it is (see Exporter).
        self._keep_plain = keep_plain
        self._definitions: dict[str, Mapping[str, Any]] = {}
        self._compiled: dict[str, Node] = {}
        self._cells: dict[str, list[Convert]] = {}  # definitions being compiled
        # The converter running: the references it entered, and whether it met a value
        # its export must be validated back for (nested too deep, a bounded deque).
        self._walk = threading.local()
        # The config of the record being compiled: its settings (str_max_length,
        # allow_inf_nan, ...) constrain the leaves in it, as its own validator's do.
        self._config: Mapping[str, Any] = {}
        self._handlers: Mapping[str, Callable[[Mapping[str, Any], list[str]], Node]] = {
            "definitions": self._on_definitions,
            "definition-ref": self._on_definition_ref,
            "nullable": self._on_nullable,
            "literal": self._on_literal,
            "enum": self._on_enum,
            "list": self._on_list,
            "deque": self._on_deque,
            "set": self._on_set,
            "frozenset": self._on_set,
            "tuple": self._on_tuple,
            "named-tuple": self._on_named_tuple,
            "dict": self._on_dict,
            "ordered-dict": self._on_dict_subclass,
            "counter": self._on_dict_subclass,
            "typed-dict": self._on_typed_dict,
            "model": self._on_model,
            "dataclass": self._on_dataclass,
            "union": self._on_union,
            "tagged-union": self._on_tagged_union,
            "lax-or-strict": self._on_lax_or_strict,
            "json-or-python": self._on_json_or_python,
            "is-instance": self._on_is_instance,
            "chain": self._on_chain,
        }

    def node(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        kind = str(schema.get("type"))
        if kind in SCALAR_NODES:
            leaf = checked_leaf(SCALAR_NODES[kind], schema, self._config)
            if self._keep_plain and kind != "any":
                keep = kept_if_plain(leaf.convert, float_field=kind == "float")
                return Node(keep, leaf.identity, leaf.exact)
            return leaf
        if kind in REFUSED:
            raise SchemaNotExportable(path, REFUSED[kind])
        if kind in TRANSPARENT:
            return self.node(schema["schema"], path)
        if is_path_check(schema):
            # NewPath and the like: a path, whose file-system test is made at export.
            return checked_path(self.node(schema["schema"], path), schema)
        if kind in VALIDATORS:
            # A validator may change what it is given: the export is checked by
            # validating it back (an idempotent validator passes that check).
            refuse_decoder(schema, path)
            wrapped = schema["schema"]
            if kind == "function-after" and wrapped.get("type") == "enum":
                # use_enum_values: the state holds members' values, not members.
                inner = self._on_enum(wrapped, path, values_too=True)
            else:
                inner = self.node(wrapped, path)
            return Node(inner.convert, inner.identity, False)
        handler = self._handlers.get(kind)
        if handler is None:  # function-plain validators, custom types, json, ...
            return Node(by_value, False, False)
        return handler(schema, path)

    # definitions and references

    def _on_definitions(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        for definition in schema["definitions"]:
            self._definitions[definition["ref"]] = definition
        return self.node(schema["schema"], path)

    def _on_definition_ref(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        ref = schema["schema_ref"]
        done = self._compiled.get(ref)
        if done is not None:
            return done
        pending = self._cells.get(ref)
        if pending is not None:
            # Recursion: the definition is being compiled; a cycle adds no conversion of
            # its own, so the node is as exact as the rest of it. It is not plain as it
            # is, though: the definition counts its depth, value by value.
            later: list[Convert] = pending

            def forward(value: Any) -> Any:
                return later[0](value)

            return Node(forward, False, True)
        cell: list[Convert] = []
        self._cells[ref] = cell
        definition = {key: value for key, value in self._definitions[ref].items() if key != "ref"}
        inner = self.node(definition, path)
        node = Node(self._counted(inner.convert), inner.identity, inner.exact)
        cell.append(node.convert)
        del self._cells[ref]
        self._compiled[ref] = node
        return node

    def _counted(self, convert_inner: Convert) -> Convert:
        """``convert_inner``, counting how many references the value is nested in.

        pydantic validates a limited nesting of references (its recursion guard): a
        value nested in more than :data:`CHECKED_DEPTH` marks its export for a check
        by validation, which finds out whether it comes back; past
        :data:`MAX_REFERENCE_DEPTH`, no validation would take it.

        The walk takes a few Python calls per reference. Where the stack runs out
        (``RecursionError``), it goes on from the last reference at the first level or
        a multiple of ``EVERY`` levels below it, on a fresh stack (see ``_freshstack``):
        a state that a restore takes, any process exports again, whatever its
        recursion limit and however deep the stack it exports from.
        """
        depth = self._walk

        def convert(value: Any) -> Any:
            level = getattr(depth, "level", 0) + 1
            if level > CHECKED_DEPTH:
                if level > MAX_REFERENCE_DEPTH:
                    raise fail(
                        f"nested in more than {MAX_REFERENCE_DEPTH} levels of recursive"
                        " types, more than pydantic validates"
                    )
                depth.unsure = True
            depth.level = level
            try:
                return convert_inner(value)
            except RecursionError:
                if level % EVERY != 1:
                    raise  # up to the level that moves
                unsure = getattr(depth, "unsure", False)
                out, depth.unsure = on_fresh_stack(resume, value, level, unsure)
                return out
            finally:
                depth.level = level - 1

        def resume(value: Any, level: int, unsure: bool) -> tuple[Any, bool]:
            """``convert_inner`` at ``level`` on a fresh thread, whose walk starts where
            the caller's stopped; and whether its value must now be validated back."""
            depth.level, depth.unsure = level, unsure
            return convert_inner(value), depth.unsure

        return convert

    # optional values, literals, enums

    def _on_nullable(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        inner = self.node(schema["schema"], path)
        convert_inner = inner.convert

        def convert(value: Any) -> Any:
            return None if value is None else convert_inner(value)

        return Node(convert, inner.identity, inner.exact)

    def _on_literal(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        check_values(schema, path)
        check_member_values(schema, path)
        plain = all(type(item) in _PLAIN_TYPES for item in schema["expected"])
        if not plain:
            return Node(by_value, False, False)
        return Node(checked_literal(schema), True, True)

    def _on_enum(
        self, schema: Mapping[str, Any], path: list[str], *, values_too: bool = False
    ) -> Node:
        """An enum's members as their values; with ``values_too``, those values as well
        (a model with ``use_enum_values`` holds them, its export checked by validation)."""
        cls = schema["cls"]
        if not all(type(member.value) in _PLAIN_TYPES for member in schema["members"]):
            raise SchemaNotExportable(
                path, f"enum {cls.__qualname__} has member values that are not plain data"
            )
        check_values(schema, path)
        values = {(type(m.value), m.value) for m in schema["members"]} if values_too else set()

        def convert(value: Any) -> Any:
            if not isinstance(value, cls):
                if (type(value), value) in values:
                    return value
                raise fail(f"expected a {cls.__qualname__} member, found {kind_of(value)}")
            return value.value

        # Combined flags are no members: their values are checked by validating back.
        return Node(convert, False, not issubclass(cls, enum.Flag))

    # containers

    def _on_list(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        item = self._items(schema, path)
        bounded = _has_length_bounds(schema)
        convert = checked_length(list_of(item), schema)
        return Node(convert, item.identity and not bounded, item.exact)

    def _on_deque(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        item = self._items(schema, path)
        convert_items = checked_length(list_of(item), schema)
        walk = self._walk

        def convert(value: Any) -> Any:
            if isinstance(value, collections.deque) and value.maxlen is not None:
                # A snapshot holds the items; only a validator can give the maxlen back,
                # so this export is validated back and compared, maxlen and all.
                walk.unsure = True
            return convert_items(value)

        return Node(convert, False, item.exact)

    def _on_set(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        item = self._items(schema, path)
        return Node(checked_length(set_of(item), schema), False, item.exact)

    def _items(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        items = schema.get("items_schema")
        if items is None:
            return SCALAR_NODES["any"]
        return self.node(items, [*path, "[item]"])

    def _on_tuple(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        items = [
            self.node(item, [*path, f"[{index}]"])
            for index, item in enumerate(schema.get("items_schema", []))
        ]
        variadic = schema.get("variadic_item_index")
        if not items:
            items, variadic = [SCALAR_NODES["any"]], 0
        convert = checked_length(tuple_of(items, variadic), schema)
        return Node(convert, False, all(node.exact for node in items))

    def _on_named_tuple(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        # A list of its fields' plain values, in order: validation builds the class.
        cls = schema["cls"]
        fields = [self.node(spec["schema"], [*path, spec["name"]]) for spec in schema["fields"]]
        convert_fields = tuple_of(fields, None)

        def convert(value: Any) -> Any:
            check_class(value, cls)
            return convert_fields(value)

        return Node(convert, False, all(node.exact for node in fields))

    def _on_dict(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        keys_schema = schema.get("keys_schema", _ANY_SCHEMA)
        key = key_node(keys_schema, [*path, "[key]"], self._definitions, self._config)
        value = self.node(schema.get("values_schema", _ANY_SCHEMA), [*path, "[value]"])
        return Node(
            checked_length(dict_of(key.convert, value), schema),
            key.identity and value.identity and not _has_length_bounds(schema),
            key.exact and value.exact,
        )

    def _on_dict_subclass(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        """An ``OrderedDict`` or a ``Counter``: written as a dict is, its keys and values
        by their declared types (an int past 64 bits as its text), and validated back,
        which checks that it comes back of its own class."""
        node = self._on_dict(schema, path)
        return Node(node.convert, False, False)

    # records

    def _under_config(self, schema: Mapping[str, Any], compile_record: Callable[[], Node]) -> Node:
        """Compile a record with its own config in force, as pydantic validates it."""
        outer = self._config
        self._config = schema.get("config") or outer
        try:
            return compile_record()
        finally:
            self._config = outer

    def _on_typed_dict(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        return self._under_config(schema, lambda: typed_dict_node(schema, path, self.node))

    def _on_model(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        return self._under_config(schema, lambda: model_node(schema, path, self.node))

    def _on_dataclass(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        return self._under_config(schema, lambda: dataclass_node(schema, path, self.node))

    # unions and wrappers

    def _on_union(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        choices = [c[0] if isinstance(c, tuple | list) else c for c in schema["choices"]]
        return self._choices(schema, choices, path)

    def _on_tagged_union(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        return self._choices(schema, list(schema["choices"].values()), path)

    def _choices(
        self, schema: Mapping[str, Any], choices: Sequence[Mapping[str, Any]], path: list[str]
    ) -> Node:
        nodes = [self._part(choice, path) for choice in choices]
        return union_node(schema, choices, nodes, self._definitions, self._config)

    def _on_lax_or_strict(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        known = known_class(instance_class(schema.get("strict_schema", {})))
        return known or self._part(schema["lax_schema"], path)

    def _on_json_or_python(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        known = known_class(instance_class(schema))
        return known or self._part(schema["python_schema"], path)

    def _on_is_instance(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        cls = schema["cls"]
        known = known_class(cls)
        if known is not None:
            return known
        name = getattr(cls, "__qualname__", repr(cls))
        raise SchemaNotExportable(
            path,
            f"{name} is accepted only as an instance (arbitrary_types_allowed), so it has"
            " no plain form; give it a pydantic schema or store its plain fields",
        )

    def _on_chain(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        first = self._part(schema["steps"][0], path)
        return Node(first.convert, False, False)

    def _part(self, schema: Mapping[str, Any], path: list[str]) -> Node:
        """A node that is one part of a type's own schema (a union's member, a chain's
        first step, the Python side of ``json-or-python``): there an instance check is
        the type's own doing, not ``arbitrary_types_allowed``."""
        if schema.get("type") != "is-instance" or known_class(schema["cls"]) is not None:
            return self.node(schema, path)
        cls = schema["cls"]
        name = getattr(cls, "__qualname__", None) or repr(cls)
        if getattr(cls, "__module__", None) in ("typing", "collections.abc"):
            detail = (
                f"{name} takes any instance of {name} as it is, which has no one plain form"
                " (a tuple would come back a list); declare a concrete type such as"
                " list[...] or tuple[..., ...]"
            )
        else:
            detail = (
                f"its type's schema takes a {name} instance as it is, and a snapshot has no"
                f" plain form for one; give {name} a pydantic schema of plain data, or store"
                " its plain fields"
            )
        raise SchemaNotExportable(path, detail)


def _has_length_bounds(schema: Mapping[str, Any]) -> bool:
    return "min_length" in schema or "max_length" in schema


_ANY_SCHEMA: Mapping[str, Any] = {"type": "any"}
_PLAIN_TYPES = (str, int, float, bool, bytes, type(None))


