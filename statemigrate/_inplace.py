"""In-place validation: skip pydantic's copy when the data already is what it would return.

pydantic validates a ``TypedDict`` schema by building a new dict for every record and a
new list for every list, even when the input already has exactly the declared types.
During a restore the decoded and migrated data belongs to the restore alone, so that copy
buys nothing, and for a large cache it costs about as much as decoding did.

:func:`compile_checker` reads a schema's pydantic core schema. If every node in it is one
this module knows (a ``TypedDict``, ``dict``, ``list``, optional value, ``str``, ``int``,
``float``, ``bool``, ``bytes``, ``None`` or ``Any``, with no constraint, validator, alias,
default or config), it returns a checker; otherwise ``None``. The checker accepts data
only when pydantic's default (lax) validation would return an equal value with the same
types and key order, without sharing containers with anything else:

- every value has exactly its declared type. pydantic converts an ``int`` where a
  ``float`` is declared, a ``bool`` where an ``int`` is, a ``str`` subclass or a tuple
  for a list, so the checker declines all of those;
- every ``TypedDict`` holds exactly its fields, in declaration order, under plain ``str``
  keys: pydantic drops extra keys and writes the fields in declaration order under its
  own names;
- each dict or list that pydantic would copy is referenced once, by its parent. The
  checker counts references (``sys.getrefcount``): a migration step that put one list
  into every record, or a module-level default into one of them, would otherwise leave
  the restored state sharing it, where pydantic's copy would not.

Whatever the checker declines goes to pydantic, which converts it or says what is wrong,
so the result of a validation never depends on the checker.

The checker is Python source generated for the schema, with one nested loop per level
and no function call per value: it is several times faster than a walk that dispatches
on node kinds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["InPlaceChecker", "compile_checker", "sole_reference_count"]

InPlaceChecker = Callable[[list[Any]], bool]
"""Takes a one-item list holding the data; True when the data can be kept as it is."""


@dataclass(frozen=True)
class _Exact:
    """A value of exactly this immutable type."""

    type: type


@dataclass(frozen=True)
class _AnyValue:
    """Anything: pydantic returns it as it is, containers included."""


@dataclass(frozen=True)
class _Optional:
    inner: _Node


@dataclass(frozen=True)
class _List:
    item: _Node


@dataclass(frozen=True)
class _Dict:
    key: _Exact | _AnyValue
    value: _Node


@dataclass(frozen=True)
class _Field:
    name: str
    node: _Node
    required: bool


@dataclass(frozen=True)
class _Record:
    """A ``TypedDict``: a dict holding its fields in declaration order."""

    fields: tuple[_Field, ...]


_Node = _Exact | _AnyValue | _Optional | _List | _Dict | _Record

_ANY = _AnyValue()
_SCALARS: Mapping[str, type] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
    "none": type(None),
}
# Keys any core schema may carry without changing what validation returns.
_INERT = frozenset({"type", "ref", "metadata", "serialization"})
# The keys each kind may carry besides those; any other key (min_length, strict,
# allow_inf_nan, extras_schema, ...) changes validation, and the checker declines it.
_PARTS: Mapping[str, frozenset[str]] = {
    **{kind: frozenset() for kind in _SCALARS},
    "any": frozenset(),
    "nullable": frozenset({"schema"}),
    "list": frozenset({"items_schema"}),
    "dict": frozenset({"keys_schema", "values_schema"}),
    "typed-dict": frozenset(
        {"fields", "cls", "cls_name", "computed_fields", "extra_behavior", "config", "total"}
    ),
    "definitions": frozenset({"schema", "definitions"}),
    "definition-ref": frozenset({"schema_ref"}),
}
_FIELD_KEYS = frozenset(
    {"type", "schema", "required", "metadata", "serialization_alias", "serialization_exclude"}
)
# A TypedDict's config reaches every validator below it (str_strip_whitespace,
# str_to_lower, allow_inf_nan, ...); only its title is known to change nothing.
_INERT_CONFIG = frozenset({"title"})


def compile_checker(
    core_schema: Mapping[str, Any], *, name: str = "schema"
) -> InPlaceChecker | None:
    """The in-place checker for ``core_schema``, or None when it has a node not known here.

    ``name`` only labels the generated code in tracebacks and profiles.
    """
    if sole_reference_count() is None:
        return None
    try:
        node = _parse(core_schema, {}, frozenset())
    except _Unsupported:
        return None
    return _generate(node, name)


class _Unsupported(Exception):
    """A core schema node the checker does not know."""


def _parse(
    schema: Mapping[str, Any], definitions: dict[str, Mapping[str, Any]], resolving: frozenset[str]
) -> _Node:
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _PARTS:
        raise _Unsupported(kind)
    if set(schema) - _INERT - _PARTS[kind]:
        raise _Unsupported(kind)
    if kind in _SCALARS:
        return _Exact(_SCALARS[kind])
    if kind == "any":
        return _ANY
    if kind == "nullable":
        return _Optional(_parse(schema["schema"], definitions, resolving))
    if kind == "list":
        return _List(_parse_or_any(schema.get("items_schema"), definitions, resolving))
    if kind == "dict":
        key = _parse_or_any(schema.get("keys_schema"), definitions, resolving)
        if not (key == _ANY or key in (_Exact(str), _Exact(int))):
            raise _Unsupported("dict key")
        assert isinstance(key, (_Exact, _AnyValue))
        return _Dict(key, _parse_or_any(schema.get("values_schema"), definitions, resolving))
    if kind == "typed-dict":
        return _parse_record(schema, definitions, resolving)
    if kind == "definitions":
        known = dict(definitions)
        for definition in schema["definitions"]:
            known[definition["ref"]] = definition
        return _parse(schema["schema"], known, resolving)
    ref = schema["schema_ref"]  # definition-ref
    if ref in resolving or ref not in definitions:
        raise _Unsupported("recursive schema")  # recursion would need a walk, not loops
    return _parse(definitions[ref], definitions, resolving | {ref})


def _parse_or_any(
    schema: Mapping[str, Any] | None,
    definitions: dict[str, Mapping[str, Any]],
    resolving: frozenset[str],
) -> _Node:
    return _ANY if schema is None else _parse(schema, definitions, resolving)


def _parse_record(
    schema: Mapping[str, Any], definitions: dict[str, Mapping[str, Any]], resolving: frozenset[str]
) -> _Record:
    if schema.get("extra_behavior", "ignore") not in ("ignore", "forbid"):
        raise _Unsupported("extra fields allowed")
    if schema.get("computed_fields") or set(schema.get("config") or {}) - _INERT_CONFIG:
        raise _Unsupported("config")
    total = schema.get("total", True)
    fields = []
    for name, spec in schema["fields"].items():
        if spec.get("type") != "typed-dict-field" or set(spec) - _FIELD_KEYS:
            raise _Unsupported("field")
        required = bool(spec.get("required", total))
        fields.append(_Field(name, _parse(spec["schema"], definitions, resolving), required))
    return _Record(tuple(fields))


def sole_reference_count() -> int | None:
    """What ``sys.getrefcount`` says of a container held once, read through a local name.

    The generated code binds each container to a local name in one of three ways (an
    item of a dict or list by subscript, a list item by iteration, a dict value by
    iteration) and counts its references there. The figure depends on the interpreter
    (the local name and the call's own argument may or may not count), so it is measured
    the same three ways; None if they disagree or the interpreter has no reference
    counts, and then no checker is made.
    """
    getrefcount = getattr(sys, "getrefcount", None)
    if getrefcount is None:
        return None

    def by_subscript(holder: list[object]) -> int:
        value = holder[0]
        return int(getrefcount(value))

    def by_list_item(holder: list[object]) -> int:
        for value in holder:
            return int(getrefcount(value))
        raise AssertionError("unreachable: the holder has one item")

    def by_dict_value(holder: dict[str, object]) -> int:
        for value in holder.values():
            return int(getrefcount(value))
        raise AssertionError("unreachable: the holder has one item")

    counts = {by_subscript([[]]), by_list_item([[]]), by_dict_value({"": []})}
    return counts.pop() if len(counts) == 1 else None


class _Source:
    """Lines of the generated function, with indentation and fresh local names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, object] = {}
        self._names = 0

    def local(self) -> str:
        self._names += 1
        return f"v{self._names}"

    def constant(self, value: object) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name


def _generate(root: _Node, name: str) -> InPlaceChecker:
    source = _Source()
    body: list[str] = []
    _emit(root, "v0", source, body, "")
    lines = ["def check(box):", "    v0 = box[0]"]
    lines += ["    " + line for line in body]
    lines.append("    return True")
    text = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {
        "__builtins__": {},  # the code names every builtin it uses below
        "type": type,
        "tuple": tuple,
        "dict": dict,
        "list": list,
        "getrefcount": sys.getrefcount,
        "SOLE": sole_reference_count(),
        **{exact.__name__ + "_": exact for exact in _SCALARS.values()},
        **source.constants,
    }
    # Safe to run: field names enter the source only as repr() literals.
    exec(compile(text, f"<in-place check of {name}>", "exec"), namespace)
    check: InPlaceChecker = namespace["check"]
    check.__doc__ = text  # the generated source, for whoever debugs it
    return check


def _emit(node: _Node, var: str, source: _Source, out: list[str], indent: str) -> None:
    """Append lines that ``return False`` unless ``var`` (bound once) fits ``node``."""
    if isinstance(node, _AnyValue):
        return
    if isinstance(node, _Exact):
        out.append(f"{indent}if type({var}) is not {node.type.__name__}_: return False")
        return
    if isinstance(node, _Optional):
        inner: list[str] = []
        _emit(node.inner, var, source, inner, indent + "    ")
        if inner:
            out.append(f"{indent}if {var} is not None:")
            out.extend(inner)
        return
    container = "list" if isinstance(node, _List) else "dict"
    out.append(
        f"{indent}if type({var}) is not {container} or getrefcount({var}) != SOLE: return False"
    )
    if isinstance(node, _List):
        _emit_loop(f"for {{item}} in {var}:", node.item, source, out, indent)
    elif isinstance(node, _Dict):
        if node.key != _ANY:
            _emit_loop(f"for {{item}} in {var}:", node.key, source, out, indent)
        _emit_loop(f"for {{item}} in {var}.values():", node.value, source, out, indent)
    else:
        _emit_record(node, var, source, out, indent)


def _emit_loop(header: str, node: _Node, source: _Source, out: list[str], indent: str) -> None:
    item = source.local()
    body: list[str] = []
    _emit(node, item, source, body, indent + "    ")
    if body:  # a loop over values of Any checks nothing
        out.append(indent + header.format(item=item))
        out.extend(body)


def _emit_record(record: _Record, var: str, source: _Source, out: list[str], indent: str) -> None:
    names = tuple(field.name for field in record.fields)
    if all(field.required for field in record.fields):
        # Equal keys may still be str subclasses (a StrEnum member a step used as a key);
        # pydantic's output would hold the plain field names instead.
        key = source.local()
        out.append(f"{indent}if tuple({var}) != {source.constant(names)}: return False")
        out.append(f"{indent}for {key} in {var}:")
        out.append(f"{indent}    if type({key}) is not str_: return False")
    else:
        required = frozenset(field.name for field in record.fields if field.required)
        fits = source.constant(_keys_fit(names, required))
        out.append(f"{indent}if not {fits}(tuple({var})): return False")
    for field in record.fields:
        body: list[str] = []
        value = source.local()
        _emit(field.node, value, source, body, indent + ("" if field.required else "    "))
        if not body:
            continue
        if field.required:
            out.append(f"{indent}{value} = {var}[{field.name!r}]")
        else:
            out.append(f"{indent}if {field.name!r} in {var}:")
            out.append(f"{indent}    {value} = {var}[{field.name!r}]")
        out.extend(body)


def _keys_fit(
    names: tuple[str, ...], required: frozenset[str]
) -> Callable[[tuple[object, ...]], bool]:
    """A test that keys are some of ``names``, in that order, with every required one."""
    position = {name: index for index, name in enumerate(names)}

    def fits(keys: tuple[object, ...]) -> bool:
        last = -1
        for key in keys:
            index = position.get(key, -1) if type(key) is str else -1
            if index <= last:
                return False
            last = index
        return required.issubset(keys)

    return fits
