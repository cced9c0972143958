"""Paths into a state, as messages show them.

A message about a value says where it is: ``entries['a'].when[0]``. A path is a list
of steps: a record's field (:class:`FieldName`, rendered ``.name``), a dict key or an
index (rendered ``['k']``, ``[0]``), a dict's key itself (:class:`DictKey`) or a set
item (:class:`SetItem`). :func:`located_path` reads a pydantic error location into
such a path, with the schema telling a field from a key; :func:`format_path` renders
one, long keys (see ``_shown``) and long paths shortened, so that a message stays one
short line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import pydantic_core

from statemigrate._model._shown import shortened

__all__ = [
    "DictKey",
    "FieldName",
    "SetItem",
    "format_path",
    "located_path",
]


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
    which has no such steps, or a path :func:`~statemigrate._model._compare.first_difference`
    found in a state, whose steps into a ``TypedDict`` are keys as into any dict. Past a
    step the schema does not explain, the rest of the location is kept as it is.
    """
    definitions: dict[str, Mapping[str, Any]] = {}
    path: list[object] = []
    node: Mapping[str, Any] | None = core_schema
    steps = list(loc)
    while steps and node is not None:
        root_step = isinstance(steps[0], FieldName) and steps[0] == "root"
        node = _unwrapped(node, definitions, root_step=root_step)
        kind = node.get("type")
        if kind == "model":  # a root model, its one field named by the step
            path.append(steps.pop(0))
            node = node["schema"]
            continue
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
    node: Mapping[str, Any],
    definitions: dict[str, Mapping[str, Any]],
    *,
    root_step: bool = False,
) -> Mapping[str, Any]:
    """``node`` past the wrappers that add no step to a location; with ``root_step``,
    up to a root model. The comparison walks a model by its fields, a root model's too:
    its paths have a step ``FieldName("root")`` that pydantic's locations and the
    exporter's paths leave out (there a step ``"root"``, a plain ``str``, is a key)."""
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
        elif kind == "model" and root_step and node.get("root_model"):
            return node
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
        return f"{{{shortened(step.item)}}}"
    if isinstance(step, DictKey):
        return f" key {shortened(step.key)}"
    return f"[{shortened(step)}]"
