"""Exact comparison of states: equal values of the same types, with the first difference.

``==`` is too forgiving to tell whether a state survived a round trip: ``1 == 1.0 ==
True``, a ``str`` equals a ``StrEnum`` member, a model subclass may compare equal to its
base, and a ``datetime`` string never equals a ``datetime`` but says nothing of where.
:func:`first_difference` walks two states together and reports the path to the first
place where they differ in value or in type.

Two deliberate allowances, both documented round-trip rules:

- an aware ``datetime`` or ``time`` comes back with a fixed-offset ``tzinfo``: the same
  wall time and UTC offset (so the same instant) compare equal whatever the ``tzinfo``
  class. Not with ``==``, which compares instants only, and which PEP 495 makes False
  between two zones for a time in a daylight-saving changeover (a ``ZoneInfo``'s
  repeated or skipped hour); ``fold`` counts only through the offset it selects, which
  is all of it an aware value's text can keep. The same rule matches dict keys and set
  items;
- NaN equals NaN (floats and decimals), so a state holding one can be compared at all.

One allowance on request (``widening=True``), for plain data that one schema wrote and
another reads back: a number that comes back as an exactly equal number of a wider
numeric type (``1`` as ``1.0``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import pydantic
import pydantic_core

from statemigrate._model._freshstack import EVERY, on_fresh_stack

__all__ = [
    "DictKey",
    "FieldName",
    "SetItem",
    "counterparts",
    "first_difference",
    "format_path",
    "located_path",
    "shown",
]

Difference = tuple[list[object], str]


class FieldName(str):
    """A path step that names a record field, rendered ``.name`` (a key renders ``['k']``)."""

    __slots__ = ()


class DictKey:
    """A path step to a dict's key itself (not its value): rendered `` key 'k'``."""

    __slots__ = ("key",)

    def __init__(self, key: object) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"DictKey({self.key!r})"


class SetItem:
    """A path step into a set, to one of its items: rendered ``{item}``."""

    __slots__ = ("item",)

    def __init__(self, item: object) -> None:
        self.item = item

    def __repr__(self) -> str:
        return f"SetItem({self.item!r})"


def shown(value: object) -> str:
    """``repr(value)`` for a message, or what kind of value it is when Python refuses
    to write it: an int of more digits than ``sys.get_int_max_str_digits()`` (4,300 by
    default), or a container holding one. A message about such a value, or whose path
    has one for a key, must not fail in its turn."""
    try:
        return repr(value)
    except ValueError:
        if isinstance(value, int):
            return f"<an int of {value.bit_length()} bits>"
        return f"<a {type(value).__qualname__} too large to show>"


_KEY_ERROR_STEP = "[key]"
"""pydantic's location step, after a dict's key, for an error in the key itself."""

_PATH_STEPS = 16
"""Paths of more steps are shown by their first and last steps, so that a message about
data nested a thousand levels deep stays one short line."""
_PATH_HEAD = 6
_PATH_TAIL = 4


def format_path(path: list[object] | tuple[object, ...]) -> str:
    """Render a path into a state: ``entries['a'].when[0]``, or ``(root)``.

    A path of more than 16 steps shows its first 6 and last 4 around ``...``, and how
    many steps it has: ``['x'][0][0][0][0][0] ... [0][0][0][0] (1025 steps)``.
    """
    if len(path) > _PATH_STEPS:
        head = _render(path[:_PATH_HEAD])
        tail = _render(path[-_PATH_TAIL:])
        return f"{_top(head)} ... {tail} ({len(path)} steps)"
    return _top(_render(path))


def _top(rendered: str) -> str:
    """A rendered path as it starts a message: no leading dot, ``(root)`` for the top."""
    if not rendered or rendered.startswith(" "):  # the top, or a key of the top dict
        return f"(root){rendered}"
    return rendered.removeprefix(".")


def located_path(
    core_schema: Mapping[str, Any], loc: Sequence[object], *, labelled: bool = True
) -> list[object]:
    """The path of a pydantic error location in a state of ``core_schema``, in the form
    :func:`format_path` renders: a record's fields (model, dataclass or ``TypedDict``)
    as :class:`FieldName`, dict keys and item indexes as they are.

    pydantic's location is a flat list: the schema tells a field from a key, and a
    union's step naming the member tried (a tag, a class name) from a step into the
    value, which it leaves out. ``labelled=False`` reads a path into plain data instead,
    which has no such steps. Past a step the schema does not explain, the rest of the
    location is kept as it is.
    """
    definitions: dict[str, Mapping[str, Any]] = {}
    path: list[object] = []
    node: Mapping[str, Any] | None = core_schema
    steps = list(loc)
    while steps and node is not None:
        node = _unwrapped(node, definitions)
        kind = node.get("type")
        if kind in ("tagged-union", "union") and not labelled:
            break  # which member the value is of, plain data does not say
        if kind == "tagged-union":
            tag = steps[0]
            choices = node["choices"]
            found = next((c for t, c in choices.items() if tag in (t, str(t))), None)
            if found is None:
                break
            steps.pop(0)
            node = found
            continue
        if kind == "union":
            choices = node["choices"]
            if len(choices) == 1 or "custom_error_type" in node:
                break  # no step names a member: which one failed is not known
            # The step names the member tried, in pydantic's own terms: never a step
            # into the value, so it is left out of the path.
            label = steps.pop(0)
            node = next(
                (
                    _member(choice)
                    for choice in choices
                    if _labelled(choice, label, definitions)
                ),
                None,
            )
            continue
        fields = _record_fields(node)
        step = steps.pop(0)
        if fields is not None:
            spec = fields.get(step) if isinstance(step, str) else None
            if spec is None:
                path.append(step)
                break
            path.append(FieldName(step))
            node = spec.get("schema")
        elif kind == "dict":
            values = node.get("values_schema")
            if (
                labelled
                and steps == [_KEY_ERROR_STEP]
                and (
                    not _may_have_key_step(values, definitions)
                    or _refused_key(node.get("keys_schema"), step)
                )
            ):
                # pydantic's step for an error in the key itself, not in its value: told
                # apart where no value could hold a step of that name, or where the key
                # itself does not validate.
                steps.clear()
                path.append(DictKey(step))
                break
            else:
                path.append(step)
                node = node.get("values_schema")
        elif kind in ("list", "set", "frozenset", "deque", "tuple"):
            path.append(step)
            node = _item_schema(node, step)
        else:
            path.append(step)
            break
    return [*path, *steps]


def _unwrapped(
    node: Mapping[str, Any], definitions: dict[str, Mapping[str, Any]]
) -> Mapping[str, Any]:
    """``node`` past the wrappers that add no step to a location."""
    while True:
        kind = node.get("type")
        if kind == "definitions":
            for definition in node["definitions"]:
                definitions[definition["ref"]] = definition
            node = node["schema"]
        elif kind == "definition-ref":
            node = definitions.get(node["schema_ref"], {})
        elif kind in _NO_STEP:
            node = node["schema"]
        elif kind in ("model", "dataclass"):
            node = node["schema"]
        elif kind == "lax-or-strict":
            node = node["lax_schema"]
        elif kind == "json-or-python":
            node = node["python_schema"]
        else:
            return node


# Wrappers around a value's schema that add no step to an error's location.
_NO_STEP = frozenset(
    {"default", "nullable", "custom-error", "function-after", "function-before", "function-wrap"}
)


def _may_have_key_step(
    values: Mapping[str, Any] | None, definitions: dict[str, Mapping[str, Any]]
) -> bool:
    """Whether a value of a dict's ``values`` schema may itself hold a step ``"[key]"``
    (a nested dict's key, a record's field): its error at that step has the location
    of an error in the outer key itself, which is then not told apart."""
    if values is None:
        return False
    node = _unwrapped(values, definitions)
    if node.get("type") in ("dict", "union", "tagged-union"):
        return True
    fields = _record_fields(node)
    return fields is not None and _KEY_ERROR_STEP in fields


def _refused_key(keys: Mapping[str, Any] | None, key: object) -> bool:
    """Whether ``key`` (as the location gives it) does not validate against a dict's
    ``keys`` schema; False when that cannot be told (a schema that needs definitions
    from elsewhere). Only error paths ask, never a snapshot or a restore."""
    if keys is None:
        return False
    try:
        pydantic_core.SchemaValidator(cast(Any, keys)).validate_python(key, strict=False)
    except pydantic_core.ValidationError:
        return True
    except Exception:  # a schema that cannot stand alone (a definitions reference)
        return False
    return False


def _item_schema(node: Mapping[str, Any], index: object) -> Mapping[str, Any] | None:
    """The schema of item ``index`` of a list, set, deque or tuple node."""
    items = node.get("items_schema")
    if isinstance(items, Mapping):
        return items
    if isinstance(items, list) and items and type(index) is int:
        variadic = node.get("variadic_item_index")
        if index < len(items) and (variadic is None or index < variadic):
            return cast(Mapping[str, Any], items[index])
        return cast(Mapping[str, Any], items[variadic if variadic is not None else -1])
    return None


def _record_fields(node: Mapping[str, Any]) -> Mapping[Any, Mapping[str, Any]] | None:
    """The fields of a record node by name, or None for any other node."""
    kind = node.get("type")
    if kind in ("model-fields", "typed-dict"):
        return dict(node["fields"])
    if kind == "dataclass-args":
        return {spec["name"]: spec for spec in node["fields"]}
    return None


def _member(choice: Any) -> Mapping[str, Any]:
    """A union member's schema (a member may come with a label of its own)."""
    return cast(Mapping[str, Any], choice[0] if isinstance(choice, tuple | list) else choice)


def _labelled(choice: Any, label: object, definitions: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether ``label``, a step pydantic puts in a location for a union member it
    tried, names ``choice``: its own label, a record's class name, or the member's kind
    (``int``, ``lax-or-strict[...]``)."""
    if isinstance(choice, tuple | list):
        return bool(choice[1] == label)
    node = choice
    if node.get("type") == "definition-ref":
        node = definitions.get(node["schema_ref"], node)
    cls = node.get("cls")
    if isinstance(cls, type) and cls.__name__ == label:
        return True
    kind = str(node.get("type"))
    return isinstance(label, str) and (label == kind or label.startswith(f"{kind}["))


def _render(steps: list[object] | tuple[object, ...]) -> str:
    # A field whose name is no identifier (a TypedDict's may be anything) is shown as a
    # key: ``.a b`` would not read as one step.
    return "".join(_render_step(step) for step in steps)


def _render_step(step: object) -> str:
    if isinstance(step, FieldName) and step.isidentifier():
        return f".{step}"
    if isinstance(step, SetItem):
        return f"{{{shown(step.item)}}}"
    if isinstance(step, DictKey):
        return f" key {shown(step.key)}"
    return f"[{shown(step)}]"


def first_difference(
    expected: object, actual: object, *, widening: bool = False
) -> Difference | None:
    """Return ``(path, what differs)`` for the first difference, or None when the two
    states are the same values of the same types.

    ``expected`` may be a model or dataclass instance, or the dict of its fields, which
    is what a component without ``export_state`` hands over.

    ``widening=True`` also accepts a number that comes back as an exactly equal number
    of a wider type: a ``bool`` as an ``int`` or ``float``, an ``int`` as a ``float``
    (``1`` as ``1.0``, not ``2**53 + 1`` as ``2.0**53``). Plain data written by one
    schema and read by another holds such numbers whenever the writer kept an ``int``
    that validation makes a ``float``; nothing is lost in the step. Nothing else is
    accepted: ``-0.0`` as ``0``, a float as an int, a str as an int stay differences.
    """
    found = _diff(expected, actual, widening)
    if found is None:
        return None
    steps, detail = found
    steps.reverse()
    return steps, detail


# The walk builds no path on the way down: a difference comes back up with the steps
# to it innermost first, each caller adding its own. Paths cost a list per value
# otherwise, on states that are nearly always the same.
_Found = tuple[list[object], str]


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__qualname__})"


def _changed(expected: object, actual: object) -> _Found:
    return [], f"{_describe(expected)} would come back as {_describe(actual)}"


def _below(step: object, found: _Found | None) -> _Found | None:
    if found is not None:
        found[0].append(step)
    return found


_ATOMS = frozenset({str, int, bool, bytes, type(None)})
"""Types whose values are equal exactly when ``==`` says so (for the same type)."""

_WIDER: dict[type, tuple[type, ...]] = {bool: (int, float), int: (float,)}
"""The numeric types each type's values may come back as under ``widening``."""


def _widened(expected: object, actual: object) -> bool:
    """Whether ``actual`` is ``expected`` as an equal number of a wider type. Python
    compares an int with a float exactly, so an int that the float rounds is no match."""
    return type(actual) in _WIDER.get(type(expected), ()) and expected == actual


def _diff(
    expected: object, actual: object, widening: bool = False, depth: int = 0
) -> _Found | None:
    """The first difference; ``depth`` counts the containers and records walked into.

    A walk whose stack runs out (``RecursionError``) goes on from the last container
    at a multiple of :data:`EVERY` levels, on a fresh stack: a state nested as deep as
    a restore takes is compared in any process, whatever its recursion limit (see
    ``_freshstack``). The walk started there is ``fresh``, and does not move again at
    its own level.
    """
    kind = type(expected)
    if kind is type(actual):
        # The bulk of a state's values: answered here without the general checks below,
        # which cost a dozen isinstance calls per value.
        if kind in _ATOMS:
            return None if expected == actual else _changed(expected, actual)
        if kind is float:
            if expected == actual or _both_nan(expected, actual):
                return None
            return _changed(expected, actual)
        if kind is dict:
            return _diff_mappings(expected, actual, widening, depth)  # type: ignore[arg-type]
        if _plain_record_type(kind):
            return _diff_fields(expected, actual, False, widening, depth)
    if isinstance(expected, Mapping) and _is_record(actual):
        return _diff_fields(expected, actual, True, widening, depth)
    if type(expected) is not type(actual):
        if widening and _widened(expected, actual):
            return None
        return _changed(expected, actual)
    if isinstance(expected, pydantic.BaseModel) or _is_dataclass_instance(expected):
        return _diff_fields(expected, actual, False, widening, depth)
    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping)
        return _diff_mappings(expected, actual, widening, depth)
    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple)
        if len(expected) != len(actual):
            return [], f"{len(expected)} items would come back as {len(actual)}"
        return _diff_items(expected, actual, widening, depth)
    if isinstance(expected, set | frozenset):
        assert isinstance(actual, set | frozenset)
        if _item_forms(expected) != _item_forms(actual):
            return _changed(expected, actual)
        return None
    if isinstance(expected, datetime.datetime | datetime.time):
        assert isinstance(actual, datetime.datetime | datetime.time)
        if _moment(expected) != _moment(actual):
            return [], f"{_describe_moment(expected)} would come back as {_describe_moment(actual)}"
        return None
    if isinstance(expected, float | decimal.Decimal) and _both_nan(expected, actual):
        return None
    if isinstance(expected, decimal.Decimal) and str(expected) != str(actual):
        return _changed(expected, actual)
    if isinstance(expected, collections.deque):
        assert isinstance(actual, collections.deque)
        if expected.maxlen != actual.maxlen:
            return [], _maxlen_lost(expected.maxlen, actual.maxlen)
        return _diff(list(expected), list(actual), widening, depth)
    if expected != actual:
        return _changed(expected, actual)
    return None


def _maxlen_lost(maxlen: int | None, again: int | None) -> str:
    """A deque's maxlen that would change: a snapshot holds the items, and only a
    validator of the deque's type can bound it again."""
    return (
        f"a deque with maxlen={maxlen} would come back with maxlen={again}: a snapshot"
        " holds its items only; set the maxlen in a validator of its type, such as"
        f" Annotated[deque[...], AfterValidator(lambda d: deque(d, maxlen={maxlen}))]"
    )


def _diff_items(
    expected: Sequence[Any], actual: Sequence[Any], widening: bool, depth: int, fresh: bool = False
) -> _Found | None:
    try:
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = _diff(left, right, widening, depth + 1)
            if found:
                return _below(index, found)
        return None
    except RecursionError:
        if fresh or depth % EVERY:
            raise
        return on_fresh_stack(_diff_items, expected, actual, widening, depth, True)


def _diff_mappings(
    expected: Mapping[Any, Any],
    actual: Mapping[Any, Any],
    widening: bool,
    depth: int,
    fresh: bool = False,
) -> _Found | None:
    try:
        if expected.keys() == actual.keys():
            twins: Mapping[Any, Any] = {key: key for key in actual}
        else:
            paired = _pair_keys(expected, actual)
            if not isinstance(paired, dict):
                return paired
            twins = paired
        for key, value in expected.items():
            twin = twins[key]
            if type(twin) is not type(key) or (type(key) not in _ATOMS and _diff(key, twin)):
                return [key], f"the key would come back as {_describe_key(twin)}"
            found = _diff(value, actual[twin], widening, depth + 1)
            if found:
                return _below(key, found)
        return None
    except RecursionError:
        if fresh or depth % EVERY:
            raise
        return on_fresh_stack(_diff_mappings, expected, actual, widening, depth, True)


def _pair_keys(expected: Mapping[Any, Any], actual: Mapping[Any, Any]) -> dict[Any, Any] | _Found:
    """Each key of ``expected`` with its counterpart in ``actual``, or the difference.

    A key is matched as :func:`counterparts` matches it. A key left without one is reported as
    the key that took its place when the two hold as many keys and that key is of
    another type (validation keeps their order: ``1`` that comes back as ``'1'``), else
    as lost: a key of the same type in its place is another key, not this one changed.
    """
    find = counterparts(actual)
    twins: dict[Any, Any] = {}
    for key in expected:
        twin = find(key, _NONE)
        if twin is not _NONE:
            twins[key] = twin
    taken = {id(twin) for twin in twins.values()}
    extra = [key for key in actual if id(key) not in taken]
    if len(expected) == len(actual):
        for key, in_its_place in zip(expected, actual, strict=True):
            if key not in twins:
                twin = in_its_place if id(in_its_place) not in taken else extra[0]
                if type(twin) is not type(key):
                    return [key], f"the key would come back as {_describe_key(twin)}"
    missing = [key for key in expected if key not in twins]
    if missing:
        return [missing[0]], "this key would be lost"
    if extra:
        return [extra[0]], "this key would appear"
    return twins


_NONE = object()


def _diff_fields(
    expected: Any,
    actual: Any,
    expected_is_dict: bool,
    widening: bool,
    depth: int,
    fresh: bool = False,
) -> _Found | None:
    try:
        names = _field_names(actual)
        for name in names:
            if expected_is_dict:
                if name not in expected:
                    continue  # an optional field the dict form leaves to its default
                left = expected[name]
            else:
                left = getattr(expected, name)
            found = _diff(left, getattr(actual, name), widening, depth + 1)
            if found:
                return _below(FieldName(name), found)
        if isinstance(actual, pydantic.BaseModel) and not expected_is_dict:
            for label, left, right in (
                ("extra", expected.__pydantic_extra__, actual.__pydantic_extra__),
                ("private attributes", expected.__pydantic_private__, actual.__pydantic_private__),
            ):
                found = _diff(left or {}, right or {}, widening, depth + 1)
                if found:
                    return _below(FieldName(f"<{label}>"), found)
        return None
    except RecursionError:
        if fresh or depth % EVERY:
            raise
        return on_fresh_stack(
            _diff_fields, expected, actual, expected_is_dict, widening, depth, True
        )


_RECORD_TYPES: dict[type, bool] = {}


def _plain_record_type(kind: type) -> bool:
    """A model or dataclass type that is no mapping: its values compare field by field,
    as the general checks in :func:`_diff` would find after a dozen ``isinstance``."""
    known = _RECORD_TYPES.get(kind)
    if known is None:
        known = not issubclass(kind, Mapping) and (
            issubclass(kind, pydantic.BaseModel) or hasattr(kind, dataclasses._FIELDS)  # type: ignore[attr-defined]
        )
        _RECORD_TYPES[kind] = known
    return known


def _field_names(value: object) -> list[str]:
    if isinstance(value, pydantic.BaseModel):
        return list(type(value).model_fields)
    return [f.name for f in dataclasses.fields(value)]  # type: ignore[arg-type]


def _is_record(value: object) -> bool:
    return isinstance(value, pydantic.BaseModel) or _is_dataclass_instance(value)


def _is_dataclass_instance(value: object) -> bool:
    # What dataclasses.is_dataclass checks for an instance, at a fraction of its cost.
    return hasattr(type(value), dataclasses._FIELDS)  # type: ignore[attr-defined]


def _item_forms(items: set[Any] | frozenset[Any]) -> set[tuple[type, object]]:
    return {(type(item), _key_form(item)) for item in items}


def _moment(value: datetime.datetime | datetime.time) -> tuple[object, object]:
    """What an aware or naive datetime or time keeps through its ISO 8601 text: its wall
    time and its UTC offset. Together they fix the instant; a zone's name and rules are
    documented as not kept, and ``fold`` (PEP 495) only selects the offset, which is
    kept. A naive value's fold is kept by nothing: ``==`` ignores it too."""
    return value.replace(tzinfo=None, fold=0), value.utcoffset()


def _key_form(key: object) -> object:
    """A dict key or set item as compared: an aware datetime or time as its
    :func:`_moment`, so that the same moment under another ``tzinfo`` matches it; any
    other value as itself."""
    if isinstance(key, datetime.datetime | datetime.time) and key.utcoffset() is not None:
        return (type(key), *_moment(key))
    return key


def counterparts(items: Iterable[Any]) -> Callable[[Any, Any], Any]:
    """``find(item, default)``: the counterpart of a dict key or set item among
    ``items``, an equal one or else the same moment under another ``tzinfo`` (a
    ``ZoneInfo`` time in a changeover hour equals no other zone's, PEP 495), or
    ``default``. The counterpart may still differ in type or offset: compare it."""
    by_value = {item: item for item in items}
    by_form = {_key_form(item): item for item in by_value}

    def find(item: Any, default: Any) -> Any:
        other = by_value.get(item, _NONE)
        return by_form.get(_key_form(item), default) if other is _NONE else other

    return find


def _describe_moment(value: datetime.datetime | datetime.time) -> str:
    """Its ISO 8601 text, which shows what is compared: wall time and offset."""
    return f"{value.isoformat()} ({type(value).__qualname__})"


def _describe_key(key: object) -> str:
    if isinstance(key, datetime.datetime | datetime.time):
        return _describe_moment(key)
    return _describe(key)


def _both_nan(left: object, right: object) -> bool:
    def nan(value: object) -> bool:
        if isinstance(value, float):
            return math.isnan(value)
        return isinstance(value, decimal.Decimal) and value.is_nan()

    return nan(left) and nan(right)
