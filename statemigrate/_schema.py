"""Schema versions: one pydantic-validated shape of a component's state, and its fingerprint.

Any type pydantic's :class:`~pydantic.TypeAdapter` accepts can be a schema: a
``BaseModel``, a ``TypedDict`` (validated state stays plain dicts, which is far cheaper
for large caches), a dataclass, or a plain annotated type such as ``dict[str, int]``.

The fingerprint of a schema is a hash of its canonical JSON Schema. It changes when the
shape of valid data changes (a field added, removed, renamed or retyped, a default
changed) and stays the same across processes, Python versions with the same pydantic,
and cosmetic edits: titles, descriptions and docstrings, examples, and the names of
nested classes are not part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import pydantic
import pydantic_core
import typing_extensions

from statemigrate._errors import RegistrationError, ValidationError
from statemigrate._inplace import InPlaceChecker, compile_checker
from statemigrate._plaindata import to_plain
from statemigrate._plan import check_component, check_version

__all__ = ["SchemaKind", "SchemaVersion", "canonical_json_schema", "fingerprint_of"]

SchemaKind = Literal["model", "typeddict", "dataclass", "other"]

# Annotation keywords of JSON Schema that never change which data is valid.
_COSMETIC = frozenset({"title", "description", "examples", "$comment"})
# Keywords whose value maps names (field names, definition names, patterns) to schemas:
# the names are data, only the values are schema objects.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
# Keywords whose value is one schema (or, for old-style "items", a list of them).
_SCHEMA_VALUES = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
        "contentSchema",
    }
)
# Keywords whose value is a list of schemas.
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_DEFS_REF = "#/$defs/"


@dataclass(frozen=True)
class SchemaVersion:
    """One registered version of a component's schema.

    Build it with :meth:`create` (the registry does); the constructor takes the
    already computed parts.

    Attributes:
        component: the component name.
        version: the schema version (1 and up).
        type: the schema type as registered.
        adapter: the pydantic adapter that validates and dumps it.
        fingerprint: 32 hex digits of SHA-256 over the canonical JSON Schema.
        kind: ``"model"``, ``"typeddict"``, ``"dataclass"`` or ``"other"``.
        fields: the top-level field names for record kinds, in declaration order.
        required_fields: the fields that must be present.
        in_place: the checker :meth:`adopt` uses to keep data without a copy, or None
            when the schema has parts it does not know (see ``statemigrate._inplace``).
    """

    component: str
    version: int
    type: object
    adapter: pydantic.TypeAdapter[Any] = field(repr=False, compare=False)
    fingerprint: str
    kind: SchemaKind = "other"
    fields: tuple[str, ...] = ()
    required_fields: frozenset[str] = frozenset()
    in_place: InPlaceChecker | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create(cls, component: str, version: int, type_: object) -> SchemaVersion:
        """Build the adapter and fingerprint for ``type_``.

        Raises:
            RegistrationError: the name or version is invalid; ``type_`` is a
                ``typing.TypedDict`` on Python < 3.12 (pydantic needs
                ``typing_extensions.TypedDict`` there); or pydantic cannot build a
                validator or a JSON Schema for it.
        """
        check_component(component)
        check_version(version)
        where = f"schema {component!r} version {version}"
        _reject_typing_typeddict(type_, where)
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(cast(Any, type_))
            # Bounds keep their Python type in pydantic's JSON Schema (a Decimal stays a
            # Decimal); the JSON-ready form makes them text that json can hash.
            schema = pydantic_core.to_jsonable_python(adapter.json_schema(mode="validation"))
        except pydantic.PydanticUserError as exc:
            if exc.code == "typed-dict-version":
                raise RegistrationError(f"{where}: {_TYPEDDICT_HINT}") from exc
            hint = ""
            if exc.code == "class-not-fully-defined":
                # Annotations are resolved in the defining module's globals, so types
                # defined inside a function cannot be found from here.
                hint = "; define the schema and every type it refers to at module level"
            raise RegistrationError(
                f"{where}: pydantic cannot use {type_!r}: {exc.message}{hint}"
            ) from exc
        except (
            pydantic.PydanticSchemaGenerationError,
            pydantic_core.PydanticSerializationError,
            TypeError,
            NameError,
        ) as exc:
            raise RegistrationError(f"{where}: pydantic cannot use {type_!r}: {exc}") from exc
        kind, names, required = _record_fields(type_, schema)
        return cls(
            component=component,
            version=version,
            type=type_,
            adapter=adapter,
            fingerprint=fingerprint_of(schema),
            kind=kind,
            fields=names,
            required_fields=required,
            in_place=compile_checker(adapter.core_schema, name=f"{component} v{version}"),
        )

    def validate(self, data: object) -> Any:
        """Validate plain data and return the state it describes.

        For a ``TypedDict`` schema the result is a new plain dict; for a model or a
        dataclass, an instance of it. Validation is pydantic's default (lax) mode, which
        parses the strings that :meth:`export` writes for datetimes, UUIDs and so on.

        Raises:
            ValidationError: the data does not fit; ``errors`` holds pydantic's error
                list (without the offending input, which may be a whole cache) and the
                pydantic error is chained.
        """
        try:
            return self.adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            raise ValidationError(
                self.component,
                self.version,
                _summarize(exc),
                errors=cast(list[dict[str, object]], errors),
            ) from exc

    def adopt(self, box: list[Any]) -> Any:
        """Validate the one item of ``box`` and take it over, emptying ``box``.

        Same result and errors as :meth:`validate`, for data the caller hands over and
        no longer uses: a restore's decoded and migrated section. When the data already
        is exactly what :meth:`validate` would return, and nothing else refers to any of
        its dicts or lists, it is returned itself rather than copied; for a ``TypedDict``
        schema over a large cache that skips a copy costing about as much as decoding.
        The data comes in a list so that the caller holds no reference of its own while
        references are counted.

        Raises:
            ValidationError: as :meth:`validate`.
        """
        if self.in_place is not None:
            try:
                kept = self.in_place(box)
            except Exception:  # e.g. a key whose __eq__ raises: let pydantic judge it
                kept = False
            if kept:
                return box.pop()
        return self.validate(box.pop())

    def export(self, state: object) -> Any:
        """Turn a state of this schema into plain data.

        The state of a ``TypedDict`` schema (a ``dict``) is returned as it is, without
        a copy: exporting a cache of a million entries costs nothing. It must therefore
        already hold plain data, and the caller must encode or copy it before the
        component changes it. Anything else (a model or dataclass instance, or a dict
        form of one, a value of a bare type such as ``dict[int, str]``) is dumped by
        pydantic where needed and converted with
        :func:`~statemigrate._plaindata.to_plain`, so the result is always new.

        For every valid state ``x``, ``validate(export(x)) == x``.

        Raises:
            ValidationError: the state is not an instance of the schema or holds a value
                with no plain form.
        """
        if type(state) is dict and self.kind == "typeddict":
            return state
        if self.kind in ("model", "dataclass") and not isinstance(
            state, cast(type, self.type) | dict
        ):
            # pydantic would serialize an unrelated object by duck typing; refuse it.
            raise ValidationError(
                self.component,
                self.version,
                f"cannot export {type(state).__qualname__}: expected an instance of"
                f" {cast(type, self.type).__qualname__} or a dict",
            )
        try:
            if isinstance(state, dict) and self.kind != "other":
                return to_plain(state)  # the dict form of a model or dataclass
            dumped = self.adapter.dump_python(state, mode="python", warnings="error")
            return to_plain(dumped)
        except (pydantic_core.PydanticSerializationError, TypeError, ValueError) as exc:
            raise ValidationError(
                self.component, self.version, f"cannot export {type(state).__name__}: {exc}"
            ) from exc

    def json_schema(self) -> dict[str, Any]:
        """Return the canonical JSON Schema that the fingerprint hashes.

        Keys are sorted, cosmetic keywords removed and nested definitions renamed
        ``d0``, ``d1``, ... in order of first use (see :func:`canonical_json_schema`).
        """
        raw = self.adapter.json_schema(mode="validation")
        result: dict[str, Any] = json.loads(_canonical_text(raw))
        return result

    def __str__(self) -> str:
        return f"{self.component} version {self.version}"


_TYPEDDICT_HINT = (
    "pydantic cannot validate typing.TypedDict on Python < 3.12;"
    " define it with typing_extensions.TypedDict instead"
)


def _reject_typing_typeddict(type_: object, where: str) -> None:
    # Checked up front for a clear message at the top level; TypedDicts nested deeper
    # are caught through pydantic's own error code. Can go once Python 3.12 is the floor.
    if sys.version_info < (3, 12) and typing.is_typeddict(type_):
        raise RegistrationError(f"{where}: {_TYPEDDICT_HINT}")


def _record_fields(
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
        if isinstance(ref, str) and ref.startswith(_DEFS_REF):
            root = schema["$defs"][ref[len(_DEFS_REF) :]]
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


def _summarize(exc: pydantic.ValidationError, *, limit: int = 3) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{loc}: {error['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more error{'s' if more > 1 else ''}")
    return "; ".join(parts)


# --- canonical JSON Schema ------------------------------------------------------------


def canonical_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return the canonical form of a JSON Schema produced by pydantic.

    Cosmetic keywords (``title``, ``description``, ``examples``, ``$comment``) are
    removed from schema objects only: a *field* called ``title`` under ``properties``,
    or a ``"title"`` key inside a ``default`` value, is data and stays. ``required``
    lists are sorted, since the order of fields does not change what is valid. Definitions under
    ``$defs`` are renamed ``d0``, ``d1``, ... in the order a sorted walk from the root
    first refers to them, so renaming a nested class does not change the result;
    definitions nothing refers to are dropped.
    """
    cleaned = _rebuild(schema, _normalize)
    defs = cleaned.get("$defs")
    if not isinstance(defs, dict):
        return cast(dict[str, Any], cleaned)
    order = _definition_order(cleaned, defs)
    names = {old: f"d{index}" for index, old in enumerate(order)}
    root = {key: value for key, value in cleaned.items() if key != "$defs"}
    result = cast(dict[str, Any], _rebuild(root, lambda obj: _rename_refs(obj, names)))
    if order:
        result["$defs"] = {
            names[old]: _rebuild(defs[old], lambda obj: _rename_refs(obj, names)) for old in order
        }
    return result


def fingerprint_of(schema: dict[str, Any]) -> str:
    """Return 32 hex digits of SHA-256 over the canonical text of ``schema``."""
    return hashlib.sha256(_canonical_text(schema).encode("ascii")).hexdigest()[:32]


def _canonical_text(schema: dict[str, Any]) -> str:
    return json.dumps(
        canonical_json_schema(schema), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


def _rebuild(node: Any, fix: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Copy a schema, applying ``fix`` to every schema object (and nothing else)."""
    if not isinstance(node, dict):
        return node  # a boolean schema
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _rebuild(sub, fix) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_rebuild(sub, fix) for sub in value]
        elif key in _SCHEMA_VALUES:
            if isinstance(value, list):
                out[key] = [_rebuild(sub, fix) for sub in value]
            else:
                out[key] = _rebuild(value, fix)
        else:
            out[key] = value
    return fix(out)


def _children(node: dict[str, Any]) -> Iterator[Any]:
    """Yield the direct subschemas of a schema object in a key-sorted order."""
    for key in sorted(node):
        value = node[key]
        if key == "$defs":
            continue  # definitions are visited when something refers to them
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            yield from (value[name] for name in sorted(value))
        elif key in _SCHEMA_LISTS or (key in _SCHEMA_VALUES and isinstance(value, list)):
            if isinstance(value, list):
                yield from value
        elif key in _SCHEMA_VALUES:
            yield value


def _refs_in(node: Any) -> Iterator[str]:
    """Yield the ``$defs`` names a schema refers to, in a pre-order, key-sorted walk."""
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEFS_REF):
        yield ref[len(_DEFS_REF) :]
    for child in _children(node):
        yield from _refs_in(child)


def _definition_order(root: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """Name every definition reachable from ``root``, in order of first reference."""
    order: list[str] = []
    todo = [root]
    while todo:
        for name in _refs_in(todo.pop(0)):
            if name in defs and name not in order:
                order.append(name)
                todo.append(defs[name])
    return order


def _normalize(obj: dict[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in obj.items() if key not in _COSMETIC}
    required = out.get("required")
    if isinstance(required, list) and all(isinstance(name, str) for name in required):
        out["required"] = sorted(required)  # a set of names: field order is cosmetic
    return out


def _rename_refs(obj: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    def rename(ref: object) -> object:
        if isinstance(ref, str) and ref.startswith(_DEFS_REF):
            old = ref[len(_DEFS_REF) :]
            if old in names:
                return _DEFS_REF + names[old]
        return ref

    if "$ref" in obj:
        obj["$ref"] = rename(obj["$ref"])
    discriminator = obj.get("discriminator")
    if isinstance(discriminator, dict) and isinstance(discriminator.get("mapping"), dict):
        mapping = {key: rename(ref) for key, ref in discriminator["mapping"].items()}
        obj["discriminator"] = {**discriminator, "mapping": mapping}
    return obj
