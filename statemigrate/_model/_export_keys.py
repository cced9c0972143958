"""How a dict's keys are written: snapshot maps hold ``str`` keys (``bytes`` ones as they
are), so a key is written as the text that lax validation parses back into an equal key
of the same type, or its schema is refused with :class:`SchemaNotExportable` when no
such text is known.

The exporter (see :mod:`statemigrate._model._export`) compiles a dict's key with
:func:`key_node`; the values are compiled as any other node.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

from statemigrate._model._export_checks import checked_leaf
from statemigrate._model._export_kinds import (
    TRANSPARENT,
    VALIDATORS,
    describe,
    instance_class,
    known_class,
)
from statemigrate._model._export_leaves import (
    IP_ANY_TYPES,
    IP_TYPES,
    KEY_TEXT,
    Node,
    as_text_of,
    fail,
    kind_of,
    to_bytes,
    to_str,
)
from statemigrate._model._export_refusals import (
    SchemaNotExportable,
    check_values,
    refuse_decoder,
)

__all__ = ["key_node"]


def key_node(
    schema: Mapping[str, Any],
    path: list[str],
    definitions: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
    *,
    values_too: bool = False,
) -> Node:
    """How to write a key as text: ``identity`` when keys are plain ``str``, ``exact``
    unless a validator may change the key (the export is then validated back)."""
    kind = schema.get("type")
    if kind in TRANSPARENT:
        return key_node(schema["schema"], path, definitions, config, values_too=values_too)
    if kind in VALIDATORS:
        refuse_decoder(schema, path)  # a key is decoded again as a value would be
        inner_schema = schema["schema"]
        enum_values = kind == "function-after" and inner_schema.get("type") == "enum"
        inner = key_node(inner_schema, path, definitions, config, values_too=enum_values)
        return Node(inner.convert, inner.identity, False)
    if kind == "definition-ref":
        return key_node(definitions[schema["schema_ref"]], path, definitions, config)
    if kind == "any":
        return Node(_any_key, True, True)
    if kind == "bytes":
        return Node(to_bytes, True, True)  # the decoder takes bytes keys as they are
    if kind in KEY_TEXT:
        return checked_leaf(Node(KEY_TEXT[str(kind)], kind == "str", True), schema, config)
    if kind == "enum":
        check_values(schema, path)
    if kind == "enum" and _text_parses_back(schema):
        cls = schema["cls"]
        members = frozenset(schema["members"])
        values = {(type(m.value), m.value) for m in members} if values_too else set()

        def enum_key(key: Any) -> str:
            if not isinstance(key, cls):
                if (type(key), key) in values:  # use_enum_values
                    return str(key)
                raise fail(f"expected a {cls.__qualname__} key, found {kind_of(key)}")
            if key not in members:  # a combination of flags: validation takes members
                raise fail(f"the key {key!r} is not a member of {cls.__qualname__}")
            return str(key.value)

        return Node(enum_key, False, True)
    if kind == "literal" and all(type(item) is str for item in schema["expected"]):
        return Node(to_str, True, True)
    text_key = _text_key(schema)
    if text_key is not None:
        return text_key
    if kind == "enum":
        raise SchemaNotExportable(
            path,
            f"dict keys of enum {describe(schema)} cannot be stored: snapshot maps have"
            " str keys, and lax validation parses text back into a member only when"
            " every value is a str or the enum is an IntEnum",
        )
    what = describe(schema)
    raise SchemaNotExportable(
        path,
        # "type SecretStr", but "a union (int | str)" and "a custom type" as they are.
        f"dict keys of {what if what.startswith('a ') else 'type ' + what} cannot be"
        " stored: snapshot maps have str"
        " keys, and such a key has no text known to parse back into it; use str, int,"
        " float, bool,"
        " str-valued enum, IntEnum, UUID, Decimal, date/time, IP address (IPv4Address,"
        " IPvAnyAddress, ...), IP network or interface, or path keys",
    )


def _any_key(key: Any) -> str | bytes:
    """A key of a dict whose keys are typed ``Any``: a ``str`` or ``bytes``, exactly.
    Validation gives such keys back as the snapshot holds them, and its maps hold
    ``str`` keys (``bytes`` ones as they are), so a key converted to text here (a
    ``StrEnum`` member to its value, an int to its digits) would come back as another
    key."""
    if type(key) is bytes:
        return key
    if type(key) is not str:
        raise fail(
            f"expected a str or bytes key, found {kind_of(key)}: keys typed Any come back"
            " as the snapshot holds them, so no other key would come back as it is"
        )
    return str(to_str(key))  # refuses a string no snapshot holds (a lone surrogate)


def _text_key(schema: Mapping[str, Any]) -> Node | None:
    """How to write a key of an IP address or network, or a path, type: its text, which
    lax validation parses back into an equal key of the same type, as it does for such
    a value. ``IPvAnyAddress`` and its kin parse an IPv4 text as the IPv4 class, and
    any other as the IPv6 class: each class's text comes back as that class."""
    kind = schema.get("type")
    if kind == "function-plain":
        owner = getattr(schema.get("function", {}).get("function"), "__self__", None)
        # By identity: a validator's owner may be an unhashable instance.
        classes = next((pair for cls, pair in IP_ANY_TYPES.items() if cls is owner), None)
        if classes is None:
            return None
        what = f"an {classes[0].__name__} or {classes[1].__name__} key"
        return Node(as_text_of(classes, what), False, True)
    if kind == "lax-or-strict":
        cls = instance_class(schema.get("strict_schema", {}))
    elif kind in ("json-or-python", "is-instance"):
        cls = instance_class(schema)
    else:
        return None
    if isinstance(cls, type) and (cls in IP_TYPES or issubclass(cls, pathlib.PurePath)):
        return known_class(cls)
    return None


def _text_parses_back(schema: Mapping[str, Any]) -> bool:
    """Whether lax validation parses an enum member's value, written as text, back into
    the member: always for ``str`` values, for ``int`` values only when the enum is an
    ``int`` (``IntEnum``, ``IntFlag``); a plain ``Enum`` matches values as they are."""
    values = [member.value for member in schema["members"]]
    if all(type(value) is str for value in values):
        return True
    return schema.get("sub_type") == "int" and all(type(value) is int for value in values)
